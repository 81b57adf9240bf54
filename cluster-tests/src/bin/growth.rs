//! `growth`: the growth scenario of the benchmark on its own (the `bench` command runs the same
//! [`run_growth`] as its `## Growth` section). Grows a log in a temporary directory through the
//! node's integration code, in process, and prints the Markdown table; `--json` writes the
//! report. Running alone keeps the peak RSS free of the other scenarios' request pool.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use rekor_cluster_tests::load::growth::{run_growth, GrowthSettings};
use rekor_cluster_tests::load::RequestMix;

/// Integration rate, proof latency, disk and memory as a log grows.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Log sizes to measure at (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,1000000,10000000")]
    sizes: Vec<u64>,
    /// Entries timed at each size (about 10 s: shorter windows are dominated by noise).
    #[arg(long, default_value_t = 1_000_000)]
    window: u64,
    /// Inclusion proofs built and verified at each size.
    #[arg(long, default_value_t = 1_000)]
    proofs: usize,
    /// Directory under which the temporary tile directory is made (default: the temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The tile store's read cache in MiB (the node's default is 64).
    #[arg(long, default_value_t = 64)]
    tile_cache_mib: usize,
    /// Request mix of the signed templates.
    #[arg(long, default_value = "p256=85,p384=10,rsa=5,cert=50")]
    mix: RequestMix,
    /// JSON report path.
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
    let settings = GrowthSettings {
        sizes: args.sizes,
        window: args.window,
        proofs: args.proofs,
        parent_dir: args.dir,
        tile_cache_bytes: args.tile_cache_mib << 20,
        mix: args.mix,
        progress_every: Duration::from_secs(5),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run_growth(&settings))?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", report.to_markdown());
    Ok(())
}
