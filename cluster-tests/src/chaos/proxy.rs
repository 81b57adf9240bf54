//! A controllable TCP proxy between nodes, for network partitions and slow links.
//!
//! Each node advertises a proxy listener as its internal address, so every node-to-node request
//! (Raft RPCs, write forwarding) to node `to` passes through `to`'s listener. The sender is read
//! from the informational `x-rekor-source-node` header of the first request on a connection
//! (`rekor_raft::network::SOURCE_NODE_HEADER`; one connection never carries two senders' requests,
//! as each node has its own client pool). Each directed link `from → to` is then
//! [`LinkState::Open`], [`LinkState::Cut`] (new connections are dropped at once, open ones are torn
//! down when the link is cut) or [`LinkState::Delayed`] (every chunk waits before it is passed on).
//! Connections without the header (operator tools) are always passed.

use std::collections::HashMap;
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

/// Longest request head read to find the sender.
const MAX_HEAD: usize = 64 * 1024;

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
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    let _ = proxy.serve(stream, to).await;
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

    async fn serve(&self, mut client: TcpStream, to: u64) -> Result<()> {
        let mut head = Vec::new();
        let mut buffer = [0u8; 8192];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let read = client.read(&mut buffer).await?;
            if read == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buffer[..read]);
        }
        let Some(from) = source_node(&head) else {
            return self.pump(client, to, None, head).await;
        };
        if self.link(from, to) == LinkState::Cut {
            return Ok(());
        }
        self.pump(client, to, Some(from), head).await
    }

    async fn pump(
        &self,
        client: TcpStream,
        to: u64,
        from: Option<u64>,
        head: Vec<u8>,
    ) -> Result<()> {
        let upstream_address = self.table().upstreams.get(&to).cloned();
        let Some(upstream_address) = upstream_address else {
            return Ok(());
        };
        let upstream = TcpStream::connect(upstream_address).await?;
        upstream.set_nodelay(true)?;
        client.set_nodelay(true)?;
        let (client_read, client_write) = client.into_split();
        let (upstream_read, mut upstream_write) = upstream.into_split();
        self.delay(from, to).await;
        upstream_write.write_all(&head).await?;
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

/// The `x-rekor-source-node` value in an HTTP request head.
fn source_node(head: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case(rekor_raft::network::SOURCE_NODE_HEADER)
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_source_header_case_insensitively() {
        let head =
            b"POST /internal/raft/append HTTP/1.1\r\nX-Rekor-Source-Node: 3\r\nhost: x\r\n\r\n";
        assert_eq!(source_node(head), Some(3));
        assert_eq!(source_node(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"), None);
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
                let mut stream = TcpStream::connect(address).await.unwrap();
                let request = format!(
                    "POST /x HTTP/1.1\r\nx-rekor-source-node: {from}\r\ncontent-length: 0\r\n\r\n"
                );
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
