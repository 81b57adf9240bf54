//! Three nodes on one shared tile store (`--shared-tile-store`): one directory, and one bucket
//! prefix on a real S3-compatible server (`s3s-fs`).
//!
//! Entries written through every node, followers included, get 201s whose proofs verify; only
//! the leader's integrator writes (the followers' `rekor_node_objects_written_total` stays 0, and
//! no node has a tile store of its own); the store's checkpoint file is the leader's. Then the
//! leader is SIGKILLed, more entries go through the survivors (the new leader writes from where
//! the old one stopped, the other survivor still writes nothing), the old leader restarts on the
//! same store, and the chaos invariant checker finds every acknowledged entry at its index under
//! a verifying, consistent checkpoint on every node. And with the bucket's server down, entries
//! are committed but no node serves a checkpoint beyond what the store holds.

use std::path::Path;
use std::time::Duration;

use rekor_cluster_tests::chaos::checker::Observations;
use rekor_cluster_tests::chaos::load::{submit_recorded, Outcome};
use rekor_cluster_tests::chaos::{check_cluster, LogVerifier, NodeView};
use rekor_cluster_tests::hostile::metric;
use rekor_cluster_tests::s3::S3Server;
use rekor_cluster_tests::{wait_until, Cluster, EntryFactory, LogClient};
use rekor_storage::integrate::TreeBuilder;

