//! Sealing a shard (`rekor-node freeze`): the final checkpoint carries the frozen marker line,
//! writes then get 405 with the plain-text body, reads keep working, and it survives a restart.

use std::time::Duration;

use rekor_cluster_tests::{check_logged_entry, node_binary, wait_until, Cluster, EntryFactory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_seals_the_log() {
    let mut cluster = Cluster::start(1, &[]).await.expect("cluster starts");
    let client = cluster.clients().remove(0);
    let factory = EntryFactory::new();
    for _ in 0..3 {
        let result = client.submit(&factory.request()).await.unwrap();
        assert_eq!(result.status, 201, "{}", result.body);
        check_logged_entry(&result.json().unwrap()).unwrap();
    }

    let output = tokio::process::Command::new(node_binary().unwrap())
        .args(["freeze", "--target", &cluster.nodes[0].spec.internal_addr()])
        .args(cluster.admin_args())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let frozen = wait_until(
        "the frozen checkpoint is served",
        Duration::from_secs(10),
        || async {
            let text = client.checkpoint().await?.unwrap_or_default();
            Ok(text.contains("Log frozen \u{2014} ").then_some(text))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        frozen.lines().nth(1),
        Some("3"),
        "frozen at the integrated size:\n{frozen}"
    );

    let refused = client.submit(&factory.request()).await.unwrap();
    assert_eq!(refused.status, 405);
    assert_eq!(
        refused.body,
        "This log has been frozen, please switch to the latest log.\n"
    );
    assert!(
        client.get("tile/entries/000.p/3").await.unwrap().is_some(),
        "reads still work"
    );

    // Still sealed after a restart.
    let cwd = cluster.dir.path().to_path_buf();
    cluster.nodes[0].restart(&cwd).unwrap();
    cluster.nodes[0]
        .wait_live(Duration::from_secs(30))
        .await
        .unwrap();
    wait_until(
        "the frozen checkpoint is served again",
        Duration::from_secs(10),
        || async {
            Ok(client
                .checkpoint()
                .await?
                .is_some_and(|text| text == frozen)
                .then_some(()))
        },
    )
    .await
    .unwrap();
    let refused = client.submit(&factory.request()).await.unwrap();
    assert_eq!(refused.status, 405, "{}", refused.body);
}
