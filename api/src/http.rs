//! The actix-web routes of the public listener (rekor-v2-api.md §2.1, §10; tlog-tiles.md §2, §12).
//!
//! Build one [`ApiState`] outside the server's per-worker factory and mount it in every
//! worker's `App` with `App::new().configure(|cfg| state.configure(cfg))`.

use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::Service as _;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt as _;
use prometheus::{Encoder as _, Registry, TextEncoder};
use tracing::{debug, error, warn, Instrument as _};

use crate::access_log::RequestLine;
use crate::health;

use crate::backend::{LogBackend, LoggedEntry, SubmitError, TileRequest};
use crate::cpu_pool::CpuPool;
use crate::entry::EntryValidator;
use crate::key_details::AlgorithmPolicy;
use crate::metrics::ApiMetrics;
use crate::request::CreateEntryRequest;
use crate::response::{status_body, transparency_log_entry, GrpcCode};
use crate::submission::{check_proof, SubmissionError};
use crate::verifier::EntryVerifier;
use crate::verifier_aws_lc::AwsLcVerifier;

/// Upstream `--max-request-body-size` default: 4 MiB.
pub const DEFAULT_MAX_REQUEST_BODY_SIZE: usize = 4 * 1024 * 1024;

/// The body of a POST to a frozen log, plain text (§10).
pub const FROZEN_MESSAGE: &str = "This log has been frozen, please switch to the latest log.\n";

/// Configuration of the HTTP surface.
#[derive(Clone)]
pub struct ApiConfig {
    /// `logId.keyId`: the full 32-byte checkpoint key ID (rekor-v2-api.md §8.3).
    pub log_id: [u8; 32],
    /// Read-only (frozen) log: every POST answers 405.
    pub read_only: bool,
    /// Accept legacy dsse v0.0.2 requests (§12). Off by default.
    pub enable_dsse: bool,
    /// The client signing-algorithm allow-list (§5.1).
    pub algorithms: AlgorithmPolicy,
    /// Request bodies above this answer 400 `http: request body too large`.
    pub max_request_body_size: usize,
    /// Signature verification backend; aws-lc-rs arithmetic by default (same verdicts as
    /// [`crate::RustCryptoVerifier`]).
    pub verifier: Arc<dyn EntryVerifier>,
    /// Requests that may wait for a verification thread; beyond that a POST answers 503.
    pub verify_queue: usize,
    /// Who answers `/healthz`, named in its body; `None` answers with the status alone.
    pub instance: Option<Instance>,
    /// Serve `GET /api/v2/log/entries/{index}` (our extension, off by default): the
    /// TransparencyLogEntry of an entry already in the log, e.g. the one a 409 points at.
    pub entry_lookup: bool,
    /// Serve `/metrics` here (off when a listener of its own serves them).
    pub metrics_route: bool,
    /// Log one line per request, without bodies ([`crate::access_log`]). Off by default.
    pub log_requests: bool,
}

/// The process behind a listener: its node id and a token fixed when the process started. A
/// caller that started the process knows both, so a stranger holding the same port (an
/// earlier process, another test) cannot pass for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub node_id: u64,
    pub start_token: String,
}

/// Default [`ApiConfig::verify_queue`]: about a second of work on a few cores.
pub const DEFAULT_VERIFY_QUEUE: usize = 8192;

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            log_id: [0; 32],
            read_only: false,
            enable_dsse: false,
            algorithms: AlgorithmPolicy::default(),
            max_request_body_size: DEFAULT_MAX_REQUEST_BODY_SIZE,
            entry_lookup: false,
            metrics_route: true,
            log_requests: false,
            verifier: Arc::new(AwsLcVerifier),
            verify_queue: DEFAULT_VERIFY_QUEUE,
            instance: None,
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("log_id", &hex::encode(self.log_id))
            .field("read_only", &self.read_only)
            .field("enable_dsse", &self.enable_dsse)
            .field("algorithms", &self.algorithms)
            .field("max_request_body_size", &self.max_request_body_size)
            .field("verify_queue", &self.verify_queue)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// Why the API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ApiSetupError {
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("starting the verification threads: {0}")]
    Threads(#[from] std::io::Error),
}

