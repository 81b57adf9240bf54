//! The integrator actor (every node): turns committed leaves into durable entry bundles and hash
//! tiles in this node's tile store, then advances the node's integrated size and what it serves.
//!
//! Ownership: the actor owns the `TreeBuilder` (the tree's right edge) and the `watch::Sender` of
//! [`Served`]. One `Advance` runs at a time (`AtomicResponse`), so steps never interleave.
//!
//! Durability (DESIGN.md invariants 3 and 4): a step writes every *full* tile and bundle it
//! completes, each of which `TileStore` reports done only once it is durable, *then* publishes the
//! new integrated size. The step's partial objects (the right edge: the partial tile of each
//! level and the partial bundle) are superseded by the next step, so in a per-node store they
//! stay in memory ([`Served::right_edge`], read through [`crate::partials`]) and are made durable
//! only four times a second ([`RIGHT_EDGE_PERSIST_INTERVAL`], at most
//! [`MAX_UNPERSISTED_LEAVES`] behind, and at a clean shutdown): the right edge is written, *then*
//! the state machine records that size as the one to resume from, and only then may it purge the
//! leaf bodies below it. A crash resumes from the last such size, with every leaf above it still
//! held, and re-runs the steps since; their full objects come out byte for byte the same
//! (create-once writes accept them). Writing every step's partial objects was most of the node's
//! file creations and fsyncs under load (docs/benchmarks.md, part ten).
//!
//! Shared tile store (`--shared-tile-store`, [`StoreMode::Shared`]): the nodes share one store
//! and only the leader writes to it. The leader signs only its *integrated* size
//! ([`crate::publisher`]), so a committed checkpoint of size `s` means a leader had made every
//! tile and bundle below `s`, and the partial objects at `s` (a step's end), durable there. A
//! follower therefore writes nothing: it stages the committed leaves through its builder (its
//! right edge stays current, so it can lead at once), but moves its integrated size only to the
//! latest committed checkpoint's size, the one size whose objects it knows are in the store, and
//! only once its builder reproduces that checkpoint's root. Whether this node leads is asked
//! again at every step; a node that starts leading first catches up the same way to the latest
//! committed checkpoint, then integrates onwards, writing, and rewrites nothing the old leader
//! wrote with other bytes (tiles are deterministic
//! and the store's create-once writes accept identical bytes). A leader that lost leadership and
//! finishes a step writes the same bytes the new one does.
//!
//! At start the right edge is read back and checked against the root the committed order
//! implies at the integrated size ([`resume_verified`]). If it does not reproduce that root the
//! node neither serves nor signs anything built on it: the start-up waits while the damaged
//! object is named ([`rekor_storage::repair`]) and replaced with bytes rebuilt from the objects
//! below it, from the leaves this node still holds, or from a peer's entry bundles, every source
//! accepted only if it reproduces the committed root.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use rekor_raft::StateReader;
use rekor_storage::integrate::{RightEdge, StagedStep, TreeBuilder, MAX_LEAVES_PER_STEP};
use rekor_storage::repair::{self, Diagnosis};
use rekor_storage::tile_store::TileStore;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::catch_up::Peers;
use crate::metrics::NodeMetrics;
use crate::served::{Served, ServedCheckpoint};

/// Who writes the tile store (`--shared-tile-store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// Every node writes its own tile store (the default).
    PerNode,
    /// One store for the whole cluster: only the leader writes; see the module docs.
    Shared,
}

impl StoreMode {
    pub fn from_flag(shared: bool) -> Self {
        if shared {
            Self::Shared
        } else {
            Self::PerNode
        }
    }

    /// For the logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::PerNode => "per-node",
            Self::Shared => "shared",
        }
    }
}

