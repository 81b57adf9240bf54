//! A fake of the HashiCorp Vault (and OpenBao) transit secrets engine HTTP API, mounted at
//! `transit`, for tests only, implementing only:
//! - `GET /v1/transit/keys/{name}` (`data.type`, `data.latest_version`, `data.keys[v].public_key`:
//!   base64 raw bytes for `ed25519`, PEM SPKI for `ecdsa-p256`);
//! - `POST /v1/transit/sign/{name}[/{hash_algorithm}]` with `input` (base64), `key_version`,
//!   `hash_algorithm` (`sha2-256`), `prehashed`, `marshaling_algorithm` (`asn1` or `jws`),
//!   answering `data.signature` = `vault:v<N>:<base64>` and `data.key_version`.
//!
//! Every call needs `X-Vault-Token` with the token the fake currently accepts, and
//! `X-Vault-Namespace` when the fake is given a namespace. Its keys: `rekor-p256`
//! (`ecdsa-p256`) and `rekor-ed25519` (`ed25519`), each at version 1 until [`FakeVault::rotate`].
//! Errors have Vault's shape, `{"errors": [...]}`: 403 `permission denied`, 400 for bad input,
//! 404 for other paths, 503 `Vault is sealed` while unavailable. Unlike Vault, which ignores
//! unknown request fields with a warning, the fake refuses them, to hold clients to the
//! documented shape.

use std::sync::{Arc, Mutex, PoisonError};

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use anyhow::Result;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use futures::future::LocalBoxFuture;
use sha2::{Digest, Sha256};

use super::{header, is_json, json, json_object, Controls, FakeKey, FakeServer, FakeService};

/// The running fake; stops when dropped.
pub struct FakeVault {
    server: FakeServer,
    state: Arc<Vault>,
}

/// One transit key: its type and its versions (version `i + 1` at index `i`).
struct TransitKey {
    name: &'static str,
    key_type: &'static str,
    versions: Vec<Arc<FakeKey>>,
}

struct Vault {
    controls: Controls,
    token: Mutex<String>,
    namespace: Mutex<Option<String>>,
    keys: Mutex<Vec<TransitKey>>,
}

impl FakeVault {
    /// The fake's ECDSA P-256 key.
    pub const P256_KEY: &'static str = "rekor-p256";
    /// The fake's Ed25519 key.
    pub const ED25519_KEY: &'static str = "rekor-ed25519";
    /// The token the fake accepts until [`FakeVault::set_token`].
    pub const INITIAL_TOKEN: &'static str = "hvs.fake-initial-token";

    /// Starts the fake with a new key of each type.
    pub fn start() -> Result<Self> {
        let state = Arc::new(Vault {
            controls: Controls::default(),
            token: Mutex::new(Self::INITIAL_TOKEN.to_owned()),
            namespace: Mutex::new(None),
            keys: Mutex::new(vec![
                TransitKey {
                    name: Self::P256_KEY,
                    key_type: "ecdsa-p256",
                    versions: vec![Arc::new(FakeKey::p256())],
                },
                TransitKey {
                    name: Self::ED25519_KEY,
                    key_type: "ed25519",
                    versions: vec![Arc::new(FakeKey::ed25519())],
                },
            ]),
        });
        let server = FakeServer::start("vault", Arc::clone(&state))?;
        Ok(Self { server, state })
    }

    /// `VAULT_ADDR`.
    pub fn address(&self) -> String {
        self.server.base_url()
    }

    /// `hashivault://<name>`.
    pub fn uri(name: &str) -> String {
        format!("hashivault://{name}")
    }

    /// The environment of a node signing through the fake with the current token.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("VAULT_ADDR".into(), self.address()),
            ("VAULT_TOKEN".into(), self.token()),
        ]
    }

    /// The token the fake accepts.
    pub fn token(&self) -> String {
        self.state
            .token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Accepts `token` from now on, and no other (a renewal, or the old token revoked).
    pub fn set_token(&self, token: &str) {
        *self
            .state
            .token
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = token.to_owned();
    }

    /// Requires `X-Vault-Namespace: namespace` on every request (`None`: no header).
    pub fn set_namespace(&self, namespace: Option<&str>) {
        *self
            .state
            .namespace
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = namespace.map(str::to_owned);
    }

    /// Adds a new latest version to key `name`; returns its number.
    pub fn rotate(&self, name: &str) -> Option<u64> {
        let mut keys = self
            .state
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = keys.iter_mut().find(|key| key.name == name)?;
        let new = match key.key_type {
            "ed25519" => FakeKey::ed25519(),
            _ => FakeKey::p256(),
        };
        key.versions.push(Arc::new(new));
        Some(key.versions.len() as u64)
    }

    /// The public key of version `version` of key `name`, as DER SPKI.
    pub fn public_key_der(&self, name: &str, version: u64) -> Option<Vec<u8>> {
        self.state
            .version(name, version)
            .map(|key| key.public_key_der())
    }

    /// The test controls: availability, delay, counters.
    pub fn controls(&self) -> &Controls {
        &self.state.controls
    }
}

fn errors(status: u16, message: &str) -> HttpResponse {
    json(status, serde_json::json!({ "errors": [message] }))
}

/// Vault's envelope around a `data` answer.
fn envelope(data: serde_json::Value) -> HttpResponse {
    json(
        200,
        serde_json::json!({
            "request_id": format!("{:032x}", rand::random::<u128>()),
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": data,
            "wrap_info": null,
            "warnings": null,
            "auth": null,
        }),
    )
}

