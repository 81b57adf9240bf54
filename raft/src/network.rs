//! The node-to-node Raft network: openraft's `RaftNetworkFactory` / `RaftNetwork` over HTTP
//! (rust-stack.md §2.3, §2.11, §4.2), and the wire contract shared with [`crate::server`].
//!
//! Wire contract (one POST per RPC, on the internal listener):
//!
//! - paths [`APPEND_PATH`], [`VOTE_PATH`], [`SNAPSHOT_PATH`] under [`RAFT_SCOPE`];
//! - body: the openraft request, bincode 1.3.3 behind a version byte ([`crate::codec`]),
//!   `content-type: application/octet-stream`;
//! - header [`CLUSTER_SECRET_HEADER`]: the shared cluster secret, verbatim. The internal
//!   listener is meant for a private network; the secret keeps strangers (and misrouted nodes of
//!   another cluster) out, but it travels in clear text without TLS;
//! - header [`TARGET_NODE_HEADER`]: the node id the sender means to reach. The server refuses
//!   a request for another id with 421: a wrong address in the membership would otherwise make
//!   a leader replicate to itself and panic (rust-stack.md §2.11 #4);
//! - header [`SOURCE_NODE_HEADER`]: the sender's node id. Informational only (the server does
//!   not trust or check it); it lets a fault-injection proxy between nodes cut one direction of
//!   one link (cluster-tests `chaos::proxy`);
//! - answer 200 with the encoded `Result<Response, RaftError>`; 401 without the right secret;
//!   421 for another node; 400 for an undecodable body; 413 for an oversized one.
//!
//! One shared `reqwest::Client` (keep-alive pool, connect timeout) serves every peer; each RPC
//! is bounded by openraft's `RPCOption::hard_ttl`. Connection failures and refusals (401, 421)
//! become `RPCError::Unreachable`, so openraft backs off instead of retrying hot.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
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
    /// The shared cluster secret.
    pub secret: ClusterSecret,
    /// TCP connect timeout. Keep it below the heartbeat interval so an unreachable peer fails
    /// as `Unreachable` before openraft's TTL cuts the RPC.
    pub connect_timeout: Duration,
    /// Upper bound of any one RPC (the per-RPC TTL from openraft is applied on top).
    pub request_timeout: Duration,
}

impl NetworkConfig {
    /// Defaults: 200 ms connect timeout, 30 s request ceiling.
    pub fn new(node_id: NodeId, secret: ClusterSecret) -> Self {
        Self {
            node_id,
            secret,
            connect_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the Raft network could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the Raft HTTP client: {0}")]
pub struct NetworkBuildError(String);

/// The network factory handed to `Raft::new`: one shared HTTP client for every peer.
#[derive(Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
    config: Arc<NetworkConfig>,
}

impl HttpNetwork {
    /// Build the shared client.
    pub fn new(config: NetworkConfig) -> Result<Self, NetworkBuildError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(30))
            .tcp_nodelay(true)
            // Internal traffic goes straight to the peer, never through an environment proxy.
            .no_proxy()
            .build()
            .map_err(|e| NetworkBuildError(e.to_string()))?;
        Ok(Self {
            client,
            config: Arc::new(config),
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddress) -> Self::Network {
        PeerClient {
            client: self.client.clone(),
            config: self.config.clone(),
            target,
            base_url: format!("http://{}{}", node.internal_addr, RAFT_SCOPE),
        }
    }
}

/// The client of one peer.
pub struct PeerClient {
    client: reqwest::Client,
    config: Arc<NetworkConfig>,
    target: NodeId,
    base_url: String,
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
        let body = codec::encode(request)
            .map_err(|e| RPCError::Network(NetworkError::new(&WireError::Encode(e))))?;
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
            .client
            .post(format!("{}{}", self.base_url, path))
            .header(CLUSTER_SECRET_HEADER, self.config.secret.as_str())
            .header(TARGET_NODE_HEADER, self.target.to_string())
            .header(SOURCE_NODE_HEADER, self.config.node_id.to_string())
            .header("content-type", "application/octet-stream")
            .timeout(ttl)
            .body(body)
            .send()
            .await
            .map_err(http_error)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(http_error)?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            let status = status.as_u16();
            // A refusal is a configuration problem (secret, address): back off.
            return Err(if status == 401 || status == 421 {
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
        self.call(APPEND_PATH, RPCTypes::AppendEntries, &rpc, &option)
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
