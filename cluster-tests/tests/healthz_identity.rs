//! The harness knows who answers: `/healthz` names the node and its process's start token, and
//! `NodeProcess::wait_healthy` accepts only its own child (a node that cannot bind its port
//! must not pass for healthy because a stranger answers there).

use std::time::Duration;

use rekor_cluster_tests::{free_port, node_binary, LogClient, NodeProcess, NodeSpec};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `serve` arguments for a lone node on `spec`'s ports.
fn serve_args(spec: &NodeSpec) -> Vec<String> {
    vec![
        "serve".into(),
        "--node-id".into(),
        spec.id.to_string(),
        "--data-dir".into(),
        spec.data_dir.display().to_string(),
        "--listen".into(),
        spec.public_addr(),
        "--listen-internal".into(),
        spec.internal_addr(),
    ]
}

fn spec(dir: &std::path::Path, public_port: u16) -> NodeSpec {
    NodeSpec {
        id: 1,
        public_port,
        internal_port: free_port().unwrap(),
        data_dir: dir.join("node1"),
        extra_args: Vec::new(),
    }
}

/// An HTTP server that answers every request as a healthy node 1 would, with its own token:
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
                let body = r#"{"status":"SERVING","nodeId":1,"startToken":"a-stranger"}"#;
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
async fn healthz_names_the_node_and_this_process() {
    node_binary().expect("rekor-node is built");
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), free_port().unwrap());
    let args = serve_args(&spec);
    let client = LogClient::new(&format!("http://{}", spec.public_addr()));
    let mut node = NodeProcess::start(spec, args, dir.path()).unwrap();
    node.wait_healthy(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
    let body = client.health().await.unwrap();
    assert_eq!(body["status"], "SERVING");
    assert_eq!(body["nodeId"], 1);
    let first = node.start_token().to_owned();
    assert_eq!(body["startToken"].as_str(), Some(first.as_str()));

    // A restart is a new process with a new token.
    node.restart(dir.path()).unwrap();
    node.wait_healthy(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
    assert_ne!(node.start_token(), first);
    let body = client.health().await.unwrap();
    assert_eq!(body["startToken"].as_str(), Some(node.start_token()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_the_port_is_not_taken_for_the_node() {
    node_binary().expect("rekor-node is built");
    let port = start_stranger().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), port);
    let args = serve_args(&spec);
    let mut node = NodeProcess::start(spec, args, dir.path()).unwrap();
    let error = node
        .wait_healthy(Duration::from_secs(120))
        .await
        .expect_err("the stranger must not pass for the node");
    let message = format!("{error:#}");
    assert!(
        message.contains("exited before it was healthy"),
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
