//! `rekor-node verify` against a real node (issue: deployment and operator experience).
//!
//! A node with a few thousand entries (100,000 with REKOR_SOAK=1) passes the audit, also against a
//! checkpoint saved half-way; then one byte of a stored hash tile is flipped on disk and the audit
//! fails naming exactly that tile; with the tile restored and one byte of an entry bundle flipped,
//! it fails naming exactly that bundle.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rekor_cluster_tests::{free_port, node_binary, wait_until, EntryFactory, LogClient};
use rekor_cluster_tests::{NodeProcess, NodeSpec};

const ORIGIN: &str = "verify.test.local";

fn entry_count() -> u64 {
    if std::env::var_os("REKOR_SOAK").is_some() {
        100_000
    } else {
        3_000
    }
}

/// Runs `rekor-node verify`; returns (success, stdout, stderr).
fn verify(url: &str, vkey: &str, extra: &[&str]) -> (bool, String, String) {
    let output = Command::new(node_binary().unwrap())
        .args([
            "verify",
            "--url",
            url,
            "--vkey",
            vkey,
            "--progress-interval-s",
            "1",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("running rekor-node verify");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `rekor-node keygen`; returns the verifier key it prints.
fn keygen(out: &Path) -> String {
    let output = Command::new(node_binary().unwrap())
        .args(["keygen", "--origin", ORIGIN, "--out"])
        .arg(out)
        .output()
        .expect("running keygen");
    assert!(output.status.success(), "keygen failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("verifier key:"))
        .map(|vkey| vkey.trim().to_owned())
        .expect("keygen prints the verifier key")
}

/// Submits `count` fresh entries with `parallel` requests in flight; every one must get 201.
async fn fill(client: &LogClient, count: u64, parallel: u64) {
    let factory = Arc::new(EntryFactory::new());
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..parallel {
        let client = client.clone();
        let factory = factory.clone();
        let share = count / parallel + u64::from(worker < count % parallel);
        workers.spawn(async move {
            for _ in 0..share {
                let result = client.submit(&factory.request()).await.expect("submit");
                assert_eq!(result.status, 201, "{}", result.body);
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.expect("submitting worker");
    }
}

async fn wait_for_size(client: &LogClient, size: u64) {
    wait_until(
        &format!("a checkpoint of size {size}"),
        Duration::from_secs(60),
        || async {
            let checkpoint = client.checkpoint().await?.unwrap_or_default();
            let served: u64 = checkpoint
                .lines()
                .nth(1)
                .and_then(|line| line.parse().ok())
                .unwrap_or(0);
            Ok((served >= size).then_some(()))
        },
    )
    .await
    .unwrap();
}

/// Flips one byte of a file; returns the original bytes to restore it.
fn flip_byte(path: &Path, offset: usize) -> Vec<u8> {
    let original = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut bytes = original.clone();
    bytes[offset] ^= 0x01;
    std::fs::write(path, &bytes).unwrap();
    original
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_audits_the_log_and_names_the_corrupted_object() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing-key.pem");
    let vkey = keygen(&key);
    let spec = NodeSpec {
        id: 1,
        public_port: free_port().unwrap(),
        internal_port: free_port().unwrap(),
        data_dir: dir.path().join("node1"),
        extra_args: Vec::new(),
    };
    let args: Vec<String> = [
        "serve",
        "--node-id",
        "1",
        "--data-dir",
        &spec.data_dir.display().to_string(),
        "--listen",
        &spec.public_addr(),
        "--listen-internal",
        &spec.internal_addr(),
        "--origin",
        ORIGIN,
        "--signing-key",
        &key.display().to_string(),
        // A real key: a one-node log forms only when asked.
        "--bootstrap-single",
        // Serve every read from disk: the test corrupts a stored tile behind the node's back.
        "--tile-cache-mib",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let node = NodeProcess::start(spec, args, dir.path()).unwrap();
    node.wait_live(Duration::from_secs(30)).await.unwrap();
    let client = LogClient::new(&node.base_url());
    let url = format!("{}/api/v2", node.base_url());

    // Half the entries, then save a checkpoint, then the rest.
    let total = entry_count();
    let first = total / 2;
    fill(&client, first, 64).await;
    wait_for_size(&client, first).await;
    let saved = dir.path().join("checkpoint.saved");
    let (ok, stdout, stderr) = verify(&url, &vkey, &["--save-checkpoint", saved.to_str().unwrap()]);
    assert!(
        ok,
        "first audit failed:\n{stdout}\n{stderr}\n{}",
        node.log()
    );
    assert!(stdout.contains(&format!("{ORIGIN} at size")), "{stdout}");
    fill(&client, total - first, 64).await;
    wait_for_size(&client, total).await;

    let (ok, stdout, stderr) = verify(&url, &vkey, &["--previous", saved.to_str().unwrap()]);
    assert!(ok, "audit failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("consistent with the previous checkpoint at size"),
        "{stdout}"
    );
    assert!(stderr.contains("verify: "), "no progress lines: {stderr}");

    // A key that did not sign the log is refused.
    let other = keygen(&dir.path().join("other-key.pem"));
    let (ok, _, stderr) = verify(&url, &other, &[]);
    assert!(!ok, "a foreign key was accepted");
    assert!(stderr.contains("checkpoint"), "{stderr}");

    // One byte of a full level-0 hash tile, on disk.
    let tiles: PathBuf = node.spec.data_dir.join("tiles");
    let tile = tiles.join("tile/0/001");
    let original = flip_byte(&tile, 32 * 7 + 3);
    let (ok, stdout, stderr) = verify(&url, &vkey, &[]);
    assert!(!ok, "a corrupted tile passed:\n{stdout}");
    assert!(
        stderr.contains("hash tile tile/0/001 is corrupt"),
        "the error does not name tile/0/001:\n{stderr}"
    );
    std::fs::write(&tile, original).unwrap();
    let (ok, stdout, stderr) = verify(&url, &vkey, &[]);
    assert!(ok, "restored log fails:\n{stdout}\n{stderr}");

    // One byte inside an entry of a full bundle.
    let bundle = tiles.join("tile/entries/002");
    let original = flip_byte(&bundle, 40);
    let (ok, _, stderr) = verify(&url, &vkey, &[]);
    assert!(!ok, "a corrupted bundle passed");
    assert!(
        stderr.contains("entry bundle tile/entries/002 is corrupt"),
        "the error does not name tile/entries/002:\n{stderr}"
    );
    std::fs::write(&bundle, original).unwrap();

    // A file that is not a checkpoint signed by this log is refused as --previous.
    let (ok, _, stderr) = verify(&url, &vkey, &["--previous", tile.to_str().unwrap()]);
    assert!(!ok && stderr.contains("previous checkpoint"), "{stderr}");
}
