//! Smoke runs of the `bench` and `loadgen` binaries (the performance issue: "a short smoke run
//! of the benchmark is part of the test suite so that it never rots"). Seconds, not minutes:
//! a single debug node, a few thousand requests, a growth run to 25,000 entries.

use std::process::Command;

use rekor_cluster_tests::{node_binary, Cluster};

/// A finished `bench` run: its JSON report, its Markdown report and its stderr.
struct BenchRun {
    report: serde_json::Value,
    markdown: String,
    stderr: String,
}

/// Runs `bench` with `args` against the debug node, writing its reports to a temporary
/// directory; fails the test if it exits unsuccessfully.
/// A two-second write run of a few clients, without reads or the growth scenario.
const SHORT_WRITES_ONLY: &[&str] = &[
    "--duration",
    "2",
    "--concurrency",
    "32",
    "--requests",
    "2000",
    "--ceiling-duration",
    "0.2",
    "--no-reads",
    "--no-growth",
];

fn run_bench(args: &[&str]) -> BenchRun {
    let node = node_binary().expect("rekor-node is built");
    let out = tempfile::tempdir().unwrap();
    let (markdown, json) = (out.path().join("bench.md"), out.path().join("bench.json"));
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .arg("--allow-debug-node")
        .arg("--node-bin")
        .arg(&node)
        .arg("--markdown")
        .arg(&markdown)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "bench failed:\n{stderr}");
    BenchRun {
        report: serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap(),
        markdown: std::fs::read_to_string(&markdown).unwrap(),
        stderr,
    }
}

#[test]
fn bench_produces_a_report_with_throughput_and_no_errors() {
    let BenchRun {
        report,
        markdown: text,
        stderr,
    } = run_bench(&[
        "--nodes",
        "1",
        "--duration",
        "3",
        "--concurrency",
        "32",
        "--read-duration",
        "0.5",
        "--read-concurrency",
        "8",
        "--requests",
        "2000",
        "--ceiling-duration",
        "0.5",
        "--proof-sample-every",
        "10",
        "--growth-sizes",
        "0,20000",
        "--growth-window",
        "5000",
        "--growth-proofs",
        "200",
    ]);
    assert!(report["cores"].as_u64().unwrap() >= 1);
    assert!(report["ceiling"]["per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(report["ceiling"]["failures"], 0);
    let writes = report["writes"].as_array().unwrap();
    assert_eq!(writes.len(), 1);
    let load = &writes[0]["load"];
    assert!(load["throughput_per_s"].as_f64().unwrap() > 0.0, "{load}");
    assert_eq!(load["errors"], serde_json::json!({}), "{stderr}");
    assert!(load["proofs"]["checked"].as_u64().unwrap() > 0, "{load}");
    assert_eq!(load["proofs"]["failed"], 0, "{load}");
    assert!(writes[0]["tree_size"].as_u64().unwrap() >= load["succeeded"].as_u64().unwrap());
    assert!(writes[0]["per_node"][0]["peak_rss_bytes"].as_u64().unwrap() > 0);
    // CPU per entry by stage: the node's verification pool and HTTP workers did work, and the
    // load generator's share is reported.
    let stages = writes[0]["cpu_per_entry_by_stage"].as_array().unwrap();
    let micros = |name: &str| {
        stages
            .iter()
            .find(|stage| stage[0] == name)
            .and_then(|stage| stage[1].as_f64())
            .unwrap_or_else(|| panic!("no stage {name} in {stages:?}"))
    };
    assert!(micros("verification pool") > 0.0, "{stages:?}");
    assert!(micros("HTTP workers and actors") > 0.0, "{stages:?}");
    assert!(
        writes[0]["load_generator_cpu_per_entry"].as_f64().unwrap() > 0.0,
        "{}",
        writes[0]
    );
    for read in report["reads"]["workloads"].as_array().unwrap() {
        assert!(
            read["ours"]["throughput_per_s"].as_f64().unwrap() > 0.0,
            "{read}"
        );
        assert_eq!(read["ours"]["errors"], serde_json::json!({}), "{read}");
        // One node first: its read listener is measured too.
        assert!(
            read["read_listener"]["throughput_per_s"].as_f64().unwrap() > 0.0,
            "{read}"
        );
        assert_eq!(
            read["read_listener"]["errors"],
            serde_json::json!({}),
            "{read}"
        );
    }

    let growth = &report["growth"];
    let points = growth["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{growth}");
    assert_eq!(points[0]["size"], 0);
    assert_eq!(points[1]["size"], 20_000);
    for point in points {
        assert_eq!(point["window_entries"], 5_000, "{point}");
        assert!(point["entries_per_s"].as_f64().unwrap() > 0.0, "{point}");
        assert_eq!(point["proofs"]["verified"], 200, "{point}");
        assert_eq!(point["proofs"]["failed"], 0, "{point}");
        assert!(point["proofs"]["p50_ms"].as_f64().unwrap() > 0.0, "{point}");
        // Every entry is ~1 KB in its bundle plus its hashes in tiles.
        let per_entry = point["disk_bytes_per_entry"].as_f64().unwrap();
        assert!((500.0..5_000.0).contains(&per_entry), "{point}");
        assert!(point["peak_rss_bytes"].as_u64().unwrap() > 0, "{point}");
    }
    assert!(points[1]["ratio_to_first"].as_f64().unwrap() > 0.0);
    assert_eq!(growth["final_size"], 25_000);

    assert!(text.contains("CPU per logged entry by stage"), "{text}");
    assert!(text.contains("## Growth"), "{text}");
    assert!(text.contains("In-process path"), "{text}");
    assert!(text.contains("| 20000 |"), "{text}");
    assert!(text.starts_with("# Benchmarks"), "{text}");
    assert!(
        text.contains("target/release/bench"),
        "names the command: {text}"
    );
    assert!(text.contains("<!-- analysis -->"));
}

/// The remote-signer comparison: three nodes with a key file, then three signing through the
/// Vault transit fake with 30 ms per signature; the report compares the two.
#[test]
fn bench_compares_a_slow_remote_signer_with_the_key_file() {
    let BenchRun {
        report,
        markdown: text,
        stderr,
    } = run_bench(
        &[
            &["--nodes", "3"],
            SHORT_WRITES_ONLY,
            &["--no-plain-comparison", "--remote-signer-delay-ms", "30"],
        ]
        .concat(),
    );
    let writes = report["writes"].as_array().unwrap();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0]["signer"], "key file");
    assert!(writes[0]["remote_signatures"].is_null());
    let remote = &writes[1];
    assert!(
        remote["signer"].as_str().unwrap().contains("+30 ms"),
        "{remote}"
    );
    assert!(
        remote["remote_signatures"].as_u64().unwrap() > 0,
        "{remote}"
    );
    assert!(remote["load"]["throughput_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(remote["load"]["errors"], serde_json::json!({}), "{stderr}");
    assert!(text.contains("of the key file's"), "{text}");
}

/// `--repeats 2`: each write scenario runs on two fresh clusters, in rounds of every scenario in
/// turn (a slow spell of the machine does not fall on one scenario's runs only), one row per
/// scenario (the median run), and a note gives both runs' rates.
#[test]
fn bench_repeats_each_write_scenario_and_reports_the_median() {
    let BenchRun {
        report,
        markdown: text,
        stderr,
    } = run_bench(
        &[
            &[
                "--nodes",
                "1",
                "--shared-store-nodes",
                "1",
                "--repeats",
                "2",
            ],
            SHORT_WRITES_ONLY,
        ]
        .concat(),
    );
    let writes = report["writes"].as_array().unwrap();
    assert_eq!(writes.len(), 2, "one row per scenario: {writes:?}");
    let order: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("write scenario:"))
        .map(|line| {
            if line.contains("shared tile store") {
                "shared"
            } else {
                "per-node"
            }
        })
        .collect();
    assert_eq!(
        order,
        ["per-node", "shared", "per-node", "shared"],
        "two rounds of both scenarios: {stderr}"
    );
    let shown = writes[0]["load"]["throughput_per_s"].as_f64().unwrap();
    let notes: Vec<&str> = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|note| note.as_str())
        .collect();
    let note = notes
        .iter()
        .find(|note| note.contains("2 runs on fresh clusters"))
        .unwrap_or_else(|| panic!("no repeats note: {notes:?}"));
    let rates: Vec<f64> = note
        .split("2 runs on fresh clusters, ")
        .nth(1)
        .and_then(|rest| rest.split(" entries/s").next())
        .unwrap()
        .split(", ")
        .map(|rate| rate.parse().unwrap())
        .collect();
    assert_eq!(rates.len(), 2, "{note}");
    let lower = rates[0].min(rates[1]);
    assert!(
        (shown - lower).abs() < 1.0,
        "the lower middle run is shown: {shown} {note}"
    );
    assert!(text.contains("--repeats 2"), "names the option: {text}");
}

