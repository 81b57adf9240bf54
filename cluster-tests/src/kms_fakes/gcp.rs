//! A fake of the GCP Cloud KMS REST API (v1) and of the GCE metadata server's token endpoint,
//! for tests only, implementing only:
//! - `GET /v1/{cryptoKeyVersion}/publicKey` (`pem`, `algorithm`, `pemCrc32c`, `name`);
//! - `POST /v1/{cryptoKeyVersion}:asymmetricSign` with `digest.sha256` (+ `digestCrc32c`) for
//!   its `EC_SIGN_P256_SHA256` key or `data` (+ `dataCrc32c`) for its `EC_SIGN_ED25519` key,
//!   answering `signature`, `signatureCrc32c`, `verifiedDigestCrc32c`, `verifiedDataCrc32c`
//!   and `name`;
//! - `GET /computeMetadata/v1/instance/service-accounts/default/token` with
//!   `Metadata-Flavor: Google` (`access_token`, `expires_in`, `token_type`).
//!
//! KMS calls need `Authorization: Bearer` with a token the metadata endpoint handed out and
//! that has not expired, or the static token [`FakeGcpKms::STATIC_TOKEN`]. Unknown fields,
//! paths and keys are refused in the API's error shape
//! (`{"error": {"code", "message", "status"}}`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use anyhow::Result;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::future::LocalBoxFuture;

use super::{
    bearer, header, is_json, json, json_object, Controls, FakeKey, FakeServer, FakeService,
    TokenBook,
};

const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// The running fake; stops when dropped.
pub struct FakeGcpKms {
    server: FakeServer,
    state: Arc<Gcp>,
}

struct Gcp {
    controls: Controls,
    tokens: TokenBook,
    token_lifetime: Mutex<Duration>,
    keys: Vec<(String, FakeKey)>,
}

impl FakeGcpKms {
    /// The resource name of the fake's P-256 key version.
    pub const P256_KEY: &'static str =
        "projects/rekor-test/locations/global/keyRings/rekor/cryptoKeys/checkpoint-p256/cryptoKeyVersions/1";
    /// The resource name of the fake's Ed25519 key version.
    pub const ED25519_KEY: &'static str =
        "projects/rekor-test/locations/global/keyRings/rekor/cryptoKeys/checkpoint-ed25519/cryptoKeyVersions/1";
    /// A token the fake accepts forever (as `GOOGLE_OAUTH_ACCESS_TOKEN`).
    pub const STATIC_TOKEN: &'static str = "ya29.fake-static-token";

    /// Starts the fake with a new P-256 and a new Ed25519 key; metadata tokens last an hour.
    pub fn start() -> Result<Self> {
        let state = Arc::new(Gcp {
            controls: Controls::default(),
            tokens: TokenBook::default(),
            token_lifetime: Mutex::new(Duration::from_secs(3600)),
            keys: vec![
                (Self::P256_KEY.to_owned(), FakeKey::p256()),
                (Self::ED25519_KEY.to_owned(), FakeKey::ed25519()),
            ],
        });
        state.tokens.accept_forever(Self::STATIC_TOKEN);
        let server = FakeServer::start("gcp-kms", Arc::clone(&state))?;
        Ok(Self { server, state })
    }

    /// The API endpoint (`REKOR_GCP_KMS_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        self.server.base_url()
    }

    /// The metadata server's host and port (`GCE_METADATA_HOST`).
    pub fn metadata_host(&self) -> String {
        self.server.address.to_string()
    }

    /// The `gcpkms://` URI of key version `name`.
    pub fn uri(name: &str) -> String {
        format!("gcpkms://{name}")
    }

    /// The environment of a node that gets tokens from the fake metadata server.
    pub fn env_metadata(&self) -> Vec<(String, String)> {
        vec![
            ("REKOR_GCP_KMS_ENDPOINT".into(), self.endpoint()),
            ("GCE_METADATA_HOST".into(), self.metadata_host()),
        ]
    }

    /// The public key of key version `name` as DER SPKI.
    pub fn public_key_der(&self, name: &str) -> Option<Vec<u8>> {
        self.state.key(name).map(FakeKey::public_key_der)
    }

    /// The lifetime of the tokens the metadata endpoint hands out from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *self
            .state
            .token_lifetime
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = lifetime;
    }

    /// Makes every token handed out so far, and the static one, invalid.
    pub fn revoke_tokens(&self) {
        self.state.tokens.revoke_all();
    }

    /// The bearer token of the last request that was let in.
    pub fn last_token_used(&self) -> Option<String> {
        self.state.tokens.last_used()
    }

    /// The test controls: availability, delay, counters.
    pub fn controls(&self) -> &Controls {
        &self.state.controls
    }
}

/// An error in the API's shape.
fn error(code: u16, status: &str, message: &str) -> HttpResponse {
    json(
        code,
        serde_json::json!({ "error": { "code": code, "message": message, "status": status } }),
    )
}

impl Gcp {
    fn key(&self, name: &str) -> Option<&FakeKey> {
        self.keys
            .iter()
            .find(|(key_name, _)| key_name == name)
            .map(|(_, key)| key)
    }

    fn metadata_token(&self, request: &HttpRequest) -> HttpResponse {
        if request.method() != Method::GET {
            return HttpResponse::MethodNotAllowed().finish();
        }
        if header(request, "metadata-flavor") != Some("Google") {
            return HttpResponse::Forbidden()
                .content_type("text/html")
                .body("Missing Metadata-Flavor:Google header.");
        }
        let lifetime = *self
            .token_lifetime
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let token = self.tokens.issue("ya29.fake", lifetime, &self.controls);
        json(
            200,
            serde_json::json!({
                "access_token": token,
                "expires_in": lifetime.as_secs(),
                "token_type": "Bearer",
            }),
        )
    }

