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
//!
//! `chaos live` drives a deployment it did not start instead (issue "Chaos against a running
//! deployment"): the nodes' public URLs, the log's public key, and hook commands that kill,
//! start, isolate or heal one node (`rekor_cluster_tests::chaos::live`, `docs/operations.md`,
//! "Chaos-testing a live deployment"). Example against `scripts/local-cluster.sh`:
//!
//! ```text
//! chaos live --node http://127.0.0.1:3000,http://127.0.0.1:3010,http://127.0.0.1:3020 \
//!   --public-key local-cluster/keygen.txt \
//!   --kill-hook 'scripts/local-cluster.sh kill {index}' \
//!   --start-hook 'scripts/local-cluster.sh start-node {index}' \
//!   --scenario leader-kill --runs 10
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rekor_cluster_tests::chaos::hooks::Hook;
use rekor_cluster_tests::chaos::live::{
    parse_log_public_key, run_live, DurationFigures, LiveDeployment, LiveHooks, LiveOptions,
    LIVE_SCENARIOS,
};
use rekor_cluster_tests::chaos::{
    run, LoadConfig, LogVerifier, ScenarioOptions, ScenarioReport, PER_NODE_STORE_ONLY, SCENARIOS,
};

#[derive(Parser)]
#[command(
    name = "chaos",
    about = "Run chaos scenarios against a local rekor-node cluster, or (`chaos live`) against a running deployment",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// The rekor-node binary to test (local clusters; required unless --list).
    #[arg(long)]
    node_bin: Option<PathBuf>,
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
    /// Run every node on one shared tile store (`rekor-node serve --shared-tile-store`, one
    /// directory) instead of a store each. Without --scenario, the full-disk scenarios (a fault
    /// of one node's own disk) are left out.
    #[arg(long)]
    shared_tile_store: bool,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

#[derive(Subcommand)]
enum Mode {
    /// Drive a running deployment through hook commands (no access to its files or processes).
    Live(LiveArgs),
}

