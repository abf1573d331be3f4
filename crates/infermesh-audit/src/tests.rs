//! The trail end to end: written by [`AuditLog`], tampered with, verified.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::keys::{PublicKey, public_path};
use crate::record::{Parsed, compose, hash};
use crate::{AuditLog, Durability, FindingKind, Options, segment, verify};

fn options(dir: &Path, durability: Durability) -> Options {
    Options {
        dir: dir.join("audit"),
        durability,
        flush_interval: Duration::from_millis(50),
        checkpoint_every: 4,
        checkpoint_interval: Duration::from_secs(60),
        rotate_bytes: 1 << 30,
        rotate_age: Duration::from_secs(86_400),
        signing_key: dir.join("audit/audit.key"),
        sink: None,
        max_backlog: 100_000,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// A closed trail of `n` decision-like records; returns its segment file.
fn trail(dir: &Path, n: u64) -> PathBuf {
    rt().block_on(async {
        let log = AuditLog::open(options(dir, Durability::Strict)).unwrap();
        for i in 0..n {
            log.event("decision", &serde_json::json!({"n": i, "who": "alice"}))
                .durable()
                .await
                .unwrap();
        }
        log.close(&serde_json::json!({}), Duration::from_secs(5))
            .await;
    });
    let files = segment::list(&dir.join("audit")).unwrap();
    assert_eq!(files.len(), 1);
    files[0].clone()
}

fn key(dir: &Path) -> PublicKey {
    PublicKey::read(&public_path(&dir.join("audit/audit.key"))).unwrap()
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(file: &Path, lines: &[String]) {
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
}

fn seq_of(line: &str) -> u64 {
    Parsed::parse(line.as_bytes()).unwrap().seq
}

#[test]
fn an_untouched_trail_verifies_and_checkpoints_are_signed() {
    let dir = tempfile::tempdir().unwrap();
    let file = trail(dir.path(), 10);
    let s = verify(&[dir.path().join("audit")], &key(dir.path()), false).unwrap();
    // 10 records, a checkpoint after every 4 (2), the stop record, the final checkpoint.
    assert_eq!(s.records, 14, "{s:?}");
    assert!(s.closed);
    assert_eq!(s.checkpoints, 3);
    let last = lines(&file).pop().unwrap();
    assert!(last.contains("\"kind\":\"checkpoint\"") && last.contains("\"final\":true"));
    // Another key does not verify it.
    let other = tempfile::tempdir().unwrap();
    trail(other.path(), 1);
    let e = verify(&[file], &key(other.path()), false).unwrap_err();
    assert_eq!(e.kind, FindingKind::Rewritten);
    assert!(e.message.contains("signed by key"), "{e}");
}

#[test]
fn one_changed_byte_names_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let file = trail(dir.path(), 10);
    let mut l = lines(&file);
    // Record 3 is {"n":2,...}: alice → alicf.
    assert_eq!(seq_of(&l[2]), 3);
    l[2] = l[2].replace("alice", "alicf");
    write_lines(&file, &l);
    let e = verify(std::slice::from_ref(&file), &key(dir.path()), false).unwrap_err();
    assert_eq!((e.kind, e.seq), (FindingKind::Changed, Some(3)), "{e}");
    assert!(e.at.ends_with(":3"), "{e}");
    // A changed byte in a record's own `prev` names that record, not the one before.
    let mut l = lines(&file);
    l[2] = l[2].replace("alicf", "alice");
    let p = l[5].find("\"prev\":\"").unwrap() + 8;
    let flipped = if &l[5][p..p + 1] == "a" { "b" } else { "a" };
    l[5].replace_range(p..p + 1, flipped);
    write_lines(&file, &l);
    let e = verify(&[file], &key(dir.path()), false).unwrap_err();
    assert_eq!((e.kind, e.seq), (FindingKind::Changed, Some(6)), "{e}");
}

#[test]
fn a_deleted_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = trail(dir.path(), 10);
    let mut l = lines(&file);
    l.remove(6); // seq 7
    write_lines(&file, &l);
    let e = verify(&[file], &key(dir.path()), false).unwrap_err();
    assert_eq!((e.kind, e.seq), (FindingKind::Removed, Some(7)), "{e}");
}

#[test]
fn swapped_records_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = trail(dir.path(), 10);
    let mut l = lines(&file);
    l.swap(1, 2); // seq 2 and 3
    write_lines(&file, &l);
    let e = verify(&[file], &key(dir.path()), false).unwrap_err();
    assert_eq!((e.kind, e.seq), (FindingKind::Reordered, Some(2)), "{e}");
    assert!(e.at.ends_with(":3"), "{e}");
}

