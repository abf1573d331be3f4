//! Reading trails: the segment files of a directory (or files given one by one), as
//! lines with their position, for `verify`, `query` and `rollouts`.

use std::path::{Path, PathBuf};

use crate::record::Parsed;
use crate::segment;

/// One line of a trail file.
#[derive(Debug)]
pub struct Line {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    pub bytes: Vec<u8>,
    /// Ended with a newline (else the file ends mid-record).
    pub complete: bool,
    pub parsed: Result<Parsed, String>,
}

impl Line {
    /// `file:line`, for messages.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// The files to read: a directory stands for its segment files in chain order; files
/// are taken in the order given.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let files =
                segment::list(path).map_err(|e| format!("cannot list {}: {e}", path.display()))?;
            if files.is_empty() {
                return Err(format!("{}: no audit-*.jsonl files", path.display()));
            }
            out.extend(files);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Every line of `files`, in order.
pub fn lines(files: &[PathBuf]) -> Result<Vec<Line>, String> {
    let mut out = Vec::new();
    for file in files {
        out.extend(file_lines(file)?);
    }
    Ok(out)
}

fn file_lines(file: &Path) -> Result<Vec<Line>, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    let mut n = 0;
    while !rest.is_empty() {
        n += 1;
        let (line, complete, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], true, &rest[end + 1..]),
            None => (rest, false, &[][..]),
        };
        out.push(Line {
            file: file.to_path_buf(),
            line: n,
            bytes: line.to_vec(),
            complete,
            parsed: Parsed::parse(line),
        });
        rest = next;
    }
    Ok(out)
}

/// The parsed records of `paths` (directories or files), skipping unreadable lines.
pub fn records(paths: &[PathBuf]) -> Result<Vec<Parsed>, String> {
    let files = expand(paths)?;
    Ok(lines(&files)?
        .into_iter()
        .filter_map(|l| l.parsed.ok())
        .collect())
}
