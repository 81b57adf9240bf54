//! The benchmark scenarios and their report (the performance issue's "benchmark command").
//!
//! [`run_bench`] starts the system under test itself — real `rekor-node` processes on loopback
//! through [`crate::Cluster`] — and measures, in one run on one machine:
//! - the same-run ceiling: decoding and validating (signature verification included) the very
//!   requests of the write scenarios on all cores, with no HTTP, Raft or storage;
//! - writes: sustained entries/s and submit-to-201 latency for each cluster size;
//! - reads: tiles, entry bundles and the checkpoint from a node, next to nginx serving the same
//!   files from the node's tile directory;
//! - per node: peak RSS, bytes on disk per entry, and the node's own batch, commit, integrate and
//!   validation timings from `/metrics` (where the time goes).
//!
//! - growth: integration rate, proof latency, disk bytes per entry and peak RSS at 0, 1 M and
//!   10 M entries, through the node's integration code in process ([`super::growth`]); it runs
//!   first, before the request pool takes memory.
//!
//! Every scenario's files (the growth directory, each cluster's data and shared tile store) stay
//! on disk until the last scenario ends, so a full run needs about 25 GB free under the
//! temporary directory: no scenario then starts right after a mass deletion, which would slow
//! its own file creations ([`super::growth::run_growth_keeping_files`] says why).
//!
//! # Parts
//!
//! - this file: what to run ([`BenchSettings`]) and [`run_bench`], which runs the scenarios in
//!   order and stamps the report with the machine and commit;
//! - `scenarios`: the ceiling, write and read scenario runners;
//! - `nginx`: the nginx server the read scenarios compare against;
//! - `report`: the report's figures and its Markdown rendering ([`BenchReport::to_markdown`]).

mod nginx;
mod report;
mod scenarios;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;

pub use report::{
    BenchReport, CeilingFigures, NodeFigures, PoolFigures, ReadFigures, ReadsReport, WriteFigures,
};
pub use scenarios::measure_ceiling;

use super::growth::{run_growth_keeping_files, GrowthSettings};
use super::requests::{RequestMix, RequestPool};
use crate::kms_fakes::vault::FakeVault;
use crate::{Cluster, Signer};
use report::short_path;
use scenarios::{read_scenarios, write_scenario};

/// What to run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchSettings {
    /// Cluster sizes to measure writes on, in order (the first one also serves the reads).
    pub node_counts: Vec<usize>,
    /// How long each write scenario issues requests.
    pub write_duration: Duration,
    /// Closed-loop clients for writes (each POST waits for a checkpoint, so it takes many
    /// clients to keep a node busy: throughput ≈ clients / latency).
    pub write_concurrency: usize,
    /// How long each read scenario runs.
    pub read_duration: Duration,
    pub read_concurrency: usize,
    /// Pre-signed requests (a write scenario stops early if it uses them all).
    pub requests: usize,
    pub mix: RequestMix,
    /// Extra `serve` flags for every node.
    pub node_args: Vec<String>,
    /// nginx binary (name on PATH or path); `None` skips the nginx comparison.
    pub nginx: Option<String>,
    /// Upper bound on the ceiling measurement.
    pub ceiling_duration: Duration,
    /// Check the inclusion proof of every n-th 201.
    pub proof_sample_every: u64,
    /// Run the read scenarios.
    pub reads: bool,
    /// The growth scenario; `None` skips it.
    pub growth: Option<GrowthSettings>,
    /// Also run each multi-node write scenario with plain HTTP between the nodes, right after
    /// the mutual-TLS run, to show what TLS costs.
    pub plain_comparison: bool,
    /// Also run each multi-node write scenario with the nodes signing through a remote signer
    /// (the Vault transit fake, in this process) that adds this much to every signature, right
    /// after the key-file run, to show what a slow KMS or HSM costs.
    pub remote_signer_delay: Option<Duration>,
    /// Cluster sizes to run the write scenario on once more with every node on one shared tile
    /// directory (`--shared-tile-store`: only the leader writes tiles), after the other runs.
    pub shared_store_nodes: Vec<usize>,
    /// Times each write scenario runs, each on a fresh cluster, in rounds of every scenario in
    /// turn; the report shows the run with the median entries/s and lists every run's rate in
    /// the notes (the noise between runs on a small machine is larger than most single changes).
    pub repeats: usize,
}

