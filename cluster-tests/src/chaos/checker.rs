//! The invariant checker run after every chaos scenario (DESIGN.md invariants; the cluster
//! operations issue's checker).
//!
//! Input: what clients were told during the scenario ([`Observations`]: every 201 with its index
//! and canonical body, every 409 with its `x-log-index`, every signed checkpoint returned in a 201
//! or served by `GET /api/v2/checkpoint`) and the final cluster (its public read API). Checked:
//!
//! 1. all nodes converge on one checkpoint covering everything acknowledged, and serve
//!    byte-identical hash tiles and entry bundles at that size;
//! 2. the tiles are the tree of the bundles: every level-0 hash is the leaf hash of its entry and
//!    the root from the tiles is the final checkpoint's root;
//! 3. every acknowledged entry is at its acknowledged index with identical bytes; every 409 points
//!    at an entry for the same artifact digest;
//! 4. dedup held: no entry body appears twice;
//! 5. every checkpoint ever seen is signed by the log key, no size has two roots, and each is
//!    consistent with the final tree (a consistency proof built from the served tiles with
//!    `rekor_storage::proof`, verified with `merkle::verify_consistency`).
//!
//! Infrastructure failures (a node not answering) are `anyhow` errors; broken invariants are
//! [`Violation`]s, all collected rather than stopping at the first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rekor_storage::checkpoint::Checkpoint;
use rekor_storage::merkle::{self, Hash};
use rekor_storage::note::{self, NoteVerifier};
use rekor_storage::proof::{self, TileSet};
use rekor_storage::tiles;

use crate::{wait_until, Cluster, LogClient};

/// A 201: the entry the log promised to hold at `index`.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    pub index: u64,
    /// `canonicalizedBody` of the response, decoded.
    pub body: Vec<u8>,
    /// Id of the node that answered.
    pub node: u64,
}

/// A 409: the log says the artifact with `digest` is already at `index`.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub index: u64,
    /// The request's base64 artifact digest (it appears verbatim in the canonical body).
    pub digest: String,
    pub node: u64,
}

/// A signed checkpoint a client saw, and where.
#[derive(Debug, Clone)]
pub struct SeenCheckpoint {
    pub text: String,
    /// Id of the node that returned it.
    pub node: u64,
}

/// Everything clients were told during a scenario.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    pub acknowledged: Vec<Acknowledged>,
    pub conflicts: Vec<Conflict>,
    pub checkpoints: Vec<SeenCheckpoint>,
    /// Answers that were themselves wrong (a 201 whose proof does not verify, a 409 without
    /// `x-log-index`): reported as violations.
    pub bad_answers: Vec<String>,
}

impl Observations {
    /// Adds everything in `other`.
    pub fn extend(&mut self, other: Observations) {
        self.acknowledged.extend(other.acknowledged);
        self.conflicts.extend(other.conflicts);
        self.checkpoints.extend(other.checkpoints);
        self.bad_answers.extend(other.bad_answers);
    }
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("nodes did not converge on one checkpoint of size >= {needed}: {served:?}")]
    NotConverged {
        needed: u64,
        served: Vec<Option<String>>,
    },
    #[error("the final checkpoint does not verify: {0}")]
    FinalCheckpoint(String),
    #[error("{path} differs between node {first} and node {other}")]
    Diverged {
        path: String,
        first: u64,
        other: u64,
    },
    #[error("{path} is missing or malformed on node {node}: {reason}")]
    BadTile {
        path: String,
        node: u64,
        reason: String,
    },
    #[error("the root of the served tiles at size {size} is not the final checkpoint's root")]
    RootMismatch { size: u64 },
    #[error("tile hash of leaf {index} is not the leaf hash of its bundle entry")]
    LeafMismatch { index: u64 },
    #[error("acknowledged entry {index} (from node {node}) is {problem}")]
    LostEntry {
        index: u64,
        node: u64,
        problem: &'static str,
    },
    #[error("409 from node {node} points at index {index}, which does not hold digest {digest}")]
    BadConflict {
        index: u64,
        node: u64,
        digest: String,
    },
    #[error("entry body at index {second} duplicates index {first}")]
    Duplicate { first: u64, second: u64 },
    #[error("checkpoint from node {node} is not signed by the log key: {reason}")]
    Unsigned { node: u64, reason: String },
    #[error("size {size} has two roots")]
    Fork { size: u64 },
    #[error("checkpoint at size {size} is beyond the final size {final_size}")]
    BeyondFinal { size: u64, final_size: u64 },
    #[error("checkpoint at size {size} is not consistent with the final tree: {reason}")]
    Inconsistent { size: u64, reason: String },
    #[error("a client was given a wrong answer: {0}")]
    BadAnswer(String),
    #[error("{0}")]
    Scenario(String),
}

/// What the checker established.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Size of the converged tree.
    pub final_size: u64,
    /// Distinct checkpoints checked for signature and consistency.
    pub checkpoints_checked: usize,
    pub violations: Vec<Violation>,
}

