//! The openraft `Config`, tuned for fsync'd appends to the log's segment files and HTTP RPCs
//! (openraft 0.9 `Config` docs: snapshots, timeouts).
//!
//! openraft bounds each AppendEntries RPC by `heartbeat_interval`, so the heartbeat must cover
//! an HTTP round trip plus the follower's fsync. Snapshot chunks get seconds, not openraft's
//! 200 ms default (which caused endless resend loops, PRs #630/#634). Snapshots are rare: the
//! log is compacted only every `snapshot_logs_since_last` entries.
//!
//! How long a failover takes (openraft 0.9.25, read from its engine): the leader ticks every
//! 1.5 × `heartbeat_interval` and sends a heartbeat on each tick. A follower that knew a leader
//! (a committed vote) stands for election only after `leader_lease + election_timeout` of
//! silence, where openraft fixes `leader_lease = election_timeout_max` and draws
//! `election_timeout` once per process from `[min, max)`; the check runs on the tick, so it fires
//! up to one tick late. A voter also refuses any candidate while its own lease (max) since the
//! leader's last message runs. A candidate whose log is shorter than a voter's adds
//! `2 × max` before its next try. So a dead leader is replaced after `max + [min, max)` plus up to
//! a tick, and the unlucky case (the first candidate has the shorter log) costs another
//! `min..max`. [`RaftTuning::campaign_after`] gives the first range.
//!
//! The defaults (100 ms heartbeat, 300–400 ms election timeout) bring that to 0.7–0.8 s plus up
//! to a 150 ms tick, so a leader kill costs a median of under a second of write unavailability
//! (docs/benchmarks.md), and they still give a follower 0.7 s without any AppendEntries (about
//! five heartbeats) before it campaigns: ten minutes of the benchmark's saturating load on two
//! cores left `rekor_raft_term` at 1. The heartbeat is not lower because it is also the
//! AppendEntries time limit: under that load a few 100 ms AppendEntries time out and are resent
//! (the batch is applied once; a resend costs bandwidth, not correctness), and the heartbeat only
//! moves a failover by up to one tick anyway. The earlier defaults were 150 / 500–1000 ms
//! (1.5–2.0 s) and, before that, 250 / 1000–2000 ms. Operators on slower disks or
//! networks raise them with `serve --raft-heartbeat-ms` and `--raft-election-timeout-{min,max}-ms`
//! (docs/operations.md, "Failover timing").

use std::time::Duration;

use openraft::{Config, ConfigError, SnapshotPolicy};

/// Default leader heartbeat (and AppendEntries TTL), ms.
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// Default lower bound of the election timeout, ms.
pub const DEFAULT_ELECTION_TIMEOUT_MIN_MS: u64 = 300;
/// Default upper bound of the election timeout, ms (also openraft's leader lease).
pub const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 400;
/// Shortest heartbeat accepted: it is also the TTL of an AppendEntries carrying a batch, which
/// must cover an HTTP round trip and the follower's fsync.
pub const MIN_HEARTBEAT_MS: u64 = 20;
/// The election timeout must be at least this many heartbeats, so that a follower waits for
/// more than one missed heartbeat (they go out every 1.5 heartbeats) even as a candidate, where
/// no lease is added.
pub const MIN_ELECTION_TIMEOUT_HEARTBEATS: u64 = 3;

/// A heartbeat and election-timeout combination that cannot work.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TuningError {
    #[error("the Raft heartbeat must be at least {MIN_HEARTBEAT_MS} ms (got {0} ms)")]
    HeartbeatTooShort(u64),
    #[error(
        "the minimum election timeout ({min_ms} ms) must be at least {MIN_ELECTION_TIMEOUT_HEARTBEATS} \
         heartbeats ({heartbeat_ms} ms each)"
    )]
    ElectionTimeoutTooShort { min_ms: u64, heartbeat_ms: u64 },
    #[error(
        "the maximum election timeout ({max_ms} ms) must be greater than the minimum ({min_ms} ms)"
    )]
    EmptyElectionRange { min_ms: u64, max_ms: u64 },
    #[error("openraft rejected the configuration: {0}")]
    Openraft(#[from] ConfigError),
}

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
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            election_timeout_min_ms: DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            install_snapshot_timeout_ms: 10_000,
            snapshot_logs_since_last: 250,
            max_in_snapshot_log_to_keep: 64,
            max_payload_entries: 64,
            snapshot_max_chunk_size: 4 * 1024 * 1024,
        }
    }
}

