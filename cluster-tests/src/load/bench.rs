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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;

use super::growth::{run_growth, GrowthReport, GrowthSettings};
use super::requests::{KeyKind, RequestMix, RequestPool};
use super::runner::{run_load, Arrival, LoadConfig, LoadReport, Workload};
use super::system;
use crate::{wait_until, Cluster, LogClient};

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
        }
    }
}

/// The pre-signed pool.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolFigures {
    pub requests: usize,
    pub by_key: Vec<(KeyKind, usize)>,
    pub certificates: usize,
    pub mean_body_bytes: f64,
    pub signing_s: f64,
}

/// Decode + validate (signature verification included) over the pool, on every core.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CeilingFigures {
    pub threads: usize,
    pub entries: u64,
    pub failures: u64,
    pub elapsed_s: f64,
    pub per_second: f64,
}

/// One node after a write scenario.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NodeFigures {
    pub id: u64,
    pub peak_rss_bytes: Option<u64>,
    pub data_dir_bytes: Option<u64>,
    pub tile_bytes: Option<u64>,
    pub is_leader: bool,
    pub mean_batch_size: Option<f64>,
    pub batches: Option<f64>,
    pub mean_batch_commit_ms: Option<f64>,
    pub mean_integrate_ms: Option<f64>,
    pub integrate_steps: Option<f64>,
    pub mean_validation_ms: Option<f64>,
    pub checkpoints_published: Option<f64>,
    pub pushback: Option<f64>,
    /// TLS connections its internal listener accepted (kept-alive connections keep this far
    /// below the number of node-to-node requests).
    pub internal_tls_handshakes: Option<f64>,
}

/// A write scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WriteFigures {
    pub nodes: usize,
    /// Between the nodes: `mutual TLS` (the default) or `plain HTTP` (the comparison run).
    pub transport: &'static str,
    pub load: LoadReport,
    /// Write throughput over the ceiling's entries/s.
    pub ratio_to_ceiling: Option<f64>,
    pub tree_size: u64,
    /// Data directory bytes per logged entry, mean over nodes.
    pub disk_bytes_per_entry: Option<f64>,
    pub per_node: Vec<NodeFigures>,
}

/// One read workload, ours and nginx's.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadFigures {
    pub what: String,
    pub paths: usize,
    pub ours: LoadReport,
    pub nginx: Option<LoadReport>,
    /// Our requests/s over nginx's.
    pub ratio_to_nginx: Option<f64>,
}

/// Reads against the first write scenario's log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadsReport {
    pub tree_size: u64,
    pub workloads: Vec<ReadFigures>,
    pub nginx_note: Option<String>,
}

/// The whole report (written as JSON and as Markdown).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub generated_unix_s: u64,
    pub commit: String,
    pub cores: usize,
    pub cpu_model: String,
    /// The node binary, relative to the workspace when it is inside it.
    pub node_binary: String,
    pub settings: BenchSettings,
    pub pool: PoolFigures,
    pub ceiling: CeilingFigures,
    pub writes: Vec<WriteFigures>,
    pub reads: Option<ReadsReport>,
    /// Integration rate, proof latency, disk and memory by log size (`None`: not run).
    pub growth: Option<GrowthReport>,
    pub notes: Vec<String>,
}

