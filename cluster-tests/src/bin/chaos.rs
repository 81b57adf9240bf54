//! `chaos`: chaos-test failover of `rekor-node` on your own machine (cluster operations issue,
//! "the chaos harness is also a tool for operators").
//!
//! Starts local clusters of the given binary on loopback, runs the scenarios of
//! `rekor_cluster_tests::chaos::scenarios` against them (each ends with the invariant checker), and
//! prints a report: per run pass/fail, write unavailability and entries acknowledged, then per
//! scenario the median and worst unavailability over the runs. Exits 1 if any run failed.
//!
//! The `full-disk-*` scenarios put every node's data directory on a small tmpfs, so they need root
//! (or CAP_SYS_ADMIN) to mount; `--list` names every scenario.
//!
//! Example: `chaos --node-bin target/release/rekor-node --nodes 3 --scenario leader-kill --runs 20`

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use rekor_cluster_tests::chaos::{run, ScenarioOptions, ScenarioReport, SCENARIOS};

#[derive(Parser)]
#[command(
    name = "chaos",
    about = "Run chaos scenarios against a local rekor-node cluster"
)]
struct Args {
    /// The rekor-node binary to test.
    #[arg(long)]
    node_bin: PathBuf,
    /// Nodes per cluster (at least 3).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Scenario to run (repeatable). Default: all of them.
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Runs of each scenario (each on a fresh cluster).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Length of each load phase (before, during and after the fault), in milliseconds.
    #[arg(long, default_value_t = 1500)]
    phase_ms: u64,
    /// Concurrent load clients.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Copy every node's log into this directory at the end of each run (for a timeline of a
    /// failover, run with e.g. RUST_LOG=info,openraft=info).
    #[arg(long)]
    keep_logs: Option<PathBuf>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.list {
        for name in SCENARIOS {
            println!("{name}");
        }
        return Ok(());
    }
    let node_bin = args
        .node_bin
        .canonicalize()
        .with_context(|| format!("node binary {}", args.node_bin.display()))?;
    // The harness finds the binary through this variable; set before any thread exists.
    std::env::set_var("REKOR_NODE_BIN", &node_bin);
    let scenarios: Vec<String> = if args.scenarios.is_empty() {
        SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        args.scenarios.clone()
    };
    for name in &scenarios {
        if !SCENARIOS.contains(&name.as_str()) {
            bail!(
                "unknown scenario {name:?} (known: {})",
                SCENARIOS.join(", ")
            );
        }
    }
    let mut options = ScenarioOptions::from_env();
    options.nodes = args.nodes;
    options.phase = Duration::from_millis(args.phase_ms);
    options.load.workers = args.clients;
    options.keep_logs = args.keep_logs.clone();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut all_passed = true;
    println!(
        "chaos: {} node(s) of {}, {} run(s) per scenario",
        args.nodes,
        node_bin.display(),
        args.runs
    );
    for name in &scenarios {
        let mut reports: Vec<ScenarioReport> = Vec::new();
        for attempt in 1..=args.runs {
            match runtime.block_on(run(name, &options)) {
                Ok(report) => {
                    println!("[{attempt}/{}] {report}", args.runs);
                    if !report.passed {
                        all_passed = false;
                        eprintln!("{}", report.logs);
                    }
                    reports.push(report);
                }
                Err(error) => {
                    all_passed = false;
                    println!("[{attempt}/{}] {name:<22} ERROR {error:#}", args.runs);
                }
            }
        }
        print_summary(name, &reports);
    }
    if !all_passed {
        std::process::exit(1);
    }
    Ok(())
}

fn print_summary(name: &str, reports: &[ScenarioReport]) {
    let passed = reports.iter().filter(|r| r.passed).count();
    let acknowledged: usize = reports.iter().map(|r| r.acknowledged).sum();
    let unavailability = figures(
        "write unavailability",
        reports.iter().filter_map(|r| r.unavailability).collect(),
    );
    let election = figures(
        "new leader after",
        reports.iter().filter_map(|r| r.election).collect(),
    );
    println!(
        "== {name}: {passed}/{} passed, {acknowledged} entries acknowledged;{unavailability}{election}",
        reports.len()
    );
}

/// ` <label> over N run(s): median, best and worst`, or nothing without measurements.
fn figures(label: &str, mut durations: Vec<Duration>) -> String {
    durations.sort_unstable();
    let (Some(best), Some(worst)) = (durations.first(), durations.last()) else {
        return String::new();
    };
    let middle = durations.len() / 2;
    let median = if durations.len().is_multiple_of(2) {
        (durations[middle - 1] + durations[middle]) / 2
    } else {
        durations[middle]
    };
    format!(
        " {label} over {} run(s): median {} ms, best {} ms, worst {} ms;",
        durations.len(),
        median.as_millis(),
        best.as_millis(),
        worst.as_millis()
    )
}