impl RaftTuning {
    /// Checks the heartbeat and election timeouts against the rules above (the rest is checked
    /// by openraft in [`build_config`]).
    pub fn check_timing(&self) -> Result<(), TuningError> {
        if self.heartbeat_ms < MIN_HEARTBEAT_MS {
            return Err(TuningError::HeartbeatTooShort(self.heartbeat_ms));
        }
        if self.election_timeout_min_ms < MIN_ELECTION_TIMEOUT_HEARTBEATS * self.heartbeat_ms {
            return Err(TuningError::ElectionTimeoutTooShort {
                min_ms: self.election_timeout_min_ms,
                heartbeat_ms: self.heartbeat_ms,
            });
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(TuningError::EmptyElectionRange {
                min_ms: self.election_timeout_min_ms,
                max_ms: self.election_timeout_max_ms,
            });
        }
        Ok(())
    }

    /// After how long without a message from a live leader a follower stands for election, from
    /// the earliest to the latest draw of its election timeout (openraft 0.9: the lease, which
    /// is the maximum election timeout, plus the timeout). The tick adds up to
    /// 1.5 × heartbeat to either bound.
    pub fn campaign_after(&self) -> (Duration, Duration) {
        let lease = self.election_timeout_max_ms;
        (
            Duration::from_millis(lease.saturating_add(self.election_timeout_min_ms)),
            Duration::from_millis(lease.saturating_add(self.election_timeout_max_ms)),
        )
    }
}

/// The validated openraft `Config` for `tuning`.
pub fn build_config(tuning: &RaftTuning) -> Result<Config, TuningError> {
    tuning.check_timing()?;
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
    Ok(config.validate()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_with_fsync_friendly_timeouts() {
        let config = build_config(&RaftTuning::default()).unwrap();
        assert_eq!(config.heartbeat_interval, DEFAULT_HEARTBEAT_MS);
        assert!(
            config.election_timeout_min
                >= MIN_ELECTION_TIMEOUT_HEARTBEATS * config.heartbeat_interval
        );
        assert!(config.install_snapshot_timeout >= 1000);
    }

    #[test]
    fn default_failover_is_under_a_second_with_five_heartbeats_of_silence_tolerated() {
        let tuning = RaftTuning::default();
        let (earliest, latest) = tuning.campaign_after();
        assert_eq!(earliest, Duration::from_millis(700));
        assert_eq!(latest, Duration::from_millis(800));
        // The latest campaign plus one late tick stays under a second...
        let tick = Duration::from_millis(tuning.heartbeat_ms * 3 / 2);
        assert!(latest + tick < Duration::from_secs(1));
        // ...and a follower waits for at least five heartbeat periods of silence first.
        assert!(earliest >= Duration::from_millis(5 * tuning.heartbeat_ms));
    }

    #[test]
    fn too_short_heartbeat_is_rejected() {
        let tuning = RaftTuning {
            heartbeat_ms: 5,
            election_timeout_min_ms: 100,
            election_timeout_max_ms: 200,
            ..RaftTuning::default()
        };
        assert_eq!(
            build_config(&tuning).unwrap_err(),
            TuningError::HeartbeatTooShort(5)
        );
    }

    #[test]
    fn election_timeout_of_fewer_than_three_heartbeats_is_rejected() {
        let tuning = RaftTuning {
            heartbeat_ms: 100,
            election_timeout_min_ms: 250,
            election_timeout_max_ms: 600,
            ..RaftTuning::default()
        };
        assert!(matches!(
            build_config(&tuning),
            Err(TuningError::ElectionTimeoutTooShort { .. })
        ));
        let tuning = RaftTuning {
            election_timeout_min_ms: 300,
            ..tuning
        };
        assert!(build_config(&tuning).is_ok());
    }

    #[test]
    fn equal_election_bounds_are_rejected() {
        // openraft draws from [min, max): an empty range would panic at start-up.
        let tuning = RaftTuning {
            election_timeout_min_ms: 800,
            election_timeout_max_ms: 800,
            ..RaftTuning::default()
        };
        assert!(matches!(
            build_config(&tuning),
            Err(TuningError::EmptyElectionRange { .. })
        ));
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