/// How long the right edge of a per-node store may stay in memory only: a crash re-integrates
/// at most the leaves of about this long (they are still held), and a Raft snapshot carries the
/// bodies of about this long (it holds the bodies above the size to resume from; a second's
/// worth made snapshots a visible share of the CPU). Four persists a second against the ~45 a
/// second of partial objects that every step and every served checkpoint wrote before.
pub const RIGHT_EDGE_PERSIST_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Most leaves integrated beyond the size to resume from before the right edge is made durable
/// regardless of the interval: it bounds the re-integration after a crash and the leaf bodies a
/// Raft snapshot carries, while a node catching up integrates far faster than one a second.
pub const MAX_UNPERSISTED_LEAVES: u64 = MAX_LEAVES_PER_STEP;

/// The right edge last made durable (a per-node store): the size a restart resumes from.
#[derive(Clone)]
struct Persisted {
    edge: Arc<RightEdge>,
    at: Instant,
}

impl Persisted {
    /// Whether `edge` is due to be made durable.
    fn due(&self, edge: &RightEdge) -> bool {
        let behind = edge.size().saturating_sub(self.edge.size());
        behind > 0
            && (behind >= MAX_UNPERSISTED_LEAVES
                || self.at.elapsed() >= RIGHT_EDGE_PERSIST_INTERVAL)
    }
}

pub struct Integrator {
    /// Taken out while a step runs, put back when it ends.
    builder: Option<TreeBuilder>,
    /// The right edge last made durable, and when (replaced when a step persists another).
    persisted: Persisted,
    /// Whether a wake-up is scheduled to persist a right edge left in memory when steps stop.
    persist_scheduled: bool,
    mode: StoreMode,
    state_machine: StateReader,
    store: Arc<TileStore>,
    served: watch::Sender<Served>,
    metrics: NodeMetrics,
    peers: Peers,
}

/// Integrate whatever is committed and not yet integrated.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Advance;

/// Make the right edge held in memory durable, if it is not yet.
#[derive(Message, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum PersistRightEdge {
    /// If it is due ([`RIGHT_EDGE_PERSIST_INTERVAL`]): the wake-up for a right edge that no
    /// later step made durable.
    IfDue,
    /// Now: at a clean shutdown, so that a restart resumes where this node stopped.
    Now,
}

impl Integrator {
    /// Resumes from the integrated size persisted in the state machine store.
    pub async fn resume(
        state_machine: StateReader,
        store: Arc<TileStore>,
        metrics: NodeMetrics,
        peers: Peers,
        mode: StoreMode,
    ) -> anyhow::Result<(Self, watch::Receiver<Served>)> {
        let integrated_size = state_machine.integrated_size()?;
        let builder =
            resume_verified(&state_machine, &store, &metrics, &peers, integrated_size).await;
        let integrated_root = builder.root();
        let persisted = Persisted {
            edge: Arc::new(RightEdge::of(&builder)),
            at: Instant::now(),
        };
        let mut served = Served {
            integrated_size,
            integrated_root,
            right_edge: None,
            checkpoint: None,
        };
        // Serve the newest committed checkpoint our tiles back; on a restart that is usually the
        // state machine's latest one.
        if let Some(checkpoint) = state_machine.latest_checkpoint()? {
            if checkpoint.size <= integrated_size {
                served.checkpoint = Some(ServedCheckpoint::from_published(checkpoint));
            }
        }
        info!(
            integrated_size,
            tile_store = mode.name(),
            "integrator resumed"
        );
        metrics.integrated_size.set(integrated_size as i64);
        metrics.resume_size.set(integrated_size as i64);
        let (sender, receiver) = watch::channel(served);
        Ok((
            Self {
                builder: Some(builder),
                persisted,
                persist_scheduled: false,
                mode,
                state_machine,
                store,
                served: sender,
                metrics,
                peers,
            },
            receiver,
        ))
    }
}

