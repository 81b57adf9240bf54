//! The real sigstore-python client (sigstore==4.5.1) against a real actix-web server on
//! loopback with the in-process log, for an Ed25519 and an ECDSA P-256 log key
//! (`client-harness.md`, see docs/spec-references.md). The harness is `scripts/client/harness.py`; the
//! interpreter comes from `REKOR_TEST_PYTHON` (set by scripts/test.sh, which creates `.venv`).

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer};
use rekor_api::memory_log::MemoryLog;
use rekor_api::{ApiConfig, ApiState};
use rekor_storage::note::{EcdsaP256NoteSigner, Ed25519NoteSigner, NoteSigner};
use support::*;

/// The whole harness run (300+ entries, tampering, bad requests) must finish within this.
const HARNESS_DEADLINE: Duration = Duration::from_secs(600);

fn python() -> Option<String> {
    match std::env::var("REKOR_TEST_PYTHON") {
        Ok(path) if !path.is_empty() => Some(path),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "REKOR_TEST_PYTHON is not set in CI: scripts/test.sh must create .venv with sigstore==4.5.1"
            );
            eprintln!(
                "\n!!!!!!!! SKIPPED: the sigstore-python client test needs REKOR_TEST_PYTHON \
                 (a python with sigstore==4.5.1, e.g. `scripts/test.sh --setup` then \
                 REKOR_TEST_PYTHON=.venv/bin/python) !!!!!!!!\n"
            );
            None
        }
    }
}

/// Starts a server on a free loopback port; returns its base URL and a stop handle.
async fn start_server(
    signer: Box<dyn NoteSigner>,
    read_only: bool,
) -> (String, actix_web::dev::ServerHandle, Arc<MemoryLog>) {
    let log = Arc::new(MemoryLog::new(signer).await.unwrap());
    let config = ApiConfig {
        log_id: log.log_id(),
        read_only,
        ..ApiConfig::default()
    };
    let state = ApiState::new(config, log.clone(), &prometheus::Registry::new()).unwrap();
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new().configure(move |cfg| state.configure(cfg))
    })
    .workers(2)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (format!("http://{addr}"), handle, log)
}

async fn run_harness(python: &str, args: &[String]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/client/harness.py");
    let mut child = Command::new(python)
        .arg(&script)
        .args(args)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {python}: {e}"));
    let deadline = Instant::now() + HARNESS_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the harness did not finish within {HARNESS_DEADLINE:?}");
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        status.success(),
        "the sigstore-python harness failed: {status}"
    );
}

async fn harness_against(signer: Box<dyn NoteSigner>, key_type: &str) {
    let Some(python) = python() else { return };
    let origin = signer.name().to_owned();
    let spki = b64e(&signer.public_key_der());
    let (url, handle, log) = start_server(signer, false).await;
    let frozen_signer: Box<dyn NoteSigner> =
        Box::new(Ed25519NoteSigner::generate("frozen.rekor.test").unwrap());
    let (frozen_url, frozen_handle, frozen_log) = start_server(frozen_signer, true).await;
    let args: Vec<String> = [
        "--base-url",
        &url,
        "--origin",
        &origin,
        "--log-key-type",
        key_type,
        "--log-key-spki-b64",
        &spki,
        "--entries",
        "300",
        "--expect-fresh",
        "--frozen-url",
        &frozen_url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run_harness(&python, &args).await;
    // 1 fresh + 300 + duplicate (1) + publicKey (1) + tampering (2) entries; nothing else logged.
    assert_eq!(log.size().await, 305);
    assert_eq!(frozen_log.size().await, 0);
    handle.stop(true).await;
    frozen_handle.stop(true).await;
}

#[actix_web::test]
async fn sigstore_python_verifies_entries_from_an_ed25519_log() {
    harness_against(
        Box::new(Ed25519NoteSigner::generate("rekor.ed25519.test").unwrap()),
        "ed25519",
    )
    .await;
}

#[actix_web::test]
async fn sigstore_python_verifies_entries_from_an_ecdsa_p256_log() {
    let _ = EcdsaP256NoteSigner::generate; // the upstream test key is used instead of a fresh one
    harness_against(upstream_p256_signer("rekor.p256.test"), "ecdsa-p256").await;
}
