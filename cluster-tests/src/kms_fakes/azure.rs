//! A fake of the Azure Key Vault keys REST API (api-version 7.4), of the Microsoft Entra ID
//! token endpoint and of the instance metadata service's identity endpoint, for tests only,
//! implementing only:
//! - `GET /keys/{name}[/{version}]?api-version=7.4` (a key bundle with a JWK of `kty` `EC-HSM`,
//!   `crv` `P-256`, `kid`, `key_ops`, and `attributes.enabled`);
//! - `POST /keys/{name}/{version}/sign?api-version=7.4` with `{"alg": "ES256", "value":
//!   base64url(32-byte digest)}`, answering `kid` and `value` (base64url `r ‖ s`);
//! - `POST /{tenant}/oauth2/v2.0/token`, form-encoded `grant_type=client_credentials`,
//!   `client_id`, `client_secret`, `scope=https://vault.azure.net/.default`;
//! - `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net`
//!   with `Metadata: true` (`expires_in` as a string, as IMDS sends it).
//!
//! Its one key, `rekor`, has two P-256 versions; the second is current. Key Vault calls need a
//! bearer token from one of the token endpoints that has not expired. Errors have the services'
//! shapes: Key Vault's `{"error": {"code", "message"}}` (401 with a `WWW-Authenticate`
//! challenge), Entra ID's `{"error", "error_description", "error_codes"}`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use anyhow::Result;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use futures::future::LocalBoxFuture;

use super::{
    bearer, header, is_json, json, json_object, query, Controls, FakeKey, FakeServer, FakeService,
    TokenBook,
};

/// The running fake; stops when dropped.
pub struct FakeAzureKeyVault {
    server: FakeServer,
    state: Arc<Azure>,
}

struct Azure {
    controls: Controls,
    tokens: TokenBook,
    token_lifetime: Mutex<Duration>,
    /// (version, key), oldest first; the last is the current version.
    versions: Vec<(String, FakeKey)>,
    base_url: Mutex<String>,
}

impl FakeAzureKeyVault {
    /// The fake's key name.
    pub const KEY_NAME: &'static str = "rekor";
    /// The tenant, application and secret its token endpoint accepts.
    pub const TENANT_ID: &'static str = "00000000-0000-4000-8000-00000000fa4e";
    pub const CLIENT_ID: &'static str = "11111111-1111-4111-8111-111111111111";
    pub const CLIENT_SECRET: &'static str = "fake~client~secret";

    /// Starts the fake with two new versions of its key; tokens last an hour.
    pub fn start() -> Result<Self> {
        let version = || format!("{:032x}", rand::random::<u128>());
        let state = Arc::new(Azure {
            controls: Controls::default(),
            tokens: TokenBook::default(),
            token_lifetime: Mutex::new(Duration::from_secs(3600)),
            versions: vec![(version(), FakeKey::p256()), (version(), FakeKey::p256())],
            base_url: Mutex::new(String::new()),
        });
        let server = FakeServer::start("azure-key-vault", Arc::clone(&state))?;
        *state
            .base_url
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = server.base_url();
        Ok(Self { server, state })
    }

    /// `azurekms://127.0.0.1:<port>/rekor`: the key, at its current version.
    pub fn uri(&self) -> String {
        format!("azurekms://{}/{}", self.server.address, Self::KEY_NAME)
    }

    /// The URI of one version of the key.
    pub fn uri_with_version(&self, version: &str) -> String {
        format!("{}/{version}", self.uri())
    }

    /// The key's versions, oldest first; the last is the current one.
    pub fn versions(&self) -> Vec<String> {
        self.state
            .versions
            .iter()
            .map(|(version, _)| version.clone())
            .collect()
    }

    /// The public key of `version` as DER SPKI.
    pub fn public_key_der(&self, version: &str) -> Option<Vec<u8>> {
        self.state.version(version).map(FakeKey::public_key_der)
    }

    /// The environment of a node using the client-credentials grant against the fake.
    pub fn env_client_secret(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_TENANT_ID".into(), Self::TENANT_ID.into()),
            ("AZURE_CLIENT_ID".into(), Self::CLIENT_ID.into()),
            ("AZURE_CLIENT_SECRET".into(), Self::CLIENT_SECRET.into()),
            ("AZURE_AUTHORITY_HOST".into(), self.server.base_url()),
        ]
    }

    /// The environment of a node using a managed identity from the fake IMDS.
    pub fn env_managed_identity(&self) -> Vec<(String, String)> {
        vec![("REKOR_AZURE_IMDS_ENDPOINT".into(), self.server.base_url())]
    }

    /// The base URL of the fake (the authority host and the IMDS endpoint).
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The lifetime of the tokens handed out from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *self
            .state
            .token_lifetime
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = lifetime;
    }

    /// Makes every token handed out so far invalid.
    pub fn revoke_tokens(&self) {
        self.state.tokens.revoke_all();
    }

    /// The bearer token of the last Key Vault request that was let in.
    pub fn last_token_used(&self) -> Option<String> {
        self.state.tokens.last_used()
    }

    /// The test controls: availability, delay, counters.
    pub fn controls(&self) -> &Controls {
        &self.state.controls
    }
}

