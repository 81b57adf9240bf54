//! Request logging without bodies (`--log-requests`): one line per request, after its answer,
//! under the `rekor::access` target, so operators can route or filter it apart from the rest.
//!
//! Only the request line, the answer's status and size, the time taken, the peer's socket
//! address and a capped user agent are logged: never a body or a header value that may carry a
//! credential. The peer address is the TCP peer, not `X-Forwarded-For`, which clients can forge.

use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;

/// The longest path and user agent logged; longer ones are cut (a hostile client chooses them).
const MAX_LOGGED_CHARS: usize = 256;

/// What is known of a request before it is handled.
pub(crate) struct RequestLine {
    method: String,
    path: String,
    peer: Option<std::net::SocketAddr>,
    user_agent: String,
    started: Instant,
}

impl RequestLine {
    pub(crate) fn of(request: &ServiceRequest) -> Self {
        let user_agent = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        RequestLine {
            method: request.method().to_string(),
            path: capped(request.path()),
            peer: request.peer_addr(),
            user_agent: capped(user_agent),
            started: Instant::now(),
        }
    }

    /// Logs the finished request.
    pub(crate) fn log<B: MessageBody>(self, response: &ServiceResponse<B>) {
        let bytes_out = match response.response().body().size() {
            BodySize::Sized(n) => Some(n),
            BodySize::None => Some(0),
            BodySize::Stream => None,
        };
        let request_bytes = response
            .request()
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        tracing::info!(
            target: "rekor::access",
            method = %self.method,
            path = %self.path,
            status = response.status().as_u16(),
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            request_bytes,
            response_bytes = bytes_out,
            peer = %self.peer.map(|peer| peer.to_string()).unwrap_or_default(),
            user_agent = %self.user_agent,
            "request"
        );
    }
}

fn capped(text: &str) -> String {
    if text.len() <= MAX_LOGGED_CHARS {
        return text.escape_debug().to_string();
    }
    let mut end = MAX_LOGGED_CHARS;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text[..end].escape_debug())
}

#[cfg(test)]
mod tests {
    use super::capped;

    #[test]
    fn long_or_odd_text_is_cut_and_escaped() {
        assert_eq!(capped("/api/v2/checkpoint"), "/api/v2/checkpoint");
        let long = "é".repeat(300);
        let cut = capped(&long);
        assert!(cut.ends_with('…'));
        assert!(cut.chars().count() <= 129, "{}", cut.chars().count());
        assert_eq!(capped("a\nb"), "a\\nb");
    }
}