/// Shared state of the public routes. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: ApiConfig,
    pub(crate) backend: Arc<dyn LogBackend>,
    pub(crate) validator: EntryValidator,
    /// Where requests are decoded and verified.
    pub(crate) cpu_pool: CpuPool,
    pub(crate) metrics: ApiMetrics,
    registry: Registry,
}

impl ApiState {
    /// Creates the state and registers the API metrics on `registry` (served at `/metrics`).
    pub fn new(
        config: ApiConfig,
        backend: Arc<dyn LogBackend>,
        registry: &Registry,
    ) -> Result<Self, ApiSetupError> {
        let metrics = ApiMetrics::register(registry)?;
        let validator = EntryValidator::with_verifier(
            config.algorithms.clone(),
            config.enable_dsse,
            config.verifier.clone(),
        );
        let cpu_pool = CpuPool::per_core(config.verify_queue, "rekor-verify")?
            .with_abandoned_counter(metrics.verify_jobs_abandoned.clone());
        Ok(ApiState {
            inner: Arc::new(Inner {
                config,
                backend,
                validator,
                cpu_pool,
                metrics,
                registry: registry.clone(),
            }),
        })
    }

    /// The API metrics (for tests and for the node's own dashboards).
    pub fn metrics(&self) -> &ApiMetrics {
        &self.inner.metrics
    }

    pub(crate) fn instance(&self) -> Option<&Instance> {
        self.inner.config.instance.as_ref()
    }

    /// The entry validator this state uses.
    pub fn validator(&self) -> &EntryValidator {
        &self.inner.validator
    }

    /// Mounts every public route, the JSON 404 default, and the HTTP metrics middleware.
    /// The routes live in one scope with an empty prefix, so this should be the only thing
    /// mounted on the public listener's `App`.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        let data = web::Data::new(self.clone());
        let metrics = self.inner.metrics.clone();
        let log_requests = self.inner.config.log_requests;
        cfg.service(
            web::scope("")
                .app_data(data)
                .wrap_fn(move |request, service| {
                    let started = Instant::now();
                    let method = request.method().clone();
                    let request_size = request
                        .headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<f64>().ok());
                    let access = log_requests.then(|| RequestLine::of(&request));
                    // A debug span: at the default level it is never made, and making one per
                    // request (its fields formatted, its slot taken and freed) cost about 2 % of a
                    // write's CPU. Every warning a request causes names what it is about.
                    let span =
                        tracing::debug_span!("http", method = %method, path = %request.path());
                    let metrics = metrics.clone();
                    let response = span.in_scope(|| service.call(request));
                    async move {
                        let response = response.await?;
                        observe_request(
                            &metrics,
                            method.as_str(),
                            response.status(),
                            started,
                            request_size,
                        );
                        if let Some(access) = access {
                            access.log(&response);
                        }
                        Ok(response)
                    }
                    .instrument(span)
                })
                .service(
                    web::resource("/api/v2/log/entries")
                        .route(web::post().to(create_entry))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/api/v2/log/entries/{index}")
                        .route(web::get().to(get_entry))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/api/v2/checkpoint")
                        .route(web::get().to(get_checkpoint))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/api/v2/tile/{tail:.+}")
                        .route(web::get().to(get_tile))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/healthz")
                        .route(web::get().to(health::healthz))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/livez")
                        .route(web::get().to(health::livez))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/metrics")
                        .route(web::get().to(get_metrics))
                        .default_service(web::to(method_not_allowed)),
                )
                .default_service(web::to(not_found)),
        );
    }
}

/// Counts and times one request by status code and method.
fn observe_request(
    metrics: &ApiMetrics,
    method: &str,
    status: StatusCode,
    started: Instant,
    request_size: Option<f64>,
) {
    let labels = [status.as_str(), method];
    metrics.http_requests_total.with_label_values(&labels).inc();
    metrics
        .http_api_latency
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    if let Some(size) = request_size {
        metrics
            .http_api_request_size
            .with_label_values(&labels)
            .observe(size);
    }
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(body)
}

