//! deploy/ stays consistent with the binary (issue: deployment and operator experience). Docker
//! and Kubernetes cannot run here, so this checks what they would consume:
//! - every `--flag` in deploy/ (and in scripts/local-cluster.sh) is a flag of some `rekor-node`
//!   command's `--help`, unless it belongs to a named foreign tool listed below;
//! - every `REKOR_*` environment variable in deploy/ is one that `rekor-node` reads;
//! - every key of the systemd TOML config is a `serve` flag;
//! - every metric the Grafana dashboard and the Prometheus alerts query is exported at a real
//!   node's `/metrics`, and the dashboard is valid JSON.
//!
//! `deploy/validate.sh` (yamllint + structural checks) covers the YAML itself.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rekor_cluster_tests::{node_binary, NodeProcess, NodeSpec};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Flags of other programs that deploy/ runs, by program. Anything else must be a rekor-node flag.
const FOREIGN_FLAGS: &[(&str, &[&str])] = &[
    (
        "cargo",
        &["--release", "--locked", "--features", "--version", "--root"],
    ),
    (
        "Dockerfile instructions",
        &[
            "--mount",
            "--from",
            "--interval",
            "--timeout",
            "--start-period",
            "--retries",
        ],
    ),
    ("apt-get", &["--no-install-recommends"]),
    (
        "useradd/install",
        &[
            "--system",
            "--uid",
            "--gid",
            "--home-dir",
            "--create-home",
            "--shell",
        ],
    ),
    (
        "s3s-fs",
        &["--host", "--port", "--access-key", "--secret-key"],
    ),
    ("kubectl", &["--from-file"]),
    ("docker build / compose", &["--target", "--rm", "--build"]),
    ("systemctl", &["--now"]),
    (
        "yamllint/pip",
        &["--strict", "--quiet", "--disable-pip-version-check"],
    ),
    // Its own option (a cluster without TLS between the nodes), named in its header.
    ("scripts/local-cluster.sh", &["--plain"]),
    ("scripts/test.sh", &["--setup"]),
    // deploy/image/build-rootfs.sh and build.sh.
    (
        "tar",
        &[
            "--numeric-owner",
            "--sort",
            "--mtime",
            "--format",
            "--owner",
            "--group",
        ],
    ),
    ("busybox", &["--list"]),
    (
        "podman",
        &[
            "--file",
            "--label",
            "--tag",
            "--runroot",
            "--storage-driver",
        ],
    ),
    ("helm", &["--wait", "--namespace", "--values"]),
];

fn help(args: &[&str]) -> String {
    let output = Command::new(node_binary().unwrap())
        .args(args)
        .arg("--help")
        .output()
        .expect("running rekor-node --help");
    assert!(output.status.success(), "rekor-node {args:?} --help failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `--name` tokens of `text` (after a space, quote, bracket or line start).
fn flags_in(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let before = text[..i].chars().last();
        if !matches!(
            before,
            None | Some(' ' | '"' | '\'' | '[' | '(' | '\n' | '`')
        ) {
            continue;
        }
        let name: String = text[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        if name.len() > 1 && name.starts_with(|c: char| c.is_ascii_lowercase()) {
            flags.insert(format!("--{name}"));
        }
    }
    flags
}

/// `REKOR_*` names in `text`.
fn env_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("REKOR_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        // `REKOR_*` in prose is a pattern, not a name.
        if name.len() > "REKOR_".len() {
            names.insert(name);
        }
    }
    names
}

fn deploy_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![repo_root().join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 10, "deploy/ looks empty: {files:?}");
    files
}

