//! Decoding only (rekor-v2-api.md §3): arbitrary bytes, up to the 4 MiB body limit, through
//! `CreateEntryRequest::from_json` and nothing else, so that libFuzzer's per-input `-timeout`
//! measures the decoder alone. Properties:
//! - no panic;
//! - every error is a `proto:` message without serde_json's " at line X column Y" suffix,
//!   unless it is a syntax error, and an error never echoes more than a bounded part of the
//!   input;
//! - decoding is deterministic, and a request that decodes still decodes, to the same value,
//!   with trailing bytes appended (only the first JSON value is read).

use rekor_api::CreateEntryRequest;

/// The largest body the API accepts (rekor-v2-api.md §13); longer inputs are skipped.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The checks for one input.
pub fn check(body: &[u8]) {
    if body.len() > MAX_BODY {
        return;
    }
    let decoded = CreateEntryRequest::from_json(body);
    match &decoded {
        Err(error) => {
            let message = error.to_string();
            assert!(message.starts_with("proto: "), "decoding error {message}");
            if !message.starts_with("proto: syntax error: ") {
                // serde_json's suffix is " at line N column M"; a quoted key ends with `"`.
                let suffix = message.rsplit(" column ").next().unwrap_or("");
                let positioned = message.contains(" at line ")
                    && !suffix.is_empty()
                    && suffix.bytes().all(|b| b.is_ascii_digit());
                assert!(!positioned, "position leaked: {message}");
                assert!(message.len() < 512, "error echoes too much: {}", message.len());
            }
        }
        Ok(request) => {
            let mut extended = body.to_vec();
            extended.extend_from_slice(b" } trailing");
            // An all-whitespace body is the empty message, but with bytes appended it is not.
            if !body.iter().all(|b| b.is_ascii_whitespace()) {
                assert_eq!(
                    CreateEntryRequest::from_json(&extended).as_ref(),
                    Ok(request),
                    "trailing bytes changed the result"
                );
            }
        }
    }
    assert_eq!(CreateEntryRequest::from_json(body), decoded, "not deterministic");
}
