//! The gRPC listener (`--grpc-listen`, service dev.sigstore.rekor.v2.Rekor) on real node
//! processes, driven by grpcio (scripts/client/grpc_check.py, run by the venv interpreter in
//! `REKOR_TEST_PYTHON`; its stubs are generated from grpc/proto at run time):
//!
//! - on a three-node cluster, through the leader and a follower: entries over gRPC have the HTTP
//!   201 body's content and verify; duplicates are found across protocols; the bad-request table
//!   gets the same error class over both; reads are byte-equal to the HTTP routes; health and
//!   reflection answer, and the descriptors reflection returns carry upstream's names and numbers
//!   (testdata/upstream-grpc/rekor-v2.json);
//! - over TLS with the public listener's certificate, trusted through the cluster CA;
//! - health is NOT_SERVING on a node that serves no checkpoint yet;
//! - a gRPC port in use stops the node at start-up with a clear error.

// Only its `python()` is used here.
#[allow(dead_code)]
mod sigstore_client;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rekor_cluster_tests::{free_port, node_binary, wait_until, Cluster, NodeProcess, NodeSpec};
use sigstore_client::python;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// Runs grpc_check.py with `args`; panics with its output unless every check passed.
async fn grpc_check(python: &str, args: &[String], ca: Option<&Path>) -> String {
    let mut command = tokio::process::Command::new(python);
    if let Some(ca) = ca {
        command.env("REQUESTS_CA_BUNDLE", ca);
    }
    command
        .arg(repo_path("scripts/client/grpc_check.py"))
        .arg("--proto-dir")
        .arg(repo_path("grpc/proto"))
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("grpc_check.py finishes within 5 minutes")
        .expect("grpc_check.py runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && stdout.contains(" 0 failed"),
        "grpc_check.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The `--grpc-listen` argument of each node, on a free port; the ports by node id.
fn grpc_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port().unwrap()).collect()
}

fn grpc_arg(ports: &[u16]) -> impl FnMut(&NodeSpec) -> Vec<String> + '_ {
    move |spec| {
        vec![
            "--grpc-listen".into(),
            format!("127.0.0.1:{}", ports[spec.id as usize - 1]),
        ]
    }
}

/// A counter's value in a node's `/metrics`, summed over the series whose labels contain all of
/// `labels`.
async fn metric(base_url: &str, name: &str, labels: &[&str]) -> f64 {
    let text = reqwest::get(format!("{base_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_matches_http_on_a_three_node_cluster() {
    let Some(python) = python() else { return };
    let ports = grpc_ports(3);
    let cluster = Cluster::start_with_node_args(3, &[], false, grpc_arg(&ports))
        .await
        .unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    let follower = (leader + 1) % 3;
    let target = |index: usize| format!("127.0.0.1:{}", ports[index]);
    let url = |index: usize| cluster.nodes[index].base_url();
    let args = vec![
        "--grpc".into(),
        target(leader),
        "--grpc".into(),
        target(follower),
        "--http".into(),
        url(leader),
        "--http".into(),
        url(follower),
        "--upstream-table".into(),
        repo_path("testdata/upstream-grpc/rekor-v2.json")
            .display()
            .to_string(),
    ];
    let output = grpc_check(&python, &args, None).await;
    for check in [
        "health",
        "submit",
        "duplicates",
        "bad requests",
        "reads",
        "reflection",
    ] {
        assert!(output.contains(&format!("ok   {check}\n")), "{output}");
    }
    // The follower's RPCs were counted on the follower, by method and code.
    let created = metric(
        &url(follower),
        "rekor_grpc_requests_total",
        &["method=\"CreateEntry\"", "code=\"Ok\""],
    )
    .await;
    assert!(created >= 3.0, "CreateEntry Ok on the follower: {created}");
    let refused = metric(
        &url(follower),
        "rekor_grpc_requests_total",
        &["method=\"CreateEntry\"", "code=\"AlreadyExists\""],
    )
    .await;
    assert_eq!(refused, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_with_the_public_listeners_certificate() {
    let Some(python) = python() else { return };
    let ports = grpc_ports(1);
    let cluster =
        Cluster::start_with_node_args(1, &["--header-timeout-ms", "1000"], true, grpc_arg(&ports))
            .await
            .unwrap();
    let ca = cluster.pki.as_ref().unwrap().ca();
    let args = vec![
        "--grpc".into(),
        format!("127.0.0.1:{}", ports[0]),
        "--http".into(),
        cluster.nodes[0].base_url(),
        "--ca".into(),
        ca.display().to_string(),
        "--entries".into(),
        "2".into(),
        "--only".into(),
        "health,submit,reads".into(),
    ];
    let output = grpc_check(&python, &args, Some(&ca)).await;
    assert!(output.contains("ok   submit\n"), "{output}");
    assert!(output.contains("ok   plaintext refused\n"), "{output}");

    // A client that connects and never starts its handshake is dropped at the handshake
    // deadline (--header-timeout-ms), and counted.
    use tokio::io::AsyncReadExt as _;
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", ports[0]))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut byte))
        .await
        .expect("the server closes a silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let base = cluster.nodes[0].base_url();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("rekor_grpc_refused_total{reason=\"handshake\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_before_the_node_serves_a_checkpoint() {
    let Some(python) = python() else { return };
    node_binary().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let grpc_port = free_port().unwrap();
    let spec = NodeSpec::lone(dir.path(), 1).unwrap();
    let grpc_listen = format!("127.0.0.1:{grpc_port}");
    let args = spec.serve_args(&["--bootstrap-single=false", "--grpc-listen", &grpc_listen]);
    // grpc_check.py waits for the channel to connect.
    let _node = NodeProcess::start(spec, args, dir.path()).unwrap();
    let output = grpc_check(
        &python,
        &[
            "--grpc".into(),
            format!("127.0.0.1:{grpc_port}"),
            "--only".into(),
            "health".into(),
            "--expect-not-serving".into(),
        ],
        None,
    )
    .await;
    assert!(output.contains("ok   health\n"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_port_in_use_stops_the_node_at_start_up() {
    node_binary().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let spec = NodeSpec::lone(dir.path(), 1).unwrap();
    let grpc_listen = format!("127.0.0.1:{taken_port}");
    let args = spec.serve_args(&["--grpc-listen", &grpc_listen]);
    let mut node = NodeProcess::start(spec, args, dir.path()).unwrap();
    let status = wait_until("the node to exit", Duration::from_secs(30), || {
        let exited = node.exited();
        async move { Ok(exited) }
    })
    .await
    .unwrap();
    assert_ne!(status, Some(0));
    let log = node.log();
    assert!(
        log.contains(&format!("binding the gRPC listener 127.0.0.1:{taken_port}")),
        "{log}"
    );
    drop(taken);
}