/// A Key Vault error.
fn vault_error(status: u16, code: &str, message: &str) -> HttpResponse {
    json(
        status,
        serde_json::json!({ "error": { "code": code, "message": message } }),
    )
}

/// An Entra ID (OAuth 2.0) error.
fn entra_error(status: u16, error: &str, code: u32, description: &str) -> HttpResponse {
    json(
        status,
        serde_json::json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
        }),
    )
}

impl Azure {
    fn version(&self, version: &str) -> Option<&FakeKey> {
        self.versions
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(version))
            .map(|(_, key)| key)
    }

    fn lifetime(&self) -> Duration {
        *self
            .token_lifetime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn kid(&self, version: &str) -> String {
        let base = self
            .base_url
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        format!("{base}/keys/{}/{version}", FakeAzureKeyVault::KEY_NAME)
    }

    fn client_credentials(&self, request: &HttpRequest, tenant: &str, body: &[u8]) -> HttpResponse {
        if request.method() != Method::POST {
            return entra_error(
                405,
                "invalid_request",
                900561,
                "The endpoint only accepts POST requests.",
            );
        }
        if !header(request, "content-type")
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
        {
            return entra_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            );
        }
        if tenant != FakeAzureKeyVault::TENANT_ID {
            return entra_error(
                400,
                "invalid_tenant",
                90002,
                &format!("Tenant '{tenant}' not found."),
            );
        }
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        let field = |name: &str| form.get(name).map(String::as_str);
        if field("grant_type") != Some("client_credentials") {
            return entra_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            );
        }
        if field("client_id") != Some(FakeAzureKeyVault::CLIENT_ID) {
            return entra_error(
                400,
                "unauthorized_client",
                700016,
                "Application not found in the directory.",
            );
        }
        if field("client_secret") != Some(FakeAzureKeyVault::CLIENT_SECRET) {
            return entra_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided.",
            );
        }
        if field("scope") != Some("https://vault.azure.net/.default") {
            return entra_error(
                400,
                "invalid_scope",
                1002012,
                "The provided value for scope is not valid.",
            );
        }
        let lifetime = self.lifetime();
        let token = self
            .tokens
            .issue("eyJ0eXAi.fake-entra", lifetime, &self.controls);
        json(
            200,
            serde_json::json!({
                "token_type": "Bearer",
                "expires_in": lifetime.as_secs(),
                "ext_expires_in": lifetime.as_secs(),
                "access_token": token,
            }),
        )
    }

    fn managed_identity(&self, request: &HttpRequest) -> HttpResponse {
        let imds_error = |status: u16, error: &str, description: &str| {
            json(
                status,
                serde_json::json!({ "error": error, "error_description": description }),
            )
        };
        if request.method() != Method::GET {
            return imds_error(405, "invalid_request", "Only GET is allowed.");
        }
        if header(request, "metadata") != Some("true") {
            return imds_error(
                400,
                "invalid_request",
                "Required metadata header not specified",
            );
        }
        let query = query(request);
        if query.get("api-version").map(String::as_str) != Some("2018-02-01") {
            return imds_error(400, "invalid_request", "Invalid or missing api-version");
        }
        if query.get("resource").map(String::as_str) != Some("https://vault.azure.net") {
            return imds_error(
                400,
                "invalid_resource",
                "The resource is not one this fake grants",
            );
        }
        let lifetime = self.lifetime();
        let token = self
            .tokens
            .issue("eyJ0eXAi.fake-imds", lifetime, &self.controls);
        json(
            200,
            serde_json::json!({
                "access_token": token,
                "client_id": query.get("client_id").cloned().unwrap_or_else(|| "system-assigned".into()),
                "expires_in": lifetime.as_secs().to_string(),
                "expires_on": "0",
                "ext_expires_in": lifetime.as_secs().to_string(),
                "not_before": "0",
                "resource": "https://vault.azure.net",
                "token_type": "Bearer",
            }),
        )
    }

    fn get_key(&self, version: Option<&str>) -> HttpResponse {
        let version = match version {
            Some(version) => version.to_owned(),
            None => self
                .versions
                .last()
                .map(|(version, _)| version.clone())
                .unwrap_or_default(),
        };
        let Some(FakeKey::EcdsaP256(key)) = self.version(&version) else {
            return vault_error(
                404,
                "KeyNotFound",
                &format!(
                    "A key with (name/id) {}/{version} was not found in this key vault.",
                    FakeAzureKeyVault::KEY_NAME
                ),
            );
        };
        let point = key.verifying_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return vault_error(500, "InternalError", "no coordinates");
        };
        json(
            200,
            serde_json::json!({
                "key": {
                    "kid": self.kid(&version),
                    "kty": "EC-HSM",
                    "key_ops": ["sign", "verify"],
                    "crv": "P-256",
                    "x": B64URL.encode(x),
                    "y": B64URL.encode(y),
                },
                "attributes": { "enabled": true, "recoveryLevel": "Recoverable+Purgeable" },
            }),
        )
    }

    async fn sign(&self, request: &HttpRequest, version: &str, body: &[u8]) -> HttpResponse {
        let bad = |message: &str| vault_error(400, "BadParameter", message);
        let Some(key) = self.version(version) else {
            return vault_error(
                404,
                "KeyNotFound",
                &format!(
                    "A key with (name/id) {}/{version} was not found in this key vault.",
                    FakeAzureKeyVault::KEY_NAME
                ),
            );
        };
        if !is_json(request) {
            return bad("The request content type must be application/json.");
        }
        let Some(fields) = json_object(body) else {
            return bad("The request body is not a JSON object.");
        };
        if let Some(unknown) = fields
            .keys()
            .find(|field| !["alg", "value"].contains(&field.as_str()))
        {
            return bad(&format!("Property {unknown} is not a sign parameter."));
        }
        if fields.get("alg").and_then(serde_json::Value::as_str) != Some("ES256") {
            return bad("Invalid algorithm: a P-256 key signs with ES256.");
        }
        let digest = fields
            .get("value")
            .and_then(serde_json::Value::as_str)
            .and_then(|value| B64URL.decode(value.trim_end_matches('=')).ok());
        let Some(signature) = digest.as_deref().and_then(|digest| key.sign_digest(digest)) else {
            return bad("Invalid value: ES256 takes the base64url of a 32-byte SHA-256 digest.");
        };
        self.controls.sign_delay().await;
        self.controls.count_signature();
        json(
            200,
            serde_json::json!({
                "kid": self.kid(version),
                "value": B64URL.encode(signature.to_bytes()),
            }),
        )
    }
}

