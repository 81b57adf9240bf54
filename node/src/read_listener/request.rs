//! One request head of the read listener: read under a size cap and a deadline, then parsed.
//!
//! The listener serves GET and HEAD only, so a request is its head: a request that announces a
//! body is refused (400) and its connection closed, never read. `httparse` parses in one linear
//! pass over at most [`MAX_HEAD_BYTES`], and only complete heads are acted on.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Most bytes a request head may take, request line and headers together (8 KiB, like nginx's
/// default `large_client_header_buffers` line). Read paths are short; anything longer is hostile.
pub(super) const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Most header fields a request may carry.
const MAX_HEADERS: usize = 32;

/// The parts of a request head the listener acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RequestHead {
    pub method: Method,
    /// The request target's path, without its query string.
    pub path: String,
    /// Whether the connection stays open after the answer (HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// Whether the request announces a body (`Content-Length` other than 0, or any
    /// `Transfer-Encoding`).
    pub has_body: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Head,
    Other,
}

/// Why no request head came.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HeadError {
    /// The connection closed, or stayed idle past its wait, before a request began: close
    /// quietly.
    Idle,
    /// A request began but its head did not complete within the header deadline (408).
    Timeout,
    /// Longer than [`MAX_HEAD_BYTES`] or more than [`MAX_HEADERS`] fields (431).
    TooLarge,
    /// Not an HTTP/1.x request head (400).
    Malformed,
    /// The connection failed mid-head.
    Io(std::io::ErrorKind),
}

/// What the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed {
    /// A complete head of `len` bytes.
    Complete(RequestHead, usize),
    /// More bytes are needed.
    Partial,
    Error(HeadError),
}

/// Parses the head at the start of `bytes`.
pub(super) fn parse_head(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() >= MAX_HEAD_BYTES => {
            return Parsed::Error(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Error(HeadError::TooLarge),
        Err(_) => return Parsed::Error(HeadError::Malformed),
    };
    if len > MAX_HEAD_BYTES {
        return Parsed::Error(HeadError::TooLarge);
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Parsed::Error(HeadError::Malformed);
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let Some(path) = request_path(target) else {
        return Parsed::Error(HeadError::Malformed);
    };
    let mut keep_alive = version == 1;
    let mut has_body = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        } else if header.name.eq_ignore_ascii_case("content-length") {
            has_body |= header.value.trim_ascii() != b"0";
        }
    }
    Parsed::Complete(
        RequestHead {
            method,
            path,
            keep_alive,
            has_body,
        },
        len,
    )
}

/// The path of a request target, as the public listener (actix-web) routes it: the path of an
/// absolute-form target (`http://host/path`), without the query, with percent-encoded unreserved
/// characters decoded (`%30` is `0`) and every other escape kept as it is (`%2F` stays, so it
/// never becomes a separator). `None` for a target that is neither a path nor absolute-form.
fn request_path(target: &str) -> Option<String> {
    let target = match target.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            rest.find('/').map_or("/", |at| &rest[at..])
        }
        _ if target.starts_with('/') => target,
        _ => return None,
    };
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if !path.contains('%') {
        return Some(path.to_string());
    }
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut at = 0;
    while at < bytes.len() {
        let unreserved = bytes
            .get(at + 1..at + 3)
            .filter(|_| bytes[at] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|byte| byte.is_ascii_alphanumeric() || b"-._~".contains(byte));
        match unreserved {
            Some(byte) => {
                decoded.push(char::from(byte));
                at += 3;
            }
            None => {
                // `path` is a &str and '%' is ASCII, so this is a whole character boundary.
                let next = path[at..].chars().next()?;
                decoded.push(next);
                at += next.len_utf8();
            }
        }
    }
    Some(decoded)
}

