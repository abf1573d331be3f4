//! `infermesh audit verify`: walks a trail record by record, checking that `seq`
//! counts up by one and that each `prev` is the hash of the record before, and checks
//! every checkpoint's Ed25519 signature. The first problem is named with its file and
//! line and what it looks like: a changed record (its hash no longer matches what the
//! next record recorded — or, when the next one does not match either, the record
//! itself), a removed one (a gap in `seq`), a reordered one (a `seq` found later), an
//! inserted one (the record after it links to the one before it), a rewritten stretch
//! (hashes recomputed, but the next checkpoint's signature fails), or truncation (the
//! trail does not end with a final checkpoint).

use std::path::PathBuf;

use crate::keys::PublicKey;
use crate::read::{Line, expand, lines};
use crate::record::{GENESIS, Parsed, checkpoint_message, hash, kind};

/// What a good trail looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub checkpoints: u64,
    /// The last checkpoint's seq.
    pub last_checkpoint: u64,
    /// The trail ends with a final checkpoint (its writer stopped cleanly).
    pub closed: bool,
    /// Records after the last checkpoint (only with `open`).
    pub unsigned_tail: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    Changed,
    Removed,
    Reordered,
    Inserted,
    /// Hashes recomputed over changed records: a checkpoint signature fails.
    Rewritten,
    Truncated,
    Unreadable,
}

/// The first problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    /// The record concerned, when known.
    pub seq: Option<u64>,
    /// `file:line` of the record concerned (or where it should be).
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

fn finding(kind: FindingKind, seq: Option<u64>, at: String, message: String) -> Finding {
    Finding {
        kind,
        seq,
        at,
        message,
    }
}

/// Verifies the trail in `paths` (directories or segment files, in chain order)
/// against `key`. With `open`, a trail that does not end with a final checkpoint
/// (its writer is still running, or crashed and has not restarted) is accepted and
/// its unsigned tail counted; without it, that is reported as truncation.
pub fn verify(paths: &[PathBuf], key: &PublicKey, open: bool) -> Result<Summary, Finding> {
    let unreadable = |e: String| finding(FindingKind::Unreadable, None, String::new(), e);
    let files = expand(paths).map_err(unreadable)?;
    let all = lines(&files).map_err(unreadable)?;
    let Some(first) = all.first() else {
        return Err(finding(
            FindingKind::Truncated,
            None,
            files
                .first()
                .map(|f| f.display().to_string())
                .unwrap_or_default(),
            "no records".into(),
        ));
    };
    let mut prev_hash = GENESIS.to_owned();
    let mut expected = 1u64;
    if let Ok(p) = &first.parsed
        && p.seq > 1
        && p.prev != GENESIS
    {
        return Err(finding(
            FindingKind::Removed,
            Some(1),
            first.at(),
            format!(
                "the trail starts at seq {}: records 1..{} are missing (pass every segment \
                 file, or the directory)",
                p.seq,
                p.seq - 1
            ),
        ));
    }
    let mut summary = Summary {
        files: files.len(),
        records: 0,
        first_seq: 1,
        last_seq: 0,
        checkpoints: 0,
        last_checkpoint: 0,
        closed: false,
        unsigned_tail: 0,
    };
    let mut last_checkpoint_at: Option<String> = None;
    for (i, line) in all.iter().enumerate() {
        if !line.complete {
            return Err(finding(
                FindingKind::Truncated,
                Some(expected),
                line.at(),
                format!(
                    "record seq {expected} is cut short (no end of line): the trail was truncated here or torn by a crash"
                ),
            ));
        }
        let p = match &line.parsed {
            Ok(p) => p,
            Err(why) => {
                return Err(finding(
                    FindingKind::Changed,
                    Some(expected),
                    line.at(),
                    format!("record seq {expected} was changed: {why}"),
                ));
            }
        };
        let h = hash(&line.bytes);
        if p.seq != expected || p.prev != prev_hash {
            return Err(broken_link(&all, i, p, expected, &prev_hash, &h));
        }
        if p.kind == kind::CHECKPOINT {
            check_signature(line, p, key, last_checkpoint_at.as_deref())?;
            summary.checkpoints += 1;
            summary.last_checkpoint = p.seq;
            last_checkpoint_at = Some(format!("seq {} ({})", p.seq, line.at()));
        }
        summary.records += 1;
        summary.last_seq = p.seq;
        prev_hash = h;
        expected = p.seq + 1;
    }
    let last = all.last().and_then(|l| l.parsed.as_ref().ok());
    summary.closed = last.is_some_and(|p| p.kind == kind::CHECKPOINT && p.value["final"] == true);
    summary.unsigned_tail = summary.last_seq - summary.last_checkpoint;
    if !summary.closed && !open {
        let at = all.last().map(Line::at).unwrap_or_default();
        let since = last_checkpoint_at.map_or_else(
            || "no checkpoint at all".to_string(),
            |c| format!("the last checkpoint is {c}"),
        );
        return Err(finding(
            FindingKind::Truncated,
            Some(summary.last_seq),
            at,
            format!(
                "the trail ends at seq {} without a final checkpoint ({since}): records \
                 after it may have been cut off — or its writer is still running or was \
                 killed and has not restarted (`--open` accepts an open trail)",
                summary.last_seq
            ),
        ));
    }
    Ok(summary)
}

