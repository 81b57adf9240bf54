//! `chaos live` against deployments it did not start (issue "Chaos against a running
//! deployment"; the acceptance's short version).
//!
//! - A cluster started by `scripts/local-cluster.sh`, driven only through the nodes' URLs, the
//!   log's public key from `keygen.txt`, and hooks calling the script (`kill N`, `start-node N`,
//!   `pause N`, `resume N`): two leader kills under open-loop load, then a follower restart and a
//!   leader isolation; every run and the session's checker pass, and the killed nodes really are
//!   new processes afterwards.
//! - The checker fails when it must: the same tool pointed at two nodes of one log and one node of
//!   another exits 1 naming the foreign checkpoints; a kill hook that fails exits 1 with the
//!   hook's output in the report. Both next to a run over the healthy nodes that passes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rekor_cluster_tests::{node_binary, Cluster};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn local_cluster_script() -> String {
    repo_root()
        .join("scripts/local-cluster.sh")
        .to_string_lossy()
        .into_owned()
}

/// A cluster of `scripts/local-cluster.sh`, stopped when dropped (pass or fail).
struct LocalCluster {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    base: u16,
}

impl LocalCluster {
    fn start() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("local-cluster");
        let cluster = Self {
            _temp: temp,
            dir,
            base: rekor_cluster_tests::process::free_base_port(3),
        };
        let (ok, output) = cluster.script(&["start", "3"]);
        assert!(ok, "start failed:\n{output}");
        cluster
    }

    /// The environment the script (and so every hook) needs.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REKOR_CLUSTER_DIR", self.dir.to_string_lossy().into_owned()),
            ("REKOR_BASE_PORT", self.base.to_string()),
            (
                "REKOR_NODE_BIN",
                node_binary().unwrap().to_string_lossy().into_owned(),
            ),
        ]
    }

    fn script(&self, args: &[&str]) -> (bool, String) {
        let output = std::process::Command::new("bash")
            .arg(local_cluster_script())
            .args(args)
            .envs(self.env())
            .stdin(Stdio::null())
            .output()
            .expect("running scripts/local-cluster.sh");
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    }

    fn urls(&self) -> Vec<String> {
        (0..3)
            .map(|i| format!("http://127.0.0.1:{}", self.base + 10 * i))
            .collect()
    }

    fn pid(&self, node: u64) -> String {
        std::fs::read_to_string(self.dir.join(format!("node{node}.pid")))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn logs(&self) -> String {
        (1..=3)
            .map(|i| {
                let log = std::fs::read_to_string(self.dir.join(format!("node{i}.log")))
                    .unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                format!(
                    "===== node {i} =====\n{}\n",
                    lines[lines.len().saturating_sub(30)..].join("\n")
                )
            })
            .collect()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let (ok, output) = self.script(&["stop"]);
        if !ok {
            eprintln!("stopping the local cluster failed:\n{output}");
        }
    }
}

/// What one `chaos live` invocation did.
struct ChaosRun {
    success: bool,
    stdout: String,
    stderr: String,
}

impl ChaosRun {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("report is not JSON ({error}):\n{self}"))
    }
}

impl std::fmt::Display for ChaosRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "success={}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.success, self.stdout, self.stderr
        )
    }
}