/// How long to wait between two attempts to repair a damaged right edge.
const REPAIR_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Resumes at `size` from a right edge that reproduces the committed root there, repairing it
/// first if it does not; waits (retrying) until it can. See the module docs.
async fn resume_verified(
    state_machine: &StateReader,
    store: &TileStore,
    metrics: &NodeMetrics,
    peers: &Peers,
    size: u64,
) -> TreeBuilder {
    loop {
        match try_resume(state_machine, store, metrics, peers, size).await {
            Ok(builder) => return builder,
            Err(error) => {
                error!(
                    size,
                    error = format!("{error:#}"),
                    "this node's right edge does not reproduce the committed root and could not be \
                     repaired yet; not serving or signing until it is (retrying)"
                );
                metrics
                    .storage_errors_total
                    .with_label_values(&["right_edge"])
                    .inc();
                tokio::time::sleep(REPAIR_RETRY).await;
            }
        }
    }
}

async fn try_resume(
    state_machine: &StateReader,
    store: &TileStore,
    metrics: &NodeMetrics,
    peers: &Peers,
    size: u64,
) -> anyhow::Result<TreeBuilder> {
    let Some(expected) = state_machine.root_at(size)? else {
        // Not a batch boundary the state machine still remembers (the node was far behind);
        // the publisher still signs only roots the state machine confirms.
        warn!(
            size,
            "no committed root known at the integrated size; resuming without checking it"
        );
        return Ok(TreeBuilder::resume(store, size).await?);
    };
    let failure = match TreeBuilder::resume_checked(store, size, &expected).await {
        Ok(builder) => return Ok(builder),
        Err(error) => error,
    };
    error!(
        size,
        error = %failure,
        "the right edge at the integrated size does not reproduce the committed root; \
         finding the damaged object"
    );
    let partial = size % u64::from(rekor_storage::tiles::TILE_WIDTH);
    let held = state_machine.leaves_now(size - partial..size).ok();
    let mut diagnosis = repair::diagnose(store, size, &expected, held.as_deref()).await?;
    if let Some(range) = diagnosis.needs_leaves(size) {
        report(&diagnosis);
        info!(
            from = range.start,
            to = range.end,
            "pulling the entries of the damaged bundle from a peer"
        );
        let pulled = peers.pull_entries(range.start, range.end).await?;
        diagnosis = repair::diagnose(store, size, &expected, Some(&pulled)).await?;
    }
    report(&diagnosis);
    match diagnosis {
        Diagnosis::Sound => {
            anyhow::bail!("{failure}, yet every right-edge object checks out (a read error?)")
        }
        Diagnosis::Unresolved { suspects } => anyhow::bail!(
            "no source reproduces the committed root at {size}; suspects: {}",
            suspects.join("; ")
        ),
        Diagnosis::Wrong(wrong) => {
            for object in wrong {
                let Some(right) = object.right else {
                    anyhow::bail!(
                        "{} is damaged and no peer served its entries",
                        object.object
                    );
                };
                store.replace_damaged(&object.object.path(), right).await?;
                metrics
                    .right_edge_repairs_total
                    .with_label_values(&[object.object.kind()])
                    .inc();
                info!(object = %object.object, "replaced the damaged object with its rebuilt bytes");
            }
        }
    }
    Ok(TreeBuilder::resume_checked(store, size, &expected).await?)
}

/// Logs each object a diagnosis names.
fn report(diagnosis: &Diagnosis) {
    match diagnosis {
        Diagnosis::Sound => {}
        Diagnosis::Wrong(wrong) => {
            for object in wrong {
                error!(
                    object = %object.object,
                    problem = object.problem,
                    repairable = object.right.is_some(),
                    "damaged right-edge object"
                );
            }
        }
        Diagnosis::Unresolved { suspects } => {
            error!(
                suspects = suspects.join("; "),
                "no stored object or held entry reproduces the committed root"
            );
        }
    }
}

impl Actor for Integrator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Wake on every applied change of the state machine.
        let mut applied = self.state_machine.subscribe();
        let me = ctx.address();
        tokio::spawn(async move {
            me.do_send(Advance);
            while applied.changed().await.is_ok() {
                if me.try_send(Advance).is_err() && !me.connected() {
                    break;
                }
            }
        });
    }
}