/// Names what happened where record `i` does not follow the one before.
fn broken_link(
    all: &[Line],
    i: usize,
    p: &Parsed,
    expected: u64,
    prev_hash: &str,
    h: &str,
) -> Finding {
    let line = &all[i];
    let next = all.get(i + 1).and_then(|l| l.parsed.as_ref().ok());
    if p.prev == prev_hash {
        return finding(
            FindingKind::Changed,
            Some(expected),
            line.at(),
            format!("record seq {expected} was changed: its seq reads {}", p.seq),
        );
    }
    let later = |seq: u64| {
        all[i + 1..]
            .iter()
            .find(|l| l.parsed.as_ref().is_ok_and(|q| q.seq == seq))
    };
    // Moved: the expected record comes later, and this one links to its own genuine
    // predecessor (wherever that is).
    if p.seq > expected
        && let Some(m) = later(expected)
        && all.iter().any(|l| {
            l.parsed.as_ref().is_ok_and(|q| q.seq + 1 == p.seq) && hash(&l.bytes) == p.prev
        })
    {
        return reordered(expected, m, p, line);
    }
    if next.is_some_and(|n| n.seq == expected && n.prev == prev_hash) {
        return finding(
            FindingKind::Inserted,
            Some(p.seq),
            line.at(),
            format!(
                "a record was inserted before seq {expected} (it claims seq {}; the record \
                 after it links to seq {})",
                p.seq,
                expected - 1
            ),
        );
    }
    if p.seq > expected {
        let moved = all[i + 1..]
            .iter()
            .find(|l| l.parsed.as_ref().is_ok_and(|q| q.seq == expected));
        return match moved {
            Some(m) => reordered(expected, m, p, line),
            None => {
                let range = if p.seq - expected == 1 {
                    format!("record seq {expected} was")
                } else {
                    format!("records seq {expected}..{} were", p.seq - 1)
                };
                finding(
                    FindingKind::Removed,
                    Some(expected),
                    line.at(),
                    format!("{range} removed (the next one present is seq {})", p.seq),
                )
            }
        };
    }
    if p.seq < expected {
        // Two records claim this seq and the same predecessor: the one the chain goes
        // on from is genuine, the other inserted.
        let twin = all[..i].iter().rev().find(|l| {
            l.parsed
                .as_ref()
                .is_ok_and(|q| q.seq == p.seq && q.prev == p.prev)
        });
        if let Some(twin) = twin {
            let this_continues = next.is_some_and(|n| n.prev == h);
            let (forged, genuine) = if this_continues {
                (twin, line)
            } else {
                (line, twin)
            };
            return finding(
                FindingKind::Inserted,
                Some(p.seq),
                forged.at(),
                format!(
                    "a record was inserted at {}: it claims seq {}, which the genuine record \
                     at {} holds",
                    forged.at(),
                    p.seq,
                    genuine.at()
                ),
            );
        }
        return finding(
            FindingKind::Inserted,
            Some(p.seq),
            line.at(),
            format!(
                "seq {} appears again after seq {}: a record was inserted, duplicated or moved",
                p.seq,
                expected - 1
            ),
        );
    }
    // Right seq, wrong link: the record before was changed, or this one's `prev`.
    let next_links_here = next.is_none_or(|n| n.prev == h);
    if i > 0 && next_links_here {
        let before = &all[i - 1];
        finding(
            FindingKind::Changed,
            Some(expected - 1),
            before.at(),
            format!(
                "record seq {} was changed: its hash does not match the `prev` of seq {expected}",
                expected - 1
            ),
        )
    } else {
        finding(
            FindingKind::Changed,
            Some(expected),
            line.at(),
            format!(
                "record seq {expected} was changed: its `prev` does not match seq {}",
                expected - 1
            ),
        )
    }
}

fn reordered(expected: u64, moved: &Line, p: &Parsed, line: &Line) -> Finding {
    finding(
        FindingKind::Reordered,
        Some(expected),
        moved.at(),
        format!(
            "records were reordered: seq {expected} is at {}, after seq {} ({})",
            moved.at(),
            p.seq,
            line.at()
        ),
    )
}

fn check_signature(
    line: &Line,
    p: &Parsed,
    key: &PublicKey,
    previous: Option<&str>,
) -> Result<(), Finding> {
    let last = p.value["final"] == true;
    let sig = p.value["sig"].as_str().unwrap_or_default();
    let message = checkpoint_message(p.seq, &p.prev, &p.ts, last);
    if key.verifies(&message, sig) {
        return Ok(());
    }
    let signer = p.value["key"].as_str().unwrap_or("?");
    let message = if signer != key.id() {
        format!(
            "checkpoint seq {} is signed by key {signer}, not by the given key {}",
            p.seq,
            key.id()
        )
    } else {
        let since = previous.map_or_else(
            || "the start of the trail".to_string(),
            |c| format!("checkpoint {c}"),
        );
        format!(
            "checkpoint seq {} does not verify: records between {since} and it were \
             rewritten (hashes recomputed), or the checkpoint itself was changed",
            p.seq
        )
    };
    Err(finding(
        FindingKind::Rewritten,
        Some(p.seq),
        line.at(),
        message,
    ))
}
