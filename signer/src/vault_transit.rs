//! HashiCorp Vault's transit secrets engine (and OpenBao's, which serves the same API): one
//! `GET /v1/<mount>/keys/<name>` when opened, one `POST /v1/<mount>/sign/<name>` per checkpoint.
//!
//! The key URI is sigstore's: `hashivault://<key name>`. Key types: `ed25519` (the note text is
//! sent and the 64-byte signature comes back) and `ecdsa-p256` (the SHA-256 digest is sent as
//! `prehashed` input, `marshaling_algorithm` `asn1` gives a DER signature). The key's latest
//! version when the backend opens is the one whose public key the log publishes, and every
//! signature asks for that `key_version`: a rotation in Vault does not change the log's key
//! until the nodes restart.
//!
//! Environment:
//! - `VAULT_ADDR` (required): the server, https or http on loopback (e.g. a Vault Agent);
//! - `VAULT_TOKEN`, or `VAULT_TOKEN_FILE`: a file holding the token (as a Vault Agent sink
//!   writes it), read again when the server refuses a request, in case it was renewed;
//! - `VAULT_NAMESPACE` (optional): sent as `X-Vault-Namespace` (Vault Enterprise, OpenBao);
//! - `REKOR_VAULT_TRANSIT_MOUNT`: where the transit engine is mounted (default `transit`).
//!
//! The node does not renew or create tokens; give it a long-lived periodic token or a Vault
//! Agent that keeps the token file fresh.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePublicKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::backend::{spki_der_from_pem, KeyAlgorithm, KeyBackend, SignFuture};
use crate::http::{check_endpoint, HttpClient};
use crate::{OpenOptions, SignerError};

/// The default mount path of the transit engine.
pub const DEFAULT_MOUNT: &str = "transit";

/// Where the server is and how to authenticate, usually from the environment.
#[derive(Clone)]
pub struct VaultSettings {
    pub address: url::Url,
    pub token: VaultToken,
    pub namespace: Option<String>,
    pub mount: String,
}

/// Where the token comes from.
#[derive(Clone)]
pub enum VaultToken {
    /// `VAULT_TOKEN`.
    Value(String),
    /// `VAULT_TOKEN_FILE`: read when the backend opens and again after a refusal.
    File(PathBuf),
}

impl std::fmt::Debug for VaultSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = match &self.token {
            VaultToken::Value(_) => "<redacted>".to_owned(),
            VaultToken::File(path) => format!("file {}", path.display()),
        };
        f.debug_struct("VaultSettings")
            .field("address", &self.address.as_str())
            .field("token", &token)
            .field("namespace", &self.namespace)
            .field("mount", &self.mount)
            .finish()
    }
}