impl Handler<Advance> for Integrator {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Advance, _ctx: &mut Self::Context) -> Self::Result {
        let Some(builder) = self.builder.take() else {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        };
        let state_machine = self.state_machine.clone();
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let served = self.served.borrow().clone();
        let peers = self.peers.clone();
        let mode = self.mode;
        let mut persisted = self.persisted.clone();
        let step = async move {
            let (builder, outcome) = integrate_committed(
                builder,
                &state_machine,
                &store,
                &metrics,
                &peers,
                mode,
                served,
            )
            .await;
            // The right edge of this step, or one an earlier step left in memory.
            let edge = match &outcome {
                Ok(Some(served)) => served.right_edge.clone(),
                _ => None,
            };
            if let Some(edge) = edge.filter(|edge| persisted.due(edge)) {
                persist(&store, &state_machine, &metrics, edge, &mut persisted).await;
            }
            (builder, outcome, persisted)
        };
        AtomicResponse::new(Box::pin(step.into_actor(self).map(
            |(builder, outcome, persisted), act, ctx| {
                act.builder = Some(builder);
                act.persisted = persisted;
                match outcome {
                    Ok(Some(served)) => {
                        let more = act.state_machine.applied().size > served.integrated_size;
                        act.served.send_replace(served);
                        if more {
                            ctx.notify(Advance);
                        }
                    }
                    Ok(None) => {}
                    Err(error) => {
                        if is_disk_full(&error) && act.peers.leads_with_others() {
                            exit_on_full_disk(&error);
                        }
                        error!(%error, "integration step failed; retrying");
                        act.metrics
                            .storage_errors_total
                            .with_label_values(&["integrate"])
                            .inc();
                        ctx.notify_later(Advance, std::time::Duration::from_millis(500));
                    }
                }
                act.schedule_persist(ctx);
            },
        )))
    }
}

impl Integrator {
    /// When the served right edge is not durable yet, wakes the actor once after
    /// [`RIGHT_EDGE_PERSIST_INTERVAL`]: if no step has made it durable by then, that wake-up does
    /// (once it is due). Under load the steps persist on their own and the wake-ups find nothing
    /// due, so the edge is written four times a second either way.
    fn schedule_persist(&mut self, ctx: &mut Context<Self>) {
        let behind = self
            .served
            .borrow()
            .right_edge
            .as_ref()
            .is_some_and(|edge| edge.size() > self.persisted.edge.size());
        if behind && !self.persist_scheduled {
            self.persist_scheduled = true;
            ctx.run_later(RIGHT_EDGE_PERSIST_INTERVAL, |act, ctx| {
                act.persist_scheduled = false;
                ctx.notify(PersistRightEdge::IfDue);
            });
        }
    }
}

impl Handler<PersistRightEdge> for Integrator {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, when: PersistRightEdge, ctx: &mut Self::Context) -> Self::Result {
        let edge = self
            .served
            .borrow()
            .right_edge
            .clone()
            .filter(|edge| match when {
                PersistRightEdge::Now => edge.size() > self.persisted.edge.size(),
                PersistRightEdge::IfDue => self.persisted.due(edge),
            });
        let Some(edge) = edge else {
            // Not due yet (a step persisted lately): look again later.
            self.schedule_persist(ctx);
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        };
        let store = self.store.clone();
        let state_machine = self.state_machine.clone();
        let metrics = self.metrics.clone();
        let mut persisted = self.persisted.clone();
        let work = async move {
            persist(&store, &state_machine, &metrics, edge, &mut persisted).await;
            persisted
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |persisted, act, ctx| {
                act.persisted = persisted;
                act.schedule_persist(ctx);
            },
        )))
    }
}

