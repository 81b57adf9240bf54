//! Configuration of `rekor-node serve`: flags, their environment-variable twins, an optional TOML
//! file, and the defaults that make a bare `serve` a working single-node log on loopback.
//!
//! Precedence: a flag (or its environment variable) beats the TOML file, which beats the default.
//! Every field is optional on the command line so that we can tell "not given" from "given", so
//! clap cannot show the defaults itself (its `default_value` would make every flag "given"):
//! each default is written once, in [`defaults`] or where the setting lives, `into_config` falls
//! back to it, and the `{default}` in the flag's help is filled in from it ([`help_default`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;

use rekor_api::limits::ListenerLimits;

/// Largest `--batch-max-bytes`: a quarter of the peers' AppendEntries body cap, so one Raft
/// entry (a batch plus its framing and one entry over the bound) always fits an AppendEntries.
pub const MAX_BATCH_MAX_BYTES: usize = rekor_raft::server::DEFAULT_MAX_RPC_BODY / 4;

const MIB: usize = 1024 * 1024;

/// The defaults of the `serve` flags that this module owns, in each flag's unit. The others come
/// from where their setting lives: `--batch-max-bytes` from the sequencer, the body size from the
/// API, the Raft timing and snapshot interval from `rekor_raft`, the listeners' timeouts and caps
/// from [`ListenerLimits`]. Switches (`--read-only` and the like) are off unless given.
pub mod defaults {
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

    pub const NODE_ID: u64 = 1;
    /// Relative to the working directory.
    pub const DATA_DIR: &str = "rekor-data";
    pub const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3000));
    pub const LISTEN_INTERNAL: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3001));
    pub const ORIGIN: &str = "rekor.local";
    /// In the data directory.
    pub const SIGNING_KEY_FILE: &str = "signing-key.pem";
    /// In the data directory.
    pub const CLUSTER_SECRET_FILE: &str = "cluster-secret";
    /// In the data directory.
    pub const TILE_STORE_DIR: &str = "tiles";
    pub const BATCH_MAX_SIZE: usize = 512;
    pub const BATCH_MAX_AGE_MS: u64 = 60;
    pub const CHECKPOINT_INTERVAL_MS: u64 = 25;
    pub const REPUBLISH_INTERVAL_S: u64 = 600;
    pub const PUSHBACK_MAX_OUTSTANDING: u64 = 8192;
    pub const SUBMIT_TIMEOUT_S: u64 = 20;
    pub const CACHE_MIB: u64 = 64;
    pub const TILE_CACHE_MIB: u64 = 64;
    pub const WITNESS_TIMEOUT_MS: u64 = 5000;
    /// One request to a remote signer; a failed signature is retried within twice this.
    pub const SIGNER_TIMEOUT_MS: u64 = 5000;
    pub const TLS_RELOAD_INTERVAL_S: u64 = 60;
}

/// What `{default}` stands for in the help of the flag with argument id `id` (the field name):
/// the value [`ServeArgs::resolve`] falls back to, written as the flag takes it.
fn help_default(id: &str) -> Option<String> {
    use rekor_raft::config as raft;
    let (public, internal) = (ListenerLimits::PUBLIC, ListenerLimits::INTERNAL);
    let in_data_dir = |name: &str| format!("<data-dir>/{name}");
    Some(match id {
        "node_id" => defaults::NODE_ID.to_string(),
        "data_dir" => format!("./{}", defaults::DATA_DIR),
        "listen" => defaults::LISTEN.to_string(),
        "listen_internal" => defaults::LISTEN_INTERNAL.to_string(),
        "origin" => defaults::ORIGIN.to_owned(),
        "signing_key" => in_data_dir(defaults::SIGNING_KEY_FILE),
        "cluster_secret_file" => in_data_dir(defaults::CLUSTER_SECRET_FILE),
        "tile_store" => in_data_dir(defaults::TILE_STORE_DIR),
        "batch_max_size" => defaults::BATCH_MAX_SIZE.to_string(),
        "batch_max_bytes" => crate::sequencer::DEFAULT_MAX_BATCH_BYTES.to_string(),
        "batch_max_age_ms" => defaults::BATCH_MAX_AGE_MS.to_string(),
        "checkpoint_interval_ms" => defaults::CHECKPOINT_INTERVAL_MS.to_string(),
        "republish_interval_s" => defaults::REPUBLISH_INTERVAL_S.to_string(),
        "pushback_max_outstanding" => defaults::PUSHBACK_MAX_OUTSTANDING.to_string(),
        "submit_timeout_s" => defaults::SUBMIT_TIMEOUT_S.to_string(),
        "max_request_body_size" => rekor_api::http::DEFAULT_MAX_REQUEST_BODY_SIZE.to_string(),
        "raft_snapshot_every" => rekor_raft::RaftTuning::default()
            .snapshot_logs_since_last
            .to_string(),
        "raft_heartbeat_ms" => raft::DEFAULT_HEARTBEAT_MS.to_string(),
        "raft_election_timeout_min_ms" => raft::DEFAULT_ELECTION_TIMEOUT_MIN_MS.to_string(),
        "raft_election_timeout_max_ms" => raft::DEFAULT_ELECTION_TIMEOUT_MAX_MS.to_string(),
        "cache_mib" => defaults::CACHE_MIB.to_string(),
        "tile_cache_mib" => defaults::TILE_CACHE_MIB.to_string(),
        "witness_timeout_ms" => defaults::WITNESS_TIMEOUT_MS.to_string(),
        "signer_timeout_ms" => defaults::SIGNER_TIMEOUT_MS.to_string(),
        // One flag for both listeners; a test checks that their defaults agree.
        "header_timeout_ms" => public.header_timeout.as_millis().to_string(),
        "keep_alive_s" => public.keep_alive.as_secs().to_string(),
        "body_timeout_ms" => public.body_timeout.as_millis().to_string(),
        "max_connections" => public.max_connections.to_string(),
        "body_budget_mib" => (public.body_budget_bytes / MIB).to_string(),
        "internal_body_timeout_ms" => internal.body_timeout.as_millis().to_string(),
        "internal_max_connections" => internal.max_connections.to_string(),
        "internal_body_budget_mib" => (internal.body_budget_bytes / MIB).to_string(),
        "tls_reload_interval_s" => defaults::TLS_RELOAD_INTERVAL_S.to_string(),
        "client_signing_algorithms" => rekor_api::AlgorithmPolicy::default()
            .flag_values()
            .join(","),
        _ => return None,
    })
}

