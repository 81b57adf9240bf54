//! The openraft `Config`, tuned for fsync'd sled appends and HTTP RPCs (rust-stack.md §2.7,
//! §2.8).
//!
//! openraft bounds each AppendEntries RPC by `heartbeat_interval`, so the heartbeat must cover
//! an HTTP round trip plus the follower's fsync; elections wait ≥ 4 heartbeats. Snapshot chunks
//! get seconds, not openraft's 200 ms default (which caused endless resend loops, PRs
//! #630/#634). Snapshots are rare: the log is compacted only every `snapshot_logs_since_last`
//! entries.

use openraft::{Config, ConfigError, SnapshotPolicy};

/// The knobs a node may change; everything else is fixed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTuning {
    /// Cluster name (guards against mixing clusters in logs).
    pub cluster_name: String,
    /// Leader heartbeat and AppendEntries TTL, ms.
    pub heartbeat_ms: u64,
    /// Election timeout range, ms.
    pub election_timeout_min_ms: u64,
    /// Election timeout range, ms.
    pub election_timeout_max_ms: u64,
    /// TTL of one InstallSnapshot chunk, ms.
    pub install_snapshot_timeout_ms: u64,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_logs_since_last: u64,
    /// Log entries kept behind a snapshot (so slightly-behind followers need no snapshot).
    pub max_in_snapshot_log_to_keep: u64,
    /// Max Raft entries per AppendEntries (each may be a whole Append batch).
    pub max_payload_entries: u64,
    /// Bytes per snapshot chunk.
    pub snapshot_max_chunk_size: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            cluster_name: "rekor-raft".into(),
            heartbeat_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            install_snapshot_timeout_ms: 10_000,
            snapshot_logs_since_last: 20_000,
            max_in_snapshot_log_to_keep: 1_000,
            max_payload_entries: 64,
            snapshot_max_chunk_size: 4 * 1024 * 1024,
        }
    }
}

/// The validated openraft `Config` for `tuning`.
pub fn build_config(tuning: &RaftTuning) -> Result<Config, ConfigError> {
    let config = Config {
        cluster_name: tuning.cluster_name.clone(),
        heartbeat_interval: tuning.heartbeat_ms,
        election_timeout_min: tuning.election_timeout_min_ms,
        election_timeout_max: tuning.election_timeout_max_ms,
        install_snapshot_timeout: tuning.install_snapshot_timeout_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(tuning.snapshot_logs_since_last),
        max_in_snapshot_log_to_keep: tuning.max_in_snapshot_log_to_keep,
        // A follower this far behind gets a snapshot instead of the log.
        replication_lag_threshold: tuning.snapshot_logs_since_last,
        max_payload_entries: tuning.max_payload_entries,
        snapshot_max_chunk_size: tuning.snapshot_max_chunk_size,
        ..Config::default()
    };
    config.validate()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_with_fsync_friendly_timeouts() {
        let config = build_config(&RaftTuning::default()).unwrap();
        assert_eq!(config.heartbeat_interval, 250);
        assert!(config.election_timeout_min >= 4 * config.heartbeat_interval);
        assert!(config.install_snapshot_timeout >= 1000);
    }

    #[test]
    fn inverted_election_range_is_rejected() {
        let tuning = RaftTuning {
            election_timeout_min_ms: 2000,
            election_timeout_max_ms: 1000,
            ..RaftTuning::default()
        };
        assert!(build_config(&tuning).is_err());
    }
}
