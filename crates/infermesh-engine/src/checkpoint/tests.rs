//! Checkpoint reader tests on the TF Serving test models (skipped without shared/).

use std::path::{Path, PathBuf};

use super::*;
use crate::test_support::tfserving_testdata;

fn values(t: &Tensor) -> Vec<f32> {
    t.to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

fn prefix(model: &str) -> Option<PathBuf> {
    tfserving_testdata().map(|d| d.join(model).join("00000123/variables/variables"))
}

/// Copies a checkpoint into a temp dir so a test can damage it.
fn copy_checkpoint(prefix: &Path, dir: &Path) -> PathBuf {
    let src = prefix.parent().unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir.join("variables")
}

#[test]
fn reads_snappy_checkpoint_of_half_plus_two() {
    let Some(prefix) = prefix("saved_model_half_plus_two_cpu") else {
        return;
    };
    let ckpt = Checkpoint::open(&prefix).unwrap();
    assert_eq!(ckpt.len(), 5);
    let all: Vec<f32> = ["a", "a2", "b", "c", "c2"]
        .iter()
        .flat_map(|name| {
            let t = ckpt.read(name).unwrap();
            assert_eq!(t.shape(), &[] as &[usize]);
            values(&t)
        })
        .collect();
    assert_eq!(all, vec![0.5, 0.5, 2.0, 3.0, 3.0]);
    assert!(ckpt.read("nope").is_err());
}

#[test]
fn reads_uncompressed_checkpoint_of_half_plus_three() {
    let Some(prefix) = prefix("saved_model_half_plus_three") else {
        return;
    };
    let ckpt = Checkpoint::open(&prefix).unwrap();
    assert_eq!(values(&ckpt.read("a").unwrap()), vec![0.5]);
    assert_eq!(values(&ckpt.read("b").unwrap()), vec![3.0]);
}

#[test]
fn corrupt_index_fails_with_checksum_error() {
    let Some(prefix) = prefix("saved_model_half_plus_two_cpu") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_checkpoint(&prefix, dir.path());
    let index = with_suffix(&copy, ".index");
    let mut bytes = std::fs::read(&index).unwrap();
    bytes[3] ^= 0x55;
    std::fs::write(&index, &bytes).unwrap();
    let err = Checkpoint::open(&copy).unwrap_err().to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains("variables.index"), "{err}");

    std::fs::write(&index, &bytes[..20]).unwrap();
    let err = Checkpoint::open(&copy).unwrap_err().to_string();
    assert!(err.contains("shorter than a table footer"), "{err}");

    std::fs::write(&index, vec![0u8; 100]).unwrap();
    let err = Checkpoint::open(&copy).unwrap_err().to_string();
    assert!(err.contains("bad table magic"), "{err}");
}

#[test]
fn corrupt_data_fails_with_checksum_error() {
    let Some(prefix) = prefix("saved_model_half_plus_two_cpu") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_checkpoint(&prefix, dir.path());
    let data = with_suffix(&copy, ".data-00000-of-00001");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();
    let ckpt = Checkpoint::open(&copy).unwrap();
    let err = ckpt.read("a").unwrap_err().to_string();
    assert!(
        err.contains("checksum mismatch") && err.contains("\"a\""),
        "{err}"
    );
    assert!(ckpt.read("b").is_ok());

    std::fs::write(&data, &bytes[..4]).unwrap();
    let err = ckpt.read("c2").unwrap_err().to_string();
    assert!(err.contains("reading 4 bytes"), "{err}");
}
