//! The benchmark report: the figures each scenario yields, gathered in [`BenchReport`] (written
//! as JSON), and its Markdown rendering for `docs/benchmarks.md`.

use std::path::Path;

use super::BenchSettings;
use crate::load::growth::GrowthReport;
use crate::load::requests::KeyKind;
use crate::load::runner::LoadReport;

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
    /// This node's CPU per entry the cluster logged during the write run, µs, and its
    /// verification pool's part of it (`load::thread_cpu`): how the cluster's cost splits
    /// between the leader and the followers.
    pub cpu_us_per_entry: Option<f64>,
    pub verification_us_per_entry: Option<f64>,
}

/// A write scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WriteFigures {
    pub nodes: usize,
    /// Between the nodes: `mutual TLS` (the default) or `plain HTTP` (the comparison run).
    pub transport: &'static str,
    /// How the leader signs checkpoints: `key file`, or a remote signer and its added latency.
    pub signer: String,
    /// `per node` (each node writes its own tile store) or `shared` (one store, written by the
    /// leader: `--shared-tile-store`).
    pub tile_store: &'static str,
    /// Signatures the remote signer made during the run (`None` for a key file).
    pub remote_signatures: Option<u64>,
    pub load: LoadReport,
    /// Write throughput over the ceiling's entries/s.
    pub ratio_to_ceiling: Option<f64>,
    pub tree_size: u64,
    /// Data directory bytes per logged entry, mean over nodes.
    pub disk_bytes_per_entry: Option<f64>,
    pub per_node: Vec<NodeFigures>,
    /// Microseconds of CPU per logged entry by stage, all nodes together, during the run
    /// (`load::thread_cpu`): `(stage, µs)` in report order.
    pub cpu_per_entry_by_stage: Vec<(String, f64)>,
    /// Microseconds of CPU per logged entry of the load generator (this process).
    pub load_generator_cpu_per_entry: Option<f64>,
}

impl WriteFigures {
    /// The run's name in the per-node and CPU tables.
    fn label(&self) -> String {
        format!(
            "{} nodes, {}, {}, {} tile store",
            self.nodes, self.transport, self.signer, self.tile_store
        )
    }
}

