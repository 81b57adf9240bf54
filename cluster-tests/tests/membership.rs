//! Membership at runtime (cluster operations issue): a fourth and fifth node are added to a
//! three-node cluster under load (learner → catch up → voter), then two nodes are removed; the
//! log keeps answering and every remaining node serves identical state.

use std::time::Duration;

use rekor_cluster_tests::{
    check_logged_entry, free_port, wait_until, Cluster, EntryFactory, NodeSpec,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_two_nodes_under_load_then_remove_two() {
    let mut cluster = Cluster::start(3, &[]).await.expect("cluster starts");
    let factory = std::sync::Arc::new(EntryFactory::new());

    // Background load against the first three nodes.
    let load_clients = cluster.clients();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let factory = factory.clone();
        tokio::spawn(async move {
            let mut acknowledged = 0u64;
            let mut turn = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let client = &load_clients[turn % load_clients.len()];
                turn += 1;
                if let Ok(result) = client.submit(&factory.request()).await {
                    if result.status == 201 {
                        check_logged_entry(&result.json().unwrap()).unwrap();
                        acknowledged += 1;
                    }
                }
            }
            acknowledged
        })
    };

    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let leader_internal = cluster.nodes[leader].spec.internal_addr();
    for id in [4u64, 5] {
        let spec = NodeSpec {
            id,
            public_port: free_port().unwrap(),
            internal_port: free_port().unwrap(),
            data_dir: cluster.dir.path().join(format!("node{id}")),
            extra_args: Vec::new(),
        };
        let member = spec.member_arg();
        cluster.spawn_node(spec).unwrap();
        cluster
            .nodes
            .last()
            .unwrap()
            .wait_healthy(Duration::from_secs(30))
            .await
            .unwrap();
        cluster
            .admin(&[
                "node",
                "add",
                "--target",
                &leader_internal,
                "--member",
                &member,
            ])
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    }
    let status = cluster.status(leader).await.unwrap();
    let voters = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["voter"] == true)
        .count();
    assert_eq!(voters, 5, "{status:#}");

    // Remove two of the original followers (not the leader).
    let removed: Vec<u64> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| cluster.nodes[i].spec.id)
        .collect();
    for id in &removed {
        cluster
            .admin(&[
                "node",
                "remove",
                "--target",
                &leader_internal,
                "--id",
                &id.to_string(),
            ])
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    }
    let status = cluster.status(leader).await.unwrap();
    let ids: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    for id in &removed {
        assert!(!ids.contains(id), "{id} still a member: {status:#}");
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = load.await.unwrap();
    assert!(acknowledged > 0, "the load made progress");

    // Writes still work through the new members, and the three remaining nodes converge.
    let remaining: Vec<usize> = (0..cluster.nodes.len())
        .filter(|i| !removed.contains(&cluster.nodes[*i].spec.id))
        .collect();
    let clients = cluster.clients();
    for &i in &remaining {
        let result = clients[i].submit(&factory.request()).await.unwrap();
        assert_eq!(
            result.status,
            201,
            "node {}: {}\n{}",
            i + 1,
            result.body,
            cluster.logs()
        );
        check_logged_entry(&result.json().unwrap()).unwrap();
    }
    wait_until("remaining nodes converge", Duration::from_secs(30), || {
        let clients: Vec<_> = remaining.iter().map(|i| clients[*i].clone()).collect();
        async move {
            let mut texts = Vec::new();
            for client in &clients {
                texts.push(client.checkpoint().await?);
            }
            Ok((texts[0].is_some() && texts.iter().all(|t| *t == texts[0])).then_some(()))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
}