/// Runs every scenario of `settings`. Progress goes to stderr.
pub async fn run_bench(settings: &BenchSettings) -> Result<BenchReport> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut notes = Vec::new();

    // Growth first: its peak RSS is then free of the request pool.
    let growth = match &settings.growth {
        Some(growth) if !growth.sizes.is_empty() => {
            eprintln!("growth scenario: sizes {:?}…", growth.sizes);
            Some(run_growth(growth).await.context("growth scenario")?)
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
        let plain = settings.plain_comparison && nodes > 1;
        std::iter::once((nodes, false)).chain(plain.then_some((nodes, true)))
    });
    for (position, (nodes, plain)) in runs.enumerate() {
        let node_args: Vec<&str> = settings.node_args.iter().map(String::as_str).collect();
        let cluster = if plain {
            eprintln!("write scenario: {nodes} node(s), plain HTTP between them…");
            Cluster::start_plain(nodes, &node_args).await?
        } else {
            eprintln!("write scenario: {nodes} node(s), mutual TLS between them…");
            Cluster::start(nodes, &node_args).await?
        };
        let figures = write_scenario(&cluster, settings, &bodies, ceiling.per_second).await;
        let figures = match figures {
            Ok(figures) => figures,
            Err(error) => bail!("{nodes}-node write scenario: {error:#}\n{}", tail(&cluster)),
        };
        if figures.load.exhausted {
            notes.push(format!(
                "{nodes}-node writes used all {} pre-signed requests before the duration ended; \
                 raise --requests for a full-length run.",
                bodies.len()
            ));
        }
        if position == 0 && settings.reads {
            eprintln!("read scenarios…");
            reads = Some(read_scenarios(&cluster, settings, figures.tree_size).await?);
        }
        writes.push(figures);
    }

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

fn transport_of(cluster: &Cluster) -> &'static str {
    if cluster.pki.is_some() {
        "mutual TLS"
    } else {
        "plain HTTP"
    }
}

