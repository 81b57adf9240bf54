//! The node-to-node listener's own routes (next to the Raft RPCs that `rekor_raft::server` mounts):
//! write forwarding from followers to the leader, catch-up reads of tiles and entry bundles, and
//! the admin calls behind `init`, `status`, `node add|remove|list` and `freeze`. Every route is
//! authenticated by `rekor_raft::auth` before any body is read: the cluster secret, and under
//! mutual TLS a node certificate for the peer routes and an operator certificate for the admin
//! routes.
//!
//! The leader trusts nothing it cannot integrate: a forwarded entry was validated by the
//! follower, but before it is sequenced the leader checks what it can without the request —
//! identity, size, canonical form and an entry kind enabled here ([`check_forwarded`]) — since
//! one committed entry that no integrator can write would halt the log.

use std::collections::{BTreeMap, BTreeSet};

use actix::Addr;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse};
use rekor_raft::auth::{authenticate, InternalAuth, Role};
use rekor_raft::types::{AppendOutcome, NodeAddress, Raft, SequencedEntry};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};
use tracing::{info, warn};

use crate::publisher::{PublishNow, Publisher};
use crate::sequencer::{Sequence, SequenceError, Sequencer};
use crate::served::Served;

/// Route paths, shared by the server and the admin client.
pub mod paths {
    /// The scope every route below lives in.
    pub const PREFIX: &str = "/internal/v1";
    pub const SEQUENCE: &str = "/internal/v1/sequence";
    pub const SEQUENCE_BATCH: &str = "/internal/v1/sequence-batch";
    /// Catch-up reads: `{PREFIX}/tile/...` serves what the public `/api/v2/tile/...` serves.
    pub const TILES: &str = "/internal/v1/tile";
    /// The scope of the operators' routes.
    pub const ADMIN_PREFIX: &str = "/internal/v1/admin";
    pub const INIT: &str = "/internal/v1/admin/init";
    pub const ADD_NODE: &str = "/internal/v1/admin/add-node";
    pub const REMOVE_NODE: &str = "/internal/v1/admin/remove-node";
    pub const STATUS: &str = "/internal/v1/admin/status";
    pub const FREEZE: &str = "/internal/v1/admin/freeze";
}

/// Largest forwarded entry body: the 65,535-byte entry cap plus the bincode framing.
const MAX_FORWARD_BODY: usize = 128 * 1024;

/// A cluster member's addresses, as the admin API spells them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub internal_addr: String,
    pub public_addr: String,
}