#[test]
fn every_flag_env_var_and_config_key_in_deploy_exists() {
    let commands: &[&[&str]] = &[
        &["serve"],
        &["init"],
        &["keygen"],
        &["certs"],
        &["status"],
        &["freeze"],
        &["verify"],
        &["node", "add"],
        &["node", "remove"],
        &["node", "list"],
    ];
    let helps: Vec<String> = commands.iter().map(|command| help(command)).collect();
    let all_help = helps.join("\n");
    let known_flags = flags_in(&all_help);
    assert!(known_flags.contains("--tile-store"), "{known_flags:?}");
    let foreign: BTreeSet<&str> = FOREIGN_FLAGS
        .iter()
        .flat_map(|(_, flags)| flags.iter().copied())
        .collect();
    let known_env = env_names_in(&all_help);
    assert!(known_env.contains("REKOR_LISTEN"), "{known_env:?}");

    let mut unknown = Vec::new();
    let mut files = deploy_files();
    files.push(repo_root().join("scripts/local-cluster.sh"));
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let name = path.strip_prefix(repo_root()).unwrap_or(path).display();
        for flag in flags_in(&text) {
            if !known_flags.contains(&flag) && !foreign.contains(flag.as_str()) {
                unknown.push(format!("{name}: flag {flag}"));
            }
        }
        // The local-cluster script's own settings are documented in its header.
        let script_settings = ["REKOR_NODE_BIN", "REKOR_CLUSTER_DIR", "REKOR_BASE_PORT"];
        for env in env_names_in(&text) {
            if !known_env.contains(&env) && !script_settings.contains(&env.as_str()) {
                unknown.push(format!("{name}: environment variable {env}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "deploy/ uses names rekor-node does not know:\n{}",
        unknown.join("\n")
    );

    // The systemd config file: every key is a serve flag, and serve accepts the file.
    let serve_flags = flags_in(&helps[0]);
    let toml = repo_root().join("deploy/systemd/rekor-node.toml");
    for line in std::fs::read_to_string(&toml).unwrap().lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split('=').next().unwrap().trim();
        assert!(
            serve_flags.contains(&format!("--{key}")),
            "rekor-node.toml key {key:?} is not a serve flag"
        );
    }
}

#[test]
fn the_foreign_flag_list_cannot_hide_a_rekor_flag() {
    let serve = flags_in(&help(&["serve"]));
    for (tool, flags) in FOREIGN_FLAGS {
        for flag in *flags {
            assert!(
                !serve.contains(*flag),
                "{flag} of {tool} is also a serve flag"
            );
        }
    }
    // The scanner finds flags where deploy files write them.
    let found = flags_in("exec rekor-node serve\n  --node-id \"1\" [\"--tile-store\", x] a--b");
    assert_eq!(
        found,
        BTreeSet::from(["--node-id".to_owned(), "--tile-store".to_owned()])
    );
}

/// Metric families (`rekor_*`) a query text refers to, without histogram suffixes.
fn metrics_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("rekor_") {
        if text[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name)
            .to_owned();
        names.insert(family);
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_query_exported_metrics() {
    let dashboard_path = repo_root().join("deploy/grafana/rekor-node-dashboard.json");
    let dashboard_text = std::fs::read_to_string(&dashboard_path).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&dashboard_text).expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let alerts =
        std::fs::read_to_string(repo_root().join("deploy/prometheus/rekor-alerts.yml")).unwrap();
    let mut wanted = metrics_in(&exprs.join("\n"));
    wanted.extend(metrics_in(&alerts));

    // A real node's /metrics.
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::lone(dir.path(), 1).unwrap();
    // With a read listener, whose families the dashboard queries too.
    let read_listener = format!("127.0.0.1:{}", rekor_cluster_tests::free_port().unwrap());
    let args = spec.serve_args(&["--read-listen", &read_listener]);
    let node = NodeProcess::start(spec, args, dir.path()).unwrap();
    node.wait_live(Duration::from_secs(30)).await.unwrap();
    // The lone loopback node forms its own log; once it serves a checkpoint it has signed one,
    // so the signer's families have samples.
    let client = node.client();
    rekor_cluster_tests::wait_until("the first checkpoint", Duration::from_secs(30), || async {
        client.checkpoint().await
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
    // One read through the read listener gives its labelled request counter a sample.
    let read = reqwest::get(format!("http://{read_listener}/api/v2/checkpoint"))
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let metrics = reqwest::get(format!("{}/metrics", node.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut exported: BTreeSet<String> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    // Labelled families appear only after their first sample; check where they are registered
    // instead (so that a rename still fails this test).
    for (labelled, file) in [
        ("rekor_node_storage_errors_total", "node/src/metrics.rs"),
        ("rekor_raft_replication_lag", "node/src/metrics.rs"),
        ("rekor_http_body_refused_total", "api/src/limits.rs"),
        // Only a node with TLS has samples of these.
        (
            "rekor_tls_certificate_expiry_timestamp_seconds",
            "node/src/tls/metrics.rs",
        ),
        ("rekor_tls_handshakes_total", "node/src/tls/metrics.rs"),
        (
            "rekor_tls_client_certificates_refused_total",
            "node/src/tls/metrics.rs",
        ),
        ("rekor_tls_reloads_total", "node/src/tls/metrics.rs"),
        (
            "rekor_internal_requests_refused_total",
            "node/src/tls/metrics.rs",
        ),
    ] {
        let registered = std::fs::read_to_string(repo_root().join(file)).unwrap();
        assert!(
            registered.contains(&format!("\"{labelled}\"")),
            "{labelled} is no longer registered in {file}"
        );
        exported.insert(labelled.to_owned());
    }
    let missing: Vec<&String> = wanted.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "deploy/ queries metrics the node does not export: {missing:?}\nexported: {exported:?}"
    );
}
