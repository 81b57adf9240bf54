//! The log side of C2SP tlog-witness (tlog-tiles.md §10, "Log side").
//!
//! For each checkpoint the leader signs, [`Witnessing::witness`] POSTs to every witness of the
//! policy in parallel: `old <size>\n`, the consistency proof from that size (one base64 hash a
//! line), a blank line, then the signed checkpoint. A `409` carries the witness's own size
//! (`text/x.tlog.size`); we remember it and retry with a proof from there, which is also how a
//! fresh leader (who remembers nothing) bootstraps. Each returned line is verified as a
//! `cosignature/v1` signature by that witness's key; good lines are appended to the checkpoint.
//!
//! We wait for every witness (each bounded by the timeout) instead of stopping at the quorum, so
//! slower witnesses keep up with the log. When the quorum is not met we publish anyway (fail-open,
//! as upstream Rekor v2 does) unless `--require-witness-quorum` is set, in which case the
//! publisher skips this checkpoint and tries again next interval.
//!
//! The remembered sizes are only an optimisation: they live in memory, and a wrong value costs one
//! `409` round trip.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use rekor_storage::checkpoint::{append_cosignatures, Checkpoint, CheckpointError};
use rekor_storage::merkle::Hash;
use rekor_storage::note::{Note, NoteError};
use rekor_storage::proof::{build_consistency_proof, tiles_for_consistency, TileSet};
use rekor_storage::tile_store::TileStore;
use rekor_storage::tiles::{TileId, TILE_WIDTH};
use tracing::{debug, info, warn};

use super::policy::{PolicyWitness, WitnessPolicy};

/// tlog-witness: the media type of a `409` body.
pub const TLOG_SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Requests per witness per checkpoint: the first, plus retries after `409` resyncs.
const MAX_ATTEMPTS: usize = 3;

/// A witness's answer is a few signature lines; anything longer is not a witness.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How witnessing behaves.
#[derive(Debug, Clone, Copy)]
pub struct WitnessSettings {
    /// Longest one witness may take for one checkpoint (all its attempts together).
    pub timeout: Duration,
    /// Refuse to publish a checkpoint whose quorum is not met (default: publish anyway).
    pub require_quorum: bool,
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
            Self::NoValidCosignature => "bad_cosignature",
            Self::Proof { .. } => "proof_error",
        }
    }
}

/// Witnessing metrics (registered on the node's registry).
#[derive(Clone)]
struct WitnessMetrics {
    requests: IntCounterVec,
    cosigned_size: IntGaugeVec,
    quorum_missed: IntCounter,
}

impl WitnessMetrics {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "rekor_node_witness_requests_total",
                    "add-checkpoint exchanges by witness (policy name) and outcome \
                     (cosigned, conflict, timeout, unreachable, refused, bad_response, \
                     out_of_sync, bad_cosignature, proof_error)",
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
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.cosigned_size.clone()))?;
        registry.register(Box::new(metrics.quorum_missed.clone()))?;
        Ok(metrics)
    }
}

/// The witnessing step of publication. Shared by the publisher; calls are expected one at a time
/// (the publisher is an actor), but concurrent calls are safe.
pub struct Witnessing {
    policy: WitnessPolicy,
    store: Arc<TileStore>,
    http: reqwest::Client,
    settings: WitnessSettings,
    /// Per witness (same order as the policy), the size it last cosigned or told us it has.
    cosigned: Mutex<Vec<u64>>,
    metrics: WitnessMetrics,
}