/// Makes `edge` durable and records its size as the one to resume from (which lets the state
/// machine drop the leaf bodies below it). A failure is logged and counted, and the next step
/// tries again: the edge stays in memory meanwhile, and what is durable stays consistent.
async fn persist(
    store: &TileStore,
    state_machine: &StateReader,
    metrics: &NodeMetrics,
    edge: Arc<RightEdge>,
    persisted: &mut Persisted,
) {
    let size = edge.size();
    let written = edge.write(store, &persisted.edge).await;
    let result = match written {
        Ok(()) => state_machine
            .mark_integrated(size)
            .await
            .map_err(anyhow::Error::from),
        Err(error) => Err(error.into()),
    };
    match result {
        Ok(()) => {
            metrics
                .objects_written_total
                .inc_by(edge.object_count() as u64);
            metrics.resume_size.set(size as i64);
            *persisted = Persisted {
                edge,
                at: Instant::now(),
            };
        }
        Err(error) => {
            error!(
                size,
                error = format!("{error:#}"),
                "persisting the right edge failed; retrying"
            );
            metrics
                .storage_errors_total
                .with_label_values(&["integrate"])
                .inc();
        }
    }
}

/// Whether `error` comes from a full local disk (ENOSPC anywhere in its chain).
fn is_disk_full(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
            || cause.to_string().contains("No space left on device")
    })
}

/// A leader whose tile store's disk is full cannot integrate, so it publishes nothing, and
/// openraft 0.9 cannot step down: it would keep the whole cluster from acknowledging writes. With
/// other voters to take over, it exits as it does when Raft's own storage fails (EX_IOERR), so that
/// they elect a leader at once and a supervisor or operator sees the failure; on restart with space
/// it resumes from its durable state. A follower, or a single node, stays up: it serves reads and
/// resumes integrating by itself once there is room.
fn exit_on_full_disk(error: &anyhow::Error) -> ! {
    error!(
        %error,
        "Integration stopped on a storage error (the disk is full); this leader cannot publish \
         and exits now so that another node leads. Free space and restart it: it resumes from its \
         durable state"
    );
    std::process::exit(74);
}

/// One step: integrate up to `MAX_LEAVES_PER_STEP` committed leaves (a follower of a shared
/// store: stage up to the latest committed checkpoint), then recompute what this node serves.
/// Returns the builder (always) and the new served state if anything changed.
async fn integrate_committed(
    mut builder: TreeBuilder,
    state_machine: &StateReader,
    store: &TileStore,
    metrics: &NodeMetrics,
    peers: &Peers,
    mode: StoreMode,
    mut served: Served,
) -> (TreeBuilder, anyhow::Result<Option<Served>>) {
    let result = async {
        let mut changed = false;
        let applied = state_machine.applied().size;
        let from = builder.size();
        // Asked at every step: leadership may have moved since the last one.
        let writes = mode == StoreMode::PerNode || peers.leads();
        // In a shared store, whatever a committed checkpoint covers is there already: a
        // follower goes no further, and a new leader that was behind catches up to it without
        // writing those objects again.
        let vouched = match mode {
            StoreMode::PerNode => None,
            StoreMode::Shared => state_machine
                .latest_checkpoint()?
                .filter(|checkpoint| checkpoint.size > from && checkpoint.size <= applied),
        };
        if let Some(checkpoint) = vouched {
            let started = Instant::now();
            follow_step(
                &mut builder,
                state_machine,
                metrics,
                peers,
                from,
                &checkpoint,
            )
            .await?;
            metrics
                .integrate_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.integrated_size.set(checkpoint.size as i64);
            metrics.resume_size.set(checkpoint.size as i64);
            served.integrated_size = checkpoint.size;
            served.integrated_root = builder.root();
            changed = true;
        } else if writes && applied > from {
            let to = step_end(state_machine, from, applied)?;
            let started = Instant::now();
            let right_edge = write_step(
                &mut builder,
                state_machine,
                store,
                metrics,
                peers,
                mode,
                from..to,
            )
            .await?;
            metrics
                .integrate_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.integrated_size.set(to as i64);
            served.integrated_size = to;
            served.integrated_root = builder.root();
            served.right_edge = right_edge.map(Arc::new);
            changed = true;
        }
        if let Some(latest) = state_machine.latest_checkpoint()? {
            // A re-signed checkpoint of the same size (republished, witnessed, frozen) is news too.
            let newer = served.checkpoint.as_ref().is_none_or(|current| {
                latest.size > current.size
                    || (latest.size == current.size && latest.text.as_str() != &*current.text)
            });
            if newer && latest.size <= served.integrated_size {
                // Its partial objects are read through `crate::partials`, and written to the
                // store only before the checkpoint file names its size (`write_checkpoint_file`).
                metrics.checkpoint_size.set(latest.size as i64);
                metrics
                    .checkpoint_timestamp_seconds
                    .set(crate::publisher::unix_now() as i64);
                served.checkpoint = Some(ServedCheckpoint::from_published(latest));
                changed = true;
            }
        }
        Ok(changed.then_some(served))
    }
    .await;
    (builder, result)
}

