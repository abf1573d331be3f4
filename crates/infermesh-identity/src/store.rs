//! The built-in CA on disk: a directory (mode 0700) with `ca.pem` (the CA
//! certificate, then its chain), `ca.key` (its key) and `bundle.pem` (every root
//! workloads trust), each written 0600 through a temporary file and a rename, so a
//! reader never sees half a file. `rotate` adds a new root to the bundle before it
//! starts signing with it, so certificates of the old and the new root are both
//! trusted while they overlap.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

use crate::ca::{Ca, ROOT_LIFETIME};
use crate::cert::{certs_from_pem, certs_to_pem, inspect};
use crate::error::IdentityError;

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const BUNDLE: &str = "bundle.pem";

/// A CA directory.
#[derive(Clone, Debug)]
pub struct CaStore {
    dir: PathBuf,
}

/// What `ca init` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Init {
    Created,
    Imported,
    AlreadyThere,
}

/// Writes `bytes` to `path` with mode 0600, replacing it at once.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // An existing temp file keeps its mode: set it again.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        IdentityError::io(path, e)
    })
}

fn read(path: &Path) -> Result<String, IdentityError> {
    fs::read_to_string(path).map_err(|e| IdentityError::io(path, e))
}

impl CaStore {
    pub fn new(dir: impl Into<PathBuf>) -> CaStore {
        CaStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Whether the directory holds a CA.
    pub fn exists(&self) -> bool {
        self.path(CA_KEY).exists()
    }

    fn create_dir(&self) -> Result<(), IdentityError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| IdentityError::io(&self.dir, e))
    }

    /// Creates a root for `trust_domain`, or imports `existing` (certificate and key
    /// PEM files). A directory that already holds a CA is left as it is.
    pub fn init(
        &self,
        trust_domain: &str,
        existing: Option<(&Path, &Path)>,
    ) -> Result<Init, IdentityError> {
        if self.exists() {
            return Ok(Init::AlreadyThere);
        }
        self.create_dir()?;
        let (ca, what) = match existing {
            Some((cert, key)) => (Ca::from_pem(&read(cert)?, &read(key)?)?, Init::Imported),
            None => (
                Ca::generate_root(trust_domain, ROOT_LIFETIME)?,
                Init::Created,
            ),
        };
        write_private(
            &self.path(BUNDLE),
            certs_to_pem(&[ca.root().clone()]).as_bytes(),
        )?;
        self.write_ca(&ca)?;
        Ok(what)
    }

    fn write_ca(&self, ca: &Ca) -> Result<(), IdentityError> {
        // The key first: a reader that sees a new certificate with the old key
        // refuses the pair (they do not match) and tries again later.
        write_private(&self.path(CA_KEY), ca.key_pem().as_bytes())?;
        write_private(&self.path(CA_CERT), ca.cert_pem().as_bytes())
    }

    /// Loads the CA and the trust bundle.
    pub fn load(&self) -> Result<(Ca, Vec<CertificateDer<'static>>), IdentityError> {
        let ca = Ca::from_pem(&read(&self.path(CA_CERT))?, &read(&self.path(CA_KEY))?)?;
        let bundle = certs_from_pem(read(&self.path(BUNDLE))?.as_bytes(), "trust bundle")?;
        Ok((ca, bundle))
    }

    /// The files' contents, for change detection (`None` if one is unreadable).
    pub fn fingerprint(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for f in [CA_CERT, CA_KEY, BUNDLE] {
            out.extend(fs::read(self.path(f)).ok()?);
        }
        Some(out)
    }

    /// CA rotation: a new root joins the bundle (the old roots stay trusted), then
    /// becomes the signing CA. Expired roots leave the bundle. Returns the bundle size.
    pub fn rotate(&self, trust_domain: &str) -> Result<usize, IdentityError> {
        let (_, mut bundle) = self.load()?;
        let new = Ca::generate_root(trust_domain, ROOT_LIFETIME)?;
        let now = std::time::SystemTime::now();
        bundle.retain(|c| inspect(c).map(|i| i.not_after > now).unwrap_or(false));
        bundle.push(new.root().clone());
        write_private(&self.path(BUNDLE), certs_to_pem(&bundle).as_bytes())?;
        self.write_ca(&new)?;
        Ok(bundle.len())
    }

    /// Ends an overlap: the bundle keeps only the signing CA's root.
    pub fn prune(&self) -> Result<usize, IdentityError> {
        let (ca, _) = self.load()?;
        write_private(
            &self.path(BUNDLE),
            certs_to_pem(&[ca.root().clone()]).as_bytes(),
        )?;
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_private_and_rotation_keeps_the_old_root() {
        let tmp = tempfile::tempdir().unwrap();
        let store = CaStore::new(tmp.path().join("ca"));
        assert_eq!(store.init("cluster.local", None).unwrap(), Init::Created);
        assert_eq!(mode(store.dir()), 0o700);
        for f in [CA_CERT, CA_KEY, BUNDLE] {
            assert_eq!(mode(&store.path(f)), 0o600, "{f}");
        }
        let (old, _) = store.load().unwrap();
        assert_eq!(
            store.init("cluster.local", None).unwrap(),
            Init::AlreadyThere
        );
        assert_eq!(store.rotate("cluster.local").unwrap(), 2);
        let (new, bundle) = store.load().unwrap();
        assert_ne!(old.root(), new.root());
        assert!(bundle.contains(old.root()) && bundle.contains(new.root()));
        assert_eq!(mode(&store.path(CA_KEY)), 0o600);
        assert_eq!(store.prune().unwrap(), 1);
        assert_eq!(store.load().unwrap().1, vec![new.root().clone()]);
    }

    #[test]
    fn an_existing_ca_is_imported() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::generate_root("cluster.local", ROOT_LIFETIME).unwrap();
        let (cert, key) = (tmp.path().join("c.pem"), tmp.path().join("k.pem"));
        fs::write(&cert, ca.cert_pem()).unwrap();
        fs::write(&key, ca.key_pem()).unwrap();
        let store = CaStore::new(tmp.path().join("ca"));
        let got = store.init("cluster.local", Some((&cert, &key))).unwrap();
        assert_eq!(got, Init::Imported);
        assert_eq!(store.load().unwrap().0.root(), ca.root());
        assert_eq!(mode(&store.path(CA_KEY)), 0o600);
    }
}
