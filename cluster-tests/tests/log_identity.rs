//! The log signs only what it checked, under its own key, on its own tree (issue #12, items 7
//! and 8), with real `rekor-node` processes:
//! - a node with a real key on an empty data directory waits for `init` instead of starting a
//!   second tree on its own;
//! - a member configured with another key never gets a checkpoint committed, even as leader,
//!   and says why;
//! - a node whose right-edge tile and bundle were damaged on disk names them, repairs them and
//!   then serves exactly what the other nodes serve.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rekor_cluster_tests::{
    free_port, node_binary, wait_until, Cluster, EntryFactory, LogClient, NodeProcess, NodeSpec,
};
use rekor_storage::note::Note;
use rekor_storage::tiles::{BundleId, TileId};

const TIMEOUT: Duration = Duration::from_secs(60);

fn keygen(origin: &str, out: &Path) {
    let status = std::process::Command::new(node_binary().unwrap())
        .args(["keygen", "--origin", origin, "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "keygen failed");
}

/// The key id of the PEM key in `path` under `origin`.
fn key_id(origin: &str, path: &Path) -> u32 {
    let pem = std::fs::read_to_string(path).unwrap();
    rekor_storage::note::signer_from_pem(origin, &pem)
        .unwrap()
        .key_id()
}

/// The key ids of the signature lines of a served checkpoint.
fn signers(checkpoint: &str) -> Vec<u32> {
    Note::parse(checkpoint.as_bytes())
        .unwrap()
        .signatures
        .iter()
        .map(|signature| signature.key_id)
        .collect()
}

fn size_of(checkpoint: &str) -> u64 {
    checkpoint
        .lines()
        .nth(1)
        .and_then(|line| line.parse().ok())
        .unwrap_or(0)
}

/// Submits `count` entries through `client`, a few at a time; every one must be logged.
async fn fill(client: &LogClient, count: usize, cluster: &Cluster) {
    let factory = EntryFactory::new();
    let mut done = 0;
    while done < count {
        let batch = (count - done).min(32);
        let mut tasks = Vec::new();
        for _ in 0..batch {
            let client = client.clone();
            let request = factory.request();
            tasks.push(tokio::spawn(async move { client.submit(&request).await }));
        }
        for task in tasks {
            let result = task.await.unwrap().unwrap();
            assert_eq!(result.status, 201, "{}\n{}", result.body, cluster.logs());
        }
        done += batch;
    }
}

/// Waits until every node in `nodes` serves the same checkpoint of `size`; returns it.
async fn converged(cluster: &Cluster, nodes: &[usize], size: u64) -> String {
    let clients = cluster.clients();
    wait_until("every node to serve the same checkpoint", TIMEOUT, || {
        let clients = &clients;
        async move {
            let mut seen = Vec::new();
            for &node in nodes {
                match clients[node].checkpoint().await {
                    Ok(Some(checkpoint)) if size_of(&checkpoint) == size => seen.push(checkpoint),
                    _ => return Ok(None),
                }
            }
            Ok(seen
                .windows(2)
                .all(|pair| pair[0] == pair[1])
                .then(|| seen[0].clone()))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", cluster.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_real_key_waits_for_init_on_an_empty_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing-key.pem");
    keygen("identity.test.local", &key);
    let secret = dir.path().join("cluster-secret");
    std::fs::write(&secret, "test-cluster-secret-0123456789abcdef").unwrap();
    // The node refuses a secret other users could read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let spec = NodeSpec {
        id: 1,
        public_port: free_port().unwrap(),
        internal_port: free_port().unwrap(),
        data_dir: dir.path().join("node1"),
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
        "identity.test.local",
        "--signing-key",
        &key.display().to_string(),
        "--cluster-secret-file",
        &secret.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let node = NodeProcess::start(spec.clone(), args, dir.path()).unwrap();
    node.wait_live(TIMEOUT).await.unwrap();
    // The bootstrap decision is taken before the listeners start, so it has been taken.
    let status = |dir: &Path| {
        let output = std::process::Command::new(node_binary().unwrap())
            .args(["status", "--target", &spec.internal_addr()])
            .arg("--cluster-secret-file")
            .arg(dir.join("cluster-secret"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", node.log());
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let before = status(dir.path());
    assert_eq!(
        before["members"],
        serde_json::json!([]),
        "{before}\n{}",
        node.log()
    );
    assert!(before["leader"].is_null(), "{before}");
    assert!(
        node.log().contains("waiting for `rekor-node init`"),
        "{}",
        node.log()
    );
    let client = LogClient::new(&node.base_url());
    assert_eq!(client.checkpoint().await.ok().flatten(), None);

    // `init` forms the cluster.
    let output = std::process::Command::new(node_binary().unwrap())
        .args([
            "init",
            "--target",
            &spec.internal_addr(),
            "--member",
            &spec.member_arg(),
        ])
        .arg("--cluster-secret-file")
        .arg(&secret)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    wait_until("a checkpoint after init", TIMEOUT, || async {
        Ok(client.checkpoint().await.ok().flatten())
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", node.log()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_a_foreign_key_never_gets_a_checkpoint_committed() {
    let mut cluster = Cluster::start(3, &["--submit-timeout-s", "3"])
        .await
        .expect("cluster starts");
    let clients = cluster.clients();
    fill(&clients[0], 5, &cluster).await;
    let origin = cluster.origin.clone();
    let log_key = key_id(&origin, &cluster.key_file);
    let foreign_file = cluster.dir.path().join("foreign-key.pem");
    keygen(&origin, &foreign_file);
    let foreign_key = key_id(&origin, &foreign_file);

    // Node 3 comes back with another key.
    cluster.nodes[2].terminate(Duration::from_secs(10)).unwrap();
    let spec = cluster.nodes[2].spec.clone();
    let mut args = cluster.serve_args(&spec);
    let at = args.iter().position(|arg| arg == "--signing-key").unwrap() + 1;
    args[at] = foreign_file.display().to_string();
    cluster.nodes[2] = NodeProcess::start(spec, args, cluster.dir.path()).unwrap();
    cluster.nodes[2].wait_live(TIMEOUT).await.unwrap();

    // Kill whichever other node leads until node 3 does.
    let mut leader = cluster.wait_for_leader(TIMEOUT).await.unwrap();
    for _ in 0..20 {
        if leader == 2 {
            break;
        }
        cluster.nodes[leader].kill();
        let killed = leader;
        leader = cluster.wait_for_leader(TIMEOUT).await.unwrap();
        cluster.nodes[killed].restart(cluster.dir.path()).unwrap();
        cluster.nodes[killed].wait_live(TIMEOUT).await.unwrap();
        leader = if leader == killed {
            cluster.wait_for_leader(TIMEOUT).await.unwrap()
        } else {
            leader
        };
    }
    assert_eq!(leader, 2, "node 3 never led\n{}", cluster.logs());

    // Entries are sequenced, but no checkpoint is signed for them.
    let factory = EntryFactory::new();
    let refused = clients[2].submit(&factory.request()).await.unwrap();
    assert_ne!(refused.status, 201, "{}", refused.body);
    wait_until("node 3 to say why it does not sign", TIMEOUT, || async {
        Ok(cluster.nodes[2]
            .log()
            .contains("is not the log's recorded key")
            .then_some(()))
    })
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", cluster.logs()));
    let metrics = reqwest::get(format!("{}/metrics", clients[2].base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("rekor_node_checkpoint_sign_refused_total{reason=\"foreign_key\"}"),
        "{metrics}"
    );
    let status = cluster.status(2).await.unwrap();
    assert_eq!(status["leader"].as_u64(), Some(3), "{status}");
    assert!(
        status["sequenced_size"].as_u64() > status["checkpoint_size"].as_u64(),
        "{status}"
    );
    for (node, client) in clients.iter().enumerate() {
        let checkpoint = client.checkpoint().await.unwrap().unwrap();
        let keys = signers(&checkpoint);
        assert_eq!(keys, vec![log_key], "node {}: {checkpoint}", node + 1);
        assert!(!keys.contains(&foreign_key));
    }
}

/// Flips the last byte of a file.
fn damage(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_right_edge_is_named_repaired_and_served_identically() {
    let mut cluster = Cluster::start(3, &[]).await.expect("cluster starts");
    let clients = cluster.clients();
    // 261 = one full bundle and five entries: partial tiles at levels 0 and 1, a partial bundle.
    let size = 261;
    fill(&clients[0], size as usize, &cluster).await;
    let checkpoint = converged(&cluster, &[0, 1, 2], size).await;

    let tile = TileId {
        level: 0,
        index: 1,
        width: 5,
    };
    let bundle = BundleId { index: 1, width: 5 };
    cluster.nodes[2].terminate(Duration::from_secs(10)).unwrap();
    let tiles = cluster.nodes[2].spec.data_dir.join("tiles");
    damage(&tiles.join(tile.path()));
    damage(&tiles.join(bundle.path()));
    cluster.nodes[2].restart(cluster.dir.path()).unwrap();
    cluster.nodes[2]
        .wait_live(TIMEOUT)
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", cluster.nodes[2].log()));

    let log = cluster.nodes[2].log();
    for object in [tile.path(), bundle.path()] {
        assert!(
            log.lines()
                .any(|line| line.contains("damaged right-edge object") && line.contains(&object)),
            "{object} not named:\n{log}"
        );
    }
    assert_eq!(converged(&cluster, &[0, 2], size).await, checkpoint);
    for path in [tile.path(), bundle.path()] {
        let expected = clients[0].get(&path).await.unwrap().unwrap();
        let served = clients[2].get(&path).await.unwrap().unwrap();
        assert_eq!(served, expected, "{path}");
        let stored = std::fs::read(tiles.join(&path)).unwrap();
        assert_eq!(stored, expected, "{path} on disk");
    }
    // The repaired node integrates and serves new entries like the others.
    fill(&clients[2], 3, &cluster).await;
    converged(&cluster, &[0, 1, 2], size + 3).await;
}