impl VaultSettings {
    /// The settings from the process environment.
    pub fn from_env() -> Result<Self, SignerError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The settings from `lookup` (an environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SignerError> {
        let set = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let address = set("VAULT_ADDR").ok_or_else(|| {
            SignerError::Config("VAULT_ADDR is not set (the Vault or OpenBao server)".into())
        })?;
        let address = url::Url::parse(&address)
            .map_err(|error| SignerError::Config(format!("VAULT_ADDR {address:?}: {error}")))?;
        check_endpoint(&address)?;
        let token = match (set("VAULT_TOKEN"), set("VAULT_TOKEN_FILE")) {
            (Some(token), _) => VaultToken::Value(token),
            (None, Some(path)) => VaultToken::File(PathBuf::from(path)),
            (None, None) => {
                return Err(SignerError::Config(
                    "neither VAULT_TOKEN nor VAULT_TOKEN_FILE is set".into(),
                ))
            }
        };
        let mount = set("REKOR_VAULT_TRANSIT_MOUNT").unwrap_or_else(|| DEFAULT_MOUNT.into());
        let mount = mount.trim_matches('/').to_owned();
        if mount.is_empty() || mount.split('/').any(|segment| !is_path_segment(segment)) {
            return Err(SignerError::Config(format!(
                "REKOR_VAULT_TRANSIT_MOUNT {mount:?} is not a mount path"
            )));
        }
        Ok(Self {
            address,
            token,
            namespace: set("VAULT_NAMESPACE"),
            mount,
        })
    }
}

/// A mount or key name segment: letters, digits, `-`, `_`, `.`, not starting with a dot.
fn is_path_segment(segment: &str) -> bool {
    !segment.is_empty()
        && !segment.starts_with('.')
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Opens the key `uri` names, with settings from the environment.
pub async fn open(uri: &str, options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, SignerError> {
    open_with(uri, options, VaultSettings::from_env()?).await
}

/// Opens the key `uri` names with `settings`: reads the token and the key's latest version.
pub async fn open_with(
    uri: &str,
    options: &OpenOptions,
    settings: VaultSettings,
) -> Result<Arc<dyn KeyBackend>, SignerError> {
    let name = parse_uri(uri)?;
    check_endpoint(&settings.address)?;
    let client = HttpClient::new(options.request_timeout)?;
    let token = match &settings.token {
        VaultToken::Value(token) => token.clone(),
        VaultToken::File(path) => read_token_file(path).await?,
    };
    let base = settings.address.as_str().trim_end_matches('/');
    let mount = &settings.mount;
    let parse = |url: String| {
        url::Url::parse(&url).map_err(|error| SignerError::Config(format!("{url}: {error}")))
    };
    let key_url = parse(format!("{base}/v1/{mount}/keys/{name}"))?;
    let sign_url = parse(format!("{base}/v1/{mount}/sign/{name}"))?;

    let mut request = client
        .inner()
        .get(key_url)
        .header("X-Vault-Token", token_header(&token)?);
    if let Some(namespace) = &settings.namespace {
        request = request.header("X-Vault-Namespace", namespace);
    }
    let answer: KeyAnswer = client.json(request, "Vault transit read key").await?;
    let key = answer.data;
    let algorithm = match key.key_type.as_str() {
        "ed25519" => KeyAlgorithm::Ed25519,
        "ecdsa-p256" => KeyAlgorithm::EcdsaP256,
        other => {
            return Err(SignerError::UnsupportedKey(format!(
            "transit key {mount}/{name} is of type {other}; a log signs with ed25519 or ecdsa-p256"
        )))
        }
    };
    let version = key.latest_version;
    let public_key = key
        .keys
        .get(&version.to_string())
        .and_then(|entry| entry.get("public_key"))
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            SignerError::Unavailable(format!(
                "Vault transit read key {mount}/{name}: no public key for version {version}"
            ))
        })?;
    let spki = match algorithm {
        KeyAlgorithm::Ed25519 => ed25519_spki(public_key)?,
        KeyAlgorithm::EcdsaP256 => spki_der_from_pem(public_key)?,
    };
    if KeyAlgorithm::of_spki_der(&spki)? != algorithm {
        return Err(SignerError::UnsupportedKey(format!(
            "transit key {mount}/{name}: the public key is not a {} key",
            key.key_type
        )));
    }
    // Scheme, host and port only: no credentials in a URL reach the logs.
    let server = settings.address.origin().ascii_serialization();
    Ok(Arc::new(VaultTransitBackend {
        describe: format!("Vault transit key {mount}/{name} version {version} at {server}"),
        client,
        sign_url,
        token: RwLock::new(token),
        token_file: match settings.token {
            VaultToken::File(path) => Some(path),
            VaultToken::Value(_) => None,
        },
        namespace: settings.namespace,
        algorithm,
        version,
        spki,
    }))
}

/// The key name of a `hashivault://` URI.
fn parse_uri(uri: &str) -> Result<String, SignerError> {
    let name = uri
        .strip_prefix("hashivault://")
        .filter(|name| is_path_segment(name))
        .ok_or_else(|| SignerError::InvalidUri {
            uri: uri.to_owned(),
            reason: "expected hashivault://<key name> (letters, digits, -, _ and .)".into(),
        })?;
    Ok(name.to_owned())
}

async fn read_token_file(path: &std::path::Path) -> Result<String, SignerError> {
    let contents = tokio::fs::read_to_string(path).await.map_err(|error| {
        SignerError::Config(format!(
            "reading VAULT_TOKEN_FILE {}: {error}",
            path.display()
        ))
    })?;
    let token = contents.trim();
    if token.is_empty() {
        return Err(SignerError::Config(format!(
            "VAULT_TOKEN_FILE {} is empty",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

/// The `X-Vault-Token` value, marked sensitive so that no debug output shows it.
fn token_header(token: &str) -> Result<reqwest::header::HeaderValue, SignerError> {
    let mut value = reqwest::header::HeaderValue::from_str(token).map_err(|_| {
        SignerError::Config("the Vault token holds characters a header cannot carry".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Transit hands out an Ed25519 public key as the base64 of its 32 bytes.
fn ed25519_spki(public_key: &str) -> Result<Vec<u8>, SignerError> {
    let unsupported =
        |reason: String| SignerError::UnsupportedKey(format!("ed25519 public key: {reason}"));
    let bytes = B64
        .decode(public_key.trim())
        .map_err(|error| unsupported(error.to_string()))?;
    let bytes = <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| unsupported(format!("{} bytes, not 32", bytes.len())))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|error| unsupported(error.to_string()))?;
    key.to_public_key_der()
        .map(|der| der.into_vec())
        .map_err(|error| unsupported(error.to_string()))
}

#[derive(Deserialize)]
struct KeyAnswer {
    data: KeyData,
}

#[derive(Deserialize)]
struct KeyData {
    #[serde(rename = "type")]
    key_type: String,
    latest_version: u64,
    /// Version → `{public_key, creation_time, name}` for asymmetric keys.
    keys: std::collections::HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct SignAnswer {
    data: SignData,
}

#[derive(Deserialize)]
struct SignData {
    signature: String,
}

/// One version of a transit key.
pub struct VaultTransitBackend {
    describe: String,
    client: HttpClient,
    sign_url: url::Url,
    token: RwLock<String>,
    token_file: Option<PathBuf>,
    namespace: Option<String>,
    algorithm: KeyAlgorithm,
    version: u64,
    spki: Vec<u8>,
}

impl VaultTransitBackend {
    fn sign_request(&self, text: &[u8]) -> serde_json::Value {
        match self.algorithm {
            KeyAlgorithm::EcdsaP256 => serde_json::json!({
                "input": B64.encode(Sha256::digest(text)),
                "key_version": self.version,
                "prehashed": true,
                "hash_algorithm": "sha2-256",
                "marshaling_algorithm": "asn1",
            }),
            KeyAlgorithm::Ed25519 => serde_json::json!({
                "input": B64.encode(text),
                "key_version": self.version,
            }),
        }
    }

    async fn send(&self, token: &str, body: &serde_json::Value) -> Result<SignAnswer, SignerError> {
        let mut request = self
            .client
            .inner()
            .post(self.sign_url.clone())
            .header("X-Vault-Token", token_header(token)?)
            .json(body);
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        self.client.json(request, "Vault transit sign").await
    }

    fn current_token(&self) -> String {
        self.token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The signature bytes of a `vault:v<N>:<base64>` answer made with this backend's version.
    fn parse_signature(&self, signature: &str) -> Result<Vec<u8>, SignerError> {
        let prefix = format!("vault:v{}:", self.version);
        let encoded = signature.strip_prefix(&prefix).ok_or_else(|| {
            SignerError::Unavailable(format!(
                "Vault transit sign: the signature does not start with {prefix:?}"
            ))
        })?;
        B64.decode(encoded).map_err(|error| {
            SignerError::Unavailable(format!(
                "Vault transit sign: the signature is not base64: {error}"
            ))
        })
    }
}

impl KeyBackend for VaultTransitBackend {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign<'a>(&'a self, text: &'a [u8]) -> SignFuture<'a> {
        Box::pin(async move {
            let body = self.sign_request(text);
            let token = self.current_token();
            let answer = match (self.send(&token, &body).await, &self.token_file) {
                (Err(SignerError::Refused(refusal)), Some(path)) => {
                    // Perhaps the token was renewed into the file (a Vault Agent sink): once
                    // with the file's token, if it changed.
                    let renewed = read_token_file(path).await?;
                    if renewed == token {
                        return Err(SignerError::Refused(refusal));
                    }
                    *self.token.write().unwrap_or_else(PoisonError::into_inner) = renewed.clone();
                    self.send(&renewed, &body).await?
                }
                (result, _) => result?,
            };
            self.parse_signature(&answer.data.signature)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn uri_names_one_key() {
        assert_eq!(parse_uri("hashivault://rekor-log").unwrap(), "rekor-log");
        for bad in [
            "hashivault://",
            "hashivault://a/b",
            "hashivault://..",
            "hashivault://k?x",
            "awskms:///k",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_from_the_environment() {
        let settings = VaultSettings::from_lookup(env(&[
            ("VAULT_ADDR", "https://vault.example.com:8200"),
            ("VAULT_TOKEN", "hvs.secret"),
            ("VAULT_NAMESPACE", "team"),
        ]))
        .unwrap();
        assert_eq!(settings.mount, "transit");
        assert_eq!(settings.namespace.as_deref(), Some("team"));
        assert!(!format!("{settings:?}").contains("hvs.secret"));
        let file = VaultSettings::from_lookup(env(&[
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_TOKEN_FILE", "/run/vault/token"),
            ("REKOR_VAULT_TRANSIT_MOUNT", "/ops/transit/"),
        ]))
        .unwrap();
        assert_eq!(file.mount, "ops/transit");
        assert!(matches!(file.token, VaultToken::File(_)));
        for bad in [
            &[("VAULT_TOKEN", "t")][..],
            &[
                ("VAULT_ADDR", "http://vault.example.com"),
                ("VAULT_TOKEN", "t"),
            ],
            &[("VAULT_ADDR", "https://vault.example.com")],
            &[
                ("VAULT_ADDR", "https://vault.example.com"),
                ("VAULT_TOKEN", "t"),
                ("REKOR_VAULT_TRANSIT_MOUNT", "a/../b"),
            ],
        ] {
            let owned: Vec<(String, String)> = bad
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let lookup = |name: &str| {
                owned
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
            };
            assert!(VaultSettings::from_lookup(lookup).is_err(), "{bad:?}");
        }
    }
}
