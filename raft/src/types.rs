//! The openraft type configuration and the replicated command set (DESIGN.md, "The replicated
//! state machine").
//!
//! Commands and responses are bincode 1.3.3-encoded (rust-stack.md §8): no untagged, flattened or
//! internally tagged serde shapes. Versioning: enum variants are only ever *appended* (bincode
//! encodes the variant index, so old records keep decoding), and every persisted record carries
//! a leading version byte ([`crate::codec`]).

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// The openraft type configuration of the log.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = NodeAddress,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft node id.
pub type NodeId = u64;

/// The `Raft` handle of this type configuration.
pub type Raft = openraft::Raft<TypeConfig>;

/// Where a node can be reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    /// Address of the node-to-node listener (`host:port`): Raft RPCs and write forwarding.
    pub internal_addr: String,
    /// Address of the public Rekor listener (`host:port`): reads can be redirected there.
    pub public_addr: String,
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "internal={} public={}",
            self.internal_addr, self.public_addr
        )
    }
}

/// One entry to log: the canonical body and its identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencedEntry {
    /// The canonical entry bytes, which are also the Merkle leaf data. `serde_bytes`: bincode
    /// writes and reads it as one slice (the same bytes on the wire and on disk as a plain
    /// `Vec<u8>`, which serde would otherwise visit one byte at a time).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// SHA-256 of `body`: the dedup key (DESIGN.md, "Dedup").
    pub identity: [u8; 32],
}

impl SequencedEntry {
    /// An entry whose identity is computed from `body`.
    pub fn new(body: Vec<u8>) -> Self {
        let identity = identity_of(&body);
        Self { body, identity }
    }
}

/// The dedup identity of a canonical body: SHA-256 of its bytes.
pub fn identity_of(body: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(body).into()
}

/// A replicated command. New variants go at the end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Log a batch of entries, in order (proposed by the leader's sequencer).
    Append {
        /// The batch.
        entries: Vec<SequencedEntry>,
    },
    /// Record a signed checkpoint (proposed by the leader's publisher).
    Publish {
        /// Tree size the checkpoint commits to.
        size: u64,
        /// Root hash at `size`.
        root: [u8; 32],
        /// The signed note text.
        checkpoint: String,
    },
    /// Record the log's identity: the origin and public key every checkpoint must verify under
    /// (DESIGN.md, "Security"). Proposed by the publisher of the first leader that finds none
    /// recorded; once recorded it never changes.
    SetLogKey(LogKey),
}

/// The log's identity in the replicated state: checkpoints are accepted only if they verify
/// under this origin and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogKey {
    /// The checkpoint origin (the note key name).
    pub origin: String,
    /// The public key as DER SubjectPublicKeyInfo.
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
}

impl LogKey {
    /// The note verifier of this key.
    pub fn verifier(
        &self,
    ) -> Result<Box<dyn rekor_storage::note::NoteVerifier>, rekor_storage::note::NoteError> {
        rekor_storage::note::verifier_from_spki_der(&self.origin, &self.public_key)
    }

    /// Whether `text` is a checkpoint of this log's origin, signed by this key, for exactly
    /// `size` and `root` (other signature lines, such as witness cosignatures, are not checked).
    pub fn verifies(&self, text: &str, size: u64, root: &[u8; 32]) -> bool {
        let Ok(verifier) = self.verifier() else {
            return false;
        };
        rekor_storage::checkpoint::Checkpoint::open(
            text.as_bytes(),
            &self.origin,
            verifier.as_ref(),
        )
        .is_ok_and(|(checkpoint, _)| checkpoint.size == size && &checkpoint.root == root)
    }

    /// Whether `text` is a checkpoint of this log's origin signed by this key (any size).
    pub fn signed(&self, text: &str) -> bool {
        let Ok(verifier) = self.verifier() else {
            return false;
        };
        rekor_storage::checkpoint::Checkpoint::open(
            text.as_bytes(),
            &self.origin,
            verifier.as_ref(),
        )
        .is_ok()
    }
}