impl FakeService for Azure {
    fn controls(&self) -> &Controls {
        &self.controls
    }

    fn unavailable(&self) -> HttpResponse {
        vault_error(
            503,
            "ServiceUnavailable",
            "The service is temporarily unavailable.",
        )
    }

    fn handle(
        self: Arc<Self>,
        request: HttpRequest,
        body: web::Bytes,
    ) -> LocalBoxFuture<'static, HttpResponse> {
        Box::pin(async move {
            let path = request.path().to_owned();
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match segments[..] {
                [tenant, "oauth2", "v2.0", "token"] => {
                    return self.client_credentials(&request, tenant, &body)
                }
                ["metadata", "identity", "oauth2", "token"] => {
                    return self.managed_identity(&request)
                }
                ["keys", ..] => {}
                _ => {
                    return vault_error(
                        404,
                        "NotFound",
                        &format!("{path} is not a path of this service."),
                    )
                }
            }
            if query(&request).get("api-version").map(String::as_str) != Some("7.4") {
                return vault_error(
                    400,
                    "BadParameter",
                    "The api-version parameter must be 7.4 here.",
                );
            }
            if !bearer(&request).is_some_and(|token| self.tokens.check(token)) {
                return HttpResponse::Unauthorized()
                    .insert_header((
                        "WWW-Authenticate",
                        format!(
                            "Bearer authorization=\"https://login.microsoftonline.com/{}\", resource=\"https://vault.azure.net\"",
                            FakeAzureKeyVault::TENANT_ID
                        ),
                    ))
                    .content_type("application/json; charset=utf-8")
                    .body(
                        serde_json::json!({ "error": { "code": "Unauthorized", "message": "AKV10000: Request is missing a valid Bearer token." } })
                            .to_string(),
                    );
            }
            let not_found = || {
                vault_error(
                    404,
                    "KeyNotFound",
                    &format!("{path} names no key of this key vault."),
                )
            };
            match (request.method().clone(), &segments[..]) {
                (Method::GET, ["keys", name] | ["keys", name, ""])
                    if *name == FakeAzureKeyVault::KEY_NAME =>
                {
                    self.get_key(None)
                }
                (Method::GET, ["keys", name, version]) if *name == FakeAzureKeyVault::KEY_NAME => {
                    self.get_key(Some(version))
                }
                (Method::POST, ["keys", name, version, "sign"])
                    if *name == FakeAzureKeyVault::KEY_NAME =>
                {
                    self.sign(&request, version, &body).await
                }
                _ => not_found(),
            }
        })
    }
}
