//! Invariants checked on real processes (DESIGN.md): exact dedup across a leader change and a
//! whole-cluster restart (5), and bounded work — overload answers 503 at once and loses nothing
//! that was acknowledged (6).

use std::time::Duration;

use rekor_cluster_tests::{check_logged_entry, wait_until, Cluster, EntryFactory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_holds_across_a_leader_change_and_a_full_restart() {
    let mut cluster = Cluster::start(3, &[]).await.expect("cluster starts");
    let clients = cluster.clients();
    let factory = EntryFactory::new();
    let entry = factory.request();
    let first = clients[0].submit(&entry).await.unwrap();
    assert_eq!(first.status, 201, "{}", first.body);
    let (index, _) = check_logged_entry(&first.json().unwrap()).unwrap();

    // Kill the leader; ask a survivor once a new leader is in place.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.nodes[leader].kill();
    let new_leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    assert_ne!(new_leader, leader);
    let survivor = (0..3).find(|i| *i != leader).unwrap();
    let again = clients[survivor].submit(&entry).await.unwrap();
    assert_eq!(again.status, 409, "{}\n{}", again.body, cluster.logs());
    assert_eq!(again.log_index_header, Some(index));

    // Kill everything, restart everything: still a duplicate, at the same index.
    for node in &mut cluster.nodes {
        node.kill();
    }
    let cwd = cluster.dir.path().to_path_buf();
    for node in &mut cluster.nodes {
        node.restart(&cwd).unwrap();
    }
    for node in &cluster.nodes {
        node.wait_live(Duration::from_secs(30)).await.unwrap();
    }
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    for client in &clients {
        let result = client.submit(&entry).await.unwrap();
        assert_eq!(result.status, 409, "{}\n{}", result.body, cluster.logs());
        assert_eq!(result.log_index_header, Some(index));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_answers_503_and_loses_nothing_acknowledged() {
    let cluster = Cluster::start(
        3,
        &[
            "--pushback-max-outstanding",
            "4",
            "--submit-timeout-s",
            "60",
        ],
    )
    .await
    .expect("cluster starts");
    let clients = cluster.clients();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let factory = EntryFactory::new();

    // Without a quorum nothing commits, so work piles up at the leader's sequencer.
    for &f in &followers {
        cluster.nodes[f].signal("STOP").unwrap();
    }
    // Ten writes at once against a bound of four: exactly four are admitted (admission is one
    // atomic reservation), the other six are refused at once with 503 instead of queueing.
    let mut waiting = Vec::new();
    for _ in 0..10 {
        let client = clients[leader].clone();
        let request = factory.request();
        waiting.push(tokio::spawn(async move { client.submit(&request).await }));
    }
    wait_until("six refusals", Duration::from_secs(20), || {
        let finished = waiting.iter().filter(|task| task.is_finished()).count();
        async move { Ok((finished >= 6).then_some(())) }
    })
    .await
    .unwrap();
    let mut still_waiting = Vec::new();
    for task in waiting {
        if task.is_finished() {
            let result = task.await.unwrap().unwrap();
            assert_eq!(result.status, 503, "{}", result.body);
            assert!(result.body.contains("pushback"), "{}", result.body);
        } else {
            still_waiting.push(task);
        }
    }
    let waiting = still_waiting;
    assert_eq!(waiting.len(), 4, "exactly the bound was admitted");

    // Quorum back: everything that was accepted completes and verifies.
    for &f in &followers {
        cluster.nodes[f].signal("CONT").unwrap();
    }
    for task in waiting {
        let result = task.await.unwrap().unwrap();
        assert_eq!(result.status, 201, "{}\n{}", result.body, cluster.logs());
        check_logged_entry(&result.json().unwrap()).unwrap();
    }
    let after = clients[leader].submit(&factory.request()).await.unwrap();
    assert_eq!(after.status, 201, "{}", after.body);
}