/// Replaces `{default}` in a flag's help with [`help_default`]; clap applies it to every flag of
/// `serve` as it builds the command.
fn fill_in_default(mut arg: clap::Arg) -> clap::Arg {
    let Some(value) = help_default(arg.get_id().as_str()) else {
        return arg;
    };
    let fill = |help: &clap::builder::StyledStr| help.to_string().replace("{default}", &value);
    if let Some(help) = arg.get_help().map(fill) {
        arg = arg.help(help);
    }
    if let Some(long_help) = arg.get_long_help().map(fill) {
        arg = arg.long_help(long_help);
    }
    arg
}

/// Flags of `serve`. Field docs are the `--help` text, `{default}` filled in by
/// [`fill_in_default`].
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[command(mut_args = fill_in_default)]
pub struct ServeArgs {
    /// TOML file with any of these settings (keys are the flag names without `--`).
    #[arg(long, env = "REKOR_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// This node's Raft id (unique in the cluster, > 0). Default: {default}.
    #[arg(long, env = "REKOR_NODE_ID")]
    pub node_id: Option<u64>,

    /// Directory for the Raft log, the state machine and (by default) the tiles. Default: {default}.
    #[arg(long, env = "REKOR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Public listener (Rekor v2 API, tiles, /healthz, /metrics). Default: {default}.
    #[arg(long, env = "REKOR_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Node-to-node listener (Raft RPCs, write forwarding, admin). Default: {default}.
    #[arg(long, env = "REKOR_LISTEN_INTERNAL")]
    pub listen_internal: Option<SocketAddr>,

    /// A listener of its own for `/metrics` (upstream's `--http-metrics-port`); the public
    /// listener then stops serving it. Default: none (metrics on the public listener).
    #[arg(long, env = "REKOR_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// A gRPC listener (service dev.sigstore.rekor.v2.Rekor, grpc.health.v1, reflection;
    /// upstream's `--grpc-address`/`--grpc-port`), with the public listener's TLS when it has
    /// one. Default: none (no gRPC).
    #[arg(long, env = "REKOR_GRPC_LISTEN")]
    pub grpc_listen: Option<SocketAddr>,

    /// A plain-HTTP listener of its own for the read API only (checkpoint, tiles, entry
    /// bundles), which sends stored entry bundles from a local tile store with `sendfile`:
    /// for a CDN or a TLS-terminating proxy in front. Same answers as the public
    /// listener; the public listener keeps serving reads too. Default: none.
    #[arg(long, env = "REKOR_READ_LISTEN")]
    pub read_listen: Option<SocketAddr>,

    /// Address other nodes use to reach this node's internal listener. Default: --listen-internal.
    #[arg(long, env = "REKOR_ADVERTISE_INTERNAL")]
    pub advertise_internal: Option<String>,

    /// Address clients and peers use to reach this node's public listener. Default: --listen.
    #[arg(long, env = "REKOR_ADVERTISE")]
    pub advertise: Option<String>,

    /// Checkpoint origin and signature key name: a bare host name. Default: {default}.
    #[arg(long, env = "REKOR_ORIGIN")]
    pub origin: Option<String>,

    /// The checkpoint signing key: a PEM file (PKCS#8 Ed25519 or ECDSA P-256, optionally
    /// encrypted) or a key URI: `pkcs11:...`, `awskms:///...`, `gcpkms://...`, `azurekms://...`,
    /// `hashivault://...` (docs/operations.md, "Key custody"). Default: {default}, generated
    /// (Ed25519) on first start when no key is configured.
    #[arg(long, env = "REKOR_SIGNING_KEY")]
    pub signing_key: Option<String>,

    /// Password file of an encrypted PKCS#8 --signing-key (its first line). Default: none.
    #[arg(long, env = "REKOR_SIGNING_KEY_PASSWORD_FILE")]
    pub signing_key_password_file: Option<PathBuf>,

    /// Longest one request to a remote signer may take, in milliseconds; a failed signature is
    /// retried with backoff for up to twice this. Default: {default}.
    #[arg(long, env = "REKOR_SIGNER_TIMEOUT_MS")]
    pub signer_timeout_ms: Option<u64>,

    /// Shared secret that authenticates node-to-node requests. Prefer --cluster-secret-file.
    #[arg(long, env = "REKOR_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// File holding the shared cluster secret. Default: {default}, generated for a
    /// single node.
    #[arg(long, env = "REKOR_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,

    /// Where tiles, bundles and the checkpoint go: a directory, file://, s3://, gs:// or az:// URL.
    /// Default: {default}.
    #[arg(long, env = "REKOR_TILE_STORE")]
    pub tile_store: Option<String>,

    /// Every node of the cluster uses the one tile store --tile-store names (the same
    /// directory, or the same bucket and prefix): only the leader writes tiles, bundles and the
    /// checkpoint; followers serve from what it wrote (docs/operations.md, "Shared tile store").
    /// Every node must set it alike. Off by default (each node writes its own store).
    #[arg(long, env = "REKOR_SHARED_TILE_STORE", num_args = 0..=1, default_missing_value = "true")]
    pub shared_tile_store: Option<bool>,

    /// Most entries per Raft command. Default: {default}.
    #[arg(long, env = "REKOR_BATCH_MAX_SIZE")]
    pub batch_max_size: Option<usize>,

    /// Most entry-body bytes per Raft command (a batch; one larger entry still goes alone).
    /// At most 16777216, so one command stays far below the peers' AppendEntries body cap.
    /// Default: {default}.
    #[arg(long, env = "REKOR_BATCH_MAX_BYTES")]
    pub batch_max_bytes: Option<usize>,

    /// Longest an entry waits for its batch to fill, in milliseconds (a batch also goes once no
    /// entry has arrived for 2 ms). Default: {default}.
    #[arg(long, env = "REKOR_BATCH_MAX_AGE_MS")]
    pub batch_max_age_ms: Option<u64>,

    /// Least time between two checkpoints, in milliseconds: the leader signs one as soon as the
    /// tree grew and this much time passed since the last. Default: {default}.
    #[arg(long, env = "REKOR_CHECKPOINT_INTERVAL_MS")]
    pub checkpoint_interval_ms: Option<u64>,

    /// How often an unchanged tree is re-signed, in seconds. Default: {default}.
    #[arg(long, env = "REKOR_REPUBLISH_INTERVAL_S")]
    pub republish_interval_s: Option<u64>,