#[test]
fn an_inserted_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = trail(dir.path(), 10);
    let mut l = lines(&file);
    // A forged record chained to seq 4, inserted before seq 5 (a naive forger).
    let forged = compose(
        5,
        &hash(l[3].as_bytes()),
        "2026-01-01T00:00:00.000Z",
        "decision",
        r#"{"who":"mallory"}"#,
    );
    l.insert(4, forged);
    write_lines(&file, &l);
    let e = verify(std::slice::from_ref(&file), &key(dir.path()), false).unwrap_err();
    assert_eq!((e.kind, e.seq), (FindingKind::Inserted, Some(5)), "{e}");
    assert!(e.at.ends_with(":5"), "{e}");
    // A forger who does not even chain it: named the same way.
    let mut l = lines(&file);
    l.remove(4);
    let forged = compose(5, &hash(b"x"), "2026-01-01T00:00:00.000Z", "decision", "{}");
    l.insert(4, forged);
    write_lines(&file, &l);
    let e = verify(&[file], &key(dir.path()), false).unwrap_err();
    assert_eq!((e.kind, e.seq), (FindingKind::Inserted, Some(5)), "{e}");
    assert!(e.at.ends_with(":5"), "{e}");
}

#[test]
fn rewriting_with_recomputed_hashes_fails_the_next_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let file = trail(dir.path(), 10);
    let mut l = lines(&file);
    // Change record 2 and recompute every later `prev`: only signatures catch this.
    l[1] = l[1].replace("alice", "mallory");
    for i in 2..l.len() {
        let prev = hash(l[i - 1].as_bytes());
        let p = l[i].find("\"prev\":\"").unwrap() + 8;
        l[i].replace_range(p..p + 64, &prev);
    }
    write_lines(&file, &l);
    let e = verify(&[file], &key(dir.path()), false).unwrap_err();
    assert_eq!((e.kind, e.seq), (FindingKind::Rewritten, Some(5)), "{e}");
}

#[test]
fn a_truncated_tail_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let file = trail(dir.path(), 10);
    let mut l = lines(&file);
    l.truncate(l.len() - 3);
    write_lines(&file, &l);
    let e = verify(std::slice::from_ref(&file), &key(dir.path()), false).unwrap_err();
    assert_eq!(e.kind, FindingKind::Truncated, "{e}");
    assert!(e.message.contains("seq 11"), "{e}");
    // An open trail (writer running) is accepted with --open, its unsigned tail counted.
    let s = verify(std::slice::from_ref(&file), &key(dir.path()), true).unwrap();
    assert_eq!((s.last_seq, s.unsigned_tail), (11, 1));
    // Cut mid-record.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, &text[..text.len() - 10]).unwrap();
    let e = verify(&[file], &key(dir.path()), true).unwrap_err();
    assert_eq!((e.kind, e.seq), (FindingKind::Truncated, Some(11)), "{e}");
}

#[test]
fn a_torn_tail_is_repaired_with_a_recovery_record_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let file = trail(dir.path(), 3);
    let mut text = std::fs::read_to_string(&file).unwrap();
    // A crash mid-write: a record without its end.
    let torn = "{\"seq\":9,\"prev\":\"00";
    text.push_str(torn);
    std::fs::write(&file, text).unwrap();
    rt().block_on(async {
        let log = AuditLog::open(options(dir.path(), Durability::Strict)).unwrap();
        log.event("decision", &serde_json::json!({"after": "crash"}))
            .durable()
            .await
            .unwrap();
        log.close(&serde_json::json!({}), Duration::from_secs(5))
            .await;
    });
    let s = verify(&[dir.path().join("audit")], &key(dir.path()), false).unwrap();
    assert!(s.closed);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("\"seq\":9,\"prev\":\"00\n"));
    let recovery = text
        .lines()
        .find(|l| l.contains("\"kind\":\"recovery\""))
        .unwrap();
    let torn_bytes = format!("\"torn_bytes\":{}", torn.len());
    assert!(recovery.contains(&torn_bytes), "{recovery}");
}

#[test]
fn rotation_starts_new_files_and_the_chain_continues_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path(), Durability::Strict);
    o.rotate_bytes = 2000;
    rt().block_on(async {
        for round in 0..2 {
            let log = AuditLog::open(o.clone()).unwrap();
            for i in 0..30 {
                log.event("decision", &serde_json::json!({"round": round, "n": i}))
                    .durable()
                    .await
                    .unwrap();
            }
            assert!(log.stats().rotations >= 2, "{:?}", log.stats());
            log.close(&serde_json::json!({}), Duration::from_secs(5))
                .await;
        }
    });
    let files = segment::list(&dir.path().join("audit")).unwrap();
    assert!(files.len() >= 4, "{files:?}");
    for f in &files[..files.len() - 1] {
        let last = lines(f).pop().unwrap();
        assert!(
            last.contains("\"kind\":\"checkpoint\""),
            "{f:?} ends with {last}"
        );
    }
    let s = verify(&[dir.path().join("audit")], &key(dir.path()), false).unwrap();
    assert_eq!(s.files, files.len());
    // A missing middle file is a removal.
    std::fs::remove_file(&files[1]).unwrap();
    let e = verify(&[dir.path().join("audit")], &key(dir.path()), false).unwrap_err();
    assert_eq!(e.kind, FindingKind::Removed, "{e}");
}

