//! The log side of C2SP tlog-witness (tlog-tiles.md §10, "Log side").
//!
//! For each checkpoint the leader signs, [`Witnessing::witness`] POSTs to every witness of the
//! policy in parallel: `old <size>\n`, the consistency proof from that size (one base64 hash a
//! line), a blank line, then the signed checkpoint. A `409` carries the witness's own size
//! (`text/x.tlog.size`); we remember it and retry with a proof from there, which is also how a
//! fresh leader (who remembers nothing) bootstraps. Of each `200` answer we keep at most one line:
//! the first that verifies as a `cosignature/v1` signature by that witness's key
//! ([`super::response`]); the rest are dropped and counted. A checkpoint thus carries at most one
//! line per policy witness, and never more than one per key.
//!
//! We wait for every witness (each bounded by the timeout) instead of stopping at the quorum, so
//! slower witnesses keep up with the log. When the quorum is not met we publish anyway (fail-open,
//! as upstream Rekor v2 does) unless `--require-witness-quorum` is set, in which case the
//! publisher skips this checkpoint and tries again next interval. A misbehaving witness never
//! makes a checkpoint unpublishable in fail-open mode.
//!
//! A witness that has cosigned a larger tree than this log ever committed, or whose tree ours
//! contradicts, is evidence of a rollback or a fork ([`super::evidence`]): logged at error level
//! and counted; at the policy's quorum publication stops ([`super::halt`]) unless
//! `--witness-halt-override` is set.
//!
//! The remembered sizes are only an optimisation: they live in memory, and a wrong value costs one
//! `409` round trip.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use futures::future::BoxFuture;
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use rekor_storage::checkpoint::{append_cosignatures, Checkpoint, CheckpointError};
use rekor_storage::merkle::Hash;
use rekor_storage::note::{Note, NoteError, NoteSignature};
use rekor_storage::proof::{build_consistency_proof, tiles_for_consistency, TileSet};
use rekor_storage::tiles::TileId;
use tracing::{debug, error, info, warn};

use super::evidence::{self, Claim};
use super::halt::PublicationHalt;
use super::policy::{PolicyWitness, WitnessPolicy};
use super::response::{select_cosignature, MAX_RESPONSE_BYTES};
use crate::partials::LocalTiles;

/// tlog-witness: the media type of a `409` body.
pub const TLOG_SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Requests per witness per checkpoint: the first, plus retries after `409` resyncs.
const MAX_ATTEMPTS: usize = 3;

/// Confirms that this node leads and returns how many leaves the log has committed (every
/// committed entry applied here); `None` when leadership cannot be confirmed. Asked only when a
/// witness claims a larger tree than the checkpoint sent.
pub type CommittedLeaves = Arc<dyn Fn() -> BoxFuture<'static, Option<u64>> + Send + Sync>;

/// How witnessing behaves.
#[derive(Debug, Clone, Copy)]
pub struct WitnessSettings {
    /// Longest one witness may take for one checkpoint (all its attempts together).
    pub timeout: Duration,
    /// Refuse to publish a checkpoint whose quorum is not met (default: publish anyway).
    pub require_quorum: bool,
    /// Rollback or fork evidence at the quorum is logged and counted but does not halt.
    pub halt_override: bool,
}

/// Why a checkpoint must not be published as is.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// `--require-witness-quorum` and the verified cosignatures do not satisfy the policy.
    #[error("witness quorum not met for size {size}: {cosigned} of {asked} witnesses cosigned")]
    QuorumNotMet {
        size: u64,
        cosigned: usize,
        asked: usize,
    },
    /// Witnesses at the quorum gave evidence of a rollback or fork; nothing is published until an
    /// operator acts.
    #[error("publication halted: {reason}")]
    Halted { reason: String },
    /// The signed checkpoint we were given does not parse (a bug in the caller).
    #[error("the checkpoint to witness is malformed: {0}")]
    Note(#[from] NoteError),
    /// Same, at the checkpoint layer.
    #[error("the checkpoint to witness is malformed: {0}")]
    Checkpoint(#[from] CheckpointError),
}

/// Why one witness did not cosign one checkpoint.
#[derive(Debug, thiserror::Error)]
enum AddCheckpointError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("witness answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("409 body {0:?} is not a tree size")]
    BadConflictBody(String),
    #[error("witness has cosigned size {witness}, larger than this checkpoint's {ours}")]
    WitnessAhead { witness: u64, ours: u64 },
    #[error("witness holds a tree this checkpoint contradicts (422: {body})")]
    Inconsistent { body: String },
    #[error("still out of sync after {MAX_ATTEMPTS} attempts")]
    KeepsConflicting,
    #[error("the answer has no cosignature that verifies with the witness key")]
    NoValidCosignature,
    #[error("the answer is longer than {MAX_RESPONSE_BYTES} bytes")]
    ResponseTooLarge,
    #[error("building the consistency proof from {old}: {reason}")]
    Proof { old: u64, reason: String },
}

impl AddCheckpointError {
    /// The metric label.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Http(_) => "unreachable",
            Self::Refused { .. } => "refused",
            Self::BadConflictBody(_) | Self::ResponseTooLarge => "bad_response",
            Self::WitnessAhead { .. } | Self::KeepsConflicting => "out_of_sync",
            Self::Inconsistent { .. } => "inconsistent",
            Self::NoValidCosignature => "bad_cosignature",
            Self::Proof { .. } => "proof_error",
        }
    }

    /// What this failure claims about our log, if anything.
    fn claim(&self) -> Option<Claim> {
        match self {
            Self::WitnessAhead { witness, .. } => Some(Claim::LargerTree { size: *witness }),
            Self::Inconsistent { .. } => Some(Claim::Inconsistent),
            _ => None,
        }
    }
}

