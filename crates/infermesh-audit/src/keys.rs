//! The checkpoint signing key: Ed25519, kept as PKCS#8 PEM in a file readable by its
//! owner only (0600; created so, and refused if group or others can read it), and its
//! public key exported beside it (`<key>.pub`, SPKI PEM, the form `openssl pkey
//! -pubin` reads) for `infermesh audit verify --public-key`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::AuditError;
use crate::record::{hash, hex};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The loaded signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    /// Short identifier of the public key (first 16 hex digits of its SHA-256).
    pub id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("id", &self.id).finish()
    }
}

impl SigningKey {
    /// Base64 Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.pair.sign(message).as_ref())
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.pair.public_key().as_ref().to_vec())
    }
}

/// An Ed25519 public key (32 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(Vec<u8>);

impl PublicKey {
    /// The key id checkpoints name.
    pub fn id(&self) -> String {
        key_id(&self.0)
    }

    /// Whether `signature` (base64) is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Ok(sig) = STANDARD.decode(signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, &sig)
            .is_ok()
    }

    /// SPKI PEM text.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        pem("PUBLIC KEY", &der)
    }

    /// Reads a public key file: SPKI PEM (as exported), or 64 hex digits.
    pub fn read(path: &Path) -> Result<PublicKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        PublicKey::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let text = text.trim();
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let bytes = (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect();
            return Ok(PublicKey(bytes));
        }
        let der = unpem(text, "PUBLIC KEY")?;
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(key) if key.len() == 32 => Ok(PublicKey(key.to_vec())),
            _ => Err("not an Ed25519 public key (SPKI PEM)".into()),
        }
    }
}

fn key_id(public: &[u8]) -> String {
    hash(public)[..16].to_owned()
}

/// Where the public key of `key` is exported: the same name with `.pub`.
pub fn public_path(key: &Path) -> PathBuf {
    key.with_extension("pub")
}

/// Loads the key at `path`, creating it (0600) if absent, and (re)writes its public
/// key beside it.
pub fn load_or_create(path: &Path) -> Result<SigningKey, AuditError> {
    let err = |message: String| AuditError::Key {
        path: path.to_path_buf(),
        message,
    };
    let pkcs8 = match std::fs::read_to_string(path) {
        Ok(text) => {
            check_private(path).map_err(err)?;
            unpem(&text, "PRIVATE KEY").map_err(err)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| err("cannot generate a key".into()))?;
            if let Err(e) = write_private(path, &pem("PRIVATE KEY", doc.as_ref())) {
                if path.exists() {
                    // Another process (a sidecar next to its gateway) created it first.
                    return load_or_create(path);
                }
                return Err(err(e));
            }
            tracing::info!(key = %path.display(), "created the audit signing key (0600)");
            doc.as_ref().to_vec()
        }
        Err(e) => return Err(err(format!("cannot read: {e}"))),
    };
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
        .map_err(|e| err(format!("not an Ed25519 PKCS#8 key: {e}")))?;
    let id = key_id(pair.public_key().as_ref());
    let key = SigningKey { pair, id };
    let public = public_path(path);
    std::fs::write(&public, key.public().to_pem())
        .map_err(|e| err(format!("cannot write {}: {e}", public.display())))?;
    Ok(key)
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "readable by group or others (mode {:o}); `chmod 600` it",
            mode & 0o777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), String> {
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create: {e}"))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write: {e}"))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn unpem(text: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(body, _)| body)
        .ok_or_else(|| format!("not a PEM `{label}`"))?;
    let b64: String = body.split_whitespace().collect();
    STANDARD
        .decode(b64)
        .map_err(|e| format!("bad base64 in PEM: {e}"))
}

/// Hex of a public key (for messages).
pub fn fingerprint(key: &PublicKey) -> String {
    hex(&key.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_0600_reloaded_and_their_public_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/audit.key");
        let key = load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = load_or_create(&path).unwrap();
        assert_eq!(key.id, again.id);
        let public = PublicKey::read(&public_path(&path)).unwrap();
        assert_eq!(public.id(), key.id);
        let sig = key.sign(b"m");
        assert!(public.verifies(b"m", &sig));
        assert!(!public.verifies(b"n", &sig));
        assert_eq!(PublicKey::parse(&fingerprint(&public)).unwrap(), public);
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
