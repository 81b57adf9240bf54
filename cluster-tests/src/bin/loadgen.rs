//! `loadgen`: drives pre-signed hashedrekord writes at running Rekor v2 nodes and reports
//! throughput, latency percentiles, errors by status and sampled inclusion-proof checks
//! (the performance issue's load generator; see `rekor_cluster_tests::load`). With
//! `--get-paths` it reads instead: GETs of the listed tile, bundle or checkpoint paths.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use rekor_cluster_tests::load::{run_load, Arrival, LoadConfig, RequestMix, RequestPool, Workload};

/// Load generator for Rekor v2 nodes.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Base URL of a node's public listener; repeat to spread the load over several nodes.
    #[arg(long = "target", default_value = "http://127.0.0.1:3000")]
    targets: Vec<String>,
    /// Closed loop: this many concurrent clients (ignored with --rate).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Open loop: a fixed arrival rate in requests per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: most requests outstanding at once.
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Requests to pre-sign (default: enough for the rate, or 5,000/s for closed loop).
    #[arg(long)]
    requests: Option<usize>,
    /// Request mix, e.g. `p256=85,p384=10,rsa=5,cert=50` (percentages).
    #[arg(long, default_value = "p256=85,p384=10,rsa=5,cert=50")]
    mix: RequestMix,
    /// Check the inclusion proof of every n-th 201 (0: none).
    #[arg(long, default_value_t = 100)]
    proof_sample_every: u64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Read instead of write: GET the URL paths listed in this file (one per line, e.g.
    /// `/api/v2/tile/entries/x001/234`), round-robin, instead of submitting entries.
    #[arg(long, value_name = "FILE")]
    get_paths: Option<std::path::PathBuf>,
}

/// The node's allocator: glibc malloc was a tenth of this load generator's CPU per request.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let duration = Duration::from_secs_f64(args.duration.max(0.0));
    let arrival = match args.rate {
        Some(rate) => Arrival::Open {
            rate,
            max_in_flight: args.max_in_flight,
        },
        None => Arrival::Closed {
            concurrency: args.concurrency,
        },
    };
    let requests = args.requests.unwrap_or_else(|| {
        let rate = args.rate.unwrap_or(5_000.0);
        (rate * args.duration).ceil() as usize + 1
    });
    let workload = match &args.get_paths {
        Some(file) => Workload::Get {
            paths: std::sync::Arc::new(read_paths(file)?),
        },
        None => {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            eprintln!("signing {requests} requests…");
            let mix = args.mix.clone();
            let pool =
                tokio::task::spawn_blocking(move || RequestPool::generate(requests, &mix, threads))
                    .await??;
            Workload::Submit {
                bodies: std::sync::Arc::new(pool.bodies),
            }
        }
    };
    eprintln!("sending for {:.1} s…", args.duration);
    let config = LoadConfig {
        targets: args.targets.clone(),
        arrival,
        duration,
        proof_sample_every: args.proof_sample_every,
        request_timeout: Duration::from_secs(args.timeout),
    };
    let report = run_load(&config, &workload).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} ({} target(s))", report.arrival, report.targets);
        println!(
            "sent {}, {} {} in {:.2} s: {:.0} {}/s{}",
            report.sent,
            if args.get_paths.is_some() {
                "read"
            } else {
                "logged"
            },
            report.succeeded,
            report.elapsed_s,
            report.throughput_per_s,
            if args.get_paths.is_some() {
                "objects"
            } else {
                "entries"
            },
            if report.exhausted {
                " (ran out of pre-signed requests)"
            } else {
                ""
            }
        );
        let l = &report.latency;
        println!(
            "latency ms: p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1}, mean {:.1}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.mean_ms
        );
        if report.errors.is_empty() {
            println!("errors: none");
        }
        for (kind, count) in &report.errors {
            println!("errors: {kind}: {count}");
        }
        println!(
            "inclusion proofs: {} checked, {} failed{}",
            report.proofs.checked,
            report.proofs.failed,
            report
                .proofs
                .first_failure
                .as_deref()
                .map(|f| format!(" (first: {f})"))
                .unwrap_or_default()
        );
    }
    if report.error_count() > 0 || report.proofs.failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// The URL paths of a `--get-paths` file: one per line, blank lines and `#` comments skipped.
fn read_paths(file: &std::path::Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let paths: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if paths.is_empty() {
        anyhow::bail!("{} lists no paths", file.display());
    }
    Ok(paths)
}