/// Reads the next request head from `stream` into `buffer` (which may already hold bytes of it,
/// pipelined after the previous request) and consumes it from the buffer. The first byte must
/// come within `idle`; the rest of the head within `header_timeout` of it.
pub(super) async fn read_head(
    stream: &mut TcpStream,
    buffer: &mut BytesMut,
    idle: Duration,
    header_timeout: Duration,
) -> Result<RequestHead, HeadError> {
    if buffer.is_empty() {
        match tokio::time::timeout(idle, stream.read_buf(buffer)).await {
            Err(_) | Ok(Ok(0)) => return Err(HeadError::Idle),
            Ok(Err(error)) => return Err(HeadError::Io(error.kind())),
            Ok(Ok(_)) => {}
        }
    }
    let complete = async {
        loop {
            match parse_head(buffer) {
                Parsed::Complete(head, len) => {
                    buffer.advance(len);
                    return Ok(head);
                }
                Parsed::Error(error) => return Err(error),
                Parsed::Partial => {}
            }
            // Never hold more than one head's worth, whatever the client sends.
            let room = MAX_HEAD_BYTES.saturating_sub(buffer.len()).max(1);
            buffer.reserve(room);
            let mut limited = (&mut *stream).take(room as u64);
            match limited.read_buf(buffer).await {
                Ok(0) => return Err(HeadError::Io(std::io::ErrorKind::UnexpectedEof)),
                Ok(_) => {}
                Err(error) => return Err(HeadError::Io(error.kind())),
            }
        }
    };
    tokio::time::timeout(header_timeout, complete)
        .await
        .unwrap_or(Err(HeadError::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> (RequestHead, usize) {
        match parse_head(bytes) {
            Parsed::Complete(head, len) => (head, len),
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    #[test]
    fn a_get_keeps_the_connection_by_default_and_drops_the_query() {
        let request = b"GET /api/v2/tile/0/000?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /next";
        let (head, len) = complete(request);
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.path, "/api/v2/tile/0/000");
        assert!(head.keep_alive);
        assert!(!head.has_body);
        // Pipelined bytes after the head are not part of it.
        assert_eq!(&request[len..], b"GET /next");
    }

    #[test]
    fn connection_tokens_and_version_decide_keep_alive() {
        let (head, _) = complete(b"HEAD / HTTP/1.1\r\nConnection: upgrade, Close\r\n\r\n");
        assert_eq!(head.method, Method::Head);
        assert!(!head.keep_alive);
        let (head, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!head.keep_alive);
        let (head, _) = complete(b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n");
        assert!(head.keep_alive);
    }

    #[test]
    fn a_body_is_noticed_whichever_way_it_is_announced() {
        let (head, _) = complete(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(head.method, Method::Other);
        assert!(head.has_body);
        let (head, _) = complete(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(head.has_body);
        let (head, _) = complete(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(!head.has_body);
    }

    #[test]
    fn partial_heads_wait_until_the_cap_then_fail() {
        assert_eq!(parse_head(b"GET /api/v2/tile/0/0"), Parsed::Partial);
        let mut long = b"GET /".to_vec();
        long.resize(MAX_HEAD_BYTES, b'a');
        assert_eq!(parse_head(&long), Parsed::Error(HeadError::TooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many), Parsed::Error(HeadError::TooLarge));
    }

    #[test]
    fn targets_route_as_on_the_public_listener() {
        for (target, path) in [
            ("/api/v2/tile/0/%30%30%30", "/api/v2/tile/0/000"),
            ("/api/v2/tile%2F0/000", "/api/v2/tile%2F0/000"),
            (
                "/api/v2/tile/entries/%7e%2e%2E%",
                "/api/v2/tile/entries/~..%",
            ),
            (
                "http://log.example/api/v2/checkpoint?x",
                "/api/v2/checkpoint",
            ),
            ("HTTPS://log.example", "/"),
        ] {
            let request = format!("GET {target} HTTP/1.1\r\n\r\n");
            assert_eq!(complete(request.as_bytes()).0.path, path, "{target}");
        }
        assert_eq!(
            parse_head(b"GET *  HTTP/1.1\r\n\r\n"),
            Parsed::Error(HeadError::Malformed)
        );
    }

    proptest::proptest! {
        /// Whatever a client sends, parsing ends in one of its outcomes, never a panic, and a
        /// complete head never claims more bytes than were read or than the cap.
        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            if let Parsed::Complete(head, len) = parse_head(&bytes) {
                proptest::prop_assert!(len <= bytes.len() && len <= MAX_HEAD_BYTES);
                proptest::prop_assert!(head.path.starts_with('/'));
            }
        }

        /// Any target decodes without a panic and only ever shrinks.
        #[test]
        fn any_target_routes_without_panic(target in "[/a-zA-Z0-9%:?.~-]{0,64}") {
            if let Some(path) = request_path(&target) {
                proptest::prop_assert!(path.len() <= target.len().max(1));
            }
        }
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(
            parse_head(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            Parsed::Error(HeadError::Malformed)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/2.0\r\n\r\n"),
            Parsed::Error(HeadError::Malformed)
        );
    }
}
