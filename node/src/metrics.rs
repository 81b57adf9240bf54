//! The node's Prometheus metrics (registered on the same registry the API crate serves at
//! `/metrics`): batches, integration, checkpoints, pushback, dedup, storage errors, Raft state and
//! replication lag.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Handles to every node metric. Cheap to clone (each field is an `Arc` inside).
#[derive(Clone)]
pub struct NodeMetrics {
    pub batch_size: Histogram,
    pub forward_batch_size: Histogram,
    pub batch_commit_seconds: Histogram,
    pub integrate_seconds: Histogram,
    pub integrated_size: IntGauge,
    pub sequenced_size: IntGauge,
    pub checkpoint_size: IntGauge,
    pub checkpoint_timestamp_seconds: IntGauge,
    pub checkpoints_published: IntCounter,
    pub pushback_total: IntCounter,
    pub dedup_hits_total: IntCounter,
    pub forwarded_total: IntCounter,
    pub storage_errors_total: IntCounterVec,
    pub raft_is_leader: IntGauge,
    pub raft_term: IntGauge,
    pub raft_last_log_index: IntGauge,
    pub raft_last_applied: IntGauge,
    pub raft_replication_lag: IntGaugeVec,
    pub raft_db_size_bytes: IntGauge,
    pub raft_log_size_bytes: IntGauge,
    pub entry_files_size_bytes: IntGauge,
    pub identities: IntGauge,
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> prometheus::Result<Histogram> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
}

impl NodeMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let seconds = prometheus::exponential_buckets(0.0005, 2.0, 16)?;
        let metrics = Self {
            batch_size: histogram(
                "rekor_node_batch_size",
                "Entries per proposed Raft Append batch",
                prometheus::exponential_buckets(1.0, 2.0, 13)?,
            )?,
            forward_batch_size: histogram(
                "rekor_node_forward_batch_size",
                "Entries per request a follower forwards to the leader",
                prometheus::exponential_buckets(1.0, 2.0, 9)?,
            )?,
            batch_commit_seconds: histogram(
                "rekor_node_batch_commit_seconds",
                "Time from proposing a batch to its commit and local apply",
                seconds.clone(),
            )?,
            integrate_seconds: histogram(
                "rekor_node_integrate_seconds",
                "Time to integrate one step of committed leaves into durable tiles and bundles",
                seconds,
            )?,
            integrated_size: IntGauge::new(
                "rekor_node_integrated_size",
                "Tree size whose tiles and bundles are durable in this node's tile store",
            )?,
            sequenced_size: IntGauge::new(
                "rekor_node_sequenced_size",
                "Tree size committed and applied by this node's state machine",
            )?,
            checkpoint_size: IntGauge::new(
                "rekor_node_checkpoint_size",
                "Tree size of the checkpoint this node serves",
            )?,
            checkpoint_timestamp_seconds: IntGauge::new(
                "rekor_node_checkpoint_timestamp_seconds",
                "Unix time at which this node started serving its current checkpoint",
            )?,
            checkpoints_published: IntCounter::new(
                "rekor_node_checkpoints_published_total",
                "Checkpoints this node signed as leader and Raft accepted",
            )?,
            pushback_total: IntCounter::new(
                "rekor_node_pushback_total",
                "Writes refused with 503 because too much work was outstanding",
            )?,
            dedup_hits_total: IntCounter::new(
                "rekor_node_dedup_hits_total",
                "Submissions answered 409 because the identical entry is already logged",
            )?,
            forwarded_total: IntCounter::new(
                "rekor_node_forwarded_total",
                "Entries this node forwarded to the leader",
            )?,
            storage_errors_total: IntCounterVec::new(
                Opts::new(
                    "rekor_node_storage_errors_total",
                    "Tile store and state machine errors by operation",
                ),
                &["operation"],
            )?,
            raft_is_leader: IntGauge::new("rekor_raft_is_leader", "1 if this node is the leader")?,
            raft_term: IntGauge::new("rekor_raft_term", "Current Raft term")?,
            raft_last_log_index: IntGauge::new(
                "rekor_raft_last_log_index",
                "Index of the last entry in this node's Raft log",
            )?,
            raft_last_applied: IntGauge::new(
                "rekor_raft_last_applied",
                "Index of the last Raft entry applied to the state machine",
            )?,
            raft_replication_lag: IntGaugeVec::new(
                Opts::new(
                    "rekor_raft_replication_lag",
                    "Leader only: Raft entries a follower is behind the leader's last log index",
                ),
                &["follower"],
            )?,
            raft_db_size_bytes: IntGauge::new(
                "rekor_raft_db_size_bytes",
                "sled's size on disk (Raft vote and metadata, the state machine's small state)",
            )?,
            raft_log_size_bytes: IntGauge::new(
                "rekor_raft_log_size_bytes",
                "Bytes of the Raft log's segment files",
            )?,
            entry_files_size_bytes: IntGauge::new(
                "rekor_entry_files_size_bytes",
                "Bytes of the unintegrated leaf bodies and the identity index on disk",
            )?,
            identities: IntGauge::new("rekor_identities", "Entries in the identity (dedup) index")?,
        };
        registry.register(Box::new(metrics.batch_size.clone()))?;
        registry.register(Box::new(metrics.forward_batch_size.clone()))?;
        registry.register(Box::new(metrics.batch_commit_seconds.clone()))?;
        registry.register(Box::new(metrics.integrate_seconds.clone()))?;
        registry.register(Box::new(metrics.integrated_size.clone()))?;
        registry.register(Box::new(metrics.sequenced_size.clone()))?;
        registry.register(Box::new(metrics.checkpoint_size.clone()))?;
        registry.register(Box::new(metrics.checkpoint_timestamp_seconds.clone()))?;
        registry.register(Box::new(metrics.checkpoints_published.clone()))?;
        registry.register(Box::new(metrics.pushback_total.clone()))?;
        registry.register(Box::new(metrics.dedup_hits_total.clone()))?;
        registry.register(Box::new(metrics.forwarded_total.clone()))?;
        registry.register(Box::new(metrics.storage_errors_total.clone()))?;
        registry.register(Box::new(metrics.raft_is_leader.clone()))?;
        registry.register(Box::new(metrics.raft_term.clone()))?;
        registry.register(Box::new(metrics.raft_last_log_index.clone()))?;
        registry.register(Box::new(metrics.raft_last_applied.clone()))?;
        registry.register(Box::new(metrics.raft_replication_lag.clone()))?;
        registry.register(Box::new(metrics.raft_db_size_bytes.clone()))?;
        registry.register(Box::new(metrics.raft_log_size_bytes.clone()))?;
        registry.register(Box::new(metrics.entry_files_size_bytes.clone()))?;
        registry.register(Box::new(metrics.identities.clone()))?;
        Ok(metrics)
    }
}

