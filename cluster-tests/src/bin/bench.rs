//! `bench`: starts rekor-node clusters on loopback, runs the benchmark scenarios and writes the
//! report (Markdown and JSON). See `rekor_cluster_tests::load::bench` and `docs/benchmarks.md`.
//!
//! The Markdown file keeps whatever follows the line `<!-- analysis -->` in the existing file,
//! so a hand-written analysis of the figures survives regeneration.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use rekor_cluster_tests::load::bench::{run_bench, BenchSettings};
use rekor_cluster_tests::load::growth::GrowthSettings;
use rekor_cluster_tests::load::RequestMix;

/// The line after which `docs/benchmarks.md` holds hand-written text that regeneration keeps.
const ANALYSIS_MARKER: &str = "<!-- analysis -->";

/// Benchmark harness for the Rekor v2 cluster.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Cluster sizes for the write scenarios (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    nodes: Vec<usize>,
    /// Seconds of writes per scenario.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Closed-loop clients for writes.
    #[arg(long, default_value_t = 1024)]
    concurrency: usize,
    /// Seconds per read workload.
    #[arg(long, default_value_t = 10.0)]
    read_duration: f64,
    /// Closed-loop clients for reads.
    #[arg(long, default_value_t = 64)]
    read_concurrency: usize,
    /// Requests to pre-sign (default: 16,000 per second of write duration, above what one node
    /// logs here, so that no run ends early for want of requests).
    #[arg(long)]
    requests: Option<usize>,
    /// Request mix, e.g. `p256=85,p384=10,rsa=5,cert=50`.
    #[arg(long, default_value = "p256=85,p384=10,rsa=5,cert=50")]
    mix: RequestMix,
    /// Extra flag for every node's `serve` (repeat; e.g. `--node-arg=--batch-max-size=1024`).
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    node_args: Vec<String>,
    /// rekor-node binary (default: target/release/rekor-node if built, else target/debug).
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// nginx binary for the read comparison.
    #[arg(long, default_value = "nginx")]
    nginx: String,
    /// Skip the nginx comparison.
    #[arg(long)]
    no_nginx: bool,
    /// Skip the plain-HTTP run of each multi-node write scenario (by default each runs with
    /// mutual TLS between the nodes, then again without, to show what TLS costs).
    #[arg(long)]
    no_plain_comparison: bool,
    /// Latency, in milliseconds, that the remote-signer run of each multi-node write scenario
    /// adds to every checkpoint signature (a Vault transit fake in this process); 0 skips that run.
    #[arg(long, default_value_t = 30)]
    remote_signer_delay_ms: u64,
    /// Cluster sizes (comma-separated) to run the write scenario on once more with every node
    /// on one shared tile directory (`serve --shared-tile-store`), reported as rows of their
    /// own. Default: none.
    #[arg(long, value_delimiter = ',')]
    shared_store_nodes: Vec<usize>,
    /// Times each write scenario runs, each on a fresh cluster, in rounds of every scenario in
    /// turn (so a slow spell of the machine does not fall on one scenario); the tables show the
    /// run with the median entries/s and the notes list every run's rate. 3 narrows the noise
    /// between runs (and shows it), at about 7 more minutes per full run (25 against 18 here)
    /// and about 40 GB free disk: every run's files stay until the end.
    #[arg(long, default_value_t = 1)]
    repeats: usize,
    /// Run against a debug build of rekor-node (for smoke tests; its figures are not
    /// comparable).
    #[arg(long)]
    allow_debug_node: bool,
    /// Skip the read scenarios.
    #[arg(long)]
    no_reads: bool,
    /// Upper bound, in seconds, of the validation-ceiling measurement.
    #[arg(long, default_value_t = 10.0)]
    ceiling_duration: f64,
    /// Check the inclusion proof of every n-th 201.
    #[arg(long, default_value_t = 100)]
    proof_sample_every: u64,
    /// Log sizes of the growth scenario (comma-separated; empty skips it).
    #[arg(long, default_value = "0,1000000,10000000")]
    growth_sizes: String,
    /// Skip the growth scenario.
    #[arg(long)]
    no_growth: bool,
    /// Entries timed at each growth size (about 10 s: shorter windows are dominated by noise).
    #[arg(long, default_value_t = 1_000_000)]
    growth_window: u64,
    /// Inclusion proofs built and verified at each growth size.
    #[arg(long, default_value_t = 1_000)]
    growth_proofs: usize,
    /// Directory under which the growth scenario's temporary tile directory is made (default:
    /// the temp dir; 10 M entries take about 10 GB, removed afterwards).
    #[arg(long)]
    growth_dir: Option<PathBuf>,
    /// Markdown report path.
    #[arg(long, default_value = "docs/benchmarks.md")]
    markdown: PathBuf,
    /// JSON report path (default: the Markdown report's, ending in `.json`, so a report written
    /// elsewhere does not overwrite `docs/benchmarks.json`).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The node's allocator, so that what this process measures of the node's code (the growth
