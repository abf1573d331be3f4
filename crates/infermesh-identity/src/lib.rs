//! Workload identity for the mesh: SPIFFE IDs ([`SpiffeId`]), the built-in CA
//! ([`Ca`], kept on disk by [`CaStore`] with 0600 files), X.509-SVIDs issued from
//! workload CSRs and renewed in the background ([`WorkloadIdentity`], from a
//! [`Signer`] or from an external CA's [`CertFiles`]), trust bundles with several
//! roots ([`TrustBundle`]), a client of the CA service ([`RemoteCa`]), and the rustls configurations of mesh hops with SPIFFE
//! peer verification ([`server_config`], [`client_config`]).
//!
//! ```text
//! CaStore (ca.pem, ca.key, bundle.pem; 0600) ──LocalCa──▶ Signer ──CSR──▶ chain + bundle
//! CertFiles (external CA, re-read on change) ───────────────────────────▶ chain + bundle
//!                                              WorkloadIdentity (ArcSwap, renewal task)
//!                                              └▶ server_config / client_config (rustls)
//! ```
#![forbid(unsafe_code)]

mod bundle;
mod ca;
mod cert;
mod error;
mod remote;
mod source;
mod spiffe;
mod store;
mod tls;
mod workload;

pub use bundle::{TrustBundle, provider};
pub use ca::{Ca, ROOT_LIFETIME, new_key_and_csr};
pub use cert::{CertInfo, certs_from_pem, certs_to_pem, inspect, key_from_pem};
pub use error::IdentityError;
pub use remote::{RemoteCa, SIGN_PATH, answer};
pub use source::{CA_SWITCH_DELAY, CertFiles, Issued, LocalCa, Signer};
pub use spiffe::SpiffeId;
pub use store::{BUNDLE, CA_CERT, CA_KEY, CaStore, Init, write_private};
pub use tls::{
    ALPN, MinTls, PeerPolicy, client_config, client_config_for_bundle, peer_id, server_config,
    server_config_without_client_auth,
};
pub use workload::{
    DEFAULT_LIFETIME, DEFAULT_RENEW_FRACTION, EventKind, IdentityEvent, Rotation, Source,
    WARN_FRACTION, WorkloadIdentity,
};

#[cfg(test)]
mod tests;