    /// Entries sequenced but not yet integrated before new writes get 503. Default: {default}.
    #[arg(long, env = "REKOR_PUSHBACK_MAX_OUTSTANDING")]
    pub pushback_max_outstanding: Option<u64>,

    /// Longest a POST waits for a checkpoint covering its entry, in seconds. Default: {default}.
    #[arg(long, env = "REKOR_SUBMIT_TIMEOUT_S")]
    pub submit_timeout_s: Option<u64>,

    /// Serve reads only; writes get 405 (a frozen shard).
    #[arg(long, env = "REKOR_READ_ONLY", num_args = 0..=1, default_missing_value = "true")]
    pub read_only: Option<bool>,

    /// Accept the legacy dsse v0.0.2 entry type (off by default, as upstream removed it).
    #[arg(long, env = "REKOR_ENABLE_DSSE", num_args = 0..=1, default_missing_value = "true")]
    pub enable_dsse: Option<bool>,

    /// Serve `GET /api/v2/log/entries/{index}`, our extension: the TransparencyLogEntry of an
    /// entry already in the log (the one a 409 points at), read from local tiles. Off by default.
    #[arg(
        long,
        env = "REKOR_ENABLE_ENTRY_LOOKUP",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub enable_entry_lookup: Option<bool>,

    /// Log one line per public request (method, path, status, duration, sizes, peer, user agent;
    /// never a body) under the `rekor::access` target. Off by default.
    #[arg(long, env = "REKOR_LOG_REQUESTS", num_args = 0..=1, default_missing_value = "true")]
    pub log_requests: Option<bool>,

    /// Signing algorithms accepted in entries, comma-separated upstream names (as upstream's
    /// flag of the same name); it may only narrow the default set. Default: {default}.
    #[arg(long, env = "REKOR_CLIENT_SIGNING_ALGORITHMS", value_delimiter = ',')]
    pub client_signing_algorithms: Option<Vec<String>>,

    /// Maximum request body in bytes. Default: {default}.
    #[arg(long, env = "REKOR_MAX_REQUEST_BODY_SIZE")]
    pub max_request_body_size: Option<usize>,

    /// Form a one-node cluster (a new, empty tree) on first start if this node has never been
    /// initialised. Default: true only for the embedded development default (no --signing-key
    /// and both listeners on loopback); false otherwise, so a node with a real key or a public
    /// listener whose data directory was wiped waits for `rekor-node init` instead of silently
    /// starting a second tree under the log's key. Even when set, a node refuses to bootstrap
    /// over a tile store that already holds a checkpoint.
    #[arg(long, env = "REKOR_BOOTSTRAP_SINGLE", num_args = 0..=1, default_missing_value = "true")]
    pub bootstrap_single: Option<bool>,

    /// Take a Raft snapshot (and compact the Raft log) every this many Raft entries (batches).
    /// Default: {default} (snapshots are small, and each one lets the node purge the Raft log's
    /// segment files behind it, up to 512 entries a batch). Nodes that fall behind a snapshot
    /// catch up by pulling entry bundles.
    #[arg(long, env = "REKOR_RAFT_SNAPSHOT_EVERY")]
    pub raft_snapshot_every: Option<u64>,

    /// Raft heartbeat interval in milliseconds; also the time limit of one AppendEntries RPC, so
    /// it must cover a round trip plus a follower's fsync. At least 20. Default: {default}.
    #[arg(long, env = "REKOR_RAFT_HEARTBEAT_MS")]
    pub raft_heartbeat_ms: Option<u64>,

    /// Lower bound of the Raft election timeout in milliseconds (at least 3 heartbeats).
    /// A follower stands for election after max + a draw from [min, max) without hearing from
    /// the leader. Default: {default}.
    #[arg(long, env = "REKOR_RAFT_ELECTION_TIMEOUT_MIN_MS")]
    pub raft_election_timeout_min_ms: Option<u64>,

    /// Upper bound of the Raft election timeout in milliseconds (greater than the minimum; also
    /// the leader lease during which a follower refuses other candidates). Default: {default}.
    #[arg(long, env = "REKOR_RAFT_ELECTION_TIMEOUT_MAX_MS")]
    pub raft_election_timeout_max_ms: Option<u64>,

    /// sled page-cache size in MiB. Default: {default}.
    #[arg(long, env = "REKOR_CACHE_MIB")]
    pub cache_mib: Option<u64>,

    /// In-memory cache of immutable tiles and bundles served from the tile store, in MiB
    /// (0 turns it off, so every read goes to the store). Default: {default}.
    #[arg(long, env = "REKOR_TILE_CACHE_MIB")]
    pub tile_cache_mib: Option<u64>,

    /// Witness policy file (Sigsum policy format: witness, group, quorum lines). When set, the
    /// leader asks these C2SP tlog-witness witnesses to cosign each checkpoint. Default: none.
    #[arg(long, env = "REKOR_WITNESS_POLICY")]
    pub witness_policy: Option<PathBuf>,

    /// Longest one witness may take to cosign one checkpoint, in milliseconds. Default: {default}.
    #[arg(long, env = "REKOR_WITNESS_TIMEOUT_MS")]
    pub witness_timeout_ms: Option<u64>,

    /// Longest a client may take to send a request's headers, from their first byte, in
    /// milliseconds (every listener; else 408). Default: {default}.
    #[arg(long, env = "REKOR_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,

    /// How long a connection stays open with no request in progress (before its first request
    /// and between requests), in seconds (every listener). Default: {default} (above the 60 s
    /// idle timeout of common client pools and load balancers).
    #[arg(long, env = "REKOR_KEEP_ALIVE_S")]
    pub keep_alive_s: Option<u64>,

    /// Longest a client may take to send a whole request body to the public listener, in
    /// milliseconds; later, 408 and the connection is closed. Default: {default}.
    #[arg(long, env = "REKOR_BODY_TIMEOUT_MS")]
    pub body_timeout_ms: Option<u64>,

    /// Most connections the public listener holds open (and the read listener, on its own).
    /// Default: {default}.
    #[arg(long, env = "REKOR_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most MiB of request bodies the public listener holds at once (bodies being read and the
    /// requests holding them); beyond it a request gets a fast 503. Default: {default}.
    #[arg(long, env = "REKOR_BODY_BUDGET_MIB")]
    pub body_budget_mib: Option<usize>,

    /// Longest a peer may take to send a whole request body to the internal listener, in
    /// milliseconds. Default: {default}.
    #[arg(long, env = "REKOR_INTERNAL_BODY_TIMEOUT_MS")]
    pub internal_body_timeout_ms: Option<u64>,

