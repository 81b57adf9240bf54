//! The embedded default: `rekor-node` with no arguments is a working single-node log on loopback
//! (issue: the replicated log node, first acceptance item); and a single node's metrics on a
//! listener of their own.

use std::time::Duration;

use rekor_cluster_tests::{
    check_logged_entry, node_binary, EntryFactory, LogClient, NodeProcess, NodeSpec,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_arguments_runs_a_single_node_that_logs_and_serves() {
    node_binary().expect("rekor-node is built");
    let cwd = tempfile::tempdir().unwrap();
    let spec = NodeSpec {
        id: 1,
        public_port: 3000,
        internal_port: 3001,
        data_dir: cwd.path().join("rekor-data"),
        extra_args: Vec::new(),
    };
    let mut node = NodeProcess::start(spec, Vec::new(), cwd.path()).expect("starts");
    node.wait_live(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
    assert!(
        node.log().contains("development"),
        "says it generated a development key:\n{}",
        node.log()
    );

    let client = LogClient::new("http://127.0.0.1:3000");
    let factory = EntryFactory::new();
    for expected_index in 0..5u64 {
        let result = client.submit(&factory.request()).await.unwrap();
        assert_eq!(result.status, 201, "{}\n{}", result.body, node.log());
        let (index, size) = check_logged_entry(&result.json().unwrap()).unwrap();
        assert_eq!(index, expected_index);
        assert!(size > index);
    }
    let checkpoint = client
        .checkpoint()
        .await
        .unwrap()
        .expect("a checkpoint is served");
    assert_eq!(checkpoint.lines().next(), Some("rekor.local"));
    assert!(
        cwd.path().join("rekor-data").is_dir(),
        "data lives in ./rekor-data"
    );
    // Which build runs, as upstream's build-info metric says it.
    let metrics = client.metrics().await.unwrap();
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        rekor_cluster_tests::hostile::metric_value(&metrics, "rekor_build_info", &[&version]),
        Some(1.0),
        "{metrics}"
    );

    // Graceful shutdown on SIGTERM.
    let code = node.terminate(Duration::from_secs(20)).unwrap();
    assert_eq!(code, Some(0), "{}", node.log());
}

/// `--metrics-listen` (upstream's `--http-metrics-port`): metrics on a listener of their own, and
/// no longer on the public one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_to_their_own_listener_when_asked() {
    let metrics_address = format!("127.0.0.1:{}", rekor_cluster_tests::free_port().unwrap());
    let cluster = rekor_cluster_tests::Cluster::start(1, &["--metrics-listen", &metrics_address])
        .await
        .unwrap();
    let text = reqwest::get(format!("http://{metrics_address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("rekor_build_info"), "{text}");
    assert!(text.contains("rekor_signer_up"), "{text}");
    let public = reqwest::get(format!("{}/metrics", cluster.nodes[0].base_url()))
        .await
        .unwrap();
    assert_eq!(
        public.status(),
        404,
        "the public listener no longer serves them"
    );
}
