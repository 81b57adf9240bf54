//! Snapshots and catch-up (cluster operations issue): once the Raft log has been compacted, a new
//! node (or one wiped and re-added) gets a snapshot without the integrated leaf bodies, pulls the
//! missing entries as bundles from a peer, checks them against the committed root, and then
//! serves exactly what the others serve.

use std::time::{Duration, Instant};

use rekor_cluster_tests::{
    check_logged_entry, free_port, wait_until, Cluster, EntryFactory, NodeSpec,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_node_catches_up_from_a_snapshot_by_pulling_bundles() {
    // Snapshot (and purge the Raft log) every 8 Raft entries.
    let mut cluster = Cluster::start(3, &["--raft-snapshot-every", "8"])
        .await
        .expect("cluster starts");
    let clients = cluster.clients();
    let factory = EntryFactory::new();
    let entries = 600u64;
    // Many small rounds, so that there are many Raft entries and several compactions.
    for round in 0..(entries / 20) {
        let mut tasks = Vec::new();
        for i in 0..20 {
            let client = clients[(round as usize + i) % 3].clone();
            let request = factory.request();
            tasks.push(tokio::spawn(async move { client.submit(&request).await }));
        }
        for task in tasks {
            let result = task.await.unwrap().unwrap();
            assert_eq!(result.status, 201, "{}", result.body);
            check_logged_entry(&result.json().unwrap()).unwrap();
        }
    }
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let target = cluster.nodes[leader].spec.internal_addr();

    let spec = NodeSpec {
        id: 4,
        public_port: free_port().unwrap(),
        internal_port: free_port().unwrap(),
        data_dir: cluster.dir.path().join("node4"),
        extra_args: vec!["--raft-snapshot-every".into(), "8".into()],
    };
    let member = spec.member_arg();
    cluster.spawn_node(spec).unwrap();
    cluster.nodes[3]
        .wait_healthy(Duration::from_secs(30))
        .await
        .unwrap();
    let started = Instant::now();
    cluster
        .admin(&["node", "add", "--target", &target, "--member", &member])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));

    let newcomer = rekor_cluster_tests::LogClient::new(&cluster.nodes[3].base_url());
    let expected = clients[leader].checkpoint().await.unwrap().unwrap();
    wait_until(
        "the new node serves the leader's checkpoint",
        Duration::from_secs(60),
        || {
            let newcomer = newcomer.clone();
            let expected = expected.clone();
            async move {
                let served = newcomer.checkpoint().await?;
                Ok(served
                    .is_some_and(|text| tree_size(&text) >= tree_size(&expected))
                    .then_some(()))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let elapsed = started.elapsed();
    eprintln!(
        "catch-up: {entries} entries in {:.2} s ({:.0} entries/s)",
        elapsed.as_secs_f64(),
        entries as f64 / elapsed.as_secs_f64()
    );
    assert!(
        cluster.nodes[3].log().contains("pulling them from a peer"),
        "the new node caught up through bundle pulls (the log was compacted):\n{}",
        cluster.nodes[3].log()
    );
    // Identical bytes: every tile and bundle of the leader's checkpoint.
    let size: u64 = expected.lines().nth(1).unwrap().parse().unwrap();
    for id in rekor_storage::proof::tiles_for_root(size) {
        assert_eq!(
            newcomer.get(&id.path()).await.unwrap(),
            clients[leader].get(&id.path()).await.unwrap(),
            "{}",
            id.path()
        );
    }
    for index in 0..size / 256 {
        let path = format!("tile/entries/{index:03}");
        assert_eq!(
            newcomer.get(&path).await.unwrap(),
            clients[leader].get(&path).await.unwrap(),
            "{path}"
        );
    }
    // And it takes writes.
    let result = newcomer.submit(&factory.request()).await.unwrap();
    assert_eq!(result.status, 201, "{}\n{}", result.body, cluster.logs());
    check_logged_entry(&result.json().unwrap()).unwrap();

    // A node removed, wiped and re-added under the same id catches up the same way.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let target = cluster.nodes[leader].spec.internal_addr();
    let wiped = (0..3).find(|i| *i != leader).unwrap();
    let wiped_id = cluster.nodes[wiped].spec.id.to_string();
    cluster
        .admin(&["node", "remove", "--target", &target, "--id", &wiped_id])
        .await
        .unwrap();
    cluster.nodes[wiped].kill();
    std::fs::remove_dir_all(&cluster.nodes[wiped].spec.data_dir).unwrap();
    for _ in 0..40 {
        let result = clients[leader].submit(&factory.request()).await.unwrap();
        assert_eq!(result.status, 201, "{}", result.body);
    }
    let cwd = cluster.dir.path().to_path_buf();
    cluster.nodes[wiped].restart(&cwd).unwrap();
    cluster.nodes[wiped]
        .wait_healthy(Duration::from_secs(30))
        .await
        .unwrap();
    let member = cluster.nodes[wiped].spec.member_arg();
    cluster
        .admin(&["node", "add", "--target", &target, "--member", &member])
        .await
        .unwrap();
    let expected = clients[leader].checkpoint().await.unwrap().unwrap();
    let rejoined = clients[wiped].clone();
    wait_until("the wiped node catches up", Duration::from_secs(60), || {
        let rejoined = rejoined.clone();
        let expected = expected.clone();
        async move {
            let served = rejoined.checkpoint().await?;
            Ok(served
                .is_some_and(|text| tree_size(&text) >= tree_size(&expected))
                .then_some(()))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let size: u64 = expected.lines().nth(1).unwrap().parse().unwrap();
    for id in rekor_storage::proof::tiles_for_root(size) {
        assert_eq!(
            rejoined.get(&id.path()).await.unwrap(),
            clients[leader].get(&id.path()).await.unwrap(),
            "{}",
            id.path()
        );
    }
    let result = rejoined.submit(&factory.request()).await.unwrap();
    assert_eq!(result.status, 201, "{}\n{}", result.body, cluster.logs());
    check_logged_entry(&result.json().unwrap()).unwrap();
}

/// The tree size line of a checkpoint.
fn tree_size(checkpoint: &str) -> u64 {
    checkpoint
        .lines()
        .nth(1)
        .and_then(|line| line.parse().ok())
        .unwrap_or(0)
}
