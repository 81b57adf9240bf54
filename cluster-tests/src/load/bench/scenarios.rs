//! The scenario runners: the validation ceiling (no HTTP, Raft or storage), writes against a
//! running cluster with per-node figures from the OS and `/metrics`, and reads of tiles,
//! bundles and the checkpoint, next to nginx serving the same files.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;

use super::nginx::Nginx;
use super::report::{CeilingFigures, NodeFigures, ReadFigures, ReadsReport, WriteFigures};
use super::BenchSettings;
use crate::load::runner::{run_load, Arrival, LoadConfig, LoadReport, Workload};
use crate::load::{system, thread_cpu};
use crate::{wait_until, Cluster, LogClient};

/// How the nodes of `cluster` talk to each other, as the report names it.
fn transport_of(cluster: &Cluster) -> &'static str {
    if cluster.pki.is_some() {
        "mutual TLS"
    } else {
        "plain HTTP"
    }
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

/// Runs the closed-loop write load on every node of `cluster`, waits until each node serves
/// the whole log, then reads each node's figures.
pub(super) async fn write_scenario(
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
    let pids: Vec<u32> = cluster.nodes.iter().filter_map(|n| n.pid()).collect();
    let cpu_before: Vec<_> = pids.iter().map(|&pid| thread_cpu::sample(pid)).collect();
    let generator_before = thread_cpu::sample(std::process::id());
    let load = run_load(
        &config,
        &Workload::Submit {
            bodies: bodies.clone(),
        },
    )
    .await?;
    let cpu_after: Vec<_> = pids.iter().map(|&pid| thread_cpu::sample(pid)).collect();
    let generator_after = thread_cpu::sample(std::process::id());
    let ticks = thread_cpu::ticks_per_second();
    let cpu_per_entry_by_stage =
        thread_cpu::micros_per_entry(&cpu_before, &cpu_after, load.succeeded, ticks);
    let load_generator_cpu_per_entry = (load.succeeded > 0).then(|| {
        generator_after.total.saturating_sub(generator_before.total) as f64 / ticks * 1e6
            / load.succeeded as f64
    });
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
        let cpu = node
            .pid()
            .and_then(|pid| pids.iter().position(|&p| p == pid))
            .and_then(|at| {
                thread_cpu::process_micros_per_entry(
                    &cpu_before[at],
                    &cpu_after[at],
                    load.succeeded,
                    ticks,
                )
            });
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
            cpu_us_per_entry: cpu.map(|(total, _)| total),
            verification_us_per_entry: cpu.map(|(_, verification)| verification),
        });
    }
    let disk: Vec<u64> = per_node.iter().filter_map(|n| n.data_dir_bytes).collect();
    let disk_bytes_per_entry = (tree_size > 0 && !disk.is_empty())
        .then(|| disk.iter().sum::<u64>() as f64 / disk.len() as f64 / tree_size as f64);
    Ok(WriteFigures {
        nodes: cluster.nodes.len(),
        transport: transport_of(cluster),
        signer: "key file".into(),
        tile_store: "per node",
        remote_signatures: None,
        ratio_to_ceiling: (ceiling_per_second > 0.0)
            .then(|| load.throughput_per_s / ceiling_per_second),
        load,
        tree_size,
        disk_bytes_per_entry,
        per_node,
        cpu_per_entry_by_stage,
        load_generator_cpu_per_entry,
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

/// Runs each read workload against the first node's public listener, its read listener
/// (`read_listener`, its address, if it has one), then nginx serving its tiles.
pub(super) async fn read_scenarios(
    cluster: &Cluster,
    settings: &BenchSettings,
    tree_size: u64,
    read_listener: Option<&str>,
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
        // Each server twice, in one order and then the reverse, keeping its better run: whatever
        // the machine does in the background (the node compacting after the writes, say) then
        // falls on no server more than another.
        let mut servers: Vec<(&str, String, Option<LoadReport>)> =
            vec![("ours", node.base_url(), None)];
        if let Some(address) = read_listener {
            servers.push(("our read listener", format!("http://{address}"), None));
        }
        if let Some(nginx) = &nginx {
            servers.push(("nginx", nginx.base_url(), None));
        }
        let order: Vec<usize> = (0..servers.len()).chain((0..servers.len()).rev()).collect();
        for index in order {
            let (name, url, best) = &mut servers[index];
            eprintln!("  {what}: {name}…");
            let run = run_load(&config(url.clone()), &workload).await?;
            if best
                .as_ref()
                .is_none_or(|best| run.throughput_per_s > best.throughput_per_s)
            {
                *best = Some(run);
            }
        }
        let mut best = |name: &str| {
            servers
                .iter_mut()
                .find(|(server, ..)| *server == name)
                .and_then(|(_, _, best)| best.take())
        };
        let ours = best("ours").context("the public listener was not measured")?;
        let read_listener = best("our read listener");
        let theirs = best("nginx");
        let ratio = |ours: &LoadReport| {
            theirs
                .as_ref()
                .filter(|t| t.throughput_per_s > 0.0)
                .map(|t| ours.throughput_per_s / t.throughput_per_s)
        };
        workloads.push(ReadFigures {
            what: what.to_owned(),
            paths: count,
            ratio_to_nginx: ratio(&ours),
            read_listener_ratio_to_nginx: read_listener.as_ref().and_then(ratio),
            ours,
            read_listener,
            nginx: theirs,
        });
    }
    Ok(ReadsReport {
        tree_size,
        workloads,
        nginx_note,
    })
}
