//! GCP Cloud KMS through its REST API (v1): one `cryptoKeyVersions.getPublicKey` when opened, one
//! `cryptoKeyVersions.asymmetricSign` per checkpoint.
//!
//! The key URI is sigstore's: `gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V`.
//! The version is required: a signature is made by one version, and the public key the log
//! publishes must be that version's. Key algorithms: `EC_SIGN_P256_SHA256` (the digest is sent,
//! the answer is a DER signature) and `EC_SIGN_ED25519` (the note text itself is sent; the answer
//! is the 64-byte signature).
//!
//! Every exchange carries the API's CRC32C integrity fields, checked as its reference asks: the
//! public key's `pemCrc32c`; the request's `digestCrc32c`/`dataCrc32c` must come back as
//! `verifiedDigestCrc32c`/`verifiedDataCrc32c`; the answer's `signatureCrc32c` must match the
//! signature; and the answer must name the key version asked for.
//!
//! Environment:
//! - `REKOR_GCP_KMS_ENDPOINT`: the API's base URL (default `https://cloudkms.googleapis.com`;
//!   https, or http on loopback for a local stand-in);
//! - `GOOGLE_OAUTH_ACCESS_TOKEN`: a bearer token used as it is (for tests and short jobs; it is
//!   not renewed);
//! - otherwise tokens come from the GCE/GKE metadata server, at `GCE_METADATA_HOST` (host and
//!   optional port; default `169.254.169.254`), and are renewed ahead of expiry.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::backend::{spki_der_from_pem, KeyAlgorithm, KeyBackend, SignFuture};
use crate::http::{check_endpoint, HttpClient};
use crate::token::{expires_in_seconds, Token, TokenCache, TokenFuture, TokenSource};
use crate::{OpenOptions, SignerError};

/// The public endpoint of the Cloud KMS API.
pub const DEFAULT_ENDPOINT: &str = "https://cloudkms.googleapis.com";
/// The metadata server's link-local address on GCE and GKE.
pub const DEFAULT_METADATA_HOST: &str = "169.254.169.254";

/// Where the API is and how to authenticate, usually from the environment.
#[derive(Clone)]
pub struct GcpSettings {
    pub endpoint: url::Url,
    pub credentials: GcpCredentials,
}

/// Where bearer tokens come from.
#[derive(Clone)]
pub enum GcpCredentials {
    /// A token given by the operator (`GOOGLE_OAUTH_ACCESS_TOKEN`), never renewed.
    AccessToken(String),
    /// The metadata server at this host (and port): the instance's service account.
    MetadataServer { host: String },
}

impl std::fmt::Debug for GcpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
            Self::MetadataServer { host } => write!(f, "MetadataServer({host})"),
        }
    }
}

impl std::fmt::Debug for GcpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpSettings")
            .field("endpoint", &self.endpoint.as_str())
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl GcpSettings {
    /// The settings from the process environment.
    pub fn from_env() -> Result<Self, SignerError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The settings from `lookup` (an environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SignerError> {
        let set = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let endpoint = set("REKOR_GCP_KMS_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let endpoint = url::Url::parse(endpoint.trim()).map_err(|error| {
            SignerError::Config(format!("REKOR_GCP_KMS_ENDPOINT {endpoint:?}: {error}"))
        })?;
        check_endpoint(&endpoint)?;
        let credentials = match set("GOOGLE_OAUTH_ACCESS_TOKEN") {
            Some(token) => GcpCredentials::AccessToken(token.trim().to_owned()),
            None => {
                let host = set("GCE_METADATA_HOST").unwrap_or_else(|| DEFAULT_METADATA_HOST.into());
                let host = host.trim().to_owned();
                if host.contains(['/', '@', '?', '#', ' ']) {
                    return Err(SignerError::Config(format!(
                        "GCE_METADATA_HOST {host:?}: give a host and optional port"
                    )));
                }
                GcpCredentials::MetadataServer { host }
            }
        };
        Ok(Self {
            endpoint,
            credentials,
        })
    }
}

