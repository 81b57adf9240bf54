//! The real sigstore-python client (scripts/client/harness.py, run by the venv interpreter in
//! `REKOR_TEST_PYTHON`) and the checks made after it ran, shared by the tests that point it at a
//! log: `mod sigstore_client;` in a test file.

use std::path::Path;
use std::time::Duration;

use rekor_cluster_tests::LogClient;

/// The interpreter of the venv with sigstore==4.5.1, or None (then the test skips, except in CI).
pub fn python() -> Option<String> {
    match std::env::var("REKOR_TEST_PYTHON") {
        Ok(python) if Path::new(&python).exists() => Some(python),
        _ if std::env::var_os("CI").is_some() => {
            panic!("REKOR_TEST_PYTHON is not set in CI: scripts/test.sh must create the venv")
        }
        _ => {
            eprintln!(
                "SKIPPED: set REKOR_TEST_PYTHON (scripts/test.sh does) to run sigstore-python"
            );
            None
        }
    }
}

fn harness_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/client/harness.py")
}

/// The base64 DER SPKI the node logs at start-up.
pub fn logged_public_key(log: &str) -> String {
    log.lines()
        .find(|line| line.contains("checkpoint signer ready"))
        .and_then(|line| line.split("public_key=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|key| key.trim_matches(|c: char| !c.is_ascii_graphic()).to_owned())
        .unwrap_or_else(|| panic!("no public key in the node log:\n{log}"))
}

/// What a harness run checks besides the basics.
#[derive(Default)]
pub struct Checks<'a> {
    /// The log is empty at start.
    pub fresh: bool,
    /// The CA bundle of an HTTPS listener.
    pub ca: Option<&'a Path>,
    /// Nodes serving the entry lookup route, each asked for the entry behind a 409.
    pub entry_lookup_urls: &'a [String],
}

pub async fn run_harness(
    python: &str,
    base_url: &str,
    origin: &str,
    key_type: &str,
    spki: &str,
    checks: Checks<'_>,
) {
    let Checks {
        fresh,
        ca,
        entry_lookup_urls,
    } = checks;
    let mut command = tokio::process::Command::new(python);
    if let Some(ca) = ca {
        // requests (under sigstore-python) trusts exactly this bundle.
        command.env("REQUESTS_CA_BUNDLE", ca);
    }
    command
        .arg(harness_path())
        .args([
            "--base-url",
            base_url,
            "--origin",
            origin,
            "--log-key-type",
            key_type,
        ])
        .args(["--log-key-spki-b64", spki, "--entries", "40"]);
    if fresh {
        command.arg("--expect-fresh");
    }
    for url in entry_lookup_urls {
        command.args(["--entry-lookup-url", url]);
    }
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the harness finishes")
        .expect("the harness runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "sigstore-python harness failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

/// The served checkpoint verifies with the log key, and its root is the root of the served tiles.
pub async fn check_served_tree(client: &LogClient, origin: &str, spki_b64: &str) {
    use base64::Engine;
    let spki = base64::engine::general_purpose::STANDARD
        .decode(spki_b64)
        .unwrap();
    let verifier = rekor_storage::note::verifier_from_spki_der(origin, &spki).unwrap();
    let text = client.checkpoint().await.unwrap().expect("a checkpoint");
    let (checkpoint, _) =
        rekor_storage::checkpoint::Checkpoint::open(text.as_bytes(), origin, verifier.as_ref())
            .expect("the checkpoint verifies with the log key");
    let mut fetched = Vec::new();
    for id in rekor_storage::proof::tiles_for_root(checkpoint.size) {
        let bytes = client
            .get(&id.path())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} missing", id.path()));
        fetched.push((id, bytes));
    }
    let tiles = rekor_storage::proof::TileSet::from_fetched(fetched).unwrap();
    let root = rekor_storage::proof::root_from_tiles(checkpoint.size, &tiles).unwrap();
    assert_eq!(
        root, checkpoint.root,
        "the served tiles hash to the checkpoint root"
    );
}