#[test]
fn concurrent_strict_submitters_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path(), Durability::Strict);
    o.checkpoint_every = 1000;
    let stats = rt().block_on(async {
        let log = AuditLog::open(o).unwrap();
        let mut tasks = Vec::new();
        for t in 0..64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..20 {
                    let p = log.event("decision", &serde_json::json!({"t": t, "i": i}));
                    p.durable().await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let stats = log.stats();
        log.close(&serde_json::json!({}), Duration::from_secs(5))
            .await;
        stats
    });
    assert_eq!(stats.backlog, 0);
    assert!(stats.records >= 1280, "{stats:?}");
    assert!(
        stats.fsyncs < stats.records / 2,
        "group commit: {} fsyncs for {} records",
        stats.fsyncs,
        stats.records
    );
    verify(&[dir.path().join("audit")], &key(dir.path()), false).unwrap();
}

#[test]
fn a_full_disk_refuses_strict_records_then_recovers_with_a_gap_record() {
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    rt().block_on(async {
        let log =
            AuditLog::open_failing(options(dir.path(), Durability::Strict), fail.clone()).unwrap();
        log.event("decision", &serde_json::json!({"n": 1}))
            .durable()
            .await
            .unwrap();
        fail.store(true, std::sync::atomic::Ordering::Relaxed);
        let e = log
            .event("decision", &serde_json::json!({"n": 2}))
            .durable()
            .await;
        assert!(e.unwrap_err().0.contains("No space left"));
        let s = log.stats();
        assert!(
            s.unavailable && s.write_failures == 1 && s.lost == 1 && s.refused == 1,
            "{s:?}"
        );
        fail.store(false, std::sync::atomic::Ordering::Relaxed);
        log.event("decision", &serde_json::json!({"n": 3}))
            .durable()
            .await
            .unwrap();
        assert!(!log.stats().unavailable);
        log.close(&serde_json::json!({}), Duration::from_secs(5))
            .await;
    });
    verify(&[dir.path().join("audit")], &key(dir.path()), false).unwrap();
    let text =
        std::fs::read_to_string(&segment::list(&dir.path().join("audit")).unwrap()[0]).unwrap();
    assert!(!text.contains("\"n\":2"));
    let gap = text
        .lines()
        .find(|l| l.contains("\"kind\":\"gap\""))
        .unwrap();
    assert!(gap.contains("\"lost\":1"), "{gap}");
}

#[test]
fn relaxed_records_are_written_within_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let log = AuditLog::open(options(dir.path(), Durability::Relaxed)).unwrap();
        log.event("decision", &serde_json::json!({"n": 1}))
            .durable()
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while log.stats().records == 0 {
            assert!(std::time::Instant::now() < deadline, "not flushed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(log);
    });
    // Dropping the last handle closes the trail with a final checkpoint.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if verify(&[dir.path().join("audit")], &key(dir.path()), false).is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never closed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A one-shot-per-connection HTTP intake on loopback: collects every request body.
fn intake() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/intake", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    (url, rx)
}

#[test]
fn records_are_shipped_to_the_sink_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (url, bodies) = intake();
    let mut o = options(dir.path(), Durability::Strict);
    o.sink = Some(crate::SinkOptions {
        url,
        protocol: crate::SinkProtocol::Http,
        queue: 100,
    });
    let log = rt().block_on(async {
        let log = AuditLog::open(o).unwrap();
        for i in 0..3 {
            log.event("decision", &serde_json::json!({"n": i}))
                .durable()
                .await
                .unwrap();
        }
        log.close(&serde_json::json!({}), Duration::from_secs(5))
            .await;
        log
    });
    let file = segment::list(&dir.path().join("audit")).unwrap()[0].clone();
    let written = lines(&file);
    let mut shipped = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while shipped.len() < written.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let body = bodies.recv_timeout(left).expect("records shipped in time");
        shipped.extend(body.lines().map(str::to_string));
    }
    assert_eq!(shipped, written);
    assert_eq!(log.stats().sink_dropped, 0);
}