/// Witnessing metrics (registered on the node's registry).
#[derive(Clone)]
struct WitnessMetrics {
    requests: IntCounterVec,
    cosigned_size: IntGaugeVec,
    quorum_missed: IntCounter,
    lines_dropped: IntCounterVec,
    rollback_evidence: IntCounterVec,
}

impl WitnessMetrics {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "rekor_node_witness_requests_total",
                    "add-checkpoint exchanges by witness (policy name) and outcome \
                     (cosigned, conflict, timeout, unreachable, refused, bad_response, \
                     out_of_sync, inconsistent, bad_cosignature, proof_error)",
                ),
                &["witness", "outcome"],
            )?,
            cosigned_size: IntGaugeVec::new(
                Opts::new(
                    "rekor_node_witness_cosigned_size",
                    "Largest tree size each witness cosigned for this node",
                ),
                &["witness"],
            )?,
            quorum_missed: IntCounter::new(
                "rekor_node_witness_quorum_missed_total",
                "Checkpoints whose verified cosignatures did not meet the witness policy's quorum",
            )?,
            lines_dropped: IntCounterVec::new(
                Opts::new(
                    "rekor_witness_lines_dropped_total",
                    "Lines of witness answers not added to a checkpoint: copies, other keys, \
                     signatures that do not verify, junk, lines past the bound",
                ),
                &["witness"],
            )?,
            rollback_evidence: IntCounterVec::new(
                Opts::new(
                    "rekor_witness_rollback_evidence_total",
                    "Answers by which a witness showed a larger tree of this origin than the log \
                     committed (larger_tree) or a tree ours contradicts (inconsistent)",
                ),
                &["witness", "kind"],
            )?,
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.cosigned_size.clone()))?;
        registry.register(Box::new(metrics.quorum_missed.clone()))?;
        registry.register(Box::new(metrics.lines_dropped.clone()))?;
        registry.register(Box::new(metrics.rollback_evidence.clone()))?;
        Ok(metrics)
    }
}

/// The witnessing step of publication. Shared by the publisher; calls are expected one at a time
/// (the publisher is an actor), but concurrent calls are safe.
pub struct Witnessing {
    policy: WitnessPolicy,
    tiles: LocalTiles,
    http: reqwest::Client,
    settings: WitnessSettings,
    /// Per witness (same order as the policy), the size it last cosigned or told us it has.
    cosigned: Mutex<Vec<u64>>,
    metrics: WitnessMetrics,
    halt: PublicationHalt,
    committed: CommittedLeaves,
}