    fn public_key(&self, name: &str) -> HttpResponse {
        let Some(key) = self.key(name) else {
            return error(404, "NOT_FOUND", &format!("{name} not found."));
        };
        let pem = key.public_key_pem();
        let algorithm = match key {
            FakeKey::EcdsaP256(_) => "EC_SIGN_P256_SHA256",
            FakeKey::Ed25519(_) => "EC_SIGN_ED25519",
        };
        json(
            200,
            serde_json::json!({
                "pem": pem,
                "algorithm": algorithm,
                "pemCrc32c": crc32c::crc32c(pem.as_bytes()).to_string(),
                "name": name,
                "protectionLevel": "HSM",
            }),
        )
    }

    async fn asymmetric_sign(
        &self,
        request: &HttpRequest,
        name: &str,
        body: &[u8],
    ) -> HttpResponse {
        let invalid = |message: &str| error(400, "INVALID_ARGUMENT", message);
        let Some(key) = self.key(name) else {
            return error(404, "NOT_FOUND", &format!("{name} not found."));
        };
        if !is_json(request) {
            return invalid("Invalid JSON payload: the request is not application/json.");
        }
        let Some(fields) = json_object(body) else {
            return invalid("Invalid JSON payload received.");
        };
        if let Some(unknown) = fields.keys().find(|field| {
            !["digest", "digestCrc32c", "data", "dataCrc32c"].contains(&field.as_str())
        }) {
            return invalid(&format!(
                "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
            ));
        }
        let decode = |value: Option<&serde_json::Value>| {
            value
                .and_then(serde_json::Value::as_str)
                .and_then(|text| B64.decode(text).ok())
        };
        // The checksum of what was sent, if the client gave one; a mismatch is refused as the
        // service does (the client retries a limited number of times).
        let checksum = |field: &str, bytes: &[u8]| -> Result<bool, String> {
            match fields.get(field) {
                None => Ok(false),
                Some(value) => {
                    let given = value.as_str().and_then(|text| text.parse::<u64>().ok());
                    if given == Some(u64::from(crc32c::crc32c(bytes))) {
                        Ok(true)
                    } else {
                        Err(format!(
                            "The checksum in field {field} did not match the data."
                        ))
                    }
                }
            }
        };
        let (signature, verified_digest, verified_data) = match key {
            FakeKey::EcdsaP256(_) => {
                if fields.contains_key("data") {
                    return invalid("The key version's algorithm EC_SIGN_P256_SHA256 requires a digest, not data.");
                }
                let Some(digest) =
                    decode(fields.get("digest").and_then(|digest| digest.get("sha256")))
                else {
                    return invalid("digest.sha256 is required for EC_SIGN_P256_SHA256.");
                };
                let verified = match checksum("digestCrc32c", &digest) {
                    Ok(verified) => verified,
                    Err(message) => return invalid(&message),
                };
                let Some(signature) = key.sign_digest(&digest) else {
                    return invalid("Digest must be 32 bytes for SHA256.");
                };
                (signature.to_der().as_bytes().to_vec(), verified, false)
            }
            FakeKey::Ed25519(_) => {
                if fields.contains_key("digest") {
                    return invalid(
                        "The key version's algorithm EC_SIGN_ED25519 requires data, not a digest.",
                    );
                }
                let Some(data) = decode(fields.get("data")) else {
                    return invalid("data is required for EC_SIGN_ED25519.");
                };
                let verified = match checksum("dataCrc32c", &data) {
                    Ok(verified) => verified,
                    Err(message) => return invalid(&message),
                };
                let Some(signature) = key.sign_ed25519(&data) else {
                    return invalid("signing failed");
                };
                (signature.to_vec(), false, verified)
            }
        };
        self.controls.sign_delay().await;
        self.controls.count_signature();
        json(
            200,
            serde_json::json!({
                "signature": B64.encode(&signature),
                "signatureCrc32c": crc32c::crc32c(&signature).to_string(),
                "verifiedDigestCrc32c": verified_digest,
                "verifiedDataCrc32c": verified_data,
                "name": name,
                "protectionLevel": "HSM",
            }),
        )
    }
}

impl FakeService for Gcp {
    fn controls(&self) -> &Controls {
        &self.controls
    }

    fn unavailable(&self) -> HttpResponse {
        error(503, "UNAVAILABLE", "The service is currently unavailable.")
    }

    fn handle(
        self: Arc<Self>,
        request: HttpRequest,
        body: web::Bytes,
    ) -> LocalBoxFuture<'static, HttpResponse> {
        Box::pin(async move {
            let path = request.path().to_owned();
            if path == TOKEN_PATH {
                return self.metadata_token(&request);
            }
            let not_found = || {
                error(
                    404,
                    "NOT_FOUND",
                    &format!("The requested URL {path} was not found."),
                )
            };
            let Some(resource) = path.strip_prefix("/v1/") else {
                return not_found();
            };
            if !bearer(&request).is_some_and(|token| self.tokens.check(token)) {
                return error(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access token.",
                );
            }
            match (
                request.method().clone(),
                resource.strip_suffix("/publicKey"),
                resource.strip_suffix(":asymmetricSign"),
            ) {
                (Method::GET, Some(name), _) => self.public_key(name),
                (Method::POST, _, Some(name)) => self.asymmetric_sign(&request, name, &body).await,
                _ => not_found(),
            }
        })
    }
}
