//! Reading certificates and keys: PEM files into DER, and the parts of an X.509
//! certificate the mesh decides on (the SPIFFE ID in the one URI SAN, validity, CA
//! flag), with x509-parser.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::IdentityError;
use crate::spiffe::SpiffeId;

/// What the mesh reads from one certificate.
#[derive(Clone, Debug)]
pub struct CertInfo {
    /// Every URI SAN.
    pub uris: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub is_ca: bool,
    /// Subject and issuer names are equal (a root).
    pub self_issued: bool,
    /// The DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// The subject, for log lines.
    pub subject: String,
}

impl CertInfo {
    /// The X.509-SVID identity: exactly one URI SAN, a valid SPIFFE ID.
    pub fn spiffe_id(&self) -> Result<SpiffeId, IdentityError> {
        match self.uris.as_slice() {
            [uri] => SpiffeId::parse(uri),
            [] => Err(IdentityError::Certificate(
                "no URI SAN (not an X.509-SVID)".into(),
            )),
            _ => Err(IdentityError::Certificate(format!(
                "{} URI SANs (an X.509-SVID has exactly one)",
                self.uris.len()
            ))),
        }
    }
}

fn time(ts: i64) -> SystemTime {
    if ts >= 0 {
        UNIX_EPOCH + Duration::from_secs(ts.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    }
}

/// Parses one DER certificate.
pub fn inspect(der: &[u8]) -> Result<CertInfo, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| IdentityError::Certificate(format!("unreadable certificate: {e}")))?;
    let mut uris = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Certificate(format!("bad subjectAltName: {e}")))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                uris.push((*uri).to_owned());
            }
        }
    }
    let validity = cert.validity();
    Ok(CertInfo {
        uris,
        not_before: time(validity.not_before.timestamp()),
        not_after: time(validity.not_after.timestamp()),
        is_ca: cert.is_ca(),
        self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
        spki: cert.public_key().raw.to_vec(),
        subject: cert.subject().to_string(),
    })
}

/// Every certificate of a PEM text, in order; at least one.
pub fn certs_from_pem(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Pem(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(IdentityError::Pem(format!("{what}: no CERTIFICATE block")));
    }
    Ok(certs)
}

/// The private key of a PEM text (PKCS#8, SEC1 or PKCS#1). The error never
/// contains key material.
pub fn key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, IdentityError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|_| IdentityError::Pem(format!("{what}: no readable PRIVATE KEY block")))
}

/// PEM text of DER certificates.
pub fn certs_to_pem(certs: &[CertificateDer<'_>]) -> String {
    certs
        .iter()
        .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.as_ref().to_vec())))
        .collect()
}
