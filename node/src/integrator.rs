//! The integrator actor (every node): turns committed leaves into durable entry bundles and hash
//! tiles in this node's tile store, then advances the node's integrated size and what it serves.
//!
//! Ownership: the actor owns the `TreeBuilder` (the tree's right edge) and the `watch::Sender` of
//! [`Served`]. One `Advance` runs at a time (`AtomicResponse`), so steps never interleave.
//!
//! Durability (DESIGN.md invariants 3 and 4): a step writes every tile and bundle, each of which
//! `TileStore` reports done only once it is durable, *then* persists the integrated size in the
//! state machine store, *then* publishes the new size. A crash before the size is persisted
//! re-runs the step after restart and rewrites identical bytes (create-once writes accept them);
//! a crash after it finds the tiles already there.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures::{StreamExt, TryStreamExt};
use rekor_raft::StateReader;
use rekor_storage::integrate::TreeBuilder;
use rekor_storage::tile_store::TileStore;
use tokio::sync::watch;
use tracing::{error, info};

use crate::catch_up::Peers;
use crate::metrics::NodeMetrics;
use crate::served::{Served, ServedCheckpoint};

/// Most leaves integrated in one step: bounds memory and the latency of one step.
const MAX_LEAVES_PER_STEP: u64 = 16_384;
/// Tile and bundle writes in flight at once.
const WRITE_CONCURRENCY: usize = 32;

pub struct Integrator {
    /// Taken out while a step runs, put back when it ends.
    builder: Option<TreeBuilder>,
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

impl Integrator {
    /// Resumes from the integrated size persisted in the state machine store.
    pub async fn resume(
        state_machine: StateReader,
        store: Arc<TileStore>,
        metrics: NodeMetrics,
        peers: Peers,
    ) -> anyhow::Result<(Self, watch::Receiver<Served>)> {
        let integrated_size = state_machine.integrated_size()?;
        let builder = TreeBuilder::resume(&store, integrated_size).await?;
        let integrated_root = builder.root();
        let mut served = Served {
            integrated_size,
            integrated_root,
            checkpoint: None,
        };
        // Serve the newest committed checkpoint our tiles back; on a restart that is usually the
        // state machine's latest one.
        if let Some(checkpoint) = state_machine.latest_checkpoint()? {
            if checkpoint.size <= integrated_size {
                served.checkpoint = Some(ServedCheckpoint::from_published(checkpoint));
            }
        }
        info!(integrated_size, "integrator resumed");
        metrics.integrated_size.set(integrated_size as i64);
        let (sender, receiver) = watch::channel(served);
        Ok((
            Self {
                builder: Some(builder),
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
        let step = async move {
            integrate_committed(builder, &state_machine, &store, &metrics, &peers, served).await
        };
        AtomicResponse::new(Box::pin(step.into_actor(self).map(
            |(builder, outcome), act, ctx| {
                act.builder = Some(builder);
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
                        error!(%error, "integration step failed; retrying");
                        act.metrics
                            .storage_errors_total
                            .with_label_values(&["integrate"])
                            .inc();
                        ctx.notify_later(Advance, std::time::Duration::from_millis(500));
                    }
                }
            },
        )))
    }
}

/// One step: integrate up to `MAX_LEAVES_PER_STEP` committed leaves, then recompute what this
/// node serves. Returns the builder (always) and the new served state if anything changed.
async fn integrate_committed(
    mut builder: TreeBuilder,
    state_machine: &StateReader,
    store: &TileStore,
    metrics: &NodeMetrics,
    peers: &Peers,
    mut served: Served,
) -> (TreeBuilder, anyhow::Result<Option<Served>>) {
    let result = async {
        let mut changed = false;
        let applied = state_machine.applied().size;
        let from = builder.size();
        if applied > from {
            let to = step_end(state_machine, from, applied)?;
            let started = Instant::now();
            write_step(&mut builder, state_machine, store, peers, from, to).await?;
            metrics
                .integrate_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.integrated_size.set(to as i64);
            served.integrated_size = to;
            served.integrated_root = builder.root();
            changed = true;
        }
        if let Some(latest) = state_machine.latest_checkpoint()? {
            // A re-signed checkpoint of the same size (republished, witnessed, frozen) is news too.
            let newer = served.checkpoint.as_ref().is_none_or(|current| {
                latest.size > current.size
                    || (latest.size == current.size && latest.text.as_str() != &*current.text)
            });
            if newer && latest.size <= served.integrated_size {
                // The checkpoint's partial objects, unless a step of ours ended exactly there.
                crate::partials::write_partials_at(store, latest.size, served.integrated_size)
                    .await?;
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
/// share of the node's CPU. The partial objects of a served checkpoint are written before it is
/// served, so they exist before the file names its size.
pub async fn write_checkpoint_file(
    store: Arc<TileStore>,
    mut served: watch::Receiver<Served>,
    metrics: NodeMetrics,
) {
    let mut written: Option<Arc<str>> = None;
    loop {
        let latest = served
            .borrow_and_update()
            .checkpoint
            .as_ref()
            .map(|checkpoint| checkpoint.text.clone());
        if let Some(text) = latest.filter(|text| written.as_ref() != Some(text)) {
            match store.put_checkpoint(text.as_bytes().to_vec().into()).await {
                Ok(()) => written = Some(text),
                Err(error) => {
                    error!(%error, "writing the checkpoint to the tile store failed; retrying");
                    metrics
                        .storage_errors_total
                        .with_label_values(&["checkpoint"])
                        .inc();
                    tokio::time::sleep(STORE_CHECKPOINT_INTERVAL).await;
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

/// Integrates leaves `from..to` and makes the result durable. Partial objects are written only
/// at `to`; those of other sizes are derived when needed ([`crate::partials`]).
async fn write_step(
    builder: &mut TreeBuilder,
    state_machine: &StateReader,
    store: &TileStore,
    peers: &Peers,
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    // Leaves this node does not hold (below an installed snapshot) come from a peer, and are
    // only accepted if they reproduce the committed root at `to`.
    // Read and hash on this actor's own arbiter thread (it runs nothing else): a step's bodies
    // and bundles are allocated and freed on one thread. On the blocking pool, each pool thread
    // grew its own allocator arena to a step's size and kept it (RSS in the hundreds of MiB).
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
    // Build on a copy so that a failed write leaves the builder at the durable size.
    let mut next = builder.clone();
    let output = next.append(&leaves)?;
    drop(leaves);
    if pulled {
        let expected = state_machine.root_at(to)?.ok_or_else(|| {
            anyhow::anyhow!("no committed root known at {to} to check pulled entries against")
        })?;
        if next.root() != expected {
            anyhow::bail!("entries pulled for {from}..{to} do not reproduce the committed root");
        }
    }
    let (tiles, bundles) = (output.tiles, output.bundles);
    let tile_writes = tiles
        .into_iter()
        .map(|(id, bytes)| async move { store.put_tile(id, bytes).await });
    futures::stream::iter(tile_writes)
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let bundle_writes = bundles
        .into_iter()
        .map(|(id, bytes)| async move { store.put_bundle(id.index, id.width, bytes).await });
    futures::stream::iter(bundle_writes)
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    // Every tile and bundle is durable: now the size may move.
    state_machine.mark_integrated(to).await?;
    *builder = next;
    if to / 100_000 > from / 100_000 {
        info!(integrated_size = to, "integration progress");
    }
    Ok(())
}