    /// Most connections the internal listener holds open. Default: {default}.
    #[arg(long, env = "REKOR_INTERNAL_MAX_CONNECTIONS")]
    pub internal_max_connections: Option<usize>,

    /// Most MiB of request bodies the internal listener holds at once. Default: {default}.
    #[arg(long, env = "REKOR_INTERNAL_BODY_BUDGET_MIB")]
    pub internal_body_budget_mib: Option<usize>,

    /// Do not publish a checkpoint unless the witness policy's quorum cosigned it (the default
    /// is fail-open: publish without, log a warning and count it).
    #[arg(long, env = "REKOR_REQUIRE_WITNESS_QUORUM", num_args = 0..=1, default_missing_value = "true")]
    pub require_witness_quorum: Option<bool>,

    /// Publish even when witnesses at the policy's quorum give evidence that this log was rolled
    /// back or forked (the evidence is still logged and counted). Without it such evidence halts
    /// publication; see docs/operations.md, "Witnessing". Default: false.
    #[arg(long, env = "REKOR_WITNESS_HALT_OVERRIDE", num_args = 0..=1, default_missing_value = "true")]
    pub witness_halt_override: Option<bool>,

    /// Accept witnesses at plain http:// URLs. Cosignatures are verified either way, but a
    /// witness's answers in clear text can be read and withheld by anyone on the path; use it
    /// for a witness on loopback. Default: false (https only).
    #[arg(long, env = "REKOR_WITNESS_ALLOW_HTTP", num_args = 0..=1, default_missing_value = "true")]
    pub witness_allow_http: Option<bool>,

    /// PEM certificate chain of the public listener. With --http-tls-key-file the listener
    /// serves HTTPS (TLS 1.2 and 1.3, HTTP/2 by ALPN) instead of plain HTTP. Default: none.
    #[arg(long, env = "REKOR_HTTP_TLS_CERT_FILE")]
    pub http_tls_cert_file: Option<PathBuf>,

    /// PEM private key of --http-tls-cert-file (mode 0600).
    #[arg(long, env = "REKOR_HTTP_TLS_KEY_FILE")]
    pub http_tls_key_file: Option<PathBuf>,

    /// PEM bundle of the cluster CA. With --internal-tls-cert-file and --internal-tls-key-file
    /// the internal listener runs mutual TLS: every caller needs a certificate from this CA
    /// naming a node (`urn:rekor-raft:node:<id>`) or an operator (`urn:rekor-raft:operator:<name>`)
    /// as a URI SAN, and this node calls its peers over HTTPS with its own. Default: none.
    #[arg(long, env = "REKOR_INTERNAL_TLS_CA_FILE")]
    pub internal_tls_ca_file: Option<PathBuf>,

    /// PEM certificate of this node for the internal listener and its calls to peers; it must
    /// name this node's id and allow both server and client authentication.
    #[arg(long, env = "REKOR_INTERNAL_TLS_CERT_FILE")]
    pub internal_tls_cert_file: Option<PathBuf>,

    /// PEM private key of --internal-tls-cert-file (mode 0600).
    #[arg(long, env = "REKOR_INTERNAL_TLS_KEY_FILE")]
    pub internal_tls_key_file: Option<PathBuf>,

    /// Seconds between checks of the certificate files for renewals; 0 checks only on SIGHUP.
    /// Default: {default}.
    #[arg(long, env = "REKOR_TLS_RELOAD_INTERVAL_S")]
    pub tls_reload_interval_s: Option<u64>,

    /// Local IP address this node's connections to its peers come from (a multi-homed host's
    /// cluster network). Default: the operating system's choice.
    #[arg(long, env = "REKOR_PEER_SOURCE_ADDRESS")]
    pub peer_source_address: Option<std::net::IpAddr>,
}

/// The resolved settings `serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub listen_internal: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub grpc_listen: Option<SocketAddr>,
    pub read_listen: Option<SocketAddr>,
    pub advertise_internal: String,
    pub advertise: String,
    pub origin: String,
    pub signing_key: rekor_signer::KeyUri,
    /// True when the signing key path was not configured (a development key may be generated).
    pub signing_key_is_default: bool,
    pub signing_key_password_file: Option<PathBuf>,
    pub signer_timeout: Duration,
    pub cluster_secret: SecretSource,
    pub tile_store: String,
    /// `--shared-tile-store`: one tile store for the whole cluster, written by the leader.
    pub shared_tile_store: bool,
    pub batch_max_size: usize,
    pub batch_max_bytes: usize,
    pub batch_max_age: Duration,
    pub checkpoint_interval: Duration,
    pub republish_interval: Duration,
    pub pushback_max_outstanding: u64,
    pub submit_timeout: Duration,
    pub read_only: bool,
    pub enable_dsse: bool,
    pub enable_entry_lookup: bool,
    pub log_requests: bool,
    pub max_request_body_size: usize,
    pub bootstrap_single: bool,
    pub cache_bytes: u64,
    pub tile_cache_bytes: u64,
    pub raft_snapshot_every: Option<u64>,
    /// Raft heartbeat and election timeouts (the other fields of the tuning are defaults).
    pub raft_timing: RaftTiming,
    pub witness_policy: Option<PathBuf>,
    pub witness_timeout: Duration,
    pub require_witness_quorum: bool,
    /// Connection and body bounds of the public listener.
    pub public_limits: ListenerLimits,
    /// Connection and body bounds of the internal listener.
    pub internal_limits: ListenerLimits,
    pub witness_halt_override: bool,
    pub witness_allow_http: bool,
    /// The public listener's certificate, when it serves HTTPS.
    pub public_tls: Option<crate::tls::CertificateFiles>,
    /// The internal listener's mutual TLS, when on.
    pub internal_tls: Option<crate::tls::MutualTlsFiles>,
    /// How often certificate files are checked for renewals (`None`: only on SIGHUP).
    pub tls_reload_interval: Option<Duration>,
    pub peer_source_address: Option<std::net::IpAddr>,
    /// The entry signing algorithms accepted (`--client-signing-algorithms`).
    pub client_signing_algorithms: rekor_api::AlgorithmPolicy,
}

/// The Raft timing flags, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
}

