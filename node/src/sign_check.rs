//! What the publisher checks before it signs anything (DESIGN.md, "Security", invariant 2).
//!
//! The state machines reject a `Publish` whose root is not the one the committed order implies,
//! or whose note does not verify under the log's recorded key; but by then the checkpoint is
//! signed and witnesses have cosigned it, and a signature over a wrong root (say, from tiles
//! damaged on disk) is an equivocation the moment it leaves the process. So the publisher signs
//! only a `(size, root)` that the state machine's own record of the committed order confirms,
//! and only with the key the log recorded: a member configured with another key refuses to
//! publish rather than propose checkpoints nobody can verify.

use rekor_raft::{LogKey, StateReader};
use rekor_signer::LogSigner;
use rekor_storage::checkpoint::Checkpoint;

/// Why the publisher did not sign.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// The log recorded another key (or origin) than this node's.
    #[error("this node's signing key ({ours}) is not the log's recorded key ({recorded}); refusing to sign checkpoints. Configure the log's key (--signing-key, --origin) on this node")]
    ForeignKey { recorded: String, ours: String },
    /// No key is recorded yet (the caller records this node's first).
    #[error("the log has no recorded key yet")]
    NoKey,
    /// The root to sign is not the one the committed order implies at that size.
    #[error(
        "refusing to sign size {size}: its root is not the root the committed order implies there"
    )]
    RootMismatch { size: u64 },
    /// The state machine knows no root at that size (not a recent batch boundary).
    #[error(
        "refusing to sign size {size}: the state machine knows no committed root at that size"
    )]
    UnknownRoot { size: u64 },
    /// Reading the state machine failed.
    #[error("reading the state machine: {0}")]
    State(String),
    /// The signer failed.
    #[error("signing: {0}")]
    Signing(String),
}

impl Refusal {
    /// The `reason` label of `rekor_node_checkpoint_sign_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::ForeignKey { .. } => "foreign_key",
            Refusal::NoKey => "no_key",
            Refusal::RootMismatch { .. } => "root_mismatch",
            Refusal::UnknownRoot { .. } => "unknown_root",
            Refusal::State(_) => "state",
            Refusal::Signing(_) => "signing",
        }
    }
}

/// This node's key as the state machine records it.
pub fn own_key(signer: &LogSigner, origin: &str) -> LogKey {
    LogKey {
        origin: origin.to_owned(),
        public_key: signer.public_key_der().to_vec(),
    }
}

/// Whether this node's key is the log's: `Ok(true)` if recorded and equal, `Ok(false)` if none
/// is recorded yet, [`Refusal::ForeignKey`] if another is.
pub fn key_status(state: &StateReader, own: &LogKey) -> Result<bool, Refusal> {
    match state
        .log_key()
        .map_err(|error| Refusal::State(error.to_string()))?
    {
        None => Ok(false),
        Some(recorded) if &recorded == own => Ok(true),
        Some(recorded) => Err(Refusal::ForeignKey {
            recorded: recorded.to_string(),
            ours: own.to_string(),
        }),
    }
}

