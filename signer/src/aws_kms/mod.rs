//! AWS KMS: the checkpoint key is an asymmetric KMS key (`SIGN_VERIFY`, `ECC_NIST_P256` or
//! `ECC_NIST_EDWARDS25519`) that never leaves KMS; the node calls `Sign` once per checkpoint.
//!
//! Key URIs are sigstore's (`awskms:///alias/rekor`, see [`uri`]); endpoint, region and
//! credentials come from the environment variables of the AWS SDKs ([`config`], which also says
//! what this does not do: no SDK credential chain). Requests are the KMS JSON API signed with
//! SigV4 by the `aws-sigv4` crate ([`client`]); the SDK itself is not used, it would bring
//! hundreds of crates for two API calls.
//!
//! Opening reads the public key with `GetPublicKey` and keeps the `KeyId` KMS answers with (the
//! key ARN): an alias is resolved once, so moving the alias to another key later cannot make
//! the log sign with a key other than the one whose public key it publishes.

pub mod client;
pub mod config;
pub mod uri;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

pub use client::KmsClient;
pub use config::{AwsConfig, Credentials};
pub use uri::KeyRef;

use crate::http::HttpClient;
use crate::{KeyAlgorithm, KeyBackend, OpenOptions, SignFuture, SignerError};

/// The largest message KMS signs as `RAW`.
pub const MAX_RAW_MESSAGE: usize = 4096;

/// Opens the key `uri` names, with endpoint, region and credentials from the process
/// environment.
pub async fn open(uri: &str, options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, SignerError> {
    open_with_env(uri, options, &|name| std::env::var(name).ok()).await
}

/// Like [`open`], with the environment read through `env`.
pub async fn open_with_env(
    uri: &str,
    options: &OpenOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn KeyBackend>, SignerError> {
    let key = KeyRef::parse(uri)?;
    let config = AwsConfig::resolve(&key, env)?;
    let client = KmsClient::new(HttpClient::new(options.request_timeout)?, config);
    Ok(Arc::new(AwsKmsBackend::open(client, &key.key_id).await?))
}

/// A `GetPublicKey` answer. `KeySpec` is current; `CustomerMasterKeySpec` is its deprecated
/// twin, which some implementations of the API still send alone.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublicKeyAnswer {
    key_id: String,
    public_key: String,
    key_usage: Option<String>,
    key_spec: Option<String>,
    customer_master_key_spec: Option<String>,
    signing_algorithms: Option<Vec<String>>,
}

/// A `Sign` answer.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SignAnswer {
    signature: String,
}

/// A KMS key that signs checkpoints.
pub struct AwsKmsBackend {
    client: KmsClient,
    /// What `GetPublicKey` answered as `KeyId`: the key ARN on AWS.
    key_id: String,
    spki: Vec<u8>,
    algorithm: KeyAlgorithm,
}

impl AwsKmsBackend {
    /// Reads the public key of `key_id` and checks that it is a signing key of a supported type.
    pub async fn open(client: KmsClient, key_id: &str) -> Result<Self, SignerError> {
        let answer: PublicKeyAnswer = client
            .call("GetPublicKey", &json!({ "KeyId": key_id }))
            .await?;
        let unsupported =
            |why: String| SignerError::UnsupportedKey(format!("AWS KMS key {key_id}: {why}"));
        if let Some(usage) = answer.key_usage.as_deref() {
            if usage != "SIGN_VERIFY" {
                return Err(unsupported(format!(
                    "its key usage is {usage}, not SIGN_VERIFY"
                )));
            }
        }
        let spec = answer
            .key_spec
            .as_deref()
            .or(answer.customer_master_key_spec.as_deref())
            .ok_or_else(|| unsupported("GetPublicKey named no key spec".into()))?;
        let algorithm = match spec {
            "ECC_NIST_P256" => KeyAlgorithm::EcdsaP256,
            "ECC_NIST_EDWARDS25519" => KeyAlgorithm::Ed25519,
            other => {
                return Err(unsupported(format!(
                "its key spec is {other}; a log signs with ECC_NIST_P256 or ECC_NIST_EDWARDS25519"
            )))
            }
        };
        if let Some(algorithms) = &answer.signing_algorithms {
            let wanted = signing_algorithm(algorithm);
            if !algorithms.iter().any(|name| name == wanted) {
                return Err(unsupported(format!(
                    "it does not offer {wanted} (it offers {algorithms:?})"
                )));
            }
        }
        let spki = BASE64.decode(&answer.public_key).map_err(|error| {
            SignerError::Unavailable(format!(
                "AWS KMS GetPublicKey {key_id}: the public key is not base64: {error}"
            ))
        })?;
        if KeyAlgorithm::of_spki_der(&spki)? != algorithm {
            return Err(unsupported(format!(
                "the public key is not the {spec} key its spec says"
            )));
        }
        Ok(Self {
            client,
            key_id: answer.key_id,
            spki,
            algorithm,
        })
    }

    /// The `KeyId` signatures are requested with.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The `Sign` request for a note text: the text itself (`RAW`, KMS hashes it) up to
    /// [`MAX_RAW_MESSAGE`] bytes, which a checkpoint never reaches. For ECDSA this is the
    /// same signature as its SHA-256 digest sent as `DIGEST`, which a longer P-256 text is;
    /// an Ed25519 signature over a digest would be Ed25519ph, which signed notes do not use.
    pub fn sign_request(&self, text: &[u8]) -> Result<serde_json::Value, SignerError> {
        let (message, message_type) = if text.len() <= MAX_RAW_MESSAGE {
            (BASE64.encode(text), "RAW")
        } else if self.algorithm == KeyAlgorithm::EcdsaP256 {
            (BASE64.encode(Sha256::digest(text)), "DIGEST")
        } else {
            return Err(SignerError::Refused(format!(
                "AWS KMS signs at most {MAX_RAW_MESSAGE} bytes with Ed25519; the note text has {}",
                text.len()
            )));
        };
        Ok(json!({
            "KeyId": self.key_id,
            "Message": message,
            "MessageType": message_type,
            "SigningAlgorithm": signing_algorithm(self.algorithm),
        }))
    }

    async fn sign_text(&self, text: &[u8]) -> Result<Vec<u8>, SignerError> {
        let request = self.sign_request(text)?;
        let answer: SignAnswer = self.client.call("Sign", &request).await?;
        // KMS gives ECDSA signatures in DER and Ed25519 signatures as 64 raw bytes: both
        // already the signed-note form.
        BASE64.decode(&answer.signature).map_err(|error| {
            SignerError::Unavailable(format!(
                "AWS KMS Sign {}: the signature is not base64: {error}",
                self.key_id
            ))
        })
    }
}

/// The KMS signing algorithm of a key type (`ED25519_SHA_512` is pure Ed25519 over a `RAW`
/// message).
fn signing_algorithm(algorithm: KeyAlgorithm) -> &'static str {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => "ECDSA_SHA_256",
        KeyAlgorithm::Ed25519 => "ED25519_SHA_512",
    }
}

impl KeyBackend for AwsKmsBackend {
    fn describe(&self) -> String {
        format!("AWS KMS key {} at {}", self.key_id, self.client.describe())
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign<'a>(&'a self, text: &'a [u8]) -> SignFuture<'a> {
        Box::pin(self.sign_text(text))
    }
}