const ROUNDS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_tile_directory() {
    let shared = tempfile::tempdir().unwrap();
    let tiles = shared.path().join("tiles");
    let tiles_arg = tiles.display().to_string();
    let cluster = Cluster::start(3, &["--shared-tile-store", "--tile-store", &tiles_arg])
        .await
        .expect("cluster starts");
    leader_writes_followers_serve(cluster, Some(&tiles)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_bucket_prefix() {
    let s3 = S3Server::start(&["tiles"]).await.expect("s3s-fs starts");
    let cluster = Cluster::start_with_env(
        3,
        &["--shared-tile-store", "--tile-store", "s3://tiles/log"],
        s3.node_env(),
    )
    .await
    .expect("cluster starts");
    leader_writes_followers_serve(cluster, None).await;
}

/// The leader signs only sizes whose objects it has made durable in the shared store
/// (`node/src/publisher.rs`): with the store down, new entries are committed and applied on every
/// node, yet no node serves a checkpoint beyond the one it served before, since the leader
/// cannot write their tiles; once the store is back the waiting writes are answered. Signing the
/// applied size instead (the per-node rule) fails this: followers, which write nothing, would
/// serve committed checkpoints whose tiles are in no store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_checkpoint_is_served_beyond_what_the_store_holds() {
    let mut s3 = S3Server::start(&["tiles"]).await.expect("s3s-fs starts");
    let cluster = Cluster::start_with_env(
        3,
        &["--shared-tile-store", "--tile-store", "s3://tiles/log"],
        s3.node_env(),
    )
    .await
    .expect("cluster starts");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    let leader_url = cluster.nodes[leader].base_url();
    let factory = EntryFactory::new();
    let first = LogClient::new(&leader_url)
        .submit(&factory.request())
        .await
        .unwrap();
    assert_eq!(first.status, 201, "{}", first.body);
    let served = |position: usize| {
        let base = cluster.nodes[position].base_url();
        async move {
            metric(&base, "rekor_node_checkpoint_size", &[])
                .await
                .unwrap()
                .unwrap_or_default()
        }
    };
    for position in 0..3 {
        wait_until(
            "every node to serve the first entry",
            Duration::from_secs(30),
            || async { Ok((served(position).await >= 1.0).then_some(())) },
        )
        .await
        .unwrap();
    }
    let before: Vec<f64> = futures::future::join_all((0..3).map(served)).await;

    s3.stop();
    const WAITING: u64 = 5;
    let mut writes = tokio::task::JoinSet::new();
    for _ in 0..WAITING {
        let client = LogClient::new(&leader_url);
        let request = factory.request();
        writes.spawn(async move { client.submit(&request).await });
    }
    // Committed and applied everywhere: a checkpoint of that size could be signed now.
    let sequenced = (1 + WAITING) as f64;
    for position in 0..3 {
        let base = cluster.nodes[position].base_url();
        wait_until(
            "the new entries to be applied on every node",
            Duration::from_secs(30),
            || {
                let base = base.clone();
                async move {
                    let size = metric(&base, "rekor_node_sequenced_size", &[]).await?;
                    Ok((size.unwrap_or_default() >= sequenced).then_some(()))
                }
            },
        )
        .await
        .unwrap();
    }
    // Signing an applied size takes milliseconds; watch for two seconds that none is served.
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < watch_until {
        let now: Vec<f64> = futures::future::join_all((0..3).map(served)).await;
        assert_eq!(
            now,
            before,
            "a node serves a checkpoint whose tiles the store does not hold\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    s3.resume().await.unwrap();
    while let Some(answer) = writes.join_next().await {
        let answer = answer.unwrap().unwrap();
        assert_eq!(answer.status, 201, "{}\n{}", answer.body, cluster.logs());
    }
    for position in 0..3 {
        wait_until(
            "every node to serve the waiting entries",
            Duration::from_secs(30),
            || async { Ok((served(position).await >= sequenced).then_some(())) },
        )
        .await
        .unwrap();
    }
}

/// The whole test on a started cluster; `tiles` is the shared directory, when it is one.
async fn leader_writes_followers_serve(mut cluster: Cluster, tiles: Option<&Path>) {
    let verifier = LogVerifier::from_key_file(&cluster.origin, &cluster.key_file).unwrap();
    let factory = EntryFactory::new();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    let mut observations = Observations::default();

    // Entries through every node; a follower's 201 carries a proof from the leader's tiles.
    let everyone: Vec<usize> = (0..3).collect();
    write_through(&cluster, &everyone, &factory, &mut observations).await;
    assert_eq!(
        cluster
            .wait_for_leader(Duration::from_secs(30))
            .await
            .unwrap(),
        leader,
        "leadership moved during the test; its premise (one writer) does not hold"
    );
    let written = objects_written(&cluster, &everyone).await;
    for (position, count) in written.iter().enumerate() {
        if position == leader {
            assert!(*count > 0.0, "the leader wrote nothing: {written:?}");
        } else {
            assert_eq!(*count, 0.0, "follower at {position} wrote: {written:?}");
        }
    }
    if let Some(tiles) = tiles {
        for node in &cluster.nodes {
            assert!(
                !node.spec.data_dir.join("tiles").exists(),
                "node {} has a tile store of its own",
                node.spec.id
            );
        }
        // The checkpoint file (the leader's, at most once a second) reaches the acknowledged size.
        let needed = 3 * ROUNDS as u64;
        wait_until(
            "the store's checkpoint file to cover every entry",
            Duration::from_secs(30),
            || async {
                let Ok(text) = std::fs::read_to_string(tiles.join("checkpoint")) else {
                    return Ok(None);
                };
                let checkpoint = verifier
                    .open(&text)
                    .map_err(|error| anyhow::anyhow!("checkpoint file: {error}"))?;
                Ok((checkpoint.size >= needed).then_some(()))
            },
        )
        .await
        .unwrap();
    }

    // The leader dies mid-stream; a survivor takes over writing where it stopped.
    if let Some(tiles) = tiles {
        every_checkpoint_is_readable_from_the_store(tiles, &verifier, &observations);
    }
    cluster.nodes[leader].kill();
    let new_leader = cluster
        .wait_for_leader(Duration::from_secs(60))
        .await
        .unwrap();
    let survivors: Vec<usize> = everyone.iter().copied().filter(|&p| p != leader).collect();
    write_through(&cluster, &survivors, &factory, &mut observations).await;
    let after = objects_written(&cluster, &survivors).await;
    for (&position, count) in survivors.iter().zip(&after) {
        if position == new_leader {
            assert!(*count > 0.0, "the new leader wrote nothing: {after:?}");
        } else {
            assert_eq!(*count, 0.0, "follower at {position} wrote: {after:?}");
        }
    }

    // The old leader comes back on the same store and catches up.
    let cwd = cluster.dir.path().to_path_buf();
    cluster.nodes[leader].restart(&cwd).unwrap();
    cluster.nodes[leader]
        .wait_live(Duration::from_secs(60))
        .await
        .unwrap();
    let report = check_cluster(
        &NodeView::all(&cluster),
        &verifier,
        &observations,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(
        report.violations.is_empty(),
        "{:?}\n{}",
        report.violations,
        cluster.logs()
    );
    assert!(report.final_size >= (3 + 2) as u64 * ROUNDS as u64);
    if let Some(tiles) = tiles {
        every_checkpoint_is_readable_from_the_store(tiles, &verifier, &observations);
    }
}

/// Every checkpoint a client was given names a tree whose right edge (partial tiles and bundle
/// at exactly its size) is in the shared store: the leader signs only sizes it has made durable
/// there, and nobody writes partial objects afterwards. (Signing the applied size instead leaves
/// sizes between two of the leader's steps without them.)
fn every_checkpoint_is_readable_from_the_store(
    tiles: &Path,
    verifier: &LogVerifier,
    observations: &Observations,
) {
    let mut sizes = std::collections::BTreeSet::new();
    for seen in &observations.checkpoints {
        sizes.insert(verifier.open(&seen.text).unwrap().size);
    }
    assert!(!sizes.is_empty());
    for size in sizes {
        let (right_tiles, bundle) = TreeBuilder::right_edge(size);
        let paths = right_tiles
            .iter()
            .map(|id| id.path())
            .chain(bundle.map(|id| id.path()));
        for path in paths {
            assert!(
                tiles.join(&path).is_file(),
                "checkpoint size {size}: {path} is not in the shared store"
            );
        }
    }
}

/// `ROUNDS` new entries through each node at `positions`, concurrently; each is retried (the
/// same request, so a 409 of an earlier attempt counts) until it is logged.
async fn write_through(
    cluster: &Cluster,
    positions: &[usize],
    factory: &EntryFactory,
    observations: &mut Observations,
) {
    let views = NodeView::of(cluster, positions);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..ROUNDS {
        for view in &views {
            let view = view.clone();
            let request = factory.request();
            tasks.spawn(async move {
                let mut seen = Observations::default();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                loop {
                    let (outcome, observed) =
                        submit_recorded(&view, &request, Duration::from_secs(20)).await;
                    seen.extend(observed);
                    match outcome {
                        Outcome::Logged(_) | Outcome::Duplicate(_) => return (outcome, seen),
                        _ if tokio::time::Instant::now() >= deadline => return (outcome, seen),
                        _ => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            });
        }
    }
    while let Some(result) = tasks.join_next().await {
        let (outcome, seen) = result.unwrap();
        assert!(
            seen.bad_answers.is_empty(),
            "{:?}\n{}",
            seen.bad_answers,
            cluster.logs()
        );
        assert!(
            matches!(outcome, Outcome::Logged(_) | Outcome::Duplicate(_)),
            "{outcome:?}\n{}",
            cluster.logs()
        );
        observations.extend(seen);
    }
}

/// `rekor_node_objects_written_total` of the nodes at `positions`; each must say it runs on a
/// shared store.
async fn objects_written(cluster: &Cluster, positions: &[usize]) -> Vec<f64> {
    let mut counts = Vec::new();
    for &position in positions {
        let base = cluster.nodes[position].base_url();
        let shared = metric(&base, "rekor_node_shared_tile_store", &[])
            .await
            .unwrap();
        assert_eq!(shared, Some(1.0), "node at {position}");
        let status: serde_json::Value = reqwest::get(format!("{base}/status.json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(status["tile_store"], "shared", "node at {position}");
        counts.push(
            metric(&base, "rekor_node_objects_written_total", &[])
                .await
                .unwrap()
                .unwrap_or_default(),
        );
    }
    counts
}
