//! The real sigstore-python client (4.5.1) against real node processes
//! (scripts/client/harness.py; `client-harness.md`, see docs/spec-references.md): the embedded single-node default
//! with its generated Ed25519 key, a node with an ECDSA P-256 key, and a three-node cluster reached
//! through a follower. Afterwards the served checkpoint verifies with the log key and its root is
//! the root of the served tiles.

mod sigstore_client;

use std::path::Path;
use std::time::Duration;

use rekor_cluster_tests::{free_port, node_binary, Cluster, LogClient, NodeProcess, NodeSpec};
use sigstore_client::{check_served_tree, logged_public_key, python, run_harness, Checks};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_node_with_sigstore_python() {
    let Some(python) = python() else { return };
    node_binary().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let spec = NodeSpec {
        id: 1,
        public_port: 3000,
        internal_port: 3001,
        data_dir: cwd.path().join("rekor-data"),
        extra_args: Vec::new(),
    };
    let node = NodeProcess::start(spec, Vec::new(), cwd.path()).unwrap();
    node.wait_live(Duration::from_secs(30)).await.unwrap();
    let spki = logged_public_key(&node.log());
    run_harness(
        &python,
        "http://127.0.0.1:3000",
        "rekor.local",
        "ed25519",
        &spki,
        Checks {
            fresh: true,
            ..Checks::default()
        },
    )
    .await;
    check_served_tree(
        &LogClient::new("http://127.0.0.1:3000"),
        "rekor.local",
        &spki,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecdsa_p256_log_key_with_sigstore_python() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ecdsa.pem");
    let status = std::process::Command::new(node_binary().unwrap())
        .args([
            "keygen",
            "--algorithm",
            "ecdsa-p256",
            "--origin",
            "ecdsa.test.local",
            "--out",
        ])
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let spec = NodeSpec {
        id: 1,
        public_port: free_port().unwrap(),
        internal_port: free_port().unwrap(),
        data_dir: dir.path().join("data"),
        extra_args: Vec::new(),
    };
    let args: Vec<String> = [
        "serve",
        "--data-dir",
        &spec.data_dir.display().to_string(),
        "--listen",
        &spec.public_addr(),
        "--listen-internal",
        &spec.internal_addr(),
        "--origin",
        "ecdsa.test.local",
        "--signing-key",
        &key.display().to_string(),
        // A real key: a one-node log forms only when asked.
        "--bootstrap-single",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let node = NodeProcess::start(spec, args, dir.path()).unwrap();
    node.wait_live(Duration::from_secs(30)).await.unwrap();
    let spki = logged_public_key(&node.log());
    let base = node.base_url();
    run_harness(
        &python,
        &base,
        "ecdsa.test.local",
        "ecdsa-p256",
        &spki,
        Checks {
            fresh: true,
            ..Checks::default()
        },
    )
    .await;
    check_served_tree(&LogClient::new(&base), "ecdsa.test.local", &spki).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_over_https_through_a_follower_with_sigstore_python() {
    let Some(python) = python() else { return };
    // HTTPS on the public listeners (the development CA in the client's trust store) and mutual
    // TLS between the nodes.
    let cluster = Cluster::start_https(3, &["--enable-entry-lookup"])
        .await
        .unwrap();
    let ca = cluster.pki.as_ref().expect("a TLS cluster").ca();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let follower = (leader + 1) % 3;
    let spki = logged_public_key(&cluster.nodes[follower].log());
    let base = cluster.nodes[follower].base_url();
    assert!(base.starts_with("https://"), "{base}");
    run_harness(
        &python,
        &base,
        &cluster.origin,
        "ed25519",
        &spki,
        Checks {
            fresh: true,
            ca: Some(&ca),
            // The entry behind a 409, read from the leader and from both followers.
            entry_lookup_urls: &cluster
                .nodes
                .iter()
                .map(|node| node.base_url())
                .collect::<Vec<_>>(),
        },
    )
    .await;
    for client in cluster.clients() {
        check_served_tree(&client, &cluster.origin, &spki).await;
    }
}

/// `rekor-node trust-files` over the public-good instance's trusted root and signing config (the
/// copies sigstore-python ships for its TUF bootstrap): sigstore-python, given only the written
/// client trust config, finds the log, submits entries and verifies them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_files_alone_let_sigstore_python_use_the_log() {
    let Some(python) = python() else { return };
    let cluster = Cluster::start(1, &[]).await.unwrap();
    let base_url = cluster.nodes[0].base_url();
    let store = std::process::Command::new(&python)
        .args([
            "-c",
            "import os, sigstore._store as s; print(os.path.dirname(s.__file__))",
        ])
        .output()
        .unwrap();
    let store = Path::new(String::from_utf8(store.stdout).unwrap().trim())
        .join("https%3A%2F%2Ftuf-repo-cdn.sigstore.dev");
    let out = tempfile::tempdir().unwrap();
    let written = std::process::Command::new(node_binary().unwrap())
        .args(["trust-files", "--base-url", &base_url, "--origin"])
        .arg(&cluster.origin)
        .arg("--signing-key")
        .arg(&cluster.key_file)
        .arg("--base-trusted-root")
        .arg(store.join("trusted_root.json"))
        .arg("--base-signing-config")
        .arg(store.join("signing_config.v0.2.json"))
        .arg("--out-dir")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.path().join(name)).unwrap()).unwrap()
    };
    let root = read("trusted_root.json");
    let tlogs = root["tlogs"].as_array().unwrap();
    assert_eq!(tlogs.len(), 1, "only this log: {tlogs:?}");
    assert_eq!(tlogs[0]["baseUrl"], base_url.as_str());
    assert!(
        !root["certificateAuthorities"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the base's certificate authorities are kept"
    );
    let signing = read("signing_config.json");
    assert_eq!(signing["rekorTlogUrls"][0]["url"], base_url.as_str());
    assert_eq!(signing["rekorTlogUrls"][0]["majorApiVersion"], 2);

    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/client/trust_config_check.py");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&python)
            .arg(script)
            .arg("--trust-config")
            .arg(out.path().join("trust_config.json"))
            .output(),
    )
    .await
    .expect("the check finishes")
    .expect("the check runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(" 0 failed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