impl Witnessing {
    /// Builds the client; consistency proofs are read from `store` (this node's tiles).
    pub fn new(
        policy: WitnessPolicy,
        store: Arc<TileStore>,
        settings: WitnessSettings,
        registry: &Registry,
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
            info!(witness = %witness.name, vkey = %witness.vkey, url = %witness.url, "witness configured");
        }
        Ok(Self {
            cosigned: Mutex::new(vec![0; policy.witnesses().len()]),
            policy,
            store,
            http,
            settings,
            metrics,
        })
    }

    /// Asks every witness to cosign `signed` (a checkpoint signed by the log) and returns the
    /// checkpoint with the verified cosignature lines appended. Errs only when the quorum is
    /// required and not met.
    pub async fn witness(&self, signed: &str) -> Result<String, WitnessError> {
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
        let mut cosigned = BTreeSet::new();
        for (index, witness, result) in futures::future::join_all(asks).await {
            match result {
                Ok(witness_lines) => {
                    self.metrics
                        .requests
                        .with_label_values(&[&witness.name, "cosigned"])
                        .inc();
                    cosigned.insert(index);
                    lines.extend(witness_lines);
                }
                Err(error) => {
                    self.metrics
                        .requests
                        .with_label_values(&[&witness.name, error.outcome()])
                        .inc();
                    debug!(witness = %witness.name, size = checkpoint.size, %error, "witness did not cosign");
                }
            }
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
        let with_cosignatures = append_cosignatures(signed.as_bytes(), &lines)?;
        // Appending signature lines to a UTF-8 note keeps it UTF-8.
        String::from_utf8(with_cosignatures)
            .map_err(|_| WitnessError::Note(NoteError::Malformed("not UTF-8")))
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
    /// Returns the verified cosignature lines (each ending in `\n`).
    async fn add_checkpoint(
        &self,
        index: usize,
        witness: &PolicyWitness,
        checkpoint: &Checkpoint,
        note_text: &str,
        signed: &str,
    ) -> Result<Vec<String>, AddCheckpointError> {
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
                    let lines = verified_lines(witness, note_text, &text);
                    if lines.is_empty() {
                        return Err(AddCheckpointError::NoValidCosignature);
                    }
                    self.remember(index, witness, checkpoint.size);
                    return Ok(lines);
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
        let store = self.store.as_ref();
        let fetched =
            futures::future::try_join_all(needed.into_iter().map(|id| read_tile(store, id)))
                .await
                .map_err(proof_error)?;
        let tiles = TileSet::from_fetched(fetched).map_err(|e| proof_error(e.to_string()))?;
        build_consistency_proof(old, size, &tiles).map_err(|e| proof_error(e.to_string()))
    }
}

/// Reads a tile as of some size; if that partial tile is gone, the full tile stands in (it holds
/// the same hashes as a prefix, tlog-tiles.md §11.5).
async fn read_tile(store: &TileStore, id: TileId) -> Result<(TileId, Bytes), String> {
    if let Some(bytes) = store.get_tile(id).await.map_err(|e| e.to_string())? {
        return Ok((id, bytes));
    }
    if !id.is_full() {
        let full = TileId {
            width: TILE_WIDTH,
            ..id
        };
        if let Some(bytes) = store.get_tile(full).await.map_err(|e| e.to_string())? {
            return Ok((full, bytes));
        }
    }
    Err(format!("tile {} is missing", id.path()))
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

/// The lines of a `200` answer that verify as `cosignature/v1` by this witness's key, each with
/// its newline. Lines for other keys (e.g. a `subtree/v1` signature) are dropped.
fn verified_lines(witness: &PolicyWitness, note_text: &str, body: &str) -> Vec<String> {
    body.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .filter(|line| witness.verifier.verify_line(note_text, line).is_ok())
        .map(str::to_owned)
        .collect()
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

    const ORIGIN: &str = "log.example";

    /// A minimal in-process witness: it holds a size and root, answers 409 on a mismatch, checks
    /// the consistency proof and cosigns. It records each request's `old` and proof length.
    struct FakeWitness {
        size: u64,
        root: Hash,
        signer: CosignatureSigner,
        requests: Vec<(u64, usize)>,
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
            if old != checkpoint.size && consistent.is_err() {
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
        HttpResponse::Ok().body(line)
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

    /// A tile store holding a 300-leaf tree integrated in two steps (5, then 295), as the
    /// integrator would leave it, and the roots at both sizes.
    async fn store_with_tree() -> (Arc<TileStore>, Hash, Hash) {
        let store = Arc::new(TileStore::in_memory());
        let leaves: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut builder = TreeBuilder::new();
        let mut roots = Vec::new();
        for batch in [&leaves[..5], &leaves[5..]] {
            let step = builder.append(batch).unwrap();
            for (id, bytes) in step.tiles {
                store.put_tile(id, bytes).await.unwrap();
            }
            roots.push(step.root);
        }
        (store, roots[0], roots[1])
    }

    fn witness_key(seed: u8) -> CosignatureSigner {
        CosignatureSigner::new(
            "witness.example",
            ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
        )
        .unwrap()
    }

    fn witnessing(store: Arc<TileStore>, url: &str, vkey: &str, require: bool) -> Witnessing {
        let policy =
            WitnessPolicy::parse(&format!("witness w1 {vkey} {url}\nquorum w1\n")).unwrap();
        let settings = WitnessSettings {
            timeout: Duration::from_secs(5),
            require_quorum: require,
        };
        Witnessing::new(policy, store, settings, &Registry::new()).unwrap()
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