impl fmt::Display for LogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&self.public_key);
        write!(
            f,
            "origin={} key-sha256={}",
            self.origin,
            hex_prefix(&digest)
        )
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// What became of one entry of an `Append`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendOutcome {
    /// Newly logged at `index`.
    Logged {
        /// The assigned log index.
        index: u64,
    },
    /// Already logged (earlier, or earlier in the same batch) at `index`.
    Duplicate {
        /// The index of the first occurrence.
        index: u64,
    },
    /// Not logged: no integrator could take this entry (see [`Refusal`]). It got no index and
    /// no identity record; the rest of its batch is unaffected.
    Refused {
        /// Why.
        reason: Refusal,
    },
}

impl AppendOutcome {
    /// The log index of the entry, new or earlier; `None` for a refused entry.
    pub fn index(&self) -> Option<u64> {
        match self {
            AppendOutcome::Logged { index } | AppendOutcome::Duplicate { index } => Some(*index),
            AppendOutcome::Refused { .. } => None,
        }
    }
}

/// Why the state machine refused an entry of an `Append`. Decided from the entry alone, so
/// every node refuses the same entries. New variants go at the end only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// An empty body is not a log entry.
    #[error("empty entry body")]
    Empty,
    /// The body does not fit an entry-bundle record (a u16 length: at most
    /// [`MAX_ENTRY_BODY`] bytes).
    #[error("entry body of {size} bytes exceeds the entry-bundle record limit of {MAX_ENTRY_BODY} bytes")]
    TooLarge {
        /// The body's length.
        size: u64,
    },
}

/// Largest body the state machine logs: the entry-bundle record limit of the tile store.
pub const MAX_ENTRY_BODY: usize = rekor_storage::tiles::MAX_ENTRY_SIZE;

/// Whether the state machine would refuse `body`, and why.
pub fn refusal_of(body: &[u8]) -> Option<Refusal> {
    if body.is_empty() {
        Some(Refusal::Empty)
    } else if body.len() > MAX_ENTRY_BODY {
        Some(Refusal::TooLarge {
            size: body.len() as u64,
        })
    } else {
        None
    }
}

/// The state machine's answer to one applied Raft entry. New variants go at the end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Blank and membership entries.
    Empty,
    /// One outcome per entry of the `Append`, in request order.
    Appended(Vec<AppendOutcome>),
    /// Whether the `Publish` was recorded as the latest checkpoint.
    Published {
        /// `false` if the size went backwards or the root is not the one this log computed.
        accepted: bool,
    },
    /// The `Append` was refused because the log is frozen (its latest checkpoint carries the
    /// frozen marker); nothing was logged.
    Frozen,
    /// Whether the `SetLogKey` was recorded (or equals the key already recorded).
    LogKeySet {
        /// `false` if another key is recorded, the key does not parse, or it does not verify
        /// the latest checkpoint recorded before any key was.
        accepted: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `serde_bytes` body must not change the encoding: Raft logs, snapshots and forwarded
    /// entries written before it decode the same.
    /// Variants are appended, so `Logged` and `Duplicate` keep their bincode encoding.
    #[test]
    fn append_outcome_encoding_of_existing_variants_is_unchanged() {
        let logged = bincode::serialize(&AppendOutcome::Logged { index: 7 }).unwrap();
        assert_eq!(logged, bincode::serialize(&(0u32, 7u64)).unwrap());
        let duplicate = bincode::serialize(&AppendOutcome::Duplicate { index: 7 }).unwrap();
        assert_eq!(duplicate, bincode::serialize(&(1u32, 7u64)).unwrap());
    }

    #[test]
    fn refusal_is_for_empty_and_oversized_bodies_only() {
        assert_eq!(refusal_of(b""), Some(Refusal::Empty));
        assert_eq!(refusal_of(&vec![b'x'; MAX_ENTRY_BODY]), None);
        assert_eq!(
            refusal_of(&vec![b'x'; MAX_ENTRY_BODY + 1]),
            Some(Refusal::TooLarge {
                size: MAX_ENTRY_BODY as u64 + 1
            })
        );
    }

    #[test]
    fn sequenced_entry_encoding_is_a_plain_length_prefixed_vec() {
        let entry = SequencedEntry::new(b"canonical body".to_vec());
        let plain = bincode::serialize(&(entry.body.clone(), entry.identity)).unwrap();
        assert_eq!(bincode::serialize(&entry).unwrap(), plain);
        let decoded: SequencedEntry = bincode::deserialize(&plain).unwrap();
        assert_eq!(decoded, entry);
    }
}