/// scenario's memory) is what a node would hold.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> Result<()> {
    let args = Args::parse();
    // The growth scenario runs the node's code in this process: same malloc arenas as a node.
    rekor_cluster_tests::load::system::bound_malloc_arenas_like_the_node();
    // Choose the node binary before any thread exists (the harness reads REKOR_NODE_BIN).
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let node_bin = args.node_bin.clone().or_else(|| {
        if std::env::var_os("REKOR_NODE_BIN").is_some() {
            return None;
        }
        let release = workspace.join("target/release/rekor-node");
        release.exists().then_some(release)
    });
    if let Some(bin) = node_bin {
        std::env::set_var("REKOR_NODE_BIN", bin);
    }
    // A debug node is several times slower: its figures would read as a regression.
    let chosen = rekor_cluster_tests::node_binary()?;
    if chosen.components().any(|part| part.as_os_str() == "debug") && !args.allow_debug_node {
        anyhow::bail!(
            "the node binary {} is a debug build; build the release one \
             (`cargo build --release -p rekor-node`) or pass --allow-debug-node",
            chosen.display()
        );
    }
    let settings = BenchSettings {
        node_counts: args.nodes.clone(),
        write_duration: Duration::from_secs_f64(args.duration.max(0.0)),
        write_concurrency: args.concurrency,
        read_duration: Duration::from_secs_f64(args.read_duration.max(0.0)),
        read_concurrency: args.read_concurrency,
        requests: args
            .requests
            .unwrap_or((args.duration.max(1.0) * 16_000.0) as usize),
        mix: args.mix.clone(),
        node_args: args.node_args.clone(),
        nginx: (!args.no_nginx).then(|| args.nginx.clone()),
        ceiling_duration: Duration::from_secs_f64(args.ceiling_duration.max(0.0)),
        proof_sample_every: args.proof_sample_every,
        reads: !args.no_reads,
        growth: growth_settings(&args)?,
        plain_comparison: !args.no_plain_comparison,
        remote_signer_delay: (args.remote_signer_delay_ms > 0)
            .then(|| Duration::from_millis(args.remote_signer_delay_ms)),
        shared_store_nodes: args.shared_store_nodes.clone(),
        repeats: args.repeats,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run_bench(&settings))?;

    let command = regenerate_command(&args);
    let mut markdown = report.to_markdown(&command);
    let previous = std::fs::read_to_string(&args.markdown).unwrap_or_default();
    markdown.push('\n');
    markdown.push_str(ANALYSIS_MARKER);
    markdown.push('\n');
    if let Some((_, analysis)) = previous.split_once(ANALYSIS_MARKER) {
        markdown.push_str(analysis.trim_start_matches('\n'));
    }
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| args.markdown.with_extension("json"));
    for path in [&args.markdown, &json] {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
    }
    std::fs::write(&args.markdown, markdown)
        .with_context(|| format!("writing {}", args.markdown.display()))?;
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    eprintln!("wrote {} and {}", args.markdown.display(), json.display());
    for w in &report.writes {
        eprintln!(
            "{} node(s), {} tile store: {:.0} entries/s, p50 {:.1} ms, p99 {:.1} ms, errors {}",
            w.nodes,
            w.tile_store,
            w.load.throughput_per_s,
            w.load.latency.p50_ms,
            w.load.latency.p99_ms,
            w.load.error_count()
        );
    }
    if let Some(growth) = &report.growth {
        for p in &growth.points {
            eprintln!(
                "growth at {}: integration {:.0} entries/s (ratio {}), Raft storage {:.0} \
                 entries/s (ratio {}), proofs p50 {:.2} ms p99 {:.2} ms, {:.0} disk bytes/entry, \
                 peak RSS {} MiB",
                p.size,
                p.entries_per_s,
                p.ratio_to_first
                    .map_or_else(|| "–".into(), |r| format!("{r:.2}")),
                p.raft_entries_per_s,
                p.raft_ratio_to_first
                    .map_or_else(|| "–".into(), |r| format!("{r:.2}")),
                p.proofs.p50_ms,
                p.proofs.p99_ms,
                p.disk_bytes_per_entry.unwrap_or(0.0),
                p.peak_rss_bytes.unwrap_or(0) >> 20
            );
        }
    }
    Ok(())
}