/// One run of a write scenario, with the note on its shared tile store if it had one.
struct ScenarioRun {
    figures: WriteFigures,
    store_note: Option<String>,
}

/// The run with the median entries/s of one scenario's repeats (the lower middle one of an
/// even count), and, when there was more than one, a note with every run's rate.
fn median_run(mut runs: Vec<ScenarioRun>) -> (ScenarioRun, Option<String>) {
    let rate = |run: &ScenarioRun| run.figures.load.throughput_per_s;
    let rates: Vec<String> = runs.iter().map(|run| format!("{:.0}", rate(run))).collect();
    runs.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    let count = runs.len();
    let median = runs.swap_remove(count.saturating_sub(1) / 2);
    let note = (count > 1).then(|| {
        let figures = &median.figures;
        format!(
            "{} nodes, {}, {}, {} tile store: {count} runs on fresh clusters, {} entries/s in run \
             order; the tables show the median run.",
            figures.nodes,
            figures.transport,
            figures.signer,
            figures.tile_store,
            rates.join(", ")
        )
    });
    (median, note)
}

/// One write run: how the nodes talk and sign.
#[derive(Debug, Clone, Copy, PartialEq)]
enum WriteRun {
    /// Mutual TLS between the nodes, a key file.
    Default,
    /// Plain HTTP between the nodes, a key file.
    Plain,
    /// Mutual TLS, a remote signer adding this delay per signature.
    RemoteSigner(Duration),
    /// Mutual TLS, a key file, every node on one shared tile directory.
    SharedStore,
}

impl Default for BenchSettings {
    fn default() -> Self {
        Self {
            node_counts: vec![1, 3],
            write_duration: Duration::from_secs(60),
            write_concurrency: 1024,
            read_duration: Duration::from_secs(10),
            read_concurrency: 64,
            requests: 400_000,
            mix: RequestMix::default(),
            node_args: Vec::new(),
            nginx: Some("nginx".into()),
            ceiling_duration: Duration::from_secs(10),
            proof_sample_every: 100,
            reads: true,
            growth: Some(GrowthSettings::default()),
            plain_comparison: true,
            remote_signer_delay: Some(Duration::from_millis(30)),
            shared_store_nodes: Vec::new(),
            repeats: 1,
        }
    }
}

