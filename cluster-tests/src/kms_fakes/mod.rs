//! Fakes of the remote signers' HTTP APIs, **for tests only**: GCP Cloud KMS with the GCE
//! metadata server ([`gcp`]), Azure Key Vault with Entra ID and the instance metadata service
//! ([`azure`]), and the Vault/OpenBao transit engine ([`vault`]).
//!
//! None of these services can run here, so each fake is an in-process HTTP server on a loopback
//! port that holds real keys, answers only the calls the `rekor-signer` backends make, checks
//! those requests as the service's API reference describes them (method, path, query, headers,
//! credentials, JSON fields) and refuses anything else with the service's error shape. They are
//! no substitute for the services' own behaviour beyond that.
//!
//! Every fake has the same test controls ([`Controls`]): it can be made unavailable (every
//! request answered 503, as a service outage), slowed down (a delay before each signature) and
//! it counts signatures, token grants and requests. A fake runs on its own thread with its own
//! actix runtime, so it serves concurrent requests whatever the test's runtime does, and it
//! stops when its handle is dropped.

pub mod azure;
pub mod gcp;
pub mod vault;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::{anyhow, Context, Result};
use futures::future::LocalBoxFuture;
use p256::pkcs8::{EncodePublicKey, LineEnding};

/// What a test can change and observe on a fake.
#[derive(Clone, Default)]
pub struct Controls {
    inner: Arc<ControlsInner>,
}

#[derive(Default)]
struct ControlsInner {
    unavailable: AtomicBool,
    delay_micros: AtomicU64,
    signatures: AtomicU64,
    tokens_issued: AtomicU64,
    requests: AtomicU64,
}

impl Controls {
    /// `false`: every request is answered 503 in the service's error shape until set back.
    pub fn set_available(&self, available: bool) {
        self.inner.unavailable.store(!available, Ordering::SeqCst);
    }

    /// Whether the fake answers.
    pub fn available(&self) -> bool {
        !self.inner.unavailable.load(Ordering::SeqCst)
    }

    /// Latency added to every signature (an asynchronous wait: other requests go on meanwhile).
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.inner.delay_micros.store(micros, Ordering::SeqCst);
    }

    /// The latency added to every signature.
    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.inner.delay_micros.load(Ordering::SeqCst))
    }

    /// Signatures made so far.
    pub fn signatures(&self) -> u64 {
        self.inner.signatures.load(Ordering::SeqCst)
    }

    /// Tokens handed out so far by the fake's token endpoints.
    pub fn tokens_issued(&self) -> u64 {
        self.inner.tokens_issued.load(Ordering::SeqCst)
    }

    /// Requests received so far, answered or not.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Waits the configured delay (before a signature).
    async fn sign_delay(&self) {
        let delay = self.delay();
        if !delay.is_zero() {
            actix_web::rt::time::sleep(delay).await;
        }
    }

    fn count_signature(&self) {
        self.inner.signatures.fetch_add(1, Ordering::SeqCst);
    }
}

/// Bearer tokens a fake has handed out, each valid until its expiry, plus tokens valid forever
/// (an operator's static token).
#[derive(Default)]
struct TokenBook {
    valid_until: Mutex<HashMap<String, Option<Instant>>>,
    counter: AtomicU64,
    last_used: Mutex<Option<String>>,
}