/// Opens the key `uri` names, with settings from the environment.
pub async fn open(uri: &str, options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, SignerError> {
    open_with(uri, options, GcpSettings::from_env()?).await
}

/// Opens the key `uri` names with `settings`: gets a token and reads the public key.
pub async fn open_with(
    uri: &str,
    options: &OpenOptions,
    settings: GcpSettings,
) -> Result<Arc<dyn KeyBackend>, SignerError> {
    let name = parse_uri(uri)?;
    check_endpoint(&settings.endpoint)?;
    let client = HttpClient::new(options.request_timeout)?;
    let tokens = TokenCache::start(GcpTokenSource::new(&settings.credentials, &client)?).await?;
    let base = settings.endpoint.as_str().trim_end_matches('/');
    let public_key_url = parse_url(&format!("{base}/v1/{name}/publicKey"))?;
    let sign_url = parse_url(&format!("{base}/v1/{name}:asymmetricSign"))?;

    let token = tokens.bearer().await?;
    let answer: PublicKeyAnswer = client
        .json(
            client.inner().get(public_key_url).bearer_auth(&token),
            "GCP KMS getPublicKey",
        )
        .await?;
    if answer
        .name
        .as_deref()
        .is_some_and(|answered| answered != name)
    {
        return Err(SignerError::Unavailable(format!(
            "GCP KMS getPublicKey: the answer names {:?}, not {name}",
            answer.name
        )));
    }
    if let Some(expected) = answer.pem_crc32c.as_ref() {
        if json_u64(expected) != Some(u64::from(crc32c::crc32c(answer.pem.as_bytes()))) {
            return Err(SignerError::Unavailable(
                "GCP KMS getPublicKey: the PEM does not match its pemCrc32c".into(),
            ));
        }
    }
    let algorithm = match answer.algorithm.as_str() {
        "EC_SIGN_P256_SHA256" => KeyAlgorithm::EcdsaP256,
        "EC_SIGN_ED25519" => KeyAlgorithm::Ed25519,
        other => {
            return Err(SignerError::UnsupportedKey(format!(
                "{name} is a {other} key; a log signs with EC_SIGN_P256_SHA256 or EC_SIGN_ED25519"
            )))
        }
    };
    let spki = spki_der_from_pem(&answer.pem)?;
    if KeyAlgorithm::of_spki_der(&spki)? != algorithm {
        return Err(SignerError::UnsupportedKey(format!(
            "{name}: the public key is not the {} key its algorithm says",
            answer.algorithm
        )));
    }
    Ok(Arc::new(GcpKmsBackend {
        describe: format!(
            "GCP Cloud KMS {name} at {} ({})",
            settings.endpoint,
            tokens.describe()
        ),
        name,
        client,
        sign_url,
        tokens,
        algorithm,
        spki,
    }))
}

/// The key version's resource name from a `gcpkms://` URI.
fn parse_uri(uri: &str) -> Result<String, SignerError> {
    let invalid = |reason: &str| SignerError::InvalidUri {
        uri: uri.to_owned(),
        reason: reason.to_owned(),
    };
    let name = uri
        .strip_prefix("gcpkms://")
        .ok_or_else(|| invalid("a GCP KMS key URI starts with gcpkms://"))?;
    let parts: Vec<&str> = name.split('/').collect();
    let labels = [
        "projects",
        "locations",
        "keyRings",
        "cryptoKeys",
        "cryptoKeyVersions",
    ];
    let well_formed = parts.len() == 2 * labels.len()
        && parts.chunks(2).zip(labels).all(|(pair, label)| {
            pair[0] == label
                && !pair[1].is_empty()
                && !pair[1].starts_with('.')
                // Project IDs may hold '.' and ':' (domain-scoped projects); nothing else needs more.
                && pair[1]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        });
    if !well_formed {
        return Err(invalid(
            "expected gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V",
        ));
    }
    Ok(name.to_owned())
}

fn parse_url(url: &str) -> Result<url::Url, SignerError> {
    url::Url::parse(url).map_err(|error| SignerError::Config(format!("{url}: {error}")))
}

/// A proto3-JSON `int64`: a string of digits (or, leniently, a number).
fn json_u64(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::String(text) => text.parse().ok(),
        serde_json::Value::Number(number) => number.as_u64(),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyAnswer {
    pem: String,
    algorithm: String,
    #[serde(default)]
    pem_crc32c: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignAnswer {
    signature: String,
    #[serde(default)]
    signature_crc32c: Option<serde_json::Value>,
    #[serde(default)]
    verified_digest_crc32c: bool,
    #[serde(default)]
    verified_data_crc32c: bool,
    #[serde(default)]
    name: Option<String>,
}

/// A Cloud KMS key version.
pub struct GcpKmsBackend {
    name: String,
    describe: String,
    client: HttpClient,
    sign_url: url::Url,
    tokens: TokenCache,
    algorithm: KeyAlgorithm,
    spki: Vec<u8>,
}

impl GcpKmsBackend {
    /// The `asymmetricSign` body: the SHA-256 digest for P-256 keys, the text itself for
    /// Ed25519 (PureEdDSA), each with its CRC32C.
    fn sign_request(&self, text: &[u8]) -> serde_json::Value {
        match self.algorithm {
            KeyAlgorithm::EcdsaP256 => {
                let digest = Sha256::digest(text);
                serde_json::json!({
                    "digest": { "sha256": B64.encode(digest) },
                    "digestCrc32c": crc32c::crc32c(&digest).to_string(),
                })
            }
            KeyAlgorithm::Ed25519 => serde_json::json!({
                "data": B64.encode(text),
                "dataCrc32c": crc32c::crc32c(text).to_string(),
            }),
        }
    }

    /// Checks an answer's integrity fields and returns the signature.
    fn check_answer(&self, answer: SignAnswer) -> Result<Vec<u8>, SignerError> {
        let corrupt = |what: &str| {
            SignerError::Unavailable(format!("GCP KMS asymmetricSign {}: {what}", self.name))
        };
        if answer.name.as_deref() != Some(self.name.as_str()) {
            return Err(corrupt(&format!(
                "the answer names key version {:?}",
                answer.name
            )));
        }
        let verified = match self.algorithm {
            KeyAlgorithm::EcdsaP256 => answer.verified_digest_crc32c,
            KeyAlgorithm::Ed25519 => answer.verified_data_crc32c,
        };
        if !verified {
            return Err(corrupt("the service did not verify the request's CRC32C"));
        }
        let signature = B64
            .decode(answer.signature.as_bytes())
            .map_err(|error| corrupt(&format!("signature is not base64: {error}")))?;
        let expected = answer.signature_crc32c.as_ref().and_then(json_u64);
        if expected != Some(u64::from(crc32c::crc32c(&signature))) {
            return Err(corrupt("the signature does not match its signatureCrc32c"));
        }
        Ok(signature)
    }
}

impl KeyBackend for GcpKmsBackend {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign<'a>(&'a self, text: &'a [u8]) -> SignFuture<'a> {
        Box::pin(async move {
            let token = self.tokens.bearer().await?;
            let request = self
                .client
                .inner()
                .post(self.sign_url.clone())
                .bearer_auth(&token)
                .json(&self.sign_request(text));
            let answer: SignAnswer = match self.client.json(request, "GCP KMS asymmetricSign").await
            {
                Ok(answer) => answer,
                Err(error) => {
                    if matches!(error, SignerError::Refused(_)) {
                        // A revoked or rotated token: the next attempt fetches another.
                        self.tokens.forget(&token);
                    }
                    return Err(error);
                }
            };
            self.check_answer(answer)
        })
    }
}

/// Tokens for the Cloud KMS API.
enum GcpTokenSource {
    Static(String),
    /// The metadata server's token URL. Plain http by design: the metadata server is
    /// link-local (169.254.169.254) and reached without leaving the host's virtual NIC; Google's
    /// client libraries talk to it the same way.
    Metadata {
        url: url::Url,
        client: HttpClient,
    },
}

impl GcpTokenSource {
    fn new(credentials: &GcpCredentials, client: &HttpClient) -> Result<Self, SignerError> {
        Ok(match credentials {
            GcpCredentials::AccessToken(token) => Self::Static(token.clone()),
            GcpCredentials::MetadataServer { host } => Self::Metadata {
                url: parse_url(&format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                ))?,
                client: client.clone(),
            },
        })
    }
}

#[derive(Deserialize)]
struct MetadataToken {
    access_token: String,
    #[serde(default)]
    expires_in: serde_json::Value,
}

impl TokenSource for GcpTokenSource {
    fn describe(&self) -> String {
        match self {
            Self::Static(_) => "token from GOOGLE_OAUTH_ACCESS_TOKEN".into(),
            Self::Metadata { url, .. } => format!(
                "tokens from the metadata server {}",
                url.host_str().unwrap_or_default()
            ),
        }
    }

    fn fetch(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            match self {
                Self::Static(value) => Ok(Token {
                    value: value.clone(),
                    expires_in: None,
                }),
                Self::Metadata { url, client } => {
                    let answer: MetadataToken = client
                        .json(
                            client
                                .inner()
                                .get(url.clone())
                                .header("Metadata-Flavor", "Google"),
                            "GCP metadata server token",
                        )
                        .await?;
                    let expires_in = expires_in_seconds(&answer.expires_in).ok_or_else(|| {
                        SignerError::Unavailable(
                            "GCP metadata server token: no expires_in in the answer".into(),
                        )
                    })?;
                    Ok(Token {
                        value: answer.access_token,
                        expires_in: Some(expires_in),
                    })
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str =
        "projects/p-1/locations/global/keyRings/rekor/cryptoKeys/log/cryptoKeyVersions/3";

    #[test]
    fn uri_names_one_key_version() {
        assert_eq!(parse_uri(&format!("gcpkms://{NAME}")).unwrap(), NAME);
        for bad in [
            "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k",
            "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/",
            "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1/x",
            "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1?x",
            "gcpkms://projects/../locations/g/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
            "awskms:///alias/x",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        let defaults = GcpSettings::from_lookup(env(&[])).unwrap();
        assert_eq!(
            defaults.endpoint.as_str(),
            "https://cloudkms.googleapis.com/"
        );
        assert!(matches!(
            defaults.credentials,
            GcpCredentials::MetadataServer { ref host } if host == "169.254.169.254"
        ));
        let local = GcpSettings::from_lookup(env(&[
            ("REKOR_GCP_KMS_ENDPOINT", "http://127.0.0.1:9000"),
            ("GOOGLE_OAUTH_ACCESS_TOKEN", "secret-token"),
        ]))
        .unwrap();
        assert!(
            matches!(local.credentials, GcpCredentials::AccessToken(ref t) if t == "secret-token")
        );
        assert!(!format!("{local:?}").contains("secret-token"));
        assert!(GcpSettings::from_lookup(env(&[(
            "REKOR_GCP_KMS_ENDPOINT",
            "http://kms.example.com"
        )]))
        .is_err());
        assert!(GcpSettings::from_lookup(env(&[("GCE_METADATA_HOST", "evil/path")])).is_err());
    }
}