/// Runs every scenario of `settings`. Progress goes to stderr.
pub async fn run_bench(settings: &BenchSettings) -> Result<BenchReport> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut notes = Vec::new();

    // Every scenario's files stay until the run ends (dropped in reverse order on return): see
    // `run_growth_keeping_files` for why a mass deletion must not precede a measurement.
    let mut finished = FinishedScenarios::default();

    // Growth first: its peak RSS is then free of the request pool.
    let growth = match &settings.growth {
        Some(growth) if !growth.sizes.is_empty() => {
            eprintln!("growth scenario: sizes {:?}…", growth.sizes);
            let (report, dir) = run_growth_keeping_files(growth)
                .await
                .context("growth scenario")?;
            finished.dirs.push(dir);
            Some(report)
        }
        _ => None,
    };

    eprintln!("signing {} requests on {cores} threads…", settings.requests);
    let started = Instant::now();
    let (requests, mix) = (settings.requests, settings.mix.clone());
    let pool =
        tokio::task::spawn_blocking(move || RequestPool::generate(requests, &mix, cores)).await??;
    let pool_figures = PoolFigures {
        requests: pool.bodies.len(),
        by_key: pool.counts.clone(),
        certificates: pool.certificates,
        mean_body_bytes: pool.mean_body_bytes(),
        signing_s: started.elapsed().as_secs_f64(),
    };
    let bodies = Arc::new(pool.bodies);

    eprintln!("measuring the validation ceiling…");
    let ceiling = {
        let (bodies, budget) = (bodies.clone(), settings.ceiling_duration);
        tokio::task::spawn_blocking(move || measure_ceiling(&bodies, cores, budget)).await?
    };
    if ceiling.failures > 0 {
        bail!(
            "{} pre-signed requests failed validation: the generator is broken",
            ceiling.failures
        );
    }

    let mut writes = Vec::new();
    let mut reads = None;
    let runs = settings.node_counts.iter().flat_map(|&nodes| {
        let multi = nodes > 1;
        let remote = settings
            .remote_signer_delay
            .filter(|_| multi)
            .map(|delay| (nodes, WriteRun::RemoteSigner(delay)));
        let plain = (settings.plain_comparison && multi).then_some((nodes, WriteRun::Plain));
        std::iter::once((nodes, WriteRun::Default))
            .chain(remote)
            .chain(plain)
    });
    let shared = settings
        .shared_store_nodes
        .iter()
        .map(|&nodes| (nodes, WriteRun::SharedStore));
    let scenarios: Vec<(usize, WriteRun)> = runs.chain(shared).collect();
    let repeats = settings.repeats.max(1);
    // Rounds of every scenario in turn (ABCABC, not AABBCC): the machine's speed drifts by tens
    // of percent within a full run (docs/benchmarks.md, part eleven), and back-to-back repeats
    // would hand one scenario's repeats all of a slow spell.
    let mut runs_by_scenario: Vec<Vec<ScenarioRun>> = scenarios
        .iter()
        .map(|_| Vec::with_capacity(repeats))
        .collect();
    for repeat in 0..repeats {
        if repeats > 1 {
            eprintln!("round {} of {repeats}:", repeat + 1);
        }
        for (position, &(nodes, run)) in scenarios.iter().enumerate() {
            let serves_reads = position == 0 && repeat == 0 && settings.reads;
            let (scenario_run, run_reads) = write_run(
                settings,
                nodes,
                run,
                serves_reads,
                &bodies,
                ceiling.per_second,
                &mut finished,
            )
            .await?;
            if run_reads.is_some() {
                reads = run_reads;
            }
            runs_by_scenario[position].push(scenario_run);
        }
    }
    for (&(nodes, _), runs_of_scenario) in scenarios.iter().zip(runs_by_scenario) {
        if runs_of_scenario.iter().any(|r| r.figures.load.exhausted) {
            notes.push(format!(
                "{nodes}-node writes used all {} pre-signed requests before the duration ended; \
                 raise --requests for a full-length run.",
                bodies.len()
            ));
        }
        let (median, note) = median_run(runs_of_scenario);
        notes.extend(median.store_note);
        notes.extend(note);
        writes.push(median.figures);
    }
    eprintln!("removing the scenarios' files…");
    drop(finished);

    Ok(BenchReport {
        generated_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        commit: command_output("git", &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()),
        cores,
        cpu_model: cpu_model().unwrap_or_else(|| "unknown".into()),
        // Relative to the workspace (`target/…`): a report names no path of the machine it ran on.
        node_binary: crate::node_binary()
            .map(|p| short_path(&p.display().to_string()))
            .unwrap_or_default(),
        settings: settings.clone(),
        pool: pool_figures,
        ceiling,
        writes,
        reads,
        growth,
        notes,
    })
}