/// The shared-tile-store run (`--shared-store-nodes`): a row of its own after the others, its
/// followers' proofs built from the leader's objects.
#[test]
fn bench_reports_a_shared_tile_store_row() {
    let BenchRun {
        report,
        markdown: text,
        stderr,
    } = run_bench(
        &[
            &["--nodes", "1"],
            SHORT_WRITES_ONLY,
            &["--shared-store-nodes", "3", "--proof-sample-every", "10"],
        ]
        .concat(),
    );
    let writes = report["writes"].as_array().unwrap();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0]["tile_store"], "per node");
    let shared = &writes[1];
    assert_eq!(
        (shared["nodes"].as_u64(), shared["tile_store"].as_str()),
        (Some(3), Some("shared")),
        "{shared}"
    );
    assert!(
        shared["load"]["throughput_per_s"].as_f64().unwrap() > 0.0,
        "{shared}"
    );
    assert_eq!(shared["load"]["errors"], serde_json::json!({}), "{stderr}");
    assert!(
        shared["load"]["proofs"]["checked"].as_u64().unwrap() > 0,
        "{shared}"
    );
    assert_eq!(shared["load"]["proofs"]["failed"], 0, "{shared}");
    assert!(
        text.contains("| 3 | mutual TLS | key file | shared |"),
        "{text}"
    );
    assert!(
        text.contains("--shared-store-nodes 3"),
        "names the option: {text}"
    );
    assert!(
        text.contains("the one shared tile directory holds"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_open_loop_logs_entries_with_valid_proofs() {
    node_binary().expect("rekor-node is built");
    let cluster = Cluster::start(1, &[]).await.unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--target", &cluster.nodes[0].base_url()])
        .args([
            "--rate",
            "100",
            "--duration",
            "2",
            "--proof-sample-every",
            "5",
        ])
        .arg("--json")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}\n{}", cluster.logs());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["succeeded"].as_u64().unwrap() >= 150, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}));
    assert!(
        report["proofs"]["checked"].as_u64().unwrap() >= 30,
        "{report}"
    );
    assert_eq!(report["proofs"]["failed"], 0);
    assert!(report["arrival"].as_str().unwrap().starts_with("open loop"));
}
