//! How a node reaches the other members' internal listeners: one place that knows the scheme,
//! holds an HTTP client per peer and puts the cluster headers on every request. The Raft
//! network, write forwarding and catch-up reads all go through it, so they share connections
//! (and TLS sessions) to each peer and cannot disagree on how a peer is authenticated.
//!
//! Without TLS every peer shares one plain client. With mutual TLS the node supplies a
//! [`ClientFactory`] that builds a client per peer whose certificate check expects that peer's
//! node id: a server that presents another node's certificate is refused during the handshake,
//! whatever address the membership lists for it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::network::{
    ClusterSecret, CLUSTER_SECRET_HEADER, SOURCE_NODE_HEADER, TARGET_NODE_HEADER,
};
use crate::types::NodeId;

/// Builds the client for one peer (TLS mode), from [`PeerClients::client_builder`].
pub type ClientFactory = dyn Fn(NodeId) -> Result<reqwest::Client, String> + Send + Sync;

/// Why a peer's answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The connection failed or timed out while the answer was read.
    #[error("reading the answer: {0}")]
    Http(#[from] reqwest::Error),
    /// The peer sent (or announced) more than the caller's bound.
    #[error("the answer is larger than {max} bytes")]
    TooLarge { max: usize },
}

/// Reads a peer's answer, refusing it past `max` bytes (announced or sent). A peer is
/// authenticated but not trusted: a broken or compromised one must not make this node buffer
/// without bound.
pub async fn read_answer(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, AnswerError> {
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(AnswerError::TooLarge { max });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(AnswerError::TooLarge { max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why a peer client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for node {target}: {reason}")]
pub struct PeerClientError {
    target: NodeId,
    reason: String,
}

enum Clients {
    Plain(reqwest::Client),
    PerPeer {
        factory: Box<ClientFactory>,
        built: Mutex<HashMap<NodeId, reqwest::Client>>,
    },
}

/// The clients of this node's peers. Share it (`Arc`) between the Raft network, the forwarder
/// and catch-up.
pub struct PeerClients {
    self_id: NodeId,
    secret: ClusterSecret,
    scheme: &'static str,
    clients: Clients,
}

/// How long a peer client keeps an idle connection. Below the internal listener's keep-alive
/// (75 s by default), so this side closes an idle connection first: a server that closes first
/// races with a client reusing the connection, and the client reads a closed connection as a
/// failed RPC.
pub const PEER_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl PeerClients {
    /// The settings every peer client starts from: a connect timeout, kept-alive connections,
    /// no environment proxy (internal traffic goes straight to the peer), HTTP/1.1 (one
    /// request per connection at a time keeps a large AppendEntries from stalling a vote).
    /// `source`: the local address outgoing connections bind to (default: the OS's choice).
    pub fn client_builder(
        connect_timeout: Duration,
        source: Option<std::net::IpAddr>,
    ) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .local_address(source)
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(PEER_POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(64)
            .tcp_keepalive(Duration::from_secs(30))
            .tcp_nodelay(true)
            .http1_only()
            .no_proxy()
    }

    /// Plain HTTP to every peer, one shared client.
    pub fn plain(
        self_id: NodeId,
        secret: ClusterSecret,
        connect_timeout: Duration,
        source: Option<std::net::IpAddr>,
    ) -> Result<Self, PeerClientError> {
        let client = Self::client_builder(connect_timeout, source)
            .build()
            .map_err(|e| PeerClientError {
                target: self_id,
                reason: e.to_string(),
            })?;
        Ok(Self {
            self_id,
            secret,
            scheme: "http",
            clients: Clients::Plain(client),
        })
    }

    /// HTTPS, with a client per peer made by `factory` on first use.
    pub fn tls(self_id: NodeId, secret: ClusterSecret, factory: Box<ClientFactory>) -> Self {
        Self {
            self_id,
            secret,
            scheme: "https",
            clients: Clients::PerPeer {
                factory,
                built: Mutex::new(HashMap::new()),
            },
        }
    }

    /// This node's id (sent as the source of every request).
    pub fn self_id(&self) -> NodeId {
        self.self_id
    }

    /// The URL of `path` on the internal listener at `internal_addr` (host:port).
    pub fn url(&self, internal_addr: &str, path: &str) -> String {
        format!("{}://{internal_addr}{path}", self.scheme)
    }

    /// The client for `target`.
    pub fn client(&self, target: NodeId) -> Result<reqwest::Client, PeerClientError> {
        match &self.clients {
            Clients::Plain(client) => Ok(client.clone()),
            Clients::PerPeer { factory, built } => {
                let mut built = built.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(client) = built.get(&target) {
                    return Ok(client.clone());
                }
                let client =
                    factory(target).map_err(|reason| PeerClientError { target, reason })?;
                built.insert(target, client.clone());
                Ok(client)
            }
        }
    }

    /// A request to `path` on peer `target` at `internal_addr`, carrying the cluster secret,
    /// the target's id and ours.
    pub fn request(
        &self,
        method: reqwest::Method,
        target: NodeId,
        internal_addr: &str,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, PeerClientError> {
        Ok(self
            .client(target)?
            .request(method, self.url(internal_addr, path))
            .header(CLUSTER_SECRET_HEADER, self.secret.as_str())
            .header(TARGET_NODE_HEADER, target.to_string())
            .header(SOURCE_NODE_HEADER, self.self_id.to_string()))
    }
}

impl std::fmt::Debug for PeerClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClients")
            .field("self_id", &self.self_id)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A one-shot HTTP server answering `head` then `body_bytes` bytes; its URL.
    async fn answering(head: String, body_bytes: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            stream.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = body_bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                if stream.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                left -= n;
            }
        });
        format!("http://{address}/")
    }

    async fn read(url: &str, max: usize) -> Result<Vec<u8>, AnswerError> {
        let response = reqwest::Client::new().get(url).send().await.unwrap();
        read_answer(response, max).await
    }

    #[tokio::test]
    async fn answers_past_the_bound_are_refused_announced_or_not() {
        let small = answering(
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n".into(),
            100,
        )
        .await;
        assert_eq!(read(&small, 1000).await.unwrap().len(), 100);

        let announced = answering(
            "HTTP/1.1 200 OK\r\ncontent-length: 10000000\r\nconnection: close\r\n\r\n".into(),
            0,
        )
        .await;
        assert!(matches!(
            read(&announced, 1000).await,
            Err(AnswerError::TooLarge { max: 1000 })
        ));

        // No length announced: the body is cut off at the bound, not read to its end.
        let unannounced = answering(
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".into(),
            10_000_000,
        )
        .await;
        assert!(matches!(
            read(&unannounced, 1000).await,
            Err(AnswerError::TooLarge { max: 1000 })
        ));
    }
}