impl From<Member> for NodeAddress {
    fn from(member: Member) -> Self {
        NodeAddress {
            internal_addr: member.internal_addr,
            public_addr: member.public_addr,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct InitRequest {
    pub members: BTreeMap<u64, Member>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AddNodeRequest {
    pub id: u64,
    pub member: Member,
    /// Make it a voter once it has caught up.
    pub promote: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeMembershipRequest {
    pub remove: Vec<u64>,
}

/// What the internal routes share.
pub struct InternalState {
    pub node_id: u64,
    pub raft: Raft,
    pub sequencer: Addr<Sequencer>,
    pub publisher: Addr<Publisher>,
    pub served: watch::Receiver<Served>,
    pub state_machine: rekor_raft::StateReader,
    /// Admission control: forwarded entries count against the leader's bound too.
    pub pushback: crate::pushback::Pushback,
    /// Whether legacy dsse entries are accepted here (`--enable-dsse`).
    pub legacy_dsse: bool,
    /// Membership changes are serialised (openraft: concurrent changes can interleave).
    pub membership_lock: Mutex<()>,
    /// The read path of the public API, for catch-up reads.
    pub backend: std::sync::Arc<crate::backend::NodeBackend>,
}

/// The routes, to mount on the internal listener's `App`: the admin scope for operators and the
/// peer scope for nodes, each behind a middleware that authenticates the caller before its body
/// is read.
pub fn configure(auth: InternalAuth) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        let admin = |path: &'static str| &path[paths::ADMIN_PREFIX.len()..];
        let peer = |path: &'static str| &path[paths::PREFIX.len()..];
        let operator_auth = auth.clone();
        config.service(
            web::scope(paths::ADMIN_PREFIX)
                .wrap(from_fn(move |request, next| {
                    authenticate(operator_auth.clone(), Role::Operator, request, next)
                }))
                .route(admin(paths::INIT), web::post().to(init))
                .route(admin(paths::ADD_NODE), web::post().to(add_node))
                .route(admin(paths::REMOVE_NODE), web::post().to(remove_node))
                .route(admin(paths::STATUS), web::get().to(status))
                .route(admin(paths::FREEZE), web::post().to(freeze)),
        );
        config.service(
            web::scope(paths::PREFIX)
                .wrap(from_fn(move |request, next| {
                    authenticate(auth.clone(), Role::Peer, request, next)
                }))
                .route(peer(paths::SEQUENCE), web::post().to(sequence))
                .route(
                    peer(crate::handover::CAMPAIGN_PATH),
                    web::post().to(crate::handover::campaign),
                )
                .service(
                    web::resource(peer(paths::SEQUENCE_BATCH))
                        .app_data(web::PayloadConfig::new(MAX_FORWARD_BATCH_BODY))
                        .route(web::post().to(sequence_batch)),
                )
                .route(
                    &format!("{}/{{tail:.*}}", peer(paths::TILES)),
                    web::get().to(tile),
                ),
        );
    }
}

/// A catch-up read: the tile or entry bundle at `tile/{tail}`, as the public API serves it.
async fn tile(state: web::Data<InternalState>, tail: web::Path<String>) -> HttpResponse {
    let Some(request) = rekor_api::backend::TileRequest::parse(&tail) else {
        return error(actix_web::http::StatusCode::BAD_REQUEST, "not a tile path");
    };
    match state.backend.read_tile(request).await {
        Ok(Some(bytes)) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(bytes),
        Ok(None) => error(actix_web::http::StatusCode::NOT_FOUND, "no such tile"),
        Err(e) => error(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("reading the tile: {e}"),
        ),
    }
}

fn error(status: actix_web::http::StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({"error": message.into()}))
}

/// The response refusing a forwarding request (boxed: a response is large).
type Refused = Box<HttpResponse>;

/// The size-checked bincode body of a forwarding request, or the response
/// refusing it.
fn decode_forwarded<T: serde::de::DeserializeOwned>(
    body: &[u8],
    max_bytes: usize,
) -> Result<T, Refused> {
    if body.len() > max_bytes {
        return Err(Box::new(error(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "forwarded body too large",
        )));
    }
    bincode::deserialize(body).map_err(|e| {
        Box::new(error(
            actix_web::http::StatusCode::BAD_REQUEST,
            format!("decoding forwarded entries: {e}"),
        ))
    })
}

/// Why the leader refuses a forwarded entry, if it does: an identity that is not the hash of
/// the body (a broken or hostile peer), or a body the public API of this node would not have
/// produced (over the 65,535-byte bundle-record limit, not canonical, or of a kind not enabled
/// here).
fn check_forwarded(entry: &SequencedEntry, legacy_dsse: bool) -> Result<(), String> {
    if entry.identity != rekor_raft::types::identity_of(&entry.body) {
        return Err("identity does not match body".into());
    }
    rekor_api::canonical::check_canonical_body(&entry.body, legacy_dsse)
        .map(|_kind| ())
        .map_err(|e| format!("forwarded entry refused: {e}"))
}

/// A follower forwards one validated entry; the leader sequences it and answers with its outcome
/// (bincode `Result<AppendOutcome, SequenceError>`).
async fn sequence(state: web::Data<InternalState>, body: web::Bytes) -> HttpResponse {
    let entry: SequencedEntry = match decode_forwarded(&body, MAX_FORWARD_BODY) {
        Ok(entry) => entry,
        Err(refused) => return *refused,
    };
    if let Err(reason) = check_forwarded(&entry, state.legacy_dsse) {
        warn!(%reason, "refusing a forwarded entry");
        return error(actix_web::http::StatusCode::BAD_REQUEST, reason);
    }
    bincode_response(&sequence_entry(&state, entry).await)
}

/// Admits one forwarded entry against this node's pushback bound and sequences it.
async fn sequence_entry(
    state: &InternalState,
    entry: SequencedEntry,
) -> Result<AppendOutcome, SequenceError> {
    let Some(_admission) = state.pushback.try_admit() else {
        return Err(SequenceError::Overloaded);
    };
    match state.sequencer.send(Sequence(entry)).await {
        Ok(outcome) => outcome,
        Err(e) => Err(SequenceError::Raft(format!("sequencer unavailable: {e}"))),
    }
}

/// Largest forwarded batch body: the forwarder's byte bound plus one largest entry and framing.
const MAX_FORWARD_BATCH_BODY: usize =
    crate::forwarder::MAX_FORWARD_BATCH_BYTES + MAX_FORWARD_BODY + 64 * 1024;

/// A follower forwards a batch of validated entries ([`crate::forwarder`]); the leader sequences
/// each (they join the sequencer's batches like local ones) and answers with their outcomes in
/// order (bincode `Vec<Result<AppendOutcome, SequenceError>>`). An entry that fails
/// [`check_forwarded`] gets `SequenceError::Refused` and is not sequenced; the rest of the batch
/// is unaffected.
async fn sequence_batch(state: web::Data<InternalState>, body: web::Bytes) -> HttpResponse {
    let entries: Vec<SequencedEntry> = match decode_forwarded(&body, MAX_FORWARD_BATCH_BODY) {
        Ok(entries) => entries,
        Err(refused) => return *refused,
    };
    if entries.len() > crate::forwarder::MAX_FORWARD_BATCH {
        return error(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too many entries in one batch",
        );
    }
    let outcomes = futures::future::join_all(entries.into_iter().map(|entry| {
        let state = &state;
        async move {
            if let Err(reason) = check_forwarded(&entry, state.legacy_dsse) {
                warn!(%reason, "refusing a forwarded entry");
                return Err(SequenceError::Refused(reason));
            }
            sequence_entry(state, entry).await
        }
    }))
    .await;
    bincode_response(&outcomes)
}

fn bincode_response<T: Serialize>(outcome: &T) -> HttpResponse {
    match bincode::serialize(outcome) {
        Ok(bytes) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(bytes),
        Err(e) => error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ),
    }
}

async fn init(state: web::Data<InternalState>, body: web::Json<InitRequest>) -> HttpResponse {
    let _guard = state.membership_lock.lock().await;
    let members: BTreeMap<u64, NodeAddress> = body
        .into_inner()
        .members
        .into_iter()
        .map(|(id, member)| (id, member.into()))
        .collect();
    if members.is_empty() || !members.contains_key(&state.node_id) {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "the member list must include the node that receives init",
        );
    }
    info!(?members, "initialising the cluster");
    match state.raft.initialize(members).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"initialized": true})),
        Err(e) => error(actix_web::http::StatusCode::CONFLICT, e.to_string()),
    }
}

