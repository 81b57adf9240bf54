//! A hostile client's tools: raw HTTP/1.1 requests written byte by byte over TCP (so a test can
//! stop mid-body or never send a header), and a reader of one response head with a deadline.
//! Used by the listener tests and the hostile scenario.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a connection to `addr` and writes a request head declaring `content_length` body bytes
/// (and `headers`), but no body.
pub async fn send_head(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_length: usize,
) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {content_length}\r\n\
         Content-Type: application/json\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    Ok(stream)
}

/// What the server did with a connection within a deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A response head arrived: its status code and the head's text.
    Response { status: u16, head: String },
    /// The server closed the connection without a response.
    Closed,
    /// Nothing within the deadline.
    Silent,
}

impl Answer {
    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Response { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Reads until a whole response head (and up to 4 KiB of what follows), the connection closes, or
/// `timeout` passes.
pub async fn read_answer(stream: &mut TcpStream, timeout: Duration) -> Result<Answer> {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = find_head_end(&received) {
            let head = String::from_utf8_lossy(&received[..end]).into_owned();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse::<u16>().ok())
                .with_context(|| format!("not an HTTP response head: {head:?}"))?;
            return Ok(Answer::Response { status, head });
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return Ok(Answer::Silent),
            Ok(Ok(0)) | Ok(Err(_)) if received.is_empty() => return Ok(Answer::Closed),
            Ok(Ok(0)) => bail!("connection closed mid-head: {received:?}"),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Ok(Err(error)) => return Err(error.into()),
        }
    }
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|window| window == b"\r\n\r\n")
}

/// Waits until the server closes `stream` (reads and discards what it sends), or `timeout`.
/// True if it was closed.
pub async fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// One sample of a Prometheus metric from `base_url/metrics`: the first line of metric `name`
/// whose labels include every `label="value"` fragment of `labels`.
pub async fn metric(base_url: &str, name: &str, labels: &[&str]) -> Result<Option<f64>> {
    let text = reqwest::get(format!("{base_url}/metrics"))
        .await?
        .text()
        .await?;
    Ok(metric_value(&text, name, labels))
}

/// The value of metric `name` with `labels` in a Prometheus text exposition (see [`metric`]).
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
}
