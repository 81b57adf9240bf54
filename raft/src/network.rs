//! The node-to-node Raft network: openraft's `RaftNetworkFactory` / `RaftNetwork` over HTTP
//! (rust-stack.md §2.3, §2.11, §4.2), and the wire contract shared with [`crate::server`].
//!
//! Wire contract (one POST per RPC, on the internal listener):
//!
//! - paths [`APPEND_PATH`], [`VOTE_PATH`], [`SNAPSHOT_PATH`] under [`RAFT_SCOPE`];
//! - body: the openraft request, bincode 1.3.3 behind a version byte ([`crate::codec`]),
//!   `content-type: application/octet-stream`;
//! - header [`CLUSTER_SECRET_HEADER`]: the shared cluster secret, verbatim (checked by
//!   [`crate::auth`]; without TLS on the internal listener it travels in clear text);
//! - header [`TARGET_NODE_HEADER`]: the node id the sender means to reach. The server refuses
//!   a request for another id with 421: a wrong address in the membership would otherwise make
//!   a leader replicate to itself and panic (rust-stack.md §2.11 #4);
//! - header [`SOURCE_NODE_HEADER`]: the sender's node id. Under mutual TLS it must be the id the
//!   sender's certificate names, and the RPC's vote must name it too ([`crate::auth`],
//!   [`crate::server`]); without TLS it is informational (a fault-injection proxy between nodes
//!   uses it to cut one direction of one link, cluster-tests `chaos::proxy`);
//! - answer 200 with the encoded `Result<Response, RaftError>`; 401 without the right secret or
//!   certificate; 403 for a sender that is not who it claims; 421 for another node; 400 for an
//!   undecodable body; 413 for an oversized one.
//!
//! Payload size: an AppendEntries is never sent larger than [`NetworkConfig::max_append_body`]
//! (the peer's cap), and a 413 from the peer is answered the same way: the client returns
//! openraft's `PayloadTooLarge` with a smaller entry count, and openraft resends fewer entries
//! at once instead of retrying the same oversized request forever. One Raft entry (one
//! sequencer batch, bounded in bytes) always fits the cap on its own.
//!
//! Requests go through the node's [`PeerClients`] (kept-alive connections, the scheme, the
//! headers); each RPC is bounded by openraft's `RPCOption::hard_ttl`. Connection failures and
//! refusals (401, 403, 421) become `RPCError::Unreachable`, so openraft backs off instead of
//! retrying hot.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::RPCTypes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::codec;
use crate::peers::{read_answer, AnswerError, PeerClientError, PeerClients};
use crate::types::{NodeAddress, NodeId, TypeConfig};

/// Prefix of the Raft RPC routes on the internal listener.
pub const RAFT_SCOPE: &str = "/internal/raft";
/// AppendEntries route (under [`RAFT_SCOPE`]).
pub const APPEND_PATH: &str = "/append";
/// RequestVote route (under [`RAFT_SCOPE`]).
pub const VOTE_PATH: &str = "/vote";
/// InstallSnapshot (one chunk) route (under [`RAFT_SCOPE`]).
pub const SNAPSHOT_PATH: &str = "/snapshot";
/// Header carrying the shared cluster secret.
pub const CLUSTER_SECRET_HEADER: &str = "x-rekor-cluster-secret";
/// Header carrying the node id the request is meant for.
pub const TARGET_NODE_HEADER: &str = "x-rekor-target-node";
/// Header carrying the sender's node id (informational; never used for authorisation).
pub const SOURCE_NODE_HEADER: &str = "x-rekor-source-node";
/// The most bytes of a peer's answer to a Raft RPC that are read: the answers (vote, append and
/// snapshot acknowledgements) are a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The shared secret every internal request carries. Its `Debug` does not print it.
#[derive(Clone)]
pub struct ClusterSecret(Arc<str>);