/// One read workload, ours and nginx's.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadFigures {
    pub what: String,
    pub paths: usize,
    /// The public listener's figures.
    pub ours: LoadReport,
    /// The read listener's (`--read-listen`), when the node had one.
    pub read_listener: Option<LoadReport>,
    pub nginx: Option<LoadReport>,
    /// Our public listener's requests/s over nginx's.
    pub ratio_to_nginx: Option<f64>,
    /// Our read listener's requests/s over nginx's.
    pub read_listener_ratio_to_nginx: Option<f64>,
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
    /// The "CPU per entry by stage" table of the write runs (nothing if no run has figures).
    fn push_cpu_by_stage(&self, md: &mut String) {
        let runs: Vec<&WriteFigures> = self
            .writes
            .iter()
            .filter(|w| !w.cpu_per_entry_by_stage.is_empty())
            .collect();
        let Some(first) = runs.first() else {
            return;
        };
        let mut line = |text: String| {
            md.push_str(&text);
            md.push('\n');
        };
        line(
            "CPU per logged entry by stage, µs, all nodes of the cluster together, over the write \
             run (from each node's threads in `/proc`, grouped by thread name: \
             `cluster-tests/src/load/thread_cpu.rs`); the load generator is this benchmark \
             process, on the same cores:"
                .into(),
        );
        line(String::new());
        let stages: Vec<&str> = first
            .cpu_per_entry_by_stage
            .iter()
            .map(|(stage, _)| stage.as_str())
            .collect();
        line(format!(
            "| cluster | {} | nodes total | load generator |",
            stages.join(" | ")
        ));
        line(format!("|---|{}---|---|", "---|".repeat(stages.len())));
        for w in runs {
            let total: f64 = w.cpu_per_entry_by_stage.iter().map(|(_, us)| us).sum();
            let cells: Vec<String> = w
                .cpu_per_entry_by_stage
                .iter()
                .map(|(_, us)| format!("{us:.1}"))
                .collect();
            line(format!(
                "| {} | {} | {total:.1} | {} |",
                w.label(),
                cells.join(" | "),
                fmt_opt(w.load_generator_cpu_per_entry, 1),
            ));
        }
        line(String::new());
    }

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
        push(
            &mut md,
            "Every scenario's files stay on disk until the run ends (a full run needs about 25 GB \
             free under the temporary directory), so no scenario starts right after a mass \
             deletion (see the analysis, part six)."
                .into(),
        );
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
            "| nodes | between nodes | signer | tile store | entries/s | ratio to ceiling | p50 ms | p90 ms | p99 ms | max ms | logged | errors | proofs checked |"
                .into(),
        );
        push(
            &mut md,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|".into(),
        );
        for w in &self.writes {
            push(
                &mut md,
                format!(
                    "| {} | {} | {} | {} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} ({} failed) |",
                    w.nodes,
                    w.transport,
                    w.signer,
                    w.tile_store,
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
        for remote in self.writes.iter().filter(|w| w.remote_signatures.is_some()) {
            let file = self.writes.iter().find(|w| {
                w.nodes == remote.nodes
                    && w.transport == remote.transport
                    && w.tile_store == remote.tile_store
                    && w.remote_signatures.is_none()
            });
            if let Some(file) = file.filter(|file| file.load.throughput_per_s > 0.0) {
                push(&mut md, String::new());
                push(
                    &mut md,
                    format!(
                        "{} nodes with a {}: {:.0} entries/s, {:.1}% of the key file's {:.0} \
                         ({} signatures, one per checkpoint; p99 {:.0} ms against {:.0} ms).",
                        remote.nodes,
                        remote.signer,
                        remote.load.throughput_per_s,
                        100.0 * remote.load.throughput_per_s / file.load.throughput_per_s,
                        file.load.throughput_per_s,
                        remote.remote_signatures.unwrap_or(0),
                        remote.load.latency.p99_ms,
                        file.load.latency.p99_ms,
                    ),
                );
            }
        }
        push(&mut md, String::new());
        push(
            &mut md,
            "Per node, after the write run (means from the node's `/metrics`):".into(),
        );
        push(&mut md, String::new());
        push(
            &mut md,
            "| cluster | node | leader | peak RSS MiB | data dir MiB | tiles MiB | disk bytes/entry | batches | mean batch | mean commit ms | integrate steps | mean integrate ms | mean validation ms | checkpoints | pushback | internal TLS handshakes | CPU µs/entry | of which verification |"
                .into(),
        );
        push(
            &mut md,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".into(),
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
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        w.label(),
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
                        fmt_opt(n.cpu_us_per_entry, 1),
                        fmt_opt(n.verification_us_per_entry, 1),
                    ),
                );
            }
        }
        push(&mut md, String::new());
        self.push_cpu_by_stage(&mut md);

        push(&mut md, "## Reads".into());
        push(&mut md, String::new());
        match &self.reads {
            None => push(&mut md, "Not run.".into()),
            Some(reads) => {
                push(
                    &mut md,
                    format!(
                        "Against the first write scenario's log (size {}), one node, complete \
                         (immutable) objects only: its public listener (\"ours\") and, when the \
                         first scenario has one node, its read listener (`--read-listen`, bundles \
                         by `sendfile`); nginx serves the same files from the node's tile \
                         directory in the same run. Each server ran twice per object kind (in one order, \
                         then the reverse), its better run shown.",
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
                    "| objects | distinct paths | ours req/s | ours p50 ms | ours p99 ms | read listener req/s | read listener p50 ms | read listener p99 ms | nginx req/s | nginx p50 ms | nginx p99 ms | ours/nginx | read listener/nginx | errors |"
                        .into(),
                );
                push(
                    &mut md,
                    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".into(),
                );
                for r in &reads.workloads {
                    let nginx = r.nginx.as_ref();
                    let read = r.read_listener.as_ref();
                    let errors = match read {
                        Some(read) if !read.errors.is_empty() => {
                            format!(
                                "{}; read listener: {}",
                                errors_text(&r.ours),
                                errors_text(read)
                            )
                        }
                        _ => errors_text(&r.ours),
                    };
                    push(
                        &mut md,
                        format!(
                            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                            r.what,
                            r.paths,
                            r.ours.throughput_per_s,
                            r.ours.latency.p50_ms,
                            r.ours.latency.p99_ms,
                            fmt_opt(read.map(|n| n.throughput_per_s), 0),
                            fmt_opt(read.map(|n| n.latency.p50_ms), 2),
                            fmt_opt(read.map(|n| n.latency.p99_ms), 2),
                            fmt_opt(nginx.map(|n| n.throughput_per_s), 0),
                            fmt_opt(nginx.map(|n| n.latency.p50_ms), 2),
                            fmt_opt(nginx.map(|n| n.latency.p99_ms), 2),
                            fmt_opt(r.ratio_to_nginx, 2),
                            fmt_opt(r.read_listener_ratio_to_nginx, 2),
                            errors,
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
pub(super) fn short_path(path: &str) -> String {
    match path.find("/target/") {
        Some(at) => path[at + 1..].to_owned(),
        None => Path::new(path).file_name().map_or_else(
            || path.to_owned(),
            |name| name.to_string_lossy().into_owned(),
        ),
    }
}
