//! A controllable TCP proxy between nodes, for network partitions and slow links.
//!
//! Each node advertises a proxy listener as its internal address, so every node-to-node request
//! (Raft RPCs, write forwarding, catch-up reads) to node `to` passes through `to`'s listener.
//! The sender is told by the connection's source address: each node's peer connections come
//! from its own loopback address ([`source_address`], the node's `--peer-source-address`), which
//! works as well for TLS traffic the proxy cannot read. Each directed link `from → to` is then
//! [`LinkState::Open`], [`LinkState::Cut`] (new connections are dropped at once, open ones are torn
//! down when the link is cut) or [`LinkState::Delayed`] (every chunk waits before it is passed on).
//! Connections from other addresses (operator tools) are always passed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The state of one directed link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkState {
    #[default]
    Open,
    Cut,
    Delayed(Duration),
}

/// The loopback address node `id`'s peer connections come from (`--peer-source-address`).
pub fn source_address(id: u64) -> IpAddr {
    let last = u8::try_from(10 + id).unwrap_or(u8::MAX);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// The node whose peer connections come from `address`, if any.
fn sender_at(address: IpAddr) -> Option<u64> {
    match address {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 0] && v4.octets()[3] > 10 => {
            Some(u64::from(v4.octets()[3]) - 10)
        }
        _ => None,
    }
}

#[derive(Default)]
struct Table {
    links: HashMap<(u64, u64), LinkState>,
    upstreams: HashMap<u64, String>,
}

/// The proxy: one listener per node, one shared link table. Cheap to clone.
#[derive(Clone)]
pub struct LinkProxy {
    table: Arc<Mutex<Table>>,
    /// Bumped on every link change, so open connections re-check their link.
    changes: Arc<watch::Sender<u64>>,
}

impl Default for LinkProxy {
    fn default() -> Self {
        Self::new()
    }
}

impl LinkProxy {
    /// A proxy with every link open and no listeners.
    pub fn new() -> Self {
        let (changes, _) = watch::channel(0);
        Self {
            table: Arc::new(Mutex::new(Table::default())),
            changes: Arc::new(changes),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens the listener standing in for node `to`, forwarding to `upstream` (the node's real
    /// internal listener); returns the listener's address. Must run inside a tokio runtime.
    pub fn listen(&self, to: u64, upstream: &str) -> Result<String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?.to_string();
        let listener = TcpListener::from_std(listener)?;
        self.table().upstreams.insert(to, upstream.to_owned());
        let proxy = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    let _ = proxy.serve(stream, sender_at(peer.ip()), to).await;
                });
            }
        });
        Ok(address)
    }

    /// The state of `from → to`.
    pub fn link(&self, from: u64, to: u64) -> LinkState {
        self.table()
            .links
            .get(&(from, to))
            .copied()
            .unwrap_or_default()
    }

    /// Sets the state of `from → to`.
    pub fn set_link(&self, from: u64, to: u64, state: LinkState) {
        self.table().links.insert((from, to), state);
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// Cuts every link between `group` and `rest`, both directions.
    pub fn partition(&self, group: &[u64], rest: &[u64]) {
        for &a in group {
            for &b in rest {
                self.set_link(a, b, LinkState::Cut);
                self.set_link(b, a, LinkState::Cut);
            }
        }
    }

    /// Opens every link.
    pub fn heal(&self) {
        self.table().links.clear();
        self.changes.send_modify(|generation| *generation += 1);
    }

    async fn serve(&self, client: TcpStream, from: Option<u64>, to: u64) -> Result<()> {
        if from.is_some_and(|from| self.link(from, to) == LinkState::Cut) {
            return Ok(());
        }
        self.pump(client, to, from).await
    }

    async fn pump(&self, client: TcpStream, to: u64, from: Option<u64>) -> Result<()> {
        let upstream_address = self.table().upstreams.get(&to).cloned();
        let Some(upstream_address) = upstream_address else {
            return Ok(());
        };
        let upstream = TcpStream::connect(upstream_address).await?;
        upstream.set_nodelay(true)?;
        client.set_nodelay(true)?;
        let (client_read, client_write) = client.into_split();
        let (upstream_read, upstream_write) = upstream.into_split();
        let mut changes = self.changes.subscribe();
        let cut = async {
            let Some(from) = from else {
                return std::future::pending::<()>().await;
            };
            while changes.changed().await.is_ok() {
                if self.link(from, to) == LinkState::Cut {
                    return;
                }
            }
            std::future::pending::<()>().await
        };
        let both = async {
            let _ = tokio::join!(
                self.copy(client_read, upstream_write, from, to),
                self.copy(upstream_read, client_write, from, to),
            );
        };
        // Dropping both halves on a cut resets the connection, as a failed link would.
        tokio::select! {
            _ = both => {}
            _ = cut => {}
        }
        Ok(())
    }

    async fn delay(&self, from: Option<u64>, to: u64) {
        if let Some(from) = from {
            if let LinkState::Delayed(delay) = self.link(from, to) {
                tokio::time::sleep(delay).await;
            }
        }
    }

    async fn copy(
        &self,
        mut reader: impl AsyncRead + Unpin,
        mut writer: impl AsyncWrite + Unpin,
        from: Option<u64>,
        to: u64,
    ) -> std::io::Result<()> {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = reader.read(&mut buffer).await?;
            if read == 0 {
                return writer.shutdown().await;
            }
            self.delay(from, to).await;
            writer.write_all(&buffer[..read]).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_has_its_own_source_address() {
        for id in [1, 2, 3, 7] {
            assert_eq!(sender_at(source_address(id)), Some(id));
        }
        assert_eq!(sender_at("127.0.0.1".parse().unwrap()), None);
        assert_eq!(sender_at("10.0.0.11".parse().unwrap()), None);
    }

    /// A cut link refuses new connections from that sender only, and healing reopens it.
    #[tokio::test]
    async fn cut_links_drop_only_their_sender() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_address = upstream.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = upstream.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = stream.read(&mut buffer).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..n]);
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                });
            }
        });
        let proxy = LinkProxy::new();
        let address = proxy.listen(2, &upstream_address).unwrap();
        let ask = |from: u64| {
            let address = address.clone();
            async move {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket
                    .bind(std::net::SocketAddr::new(source_address(from), 0))
                    .unwrap();
                let mut stream = socket.connect(address.parse().unwrap()).await.unwrap();
                let request = "POST /x HTTP/1.1\r\ncontent-length: 0\r\n\r\n";
                stream.write_all(request.as_bytes()).await.unwrap();
                let mut answer = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
                        .await;
                String::from_utf8_lossy(&answer).into_owned()
            }
        };
        assert!(ask(1).await.ends_with("ok"));
        proxy.set_link(1, 2, LinkState::Cut);
        assert_eq!(ask(1).await, "");
        assert!(ask(3).await.ends_with("ok"));
        proxy.heal();
        assert!(ask(1).await.ends_with("ok"));
    }
}