/// The log's checkpoint verifier (origin and public key).
pub struct LogVerifier {
    origin: String,
    verifier: Box<dyn NoteVerifier>,
}

impl LogVerifier {
    /// From the PEM signing key the cluster was started with (`rekor-node keygen` output).
    pub fn from_key_file(origin: &str, key_file: &Path) -> Result<Self> {
        let pem = std::fs::read_to_string(key_file)
            .with_context(|| format!("reading {}", key_file.display()))?;
        let signer = note::signer_from_pem(origin, &pem)?;
        let verifier = note::verifier_from_spki_der(origin, &signer.public_key_der())?;
        Ok(Self {
            origin: origin.to_owned(),
            verifier,
        })
    }

    /// From the log's public key (DER SubjectPublicKeyInfo), for a log whose key is held by a
    /// remote signer.
    pub fn from_public_key_der(origin: &str, public_key: &[u8]) -> Result<Self> {
        Ok(Self {
            origin: origin.to_owned(),
            verifier: note::verifier_from_spki_der(origin, public_key)?,
        })
    }

    /// Opens a signed checkpoint, checking origin and log signature.
    pub fn open(&self, text: &str) -> Result<Checkpoint, String> {
        Checkpoint::open(text.as_bytes(), &self.origin, self.verifier.as_ref())
            .map(|(checkpoint, _)| checkpoint)
            .map_err(|error| error.to_string())
    }
}

/// One node's public API, named by its node id.
#[derive(Clone)]
pub struct NodeView {
    pub id: u64,
    pub client: LogClient,
}

impl NodeView {
    /// Views of every node of `cluster`.
    pub fn all(cluster: &Cluster) -> Vec<Self> {
        let all: Vec<usize> = (0..cluster.nodes.len()).collect();
        Self::of(cluster, &all)
    }

    /// Views of the nodes at `positions` in `cluster.nodes` (positions past the end are skipped).
    pub fn of(cluster: &Cluster, positions: &[usize]) -> Vec<Self> {
        positions
            .iter()
            .filter_map(|&position| cluster.nodes.get(position))
            .map(|node| Self {
                id: node.spec.id,
                client: LogClient::new(&node.base_url()),
            })
            .collect()
    }
}

