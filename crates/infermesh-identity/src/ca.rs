//! The built-in CA: a self-signed root it creates, or an existing root or
//! intermediate (cert-manager, Vault PKI, SPIRE, Istio's CA) loaded from PEM. It
//! signs workload CSRs into X.509-SVIDs — one URI SAN (the SPIFFE ID the caller was
//! authenticated as, whatever the CSR asked for), not a CA, key usage
//! digitalSignature, short-lived. It only ever sees the workload's public key.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use sha2::{Digest, Sha256};

use crate::cert::{certs_from_pem, certs_to_pem, inspect};
use crate::error::IdentityError;
use crate::spiffe::SpiffeId;

/// How far `not_before` is set in the past, for clocks slightly behind.
const BACKDATE: Duration = Duration::from_secs(60);
/// Lifetime of a root `ca init` / `ca rotate` creates.
pub const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A signing CA: its certificate chain (the CA first) and key.
pub struct Ca {
    chain: Vec<CertificateDer<'static>>,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Ca")
            .field("chain", &self.chain.len())
            .finish()
    }
}

fn offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

fn serial(seed: &[u8]) -> SerialNumber {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_be_bytes(),
    );
    let mut bytes = h.finalize()[..16].to_vec();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

impl Ca {
    /// A new self-signed root for `trust_domain` (ECDSA P-256).
    pub fn generate_root(trust_domain: &str, lifetime: Duration) -> Result<Ca, IdentityError> {
        let key = KeyPair::generate()?;
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "infermesh");
        let serial = serial(trust_domain.as_bytes());
        let tag: String = serial.to_bytes()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // Unique per root, so rotated roots never share a subject name.
        dn.push(
            DnType::CommonName,
            format!("infermesh root CA {trust_domain} {tag}"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let td_uri = format!("spiffe://{trust_domain}");
        params.subject_alt_names = vec![SanType::URI(td_uri.try_into()?)];
        params.not_before = offset(now - BACKDATE);
        params.not_after = offset(now + lifetime);
        params.serial_number = Some(serial);
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            chain: vec![cert.der().clone()],
            key,
        })
    }

    /// An existing CA: `cert_pem` holds its certificate first (then, for an
    /// intermediate, the certificates up to its root); `key_pem` its PKCS#8 key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, IdentityError> {
        let chain = certs_from_pem(cert_pem.as_bytes(), "CA certificate")?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|_| IdentityError::Pem("CA key: no readable PKCS#8 PRIVATE KEY".into()))?;
        let info = inspect(&chain[0])?;
        if !info.is_ca {
            return Err(IdentityError::Certificate(format!(
                "{} is not a CA certificate (basicConstraints CA:TRUE missing)",
                info.subject
            )));
        }
        if info.spki != key.subject_public_key_info() {
            return Err(IdentityError::Certificate(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        if info.not_after <= SystemTime::now() {
            return Err(IdentityError::Certificate(format!(
                "the CA certificate {} has expired",
                info.subject
            )));
        }
        Ok(Ca { chain, key })
    }

    /// The CA certificate chain as PEM (the CA first).
    pub fn cert_pem(&self) -> String {
        certs_to_pem(&self.chain)
    }

    /// The CA key as PKCS#8 PEM, for the 0600 store only.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The root this CA chains to: the last certificate of its chain.
    pub fn root(&self) -> &CertificateDer<'static> {
        self.chain.last().unwrap_or(&self.chain[0])
    }

    /// The CA certificates a workload sends after its leaf (all but a self-issued root).
    pub fn intermediates(&self) -> Vec<CertificateDer<'static>> {
        self.chain
            .iter()
            .filter(|c| inspect(c).map(|i| !i.self_issued).unwrap_or(false))
            .cloned()
            .collect()
    }

    /// Signs a CSR into an X.509-SVID for `id`, valid for `lifetime`. The CSR's
    /// signature is checked (the caller holds the key); its requested names and
    /// extensions are ignored: the certificate names `id` only.
    pub fn sign_csr(
        &self,
        csr_der: &[u8],
        id: &SpiffeId,
        lifetime: Duration,
    ) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
        let csr =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(|e| IdentityError::Signing(format!("invalid CSR: {e}")))?;
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, id.trust_domain());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(id.uri().try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = offset(now - BACKDATE.min(lifetime));
        params.not_after = offset(now + lifetime);
        params.serial_number = Some(serial(id.uri().as_bytes()));
        let issuer = Issuer::from_ca_cert_der(&self.chain[0], &self.key)?;
        let leaf = params.signed_by(&csr.public_key, &issuer)?;
        let mut chain = vec![leaf.der().clone()];
        chain.extend(self.intermediates());
        Ok(chain)
    }
}

/// A new workload key and a CSR naming `id`, signed with it. The key stays with the
/// caller.
pub fn new_key_and_csr(id: &SpiffeId) -> Result<(KeyPair, Vec<u8>), IdentityError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(id.uri().try_into()?)];
    let csr = params.serialize_request(&key)?;
    Ok((key, csr.der().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_leaves_are_x509_svids() {
        let ca = Ca::generate_root("cluster.local", ROOT_LIFETIME).unwrap();
        let id = SpiffeId::new("cluster.local", "ml", "tfserving").unwrap();
        // The CSR asks for another identity: the certificate names the authorized one.
        let other = SpiffeId::new("cluster.local", "kube-system", "admin").unwrap();
        let (_key, csr) = new_key_and_csr(&other).unwrap();
        let chain = ca.sign_csr(&csr, &id, Duration::from_secs(10)).unwrap();
        assert_eq!(chain.len(), 1, "a root signs leaves directly");
        let info = inspect(&chain[0]).unwrap();
        assert_eq!(info.uris, vec![id.uri()]);
        assert!(!info.is_ca);
        let left = info
            .not_after
            .duration_since(SystemTime::now())
            .unwrap()
            .as_secs();
        assert!((8..=10).contains(&left), "{left}");
        let (_, x) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        let ku = x.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign());
    }

    #[test]
    fn a_ca_loads_back_from_pem_and_a_leaf_is_refused_as_ca() {
        let ca = Ca::generate_root("cluster.local", ROOT_LIFETIME).unwrap();
        let again = Ca::from_pem(&ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.root(), ca.root());
        let id = SpiffeId::new("cluster.local", "ml", "a").unwrap();
        let (key, csr) = new_key_and_csr(&id).unwrap();
        let leaf = ca.sign_csr(&csr, &id, Duration::from_secs(60)).unwrap();
        let err = Ca::from_pem(&certs_to_pem(&leaf), &key.serialize_pem()).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
        let other = Ca::generate_root("cluster.local", ROOT_LIFETIME).unwrap();
        let err = Ca::from_pem(&ca.cert_pem(), &other.key_pem()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn a_bad_csr_signature_is_refused() {
        let ca = Ca::generate_root("cluster.local", ROOT_LIFETIME).unwrap();
        let id = SpiffeId::new("cluster.local", "ml", "a").unwrap();
        let (_, mut csr) = new_key_and_csr(&id).unwrap();
        let last = csr.len() - 1;
        csr[last] ^= 0x55;
        assert!(ca.sign_csr(&csr, &id, Duration::from_secs(60)).is_err());
    }
}
