//! Full disk (cluster operations issue: "a full disk simulated by a small filesystem"). Every
//! node's data directory (Raft log, state machine, tiles) is a small tmpfs; a filler file takes
//! the rest of one node's, so its writes fail with ENOSPC.
//!
//! What the node does, and what is asserted: a full tile store alone (single-node test, tiles on
//! their own tmpfs) stops integration, so writes get a 503 JSON error and never a 201, reads go
//! on, and once space is back integration resumes without a restart. A full Raft data directory:
//! once the Raft storage (log segments, leaf-body files, sled metadata) needs space it cannot
//! get, openraft treats the failed write as fatal; the node then logs one clear line ("Raft
//! stopped on a storage error …") and exits with code 74
//! (EX_IOERR) instead of lingering as a zombie leader. Every entry it acknowledged is held by a
//! quorum (the checker); writes in flight get a 503 JSON error. In a cluster the others carry on
//! (a new leader is elected when the full node led); after the space is freed the node is restarted,
//! catches up, and the invariant checker runs over every node. A node restarted while its disk is
//! still full refuses to start (exit code 1, "No space left on device"), it does not panic-loop.
//!
//! Needs permission to mount a tmpfs: as root (here and in CI) the test must run; otherwise it
//! is skipped with a loud message. Short by default; `REKOR_SOAK=1` runs long load phases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rekor_cluster_tests::chaos::checker::Acknowledged;
use rekor_cluster_tests::chaos::disk::{mount_permitted, running_as_root, SmallFilesystem};
use rekor_cluster_tests::chaos::scenarios::{
    wait_for_exit, SMALL_DISK_MIB, STORAGE_FAILURE_EXIT_CODE, STORAGE_FAILURE_LINE,
};
use rekor_cluster_tests::chaos::{
    assert_scenario_passes, check_cluster, CheckpointPoller, Load, LoadConfig, LogVerifier,
    NodeView,
};
use rekor_cluster_tests::{check_logged_entry, wait_until, Cluster, EntryFactory};

/// False (after saying why, loudly) when tmpfs cannot be mounted and we are not root; panics when
/// root cannot mount, since there the test must run for real.
fn can_mount() -> bool {
    match mount_permitted() {
        Ok(()) => true,
        Err(error) if running_as_root() => {
            panic!("running as root but cannot mount a tmpfs for the full-disk test: {error:#}")
        }
        Err(error) => {
            eprintln!(
                "\n!!!!! SKIPPING the full-disk test: cannot mount a tmpfs ({error:#}); run it as \
                 root to test a full disk !!!!!\n"
            );
            false
        }
    }
}