fn not_leader(state: &InternalState) -> Option<HttpResponse> {
    let metrics = state.raft.metrics().borrow().clone();
    if metrics.current_leader == Some(state.node_id) {
        return None;
    }
    let leader = metrics.current_leader.and_then(|id| {
        metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|node| (id, node.internal_addr.clone()))
    });
    // The leader's id and internal address as fields of their own, so the admin client can
    // follow it (`admin::call` retries there) without parsing the message.
    let message = match &leader {
        Some((id, address)) => format!("not the leader; ask the leader (node {id}) at {address}"),
        None => "not the leader, and no leader is known yet; retry shortly".to_owned(),
    };
    Some(HttpResponse::MisdirectedRequest().json(NotLeader {
        error: message,
        leader_id: leader.as_ref().map(|(id, _)| *id),
        leader_internal_addr: leader.map(|(_, address)| address),
    }))
}

/// The 421 body of an admin call sent to a node that is not the leader.
#[derive(Debug, Serialize, Deserialize)]
pub struct NotLeader {
    pub error: String,
    /// The leader's node id, when this node knows one.
    pub leader_id: Option<u64>,
    /// The leader's internal (node-to-node) address, `host:port`, when known.
    pub leader_internal_addr: Option<String>,
}

async fn add_node(
    state: web::Data<InternalState>,
    body: web::Json<AddNodeRequest>,
) -> HttpResponse {
    if let Some(response) = not_leader(&state) {
        return response;
    }
    let AddNodeRequest {
        id,
        member,
        promote,
    } = body.into_inner();
    if id == 0 {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "node ids start at 1",
        );
    }
    let _guard = state.membership_lock.lock().await;
    info!(id, ?member, "adding a learner");
    if let Err(e) = state.raft.add_learner(id, member.into(), true).await {
        return error(
            actix_web::http::StatusCode::CONFLICT,
            format!("add learner: {e}"),
        );
    }
    if !promote {
        return HttpResponse::Ok().json(serde_json::json!({"added": id, "voter": false}));
    }
    let mut voters: BTreeSet<u64> = state
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    voters.insert(id);
    info!(id, ?voters, "promoting to voter");
    match state.raft.change_membership(voters, false).await {
        Ok(_) => HttpResponse::Ok().json(serde_json::json!({"added": id, "voter": true})),
        Err(e) => error(
            actix_web::http::StatusCode::CONFLICT,
            format!("change membership: {e}"),
        ),
    }
}