impl TokenBook {
    /// A new token valid for `lifetime`.
    fn issue(&self, prefix: &str, lifetime: Duration, controls: &Controls) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        controls.inner.tokens_issued.fetch_add(1, Ordering::SeqCst);
        let token = format!("{prefix}-{n}-{:016x}", rand::random::<u64>());
        self.lock()
            .insert(token.clone(), Some(Instant::now() + lifetime));
        token
    }

    fn accept_forever(&self, token: &str) {
        self.lock().insert(token.to_owned(), None);
    }

    fn revoke_all(&self) {
        self.lock().clear();
    }

    /// Whether `token` was handed out and has not expired; remembers it as the last one used.
    fn check(&self, token: &str) -> bool {
        let valid = self
            .lock()
            .get(token)
            .is_some_and(|until| until.is_none_or(|until| Instant::now() < until));
        if valid {
            *self
                .last_used
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(token.to_owned());
        }
        valid
    }

    fn last_used(&self) -> Option<String> {
        self.last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Instant>>> {
        self.valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A key a fake signs with.
pub enum FakeKey {
    EcdsaP256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl FakeKey {
    /// A new random P-256 key.
    pub fn p256() -> Self {
        Self::EcdsaP256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
    }

    /// A new random Ed25519 key.
    pub fn ed25519() -> Self {
        Self::Ed25519(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng))
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        let der = match self {
            Self::EcdsaP256(key) => key.verifying_key().to_public_key_der(),
            Self::Ed25519(key) => key.verifying_key().to_public_key_der(),
        };
        der.map(|der| der.into_vec()).unwrap_or_default()
    }

    /// The public key as a PEM `PUBLIC KEY`.
    pub fn public_key_pem(&self) -> String {
        let pem = match self {
            Self::EcdsaP256(key) => key.verifying_key().to_public_key_pem(LineEnding::LF),
            Self::Ed25519(key) => key.verifying_key().to_public_key_pem(LineEnding::LF),
        };
        pem.unwrap_or_default()
    }

    /// A P-256 key's signature of a 32-byte digest; `None` for other keys or lengths.
    fn sign_digest(&self, digest: &[u8]) -> Option<p256::ecdsa::Signature> {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        match self {
            Self::EcdsaP256(key) if digest.len() == 32 => key.sign_prehash(digest).ok(),
            _ => None,
        }
    }

    /// An Ed25519 key's signature of `message`; `None` for other keys.
    fn sign_ed25519(&self, message: &[u8]) -> Option<[u8; 64]> {
        use ed25519_dalek::Signer;
        match self {
            Self::Ed25519(key) => Some(key.sign(message).to_bytes()),
            Self::EcdsaP256(_) => None,
        }
    }
}

/// A fake's request handling: one function for every method and path, so that unknown calls
/// get the service's own error shape.
trait FakeService: Send + Sync + 'static {
    fn controls(&self) -> &Controls;
    /// The answer to every request while the fake is unavailable.
    fn unavailable(&self) -> HttpResponse;
    fn handle(
        self: Arc<Self>,
        request: HttpRequest,
        body: web::Bytes,
    ) -> LocalBoxFuture<'static, HttpResponse>;
}

/// A running fake: an actix-web server on a loopback port, on its own thread; stopped on drop.
struct FakeServer {
    address: SocketAddr,
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    fn start<S: FakeService>(name: &str, service: Arc<S>) -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let (ready, started) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("fake-{name}"))
            .spawn(move || {
                let system = actix_web::rt::System::new();
                system.block_on(async move {
                    let server = HttpServer::new(move || {
                        let service = Arc::clone(&service);
                        App::new().default_service(web::to(
                            move |request: HttpRequest, body: web::Bytes| {
                                let service = Arc::clone(&service);
                                async move { serve(service, request, body).await }
                            },
                        ))
                    })
                    .workers(2)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .listen(listener);
                    match server {
                        Ok(server) => {
                            let server = server.run();
                            let _ = ready.send(Ok(server.handle()));
                            let _ = server.await;
                        }
                        Err(error) => {
                            let _ = ready.send(Err(error));
                        }
                    }
                });
            })
            .context("spawning the fake's thread")?;
        let handle = started
            .recv()
            .map_err(|_| anyhow!("the fake {name} did not start"))?
            .with_context(|| format!("starting the fake {name}"))?;
        Ok(Self {
            address,
            handle,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // The stop command is sent at once; the returned future only waits for its completion,
        // which joining the thread does too.
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve<S: FakeService>(
    service: Arc<S>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let controls = service.controls();
    controls.inner.requests.fetch_add(1, Ordering::SeqCst);
    if !controls.available() {
        return service.unavailable();
    }
    service.handle(request, body).await
}

/// A JSON answer.
fn json(status: u16, value: serde_json::Value) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json; charset=utf-8")
        .body(value.to_string())
}

/// A request header as text.
fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name)?.to_str().ok()
}

/// The token of an `Authorization: Bearer` header.
fn bearer(request: &HttpRequest) -> Option<&str> {
    let value = header(request, "authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether the request says its body is JSON.
fn is_json(request: &HttpRequest) -> bool {
    header(request, "content-type")
        .is_some_and(|value| value.trim_start().starts_with("application/json"))
}

/// The query's parameters (last one wins).
fn query(request: &HttpRequest) -> HashMap<String, String> {
    url::form_urlencoded::parse(request.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// A JSON object body, with the names of its fields.
fn json_object(body: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_slice(body).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}