/// The last lines of every node's log, for an error message.
fn tail(cluster: &Cluster) -> String {
    let logs = cluster.logs();
    let lines: Vec<&str> = logs.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Decodes and validates pool requests on `threads` threads until `budget` is spent or the
/// pool is exhausted.
pub fn measure_ceiling(bodies: &[Bytes], threads: usize, budget: Duration) -> CeilingFigures {
    // The node's own verifier (aws-lc-rs), so the ratio compares like with like.
    let validator = rekor_api::EntryValidator::with_verifier(
        rekor_api::AlgorithmPolicy::default(),
        false,
        std::sync::Arc::new(rekor_api::AwsLcVerifier),
    );
    let next = AtomicUsize::new(0);
    let (done, failures) = (AtomicU64::new(0), AtomicU64::new(0));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(index) else { break };
                if started.elapsed() >= budget {
                    break;
                }
                let valid = rekor_api::CreateEntryRequest::from_json(body)
                    .ok()
                    .is_some_and(|request| validator.validate(&request).is_ok());
                if valid {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let entries = done.load(Ordering::Relaxed);
    CeilingFigures {
        threads: threads.max(1),
        entries,
        failures: failures.load(Ordering::Relaxed),
        elapsed_s: elapsed,
        per_second: entries as f64 / elapsed,
    }
}

async fn write_scenario(
    cluster: &Cluster,
    settings: &BenchSettings,
    bodies: &Arc<Vec<Bytes>>,
    ceiling_per_second: f64,
) -> Result<WriteFigures> {
    let targets: Vec<String> = cluster.nodes.iter().map(|n| n.base_url()).collect();
    let config = LoadConfig {
        targets,
        arrival: Arrival::Closed {
            concurrency: settings.write_concurrency,
        },
        duration: settings.write_duration,
        proof_sample_every: settings.proof_sample_every,
        request_timeout: Duration::from_secs(30),
    };
    let load = run_load(
        &config,
        &Workload::Submit {
            bodies: bodies.clone(),
        },
    )
    .await?;
    // Every node converges on the same tree; wait until each serves the full log.
    let logged = load.succeeded;
    let mut tree_size = 0;
    for node in &cluster.nodes {
        let client = LogClient::new(&node.base_url());
        tree_size = wait_until(
            "the checkpoint to cover the run",
            Duration::from_secs(60),
            || {
                let client = client.clone();
                async move {
                    let size = checkpoint_size(&client).await?;
                    Ok((size >= logged).then_some(size))
                }
            },
        )
        .await?;
    }
    let http = reqwest::Client::new();
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await.ok();
    let mut per_node = Vec::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        let metrics = match http
            .get(format!("{}/metrics", node.base_url()))
            .send()
            .await
        {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let mean_ms = |name: &str| system::histogram_mean(&metrics, name).map(|(m, _)| m * 1e3);
        let tiles = node.spec.data_dir.join("tiles");
        per_node.push(NodeFigures {
            id: node.spec.id,
            peak_rss_bytes: node.pid().and_then(|pid| system::peak_rss_bytes(pid).ok()),
            data_dir_bytes: system::dir_bytes(&node.spec.data_dir).ok(),
            tile_bytes: system::dir_bytes(&tiles).ok(),
            is_leader: leader == Some(index),
            mean_batch_size: system::histogram_mean(&metrics, "rekor_node_batch_size")
                .map(|(m, _)| m),
            batches: system::histogram_mean(&metrics, "rekor_node_batch_size").map(|(_, c)| c),
            mean_batch_commit_ms: mean_ms("rekor_node_batch_commit_seconds"),
            mean_integrate_ms: mean_ms("rekor_node_integrate_seconds"),
            integrate_steps: system::histogram_mean(&metrics, "rekor_node_integrate_seconds")
                .map(|(_, c)| c),
            mean_validation_ms: mean_ms("rekor_v2_entry_validation_seconds"),
            checkpoints_published: system::metric_value(
                &metrics,
                "rekor_node_checkpoints_published_total",
            ),
            pushback: system::metric_value(&metrics, "rekor_node_pushback_total"),
            internal_tls_handshakes: system::metric_value(
                &metrics,
                "rekor_tls_handshakes_total{listener=\"internal\"}",
            ),
        });
    }
    let disk: Vec<u64> = per_node.iter().filter_map(|n| n.data_dir_bytes).collect();
    let disk_bytes_per_entry = (tree_size > 0 && !disk.is_empty())
        .then(|| disk.iter().sum::<u64>() as f64 / disk.len() as f64 / tree_size as f64);
    Ok(WriteFigures {
        nodes: cluster.nodes.len(),
        transport: transport_of(cluster),
        ratio_to_ceiling: (ceiling_per_second > 0.0)
            .then(|| load.throughput_per_s / ceiling_per_second),
        load,
        tree_size,
        disk_bytes_per_entry,
        per_node,
    })
}

/// The size line of the served checkpoint (0 before the first one).
async fn checkpoint_size(client: &LogClient) -> Result<u64> {
    let Some(text) = client.checkpoint().await? else {
        return Ok(0);
    };
    Ok(text
        .lines()
        .nth(1)
        .context("checkpoint has no size line")?
        .parse()?)
}

async fn read_scenarios(
    cluster: &Cluster,
    settings: &BenchSettings,
    tree_size: u64,
) -> Result<ReadsReport> {
    let node = cluster.nodes.first().context("no node")?;
    let tile_dir = node.spec.data_dir.join("tiles");
    let files = system::relative_files(&tile_dir)?;
    // Only complete, immutable objects: partial tiles come and go as the tree grows.
    let immutable = |file: &&String| !file.contains(".p/") && !file.ends_with(".p");
    let tiles: Vec<String> = files
        .iter()
        .filter(|f| f.starts_with("tile/") && !f.starts_with("tile/entries/"))
        .filter(immutable)
        .map(|f| format!("/api/v2/{f}"))
        .collect();
    let bundles: Vec<String> = files
        .iter()
        .filter(|f| f.starts_with("tile/entries/"))
        .filter(immutable)
        .map(|f| format!("/api/v2/{f}"))
        .collect();
    let checkpoint = vec!["/api/v2/checkpoint".to_owned()];

    let (nginx, nginx_note) = match &settings.nginx {
        None => (None, Some("nginx comparison disabled (--no-nginx)".to_owned())),
        Some(binary) => match Nginx::start(binary, &tile_dir).await {
            Ok(nginx) => (Some(nginx), None),
            Err(error) => (
                None,
                Some(format!(
                    "nginx comparison skipped: {error:#} (install it with `apt-get install -y nginx`)"
                )),
            ),
        },
    };

    let mut workloads = Vec::new();
    for (what, paths) in [
        ("tiles", tiles),
        ("bundles", bundles),
        ("checkpoint", checkpoint),
    ] {
        if paths.is_empty() {
            continue;
        }
        let count = paths.len();
        let workload = Workload::Get {
            paths: Arc::new(paths),
        };
        let config = |target: String| LoadConfig {
            targets: vec![target],
            arrival: Arrival::Closed {
                concurrency: settings.read_concurrency,
            },
            duration: settings.read_duration,
            proof_sample_every: 0,
            request_timeout: Duration::from_secs(10),
        };
        eprintln!("  {what}: ours…");
        let ours = run_load(&config(node.base_url()), &workload).await?;
        let theirs = match &nginx {
            Some(nginx) => {
                eprintln!("  {what}: nginx…");
                Some(run_load(&config(nginx.base_url()), &workload).await?)
            }
            None => None,
        };
        workloads.push(ReadFigures {
            what: what.to_owned(),
            paths: count,
            ratio_to_nginx: theirs
                .as_ref()
                .filter(|t| t.throughput_per_s > 0.0)
                .map(|t| ours.throughput_per_s / t.throughput_per_s),
            ours,
            nginx: theirs,
        });
    }
    Ok(ReadsReport {
        tree_size,
        workloads,
        nginx_note,
    })
}

/// nginx serving a tile directory under `/api/v2/` on a loopback port. Killed when dropped.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(binary: &str, tile_dir: &Path) -> Result<Self> {
        let binary = find_program(binary).with_context(|| format!("{binary} not found"))?;
        let dir = tempfile::tempdir()?;
        let port = crate::free_port()?;
        let prefix = dir.path().display().to_string();
        // As root, nginx's workers would drop to `nobody`, who cannot read the node's 0700
        // temporary directories; run them as the current user instead.
        let user = if current_uid() == Some(0) {
            "user root;\n"
        } else {
            ""
        };
        let config = format!(
            "{user}worker_processes auto;\ndaemon off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n  keepalive_timeout 120s;\n\
               client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n  fastcgi_temp_path {prefix}/fastcgi;\n\
               uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n  default_type application/octet-stream;\n\
               server {{\n    listen 127.0.0.1:{port};\n    location /api/v2/ {{ alias {tiles}/; }}\n  }}\n}}\n",
            tiles = tile_dir.display(),
        );
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning nginx")?;
        let nginx = Self {
            child,
            port,
            _dir: dir,
        };
        let client = LogClient::new(&nginx.base_url());
        let ready = wait_until(
            "nginx to serve the checkpoint",
            Duration::from_secs(10),
            || {
                let client = client.clone();
                async move { Ok(client.checkpoint().await.ok().flatten().map(|_| ())) }
            },
        )
        .await;
        if let Err(error) = ready {
            let log =
                std::fs::read_to_string(nginx._dir.path().join("error.log")).unwrap_or_default();
            bail!("{error}; nginx error log: {log}");
        }
        Ok(nginx)
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    /// SIGTERM lets the master stop its workers; a SIGKILLed master would orphan them, still
    /// holding cores and the port after the benchmark.
    fn drop(&mut self) {
        let terminated = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|status| status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while terminated && std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` if it is a path, else the first match on PATH or in the sbin directories (where
/// Debian puts nginx, often outside a non-login PATH).
fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return path.exists().then_some(path);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file());
    found
}

fn current_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
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

fn fmt_opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "–".into(), |b| format!("{:.1}", b as f64 / 1048576.0))
}

fn errors_text(load: &LoadReport) -> String {
    if load.errors.is_empty() {
        return "none".into();
    }
    load.errors
        .iter()
        .map(|(kind, count)| format!("{kind}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl BenchReport {
    /// The report as Markdown. `command` is the one that regenerates it.
    pub fn to_markdown(&self, command: &str) -> String {
        let mut md = String::new();
        let push = |md: &mut String, line: String| {
            md.push_str(&line);
            md.push('\n');
        };
        push(&mut md, "# Benchmarks".into());
        push(&mut md, String::new());
        push(
            &mut md,
            "Generated by the `bench` binary of `cluster-tests` (see `cluster-tests/src/load/`). \
             Regenerate with:"
                .into(),
        );
        push(&mut md, String::new());
        push(&mut md, format!("```sh\n{command}\n```"));
        push(&mut md, String::new());
        push(&mut md, "## Machine and settings".into());
        push(&mut md, String::new());
        push(&mut md, format!("- commit: `{}`", self.commit));
        push(
            &mut md,
            format!("- cores: {} ({})", self.cores, self.cpu_model),
        );
        push(
            &mut md,
            format!("- node binary: `{}`", short_path(&self.node_binary)),
        );
        let s = &self.settings;
        push(
            &mut md,
            format!(
                "- writes: {} s per scenario, closed loop with {} clients spread over all nodes; \
                 reads: {} s per workload, {} clients; extra node flags: {}",
                s.write_duration.as_secs_f64(),
                s.write_concurrency,
                s.read_duration.as_secs_f64(),
                s.read_concurrency,
                if s.node_args.is_empty() {
                    "none".to_owned()
                } else {
                    format!("`{}`", s.node_args.join(" "))
                }
            ),
        );
        let by_key: Vec<String> = self
            .pool
            .by_key
            .iter()
            .map(|(kind, count)| format!("{kind:?} {count}"))
            .collect();
        push(
            &mut md,
            format!(
                "- requests: {} pre-signed hashedrekord v0.0.2 ({}; {} with a certificate \
                 verifier), mean body {:.0} bytes, signed in {:.1} s before the clock started",
                self.pool.requests,
                by_key.join(", "),
                self.pool.certificates,
                self.pool.mean_body_bytes,
                self.pool.signing_s
            ),
        );
        push(&mut md, String::new());

        push(&mut md, "## Writes".into());
        push(&mut md, String::new());
        push(
            &mut md,
            format!(
                "Same-run ceiling: decoding and validating the same requests (aws-lc-rs \
                 signature verification included) on {} threads, no HTTP/Raft/storage: \
                 **{:.0} entries/s** ({} entries in {:.1} s).",
                self.ceiling.threads,
                self.ceiling.per_second,
                self.ceiling.entries,
                self.ceiling.elapsed_s
            ),
        );
        push(&mut md, String::new());
        push(
            &mut md,
            "| nodes | between nodes | entries/s | ratio to ceiling | p50 ms | p90 ms | p99 ms | max ms | logged | errors | proofs checked |"
                .into(),
        );
        push(
            &mut md,
            "|---|---|---|---|---|---|---|---|---|---|---|".into(),
        );
        for w in &self.writes {
            push(
                &mut md,
                format!(
                    "| {} | {} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} ({} failed) |",
                    w.nodes,
                    w.transport,
                    w.load.throughput_per_s,
                    fmt_opt(w.ratio_to_ceiling, 2),
                    w.load.latency.p50_ms,
                    w.load.latency.p90_ms,
                    w.load.latency.p99_ms,
                    w.load.latency.max_ms,
                    w.load.succeeded,
                    errors_text(&w.load),
                    w.load.proofs.checked,
                    w.load.proofs.failed
                ),
            );
        }
        push(&mut md, String::new());
        push(
            &mut md,
            "Per node, after the write run (means from the node's `/metrics`):".into(),
        );
        push(&mut md, String::new());
        push(
            &mut md,
            "| cluster | node | leader | peak RSS MiB | data dir MiB | tiles MiB | disk bytes/entry | batches | mean batch | mean commit ms | integrate steps | mean integrate ms | mean validation ms | checkpoints | pushback | internal TLS handshakes |"
                .into(),
        );
        push(
            &mut md,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".into(),
        );
        for w in &self.writes {
            for n in &w.per_node {
                let per_entry = n
                    .data_dir_bytes
                    .filter(|_| w.tree_size > 0)
                    .map(|b| b as f64 / w.tree_size as f64);
                push(
                    &mut md,
                    format!(
                        "| {} nodes, {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        w.nodes,
                        w.transport,
                        n.id,
                        if n.is_leader { "yes" } else { "" },
                        mib(n.peak_rss_bytes),
                        mib(n.data_dir_bytes),
                        mib(n.tile_bytes),
                        fmt_opt(per_entry, 0),
                        fmt_opt(n.batches, 0),
                        fmt_opt(n.mean_batch_size, 1),
                        fmt_opt(n.mean_batch_commit_ms, 2),
                        fmt_opt(n.integrate_steps, 0),
                        fmt_opt(n.mean_integrate_ms, 2),
                        fmt_opt(n.mean_validation_ms, 3),
                        fmt_opt(n.checkpoints_published, 0),
                        fmt_opt(n.pushback, 0),
                        fmt_opt(n.internal_tls_handshakes, 0),
                    ),
                );
            }
        }
        push(&mut md, String::new());

        push(&mut md, "## Reads".into());
        push(&mut md, String::new());
        match &self.reads {
            None => push(&mut md, "Not run.".into()),
            Some(reads) => {
                push(
                    &mut md,
                    format!(
                        "Against the first write scenario's log (size {}), one node, complete \
                         (immutable) objects only; nginx serves the same files from the node's \
                         tile directory in the same run.",
                        reads.tree_size
                    ),
                );
                if let Some(note) = &reads.nginx_note {
                    push(&mut md, String::new());
                    push(&mut md, format!("Note: {note}"));
                }
                push(&mut md, String::new());
                push(
                    &mut md,
                    "| objects | distinct paths | ours req/s | ours p50 ms | ours p99 ms | nginx req/s | nginx p50 ms | nginx p99 ms | ours/nginx | errors |"
                        .into(),
                );
                push(&mut md, "|---|---|---|---|---|---|---|---|---|---|".into());
                for r in &reads.workloads {
                    let nginx = r.nginx.as_ref();
                    push(
                        &mut md,
                        format!(
                            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} | {} |",
                            r.what,
                            r.paths,
                            r.ours.throughput_per_s,
                            r.ours.latency.p50_ms,
                            r.ours.latency.p99_ms,
                            fmt_opt(nginx.map(|n| n.throughput_per_s), 0),
                            fmt_opt(nginx.map(|n| n.latency.p50_ms), 2),
                            fmt_opt(nginx.map(|n| n.latency.p99_ms), 2),
                            fmt_opt(r.ratio_to_nginx, 2),
                            errors_text(&r.ours),
                        ),
                    );
                }
            }
        }
        push(&mut md, String::new());
        push(&mut md, "## Growth".into());
        push(&mut md, String::new());
        match &self.growth {
            None => push(&mut md, "Not run.".into()),
            Some(growth) => md.push_str(&growth.to_markdown()),
        }
        if !self.notes.is_empty() {
            push(&mut md, String::new());
            push(&mut md, "## Notes".into());
            push(&mut md, String::new());
            for note in &self.notes {
                push(&mut md, format!("- {note}"));
            }
        }
        md
    }
}

/// A path relative to the workspace if it is inside it, else the file name alone (no
/// machine-specific prefix in the committed report).
fn short_path(path: &str) -> String {
    match path.find("/target/") {
        Some(at) => path[at + 1..].to_owned(),
        None => Path::new(path).file_name().map_or_else(
            || path.to_owned(),
            |name| name.to_string_lossy().into_owned(),
        ),
    }
}
