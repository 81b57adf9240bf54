//! `--log-requests`: one `rekor::access` line per public request, with method, path, status and
//! sizes, and never a byte of the body. Without the flag there is no such line.

use std::time::Duration;

use rekor_cluster_tests::{wait_until, Cluster, EntryFactory};

/// Submits one entry and reads the checkpoint and a missing path; returns the request body's
/// signature (base64), which must never reach the log.
async fn traffic(cluster: &Cluster) -> String {
    let client = cluster.nodes[0].client();
    let request = EntryFactory::new().request();
    let result = client.submit(&request).await.unwrap();
    assert_eq!(result.status, 201, "{}", result.body);
    assert!(client.checkpoint().await.unwrap().is_some());
    assert_eq!(client.get("tile/entries/999").await.unwrap(), None);
    request["hashedRekordRequestV002"]["signature"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_logged_without_bodies_when_asked() {
    let cluster = Cluster::start(1, &["--log-requests"]).await.unwrap();
    let signature = traffic(&cluster).await;
    let node = &cluster.nodes[0];
    let log = wait_until(
        "the access lines of the three requests",
        Duration::from_secs(10),
        || async {
            let log = node.log();
            let done = log.contains("path=/api/v2/tile/entries/999 status=404");
            Ok(done.then_some(log))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
    let access: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("rekor::access"))
        .collect();
    let find = |needle: &str| {
        access
            .iter()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no access line with {needle:?} in\n{}", access.join("\n")))
    };
    let post = find("method=POST path=/api/v2/log/entries status=201");
    assert!(post.contains("request_bytes="), "{post}");
    assert!(post.contains("duration_ms="), "{post}");
    assert!(post.contains("peer=127.0.0.1:"), "{post}");
    find("method=GET path=/api/v2/checkpoint status=200");
    assert!(
        !log.contains(&signature) && !log.contains(&signature[..24]),
        "a request body reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_access_lines_by_default() {
    let cluster = Cluster::start(1, &[]).await.unwrap();
    traffic(&cluster).await;
    let log = cluster.nodes[0].log();
    assert!(!log.contains("rekor::access"), "{log}");
}