fn status_response(status: StatusCode, code: GrpcCode, message: &str) -> HttpResponse {
    json_response(status, status_body(code, message))
}

async fn not_found() -> HttpResponse {
    status_response(StatusCode::NOT_FOUND, GrpcCode::NotFound, "Not Found")
}

/// grpc-gateway answers a known path with the wrong method with 501, not 405 (§2.1).
async fn method_not_allowed() -> HttpResponse {
    status_response(
        StatusCode::NOT_IMPLEMENTED,
        GrpcCode::Unimplemented,
        "Method Not Allowed",
    )
}

async fn get_metrics(state: web::Data<ApiState>) -> HttpResponse {
    if !state.inner.config.metrics_route {
        return not_found().await;
    }
    metrics_response(&state.inner.registry)
}

/// The `/metrics` answer for `registry` (Prometheus text format), also served on a metrics
/// listener of its own.
pub fn metrics_response(registry: &prometheus::Registry) -> HttpResponse {
    let mut out = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&registry.gather(), &mut out) {
        Ok(()) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, encoder.format_type()))
            .body(out),
        Err(e) => {
            error!(error = %e, "encoding metrics failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

async fn get_checkpoint(state: web::Data<ApiState>) -> HttpResponse {
    match state.inner.backend.checkpoint().await {
        Ok(Some(text)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(text),
        Ok(None) => not_found().await,
        Err(e) => {
            error!(error = %e, "reading the checkpoint failed");
            status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                GrpcCode::Internal,
                "internal server error",
            )
        }
    }
}

async fn get_tile(state: web::Data<ApiState>, request: HttpRequest) -> HttpResponse {
    let tail = request.match_info().get("tail").unwrap_or_default();
    let Some(id) = TileRequest::parse(tail) else {
        return not_found().await;
    };
    match state.inner.backend.tile(id).await {
        Ok(Some(bytes)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
            .insert_header((header::CACHE_CONTROL, "max-age=604800,immutable"))
            .body(bytes),
        Ok(None) => not_found().await,
        Err(e) => {
            error!(error = %e, tile = %id, "reading a tile failed");
            status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                GrpcCode::Internal,
                "internal server error",
            )
        }
    }
}

fn frozen_response() -> HttpResponse {
    HttpResponse::build(StatusCode::METHOD_NOT_ALLOWED)
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(FROZEN_MESSAGE)
}

fn integration_failure() -> HttpResponse {
    status_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        GrpcCode::Unknown,
        "failed to integrate entry",
    )
}

/// Reads the body up to `limit` bytes; `None` if it is larger. Memory grows with the bytes
/// received, never with what `Content-Length` claims (the listener's [`crate::limits`] bound
/// both the time and the bytes held).
async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Option<Vec<u8>>, actix_web::Error> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// `POST /api/v2/log/entries` (§3–§7, §10, §11.1): the body, then [`ApiState::submit`].
async fn create_entry(
    state: web::Data<ApiState>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let inner = &state.inner;
    if inner.config.read_only {
        return frozen_response();
    }
    let body = match read_body(&request, payload, inner.config.max_request_body_size).await {
        Ok(Some(body)) => body,
        Ok(None) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                GrpcCode::InvalidArgument,
                "http: request body too large",
            )
        }
        Err(e) => {
            debug!(error = %e, "reading the request body failed");
            return status_response(
                StatusCode::BAD_REQUEST,
                GrpcCode::InvalidArgument,
                &e.to_string(),
            );
        }
    };
    match state
        .submit(move || CreateEntryRequest::from_json(&body))
        .await
    {
        Ok(submitted) => HttpResponse::Created()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .body(submitted.to_json(&inner.config.log_id)),
        Err(error) => submission_error_response(&error),
    }
}

/// The HTTP answer to a refused submission (§10).
fn submission_error_response(error: &SubmissionError) -> HttpResponse {
    match error {
        SubmissionError::Frozen => frozen_response(),
        SubmissionError::Undecodable(message) | SubmissionError::Invalid(message) => {
            status_response(StatusCode::BAD_REQUEST, GrpcCode::InvalidArgument, message)
        }
        SubmissionError::Unloggable(message) => status_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            GrpcCode::Unknown,
            message,
        ),
        SubmissionError::Submit(error) => submit_error_response(error),
        SubmissionError::ProofCheckFailed => integration_failure(),
        SubmissionError::Internal => status_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            GrpcCode::Internal,
            "internal server error",
        ),
    }
}

