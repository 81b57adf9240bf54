//! Fault injection against real node processes (the cluster operations issue: "a fault-injection
//! harness", "a checker that runs after every scenario", and the operator tool).
//!
//! - [`checker`]: the invariants checked after every scenario (DESIGN.md invariants).
//! - [`crash`]: the record format of the storage-engine crash test.
//! - [`disk`]: a small filesystem to fill up (the full-disk scenario).
//! - [`hooks`]: the operator's fault commands of the live mode (kill, start, isolate, heal).
//! - [`hostile`]: the hostile scenario: honest writes while attackers flood, stall and lie.
//! - [`live`]: the live mode: scenarios against a running deployment, through hooks only.
//! - [`load`]: background clients that record every answer, and a checkpoint poller.
//! - [`proxy`]: a controllable TCP proxy between nodes (cut or delay one directed link).
//! - [`store_crash`]: the crash test of the node's whole Raft storage (log, state machine).
//! - [`scenarios`]: the scenarios themselves, shared by the `chaos_*` tests and `bin/chaos`.

pub mod checker;
pub mod crash;
pub mod disk;
pub mod hooks;
pub mod hostile;
pub mod live;
pub mod load;
pub mod proxy;
pub mod scenarios;
pub mod store_crash;

pub use checker::{check_cluster, CheckReport, LogVerifier, NodeView, Observations, Violation};
pub use load::{CheckpointPoller, Load, LoadConfig};
pub use proxy::{LinkProxy, LinkState};
pub use scenarios::{
    assert_scenario_passes, assert_scenario_passes_with, run, ScenarioOptions, ScenarioReport,
    PER_NODE_STORE_ONLY, SCENARIOS,
};
