//! Why signing or opening a signer failed, sorted by what the caller should do about it.

use std::time::Duration;

/// A signer failure. [`SignerError::is_transient`] tells a retry apart from a configuration
/// problem that waiting will not fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignerError {
    /// The key URI is malformed or names no supported backend.
    #[error("invalid key URI {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },
    /// Something the backend needs is missing or wrong (credentials, a password file, a module).
    #[error("signer configuration: {0}")]
    Config(String),
    /// The key exists but is not one a log can sign with.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// The service did not answer usefully (network, 5xx, throttling, a session lost): retry.
    #[error("signer unavailable: {0}")]
    Unavailable(String),
    /// The service answered no (permission, key disabled or not found): retrying will not help
    /// until an operator acts, but a publisher keeps trying at its own pace.
    #[error("signer refused: {0}")]
    Refused(String),
    /// One attempt took longer than the attempt timeout.
    #[error("signing timed out after {0:?}")]
    Timeout(Duration),
    /// The signature returned does not verify under the key's public key.
    #[error("the signer returned a signature that does not verify under the log's public key")]
    BadSignature,
}

impl SignerError {
    /// Whether trying again soon may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Timeout(_) | Self::BadSignature
        )
    }

    /// The `outcome` label of `rekor_signer_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::InvalidUri { .. } | Self::Config(_) | Self::UnsupportedKey(_) => "config",
            Self::Unavailable(_) => "unavailable",
            Self::Refused(_) => "refused",
            Self::Timeout(_) => "timeout",
            Self::BadSignature => "bad_signature",
        }
    }
}