impl ClusterSecret {
    /// Wrap a secret (non-empty; the node should require a reasonable length).
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Arc::from(secret.into()))
    }

    /// The secret as sent in [`CLUSTER_SECRET_HEADER`].
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is the secret, in time independent of where they differ (both
    /// sides are hashed first, so their lengths do not leak either).
    pub fn verify(&self, presented: &[u8]) -> bool {
        let ours: [u8; 32] = Sha256::digest(self.0.as_bytes()).into();
        let theirs: [u8; 32] = Sha256::digest(presented).into();
        let diff = ours
            .iter()
            .zip(theirs.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        diff == 0 && !self.0.is_empty()
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// Settings of the Raft RPC client.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// This node's id (reported in timeouts).
    pub node_id: NodeId,
    /// Upper bound of any one RPC (the per-RPC TTL from openraft is applied on top).
    pub request_timeout: Duration,
    /// Largest AppendEntries body sent: the peers' body cap
    /// ([`crate::server::RaftServerConfig::max_rpc_body`]). A larger request of several
    /// entries is not sent; openraft is asked for fewer entries instead.
    pub max_append_body: usize,
}

impl NetworkConfig {
    /// Defaults: 30 s request ceiling, the default server body cap.
    pub fn new(node_id: NodeId) -> Self {
        Self {
            node_id,
            request_timeout: Duration::from_secs(30),
            max_append_body: crate::server::DEFAULT_MAX_RPC_BODY,
        }
    }
}

/// How many of `entries` entries to send next after `entries` took `size` bytes against a cap
/// of `cap`: proportionally fewer, at least one, always fewer than before.
fn entries_hint(entries: u64, size: usize, cap: usize) -> u64 {
    let proportional = (entries as u128 * cap as u128 / size.max(1) as u128) as u64;
    proportional.min(entries.saturating_sub(1)).max(1)
}

/// TCP connect timeout of peer clients. Keep it below the heartbeat interval so an unreachable
/// peer fails as `Unreachable` before openraft's TTL cuts the RPC.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// The network factory handed to `Raft::new`: the node's peer clients.
#[derive(Clone)]
pub struct HttpNetwork {
    peers: Arc<PeerClients>,
    config: Arc<NetworkConfig>,
}

impl HttpNetwork {
    /// The network over `peers` (shared with the node's other node-to-node traffic).
    pub fn new(config: NetworkConfig, peers: Arc<PeerClients>) -> Self {
        Self {
            peers,
            config: Arc::new(config),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddress) -> Self::Network {
        PeerClient {
            peers: self.peers.clone(),
            config: self.config.clone(),
            target,
            internal_addr: node.internal_addr.clone(),
        }
    }
}

/// The client of one peer.
pub struct PeerClient {
    peers: Arc<PeerClients>,
    config: Arc<NetworkConfig>,
    target: NodeId,
    internal_addr: String,
}

/// What went wrong on the wire (wrapped in openraft's `Unreachable` / `NetworkError`).
#[derive(Debug, thiserror::Error)]
enum WireError {
    #[error("encode request: {0}")]
    Encode(codec::CodecError),
    #[error("decode response: {0}")]
    Decode(codec::CodecError),
    #[error("peer {target} refused the request with HTTP {status}: {body}")]
    Refused {
        target: NodeId,
        status: u16,
        body: String,
    },
    #[error("peer {target} answered HTTP {status}: {body}")]
    Status {
        target: NodeId,
        status: u16,
        body: String,
    },
    #[error("{0}")]
    Http(reqwest::Error),
    #[error(transparent)]
    Answer(AnswerError),
    #[error(transparent)]
    Client(PeerClientError),
}

fn encode<Req: Serialize, E: std::error::Error>(
    request: &Req,
) -> Result<Vec<u8>, RPCError<NodeId, NodeAddress, E>> {
    codec::encode(request).map_err(|e| RPCError::Network(NetworkError::new(&WireError::Encode(e))))
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        action: RPCTypes,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, NodeAddress, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = encode(request)?;
        self.post(path, action, body, option, None).await
    }

    /// POST an encoded request. `too_large_hint`: for an AppendEntries that can be split, the
    /// entry count to ask openraft for if the peer answers 413.
    async fn post<Resp, E>(
        &self,
        path: &str,
        action: RPCTypes,
        body: Vec<u8>,
        option: &RPCOption,
        too_large_hint: Option<u64>,
    ) -> Result<Resp, RPCError<NodeId, NodeAddress, E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let ttl = option.hard_ttl().min(self.config.request_timeout);
        let timeout = || {
            RPCError::Timeout(Timeout {
                action,
                id: self.config.node_id,
                target: self.target,
                timeout: ttl,
            })
        };
        let http_error = |e: reqwest::Error| {
            if e.is_timeout() {
                timeout()
            } else if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&WireError::Http(e)))
            } else {
                RPCError::Network(NetworkError::new(&WireError::Http(e)))
            }
        };
        let response = self
            .peers
            .request(
                reqwest::Method::POST,
                self.target,
                &self.internal_addr,
                &format!("{RAFT_SCOPE}{path}"),
            )
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&WireError::Client(e))))?
            .header("content-type", "application/octet-stream")
            .timeout(ttl)
            .body(body)
            .send()
            .await
            .map_err(http_error)?;
        let status = response.status();
        let bytes = match read_answer(response, MAX_ANSWER_BYTES).await {
            Ok(bytes) => bytes,
            Err(AnswerError::Http(error)) => return Err(http_error(error)),
            Err(error @ AnswerError::TooLarge { .. }) => {
                return Err(RPCError::Network(NetworkError::new(&WireError::Answer(
                    error,
                ))))
            }
        };
        if !status.is_success() {
            let body = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            let status = status.as_u16();
            if let (413, Some(hint)) = (status, too_large_hint) {
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(hint).with_source_error(&WireError::Status {
                        target: self.target,
                        status,
                        body,
                    }),
                ));
            }
            // A refusal is a configuration problem (secret, certificate, address): back off.
            return Err(if matches!(status, 401 | 403 | 421) {
                RPCError::Unreachable(Unreachable::new(&WireError::Refused {
                    target: self.target,
                    status,
                    body,
                }))
            } else {
                RPCError::Network(NetworkError::new(&WireError::Status {
                    target: self.target,
                    status,
                    body,
                }))
            });
        }
        let result: Result<Resp, E> = codec::decode(&bytes)
            .map_err(|e| RPCError::Network(NetworkError::new(&WireError::Decode(e))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeAddress, RaftError<NodeId>>>
    {
        let entries = rpc.entries.len() as u64;
        let body = encode(&rpc)?;
        let cap = self.config.max_append_body;
        // More than one entry can be split; a single entry goes whatever its size (the
        // sequencer's byte bound keeps it below any sane cap).
        let splittable = entries > 1;
        if splittable && body.len() > cap {
            tracing::debug!(
                target = self.target,
                entries,
                bytes = body.len(),
                cap,
                "AppendEntries over the peer's body cap: asking for fewer entries"
            );
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(entries_hint(entries, body.len(), cap)),
            ));
        }
        // The peer's cap is below ours: how far is unknown, so halve.
        let hint = splittable.then(|| (entries / 2).max(1));
        self.post(APPEND_PATH, RPCTypes::AppendEntries, body, &option, hint)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, NodeAddress, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(SNAPSHOT_PATH, RPCTypes::InstallSnapshot, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeAddress, RaftError<NodeId>>> {
        self.call(VOTE_PATH, RPCTypes::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    use crate::types::{Command, SequencedEntry};

    /// A peer whose append route caps bodies at `cap` with actix's payload limit, as the real
    /// route does (413 beyond it), and answers `Success` to what it accepts. Returns its
    /// address, the count of requests that reached the handler, and its handle.
    fn start_peer(cap: usize) -> (String, Arc<AtomicUsize>, actix_web::dev::ServerHandle) {
        use actix_web::{web, App, HttpResponse, HttpServer};
        let handled = Arc::new(AtomicUsize::new(0));
        let counter = handled.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let counter = counter.clone();
                    App::new().service(
                        web::resource(format!("{RAFT_SCOPE}{APPEND_PATH}"))
                            .app_data(web::PayloadConfig::new(cap))
                            .route(web::post().to(move |_body: web::Bytes| {
                                counter.fetch_add(1, Ordering::SeqCst);
                                let answer: Result<
                                    AppendEntriesResponse<NodeId>,
                                    RaftError<NodeId>,
                                > = Ok(AppendEntriesResponse::Success);
                                let bytes = codec::encode(&answer).unwrap();
                                async move { HttpResponse::Ok().body(bytes) }
                            })),
                    )
                })
                .workers(1)
                .bind(("127.0.0.1", 0))
                .unwrap();
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).unwrap();
                server.await.unwrap();
            })
        });
        let (addr, handle) = rx.recv().unwrap();
        (addr.to_string(), handled, handle)
    }

    async fn client(addr: &str, max_append_body: usize) -> PeerClient {
        let mut config = NetworkConfig::new(1);
        config.max_append_body = max_append_body;
        let peers = PeerClients::plain(1, ClusterSecret::new("secret"), PEER_CONNECT_TIMEOUT, None)
            .unwrap();
        let mut network = HttpNetwork::new(config, Arc::new(peers));
        let node = NodeAddress {
            internal_addr: addr.to_owned(),
            public_addr: addr.to_owned(),
        };
        network.new_client(2, &node).await
    }

    /// `count` Raft entries, each an `Append` of one body of `body_bytes` bytes.
    fn append_request(count: u64, body_bytes: usize) -> AppendEntriesRequest<TypeConfig> {
        let log_id = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            entries: (1..=count)
                .map(|index| Entry {
                    log_id: log_id(index),
                    payload: EntryPayload::Normal(Command::Append {
                        entries: vec![SequencedEntry::new(vec![index as u8; body_bytes])],
                    }),
                })
                .collect(),
            leader_commit: None,
        }
    }

    fn option() -> RPCOption {
        RPCOption::new(Duration::from_secs(5))
    }

    #[tokio::test]
    async fn a_413_from_the_peer_asks_openraft_for_fewer_entries() {
        let (addr, handled, server) = start_peer(4 * 1024);
        let mut peer = client(&addr, usize::MAX).await;
        match peer.append_entries(append_request(8, 1024), option()).await {
            Err(RPCError::PayloadTooLarge(too_large)) => {
                assert_eq!(too_large.action(), RPCTypes::AppendEntries);
                assert_eq!(too_large.entries_hint(), 4);
            }
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
        // One entry cannot be split: a plain network error, as before.
        match peer
            .append_entries(append_request(1, 8 * 1024), option())
            .await
        {
            Err(RPCError::Network(_)) => {}
            other => panic!("expected a network error, got {other:?}"),
        }
        // What fits goes through.
        assert!(matches!(
            peer.append_entries(append_request(2, 100), option()).await,
            Ok(AppendEntriesResponse::Success)
        ));
        assert_eq!(handled.load(Ordering::SeqCst), 1);
        server.stop(false).await;
    }

    #[tokio::test]
    async fn an_append_over_the_peer_cap_is_not_sent() {
        let (addr, handled, server) = start_peer(64 * 1024 * 1024);
        let cap = 4 * 1024;
        let mut peer = client(&addr, cap).await;
        match peer.append_entries(append_request(8, 1024), option()).await {
            Err(RPCError::PayloadTooLarge(too_large)) => {
                let hint = too_large.entries_hint();
                assert!((1..8).contains(&hint), "hint {hint}");
                // The hinted count of these equal entries fits the cap.
                let body = codec::encode(&append_request(hint, 1024)).unwrap();
                assert!(
                    body.len() <= cap,
                    "{} entries take {} bytes",
                    hint,
                    body.len()
                );
            }
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
        assert_eq!(handled.load(Ordering::SeqCst), 0, "nothing was sent");
        // A single entry over the cap still goes (it cannot be split).
        assert!(matches!(
            peer.append_entries(append_request(1, 8 * 1024), option())
                .await,
            Ok(AppendEntriesResponse::Success)
        ));
        assert_eq!(handled.load(Ordering::SeqCst), 1);
        server.stop(false).await;
    }

    #[test]
    fn entries_hint_is_proportional_and_always_smaller() {
        assert_eq!(entries_hint(64, 128, 64), 32);
        assert_eq!(entries_hint(2, 1_000_000, 10), 1);
        assert_eq!(entries_hint(10, 11, 10), 9);
        assert_eq!(entries_hint(1, 100, 10), 1);
    }

    #[test]
    fn secret_verification_accepts_only_the_exact_secret() {
        let secret = ClusterSecret::new("correct horse");
        assert!(secret.verify(b"correct horse"));
        assert!(!secret.verify(b"correct hors"));
        assert!(!secret.verify(b"correct horsf"));
        assert!(!secret.verify(b""));
        assert!(!ClusterSecret::new("").verify(b""));
        assert_eq!(format!("{secret:?}"), "ClusterSecret(..)");
    }
}