async fn full_disk_scenario(scenario: &str) {
    if !can_mount() {
        return;
    }
    assert_scenario_passes(scenario).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_with_a_full_disk_exits_and_leadership_moves() {
    full_disk_scenario("full-disk-leader").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_with_a_full_disk_exits_and_catches_up_after_restart() {
    full_disk_scenario("full-disk-follower").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_with_a_full_disk_refuses_writes_then_recovers() {
    if !can_mount() {
        return;
    }
    // The tile store on a tmpfs of its own (as when it lives on a separate volume), the Raft data
    // on another: first the tiles fill up, then the Raft log.
    let tiles_dir = tempfile::tempdir().unwrap();
    let tiles_path = tiles_dir.path().join("tiles");
    let tiles_disk = SmallFilesystem::mount(&tiles_path, SMALL_DISK_MIB).unwrap();
    let tiles_arg = tiles_path.display().to_string();
    let mut cluster = Cluster::start_on_small_disks(
        1,
        &["--submit-timeout-s", "3", "--tile-store", &tiles_arg],
        SMALL_DISK_MIB,
    )
    .await
    .expect("node starts");
    let verifier = LogVerifier::from_key_file(&cluster.origin, &cluster.key_file).unwrap();
    let views = NodeView::all(&cluster);
    let client = views[0].client.clone();
    let factory = Arc::new(EntryFactory::new());
    let load_config = LoadConfig {
        workers: 2,
        ..LoadConfig::default()
    };
    let poller = CheckpointPoller::start(views.clone(), Duration::from_millis(100));

    // Some entries while there is room.
    let load = Load::start(views.clone(), factory.clone(), load_config.clone());
    wait_until("20 entries logged", Duration::from_secs(30), || async {
        Ok((load.acknowledged() >= 20).then_some(()))
    })
    .await
    .unwrap();
    let (_, mut observations) = load.stop().await;

    // Tile store full: Raft still works. Entries are integrated while the partial bundle they
    // land in is held in memory (their bodies are durable in the Raft storage), but once a full
    // bundle must be written nothing more can be integrated: from then on a write gets a 503
    // JSON error after the submit timeout, never a 201. Reads keep being served.
    tiles_disk.fill().unwrap();
    let mut refused = None;
    for _ in 0..=256 {
        let request = factory.request();
        let result = client.submit(&request).await.unwrap();
        if result.status == 201 {
            continue;
        }
        assert_eq!(result.status, 503, "tile store full: {}", result.body);
        refused = Some(request);
        break;
    }
    let refused = refused.expect("a write is refused before a second bundle fills");
    for _ in 0..2 {
        let result = client.submit(&refused).await.unwrap();
        assert_eq!(result.status, 503, "tile store full: {}", result.body);
        let body: serde_json::Value = serde_json::from_str(&result.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", result.body));
        assert!(body["message"].is_string(), "{body}");
    }
    assert!(
        client.checkpoint().await.unwrap().is_some(),
        "reads stopped"
    );
    assert!(
        cluster.nodes[0].exited().is_none(),
        "a full tile store alone must not stop the node\n{}",
        cluster.logs()
    );
    // Space back: integration resumes by itself; the refused entry was sequenced, so it is a 409
    // now, pointing at where it landed.
    tiles_disk.free().unwrap();
    let logged = wait_until("writes succeed again", Duration::from_secs(30), || async {
        let result = client.submit(&factory.request()).await?;
        Ok((result.status == 201).then_some(result))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert!(logged.json().is_ok());
    let again = client.submit(&refused).await.unwrap();
    assert_eq!(again.status, 409, "{}", again.body);

    // Raft data full: the node exits with its clear line. Until the Raft storage needs a block it
    // has not got (a segment file's next page, a sled page), its writes land in space it already
    // holds and are fsynced, so a 201 here is legitimate
    // (the checker below proves those entries survived); every other answer is a 5xx JSON error.
    cluster.mounts[0].fill().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut errors = Vec::new();
    let mut logged_while_full = 0;
    while cluster.nodes[0].exited().is_none() && Instant::now() < deadline {
        match client.submit(&factory.request()).await {
            Ok(result) if result.status == 201 => {
                logged_while_full += 1;
                let entry = result.json().unwrap();
                let (index, _) = check_logged_entry(&entry).unwrap();
                let body = STANDARD
                    .decode(entry["canonicalizedBody"].as_str().unwrap())
                    .unwrap();
                observations.acknowledged.push(Acknowledged {
                    index,
                    body,
                    node: views[0].id,
                });
            }
            Ok(result) => {
                assert!(result.status >= 500, "{}: {}", result.status, result.body);
                let body: serde_json::Value = serde_json::from_str(&result.body)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {}", result.body));
                assert!(body["message"].is_string(), "{body}");
                errors.push(result.status);
            }
            // The node exited while the request was open.
            Err(_) => break,
        }
    }
    let code = wait_for_exit(&mut cluster, 0, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    println!(
        "Raft data full: {logged_while_full} write(s) logged before the Raft storage ran out, then {} \
         answered {errors:?}; exit code {code:?}",
        errors.len()
    );
    assert_eq!(code, Some(STORAGE_FAILURE_EXIT_CODE), "{}", cluster.logs());
    let log = cluster.nodes[0].log();
    assert!(log.contains(STORAGE_FAILURE_LINE), "{log}");
    assert!(!log.contains("panicked at"), "{log}");

    // Restarted while still full: it refuses to start, with the reason, and does not hang.
    let cwd = cluster.dir.path().to_path_buf();
    let log_before = cluster.nodes[0].log().len();
    cluster.nodes[0].restart(&cwd).unwrap();
    let code = wait_for_exit(&mut cluster, 0, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let restart_log = cluster.nodes[0].log()[log_before..].to_owned();
    assert!(
        matches!(code, Some(c) if c != 0 && c != 101),
        "restart on a full disk: exit {code:?}\n{restart_log}"
    );
    assert!(
        restart_log.contains("No space left on device"),
        "restart on a full disk does not say why:\n{restart_log}"
    );

    // Space freed: the node starts, takes writes again, and everything acknowledged is there.
    cluster.mounts[0].free().unwrap();
    cluster.nodes[0].restart(&cwd).unwrap();
    cluster.nodes[0]
        .wait_live(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let before = observations.acknowledged.len();
    let load = Load::start(views.clone(), factory.clone(), load_config);
    wait_until(
        "20 more entries logged",
        Duration::from_secs(60),
        || async { Ok((load.acknowledged() >= 20).then_some(())) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let (_, more) = load.stop().await;
    observations.extend(more);
    poller.stop_into(&mut observations).await;
    assert!(observations.acknowledged.len() >= before + 20);
    let report = check_cluster(&views, &verifier, &observations, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        report.violations.is_empty(),
        "{:#?}\n{}",
        report.violations,
        cluster.logs()
    );
    println!(
        "single node: {} acknowledged, final size {}, {} checkpoints checked",
        observations.acknowledged.len(),
        report.final_size,
        report.checkpoints_checked
    );
}
