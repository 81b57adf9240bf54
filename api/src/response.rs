//! Response bodies: the protojson `TransparencyLogEntry` (rekor-v2-api.md §7, §15.3) and the
//! `google.rpc.Status` error body (§10).
//!
//! Field order is proto field-number order; zero values are emitted; int64 values are JSON
//! strings; bytes are standard padded base64.

use serde::Serialize;

use crate::backend::{EntryKind, LoggedEntry};
use crate::proto_json::encode_bytes;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TransparencyLogEntry<'a> {
    log_index: String,
    log_id: LogId,
    kind_version: KindVersion,
    integrated_time: &'static str,
    /// Always `null`: Rekor v2 has no signed entry timestamp.
    inclusion_promise: Option<()>,
    inclusion_proof: InclusionProof<'a>,
    canonicalized_body: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogId {
    key_id: String,
}

#[derive(Serialize)]
struct KindVersion {
    kind: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InclusionProof<'a> {
    log_index: String,
    root_hash: String,
    tree_size: String,
    hashes: Vec<String>,
    checkpoint: Checkpoint<'a>,
}

#[derive(Serialize)]
struct Checkpoint<'a> {
    envelope: &'a str,
}

/// Renders the 201 body for an entry: `log_id` is the full 32-byte checkpoint key ID.
pub fn transparency_log_entry(
    log_id: &[u8; 32],
    kind: EntryKind,
    canonical_body: &[u8],
    logged: &LoggedEntry,
) -> Vec<u8> {
    let entry = TransparencyLogEntry {
        log_index: logged.log_index.to_string(),
        log_id: LogId {
            key_id: encode_bytes(log_id),
        },
        kind_version: KindVersion {
            kind: kind.kind(),
            version: kind.version(),
        },
        integrated_time: "0",
        inclusion_promise: None,
        inclusion_proof: InclusionProof {
            log_index: logged.log_index.to_string(),
            root_hash: encode_bytes(&logged.root_hash),
            tree_size: logged.tree_size.to_string(),
            hashes: logged
                .inclusion_proof
                .iter()
                .map(|h| encode_bytes(h))
                .collect(),
            checkpoint: Checkpoint {
                envelope: &logged.checkpoint,
            },
        },
        canonicalized_body: encode_bytes(canonical_body),
    };
    // Sized up front (the body's base64 is most of it): growing the buffer by doubling copied
    // each answer about twice.
    let capacity = entry.canonicalized_body.len()
        + 2 * logged.checkpoint.len()
        + 48 * entry.inclusion_proof.hashes.len()
        + 512;
    let mut body = Vec::with_capacity(capacity);
    // Serialising these plain structs cannot fail; an empty body would be caught by clients.
    match serde_json::to_writer(&mut body, &entry) {
        Ok(()) => body,
        Err(_) => Vec::new(),
    }
}

/// gRPC status codes used on the wire (§10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum GrpcCode {
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

#[derive(Serialize)]
struct Status<'a> {
    code: i32,
    message: &'a str,
    details: [(); 0],
}

/// `{"code":<n>,"message":"...","details":[]}`.
pub fn status_body(code: GrpcCode, message: &str) -> Vec<u8> {
    serde_json::to_vec(&Status {
        code: code as i32,
        message,
        details: [],
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_body_emits_empty_details() {
        assert_eq!(
            status_body(GrpcCode::InvalidArgument, "invalid hashedrekord request"),
            br#"{"code":3,"message":"invalid hashedrekord request","details":[]}"#
        );
    }
}