impl RaftTiming {
    /// `tuning` with these timeouts.
    pub fn apply(&self, tuning: rekor_raft::RaftTuning) -> rekor_raft::RaftTuning {
        rekor_raft::RaftTuning {
            heartbeat_ms: self.heartbeat_ms,
            election_timeout_min_ms: self.election_timeout_min_ms,
            election_timeout_max_ms: self.election_timeout_max_ms,
            ..tuning
        }
    }
}

/// Where the cluster secret comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    Literal(String),
    File {
        path: PathBuf,
        generate_if_missing: bool,
    },
}

impl ServeArgs {
    /// Merges flags over the TOML file (if any) and fills in defaults.
    pub fn resolve(self) -> Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => read_config_file(path)?,
            None => ServeArgs::default(),
        };
        let merged = self.over(file);
        merged.into_config()
    }

    /// Field by field: `self` where set, else `lower`.
    fn over(self, lower: ServeArgs) -> ServeArgs {
        macro_rules! pick {
            ($($field:ident),* $(,)?) => {
                ServeArgs { config: self.config, $($field: self.$field.or(lower.$field)),* }
            };
        }
        pick!(
            node_id,
            data_dir,
            listen,
            listen_internal,
            metrics_listen,
            grpc_listen,
            read_listen,
            advertise_internal,
            advertise,
            origin,
            signing_key,
            signing_key_password_file,
            signer_timeout_ms,
            cluster_secret,
            cluster_secret_file,
            tile_store,
            shared_tile_store,
            batch_max_size,
            batch_max_bytes,
            batch_max_age_ms,
            checkpoint_interval_ms,
            republish_interval_s,
            pushback_max_outstanding,
            submit_timeout_s,
            read_only,
            enable_dsse,
            enable_entry_lookup,
            log_requests,
            max_request_body_size,
            bootstrap_single,
            raft_snapshot_every,
            raft_heartbeat_ms,
            raft_election_timeout_min_ms,
            raft_election_timeout_max_ms,
            cache_mib,
            tile_cache_mib,
            witness_policy,
            witness_timeout_ms,
            require_witness_quorum,
            header_timeout_ms,
            keep_alive_s,
            body_timeout_ms,
            max_connections,
            body_budget_mib,
            internal_body_timeout_ms,
            internal_max_connections,
            internal_body_budget_mib,
            witness_halt_override,
            witness_allow_http,
            http_tls_cert_file,
            http_tls_key_file,
            internal_tls_ca_file,
            internal_tls_cert_file,
            internal_tls_key_file,
            tls_reload_interval_s,
            peer_source_address,
            client_signing_algorithms,
        )
    }

    fn into_config(self) -> Result<ServeConfig> {
        let (public_limits, internal_limits) = self.listener_limits()?;
        let (public_tls, internal_tls) = self.tls_files()?;
        let node_id = self.node_id.unwrap_or(defaults::NODE_ID);
        if node_id == 0 {
            bail!("--node-id must be greater than 0");
        }
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(defaults::DATA_DIR));
        let listen = self.listen.unwrap_or(defaults::LISTEN);
        let listen_internal = self.listen_internal.unwrap_or(defaults::LISTEN_INTERNAL);
        let origin = self.origin.unwrap_or_else(|| defaults::ORIGIN.to_owned());
        validate_origin(&origin)?;
        let signing_key_is_default = self.signing_key.is_none();
        let signing_key = match &self.signing_key {
            Some(value) => rekor_signer::KeyUri::parse(value)?,
            None => rekor_signer::KeyUri::File(data_dir.join(defaults::SIGNING_KEY_FILE)),
        };
        let cluster_secret = match (self.cluster_secret, self.cluster_secret_file) {
            (Some(_), Some(_)) => bail!("give --cluster-secret or --cluster-secret-file, not both"),
            (Some(secret), None) => SecretSource::Literal(secret),
            (None, Some(path)) => SecretSource::File {
                path,
                generate_if_missing: false,
            },
            (None, None) => SecretSource::File {
                path: data_dir.join(defaults::CLUSTER_SECRET_FILE),
                generate_if_missing: true,
            },
        };
        let tile_store = self.tile_store.unwrap_or_else(|| {
            data_dir
                .join(defaults::TILE_STORE_DIR)
                .display()
                .to_string()
        });
        let batch_max_size = self.batch_max_size.unwrap_or(defaults::BATCH_MAX_SIZE);
        if batch_max_size == 0 {
            bail!("--batch-max-size must be at least 1");
        }
        let batch_max_bytes = self
            .batch_max_bytes
            .unwrap_or(crate::sequencer::DEFAULT_MAX_BATCH_BYTES);
        if !(1..=MAX_BATCH_MAX_BYTES).contains(&batch_max_bytes) {
            bail!("--batch-max-bytes must be from 1 to {MAX_BATCH_MAX_BYTES}");
        }
        let raft_timing = RaftTiming {
            heartbeat_ms: self
                .raft_heartbeat_ms
                .unwrap_or(rekor_raft::config::DEFAULT_HEARTBEAT_MS),
            election_timeout_min_ms: self
                .raft_election_timeout_min_ms
                .unwrap_or(rekor_raft::config::DEFAULT_ELECTION_TIMEOUT_MIN_MS),
            election_timeout_max_ms: self
                .raft_election_timeout_max_ms
                .unwrap_or(rekor_raft::config::DEFAULT_ELECTION_TIMEOUT_MAX_MS),
        };
        raft_timing
            .apply(rekor_raft::RaftTuning::default())
            .check_timing()
            .context(
                "check --raft-heartbeat-ms, --raft-election-timeout-min-ms and \
             --raft-election-timeout-max-ms",
            )?;
        Ok(ServeConfig {
            node_id,
            advertise_internal: self
                .advertise_internal
                .unwrap_or_else(|| listen_internal.to_string()),
            advertise: self.advertise.unwrap_or_else(|| listen.to_string()),
            data_dir,
            listen,
            listen_internal,
            metrics_listen: self.metrics_listen,
            grpc_listen: self.grpc_listen,
            read_listen: self.read_listen,
            origin,
            signing_key,
            signing_key_is_default,
            signing_key_password_file: self.signing_key_password_file,
            signer_timeout: Duration::from_millis(
                self.signer_timeout_ms
                    .unwrap_or(defaults::SIGNER_TIMEOUT_MS)
                    .max(1),
            ),
            cluster_secret,
            tile_store,
            shared_tile_store: self.shared_tile_store.unwrap_or_default(),
            batch_max_size,
            batch_max_bytes,
            batch_max_age: Duration::from_millis(
                self.batch_max_age_ms.unwrap_or(defaults::BATCH_MAX_AGE_MS),
            ),
            checkpoint_interval: Duration::from_millis(
                self.checkpoint_interval_ms
                    .unwrap_or(defaults::CHECKPOINT_INTERVAL_MS)
                    .max(1),
            ),
            republish_interval: Duration::from_secs(
                self.republish_interval_s
                    .unwrap_or(defaults::REPUBLISH_INTERVAL_S),
            ),
            pushback_max_outstanding: self
                .pushback_max_outstanding
                .unwrap_or(defaults::PUSHBACK_MAX_OUTSTANDING),
            submit_timeout: Duration::from_secs(
                self.submit_timeout_s.unwrap_or(defaults::SUBMIT_TIMEOUT_S),
            ),
            read_only: self.read_only.unwrap_or_default(),
            enable_dsse: self.enable_dsse.unwrap_or_default(),
            enable_entry_lookup: self.enable_entry_lookup.unwrap_or_default(),
            log_requests: self.log_requests.unwrap_or_default(),
            max_request_body_size: self
                .max_request_body_size
                .unwrap_or(rekor_api::http::DEFAULT_MAX_REQUEST_BODY_SIZE),
            bootstrap_single: self.bootstrap_single.unwrap_or_else(|| {
                signing_key_is_default
                    && listen.ip().is_loopback()
                    && listen_internal.ip().is_loopback()
            }),
            cache_bytes: self.cache_mib.unwrap_or(defaults::CACHE_MIB) * MIB as u64,
            tile_cache_bytes: self.tile_cache_mib.unwrap_or(defaults::TILE_CACHE_MIB) * MIB as u64,
            raft_snapshot_every: self.raft_snapshot_every.filter(|every| *every > 0),
            raft_timing,
            witness_policy: self.witness_policy,
            witness_timeout: Duration::from_millis(
                self.witness_timeout_ms
                    .unwrap_or(defaults::WITNESS_TIMEOUT_MS)
                    .max(1),
            ),
            require_witness_quorum: self.require_witness_quorum.unwrap_or_default(),
            public_limits,
            internal_limits,
            witness_halt_override: self.witness_halt_override.unwrap_or_default(),
            witness_allow_http: self.witness_allow_http.unwrap_or_default(),
            public_tls,
            internal_tls,
            tls_reload_interval: match self
                .tls_reload_interval_s
                .unwrap_or(defaults::TLS_RELOAD_INTERVAL_S)
            {
                0 => None,
                seconds => Some(Duration::from_secs(seconds)),
            },
            peer_source_address: self.peer_source_address,
            client_signing_algorithms: match &self.client_signing_algorithms {
                Some(values) => rekor_api::AlgorithmPolicy::from_flag_values(values)
                    .context("--client-signing-algorithms")?,
                None => rekor_api::AlgorithmPolicy::default(),
            },
        })
    }

    /// The TLS files: each listener's set complete or absent.
    fn tls_files(
        &self,
    ) -> Result<(
        Option<crate::tls::CertificateFiles>,
        Option<crate::tls::MutualTlsFiles>,
    )> {
        use crate::tls::{CertificateFiles, MutualTlsFiles};
        let public = match (&self.http_tls_cert_file, &self.http_tls_key_file) {
            (Some(cert), Some(key)) => Some(CertificateFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => bail!("--http-tls-cert-file and --http-tls-key-file go together"),
        };
        let internal = match (
            &self.internal_tls_ca_file,
            &self.internal_tls_cert_file,
            &self.internal_tls_key_file,
        ) {
            (Some(ca), Some(cert), Some(key)) => Some(MutualTlsFiles {
                ca: ca.clone(),
                identity: CertificateFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                },
            }),
            (None, None, None) => None,
            _ => bail!(
                "--internal-tls-ca-file, --internal-tls-cert-file and --internal-tls-key-file go together"
            ),
        };
        Ok((public, internal))
    }

    /// The public and internal listeners' bounds: the flags over
    /// [`ListenerLimits::PUBLIC`] and `INTERNAL`.
    fn listener_limits(&self) -> Result<(ListenerLimits, ListenerLimits)> {
        let shared = |listener: ListenerLimits| ListenerLimits {
            header_timeout: self
                .header_timeout_ms
                .map_or(listener.header_timeout, Duration::from_millis),
            keep_alive: self
                .keep_alive_s
                .map_or(listener.keep_alive, Duration::from_secs),
            ..listener
        };
        let public = ListenerLimits {
            body_timeout: self
                .body_timeout_ms
                .map_or(ListenerLimits::PUBLIC.body_timeout, Duration::from_millis),
            max_connections: self
                .max_connections
                .unwrap_or(ListenerLimits::PUBLIC.max_connections),
            body_budget_bytes: self
                .body_budget_mib
                .map_or(ListenerLimits::PUBLIC.body_budget_bytes, |mib| {
                    mib.saturating_mul(MIB)
                }),
            ..shared(ListenerLimits::PUBLIC)
        };
        let internal = ListenerLimits {
            body_timeout: self
                .internal_body_timeout_ms
                .map_or(ListenerLimits::INTERNAL.body_timeout, Duration::from_millis),
            max_connections: self
                .internal_max_connections
                .unwrap_or(ListenerLimits::INTERNAL.max_connections),
            body_budget_bytes: self
                .internal_body_budget_mib
                .map_or(ListenerLimits::INTERNAL.body_budget_bytes, |mib| {
                    mib.saturating_mul(MIB)
                }),
            ..shared(ListenerLimits::INTERNAL)
        };
        for (name, limits) in [("public", &public), ("internal", &internal)] {
            if limits.header_timeout.is_zero()
                || limits.body_timeout.is_zero()
                || limits.max_connections == 0
            {
                bail!("the {name} listener's timeouts and connection cap must be greater than 0");
            }
        }
        if public.body_budget_bytes
            < self
                .max_request_body_size
                .unwrap_or(rekor_api::http::DEFAULT_MAX_REQUEST_BODY_SIZE)
        {
            bail!("--body-budget-mib must hold at least one body of --max-request-body-size");
        }
        Ok((public, internal))
    }
}

