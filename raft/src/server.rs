//! The server side of the Raft network: actix-web handlers for the internal listener
//! (rust-stack.md §2.3 "Server side", §4). The wire contract is in [`crate::network`].
//!
//! [`raft_scope`] returns a `Scope` mounted at [`RAFT_SCOPE`]. The cluster secret is checked by
//! [`crate::auth`] from the headers, before a body byte is read (401 otherwise); each handler
//! then checks the target node id (421 otherwise), decodes the bincode body (400 if it does not
//! decode; bodies are capped, 413 beyond), calls the `Raft` handle and answers with the encoded
//! `Result`.

use actix_web::dev::HttpServiceFactory;
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::require_cluster_secret;
use crate::codec;
use crate::network::{
    ClusterSecret, APPEND_PATH, RAFT_SCOPE, SNAPSHOT_PATH, TARGET_NODE_HEADER, VOTE_PATH,
};
use crate::types::{NodeId, Raft};

/// Default cap of AppendEntries and Vote bodies: 64 MiB. The client never sends a larger
/// AppendEntries of several entries (`NetworkConfig::max_append_body`, the same default) and
/// maps a 413 to openraft's `PayloadTooLarge`, so this cap only has to exceed the largest
/// single Raft entry: one sequencer batch, at most 16 MiB of entry bodies (the node's
/// `--batch-max-bytes` limit).
pub const DEFAULT_MAX_RPC_BODY: usize = 64 * 1024 * 1024;
/// Default cap of one InstallSnapshot chunk body: 16 MiB (chunks are
/// `Config::snapshot_max_chunk_size`, see [`crate::config`]).
pub const DEFAULT_MAX_SNAPSHOT_BODY: usize = 16 * 1024 * 1024;

/// Settings of the Raft RPC handlers.
#[derive(Debug, Clone)]
pub struct RaftServerConfig {
    /// This node's id: requests for another id are refused.
    pub node_id: NodeId,
    /// The shared cluster secret.
    pub secret: ClusterSecret,
    /// Body cap of `append` and `vote`.
    pub max_rpc_body: usize,
    /// Body cap of `snapshot`.
    pub max_snapshot_body: usize,
}

impl RaftServerConfig {
    /// Settings with the default body caps.
    pub fn new(node_id: NodeId, secret: ClusterSecret) -> Self {
        Self {
            node_id,
            secret,
            max_rpc_body: DEFAULT_MAX_RPC_BODY,
            max_snapshot_body: DEFAULT_MAX_SNAPSHOT_BODY,
        }
    }
}

struct RaftRpcState {
    raft: Raft,
    node_id: NodeId,
}

/// The Raft RPC routes (`POST {RAFT_SCOPE}/append|vote|snapshot`) for this node's `raft`.
/// Build it inside the `HttpServer::new` factory; the `Raft` handle is a cheap clone.
pub fn raft_scope(raft: Raft, config: RaftServerConfig) -> impl HttpServiceFactory + 'static {
    let state = web::Data::new(RaftRpcState {
        raft,
        node_id: config.node_id,
    });
    let secret = config.secret;
    web::scope(RAFT_SCOPE)
        .wrap(from_fn(move |request, next| {
            require_cluster_secret(secret.clone(), request, next)
        }))
        .app_data(state)
        .service(
            web::resource(APPEND_PATH)
                .app_data(web::PayloadConfig::new(config.max_rpc_body))
                .route(web::post().to(append)),
        )
        .service(
            web::resource(VOTE_PATH)
                .app_data(web::PayloadConfig::new(config.max_rpc_body))
                .route(web::post().to(vote)),
        )
        .service(
            web::resource(SNAPSHOT_PATH)
                .app_data(web::PayloadConfig::new(config.max_snapshot_body))
                .route(web::post().to(snapshot)),
        )
}

fn plain(status: StatusCode, message: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(message)
}

/// Check the target id, then decode the body (the secret was checked by the scope's middleware).
fn admit<T: DeserializeOwned>(
    state: &RaftRpcState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<T, HttpResponse> {
    let target = req
        .headers()
        .get(TARGET_NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<NodeId>().ok());
    if target != Some(state.node_id) {
        return Err(plain(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this is node {}, the request is for {:?}",
                state.node_id, target
            ),
        ));
    }
    codec::decode(body).map_err(|e| plain(StatusCode::BAD_REQUEST, format!("bad body: {e}")))
}

fn reply<T: Serialize>(result: &T) -> HttpResponse {
    match codec::encode(result) {
        Ok(bytes) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(bytes),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode response: {e}"),
        ),
    }
}

async fn append(
    state: web::Data<RaftRpcState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    match admit(&state, &req, &body) {
        Ok(rpc) => reply(&state.raft.append_entries(rpc).await),
        Err(refusal) => refusal,
    }
}

async fn vote(state: web::Data<RaftRpcState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    match admit(&state, &req, &body) {
        Ok(rpc) => reply(&state.raft.vote(rpc).await),
        Err(refusal) => refusal,
    }
}

async fn snapshot(
    state: web::Data<RaftRpcState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    match admit(&state, &req, &body) {
        Ok(rpc) => reply(&state.raft.install_snapshot(rpc).await),
        Err(refusal) => refusal,
    }
}
