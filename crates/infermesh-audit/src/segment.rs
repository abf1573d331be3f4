//! The trail's directory: the lock that keeps one writer per directory, the segment
//! files (`audit-<first seq, 20 digits>.jsonl`, so name order is chain order), and
//! recovery at start: a torn last record (a crash mid-write) is cut off, and the chain
//! head (last `seq` and hash) is found so the new records continue it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::AuditError;
use crate::record::{GENESIS, Parsed, hash, kind};

const PREFIX: &str = "audit-";
const SUFFIX: &str = ".jsonl";

/// The name of the segment whose first record is `seq`.
pub fn file_name(seq: u64) -> String {
    format!("{PREFIX}{seq:020}{SUFFIX}")
}

/// The segment files of `dir`, in chain order.
pub fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_segment(p))
        .collect();
    files.sort();
    Ok(files)
}

pub fn is_segment(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(PREFIX))
        .and_then(|n| n.strip_suffix(SUFFIX))
        .is_some_and(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Creates the directory (0700) and takes its lock (held while the file is open).
pub fn lock(dir: &Path) -> Result<File, AuditError> {
    let dir_err = |source| AuditError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(dir_err)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(dir_err)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AuditError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(dir_err(e)),
    }
}

/// Where the chain stands after recovery.
#[derive(Debug)]
pub struct Head {
    /// The segment to append to (`None`: no segment yet).
    pub file: Option<PathBuf>,
    /// Its length after recovery.
    pub len: u64,
    /// The last record's `seq` (0: empty trail).
    pub seq: u64,
    /// The last record's hash ([`GENESIS`] for an empty trail).
    pub hash: String,
    /// Bytes cut off the end (a torn record).
    pub torn_bytes: u64,
    /// Whether the last record is a final checkpoint (a clean stop).
    pub clean: bool,
}

/// Finds the chain head of `dir`, cutting a torn last record off the last segment.
pub fn recover(dir: &Path) -> Result<Head, AuditError> {
    let io = |file: &Path| {
        let file = file.to_path_buf();
        move |source| AuditError::Io { file, source }
    };
    let mut files = list(dir).map_err(|source| AuditError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut torn_bytes = 0;
    while let Some(path) = files.pop() {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let scan = scan(&path, &bytes)?;
        if scan.good_len < bytes.len() as u64 {
            torn_bytes += bytes.len() as u64 - scan.good_len;
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            file.set_len(scan.good_len).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
            tracing::warn!(
                file = %path.display(),
                bytes = bytes.len() as u64 - scan.good_len,
                "audit: cut a torn record off the end of the trail (a crash during a write)"
            );
        }
        let Some(last) = scan.last else {
            // Nothing whole in it: the chain head is in the previous segment.
            std::fs::remove_file(&path).map_err(io(&path))?;
            continue;
        };
        return Ok(Head {
            file: Some(path),
            len: scan.good_len,
            seq: last.0,
            hash: last.1,
            torn_bytes,
            clean: last.2 && torn_bytes == 0,
        });
    }
    Ok(Head {
        file: None,
        len: 0,
        seq: 0,
        hash: GENESIS.to_owned(),
        torn_bytes,
        clean: torn_bytes == 0,
    })
}

struct Scan {
    /// Length of the whole valid records.
    good_len: u64,
    /// `seq`, hash and "is a final checkpoint" of the last valid record.
    last: Option<(u64, String, bool)>,
}

/// The valid prefix of a segment. A bad record that is not the last line is
/// corruption, not a torn write: refused.
fn scan(path: &Path, bytes: &[u8]) -> Result<Scan, AuditError> {
    let mut good_len = 0u64;
    let mut last: Option<(u64, String, bool)> = None;
    let mut offset = 0usize;
    let mut line_no = 0usize;
    while offset < bytes.len() {
        line_no += 1;
        let Some(end) = bytes[offset..].iter().position(|&b| b == b'\n') else {
            break; // no newline: torn
        };
        let line = &bytes[offset..offset + end];
        let next = offset + end + 1;
        let ok = Parsed::parse(line)
            .map_err(|e| e.to_string())
            .and_then(|p| match &last {
                Some((seq, h, _)) if p.seq != seq + 1 || &p.prev != h => {
                    Err(format!("does not follow record {seq}"))
                }
                _ => Ok(p),
            });
        match ok {
            Ok(p) => {
                let last_final = p.kind == kind::CHECKPOINT && p.value["final"] == true;
                last = Some((p.seq, hash(line), last_final));
                good_len = next as u64;
            }
            Err(why) => {
                let rest_is_blank = bytes[next..]
                    .iter()
                    .all(|&b| b == 0 || b.is_ascii_whitespace());
                if rest_is_blank {
                    break; // the last record is torn
                }
                return Err(AuditError::Corrupt {
                    file: path.to_path_buf(),
                    line: line_no,
                    why,
                });
            }
        }
        offset = next;
    }
    Ok(Scan { good_len, last })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::compose;

    fn trail(n: u64) -> String {
        let mut prev = GENESIS.to_string();
        let mut out = String::new();
        for seq in 1..=n {
            let line = compose(seq, &prev, "t", "x", "{}");
            prev = hash(line.as_bytes());
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_head_found() {
        let dir = tempfile::tempdir().unwrap();
        let text = trail(3);
        let path = dir.path().join(file_name(1));
        let torn = "{\"seq\":4,\"pr";
        std::fs::write(&path, format!("{text}{torn}")).unwrap();
        let head = recover(dir.path()).unwrap();
        assert_eq!(head.seq, 3);
        assert_eq!(head.torn_bytes, torn.len() as u64);
        assert!(!head.clean);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // Zeros after a crash (the file was extended but not written) are torn too.
        std::fs::write(&path, format!("{text}\0\0\0\0\n\0\0")).unwrap();
        assert_eq!(recover(dir.path()).unwrap().seq, 3);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn corruption_before_the_end_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = trail(3).replacen("\"kind\":\"x\"", "\"kind\":\"y\"", 1);
        std::fs::write(dir.path().join(file_name(1)), text).unwrap();
        let e = recover(dir.path()).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn one_writer_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock(dir.path()).unwrap();
        assert!(matches!(lock(dir.path()), Err(AuditError::Locked(_))));
    }
}