/// Runs every check against the final cluster. Waits up to `convergence_timeout` for the nodes
/// to converge first.
pub async fn check_cluster(
    nodes: &[NodeView],
    verifier: &LogVerifier,
    observations: &Observations,
    convergence_timeout: Duration,
) -> Result<CheckReport> {
    let mut violations: Vec<Violation> = observations
        .bad_answers
        .iter()
        .cloned()
        .map(Violation::BadAnswer)
        .collect();
    let needed = observations
        .acknowledged
        .iter()
        .map(|entry| entry.index + 1)
        .chain(observations.conflicts.iter().map(|c| c.index + 1))
        .max()
        .unwrap_or(0);

    // 1. Convergence on one checkpoint.
    let converged = wait_until("identical checkpoints", convergence_timeout, || async {
        let served = served_checkpoints(nodes).await?;
        let first = served.first().cloned().flatten();
        let ok = first.as_deref().is_some_and(|text| {
            verifier
                .open(text)
                .is_ok_and(|checkpoint| checkpoint.size >= needed)
        }) && served.iter().all(|text| *text == first);
        Ok(ok.then_some(first))
    })
    .await;
    let final_text = match converged {
        Ok(Some(text)) => text,
        _ => {
            let served = served_checkpoints(nodes).await.unwrap_or_default();
            violations.push(Violation::NotConverged { needed, served });
            return Ok(CheckReport {
                final_size: 0,
                checkpoints_checked: 0,
                violations,
            });
        }
    };
    let final_checkpoint = match verifier.open(&final_text) {
        Ok(checkpoint) => checkpoint,
        Err(reason) => {
            violations.push(Violation::FinalCheckpoint(reason));
            return Ok(CheckReport {
                final_size: 0,
                checkpoints_checked: 0,
                violations,
            });
        }
    };
    let size = final_checkpoint.size;

    // 1b. Byte-identical tiles and bundles at the final size.
    let mut paths: Vec<String> = tiles::tiles_touched(0, size).map(|t| t.path()).collect();
    let bundle_ids: Vec<tiles::BundleId> = tiles::bundles_touched(0, size).collect();
    paths.extend(bundle_ids.iter().map(|b| b.path()));
    let mut reference: HashMap<String, Vec<u8>> = HashMap::new();
    for (position, node) in nodes.iter().enumerate() {
        for path in &paths {
            let bytes = match node.client.get(path).await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    violations.push(Violation::BadTile {
                        path: path.clone(),
                        node: node.id,
                        reason: "404".into(),
                    });
                    continue;
                }
                Err(error) => {
                    violations.push(Violation::BadTile {
                        path: path.clone(),
                        node: node.id,
                        reason: error.to_string(),
                    });
                    continue;
                }
            };
            if position == 0 {
                reference.insert(path.clone(), bytes);
            } else if reference.get(path) != Some(&bytes) {
                violations.push(Violation::Diverged {
                    path: path.clone(),
                    first: nodes[0].id,
                    other: node.id,
                });
            }
        }
    }

    // 2. The tiles are the tree of the bundles.
    let first_node = nodes.first().map(|n| n.id).unwrap_or(0);
    let mut tile_set = TileSet::new();
    for tile in tiles::tiles_touched(0, size) {
        if let Some(bytes) = reference.get(&tile.path()) {
            if let Err(error) = tile_set.insert(tile, bytes) {
                violations.push(Violation::BadTile {
                    path: tile.path(),
                    node: first_node,
                    reason: error.to_string(),
                });
            }
        }
    }
    let mut entries: Vec<Vec<u8>> = Vec::with_capacity(size as usize);
    for bundle in &bundle_ids {
        let Some(bytes) = reference.get(&bundle.path()) else {
            break;
        };
        match tiles::decode_bundle(bytes) {
            Ok(decoded) if decoded.len() == usize::from(bundle.width) => {
                entries.extend(decoded.into_iter().map(<[u8]>::to_vec));
            }
            Ok(decoded) => {
                violations.push(Violation::BadTile {
                    path: bundle.path(),
                    node: first_node,
                    reason: format!("{} entries, expected {}", decoded.len(), bundle.width),
                });
                break;
            }
            Err(error) => {
                violations.push(Violation::BadTile {
                    path: bundle.path(),
                    node: first_node,
                    reason: error.to_string(),
                });
                break;
            }
        }
    }
    for (index, entry) in entries.iter().enumerate() {
        let leaf = proof::NodeId {
            level: 0,
            index: index as u64,
        };
        if tile_set.node_hash(leaf, size).ok() != Some(merkle::leaf_hash(entry)) {
            violations.push(Violation::LeafMismatch {
                index: index as u64,
            });
        }
    }
    match proof::root_from_tiles(size, &tile_set) {
        Ok(root) if root == final_checkpoint.root => {}
        _ if size == 0 => {}
        _ => violations.push(Violation::RootMismatch { size }),
    }

    // 3. Acknowledged entries and 409s.
    for acknowledged in &observations.acknowledged {
        let problem = match entries.get(acknowledged.index as usize) {
            None => Some("missing"),
            Some(body) if *body != acknowledged.body => Some("different bytes"),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            violations.push(Violation::LostEntry {
                index: acknowledged.index,
                node: acknowledged.node,
                problem,
            });
        }
    }
    for conflict in &observations.conflicts {
        let holds = entries.get(conflict.index as usize).is_some_and(|body| {
            String::from_utf8_lossy(body).contains(&format!("\"{}\"", conflict.digest))
        });
        if !holds {
            violations.push(Violation::BadConflict {
                index: conflict.index,
                node: conflict.node,
                digest: conflict.digest.clone(),
            });
        }
    }

    // 4. Dedup.
    let mut first_at: HashMap<&[u8], u64> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        if let Some(first) = first_at.insert(entry.as_slice(), index as u64) {
            violations.push(Violation::Duplicate {
                first,
                second: index as u64,
            });
        }
    }

    // 5. Every checkpoint seen: signed, one root per size, consistent with the final tree.
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut distinct: HashSet<&str> = HashSet::new();
    distinct.insert(final_text.as_str());
    roots.insert(size, final_checkpoint.root);
    for seen in &observations.checkpoints {
        if !distinct.insert(seen.text.as_str()) {
            continue;
        }
        let checkpoint = match verifier.open(&seen.text) {
            Ok(checkpoint) => checkpoint,
            Err(reason) => {
                violations.push(Violation::Unsigned {
                    node: seen.node,
                    reason,
                });
                continue;
            }
        };
        match roots.get(&checkpoint.size) {
            Some(root) if *root != checkpoint.root => {
                violations.push(Violation::Fork {
                    size: checkpoint.size,
                });
                continue;
            }
            Some(_) => continue,
            None => {
                roots.insert(checkpoint.size, checkpoint.root);
            }
        }
        if checkpoint.size > size {
            violations.push(Violation::BeyondFinal {
                size: checkpoint.size,
                final_size: size,
            });
            continue;
        }
        if checkpoint.size == 0 {
            continue;
        }
        let verified = proof::build_consistency_proof(checkpoint.size, size, &tile_set)
            .map_err(|error| error.to_string())
            .and_then(|consistency| {
                merkle::verify_consistency(
                    checkpoint.size,
                    size,
                    &consistency,
                    &checkpoint.root,
                    &final_checkpoint.root,
                )
                .map_err(|error| error.to_string())
            });
        if let Err(reason) = verified {
            violations.push(Violation::Inconsistent {
                size: checkpoint.size,
                reason,
            });
        }
    }

    Ok(CheckReport {
        final_size: size,
        checkpoints_checked: distinct.len(),
        violations,
    })
}

async fn served_checkpoints(nodes: &[NodeView]) -> Result<Vec<Option<String>>> {
    let mut served = Vec::with_capacity(nodes.len());
    for node in nodes {
        served.push(node.client.checkpoint().await?);
    }
    Ok(served)
}
