//! Snapshots and catch-up (cluster operations issue): once the Raft log has been compacted, a new
//! node (or one wiped and re-added) gets a small snapshot (no identity index, no integrated leaf
//! bodies), pulls the missing entries as bundles from a peer while installing it, checks them
//! against the snapshot's root, and then serves exactly what the others serve.

use std::time::{Duration, Instant};

use rekor_cluster_tests::{check_logged_entry, wait_until, Cluster, EntryFactory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_node_catches_up_from_a_snapshot_by_pulling_bundles() {
    // Snapshot (and purge the Raft log) every 8 Raft entries.
    let mut cluster = Cluster::start(3, &["--raft-snapshot-every", "8"])
        .await
        .expect("cluster starts");
    let clients = cluster.clients();
    let factory = EntryFactory::new();
    // REKOR_CATCH_UP_ENTRIES=N measures the catch-up rate on a longer log (default: short).
    let entries: u64 = std::env::var("REKOR_CATCH_UP_ENTRIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(600);
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

    let (member, _) = cluster
        .start_new_node(4, &["--raft-snapshot-every", "8"], Duration::from_secs(30))
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
    assert_small_snapshot_installed_by_pulling(&cluster.nodes[3].log(), entries);
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
        .wait_live(Duration::from_secs(30))
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
    assert_small_snapshot_installed_by_pulling(&cluster.nodes[wiped].log(), entries);
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

/// The node's log shows that it installed a snapshot whose state part (all but the carried
/// unintegrated bodies and the bounded recent-roots table) is small, independent of the log size
/// (an identity index alone would be 40 bytes per entry), and that it pulled the entries below
/// the snapshot from a peer (the Raft log had been compacted).
fn assert_small_snapshot_installed_by_pulling(log: &str, entries: u64) {
    let installed: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("installed snapshot"))
        .collect();
    assert!(!installed.is_empty(), "no snapshot installed:\n{log}");
    let mut pulled_total = 0;
    for line in &installed {
        let snapshot_bytes = field(line, "snapshot_bytes");
        let state_bytes = field(line, "state_bytes");
        let pulled = field(line, "pulled");
        let seconds: f64 = line
            .split_whitespace()
            .find_map(|token| token.strip_prefix("seconds="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        eprintln!(
            "snapshot installed: {snapshot_bytes} bytes ({state_bytes} bytes of state), \
             {pulled} entries pulled in {seconds:.3} s ({:.0} entries/s)",
            pulled as f64 / seconds
        );
        assert!(
            state_bytes <= 8 * 1024 && state_bytes < entries * 40,
            "the snapshot's state is small: {line}"
        );
        pulled_total += pulled;
    }
    assert!(
        pulled_total > 0 && log.contains("pulling entries below the snapshot from a peer"),
        "the node caught up through bundle pulls (the log was compacted):\n{log}"
    );
}

/// The numeric `name=value` field of a log line (0 if absent).
fn field(line: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(prefix.as_str()))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// The tree size line of a checkpoint.
fn tree_size(checkpoint: &str) -> u64 {
    checkpoint
        .lines()
        .nth(1)
        .and_then(|line| line.parse().ok())
        .unwrap_or(0)
}
