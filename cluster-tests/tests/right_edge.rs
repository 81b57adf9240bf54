//! The right edge of a per-node tile store (`node/src/integrator.rs`): an integration step makes
//! only its full tiles and bundles durable; the partial objects at the integrated size stay in
//! memory and are made durable four times a second, before the store's checkpoint file names a
//! size, and at a clean shutdown. Reads of partial objects of every size are cut out of the ones
//! held. A node killed in between resumes from the last durable right edge (its leaves still
//! held), integrates again and serves the same bytes. Integration steps take the leaf hashes the
//! state machine computed when it applied the bodies (`rekor_node_leaf_hashes_total`), hashing a
//! body again only for leaves applied before a restart.

use std::path::Path;
use std::time::{Duration, Instant};

use rekor_cluster_tests::hostile::metric;
use rekor_cluster_tests::{check_logged_entry, wait_until, Cluster, EntryFactory, LogClient};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Entries logged one at a time: each its own integration step and its own checkpoint.
const ENTRIES: u64 = 120;

/// Files in `dir` (0 if it does not exist).
fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

/// The integrated size the node's last start resumed from, from its log.
fn resumed_size(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .rev()
        .find(|line| line.contains("integrator resumed"))?;
    let after = &line[line.find("integrated_size")? + "integrated_size".len()..];
    let digits: String = after
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Leaf hashes the node's integration steps used from `source` (0 before any).
async fn leaf_hashes(base: &str, source: &str) -> u64 {
    let label = format!("source=\"{source}\"");
    metric(base, "rekor_node_leaf_hashes_total", &[&label])
        .await
        .unwrap()
        .unwrap_or(0.0) as u64
}

async fn served_size(client: &LogClient) -> Option<u64> {
    let checkpoint = client.checkpoint().await.ok()??;
    checkpoint.lines().nth(1)?.parse().ok()
}

async fn wait_served(client: &LogClient, size: u64) {
    wait_until(&format!("checkpoint {size} served"), TIMEOUT, || async {
        Ok((served_size(client).await == Some(size)).then_some(()))
    })
    .await
    .unwrap();
}

async fn get(client: &LogClient, path: &str) -> Vec<u8> {
    client
        .get(path)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{path} not served"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_objects_are_held_in_memory_and_a_killed_node_resumes_from_the_durable_edge() {
    let mut cluster = Cluster::start(1, &[]).await.expect("cluster starts");
    let client = cluster.nodes[0].client();
    let base = cluster.nodes[0].base_url();
    let factory = EntryFactory::new();
    let started = Instant::now();
    for expected in 0..ENTRIES {
        let result = client.submit(&factory.request()).await.unwrap();
        assert_eq!(result.status, 201, "{}", result.body);
        let (index, _) = check_logged_entry(&result.json().unwrap()).unwrap();
        assert_eq!(index, expected);
    }
    let elapsed = started.elapsed();
    wait_served(&client, ENTRIES).await;

    // Each entry was a step of its own, yet few partial bundles were written: at most four a
    // second for the right edge and one for the checkpoint file, plus the first of each.
    // Writing every step's partial objects (and every checkpoint's) leaves one file per size.
    let steps = metric(&base, "rekor_node_integrate_seconds_count", &[])
        .await
        .unwrap()
        .unwrap();
    assert!(steps >= ENTRIES as f64, "{steps} integration steps");
    let tiles = cluster.nodes[0].spec.data_dir.join("tiles");
    let partial_bundles = files_in(&tiles.join("tile/entries/000.p"));
    let bound = 5 * (elapsed.as_secs() as usize + 1) + 2;
    assert!(
        partial_bundles <= bound,
        "{partial_bundles} partial bundles written for {ENTRIES} steps in {elapsed:?}"
    );

    // Every size's partial objects are served, each a prefix of the newest one.
    let tile = get(&client, &format!("tile/0/000.p/{ENTRIES}")).await;
    let bundle = get(&client, &format!("tile/entries/000.p/{ENTRIES}")).await;
    assert_eq!(tile.len(), 32 * ENTRIES as usize);
    for width in [1u64, 37, ENTRIES - 1] {
        let narrower = get(&client, &format!("tile/0/000.p/{width}")).await;
        assert_eq!(narrower, tile[..32 * width as usize]);
        let narrower = get(&client, &format!("tile/entries/000.p/{width}")).await;
        assert!(bundle.starts_with(&narrower) && narrower.len() < bundle.len());
    }

    // Every step took the leaf hashes the state machine computed when it applied the bodies:
    // no body was hashed a second time.
    assert_eq!(leaf_hashes(&base, "state_machine").await, ENTRIES);
    assert_eq!(leaf_hashes(&base, "integrator").await, 0);

    // SIGKILL: the restart resumes from the last durable right edge, at or above what the node
    // reported as its resume size, and serves the same bytes once integrated again.
    let resume = metric(&base, "rekor_node_resume_size", &[])
        .await
        .unwrap()
        .unwrap() as u64;
    assert!(resume <= ENTRIES);
    cluster.nodes[0].kill();
    cluster.nodes[0].restart(cluster.dir.path()).unwrap();
    cluster.nodes[0]
        .wait_live(TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.nodes[0].log()));
    let resumed = resumed_size(&cluster.nodes[0].log()).expect("the restart logs its size");
    assert!(
        (resume..=ENTRIES).contains(&resumed),
        "resumed from {resumed}; the durable size was {resume}"
    );
    wait_served(&client, ENTRIES).await;
    assert_eq!(get(&client, &format!("tile/0/000.p/{ENTRIES}")).await, tile);
    let bundle_again = get(&client, &format!("tile/entries/000.p/{ENTRIES}")).await;
    assert_eq!(bundle_again, bundle);
    let result = client.submit(&factory.request()).await.unwrap();
    assert_eq!(result.status, 201, "{}", result.body);
    assert_eq!(
        check_logged_entry(&result.json().unwrap()).unwrap().0,
        ENTRIES
    );
    wait_served(&client, ENTRIES + 1).await;
    // The restarted process integrated the leaves above the size it resumed from once each (with
    // the hashes of whatever its state machine applied again, the others' bodies hashed anew),
    // and the new entry with the hash its state machine computed.
    let from_state_machine = leaf_hashes(&base, "state_machine").await;
    let rehashed = leaf_hashes(&base, "integrator").await;
    assert_eq!(from_state_machine + rehashed, ENTRIES + 1 - resumed);
    assert!(from_state_machine >= 1);

    // A clean stop makes the right edge durable: the next start resumes at the full size.
    let stopped = cluster.nodes[0].terminate(TIMEOUT).unwrap();
    assert_eq!(stopped, Some(0), "{}", cluster.nodes[0].log());
    let size = ENTRIES + 1;
    assert!(tiles.join(format!("tile/0/000.p/{size}")).exists());
    assert!(tiles.join(format!("tile/entries/000.p/{size}")).exists());
    cluster.nodes[0].restart(cluster.dir.path()).unwrap();
    cluster.nodes[0]
        .wait_live(TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.nodes[0].log()));
    assert_eq!(resumed_size(&cluster.nodes[0].log()), Some(size));
    wait_served(&client, size).await;
}
