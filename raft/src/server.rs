//! The server side of the Raft network: actix-web handlers for the internal listener
//! (rust-stack.md §2.3 "Server side", §4). The wire contract is in [`crate::network`].
//!
//! [`raft_scope`] returns a `Scope` mounted at [`RAFT_SCOPE`]. The caller is authenticated by
//! [`crate::auth`] from the connection and the headers, before a body byte is read (401/403
//! otherwise); each handler then checks the target node id (421 otherwise), decodes the bincode
//! body (400 if it does not decode; bodies are capped, 413 beyond), checks under mutual TLS that
//! the vote the RPC carries names the authenticated sender (403 otherwise: node 2 cannot ask for
//! votes or append entries as node 3), calls the `Raft` handle and answers with the encoded
//! `Result`.

use actix_web::dev::HttpServiceFactory;
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::{authenticate, AuthenticatedPeer, InternalAuth, Role};
use crate::codec;
use crate::network::{
    ClusterSecret, APPEND_PATH, RAFT_SCOPE, SNAPSHOT_PATH, TARGET_NODE_HEADER, VOTE_PATH,
};
use crate::types::{NodeId, Raft};
use actix_web::HttpMessage;
use openraft::raft::AppendEntriesResponse;
use openraft::Vote;

use crate::leader_contact::LeaderContact;

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
    /// Who may call: the cluster secret, and under mutual TLS a node certificate.
    pub auth: InternalAuth,
    /// Body cap of `append` and `vote`.
    pub max_rpc_body: usize,
    /// Body cap of `snapshot`.
    pub max_snapshot_body: usize,
    /// Set on every AppendEntries this node accepts (the follower's readiness signal).
    pub leader_contact: LeaderContact,
}

impl RaftServerConfig {
    /// Settings with the default body caps, for a listener without TLS (the secret only).
    pub fn new(node_id: NodeId, secret: ClusterSecret) -> Self {
        Self::with_auth(node_id, InternalAuth::secret_only(secret))
    }

    /// Settings with the default body caps and the given authentication.
    pub fn with_auth(node_id: NodeId, auth: InternalAuth) -> Self {
        Self {
            node_id,
            auth,
            max_rpc_body: DEFAULT_MAX_RPC_BODY,
            max_snapshot_body: DEFAULT_MAX_SNAPSHOT_BODY,
            leader_contact: LeaderContact::default(),
        }
    }
}

struct RaftRpcState {
    raft: Raft,
    node_id: NodeId,
    leader_contact: LeaderContact,
}

/// The Raft RPC routes (`POST {RAFT_SCOPE}/append|vote|snapshot`) for this node's `raft`.
/// Build it inside the `HttpServer::new` factory; the `Raft` handle is a cheap clone.
pub fn raft_scope(raft: Raft, config: RaftServerConfig) -> impl HttpServiceFactory + 'static {
    let state = web::Data::new(RaftRpcState {
        raft,
        node_id: config.node_id,
        leader_contact: config.leader_contact,
    });
    let auth = config.auth;
    web::scope(RAFT_SCOPE)
        .wrap(from_fn(move |request, next| {
            authenticate(auth.clone(), Role::Peer, request, next)
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

/// An RPC that names its sender in its vote (the candidate, or the leader appending).
trait ClaimsSender {
    fn vote(&self) -> &Vote<NodeId>;
}

impl ClaimsSender for openraft::raft::VoteRequest<NodeId> {
    fn vote(&self) -> &Vote<NodeId> {
        &self.vote
    }
}

impl ClaimsSender for openraft::raft::AppendEntriesRequest<crate::types::TypeConfig> {
    fn vote(&self) -> &Vote<NodeId> {
        &self.vote
    }
}

impl ClaimsSender for openraft::raft::InstallSnapshotRequest<crate::types::TypeConfig> {
    fn vote(&self) -> &Vote<NodeId> {
        &self.vote
    }
}

/// Check the target id, decode the body, and (under mutual TLS) check that the RPC's vote names
/// the sender the certificate authenticated. The secret and certificate were checked by the
/// scope's middleware.
fn admit<T: DeserializeOwned + ClaimsSender>(
    state: &RaftRpcState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<T, HttpResponse> {
    let rpc: T = decode_for_this_node(state, req, body)?;
    let authenticated = req.extensions().get::<AuthenticatedPeer>().copied();
    if let Some(AuthenticatedPeer(sender)) = authenticated {
        let claimed = rpc.vote().leader_id().voted_for();
        if claimed != Some(sender) {
            tracing::warn!(
                sender,
                ?claimed,
                "Raft RPC refused: its vote names another node than the sender's certificate"
            );
            return Err(plain(
                StatusCode::FORBIDDEN,
                format!("node {sender} cannot send a Raft RPC on behalf of {claimed:?}"),
            ));
        }
    }
    Ok(rpc)
}

/// Check the target id, then decode the body.
fn decode_for_this_node<T: DeserializeOwned>(
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
        Ok(rpc) => {
            let result = state.raft.append_entries(rpc).await;
            // Success or Conflict: the sender's vote was accepted, it is our leader.
            if matches!(
                result,
                Ok(AppendEntriesResponse::Success)
                    | Ok(AppendEntriesResponse::PartialSuccess(_))
                    | Ok(AppendEntriesResponse::Conflict)
            ) {
                state.leader_contact.record();
            }
            reply(&result)
        }
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