async fn remove_node(
    state: web::Data<InternalState>,
    body: web::Json<ChangeMembershipRequest>,
) -> HttpResponse {
    if let Some(response) = not_leader(&state) {
        return response;
    }
    let _guard = state.membership_lock.lock().await;
    let remove: BTreeSet<u64> = body.into_inner().remove.into_iter().collect();
    let membership = state.raft.metrics().borrow().membership_config.clone();
    let voters: BTreeSet<u64> = membership
        .membership()
        .voter_ids()
        .filter(|id| !remove.contains(id))
        .collect();
    if voters.is_empty() {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "cannot remove every voter",
        );
    }
    // Voters first (joint consensus), then the nodes themselves (learners are dropped by
    // `retain = false`).
    match state.raft.change_membership(voters.clone(), false).await {
        Ok(_) => {
            warn!(
                ?remove,
                "removed from the cluster; wipe their data before re-adding them"
            );
            HttpResponse::Ok().json(serde_json::json!({"removed": remove, "voters": voters}))
        }
        Err(e) => error(
            actix_web::http::StatusCode::CONFLICT,
            format!("change membership: {e}"),
        ),
    }
}

/// A snapshot of this node's view, shared by `status` (JSON) and the public status page.
pub fn status_json(state: &InternalState) -> serde_json::Value {
    let metrics = state.raft.metrics().borrow().clone();
    let served = state.served.borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let members: Vec<serde_json::Value> = membership
        .nodes()
        .map(|(id, node)| {
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|replication| replication.get(id).cloned().flatten())
                .map(|log_id| log_id.index);
            serde_json::json!({
                "id": id,
                "voter": voters.contains(id),
                "internal_addr": node.internal_addr,
                "public_addr": node.public_addr,
                "matched_log_index": matched,
                "lag": matched.map(|m| metrics.last_log_index.unwrap_or(0).saturating_sub(m)),
            })
        })
        .collect();
    serde_json::json!({
        "node_id": state.node_id,
        "state": format!("{:?}", metrics.state),
        "term": metrics.current_term,
        "leader": metrics.current_leader,
        "last_log_index": metrics.last_log_index,
        "last_applied": metrics.last_applied.map(|id| id.index),
        "sequenced_size": state.state_machine.applied().size,
        "integrated_size": served.integrated_size,
        "in_flight_entries": state.pushback.in_flight(),
        "checkpoint_size": served.checkpoint.as_ref().map(|cp| cp.size),
        "members": members,
    })
}

async fn status(state: web::Data<InternalState>) -> HttpResponse {
    HttpResponse::Ok().json(status_json(&state))
}

async fn freeze(state: web::Data<InternalState>) -> HttpResponse {
    if let Some(response) = not_leader(&state) {
        return response;
    }
    let marker = rekor_storage::checkpoint::frozen_marker(crate::publisher::unix_now());
    match state
        .publisher
        .send(PublishNow {
            extensions: vec![marker],
        })
        .await
    {
        Ok(Ok(size)) => HttpResponse::Ok().json(serde_json::json!({"frozen_at_size": size})),
        Ok(Err(e)) => error(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => error(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ),
    }
}