/// How often, at most, the served checkpoint is written to the tile store.
pub const STORE_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes the served checkpoint to the tile store, for readers of the store itself (a bucket
/// behind a CDN); this node's API serves it from memory. At most once per
/// [`STORE_CHECKPOINT_INTERVAL`], always the newest: replacing the file is a new inode and a
/// deleted one each time, and dozens of those a second made ext4's inode allocation a visible
/// share of the node's CPU. The partial objects of the checkpoint's size are made durable first,
/// so they exist before the file names that size.
///
/// In a shared tile store ([`StoreMode::Shared`]) only the leader writes the file, and never over
/// one of a larger size: it reads the stored checkpoint and compares sizes first. Two nodes that
/// both believe they lead (an old leader that has not noticed yet) can still interleave their
/// read and write, and leave a smaller checkpoint in the file until the leader's next one; both
/// are committed checkpoints of the one log, so the file is briefly stale, never conflicting.
pub async fn write_checkpoint_file(
    store: Arc<TileStore>,
    mut served: watch::Receiver<Served>,
    metrics: NodeMetrics,
    mode: StoreMode,
    peers: Peers,
) {
    let mut written: Option<Arc<str>> = None;
    loop {
        let now = served.borrow_and_update().clone();
        let latest = now
            .checkpoint
            .as_ref()
            .map(|checkpoint| (checkpoint.text.clone(), checkpoint.size));
        let latest = latest.filter(|(text, _)| written.as_ref() != Some(text));
        let latest = match (mode, latest) {
            (StoreMode::Shared, Some(_)) if !peers.leads() => None,
            (StoreMode::Shared, Some((text, size))) => match stored_checkpoint_size(&store).await {
                Ok(Some(stored)) if stored > size => {
                    // A newer leader wrote a larger one already.
                    written = Some(text);
                    None
                }
                Ok(_) => Some(text),
                Err(error) => {
                    checkpoint_file_failed(&metrics, "reading", &error).await;
                    continue;
                }
            },
            // Its partial objects first (in a shared store the leader that signed it wrote them:
            // it signs only sizes where a step of its own ended).
            (StoreMode::PerNode, Some((text, size))) => {
                match crate::partials::write_partials_at(&store, size, &now).await {
                    Ok(()) => Some(text),
                    Err(error) => {
                        checkpoint_file_failed(&metrics, "writing the partial objects of", &error)
                            .await;
                        continue;
                    }
                }
            }
            (_, None) => None,
        };
        if let Some(text) = latest {
            match store.put_checkpoint(text.as_bytes().to_vec().into()).await {
                Ok(()) => written = Some(text),
                Err(error) => {
                    checkpoint_file_failed(&metrics, "writing", &error).await;
                    continue;
                }
            }
            tokio::time::sleep(STORE_CHECKPOINT_INTERVAL).await;
        }
        if served.changed().await.is_err() {
            return;
        }
    }
}

/// Logs and counts a failed read or write of the store's checkpoint file, then waits before
/// the retry.
async fn checkpoint_file_failed(
    metrics: &NodeMetrics,
    action: &str,
    error: &(dyn std::fmt::Display + Sync),
) {
    error!(%error, "{action} the tile store's checkpoint failed; retrying");
    metrics
        .storage_errors_total
        .with_label_values(&["checkpoint"])
        .inc();
    tokio::time::sleep(STORE_CHECKPOINT_INTERVAL).await;
}

/// The size of the checkpoint in the tile store; `None` if there is none, or it does not parse
/// (then it is replaced).
async fn stored_checkpoint_size(store: &TileStore) -> anyhow::Result<Option<u64>> {
    let Some(bytes) = store.get_checkpoint().await? else {
        return Ok(None);
    };
    Ok(rekor_storage::note::Note::parse(&bytes)
        .ok()
        .and_then(|note| rekor_storage::checkpoint::Checkpoint::parse_body(&note.text).ok())
        .map(|checkpoint| checkpoint.size))
}

/// Where a step from `from` ends: everything applied, or at most `MAX_LEAVES_PER_STEP` leaves
/// ending at a Raft batch boundary when one is known there (the state machine knows the root at
/// batch boundaries, which is what entries pulled from a peer are checked against).
fn step_end(state_machine: &StateReader, from: u64, applied: u64) -> anyhow::Result<u64> {
    let limit = applied.min(from + MAX_LEAVES_PER_STEP);
    if limit == applied {
        return Ok(applied);
    }
    let boundaries = state_machine.batch_boundaries(from, limit)?;
    Ok(boundaries.last().copied().unwrap_or(limit))
}

/// Integrates leaves `from..to` and makes the result durable: in a shared store every object
/// of the step, then the integrated size (the leader signs only sizes a step of its own ended
/// at, and the followers resume from what it wrote); in a per-node store the full objects,
/// returning the partial ones, which the caller holds in memory and persists later
/// ([`persist`]).
async fn write_step(
    builder: &mut TreeBuilder,
    state_machine: &StateReader,
    store: &TileStore,
    metrics: &NodeMetrics,
    peers: &Peers,
    mode: StoreMode,
    std::ops::Range {
        start: from,
        end: to,
    }: std::ops::Range<u64>,
) -> anyhow::Result<Option<RightEdge>> {
    // Leaves this node does not hold (below an installed snapshot) come from a peer, and are
    // only accepted if they reproduce the committed root at `to`.
    let (leaves, pulled) = committed_leaves(state_machine, peers, from, to).await?;
    // Staged on a copy, so that a failed write leaves the builder at the durable size.
    let staged = stage_leaves(builder, state_machine, metrics, from, &leaves, pulled)?;
    drop(leaves);
    if pulled {
        let expected = state_machine.root_at(to)?.ok_or_else(|| {
            anyhow::anyhow!("no committed root known at {to} to check pulled entries against")
        })?;
        if staged.root() != expected {
            anyhow::bail!("entries pulled for {from}..{to} do not reproduce the committed root");
        }
    }
    let right_edge = match mode {
        StoreMode::Shared => {
            let objects = staged.object_count();
            let next = staged.write(store).await?;
            metrics.objects_written_total.inc_by(objects as u64);
            // Every tile and bundle is durable: now the size may move.
            state_machine.mark_integrated(to).await?;
            metrics.resume_size.set(to as i64);
            *builder = next;
            None
        }
        StoreMode::PerNode => {
            let full = staged.full_object_count();
            let (next, edge) = staged.write_full(store).await?;
            metrics.objects_written_total.inc_by(full as u64);
            *builder = next;
            Some(edge)
        }
    };
    if to / 100_000 > from / 100_000 {
        info!(integrated_size = to, "integration progress");
    }
    Ok(right_edge)
}

/// Stages the committed `leaves` from index `from` on a copy of `builder`, with the leaf hashes
/// the state machine computed from the same bodies when it applied them, if it still holds them
/// (never for leaves pulled from a peer, which it did not hash): one SHA-256 pass over each body
/// instead of two.
fn stage_leaves(
    builder: &TreeBuilder,
    state_machine: &StateReader,
    metrics: &NodeMetrics,
    from: u64,
    leaves: &[Vec<u8>],
    pulled: bool,
) -> Result<StagedStep, rekor_storage::integrate::IntegrateError> {
    let to = from + leaves.len() as u64;
    let held = (!pulled)
        .then(|| state_machine.recent_leaf_hashes(from..to))
        .flatten();
    let (staged, source) = match held {
        Some(hashes) => (
            builder.stage_with_leaf_hashes(leaves, &hashes),
            "state_machine",
        ),
        None => (builder.stage(leaves), "integrator"),
    };
    if staged.is_ok() {
        metrics
            .leaf_hashes_total
            .with_label_values(&[source])
            .inc_by(leaves.len() as u64);
    }
    staged
}

/// The committed leaves `from..to`: held here, or pulled from a peer (below an installed
/// snapshot); the flag says they were pulled and must be checked against a committed root.
/// Read and hashed on the integrator's own arbiter thread (it runs nothing else): a step's bodies
/// and bundles are allocated and freed on one thread. On the blocking pool, each pool thread grew
/// its own allocator arena to a step's size and kept it (RSS in the hundreds of MiB).
async fn committed_leaves(
    state_machine: &StateReader,
    peers: &Peers,
    from: u64,
    to: u64,
) -> anyhow::Result<(Vec<Vec<u8>>, bool)> {
    let (leaves, pulled) = match state_machine.leaves_now(from..to) {
        Ok(leaves) => (leaves, false),
        Err(rekor_raft::StateMachineError::LeafMissing { index }) => {
            info!(
                from,
                to,
                missing = index,
                "leaves not held here; pulling them from a peer"
            );
            (peers.pull_entries(from, to).await?, true)
        }
        Err(error) => return Err(error.into()),
    };
    if leaves.len() as u64 != to - from {
        anyhow::bail!(
            "state machine returned {} leaves for {from}..{to}",
            leaves.len()
        );
    }
    Ok((leaves, pulled))
}

/// A follower of a shared tile store: moves the right edge from `from` to the committed
/// `checkpoint`'s size without writing, in steps of at most `MAX_LEAVES_PER_STEP` leaves (the
/// staged objects are dropped at once, so memory stays that of one step). The integrated size
/// moves only at the end, and only if the builder reproduces the checkpoint's root: the leader
/// that signed it made that size's objects durable in the store, intermediate sizes may have no
/// partial objects there, and a restart resumes from the store's right edge at the integrated
/// size. Leaves pulled from a peer are covered by the same root check.
async fn follow_step(
    builder: &mut TreeBuilder,
    state_machine: &StateReader,
    metrics: &NodeMetrics,
    peers: &Peers,
    from: u64,
    checkpoint: &rekor_raft::PublishedCheckpoint,
) -> anyhow::Result<()> {
    let mut next = builder.clone();
    let mut at = from;
    while at < checkpoint.size {
        let to = step_end(state_machine, at, checkpoint.size)?;
        let (leaves, pulled) = committed_leaves(state_machine, peers, at, to).await?;
        next = stage_leaves(&next, state_machine, metrics, at, &leaves, pulled)?.into_builder();
        at = to;
    }
    if next.root() != checkpoint.root {
        anyhow::bail!(
            "the committed leaves do not reproduce the root of the committed checkpoint at {}",
            checkpoint.size
        );
    }
    state_machine.mark_integrated(checkpoint.size).await?;
    *builder = next;
    if checkpoint.size / 100_000 > from / 100_000 {
        info!(
            integrated_size = checkpoint.size,
            "integration progress (shared tile store, following)"
        );
    }
    Ok(())
}