/// Starts a fresh cluster for one run of a write scenario, measures it (and the reads, on the
/// run that serves them), and leaves the stopped cluster and its files in `finished`.
async fn write_run(
    settings: &BenchSettings,
    nodes: usize,
    run: WriteRun,
    serves_reads: bool,
    bodies: &Arc<Vec<Bytes>>,
    ceiling_per_second: f64,
    finished: &mut FinishedScenarios,
) -> Result<(ScenarioRun, Option<ReadsReport>)> {
    let mut node_args: Vec<&str> = settings.node_args.iter().map(String::as_str).collect();
    // With one node, the reads run against its read listener too (every node of a cluster gets
    // the same flags, so a port for one node only).
    let read_listener = (serves_reads && nodes == 1)
        .then(|| crate::free_port().map(|port| format!("127.0.0.1:{port}")))
        .transpose()?;
    if let Some(address) = &read_listener {
        node_args.extend(["--read-listen", address.as_str()]);
    }
    // Lives as long as the cluster signing through it.
    let mut remote_signer = None;
    // The shared tile directory; lives as long as the cluster on it.
    let mut shared_store = None;
    let mut cluster = match run {
        WriteRun::Plain => {
            eprintln!("write scenario: {nodes} node(s), plain HTTP between them…");
            Cluster::start_plain(nodes, &node_args).await?
        }
        WriteRun::Default => {
            eprintln!("write scenario: {nodes} node(s), mutual TLS between them…");
            Cluster::start(nodes, &node_args).await?
        }
        WriteRun::RemoteSigner(delay) => {
            eprintln!(
                "write scenario: {nodes} node(s), a remote signer adding {delay:?} per signature…"
            );
            let vault = FakeVault::start()?;
            vault.controls().set_delay(delay);
            let signer = Signer {
                key: Some(FakeVault::uri(FakeVault::ED25519_KEY)),
                env: vault.env(),
            };
            remote_signer = Some(vault);
            Cluster::start_with_signer(nodes, &node_args, signer).await?
        }
        WriteRun::SharedStore => {
            eprintln!("write scenario: {nodes} node(s) on one shared tile store…");
            let dir = tempfile::tempdir()?;
            let tiles = dir.path().join("tiles").display().to_string();
            shared_store = Some(dir);
            let mut args = node_args.clone();
            args.extend(["--shared-tile-store", "--tile-store", &tiles]);
            Cluster::start(nodes, &args).await?
        }
    };
    let mut figures = match write_scenario(&cluster, settings, bodies, ceiling_per_second).await {
        Ok(figures) => figures,
        Err(error) => bail!("{nodes}-node write scenario: {error:#}\n{}", tail(&cluster)),
    };
    let reads = if serves_reads {
        eprintln!("read scenarios…");
        let listener = read_listener.as_deref();
        Some(read_scenarios(&cluster, settings, figures.tree_size, listener).await?)
    } else {
        None
    };
    if let (WriteRun::RemoteSigner(delay), Some(vault)) = (run, &remote_signer) {
        figures.signer = format!(
            "remote (Vault transit fake), +{} ms per signature",
            delay.as_millis()
        );
        figures.remote_signatures = Some(vault.controls().signatures());
    }
    let mut store_note = None;
    if let Some(dir) = &shared_store {
        figures.tile_store = "shared";
        // Outside every node's data directory, so not in the per-node figures.
        if let Ok(bytes) = super::system::dir_bytes(&dir.path().join("tiles")) {
            let per_entry = if figures.tree_size > 0 {
                format!(
                    ", {:.0} bytes/entry",
                    bytes as f64 / figures.tree_size as f64
                )
            } else {
                String::new()
            };
            store_note = Some(format!(
                "{nodes}-node shared-tile-store run: the one shared tile directory holds {:.1} \
                 MiB{per_entry}, not counted in the nodes' data directories.",
                bytes as f64 / (1024.0 * 1024.0)
            ));
        }
    }
    cluster.kill_all();
    finished.clusters.push(cluster);
    finished.dirs.extend(shared_store);
    Ok((
        ScenarioRun {
            figures,
            store_note,
        },
        reads,
    ))
}

/// What finished scenarios leave on disk, kept until the run ends: clusters (their nodes stopped)
/// and directories. Fields drop in order, clusters before the directories they may use.
#[derive(Default)]
struct FinishedScenarios {
    clusters: Vec<Cluster>,
    dirs: Vec<tempfile::TempDir>,
}

/// The last lines of every node's log, for an error message.
fn tail(cluster: &Cluster) -> String {
    let logs = cluster.logs();
    let lines: Vec<&str> = logs.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}