/// `GET /api/v2/log/entries/{index}` (our extension, opt-in): the TransparencyLogEntry of the
/// entry at `index`, byte-compatible with a 201 answer, its proof in the tree of the checkpoint
/// this node serves. What a client given a 409 and `x-log-index` needs to rebuild its bundle.
async fn get_entry(state: web::Data<ApiState>, index: web::Path<String>) -> HttpResponse {
    let inner = &state.inner;
    if !inner.config.entry_lookup {
        return not_found().await;
    }
    // Digits only: no sign, no spaces, no leading zeros but "0".
    let index = index.into_inner();
    let parsed = (!index.is_empty()
        && index.len() <= 20
        && index.bytes().all(|b| b.is_ascii_digit())
        && (index == "0" || !index.starts_with('0')))
    .then(|| index.parse::<u64>().ok())
    .flatten();
    let Some(index) = parsed else {
        return status_response(
            StatusCode::BAD_REQUEST,
            GrpcCode::InvalidArgument,
            "the log index must be a decimal number",
        );
    };
    let stored = match inner.backend.entry(index).await {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            return status_response(
                StatusCode::NOT_FOUND,
                GrpcCode::NotFound,
                &format!("no entry at index {index} in the checkpoint this node serves"),
            )
        }
        Err(e) => {
            error!(index, error = %e, "reading a stored entry failed");
            return status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                GrpcCode::Internal,
                "error reading the entry",
            );
        }
    };
    let leaf_hash = rekor_storage::merkle::leaf_hash(&stored.canonical_body);
    if check_proof(&inner.metrics, &leaf_hash, &stored.logged).is_err() {
        return integration_failure();
    }
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(transparency_log_entry(
            &inner.config.log_id,
            stored.kind,
            &stored.canonical_body,
            &stored.logged,
        ))
}

fn submit_error_response(error: &SubmitError) -> HttpResponse {
    match error {
        SubmitError::Duplicate { log_index } => {
            let mut response = status_response(
                StatusCode::CONFLICT,
                GrpcCode::AlreadyExists,
                &error.to_string(),
            );
            if let Ok(value) = HeaderValue::from_str(&log_index.to_string()) {
                response
                    .headers_mut()
                    .insert(header::HeaderName::from_static("x-log-index"), value);
            }
            response
        }
        SubmitError::Overloaded => status_response(
            StatusCode::SERVICE_UNAVAILABLE,
            GrpcCode::Unavailable,
            "reached max pushback; retry",
        ),
        SubmitError::Unavailable(reason) => {
            warn!(%reason, "log unavailable");
            status_response(
                StatusCode::SERVICE_UNAVAILABLE,
                GrpcCode::Unavailable,
                "log unavailable; retry",
            )
        }
        SubmitError::Frozen => frozen_response(),
        SubmitError::Internal(reason) => {
            error!(%reason, "integrating an entry failed");
            integration_failure()
        }
    }
}

/// Before answering, the proof must lead from the leaf to `root_hash`, and the checkpoint must
/// be for that size and root (§7: all of these are checked by some client).
pub fn check_logged_entry(leaf_hash: &[u8; 32], logged: &LoggedEntry) -> Result<(), String> {
    rekor_storage::merkle::verify_inclusion(
        logged.log_index,
        logged.tree_size,
        leaf_hash,
        &logged.inclusion_proof,
        &logged.root_hash,
    )
    .map_err(|e| format!("inclusion proof: {e}"))?;
    let mut lines = logged.checkpoint.split('\n');
    let _origin = lines.next();
    let size = lines.next().and_then(|s| s.parse::<u64>().ok());
    let root = lines.next();
    let expected_root = crate::proto_json::encode_bytes(&logged.root_hash);
    if size != Some(logged.tree_size) || root != Some(expected_root.as_str()) {
        return Err("checkpoint does not match the proof's tree size and root".into());
    }
    Ok(())
}
