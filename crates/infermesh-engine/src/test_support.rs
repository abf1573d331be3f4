//! Helpers shared by the unit tests: where the TF Serving test models live.

use std::path::PathBuf;

/// `shared/testdata/tfserving`, or `None` (after saying why the test skips).
pub fn tfserving_testdata() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testdata/tfserving"
    ));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: TF Serving test models not found at {} (shared/ is not beside the repo)",
            dir.display()
        );
        None
    }
}

/// The half_plus_two_cpu version directory.
pub fn half_plus_two() -> Option<PathBuf> {
    tfserving_testdata().map(|d| d.join("saved_model_half_plus_two_cpu/00000123"))
}
