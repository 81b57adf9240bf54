//! Liveness and readiness on real processes.
//!
//! - `/livez` names the node and its process's start token, and `NodeProcess::wait_live`
//!   accepts only its own child (a node that cannot bind its port must not pass for live
//!   because a stranger answers there).
//! - `/healthz` (readiness) is 503 before `init`, when the node cannot hear from a quorum (as
//!   leader and as follower), and when its tile store (a real `s3s-fs`) is gone; 200 again once
//!   they are back. `/livez` stays 200 throughout.

use std::time::Duration;

use rekor_cluster_tests::s3::S3Server;
use rekor_cluster_tests::{
    free_port, node_binary, wait_until, Cluster, LogClient, NodeProcess, NodeSpec,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn spec(dir: &std::path::Path, public_port: u16) -> NodeSpec {
    NodeSpec {
        public_port,
        ..NodeSpec::lone(dir, 1).unwrap()
    }
}

/// An HTTP server that answers every request as a live node 1 would, with its own token:
/// an earlier process of the same node, say, still holding the port.
async fn start_stranger() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let body = r#"{"status":"ok","nodeId":1,"startToken":"a-stranger"}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livez_names_the_node_and_this_process() {
    node_binary().expect("rekor-node is built");
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), free_port().unwrap());
    let args = spec.serve_args(&[]);
    let client = LogClient::new(&format!("http://{}", spec.public_addr()));
    let mut node = NodeProcess::start(spec, args, dir.path()).unwrap();
    node.wait_live(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
    let body = client.liveness().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["nodeId"], 1);
    let first = node.start_token().to_owned();
    assert_eq!(body["startToken"].as_str(), Some(first.as_str()));

    // A restart is a new process with a new token.
    node.restart(dir.path()).unwrap();
    node.wait_live(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
    assert_ne!(node.start_token(), first);
    let body = client.liveness().await.unwrap();
    assert_eq!(body["startToken"].as_str(), Some(node.start_token()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_the_port_is_not_taken_for_the_node() {
    node_binary().expect("rekor-node is built");
    let port = start_stranger().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), port);
    let args = spec.serve_args(&[]);
    let mut node = NodeProcess::start(spec, args, dir.path()).unwrap();
    let error = node
        .wait_live(Duration::from_secs(120))
        .await
        .expect_err("the stranger must not pass for the node");
    let message = format!("{error:#}");
    assert!(
        message.contains("exited before it was live"),
        "fails because its own child exited, not by a timeout: {message}"
    );
    assert!(
        node.exited().is_some(),
        "the node could not bind: {message}"
    );
    // It says so, and exits before opening anything: no panic on the way out.
    let log = node.log();
    assert!(
        log.contains("binding the public listener") && log.contains("Address already in use"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until `client`'s `/healthz` answers `want` (200 or 503) and, for a 503, names `failed`
/// among its failed checks; returns the body.
async fn wait_readiness(
    client: &LogClient,
    want: u16,
    failed: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    wait_until(
        &format!("/healthz {want} (failed check {failed:?})"),
        READY_TIMEOUT,
        || async {
            let (status, body) = client.readiness().await?;
            let check_failed = |name: &str| body["checks"][name]["status"] == "failed";
            let matches = status == want
                && match failed {
                    Some(name) => check_failed(name),
                    None => true,
                };
            Ok(matches.then_some(body))
        },
    )
    .await
}

fn assert_live(body: &serde_json::Value) {
    assert_eq!(body["status"], "ok", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_before_init_ready_after() {
    node_binary().expect("rekor-node is built");
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), free_port().unwrap());
    // A lone loopback node with the development key would form a cluster of itself.
    let args = spec.serve_args(&["--bootstrap-single=false"]);
    let client = LogClient::new(&format!("http://{}", spec.public_addr()));
    let node = NodeProcess::start(spec, args, dir.path()).unwrap();
    node.wait_live(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
    let (status, body) = client.readiness().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "NOT_SERVING", "{body}");
    assert_eq!(body["nodeId"], 1, "{body}");
    assert_eq!(body["checks"]["quorum"]["status"], "failed", "{body}");
    assert!(
        body["checks"]["quorum"]["detail"]
            .as_str()
            .unwrap()
            .contains("not initialised"),
        "{body}"
    );
    assert_eq!(body["checks"]["tile_store"]["status"], "ok", "{body}");

    // The same binary, formed into a (one-node) cluster by the harness's `init`.
    let cluster = Cluster::start(1, &[]).await.unwrap();
    let body = wait_readiness(&cluster.nodes[0].client(), 200, None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert_eq!(body["status"], "SERVING", "{body}");
    assert_eq!(body["checks"]["quorum"]["status"], "ok", "{body}");
    assert_eq!(body["checks"]["tile_store"]["status"], "ok", "{body}");
}

/// A leader whose followers are gone, then a follower whose leader and peer are gone, both
/// report no quorum; each is ready again once a quorum is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_without_a_quorum() {
    let mut cluster = Cluster::start(3, &[]).await.unwrap();
    let cwd = cluster.dir.path().to_path_buf();
    for client in cluster.clients() {
        wait_readiness(&client, 200, None)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    }

    // The leader alone.
    let leader = cluster.wait_for_leader(READY_TIMEOUT).await.unwrap();
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &followers {
        cluster.nodes[i].kill();
    }
    let leader_client = cluster.nodes[leader].client();
    let body = wait_readiness(&leader_client, 503, Some("quorum"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert_eq!(body["checks"]["tile_store"]["status"], "ok", "{body}");
    assert_live(&leader_client.liveness().await.unwrap());
    for &i in &followers {
        cluster.nodes[i].restart(&cwd).unwrap();
        cluster.nodes[i].wait_live(READY_TIMEOUT).await.unwrap();
    }
    for client in cluster.clients() {
        wait_readiness(&client, 200, None)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    }

    // A follower alone: it still names the old leader, but hears nothing from it.
    let leader = cluster.wait_for_leader(READY_TIMEOUT).await.unwrap();
    let survivor = (0..3).find(|&i| i != leader).unwrap();
    for i in (0..3).filter(|&i| i != survivor) {
        cluster.nodes[i].kill();
    }
    let survivor_client = cluster.nodes[survivor].client();
    wait_readiness(&survivor_client, 503, Some("quorum"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert_live(&survivor_client.liveness().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_the_tile_store_is_gone() {
    let mut s3 = S3Server::start(&["tiles"]).await.unwrap();
    let cluster = Cluster::start_with_env(1, &["--tile-store", "s3://tiles/node1"], s3.node_env())
        .await
        .unwrap();
    let client = cluster.nodes[0].client();
    wait_readiness(&client, 200, None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));

    s3.stop();
    let body = wait_readiness(&client, 503, Some("tile_store"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert_eq!(body["checks"]["quorum"]["status"], "ok", "{body}");
    assert_live(&client.liveness().await.unwrap());

    s3.resume().await.unwrap();
    wait_readiness(&client, 200, None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
}