impl Vault {
    fn version(&self, name: &str, version: u64) -> Option<Arc<FakeKey>> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let key = keys.iter().find(|key| key.name == name)?;
        let index = usize::try_from(version.checked_sub(1)?).ok()?;
        key.versions.get(index).cloned()
    }

    /// (type, latest version) of key `name`.
    fn describe(&self, name: &str) -> Option<(&'static str, u64)> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let key = keys.iter().find(|key| key.name == name)?;
        Some((key.key_type, key.versions.len() as u64))
    }

    fn read_key(&self, name: &str) -> HttpResponse {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(key) = keys.iter().find(|key| key.name == name) else {
            return json(404, serde_json::json!({ "errors": [] }));
        };
        let mut versions = serde_json::Map::new();
        for (index, version) in key.versions.iter().enumerate() {
            let public_key = match version.as_ref() {
                FakeKey::Ed25519(signing) => B64.encode(signing.verifying_key().as_bytes()),
                FakeKey::EcdsaP256(_) => version.public_key_pem(),
            };
            versions.insert(
                (index + 1).to_string(),
                serde_json::json!({
                    "creation_time": "2025-01-01T00:00:00.000000000Z",
                    "name": if key.key_type == "ed25519" { "ed25519" } else { "P-256" },
                    "public_key": public_key,
                }),
            );
        }
        envelope(serde_json::json!({
            "allow_plaintext_backup": false,
            "auto_rotate_period": 0,
            "deletion_allowed": false,
            "derived": false,
            "exportable": false,
            "imported_key": false,
            "keys": versions,
            "latest_version": key.versions.len(),
            "min_available_version": 0,
            "min_decryption_version": 1,
            "min_encryption_version": 0,
            "name": key.name,
            "supports_decryption": false,
            "supports_derivation": key.key_type == "ed25519",
            "supports_encryption": false,
            "supports_signing": true,
            "type": key.key_type,
        }))
    }

    async fn sign(
        &self,
        request: &HttpRequest,
        name: &str,
        url_hash: Option<&str>,
        body: &[u8],
    ) -> HttpResponse {
        let bad = |message: &str| errors(400, message);
        let Some((key_type, latest)) = self.describe(name) else {
            return bad("signing key not found");
        };
        if !is_json(request) {
            return bad("error parsing JSON");
        }
        let Some(fields) = json_object(body) else {
            return bad("error parsing JSON");
        };
        const KNOWN: [&str; 5] = [
            "input",
            "key_version",
            "hash_algorithm",
            "prehashed",
            "marshaling_algorithm",
        ];
        if let Some(unknown) = fields.keys().find(|field| !KNOWN.contains(&field.as_str())) {
            return bad(&format!(
                "the fake refuses the unrecognised parameter {unknown:?}"
            ));
        }
        let Some(input) = fields
            .get("input")
            .and_then(serde_json::Value::as_str)
            .and_then(|input| B64.decode(input).ok())
        else {
            return bad("unable to decode input as base64: missing or invalid input");
        };
        let version = match fields.get("key_version") {
            None => latest,
            Some(value) => match value.as_u64() {
                Some(version) => version,
                None => return bad("key_version must be an integer"),
            },
        };
        let Some(key) = self.version(name, version) else {
            return bad("requested version for signing does not exist");
        };
        let hash_algorithm = fields
            .get("hash_algorithm")
            .and_then(serde_json::Value::as_str)
            .or(url_hash)
            .unwrap_or("sha2-256");
        let prehashed = fields
            .get("prehashed")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let marshaling = fields
            .get("marshaling_algorithm")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("asn1");
        let signature = match key_type {
            "ecdsa-p256" => {
                if hash_algorithm != "sha2-256" {
                    return bad("the fake only hashes with sha2-256");
                }
                let digest = if prehashed {
                    input
                } else {
                    Sha256::digest(&input).to_vec()
                };
                let Some(signature) = key.sign_digest(&digest) else {
                    return bad("prehashed input must be the 32 bytes of a sha2-256 digest");
                };
                match marshaling {
                    "asn1" => B64.encode(signature.to_der().as_bytes()),
                    "jws" => B64URL.encode(signature.to_bytes()),
                    other => return bad(&format!("unsupported marshaling type {other:?}")),
                }
            }
            _ => {
                if prehashed {
                    return bad("ed25519 does not support prehashed input");
                }
                let Some(signature) = key.sign_ed25519(&input) else {
                    return bad("signing failed");
                };
                B64.encode(signature)
            }
        };
        self.controls.sign_delay().await;
        self.controls.count_signature();
        envelope(serde_json::json!({
            "key_version": version,
            "signature": format!("vault:v{version}:{signature}"),
        }))
    }
}

impl FakeService for Vault {
    fn controls(&self) -> &Controls {
        &self.controls
    }

    fn unavailable(&self) -> HttpResponse {
        errors(503, "Vault is sealed")
    }

    fn handle(
        self: Arc<Self>,
        request: HttpRequest,
        body: web::Bytes,
    ) -> LocalBoxFuture<'static, HttpResponse> {
        Box::pin(async move {
            let token = self
                .token
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if header(&request, "x-vault-token") != Some(token.as_str()) {
                return errors(403, "permission denied");
            }
            let namespace = self
                .namespace
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if header(&request, "x-vault-namespace") != namespace.as_deref() {
                return errors(403, "permission denied");
            }
            let path = request.path().to_owned();
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match (request.method().clone(), &segments[..]) {
                (Method::GET, ["v1", "transit", "keys", name]) => self.read_key(name),
                (Method::POST, ["v1", "transit", "sign", name]) => {
                    self.sign(&request, name, None, &body).await
                }
                (Method::POST, ["v1", "transit", "sign", name, hash]) => {
                    self.sign(&request, name, Some(hash), &body).await
                }
                _ => json(404, serde_json::json!({ "errors": [] })),
            }
        })
    }
}
