//! Checkpoint signing: the log's identity is its checkpoint key, and this crate is the one
//! place that holds or reaches it.
//!
//! A key URI picks the backend ([`KeyUri`]): a PEM file (plain or encrypted PKCS#8), a PKCS#11
//! token (RFC 7512 `pkcs11:` URIs), AWS KMS, GCP Cloud KMS, Azure Key Vault or Vault/OpenBao
//! transit. Every backend implements [`KeyBackend`]; [`LogSigner`] binds one to the log's origin,
//! puts deadlines and retries around each signature and verifies every signature against the
//! public key before anyone sees it. Only the Raft leader's publisher signs, once per checkpoint,
//! never per entry; remote backends keep no private key material on the node.

mod backend;
mod error;
pub mod file;
pub mod http;
mod log_signer;
mod metrics;
mod token;

pub mod aws_kms;
pub mod azure_key_vault;
pub mod gcp_kms;
pub mod pkcs11;
pub mod vault_transit;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use backend::{
    ecdsa_p256_fixed_to_der, spki_der_from_pem, KeyAlgorithm, KeyBackend, SignFuture,
};
pub use error::SignerError;
pub use log_signer::{LogSigner, RetryPolicy};
pub use metrics::SignerMetrics;

/// Where the log's key is, as given on the command line (`--signing-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUri {
    /// A PEM key file: a plain path or `file:` URI.
    File(PathBuf),
    /// `pkcs11:token=...;object=...?module-path=...&pin-source=...` (RFC 7512).
    Pkcs11(String),
    /// `awskms:///<key id, ARN or alias>` (sigstore's form).
    AwsKms(String),
    /// `gcpkms://projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>/cryptoKeyVersions/<v>`.
    GcpKms(String),
    /// `azurekms://<vault host>/<key name>[/<version>]`.
    AzureKeyVault(String),
    /// `hashivault://<key name>` (Vault or OpenBao transit).
    VaultTransit(String),
}

impl KeyUri {
    /// Reads a `--signing-key` value: a URI with one of the schemes above, or a file path.
    pub fn parse(value: &str) -> Result<Self, SignerError> {
        let invalid = |reason: &str| SignerError::InvalidUri {
            uri: value.to_owned(),
            reason: reason.to_owned(),
        };
        if value.is_empty() {
            return Err(invalid("empty"));
        }
        let Some((scheme, rest)) = value.split_once(':') else {
            return Ok(Self::File(PathBuf::from(value)));
        };
        Ok(match scheme {
            "file" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(invalid("a file: URI needs a path"));
                }
                Self::File(PathBuf::from(path))
            }
            "pkcs11" => Self::Pkcs11(value.to_owned()),
            "awskms" => Self::AwsKms(value.to_owned()),
            "gcpkms" => Self::GcpKms(value.to_owned()),
            "azurekms" => Self::AzureKeyVault(value.to_owned()),
            "hashivault" => Self::VaultTransit(value.to_owned()),
            // A Windows drive letter or a relative path with a colon is still a path.
            _ if !value.contains("://") => Self::File(PathBuf::from(value)),
            other => {
                return Err(invalid(&format!(
                    "unknown scheme {other:?} (file, pkcs11, awskms, gcpkms, azurekms, hashivault)"
                )))
            }
        })
    }

    /// The backend's name in metrics and logs.
    pub fn backend_label(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Pkcs11(_) => "pkcs11",
            Self::AwsKms(_) => "awskms",
            Self::GcpKms(_) => "gcpkms",
            Self::AzureKeyVault(_) => "azurekms",
            Self::VaultTransit(_) => "hashivault",
        }
    }

    /// Whether the node holds the private key itself (a key file).
    pub fn is_local(&self) -> bool {
        matches!(self, Self::File(_))
    }
}

impl std::fmt::Display for KeyUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Pkcs11(uri)
            | Self::AwsKms(uri)
            | Self::GcpKms(uri)
            | Self::AzureKeyVault(uri)
            | Self::VaultTransit(uri) => f.write_str(uri),
        }
    }
}

/// What opening a backend may need besides its URI.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The password file of an encrypted key file.
    pub password_file: Option<PathBuf>,
    /// The deadline of one request to a remote signer (and of opening it).
    pub request_timeout: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            password_file: None,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens the backend `uri` names: reads the public key and gets credentials and connections
/// ready, so that the first signature costs one round trip.
pub async fn open_backend(
    uri: &KeyUri,
    options: &OpenOptions,
) -> Result<Arc<dyn KeyBackend>, SignerError> {
    match uri {
        KeyUri::File(path) => {
            let password = options
                .password_file
                .as_deref()
                .map(file::read_password_file)
                .transpose()?;
            Ok(Arc::new(file::FileBackend::open(
                path,
                password.as_deref(),
            )?))
        }
        KeyUri::Pkcs11(uri) => pkcs11::open(uri, options).await,
        KeyUri::AwsKms(uri) => aws_kms::open(uri, options).await,
        KeyUri::GcpKms(uri) => gcp_kms::open(uri, options).await,
        KeyUri::AzureKeyVault(uri) => azure_key_vault::open(uri, options).await,
        KeyUri::VaultTransit(uri) => vault_transit::open(uri, options).await,
    }
}

/// Opens `uri` and binds it to the log's `origin`.
pub async fn open(
    uri: &KeyUri,
    origin: &str,
    options: &OpenOptions,
) -> Result<LogSigner, SignerError> {
    let backend = open_backend(uri, options).await?;
    LogSigner::new(origin, backend, uri.backend_label())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_uris_pick_their_backend() {
        assert_eq!(
            KeyUri::parse("keys/log.pem").unwrap(),
            KeyUri::File("keys/log.pem".into())
        );
        assert_eq!(
            KeyUri::parse("file:///etc/rekor/log.pem").unwrap(),
            KeyUri::File("/etc/rekor/log.pem".into())
        );
        assert_eq!(
            KeyUri::parse("pkcs11:token=log;object=checkpoint")
                .unwrap()
                .backend_label(),
            "pkcs11"
        );
        assert_eq!(
            KeyUri::parse("awskms:///alias/rekor")
                .unwrap()
                .backend_label(),
            "awskms"
        );
        assert_eq!(
            KeyUri::parse("hashivault://rekor").unwrap().backend_label(),
            "hashivault"
        );
        assert!(KeyUri::parse("tink://x").is_err());
        assert!(KeyUri::parse("").is_err());
    }
}