impl Witnessing {
    /// Builds the client; consistency proofs are read from `tiles` (this node's tiles),
    /// `committed` judges larger-tree claims, and `halt` is set when evidence reaches the quorum.
    pub fn new(
        policy: WitnessPolicy,
        tiles: LocalTiles,
        settings: WitnessSettings,
        registry: &Registry,
        halt: PublicationHalt,
        committed: CommittedLeaves,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout.min(Duration::from_secs(2)))
            .timeout(settings.timeout)
            .build()?;
        let metrics = WitnessMetrics::register(registry)?;
        for witness in policy.witnesses() {
            metrics
                .cosigned_size
                .with_label_values(&[&witness.name])
                .set(0);
            metrics.lines_dropped.with_label_values(&[&witness.name]);
            info!(witness = %witness.name, vkey = %witness.vkey, url = %witness.url, "witness configured");
        }
        Ok(Self {
            cosigned: Mutex::new(vec![0; policy.witnesses().len()]),
            policy,
            tiles,
            http,
            settings,
            metrics,
            halt,
            committed,
        })
    }

    /// Asks every witness to cosign `signed` (a checkpoint signed by the log) and returns the
    /// checkpoint with the verified cosignature lines appended. Errs when publication is halted
    /// (now or before), or when the quorum is required and not met.
    pub async fn witness(&self, signed: &str) -> Result<String, WitnessError> {
        if let Some(reason) = self.halt.reason() {
            return Err(WitnessError::Halted { reason });
        }
        let note = Note::parse(signed.as_bytes())?;
        let checkpoint = Checkpoint::parse_body(&note.text)?;
        let (checkpoint_ref, note_text) = (&checkpoint, note.text.as_str());
        let asks = self
            .policy
            .witnesses()
            .iter()
            .enumerate()
            .map(|(index, witness)| async move {
                let result = tokio::time::timeout(
                    self.settings.timeout,
                    self.add_checkpoint(index, witness, checkpoint_ref, note_text, signed),
                )
                .await
                .unwrap_or(Err(AddCheckpointError::Timeout(self.settings.timeout)));
                (index, witness, result)
            });
        let mut lines = Vec::new();
        let mut keys = HashSet::new();
        let mut cosigned = BTreeSet::new();
        let mut claims = Vec::new();
        for (index, witness, result) in futures::future::join_all(asks).await {
            match result {
                Ok(line) => {
                    self.metrics
                        .requests
                        .with_label_values(&[&witness.name, "cosigned"])
                        .inc();
                    cosigned.insert(index);
                    // Two policy witnesses with the same key: their lines count once.
                    if keys.insert(line_key(&line)) {
                        lines.push(line);
                    } else {
                        self.metrics
                            .lines_dropped
                            .with_label_values(&[&witness.name])
                            .inc();
                    }
                }
                Err(error) => {
                    self.metrics
                        .requests
                        .with_label_values(&[&witness.name, error.outcome()])
                        .inc();
                    if let Some(claim) = error.claim() {
                        claims.push((index, witness, claim));
                    }
                    debug!(witness = %witness.name, size = checkpoint.size, %error, "witness did not cosign");
                }
            }
        }
        if !claims.is_empty() {
            self.judge_claims(&checkpoint, &claims).await?;
        }
        if !self.policy.is_satisfied(&cosigned) {
            self.metrics.quorum_missed.inc();
            let asked = self.policy.witnesses().len();
            if self.settings.require_quorum {
                return Err(WitnessError::QuorumNotMet {
                    size: checkpoint.size,
                    cosigned: cosigned.len(),
                    asked,
                });
            }
            warn!(
                size = checkpoint.size,
                cosigned = cosigned.len(),
                asked,
                "witness quorum not met; publishing anyway (fail-open)"
            );
        }
        if lines.is_empty() {
            return Ok(signed.to_owned());
        }
        let appended = append_cosignatures(signed.as_bytes(), &lines)
            .map_err(WitnessError::from)
            // Appending signature lines to a UTF-8 note keeps it UTF-8.
            .and_then(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| WitnessError::Note(NoteError::Malformed("not UTF-8")))
            });
        match appended {
            Ok(text) => Ok(text),
            // Verified lines always append (the policy bounds their number); should one not,
            // the witnesses must not stop a fail-open log.
            Err(error) if !self.settings.require_quorum => {
                warn!(size = checkpoint.size, %error, "cosignatures not appended; publishing without");
                Ok(signed.to_owned())
            }
            Err(error) => Err(error),
        }
    }

    /// Logs and counts the claims that are evidence; halts publication (or, with the override,
    /// says it would have) when the witnesses giving evidence reach the quorum.
    async fn judge_claims(
        &self,
        checkpoint: &Checkpoint,
        claims: &[(usize, &PolicyWitness, Claim)],
    ) -> Result<(), WitnessError> {
        let larger_tree = claims
            .iter()
            .any(|(_, _, claim)| matches!(claim, Claim::LargerTree { .. }));
        // Unknown (no evidence) if leadership cannot be confirmed in time.
        let committed = if larger_tree {
            tokio::time::timeout(self.settings.timeout, (self.committed)())
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        let mut witnesses = BTreeSet::new();
        let mut described = Vec::new();
        for (index, witness, claim) in claims {
            if !evidence::is_evidence(*claim, committed) {
                debug!(witness = %witness.name, ?claim, ?committed, ours = checkpoint.size,
                    "witness is ahead of this checkpoint, within the committed log");
                continue;
            }
            self.metrics
                .rollback_evidence
                .with_label_values(&[&witness.name, claim.kind()])
                .inc();
            match claim {
                Claim::LargerTree { size } => {
                    error!(
                        witness = %witness.name,
                        witness_size = size,
                        our_size = checkpoint.size,
                        committed = ?committed,
                        origin = %checkpoint.origin,
                        "ROLLBACK EVIDENCE: witness has cosigned a larger tree of this origin than this log committed"
                    );
                    described.push(format!("{} has cosigned size {size}", witness.name));
                }
                Claim::Inconsistent => {
                    error!(
                        witness = %witness.name,
                        our_size = checkpoint.size,
                        origin = %checkpoint.origin,
                        "FORK EVIDENCE: witness holds a tree of this origin that this log contradicts"
                    );
                    described.push(format!(
                        "{} holds a tree inconsistent with size {}",
                        witness.name, checkpoint.size
                    ));
                }
            }
            witnesses.insert(*index);
        }
        if !evidence::reaches_quorum(&self.policy, &witnesses) {
            return Ok(());
        }
        let reason = format!(
            "witnesses at the policy's quorum give evidence of a rollback or fork of {} \
             (checkpoint size {}, committed leaves {}): {}",
            checkpoint.origin,
            checkpoint.size,
            committed.map_or_else(|| "unknown".to_owned(), |c| c.to_string()),
            described.join("; ")
        );
        if self.settings.halt_override {
            error!(%reason, "publishing anyway: --witness-halt-override is set");
            return Ok(());
        }
        error!(%reason, "PUBLICATION HALTED until an operator acts (docs/operations.md, Witnessing)");
        self.halt.halt(reason.clone());
        Err(WitnessError::Halted { reason })
    }

    /// The size we believe witness `index` is at.
    fn remembered(&self, index: usize) -> u64 {
        let sizes = self.cosigned.lock().unwrap_or_else(|p| p.into_inner());
        sizes.get(index).copied().unwrap_or(0)
    }

    fn remember(&self, index: usize, witness: &PolicyWitness, size: u64) {
        let mut sizes = self.cosigned.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = sizes.get_mut(index) {
            *slot = size;
        }
        self.metrics
            .cosigned_size
            .with_label_values(&[&witness.name])
            .set(i64::try_from(size).unwrap_or(i64::MAX));
    }

    /// One witness, one checkpoint: up to [`MAX_ATTEMPTS`] requests, resyncing on `409`.
    /// Returns its verified cosignature line (ending in `\n`).
    async fn add_checkpoint(
        &self,
        index: usize,
        witness: &PolicyWitness,
        checkpoint: &Checkpoint,
        note_text: &str,
        signed: &str,
    ) -> Result<String, AddCheckpointError> {
        let url = format!("{}/add-checkpoint", witness.url.trim_end_matches('/'));
        let mut old = self.remembered(index);
        if old > checkpoint.size {
            // We may have learnt that size from a witness that has since lost its state, or be a
            // leader whose integration still lags: ask afresh, the 409 tells us where it is.
            old = 0;
        }
        for _ in 0..MAX_ATTEMPTS {
            if old > checkpoint.size {
                return Err(AddCheckpointError::WitnessAhead {
                    witness: old,
                    ours: checkpoint.size,
                });
            }
            let proof = self.consistency_proof(old, checkpoint.size).await?;
            let body = add_checkpoint_body(old, &proof, signed);
            let response = self.http.post(&url).body(body).send().await?;
            let status = response.status();
            let is_size = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.starts_with(TLOG_SIZE_CONTENT_TYPE));
            let text = read_limited(response).await?;
            match status.as_u16() {
                200 => {
                    let selected = select_cosignature(&witness.verifier, note_text, &text);
                    if selected.dropped > 0 {
                        self.metrics
                            .lines_dropped
                            .with_label_values(&[&witness.name])
                            .inc_by(selected.dropped as u64);
                        debug!(witness = %witness.name, dropped = selected.dropped, "witness answer lines dropped");
                    }
                    let line = selected
                        .line
                        .ok_or(AddCheckpointError::NoValidCosignature)?;
                    self.remember(index, witness, checkpoint.size);
                    return Ok(line);
                }
                422 => {
                    return Err(AddCheckpointError::Inconsistent {
                        body: truncate(&text),
                    })
                }
                // A 409 without the tlog-witness media type is not a resync (e.g. a proxy's).
                409 if is_size => {
                    let size = text
                        .trim_end_matches('\n')
                        .parse::<u64>()
                        .map_err(|_| AddCheckpointError::BadConflictBody(truncate(&text)))?;
                    self.metrics
                        .requests
                        .with_label_values(&[&witness.name, "conflict"])
                        .inc();
                    debug!(witness = %witness.name, sent = old, witness_size = size, "witness resync");
                    self.remember(index, witness, size);
                    old = size;
                }
                status => {
                    return Err(AddCheckpointError::Refused {
                        status,
                        body: truncate(&text),
                    })
                }
            }
        }
        Err(AddCheckpointError::KeepsConflicting)
    }

    /// The consistency proof from `old` to `size`, from this node's tiles. None is needed (or
    /// meaningful) from the empty tree or to the same size.
    async fn consistency_proof(
        &self,
        old: u64,
        size: u64,
    ) -> Result<Vec<Hash>, AddCheckpointError> {
        if old == 0 || old == size {
            return Ok(Vec::new());
        }
        let proof_error = |reason: String| AddCheckpointError::Proof { old, reason };
        let needed = tiles_for_consistency(old, size).map_err(|e| proof_error(e.to_string()))?;
        let tiles = &self.tiles;
        let fetched =
            futures::future::try_join_all(needed.into_iter().map(|id| read_tile(tiles, id)))
                .await
                .map_err(proof_error)?;
        let tiles = TileSet::from_fetched(fetched).map_err(|e| proof_error(e.to_string()))?;
        build_consistency_proof(old, size, &tiles).map_err(|e| proof_error(e.to_string()))
    }
}

