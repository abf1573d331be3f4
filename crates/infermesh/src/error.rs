//! Errors the binary classifies for its exit code: invalid configuration exits 64
//! (EX_USAGE, as linkerd2-proxy does); anything else exits 1.

/// A configuration the user must fix; the message says what and where.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

impl InvalidConfig {
    pub fn error(message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(InvalidConfig(message.into()))
    }
}

/// 64 for invalid configuration (including a workload the mesh does not have, or a
/// gateway without listeners), else 1.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    let invalid = error.chain().any(|e| {
        e.is::<InvalidConfig>()
            || matches!(
                e.downcast_ref::<infermesh_proxy::ProxyError>(),
                Some(
                    infermesh_proxy::ProxyError::UnknownWorkload(_)
                        | infermesh_proxy::ProxyError::NoListener
                )
            )
    });
    if invalid { 64 } else { 1 }
}