/// Signs `checkpoint` only if the log's recorded key is this signer's and the state machine's
/// committed order implies `checkpoint.root` at `checkpoint.size`; returns the signed note.
pub async fn sign_checked(
    state: &StateReader,
    signer: &LogSigner,
    checkpoint: &Checkpoint,
) -> Result<String, Refusal> {
    if !key_status(state, &own_key(signer, &checkpoint.origin))? {
        return Err(Refusal::NoKey);
    }
    let size = checkpoint.size;
    match state
        .root_at(size)
        .map_err(|error| Refusal::State(error.to_string()))?
    {
        None => return Err(Refusal::UnknownRoot { size }),
        Some(committed) if committed != checkpoint.root => {
            return Err(Refusal::RootMismatch { size })
        }
        Some(_) => {}
    }
    signer
        .sign_checkpoint(checkpoint)
        .await
        .map_err(|error| Refusal::Signing(error.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use std::sync::Arc;

    use rekor_raft::{Command, SequencedEntry, StateMachineStore, TypeConfig};
    use rekor_signer::file::{FileBackend, FileKey};
    use rekor_signer::{KeyBackend, SignFuture};

    use super::*;

    /// A key file backend that counts the signatures made through it.
    struct CountingBackend {
        inner: FileBackend,
        signed: AtomicUsize,
    }

    impl KeyBackend for CountingBackend {
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn public_key_der(&self) -> &[u8] {
            self.inner.public_key_der()
        }
        fn sign<'a>(&'a self, text: &'a [u8]) -> SignFuture<'a> {
            self.signed.fetch_add(1, Ordering::SeqCst);
            self.inner.sign(text)
        }
    }

    /// A signer for `origin` with a new key, and its signature count.
    fn counting(origin: &str) -> (LogSigner, Arc<CountingBackend>) {
        let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
        let backend = Arc::new(CountingBackend {
            inner: FileBackend::from_key("test".into(), FileKey::Ed25519(key)),
            signed: AtomicUsize::new(0),
        });
        let signer = LogSigner::new(origin, backend.clone(), "file").unwrap();
        (signer, backend)
    }

    fn entry(index: u64, command: Command) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(command),
        }
    }

    async fn state_machine(dir: &std::path::Path) -> (rekor_raft::SledEngine, StateMachineStore) {
        let engine =
            rekor_raft::SledEngine::open(&rekor_raft::EngineConfig::new(dir.join("raft"))).unwrap();
        let (_log, sm) = rekor_raft::open_stores(&engine, dir).unwrap();
        (engine, sm)
    }

    #[tokio::test]
    async fn a_root_the_committed_order_does_not_imply_is_never_signed() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, mut sm) = state_machine(dir.path()).await;
        let (signer, backend) = counting("log.example");
        let bodies = ["a", "b", "c"].map(|b| SequencedEntry::new(b.as_bytes().to_vec()));
        sm.apply([
            entry(
                1,
                Command::Append {
                    entries: bodies.to_vec(),
                },
            ),
            entry(2, Command::SetLogKey(own_key(&signer, "log.example"))),
        ])
        .await
        .unwrap();
        let state = sm.reader();
        let committed = state.applied().root;

        let wrong = Checkpoint::new("log.example", 3, [9; 32]);
        assert_eq!(
            sign_checked(&state, &signer, &wrong).await,
            Err(Refusal::RootMismatch { size: 3 })
        );
        // A size inside a batch: no committed root is known there, so nothing is signed.
        let inside = Checkpoint::new("log.example", 2, committed);
        assert_eq!(
            sign_checked(&state, &signer, &inside).await,
            Err(Refusal::UnknownRoot { size: 2 })
        );
        assert_eq!(backend.signed.load(Ordering::SeqCst), 0);

        let right = Checkpoint::new("log.example", 3, committed);
        let text = sign_checked(&state, &signer, &right).await.unwrap();
        assert_eq!(backend.signed.load(Ordering::SeqCst), 1);
        assert!(state
            .log_key()
            .unwrap()
            .unwrap()
            .verifies(&text, 3, &committed));
    }

    #[tokio::test]
    async fn a_node_whose_key_is_not_the_recorded_one_never_signs() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, mut sm) = state_machine(dir.path()).await;
        let (log_signer, log_backend) = counting("log.example");
        let (foreign, foreign_backend) = counting("log.example");
        let state = sm.reader();
        let empty = Checkpoint::new("log.example", 0, state.applied().root);
        // No key recorded yet: nothing is signed until one is.
        assert_eq!(
            sign_checked(&state, &foreign, &empty).await,
            Err(Refusal::NoKey)
        );
        sm.apply([entry(
            1,
            Command::SetLogKey(own_key(&log_signer, "log.example")),
        )])
        .await
        .unwrap();
        let refusal = sign_checked(&state, &foreign, &empty).await.unwrap_err();
        assert_eq!(refusal.reason(), "foreign_key");
        // The same key under another origin is another log.
        let other_origin = Checkpoint::new("other.example", 0, state.applied().root);
        assert_eq!(
            sign_checked(&state, &log_signer, &other_origin)
                .await
                .unwrap_err()
                .reason(),
            "foreign_key"
        );
        assert_eq!(foreign_backend.signed.load(Ordering::SeqCst), 0);
        assert_eq!(log_backend.signed.load(Ordering::SeqCst), 0);
        sign_checked(&state, &log_signer, &empty).await.unwrap();
    }
}
