//! SPIFFE IDs of workloads, `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`,
//! and Istio's principal form of them, `<trust-domain>/ns/<namespace>/sa/<sa>` (what
//! authorization policies match on).

use std::fmt;

use crate::error::IdentityError;

/// A workload's SPIFFE ID in Istio's Kubernetes shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

const SCHEME: &str = "spiffe://";

impl SpiffeId {
    /// Builds an ID, checking every part (non-empty, no `/`, printable ASCII).
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<SpiffeId, IdentityError> {
        let bad = |what: &str, v: &str| IdentityError::InvalidSpiffeId(format!("{what} {v:?}"));
        let td_ok = !trust_domain.is_empty()
            && trust_domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
        if !td_ok {
            return Err(bad("trust domain", trust_domain));
        }
        for (what, v) in [
            ("namespace", namespace),
            ("service account", service_account),
        ] {
            let ok = !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !ok {
                return Err(bad(what, v));
            }
        }
        Ok(SpiffeId {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        })
    }

    /// Parses `spiffe://<td>/ns/<ns>/sa/<sa>`.
    pub fn parse(uri: &str) -> Result<SpiffeId, IdentityError> {
        let rest = uri.strip_prefix(SCHEME).ok_or_else(|| {
            IdentityError::InvalidSpiffeId(format!("{uri:?} does not start with spiffe://"))
        })?;
        SpiffeId::parse_principal(rest).map_err(|_| {
            IdentityError::InvalidSpiffeId(format!(
                "{uri:?} is not spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>"
            ))
        })
    }

    /// Parses Istio's principal form `<td>/ns/<ns>/sa/<sa>`.
    pub fn parse_principal(principal: &str) -> Result<SpiffeId, IdentityError> {
        let parts: Vec<&str> = principal.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] => SpiffeId::new(td, ns, sa),
            _ => Err(IdentityError::InvalidSpiffeId(format!(
                "{principal:?} is not <trust-domain>/ns/<namespace>/sa/<service-account>"
            ))),
        }
    }

    /// Maps a Kubernetes service-account token subject,
    /// `system:serviceaccount:<namespace>:<service-account>`, to its ID.
    pub fn from_k8s_subject(trust_domain: &str, subject: &str) -> Result<SpiffeId, IdentityError> {
        let parts: Vec<&str> = subject.split(':').collect();
        match parts.as_slice() {
            ["system", "serviceaccount", ns, sa] => SpiffeId::new(trust_domain, ns, sa),
            _ => Err(IdentityError::InvalidSpiffeId(format!(
                "subject {subject:?} is not system:serviceaccount:<namespace>:<service-account>"
            ))),
        }
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// Istio's principal form, `<td>/ns/<ns>/sa/<sa>`.
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }

    /// The URI, `spiffe://<td>/ns/<ns>/sa/<sa>`.
    pub fn uri(&self) -> String {
        format!("{SCHEME}{}", self.principal())
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_and_principal_forms_round_trip() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/ml/sa/tfserving").unwrap();
        assert_eq!(id.principal(), "cluster.local/ns/ml/sa/tfserving");
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/ml/sa/tfserving");
        assert_eq!(SpiffeId::parse_principal(&id.principal()).unwrap(), id);
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "cluster.local/ns/ml/sa/x",
            "spiffe://cluster.local/ns/ml",
            "spiffe://cluster.local/ns/ml/sa/",
            "spiffe://Cluster.local/ns/ml/sa/x",
            "spiffe://cluster.local/ns/ml/sa/x/extra",
            "spiffe://cluster.local/ns/m l/sa/x",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kubernetes_subjects_map_to_ids() {
        let id = SpiffeId::from_k8s_subject("cluster.local", "system:serviceaccount:ml:tfserving")
            .unwrap();
        assert_eq!(id.uri(), "spiffe://cluster.local/ns/ml/sa/tfserving");
        assert!(SpiffeId::from_k8s_subject("cluster.local", "alice").is_err());
    }
}