/// Reads a tile as of some size up to the integrated one (a partial tile is cut out of the one at
/// the integrated size, tlog-tiles.md §11.5).
async fn read_tile(tiles: &LocalTiles, id: TileId) -> Result<(TileId, Bytes), String> {
    match tiles.tile(id).await.map_err(|e| e.to_string())? {
        Some(bytes) => Ok((id, bytes)),
        None => Err(format!("tile {} is missing", id.path())),
    }
}

/// The `add-checkpoint` request body (tlog-tiles.md §10).
pub fn add_checkpoint_body(old: u64, proof: &[Hash], signed_checkpoint: &str) -> String {
    let mut body = format!("old {old}\n");
    for hash in proof {
        body.push_str(&B64.encode(hash));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(signed_checkpoint);
    body
}

/// The (key name, key ID) of a cosignature line; lines here have been parsed and verified.
fn line_key(line: &str) -> Option<(String, u32)> {
    NoteSignature::parse_line(line.trim_end_matches('\n'))
        .ok()
        .map(|signature| (signature.name, signature.key_id))
}

async fn read_limited(mut response: reqwest::Response) -> Result<String, AddCheckpointError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(AddCheckpointError::ResponseTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Enough of a witness's error body for a log line.
fn truncate(text: &str) -> String {
    text.trim_end().chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{web, App, HttpResponse, HttpServer};
    use rekor_storage::cosignature::{CosignatureSigner, CosignatureVerifier};
    use rekor_storage::integrate::TreeBuilder;
    use rekor_storage::note::Ed25519NoteSigner;
    use rekor_storage::tile_store::TileStore;

    const ORIGIN: &str = "log.example";

    /// A minimal in-process witness: it holds a size and root, answers 409 on a mismatch, checks
    /// the consistency proof and cosigns. It records each request's `old` and proof length.
    struct FakeWitness {
        size: u64,
        root: Hash,
        signer: CosignatureSigner,
        requests: Vec<(u64, usize)>,
        /// How many times its cosignature line is repeated in a `200` (more than one: junk
        /// lines follow).
        copies: usize,
    }

    async fn add_checkpoint(state: web::Data<Mutex<FakeWitness>>, body: String) -> HttpResponse {
        let mut witness = state.lock().unwrap();
        let (head, signed) = body.split_once("\n\n").unwrap();
        let mut head_lines = head.lines();
        let old: u64 = head_lines
            .next()
            .unwrap()
            .strip_prefix("old ")
            .unwrap()
            .parse()
            .unwrap();
        let proof: Vec<Hash> = head_lines
            .map(|line| B64.decode(line).unwrap().try_into().unwrap())
            .collect();
        witness.requests.push((old, proof.len()));
        if old != witness.size {
            return HttpResponse::Conflict()
                .content_type(TLOG_SIZE_CONTENT_TYPE)
                .body(format!("{}\n", witness.size));
        }
        let note = Note::parse(signed.as_bytes()).unwrap();
        let checkpoint = Checkpoint::parse_body(&note.text).unwrap();
        if old != 0 {
            let consistent = rekor_storage::merkle::verify_consistency(
                old,
                checkpoint.size,
                &proof,
                &witness.root,
                &checkpoint.root,
            );
            let same_size_other_root = old == checkpoint.size && witness.root != checkpoint.root;
            if same_size_other_root || (old != checkpoint.size && consistent.is_err()) {
                return HttpResponse::UnprocessableEntity().finish();
            }
        }
        witness.size = checkpoint.size;
        witness.root = checkpoint.root;
        let line = witness
            .signer
            .cosign(&note.text, 1_700_000_000)
            .unwrap()
            .to_line();
        let mut body = line.repeat(witness.copies);
        if witness.copies > 1 {
            body.push_str("junk\n");
            body.push_str(&witness_key(42).cosign(&note.text, 1).unwrap().to_line());
        }
        HttpResponse::Ok().body(body)
    }

    /// Starts the fake witness on a loopback port; returns its URL.
    fn start_fake(state: web::Data<Mutex<FakeWitness>>) -> String {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/add-checkpoint", web::post().to(add_checkpoint))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        actix_web::rt::spawn(server.run());
        format!("http://127.0.0.1:{port}")
    }

    /// This node's tiles of a 300-leaf tree integrated in two steps (5, then 295), as the
    /// integrator of a per-node store leaves them (full objects in the store, the partial ones at
    /// 300 held in memory), and the roots at both sizes.
    async fn store_with_tree() -> (LocalTiles, Hash, Hash) {
        let store = Arc::new(TileStore::in_memory());
        let leaves: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut builder = TreeBuilder::new();
        let mut roots = Vec::new();
        let mut edge = None;
        for batch in [&leaves[..5], &leaves[5..]] {
            let (next, step_edge) = builder
                .stage(batch)
                .unwrap()
                .write_full(&store)
                .await
                .unwrap();
            builder = next;
            roots.push(builder.root());
            edge = Some(Arc::new(step_edge));
        }
        let served = crate::served::Served {
            integrated_size: 300,
            integrated_root: roots[1],
            right_edge: edge,
            checkpoint: None,
        };
        let (_, served) = tokio::sync::watch::channel(served);
        (LocalTiles::new(store, served), roots[0], roots[1])
    }

    fn witness_key(seed: u8) -> CosignatureSigner {
        CosignatureSigner::new(
            "witness.example",
            ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
        )
        .unwrap()
    }

    fn settings(require_quorum: bool) -> WitnessSettings {
        WitnessSettings {
            timeout: Duration::from_secs(5),
            require_quorum,
            halt_override: false,
        }
    }

    /// A client for `policy`, with a log that has committed `committed` leaves; its halt.
    fn client_for(
        policy: &str,
        store: LocalTiles,
        settings: WitnessSettings,
        committed: u64,
    ) -> (Witnessing, PublicationHalt) {
        let registry = Registry::new();
        let halt = PublicationHalt::register(&registry).unwrap();
        let committed: CommittedLeaves = Arc::new(move || Box::pin(async move { Some(committed) }));
        let policy = WitnessPolicy::parse(policy).unwrap();
        let client =
            Witnessing::new(policy, store, settings, &registry, halt.clone(), committed).unwrap();
        (client, halt)
    }

    /// One witness, the quorum; the log has committed far more than any checkpoint here (so a
    /// witness ahead of a checkpoint is a lagging leader's case, not evidence).
    fn witnessing(store: LocalTiles, url: &str, vkey: &str, require: bool) -> Witnessing {
        let policy = format!("witness w1 {vkey} {url}\nquorum w1\n");
        client_for(&policy, store, settings(require), u64::MAX).0
    }

    fn fake(size: u64, root: Hash, signer: CosignatureSigner) -> web::Data<Mutex<FakeWitness>> {
        web::Data::new(Mutex::new(FakeWitness {
            size,
            root,
            signer,
            requests: Vec::new(),
            copies: 1,
        }))
    }

    fn signatures(text: &str) -> Vec<NoteSignature> {
        Note::parse(text.as_bytes()).unwrap().signatures
    }

    fn signed_checkpoint(size: u64, root: Hash) -> String {
        let signer =
            Ed25519NoteSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[1; 32]))
                .unwrap();
        String::from_utf8(Checkpoint::new(ORIGIN, size, root).sign(&signer).unwrap()).unwrap()
    }

    #[actix_web::test]
    async fn a_409_resyncs_to_the_witness_size_with_a_proof_from_there() {
        let (store, root5, root300) = store_with_tree().await;
        let key = witness_key(9);
        let vkey = key.verifier_key();
        let state = web::Data::new(Mutex::new(FakeWitness {
            size: 5,
            root: root5,
            signer: key,
            requests: Vec::new(),
            copies: 1,
        }));
        let url = start_fake(state.clone());
        let client = witnessing(store, &url, &vkey, true);

        let signed = signed_checkpoint(300, root300);
        let cosigned = client.witness(&signed).await.unwrap();

        // We remembered 0, the witness said 5, and we retried from 5 with a non-empty proof.
        let expected_proof_len = rekor_storage::merkle::consistency_proof_len(5, 300);
        assert!(expected_proof_len > 0);
        assert_eq!(
            state.lock().unwrap().requests,
            vec![(0, 0), (5, expected_proof_len)]
        );
        assert_eq!(state.lock().unwrap().size, 300);
        assert_eq!(client.remembered(0), 300);

        let note = Note::parse(cosigned.as_bytes()).unwrap();
        assert_eq!(note.signatures.len(), 2);
        assert!(cosigned.starts_with(&signed));
        let verifier = CosignatureVerifier::from_vkey(&vkey).unwrap();
        verifier
            .verify_signature(&note.text, &note.signatures[1])
            .unwrap();

        // Re-witnessing the same size: one request from 300, no proof.
        client.witness(&signed).await.unwrap();
        assert_eq!(state.lock().unwrap().requests.last(), Some(&(300, 0)));
        assert_eq!(state.lock().unwrap().requests.len(), 3);
    }

    #[actix_web::test]
    async fn a_witness_behind_our_memory_is_resynced_from_its_own_size() {
        // E.g. a witness that lost its state: we remember 300, it says 0.
        let (store, _, root300) = store_with_tree().await;
        let key = witness_key(9);
        let vkey = key.verifier_key();
        let state = web::Data::new(Mutex::new(FakeWitness {
            size: 0,
            root: rekor_storage::merkle::EMPTY_ROOT,
            signer: key,
            requests: Vec::new(),
            copies: 1,
        }));
        let url = start_fake(state.clone());
        let client = witnessing(store, &url, &vkey, true);
        client.remember(0, &client.policy.witnesses()[0].clone(), 300);
        client
            .witness(&signed_checkpoint(300, root300))
            .await
            .unwrap();
        assert_eq!(state.lock().unwrap().requests, vec![(300, 0), (0, 0)]);
    }

    #[actix_web::test]
    async fn a_remembered_size_beyond_the_checkpoint_is_asked_afresh() {
        let (store, root5, root300) = store_with_tree().await;
        let key = witness_key(9);
        let vkey = key.verifier_key();
        let state = web::Data::new(Mutex::new(FakeWitness {
            size: 5,
            root: root5,
            signer: key,
            requests: Vec::new(),
            copies: 1,
        }));
        let url = start_fake(state.clone());
        let client = witnessing(store, &url, &vkey, true);
        client.remember(0, &client.policy.witnesses()[0].clone(), 1000);
        client
            .witness(&signed_checkpoint(300, root300))
            .await
            .unwrap();
        let proof_len = rekor_storage::merkle::consistency_proof_len(5, 300);
        assert_eq!(state.lock().unwrap().requests, vec![(0, 0), (5, proof_len)]);
    }

    #[actix_web::test]
    async fn a_witness_ahead_of_the_checkpoint_is_not_counted() {
        let (store, _, root300) = store_with_tree().await;
        let key = witness_key(9);
        let vkey = key.verifier_key();
        let state = web::Data::new(Mutex::new(FakeWitness {
            size: 400,
            root: [7; 32],
            signer: key,
            requests: Vec::new(),
            copies: 1,
        }));
        let url = start_fake(state.clone());
        let client = witnessing(store, &url, &vkey, true);
        assert!(matches!(
            client.witness(&signed_checkpoint(300, root300)).await,
            Err(WitnessError::QuorumNotMet { .. })
        ));
        // One request, then no old > size request that the witness would have to refuse.
        assert_eq!(state.lock().unwrap().requests, vec![(0, 0)]);
        assert_eq!(client.remembered(0), 400);
    }

    #[actix_web::test]
    async fn cosignatures_by_another_key_do_not_count() {
        let (store, _, root300) = store_with_tree().await;
        let state = web::Data::new(Mutex::new(FakeWitness {
            size: 0,
            root: rekor_storage::merkle::EMPTY_ROOT,
            signer: witness_key(3),
            requests: Vec::new(),
            copies: 1,
        }));
        let url = start_fake(state.clone());
        let expected_vkey = witness_key(4).verifier_key();
        let signed = signed_checkpoint(300, root300);

        let required = witnessing(store.clone(), &url, &expected_vkey, true);
        assert!(matches!(
            required.witness(&signed).await,
            Err(WitnessError::QuorumNotMet {
                size: 300,
                cosigned: 0,
                asked: 1
            })
        ));
        let fail_open = witnessing(store, &url, &expected_vkey, false);
        assert_eq!(fail_open.witness(&signed).await.unwrap(), signed);
    }

    #[actix_web::test]
    async fn an_unreachable_witness_fails_the_required_quorum_only() {
        let (store, _, root300) = store_with_tree().await;
        // A port that nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let vkey = witness_key(9).verifier_key();
        let signed = signed_checkpoint(300, root300);

        let required = witnessing(store.clone(), &url, &vkey, true);
        assert!(matches!(
            required.witness(&signed).await,
            Err(WitnessError::QuorumNotMet { .. })
        ));
        let fail_open = witnessing(store, &url, &vkey, false);
        assert_eq!(fail_open.witness(&signed).await.unwrap(), signed);
    }

    #[actix_web::test]
    async fn a_witness_repeating_its_line_adds_one_line_and_the_rest_are_counted() {
        let (store, _, root300) = store_with_tree().await;
        let key = witness_key(9);
        let vkey = key.verifier_key();
        let state = fake(0, rekor_storage::merkle::EMPTY_ROOT, key);
        state.lock().unwrap().copies = 200;
        let url = start_fake(state.clone());
        let signed = signed_checkpoint(300, root300);
        for require in [false, true] {
            state.lock().unwrap().size = 0;
            let client = witnessing(store.clone(), &url, &vkey, require);
            let cosigned = client.witness(&signed).await.unwrap();
            let signatures = signatures(&cosigned);
            assert_eq!(signatures.len(), 2, "the log's line and one cosignature");
            CosignatureVerifier::from_vkey(&vkey)
                .unwrap()
                .verify_signature(
                    &Note::parse(cosigned.as_bytes()).unwrap().text,
                    &signatures[1],
                )
                .unwrap();
            // 199 copies, a junk line and another key's line.
            assert_eq!(
                client
                    .metrics
                    .lines_dropped
                    .with_label_values(&["w1"])
                    .get(),
                201
            );
        }
    }

    #[actix_web::test]
    async fn two_policy_witnesses_with_one_key_add_one_line() {
        let (store, _, root300) = store_with_tree().await;
        let key = witness_key(9);
        let vkey = key.verifier_key();
        let first = start_fake(fake(0, rekor_storage::merkle::EMPTY_ROOT, witness_key(9)));
        let second = start_fake(fake(0, rekor_storage::merkle::EMPTY_ROOT, key));
        let policy = format!(
            "witness a {vkey} {first}\nwitness b {vkey} {second}\ngroup g all a b\nquorum g\n"
        );
        let (client, _) = client_for(&policy, store, settings(true), u64::MAX);
        let cosigned = client
            .witness(&signed_checkpoint(300, root300))
            .await
            .unwrap();
        assert_eq!(signatures(&cosigned).len(), 2);
        assert_eq!(
            client.metrics.lines_dropped.with_label_values(&["b"]).get(),
            1
        );
    }

    #[actix_web::test]
    async fn a_larger_tree_than_committed_at_the_quorum_halts_publication() {
        let (store, _, root300) = store_with_tree().await;
        let key = witness_key(9);
        let vkey = key.verifier_key();
        // The witness has cosigned 400 leaves; this log has committed 350.
        let state = fake(400, [7; 32], key);
        let url = start_fake(state.clone());
        let policy = format!("witness w1 {vkey} {url}\nquorum w1\n");
        let (client, halt) = client_for(&policy, store, settings(false), 350);
        let signed = signed_checkpoint(300, root300);

        let result = client.witness(&signed).await;
        assert!(
            matches!(&result, Err(WitnessError::Halted { reason }) if reason.contains("w1 has cosigned size 400")),
            "{result:?}"
        );
        assert!(halt.reason().is_some());
        assert_eq!(
            client
                .metrics
                .rollback_evidence
                .with_label_values(&["w1", "larger_tree"])
                .get(),
            1
        );
        // Halted: the next checkpoint is refused without asking anyone.
        let asked = state.lock().unwrap().requests.len();
        assert!(matches!(
            client.witness(&signed).await,
            Err(WitnessError::Halted { .. })
        ));
        assert_eq!(state.lock().unwrap().requests.len(), asked);
    }

    #[actix_web::test]
    async fn with_the_override_evidence_is_counted_and_publication_goes_on() {
        let (store, _, root300) = store_with_tree().await;
        let key = witness_key(9);
        let vkey = key.verifier_key();
        let url = start_fake(fake(400, [7; 32], key));
        let policy = format!("witness w1 {vkey} {url}\nquorum w1\n");
        let settings = WitnessSettings {
            halt_override: true,
            ..settings(false)
        };
        let (client, halt) = client_for(&policy, store, settings, 350);
        let signed = signed_checkpoint(300, root300);
        assert_eq!(client.witness(&signed).await.unwrap(), signed);
        assert_eq!(halt.reason(), None);
        assert_eq!(
            client
                .metrics
                .rollback_evidence
                .with_label_values(&["w1", "larger_tree"])
                .get(),
            1
        );
    }

    #[actix_web::test]
    async fn evidence_below_the_quorum_does_not_halt() {
        let (store, _, root300) = store_with_tree().await;
        let (honest, liar) = (witness_key(9), witness_key(10));
        let (honest_vkey, liar_vkey) = (honest.verifier_key(), liar.verifier_key());
        let honest_url = start_fake(fake(0, rekor_storage::merkle::EMPTY_ROOT, honest));
        let liar_url = start_fake(fake(1_000_000, [7; 32], liar));
        let policy = format!(
            "witness a {honest_vkey} {honest_url}\nwitness b {liar_vkey} {liar_url}\n\
             group g 2 a b\nquorum g\n"
        );
        let (client, halt) = client_for(&policy, store, settings(false), 300);
        let signed = signed_checkpoint(300, root300);
        // Fail-open: published with the honest witness's line.
        assert_eq!(signatures(&client.witness(&signed).await.unwrap()).len(), 2);
        assert_eq!(halt.reason(), None);
        assert_eq!(
            client
                .metrics
                .rollback_evidence
                .with_label_values(&["b", "larger_tree"])
                .get(),
            1
        );
    }

    #[actix_web::test]
    async fn a_witness_with_another_root_at_our_size_is_fork_evidence() {
        let (store, _, root300) = store_with_tree().await;
        let key = witness_key(9);
        let vkey = key.verifier_key();
        // Same size, another root: the fake answers 422.
        let url = start_fake(fake(300, [7; 32], key));
        let policy = format!("witness w1 {vkey} {url}\nquorum w1\n");
        let (client, halt) = client_for(&policy, store, settings(false), 300);
        let result = client.witness(&signed_checkpoint(300, root300)).await;
        assert!(
            matches!(result, Err(WitnessError::Halted { .. })),
            "{result:?}"
        );
        assert!(halt.reason().is_some());
        assert_eq!(
            client
                .metrics
                .rollback_evidence
                .with_label_values(&["w1", "inconsistent"])
                .get(),
            1
        );
    }

    #[test]
    fn request_body_layout() {
        let body = add_checkpoint_body(5, &[[0u8; 32], [1u8; 32]], "cp\n\n— k x\n");
        assert_eq!(
            body,
            format!(
                "old 5\n{}\n{}\n\ncp\n\n— k x\n",
                B64.encode([0u8; 32]),
                B64.encode([1u8; 32])
            )
        );
        assert_eq!(add_checkpoint_body(0, &[], "cp\n"), "old 0\n\ncp\n");
    }
}