/// The growth scenario's settings from the flags; `None` if it is skipped.
fn growth_settings(args: &Args) -> Result<Option<GrowthSettings>> {
    let sizes = args
        .growth_sizes
        .split(',')
        .map(str::trim)
        .filter(|size| !size.is_empty())
        .map(|size| {
            size.parse::<u64>()
                .with_context(|| format!("growth size {size:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    if args.no_growth || sizes.is_empty() {
        return Ok(None);
    }
    Ok(Some(GrowthSettings {
        sizes,
        window: args.growth_window,
        proofs: args.growth_proofs,
        parent_dir: args.growth_dir.clone(),
        mix: args.mix.clone(),
        ..GrowthSettings::default()
    }))
}

/// The command line that regenerates the report with the same settings.
fn regenerate_command(args: &Args) -> String {
    let mut command = String::from(
        "cargo build --release -p rekor-node -p rekor-cluster-tests && target/release/bench",
    );
    let defaults = Args::parse_from(["bench"]);
    if args.nodes != defaults.nodes {
        let nodes: Vec<String> = args.nodes.iter().map(|n| n.to_string()).collect();
        command.push_str(&format!(" --nodes {}", nodes.join(",")));
    }
    if args.duration != defaults.duration {
        command.push_str(&format!(" --duration {}", args.duration));
    }
    if args.concurrency != defaults.concurrency {
        command.push_str(&format!(" --concurrency {}", args.concurrency));
    }
    if args.read_duration != defaults.read_duration {
        command.push_str(&format!(" --read-duration {}", args.read_duration));
    }
    if args.requests.is_some() {
        command.push_str(&format!(
            " --requests {}",
            args.requests.unwrap_or_default()
        ));
    }
    if args.repeats != defaults.repeats {
        command.push_str(&format!(" --repeats {}", args.repeats));
    }
    if !args.shared_store_nodes.is_empty() {
        let nodes: Vec<String> = args
            .shared_store_nodes
            .iter()
            .map(|n| n.to_string())
            .collect();
        command.push_str(&format!(" --shared-store-nodes {}", nodes.join(",")));
    }
    for arg in &args.node_args {
        command.push_str(&format!(" --node-arg={arg}"));
    }
    if args.no_growth {
        command.push_str(" --no-growth");
    } else {
        if args.growth_sizes != defaults.growth_sizes {
            command.push_str(&format!(" --growth-sizes '{}'", args.growth_sizes));
        }
        if args.growth_window != defaults.growth_window {
            command.push_str(&format!(" --growth-window {}", args.growth_window));
        }
    }
    command
}
