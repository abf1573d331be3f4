//! The file-system side of polling (blocking; run on `spawn_blocking`): list a base
//! path's numbered version directories, pick the ones the version policy wants, and
//! take a cheap "stamp" of a version directory so a failed load is retried only after
//! its files change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::config::{ModelConfig, VersionPolicy};

/// At most this many entries are visited when stamping one version directory.
const STAMP_ENTRY_LIMIT: usize = 10_000;
/// And at most this deep (`1/variables/variables.index` is depth 2).
const STAMP_DEPTH_LIMIT: usize = 3;

/// A summary of a version directory's files: if it differs, the files changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DirStamp {
    newest: Option<SystemTime>,
    entries: usize,
    bytes: u64,
}

/// What one poll found for one model.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Every version directory found (version → path).
    pub(crate) found: BTreeMap<i64, PathBuf>,
    /// The versions the policy selects, with their paths and (when asked) stamps.
    pub(crate) aspired: BTreeMap<i64, (PathBuf, Option<DirStamp>)>,
    /// Things worth one warning (duplicate directories, missing specific versions).
    pub(crate) notes: Vec<String>,
}

/// The version number a directory name stands for: ASCII digits only (`00000123` is
/// 123); anything else (hidden files, `tmp`, `-1`, `1.bak`) is not a version.
pub(crate) fn parse_version(name: &str) -> Option<i64> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Lists `config.base_path`, applies the policy, and stamps the selected versions
/// except those in `unstamped` (already serving: their stamp is not needed).
pub(crate) fn scan_model(config: &ModelConfig, unstamped: &BTreeSet<i64>) -> Result<Scan, String> {
    let base = &config.base_path;
    let entries = std::fs::read_dir(base).map_err(|e| {
        format!(
            "Could not find base path {} for servable {}: {e}",
            base.display(),
            config.name
        )
    })?;
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("listing {}: {e}", base.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if parse_version(&name).is_none() {
            continue;
        }
        // Follows symlinks, so a linked version directory counts.
        if entry.path().is_dir() {
            names.push((name, entry.path()));
        }
    }
    names.sort();

    let mut scan = Scan::default();
    for (name, path) in names {
        let Some(version) = parse_version(&name) else {
            continue;
        };
        if let Some(previous) = scan.found.insert(version, path) {
            scan.notes.push(format!(
                "duplicate directories for version {version} of model {}: using {name}, ignoring {}",
                config.name,
                previous.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ));
        }
    }

    let selected: Vec<i64> = match &config.policy {
        VersionPolicy::Latest(n) => {
            let n = usize::try_from((*n).max(1)).unwrap_or(usize::MAX);
            scan.found.keys().rev().take(n).copied().collect()
        }
        VersionPolicy::All => scan.found.keys().copied().collect(),
        VersionPolicy::Specific(wanted) => {
            for missing in wanted.iter().filter(|v| !scan.found.contains_key(v)) {
                scan.notes.push(format!(
                    "version {missing} of model {}, which the specific version policy asks for, was not found under {}",
                    config.name,
                    base.display()
                ));
            }
            wanted
                .iter()
                .filter(|v| scan.found.contains_key(v))
                .copied()
                .collect()
        }
    };
    if scan.found.is_empty() {
        scan.notes.push(format!(
            "no versions of model {} found under base path {} (version directories must be numbers, e.g. {}/1)",
            config.name,
            base.display(),
            base.display()
        ));
    }
    for version in selected {
        if let Some(path) = scan.found.get(&version) {
            let stamp = (!unstamped.contains(&version)).then(|| stamp_dir(path));
            scan.aspired.insert(version, (path.clone(), stamp));
        }
    }
    Ok(scan)
}

/// Stamps a directory tree: newest modification time, entry count and total size,
/// over a bounded walk. Unreadable entries simply don't count.
pub(crate) fn stamp_dir(dir: &Path) -> DirStamp {
    let mut stamp = DirStamp {
        newest: std::fs::metadata(dir).and_then(|m| m.modified()).ok(),
        entries: 0,
        bytes: 0,
    };
    let mut pending = vec![(dir.to_path_buf(), 0usize)];
    while let Some((path, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            if stamp.entries >= STAMP_ENTRY_LIMIT {
                return stamp;
            }
            stamp.entries += 1;
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            if let Ok(modified) = meta.modified() {
                stamp.newest = stamp.newest.max(Some(modified));
            }
            if meta.is_dir() {
                if depth + 1 < STAMP_DEPTH_LIMIT {
                    pending.push((entry.path(), depth + 1));
                }
            } else {
                stamp.bytes = stamp.bytes.saturating_add(meta.len());
            }
        }
    }
    stamp
}
