//! What can go wrong with identities, CAs and certificate files.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid SPIFFE ID: {0}")]
    InvalidSpiffeId(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Pem(String),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("certificate signing: {0}")]
    Signing(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
}

impl IdentityError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> IdentityError {
        IdentityError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<rcgen::Error> for IdentityError {
    fn from(e: rcgen::Error) -> Self {
        IdentityError::Signing(e.to_string())
    }
}

impl From<rustls::Error> for IdentityError {
    fn from(e: rustls::Error) -> Self {
        IdentityError::Tls(e.to_string())
    }
}
