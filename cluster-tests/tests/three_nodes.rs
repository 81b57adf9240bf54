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
        let (index, _) = check_logged_entry(&result.json().unwrap()).expect("verifying entry");
        indices.push(index);
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
