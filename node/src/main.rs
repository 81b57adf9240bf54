//! `rekor-node`: a Rekor v2 transparency log node that replicates with Raft.
//!
//! One binary: `serve` runs a node (with no arguments, a single node on loopback with embedded
//! defaults), `init` forms a cluster once, `keygen` makes a checkpoint signing key (or reads an
//! existing one's public half), `trust-files` writes what Sigstore clients need to use the log,
//! `certs` makes a development CA and certificates, `status` asks a node how it is doing, `node`
//! changes membership, `freeze` seals a shard, `verify` audits any tlog-tiles log.

use anyhow::Result;
use clap::{Parser, Subcommand};

/// jemalloc rather than glibc malloc: the write path allocates and frees on many threads, and
/// glibc's malloc and free were ~8 % of a node's CPU per entry (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod admin;
mod backend;
mod catch_up;
mod config;
mod forwarder;
mod handover;
mod http_listener;
mod integrator;
mod internal;
mod keys;
mod malloc_arenas;
mod metrics;
mod partials;
mod publisher;
mod pushback;
mod read_listener;
mod readiness;
mod secrets;
mod sequencer;
mod serve;
mod served;
mod sign_check;
mod status_page;
mod tls;
mod trust_files;
mod verify;
mod witness;

#[derive(Parser)]
#[command(
    name = "rekor-node",
    version,
    about = "A Rekor v2 transparency log node on Raft"
)]
struct Cli {
    /// Log filter (tracing-subscriber EnvFilter syntax: a level such as `debug`, or per module).
    /// Also RUST_LOG. `--log-level` is upstream's name for it.
    #[arg(
        long,
        alias = "log-level",
        global = true,
        env = "REKOR_LOG",
        default_value = "info,openraft=warn"
    )]
    log: String,
    /// Emit logs as JSON lines.
    #[arg(long, global = true, env = "REKOR_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (the default when no subcommand is given).
    Serve(Box<config::ServeArgs>),
    /// Form a cluster once: tell one running node the initial voter set.
    Init(admin::InitArgs),
    /// Generate a checkpoint signing key and print what clients need to trust it.
    Keygen(keys::KeygenArgs),
    /// Write the trusted root, signing config and client trust config for this log.
    TrustFiles(trust_files::TrustFilesArgs),
    /// Make a development CA and certificates for nodes and operators (mutual TLS between nodes).
    Certs(tls::dev_certs::CertsArgs),
    /// Print a node's view of the cluster and the log.
    Status(admin::StatusArgs),
    /// Membership changes: add, remove or list nodes.
    #[command(subcommand)]
    Node(admin::NodeCommand),
    /// Seal the log: sign a final checkpoint with the frozen marker; writes then get 405.
    Freeze(admin::FreezeArgs),
    /// Audit any tlog-tiles log from its URL: checkpoint signature, every tile and entry bundle
    /// against the signed root, and consistency with a previously saved checkpoint.
    Verify(verify::VerifyArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if matches!(cli.command, None | Some(Command::Serve(_))) {
        malloc_arenas::bound_or_reexec();
    }
    init_tracing(&cli.log, cli.log_json);
    match cli
        .command
        .unwrap_or_else(|| Command::Serve(Box::default()))
    {
        Command::Serve(args) => serve::run(args.resolve()?),
        Command::Init(args) => admin::init(args),
        Command::Keygen(args) => keys::keygen(args),
        Command::Certs(args) => tls::dev_certs::run(args),
        Command::TrustFiles(args) => trust_files::run(args),
        Command::Status(args) => admin::status(args),
        Command::Node(command) => admin::node(command),
        Command::Freeze(args) => admin::freeze(args),
        Command::Verify(args) => verify::run(args),
    }
}

fn init_tracing(filter: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
