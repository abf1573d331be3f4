//! The dev issuer's signing keys on disk: `<state>/issuer/current.p8` and
//! `previous.p8` (PKCS#8 DER, ES256), directory 0700, files 0600, written to a
//! temporary file first. Key bytes are never logged.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

use super::DevIssuerError;

pub(super) const CURRENT: &str = "current.p8";
pub(super) const PREVIOUS: &str = "previous.p8";

/// The issuer's key directory, created 0700.
pub(super) fn key_dir(state_dir: &Path) -> Result<PathBuf, DevIssuerError> {
    let dir = state_dir.join("issuer");
    fs::create_dir_all(&dir).map_err(|e| DevIssuerError::io(&dir, e))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| DevIssuerError::io(&dir, e))?;
    Ok(dir)
}

/// A fresh ES256 (P-256) private key, PKCS#8 DER.
pub(super) fn generate() -> Result<Vec<u8>, DevIssuerError> {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|_| DevIssuerError::Crypto("key generation failed".into()))?;
    Ok(doc.as_ref().to_vec())
}

/// Checks that `der` is a P-256 PKCS#8 private key.
pub(super) fn check(der: &[u8]) -> Result<(), DevIssuerError> {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
        .map(|_| ())
        .map_err(|_| DevIssuerError::Crypto("stored signing key is not a P-256 PKCS#8 key".into()))
}

/// Reads a key file if it exists (and tightens its mode to 0600).
pub(super) fn read(path: &Path) -> Result<Option<Vec<u8>>, DevIssuerError> {
    match fs::read(path) {
        Ok(bytes) => {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                .map_err(|e| DevIssuerError::io(path, e))?;
            check(&bytes)?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DevIssuerError::io(path, e)),
    }
}

/// Writes `bytes` to a new 0600 temporary file in `dir` and returns its path.
fn write_temp(dir: &Path, bytes: &[u8]) -> Result<PathBuf, DevIssuerError> {
    let tmp = dir.join(format!(
        ".key-{}-{}.tmp",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| DevIssuerError::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| DevIssuerError::io(&tmp, e))?;
    Ok(tmp)
}

/// Creates `path` with `bytes` unless it already exists (another process won the
/// race): returns the bytes now stored there.
pub(super) fn create_if_absent(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DevIssuerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = write_temp(dir, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(bytes.to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.ok_or_else(|| DevIssuerError::io(path, e))
        }
        Err(e) => Err(DevIssuerError::io(path, e)),
    }
}

/// Rotation on disk: current → previous, `new` → current.
pub(super) fn rotate(dir: &Path, new: &[u8]) -> Result<(), DevIssuerError> {
    let tmp = write_temp(dir, new)?;
    let current = dir.join(CURRENT);
    let previous = dir.join(PREVIOUS);
    let step = fs::rename(&current, &previous)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .and_then(|_| fs::rename(&tmp, &current));
    if let Err(e) = step {
        let _ = fs::remove_file(&tmp);
        return Err(DevIssuerError::io(&current, e));
    }
    Ok(())
}