/// `chaos live`. Hook commands run through `sh -c` with `{index}` (1-based position in
/// --node), `{index0}` (0-based), `{id}` (the node's Raft id) and `{url}` filled in.
#[derive(clap::Args)]
struct LiveArgs {
    /// A node's public base URL (repeatable, or comma-separated), e.g. http://127.0.0.1:3000.
    #[arg(long = "node", value_delimiter = ',', required_unless_present = "list")]
    nodes: Vec<String>,
    /// The log's public key: PEM PUBLIC KEY, its base64 DER, or `rekor-node keygen` output.
    #[arg(long, required_unless_present = "list")]
    public_key: Option<PathBuf>,
    /// The log's origin (default: what the first node's /status.json names).
    #[arg(long)]
    origin: Option<String>,
    /// Kills one node abruptly, e.g. `docker compose kill node{index}`.
    #[arg(long)]
    kill_hook: Option<String>,
    /// Stops one node gracefully (SIGTERM), e.g. `docker compose stop node{index}`: the
    /// `leader-restart` scenario, a planned restart.
    #[arg(long)]
    stop_hook: Option<String>,
    /// Starts a killed node again (omit if the deployment restarts it by itself).
    #[arg(long)]
    start_hook: Option<String>,
    /// Cuts one node off from the others (or freezes it).
    #[arg(long)]
    isolate_hook: Option<String>,
    /// Undoes --isolate-hook.
    #[arg(long)]
    heal_hook: Option<String>,
    /// Deadline of every hook run, in seconds; a hook past it is killed (its process group).
    #[arg(long, default_value_t = 120)]
    hook_timeout_s: u64,
    /// Scenario to run (repeatable): leader-kill, leader-restart, follower-restart,
    /// leader-isolation, check.
    #[arg(long = "scenario", default_value = "leader-kill")]
    scenarios: Vec<String>,
    /// Runs of each scenario.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Open-loop load: new write requests per second, spread over the nodes.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Open-loop load: most requests outstanding at once.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Client-side timeout of one request, in milliseconds.
    #[arg(long, default_value_t = 4000)]
    request_timeout_ms: u64,
    /// Length of each load phase (before the fault, after recovery, after the node is back), in
    /// milliseconds.
    #[arg(long, default_value_t = 3000)]
    phase_ms: u64,
    /// How long to wait for a new leader, the first write after a fault, or a node to come
    /// back, in seconds.
    #[arg(long, default_value_t = 120)]
    recovery_timeout_s: u64,
    /// How long the checker waits for the nodes to serve one checkpoint, in seconds.
    #[arg(long, default_value_t = 60)]
    convergence_timeout_s: u64,
    /// Print the report as JSON on stdout (progress goes to stderr either way).
    #[arg(long)]
    json: bool,
    /// List the live scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Mode::Live(live)) = args.mode {
        return run_live_mode(live);
    }
    if args.list {
        for name in SCENARIOS {
            println!("{name}");
        }
        return Ok(());
    }
    let Some(node_bin) = &args.node_bin else {
        bail!("--node-bin is required (or run `chaos live` against a running deployment)");
    };
    let node_bin = node_bin
        .canonicalize()
        .with_context(|| format!("node binary {}", node_bin.display()))?;
    // The harness finds the binary through this variable; set before any thread exists.
    std::env::set_var("REKOR_NODE_BIN", &node_bin);
    let scenarios: Vec<String> = if args.scenarios.is_empty() {
        SCENARIOS
            .iter()
            .filter(|name| !(args.shared_tile_store && PER_NODE_STORE_ONLY.contains(name)))
            .map(|s| s.to_string())
            .collect()
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
    options.shared_tile_store = args.shared_tile_store;

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

fn run_live_mode(args: LiveArgs) -> Result<()> {
    if args.list {
        for name in LIVE_SCENARIOS {
            println!("{name}");
        }
        return Ok(());
    }
    let hook = |name: &'static str, template: &Option<String>| {
        template.as_ref().map(|template| Hook {
            name,
            template: template.clone(),
            timeout: Duration::from_secs(args.hook_timeout_s),
        })
    };
    let hooks = LiveHooks {
        kill: hook("kill", &args.kill_hook),
        stop: hook("stop", &args.stop_hook),
        start: hook("start", &args.start_hook),
        isolate: hook("isolate", &args.isolate_hook),
        heal: hook("heal", &args.heal_hook),
    };
    let key_file = args
        .public_key
        .clone()
        .context("--public-key is required")?;
    let key_text = std::fs::read_to_string(&key_file)
        .with_context(|| format!("reading {}", key_file.display()))?;
    let public_key = parse_log_public_key(&key_text)
        .with_context(|| format!("the log's public key {}", key_file.display()))?;
    let load = LoadConfig {
        rate: Some(args.rate),
        max_in_flight: args.max_in_flight,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        retry_pause: Duration::from_millis(100),
        ..LoadConfig::default()
    };
    let options = LiveOptions {
        urls: args.nodes.clone(),
        hooks,
        load,
        phase: Duration::from_millis(args.phase_ms),
        recovery_timeout: Duration::from_secs(args.recovery_timeout_s),
        convergence_timeout: Duration::from_secs(args.convergence_timeout_s),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let origin = match &args.origin {
            Some(origin) => origin.clone(),
            None => {
                let first = args.nodes.first().context("no --node given")?;
                LiveDeployment::served_origin(first).await?
            }
        };
        let verifier = LogVerifier::from_public_key_der(&origin, &public_key)
            .context("the log's public key")?;
        eprintln!(
            "chaos live: {} node(s) of {origin}, {} run(s) of {}, open-loop load at {}/s",
            args.nodes.len(),
            args.runs,
            args.scenarios.join(", "),
            args.rate
        );
        run_live(options, verifier, &args.scenarios, args.runs).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        println!("{report}");
    }
    if !report.passed() {
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
fn figures(label: &str, durations: Vec<Duration>) -> String {
    let Some(figures) = DurationFigures::of(durations) else {
        return String::new();
    };
    format!(
        " {label} over {} run(s): median {} ms, best {} ms, worst {} ms;",
        figures.count,
        figures.median.as_millis(),
        figures.best.as_millis(),
        figures.worst.as_millis()
    )
}