fn read_config_file(path: &Path) -> Result<ServeArgs> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// rekor-v2-api.md §8.2: the origin is a bare host name, no whitespace, no `+`.
fn validate_origin(origin: &str) -> Result<()> {
    if origin.is_empty()
        || origin.contains(char::is_whitespace)
        || origin.contains('+')
        || origin.contains("://")
        || origin.contains('/')
    {
        bail!("--origin must be a bare host name (no scheme, path, whitespace or '+'): {origin:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn defaults_give_a_single_loopback_node() {
        let config = ServeArgs::default().resolve().unwrap();
        assert_eq!(config.node_id, 1);
        assert_eq!(config.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(config.listen_internal.to_string(), "127.0.0.1:3001");
        assert!(config.bootstrap_single);
        assert!(config.signing_key_is_default);
        assert_eq!(
            config.tile_store,
            PathBuf::from("rekor-data")
                .join("tiles")
                .display()
                .to_string()
        );
    }

    /// A real key or a public listener means production: a node never forms a cluster of its
    /// own unless told to, so a wiped data directory cannot silently start a second tree.
    #[test]
    fn bootstrap_defaults_to_true_only_for_the_embedded_development_default() {
        let with_key = ServeArgs {
            signing_key: Some("key.pem".to_owned()),
            ..Default::default()
        };
        assert!(!with_key.resolve().unwrap().bootstrap_single);
        let public = ServeArgs {
            listen: Some(([0, 0, 0, 0], 3000).into()),
            ..Default::default()
        };
        assert!(!public.resolve().unwrap().bootstrap_single);
        let public_internal = ServeArgs {
            listen_internal: Some(([192, 0, 2, 1], 3001).into()),
            ..Default::default()
        };
        assert!(!public_internal.resolve().unwrap().bootstrap_single);
        let asked = ServeArgs {
            signing_key: Some("key.pem".to_owned()),
            bootstrap_single: Some(true),
            ..Default::default()
        };
        assert!(asked.resolve().unwrap().bootstrap_single);
    }

    #[test]
    fn flags_override_the_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "node-id = 7\norigin = \"file.example\"\nbatch-max-size = 9\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            origin: Some("flag.example".into()),
            ..Default::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.node_id, 7);
        assert_eq!(config.origin, "flag.example");
        assert_eq!(config.batch_max_size, 9);
    }

    #[test]
    fn shared_tile_store_is_off_unless_set_by_flag_or_file() {
        assert!(!ServeArgs::default().resolve().unwrap().shared_tile_store);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "shared-tile-store = true\n").unwrap();
        let from_file = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        assert!(from_file.resolve().unwrap().shared_tile_store);
        use clap::Parser as _;
        let cli =
            crate::Cli::try_parse_from(["rekor-node", "serve", "--shared-tile-store"]).unwrap();
        let Some(crate::Command::Serve(args)) = cli.command else {
            panic!("not serve");
        };
        assert!(args.resolve().unwrap().shared_tile_store);
    }

    #[test]
    fn batch_byte_bound_defaults_to_4_mib_and_is_capped() {
        let config = ServeArgs::default().resolve().unwrap();
        assert_eq!(config.batch_max_bytes, 4 * 1024 * 1024);
        let bounded = |bytes| {
            ServeArgs {
                batch_max_bytes: Some(bytes),
                ..Default::default()
            }
            .resolve()
        };
        assert_eq!(bounded(1024).unwrap().batch_max_bytes, 1024);
        assert!(bounded(0).is_err());
        assert!(bounded(MAX_BATCH_MAX_BYTES + 1).is_err());
    }

    #[test]
    fn unknown_toml_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "nodeid = 7\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        assert!(args.resolve().is_err());
    }

    #[test]
    fn witness_settings_from_toml_and_defaults() {
        let config = ServeArgs::default().resolve().unwrap();
        assert_eq!(config.witness_policy, None);
        assert_eq!(config.witness_timeout, Duration::from_secs(5));
        assert!(!config.require_witness_quorum);
        assert!(!config.witness_halt_override);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "witness-policy = \"policy.txt\"\nwitness-timeout-ms = 250\nrequire-witness-quorum = true\n\
             witness-halt-override = true\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.witness_policy, Some(PathBuf::from("policy.txt")));
        assert_eq!(config.witness_timeout, Duration::from_millis(250));
        assert!(config.require_witness_quorum);
        assert!(config.witness_halt_override);
    }

    #[test]
    fn raft_timing_from_flags_and_toml_with_validation() {
        let config = ServeArgs::default().resolve().unwrap();
        assert_eq!(
            config.raft_timing,
            RaftTiming {
                heartbeat_ms: 100,
                election_timeout_min_ms: 300,
                election_timeout_max_ms: 400,
            }
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "raft-heartbeat-ms = 250\nraft-election-timeout-min-ms = 1000\n\
             raft-election-timeout-max-ms = 2000\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            raft_election_timeout_max_ms: Some(3000),
            ..Default::default()
        };
        let timing = args.resolve().unwrap().raft_timing;
        assert_eq!(timing.heartbeat_ms, 250);
        assert_eq!(timing.election_timeout_min_ms, 1000);
        assert_eq!(timing.election_timeout_max_ms, 3000);
        let tuning = timing.apply(rekor_raft::RaftTuning::default());
        assert_eq!(tuning.heartbeat_ms, 250);
        assert_eq!(tuning.election_timeout_max_ms, 3000);

        let refused = [
            (Some(10), None, None),        // heartbeat below 20 ms
            (Some(200), None, None),       // default min 300 < 3 heartbeats
            (None, Some(400), None),       // empty range with the default max 400
            (None, Some(900), Some(800)),  // inverted range
            (None, Some(250), Some(1000)), // min below 3 × the default 100 ms heartbeat
        ];
        for (heartbeat, min, max) in refused {
            let args = ServeArgs {
                raft_heartbeat_ms: heartbeat,
                raft_election_timeout_min_ms: min,
                raft_election_timeout_max_ms: max,
                ..Default::default()
            };
            assert!(
                args.resolve().is_err(),
                "accepted heartbeat {heartbeat:?} min {min:?} max {max:?}"
            );
        }
    }

    /// The `Default:` of every flag in `serve --help`, as operators read it: the text after
    /// `Default: ` up to the end of its phrase.
    fn defaults_in_help() -> BTreeMap<String, String> {
        use clap::CommandFactory as _;
        let mut command = crate::Cli::command()
            .find_subcommand("serve")
            .unwrap()
            .clone();
        let rendered = command.render_long_help().to_string();
        assert!(
            !rendered.contains("{default}"),
            "unfilled default in:\n{rendered}"
        );
        let mut found = BTreeMap::new();
        for arg in command.get_arguments() {
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(ToString::to_string);
            let Some((_, after)) = help.as_deref().and_then(|h| h.split_once("Default: ")) else {
                continue;
            };
            let end = [". ", ", ", " ("]
                .iter()
                .filter_map(|stop| after.find(stop))
                .min()
                .unwrap_or(after.len());
            let value = after[..end].trim_end_matches('.');
            assert!(rendered.contains(&format!("Default: {value}")));
            found.insert(arg.get_long().unwrap().to_owned(), value.to_owned());
        }
        found
    }

    /// Every default `serve --help` states is the one a bare `serve` runs with.
    #[test]
    fn help_states_the_defaults_the_node_runs_with() {
        let config = ServeArgs::default().resolve().unwrap();
        let (public, internal) = (&config.public_limits, &config.internal_limits);
        // One flag sets these for both listeners.
        assert_eq!(public.header_timeout, internal.header_timeout);
        assert_eq!(public.keep_alive, internal.keep_alive);
        let in_data_dir = |path: &Path| {
            let name = path.strip_prefix(&config.data_dir).unwrap();
            format!("<data-dir>/{}", name.display())
        };
        let SecretSource::File { path: secret, .. } = &config.cluster_secret else {
            panic!("the default cluster secret is a file");
        };
        let or_flag = |value: &str, flag: &str, flag_value: String| {
            if value == flag_value {
                flag.to_owned()
            } else {
                value.to_owned()
            }
        };
        let none_unless = |set: bool| if set { "set" } else { "none" }.to_owned();
        let mib = |bytes: usize| (bytes / MIB).to_string();
        let expected: BTreeMap<String, String> = [
            ("node-id", config.node_id.to_string()),
            ("data-dir", format!("./{}", config.data_dir.display())),
            ("listen", config.listen.to_string()),
            ("listen-internal", config.listen_internal.to_string()),
            (
                "advertise-internal",
                or_flag(
                    &config.advertise_internal,
                    "--listen-internal",
                    config.listen_internal.to_string(),
                ),
            ),
            (
                "advertise",
                or_flag(&config.advertise, "--listen", config.listen.to_string()),
            ),
            ("origin", config.origin.clone()),
            (
                "signing-key",
                in_data_dir(Path::new(&config.signing_key.to_string())),
            ),
            ("cluster-secret-file", in_data_dir(secret)),
            ("tile-store", in_data_dir(Path::new(&config.tile_store))),
            ("batch-max-size", config.batch_max_size.to_string()),
            ("batch-max-bytes", config.batch_max_bytes.to_string()),
            (
                "batch-max-age-ms",
                config.batch_max_age.as_millis().to_string(),
            ),
            (
                "checkpoint-interval-ms",
                config.checkpoint_interval.as_millis().to_string(),
            ),
            (
                "republish-interval-s",
                config.republish_interval.as_secs().to_string(),
            ),
            (
                "pushback-max-outstanding",
                config.pushback_max_outstanding.to_string(),
            ),
            (
                "submit-timeout-s",
                config.submit_timeout.as_secs().to_string(),
            ),
            (
                "max-request-body-size",
                config.max_request_body_size.to_string(),
            ),
            (
                "bootstrap-single",
                format!(
                    "{} only for the embedded development default",
                    config.bootstrap_single
                ),
            ),
            (
                "raft-snapshot-every",
                // Not set: Raft's own interval.
                config
                    .raft_snapshot_every
                    .unwrap_or(rekor_raft::RaftTuning::default().snapshot_logs_since_last)
                    .to_string(),
            ),
            (
                "raft-heartbeat-ms",
                config.raft_timing.heartbeat_ms.to_string(),
            ),
            (
                "raft-election-timeout-min-ms",
                config.raft_timing.election_timeout_min_ms.to_string(),
            ),
            (
                "raft-election-timeout-max-ms",
                config.raft_timing.election_timeout_max_ms.to_string(),
            ),
            ("cache-mib", mib(config.cache_bytes as usize)),
            ("tile-cache-mib", mib(config.tile_cache_bytes as usize)),
            (
                "witness-policy",
                none_unless(config.witness_policy.is_some()),
            ),
            (
                "witness-timeout-ms",
                config.witness_timeout.as_millis().to_string(),
            ),
            (
                "metrics-listen",
                none_unless(config.metrics_listen.is_some()),
            ),
            ("grpc-listen", none_unless(config.grpc_listen.is_some())),
            ("read-listen", none_unless(config.read_listen.is_some())),
            (
                "signer-timeout-ms",
                config.signer_timeout.as_millis().to_string(),
            ),
            (
                "signing-key-password-file",
                none_unless(config.signing_key_password_file.is_some()),
            ),
            (
                "header-timeout-ms",
                public.header_timeout.as_millis().to_string(),
            ),
            ("keep-alive-s", public.keep_alive.as_secs().to_string()),
            (
                "body-timeout-ms",
                public.body_timeout.as_millis().to_string(),
            ),
            ("max-connections", public.max_connections.to_string()),
            ("body-budget-mib", mib(public.body_budget_bytes)),
            (
                "internal-body-timeout-ms",
                internal.body_timeout.as_millis().to_string(),
            ),
            (
                "internal-max-connections",
                internal.max_connections.to_string(),
            ),
            ("internal-body-budget-mib", mib(internal.body_budget_bytes)),
            (
                "witness-halt-override",
                config.witness_halt_override.to_string(),
            ),
            ("witness-allow-http", config.witness_allow_http.to_string()),
            (
                "http-tls-cert-file",
                none_unless(config.public_tls.is_some()),
            ),
            (
                "internal-tls-ca-file",
                none_unless(config.internal_tls.is_some()),
            ),
            (
                "tls-reload-interval-s",
                config
                    .tls_reload_interval
                    .map_or(0, |interval| interval.as_secs())
                    .to_string(),
            ),
            (
                "client-signing-algorithms",
                config.client_signing_algorithms.flag_values().join(","),
            ),
            (
                "peer-source-address",
                config
                    .peer_source_address
                    .map_or("the operating system's choice".to_owned(), |address| {
                        address.to_string()
                    }),
            ),
        ]
        .into_iter()
        .map(|(flag, value)| (flag.to_owned(), value))
        .collect();
        assert_eq!(defaults_in_help(), expected);
    }

    #[test]
    fn origin_must_be_a_bare_host_name() {
        for bad in ["", "https://x.dev", "a b", "a+b", "x.dev/path"] {
            let args = ServeArgs {
                origin: Some(bad.into()),
                ..Default::default()
            };
            assert!(args.resolve().is_err(), "{bad:?} accepted");
        }
    }
}
