//! Response bodies: the protojson `TransparencyLogEntry` (rekor-v2-api.md §7, §15.3) and the
//! `google.rpc.Status` error body (§10).
//!
//! Field order is proto field-number order; zero values are emitted; int64 values are JSON
//! strings; bytes are standard padded base64.

use serde::Serialize;

use crate::backend::{EntryKind, LoggedEntry};
use crate::canonical::{write_base64, write_string};

/// Renders the 201 body for an entry: `log_id` is the full 32-byte checkpoint key ID.
///
/// Written straight into one buffer, in the order and form serde would write the protojson
/// structs (a property test compares the two): every 201 answer goes through here, and the
/// body's base64 is most of it, so it is encoded in place rather than into a string that is
/// then scanned for characters to escape (base64 has none).
pub fn transparency_log_entry(
    log_id: &[u8; 32],
    kind: EntryKind,
    canonical_body: &[u8],
    logged: &LoggedEntry,
) -> Vec<u8> {
    let capacity = canonical_body.len() * 4 / 3
        + 2 * logged.checkpoint.len()
        + 48 * logged.inclusion_proof.len()
        + 512;
    let mut out = Vec::with_capacity(capacity);
    let log_index = logged.log_index.to_string();
    let log_index = log_index.as_bytes();
    out.extend_from_slice(br#"{"logIndex":""#);
    out.extend_from_slice(log_index);
    out.extend_from_slice(br#"","logId":{"keyId":"#);
    write_base64(log_id, &mut out);
    out.extend_from_slice(br#"},"kindVersion":{"kind":"#);
    write_string(kind.kind(), &mut out);
    out.extend_from_slice(br#","version":"#);
    write_string(kind.version(), &mut out);
    out.extend_from_slice(
        br#"},"integratedTime":"0","inclusionPromise":null,"inclusionProof":{"logIndex":""#,
    );
    out.extend_from_slice(log_index);
    out.extend_from_slice(br#"","rootHash":"#);
    write_base64(&logged.root_hash, &mut out);
    out.extend_from_slice(br#","treeSize":""#);
    out.extend_from_slice(logged.tree_size.to_string().as_bytes());
    out.extend_from_slice(br#"","hashes":["#);
    for (i, hash) in logged.inclusion_proof.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_base64(hash, &mut out);
    }
    out.extend_from_slice(br#"],"checkpoint":{"envelope":"#);
    write_string(&logged.checkpoint, &mut out);
    out.extend_from_slice(br#"}},"canonicalizedBody":"#);
    write_base64(canonical_body, &mut out);
    out.push(b'}');
    out
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

    use crate::proto_json::encode_bytes;

    /// The protojson structs as serde writes them: the reference [`transparency_log_entry`]
    /// must match byte for byte.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct TransparencyLogEntry<'a> {
        log_index: String,
        log_id: LogId,
        kind_version: KindVersion,
        integrated_time: &'static str,
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

    fn by_serde(
        log_id: &[u8; 32],
        kind: EntryKind,
        canonical_body: &[u8],
        logged: &LoggedEntry,
    ) -> Vec<u8> {
        serde_json::to_vec(&TransparencyLogEntry {
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
        })
        .unwrap()
    }

    proptest::proptest! {
        /// The direct writer is serde's output of the protojson structs, for any entry: empty
        /// proofs and bodies, the largest indices, checkpoints with characters to escape.
        #[test]
        fn the_entry_is_what_serde_writes(
            log_id in proptest::prelude::any::<[u8; 32]>(),
            dsse in proptest::prelude::any::<bool>(),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500),
            log_index in proptest::prelude::any::<u64>(),
            tree_size in proptest::prelude::any::<u64>(),
            root_hash in proptest::prelude::any::<[u8; 32]>(),
            proof in proptest::collection::vec(proptest::prelude::any::<[u8; 32]>(), 0..40),
            checkpoint in "(?s).{0,300}",
        ) {
            let kind = if dsse { EntryKind::Dsse } else { EntryKind::HashedRekord };
            let logged = LoggedEntry {
                log_index,
                tree_size,
                root_hash,
                inclusion_proof: proof,
                checkpoint,
            };
            proptest::prop_assert_eq!(
                transparency_log_entry(&log_id, kind, &body, &logged),
                by_serde(&log_id, kind, &body, &logged)
            );
        }
    }

    #[test]
    fn status_body_emits_empty_details() {
        assert_eq!(
            status_body(GrpcCode::InvalidArgument, "invalid hashedrekord request"),
            br#"{"code":3,"message":"invalid hashedrekord request","details":[]}"#
        );
    }
}
