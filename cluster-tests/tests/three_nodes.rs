//! A three-node cluster on loopback (issue: the replicated log node).
//!
//! Entries posted to any node get 201 with verifying proofs; all nodes converge on identical
//! checkpoints, tiles and bundles; the same entry posted to two different nodes is logged once.

use std::time::Duration;

use rekor_cluster_tests::{check_logged_entry, wait_until, Cluster, EntryFactory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_log_serve_and_dedup_identically() {
    let cluster = Cluster::start(3, &[]).await.expect("cluster starts");
    let clients = cluster.clients();
    let factory = EntryFactory::new();

    // Entries to every node, concurrently.
    let mut tasks = Vec::new();
    for round in 0..10 {
        for client in &clients {
            let client = client.clone();
            let request = factory.request();
            tasks.push(tokio::spawn(async move {
                (round, client.submit(&request).await)
            }));
        }
    }
    let mut indices = Vec::new();
    let mut checkpoint_sizes = std::collections::BTreeSet::new();
    for task in tasks {
        let (_, result) = task.await.unwrap();
        let result = result.expect("submit");
        assert_eq!(
            result.status,
            201,
            "body: {}\n{}",
            result.body,
            cluster.logs()
        );
        let (index, size) = check_logged_entry(&result.json().unwrap()).expect("verifying entry");
        indices.push(index);
        checkpoint_sizes.insert(size);
    }
    indices.sort_unstable();
    assert_eq!(
        indices,
        (0..30).collect::<Vec<u64>>(),
        "indices are dense and unique"
    );

    // The same entry to two different nodes is logged once.
    let duplicate = factory.request();
    let first = clients[0].submit(&duplicate).await.unwrap();
    assert_eq!(first.status, 201, "{}", first.body);
    let (first_index, _) = check_logged_entry(&first.json().unwrap()).unwrap();
    let second = clients[1].submit(&duplicate).await.unwrap();
    assert_eq!(second.status, 409, "{}", second.body);
    assert_eq!(second.log_index_header, Some(first_index));
    let third = clients[2].submit(&duplicate).await.unwrap();
    assert_eq!(third.status, 409, "{}", third.body);
    assert_eq!(third.log_index_header, Some(first_index));

    // Every node converges on the same checkpoint at size 31...
    let checkpoint = wait_until(
        "identical checkpoints at size 31",
        Duration::from_secs(30),
        || {
            let clients = clients.clone();
            async move {
                let mut texts = Vec::new();
                for client in &clients {
                    texts.push(client.checkpoint().await?);
                }
                let first = texts[0].clone();
                let converged = first
                    .as_deref()
                    .is_some_and(|text| text.lines().nth(1) == Some("31"))
                    && texts.iter().all(|text| *text == first);
                Ok(converged.then_some(first))
            }
        },
    )
    .await
    .expect("convergence")
    .unwrap();

    // ...backed by byte-identical tiles and bundles.
    for path in ["tile/0/000.p/31", "tile/entries/000.p/31"] {
        let mut bodies = Vec::new();
        for client in &clients {
            bodies.push(client.get(path).await.unwrap());
        }
        assert!(bodies[0].is_some(), "{path} missing on node 1");
        assert!(
            bodies.iter().all(|body| *body == bodies[0]),
            "{path} differs between nodes"
        );
    }
    // Every checkpoint any node returned is backed by identical tiles on every node: all nodes
    // end integration steps at the same (batch-boundary) sizes.
    for size in checkpoint_sizes {
        for id in rekor_storage::proof::tiles_for_root(size) {
            let mut bodies = Vec::new();
            for client in &clients {
                bodies.push(client.get(&id.path()).await.unwrap());
            }
            assert!(
                bodies[0].is_some(),
                "{} (for size {size}) missing on node 1",
                id.path()
            );
            assert!(
                bodies.iter().all(|body| *body == bodies[0]),
                "{} (for size {size}) missing or different on some node",
                id.path()
            );
        }
    }
    let tile = clients[0].get("tile/0/000.p/31").await.unwrap().unwrap();
    let leaves: Vec<[u8; 32]> = tile.chunks(32).map(|c| c.try_into().unwrap()).collect();
    let root = root_of(&leaves);
    let root_line = checkpoint.lines().nth(2).unwrap();
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(root),
        root_line,
        "the checkpoint's root is the root of the served tile"
    );
}

/// RFC 6962 root of a list of leaf hashes (the naive recursion; fine for tests).
fn root_of(leaves: &[[u8; 32]]) -> [u8; 32] {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let split = leaves.len().next_power_of_two() / 2;
    rekor_storage::merkle::node_hash(&root_of(&leaves[..split]), &root_of(&leaves[split..]))
}

/// A follower frozen with SIGSTOP while the log grows applies many batches at once when it
/// resumes; it must still end integration steps at the batch boundaries, so that every checkpoint
/// the cluster published is backed by the same tiles on it as on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_follower_writes_the_same_tiles_at_every_checkpoint() {
    let cluster = Cluster::start(3, &[]).await.expect("cluster starts");
    let clients = cluster.clients();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let follower = (leader + 1) % 3;
    let factory = EntryFactory::new();

    cluster.nodes[follower].signal("STOP").unwrap();
    let mut sizes = std::collections::BTreeSet::new();
    for _round in 0..6 {
        let mut tasks = Vec::new();
        for _ in 0..7 {
            let client = clients[leader].clone();
            let request = factory.request();
            tasks.push(tokio::spawn(async move { client.submit(&request).await }));
        }
        for task in tasks {
            let result = task.await.unwrap().unwrap();
            assert_eq!(result.status, 201, "{}", result.body);
            let (_, size) = check_logged_entry(&result.json().unwrap()).unwrap();
            sizes.insert(size);
        }
    }
    cluster.nodes[follower].signal("CONT").unwrap();
    assert!(
        sizes.len() > 1,
        "several checkpoints were published: {sizes:?}"
    );

    let final_checkpoint = clients[leader].checkpoint().await.unwrap().unwrap();
    wait_until("the follower catches up", Duration::from_secs(30), || {
        let client = clients[follower].clone();
        let expected = final_checkpoint.clone();
        async move { Ok((client.checkpoint().await?.as_deref() == Some(&*expected)).then_some(())) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    for size in sizes {
        for id in rekor_storage::proof::tiles_for_root(size) {
            let on_leader = clients[leader].get(&id.path()).await.unwrap();
            let on_follower = clients[follower].get(&id.path()).await.unwrap();
            assert!(on_leader.is_some(), "{} missing on the leader", id.path());
            assert_eq!(
                on_leader,
                on_follower,
                "{} (size {size}) differs on the follower",
                id.path()
            );
        }
    }
}
