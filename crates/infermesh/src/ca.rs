//! `infermesh ca init|rotate|prune`: the built-in CA's directory. `init` creates a
//! root (or imports an existing root or intermediate certificate and key, e.g. from
//! cert-manager, Vault PKI, SPIRE or Istio's CA); `rotate` adds a new root to the
//! trust bundle and signs with it from then on, so certificates of both roots are
//! accepted while they overlap; `prune` ends the overlap. Files are written 0600.

use infermesh_identity::{BUNDLE, CA_CERT, CA_KEY, CaStore, Init};

use crate::cli::{CaArgs, CaCommand};
use crate::error::InvalidConfig;

pub async fn run(args: CaArgs) -> anyhow::Result<()> {
    match args.command {
        CaCommand::Serve(a) => crate::ca_serve::serve(a).await,
        CaCommand::Init(a) => {
            let store = CaStore::new(&a.dir);
            let existing = match (&a.cert, &a.key) {
                (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                (None, None) => None,
                _ => return Err(InvalidConfig::error("--cert and --key go together")),
            };
            match store
                .init(&a.trust_domain, existing)
                .map_err(|e| InvalidConfig::error(e.to_string()))?
            {
                Init::Created => println!(
                    "created a root CA for {} in {}",
                    a.trust_domain,
                    a.dir.display()
                ),
                Init::Imported => println!("imported the CA into {}", a.dir.display()),
                Init::AlreadyThere => {
                    println!("{} already holds a CA: left as it is", a.dir.display())
                }
            }
            println!(
                "  {CA_CERT} (CA certificate), {CA_KEY} (its key), {BUNDLE} (trusted roots); mode 0600"
            );
            Ok(())
        }
        CaCommand::Rotate(a) => {
            let store = CaStore::new(&a.dir);
            let roots = store.rotate(&a.trust_domain)?;
            println!(
                "new root in {}: new certificates are signed by it; the bundle trusts {roots} roots \
                 (run `infermesh ca prune` once every certificate of the old root has expired)",
                a.dir.display()
            );
            Ok(())
        }
        CaCommand::Prune(a) => {
            CaStore::new(&a.dir).prune()?;
            println!(
                "the bundle in {} trusts the current root only",
                a.dir.display()
            );
            Ok(())
        }
    }
}
