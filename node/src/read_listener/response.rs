//! Writing one answer of the read listener: a status line and headers, then the body, from
//! memory or straight from a file with `sendfile(2)`.
//!
//! A file body never passes through this process's memory: the kernel moves its page-cache
//! pages to the socket. The head goes first with `MSG_MORE`, so the kernel sends head and body
//! start in one segment. Headers match the public listener's answers for the same objects.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rustix::net::SendFlags;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Bodies up to this size go out in the same write as the head (tiles, the checkpoint, status
/// bodies); larger ones (entry bundles read from a non-local store) in a write of their own
/// rather than copied.
const COALESCE_BODY_BYTES: usize = 16 * 1024;

/// `Content-Type` and `Cache-Control` of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Kind {
    pub content_type: &'static str,
    pub cache_control: Option<&'static str>,
}

/// Tiles and bundles: immutable once served (the public listener's headers).
pub(super) const IMMUTABLE_OBJECT: Kind = Kind {
    content_type: "application/octet-stream",
    cache_control: Some("max-age=604800,immutable"),
};

/// The checkpoint: revalidated on every use.
pub(super) const CHECKPOINT: Kind = Kind {
    content_type: "text/plain; charset=utf-8",
    cache_control: Some("no-cache"),
};

/// The gRPC-style JSON status bodies of errors.
pub(super) const STATUS_JSON: Kind = Kind {
    content_type: "application/json",
    cache_control: None,
};

/// A response body.
pub(super) enum Body {
    Bytes(Bytes),
    /// A whole file of `len` bytes (its length when opened).
    File {
        file: File,
        len: u64,
    },
}

impl Body {
    pub(super) fn len(&self) -> u64 {
        match self {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

/// The status line and headers of an answer.
pub(super) fn head(status: u16, kind: Kind, content_length: u64, keep_alive: bool) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    // Writing into a Vec cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {status} {reason}\r\ncontent-length: {content_length}\r\ncontent-type: {content_type}\r\n",
        reason = reason(status),
        content_type = kind.content_type,
    );
    if let Some(cache_control) = kind.cache_control {
        let _ = write!(head, "cache-control: {cache_control}\r\n");
    }
    if !keep_alive {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"date: ");
    with_http_date(|date| head.extend_from_slice(date));
    head.extend_from_slice(b"\r\n\r\n");
    head
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "",
    }
}

thread_local! {
    /// The `Date` header value, formatted once per second per thread.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

fn with_http_date(use_date: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    DATE.with_borrow_mut(|(cached_second, text)| {
        if *cached_second != second {
            *text = httpdate::fmt_http_date(now);
            *cached_second = second;
        }
        use_date(text.as_bytes());
    });
}

/// Sends `head`, then `body` unless `head_only` (a HEAD request). Returns the bytes sent.
pub(super) async fn send(
    stream: &mut TcpStream,
    mut head: Vec<u8>,
    body: &Body,
    head_only: bool,
) -> io::Result<u64> {
    let head_len = head.len() as u64;
    match body {
        _ if head_only => {
            stream.write_all(&head).await?;
            Ok(head_len)
        }
        Body::Bytes(bytes) if bytes.len() <= COALESCE_BODY_BYTES => {
            head.extend_from_slice(bytes);
            stream.write_all(&head).await?;
            Ok(head.len() as u64)
        }
        Body::Bytes(bytes) => {
            send_more(stream, &head).await?;
            stream.write_all(bytes).await?;
            Ok(head_len + bytes.len() as u64)
        }
        Body::File { file, len } => {
            send_more(stream, &head).await?;
            send_file(stream, file, *len).await?;
            Ok(head_len + len)
        }
    }
}

/// Sends all of `bytes` with `MSG_MORE`: the kernel holds them for the data that follows.
async fn send_more(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_io(Interest::WRITABLE, || {
            rustix::net::send(stream, bytes, SendFlags::MORE | SendFlags::NOSIGNAL)
                .map_err(io::Error::from)
        }) {
            Ok(sent) => bytes = &bytes[sent..],
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Sends the first `len` bytes of `file` with `sendfile(2)`, waiting for the socket as needed.
async fn send_file(stream: &TcpStream, file: &File, len: u64) -> io::Result<()> {
    let mut offset = 0u64;
    while offset < len {
        stream.writable().await?;
        let remaining = usize::try_from(len - offset).unwrap_or(usize::MAX);
        match stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(stream, file, Some(&mut offset), remaining)
                .map_err(io::Error::from)
        }) {
            // The file is shorter than when it was opened: objects are create-once, so this is
            // damage, and the answer cannot be completed.
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ended before its length",
                ))
            }
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_carry_the_public_listeners_headers() {
        let text = String::from_utf8(head(200, IMMUTABLE_OBJECT, 8192, true)).unwrap();
        assert!(text.starts_with(
            "HTTP/1.1 200 OK\r\ncontent-length: 8192\r\ncontent-type: application/octet-stream\r\n\
             cache-control: max-age=604800,immutable\r\ndate: "
        ));
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
        assert!(!text.contains("connection:"));
        let text = String::from_utf8(head(404, STATUS_JSON, 2, false)).unwrap();
        assert!(text.starts_with(
            "HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\
             connection: close\r\ndate: "
        ));
    }
}