/// Copies openraft's metrics into the Prometheus gauges whenever they change, and the database
/// size every few seconds. Runs until Raft shuts down.
pub async fn sample_raft(
    raft: rekor_raft::types::Raft,
    engine: rekor_raft::engine::SledEngine,
    log_size: rekor_raft::LogSizeProbe,
    state: rekor_raft::StateReader,
    metrics: NodeMetrics,
) {
    let mut watch = raft.metrics();
    let mut size_timer = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    return;
                }
                // Clone out of the borrow at once: holding it across an await blocks openraft.
                let snapshot = watch.borrow().clone();
                let is_leader = snapshot.current_leader == Some(snapshot.id);
                metrics.raft_is_leader.set(i64::from(is_leader));
                metrics.raft_term.set(snapshot.current_term as i64);
                metrics.raft_last_log_index.set(snapshot.last_log_index.unwrap_or(0) as i64);
                metrics.raft_last_applied.set(snapshot.last_applied.map(|id| id.index).unwrap_or(0) as i64);
                metrics.raft_replication_lag.reset();
                if let Some(replication) = &snapshot.replication {
                    let last = snapshot.last_log_index.unwrap_or(0);
                    for (follower, matched) in replication {
                        let matched = matched.map(|id| id.index).unwrap_or(0);
                        metrics
                            .raft_replication_lag
                            .with_label_values(&[&follower.to_string()])
                            .set(last.saturating_sub(matched) as i64);
                    }
                }
            }
            _ = size_timer.tick() => {
                let engine = engine.clone();
                if let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || engine.size_on_disk()).await {
                    metrics.raft_db_size_bytes.set(bytes as i64);
                }
                metrics.raft_log_size_bytes.set(log_size.bytes() as i64);
                metrics.entry_files_size_bytes.set(state.entry_files_bytes() as i64);
                metrics.identities.set(state.identity_count() as i64);
            }
        }
    }
}