/// Runs `chaos live` with `args` (and `env`), short phases and a modest open-loop rate.
async fn chaos_live(args: &[String], env: &[(&'static str, String)]) -> ChaosRun {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaos"));
    command
        .arg("live")
        .args([
            "--rate",
            "40",
            "--phase-ms",
            "1000",
            "--recovery-timeout-s",
            "90",
        ])
        .args(args)
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .expect("chaos live finished within 10 minutes")
        .expect("running chaos live");
    ChaosRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn node_args(urls: &[String]) -> Vec<String> {
    vec!["--node".into(), urls.join(",")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kills_through_local_cluster_hooks_keep_every_invariant() {
    let cluster = LocalCluster::start();
    let script = local_cluster_script();
    let mut args = node_args(&cluster.urls());
    args.extend([
        "--public-key".into(),
        cluster
            .dir
            .join("keygen.txt")
            .to_string_lossy()
            .into_owned(),
        "--kill-hook".into(),
        format!("bash '{script}' kill {{index}}"),
        "--stop-hook".into(),
        format!("bash '{script}' stop-node {{index}}"),
        "--start-hook".into(),
        format!("bash '{script}' start-node {{index}}"),
        "--isolate-hook".into(),
        format!("bash '{script}' pause {{index}}"),
        "--heal-hook".into(),
        format!("bash '{script}' resume {{index}}"),
        "--json".into(),
    ]);
    let pids_before: Vec<String> = (1..=3).map(|node| cluster.pid(node)).collect();

    let mut kills = args.clone();
    kills.extend(["--scenario", "leader-kill", "--runs", "2"].map(String::from));
    let run = chaos_live(&kills, &cluster.env()).await;
    assert!(run.success, "{run}\n{}", cluster.logs());
    let report = run.json();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{run}");
    for entry in runs {
        assert_eq!(entry["passed"], true, "{entry}");
        assert!(entry["acknowledged"].as_u64().unwrap() > 0, "{entry}");
        assert!(entry["unavailability_ms"].as_u64().is_some(), "{entry}");
        assert!(entry["election_ms"].as_u64().is_some(), "{entry}");
        // Killed through the script and started again: a new process.
        let killed = entry["target_index"].as_u64().unwrap();
        assert_ne!(
            cluster.pid(killed),
            pids_before[killed as usize - 1],
            "node {killed} was not restarted: {run}"
        );
    }
    assert_eq!(report["checker"]["passed"], true, "{run}");
    assert!(report["checker"]["acknowledged"].as_u64().unwrap() > 0);
    assert!(report["write_unavailability"]["median_ms"]
        .as_u64()
        .is_some());

    // The other hooked scenarios, once each.
    let mut others = args;
    others.extend(
        [
            "--scenario",
            "leader-restart",
            "--scenario",
            "follower-restart",
            "--scenario",
            "leader-isolation",
        ]
        .map(String::from),
    );
    let run = chaos_live(&others, &cluster.env()).await;
    assert!(run.success, "{run}\n{}", cluster.logs());
    let report = run.json();
    let scenarios: Vec<&str> = report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        scenarios,
        ["leader-restart", "follower-restart", "leader-isolation"],
        "{run}"
    );
    let restart = &report["runs"][0];
    assert_eq!(restart["passed"], true, "{restart}");
    assert!(restart["unavailability_ms"].as_u64().is_some(), "{restart}");
    assert_eq!(report["checker"]["passed"], true, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_fails_on_a_foreign_node_and_a_failing_hook() {
    let ours = Cluster::start(3, &[]).await.unwrap();
    let foreign = Cluster::start(1, &[]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("log-public-key.b64");
    let pem = std::fs::read_to_string(&ours.key_file).unwrap();
    let signer = rekor_storage::note::signer_from_pem(&ours.origin, &pem).unwrap();
    std::fs::write(&key_file, STANDARD.encode(signer.public_key_der())).unwrap();
    let urls: Vec<String> = ours.nodes.iter().map(|node| node.base_url()).collect();
    let key_args = vec![
        "--public-key".to_string(),
        key_file.to_string_lossy().into_owned(),
        "--origin".into(),
        ours.origin.clone(),
    ];

    // The healthy log passes the check scenario (so what fails below fails for its reason).
    let mut args = node_args(&urls);
    args.extend(key_args.clone());
    args.extend(["--scenario", "check"].map(String::from));
    let run = chaos_live(&args, &[]).await;
    assert!(run.success, "{run}");
    assert!(
        run.stdout.contains("checker over the whole session: PASS"),
        "{run}"
    );

    // One of the three URLs serves another log (its node id, 1, differs from the other two).
    let mixed = vec![
        urls[1].clone(),
        urls[2].clone(),
        foreign.nodes[0].base_url(),
    ];
    let mut args = node_args(&mixed);
    args.extend(key_args.clone());
    args.extend(["--scenario", "check", "--convergence-timeout-s", "5"].map(String::from));
    let run = chaos_live(&args, &[]).await;
    assert!(!run.success, "a foreign node passed the checker: {run}");
    assert!(
        run.stdout.contains("is not signed by the log key")
            || run.stdout.contains("did not converge"),
        "{run}"
    );
    assert!(
        run.stdout.contains("checker over the whole session: FAIL"),
        "{run}"
    );

    // A kill hook that fails: the run fails with the hook's output, the tool exits 1.
    let mut args = node_args(&urls);
    args.extend(key_args);
    args.extend(
        [
            "--scenario",
            "leader-kill",
            "--kill-hook",
            "echo cannot reach node {index} >&2; exit 7",
        ]
        .map(String::from),
    );
    let run = chaos_live(&args, &[]).await;
    assert!(!run.success, "a failing hook passed: {run}");
    assert!(run.stdout.contains("cannot reach node"), "{run}");
    assert!(run.stdout.contains("kill hook"), "{run}");
}
