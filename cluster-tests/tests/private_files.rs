//! Keys and secrets (issue: adversarial robustness, item 9): a node refuses a signing key or
//! cluster secret other users can read and a short secret from any source, and a generated
//! development key is marked where operators look.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rekor_cluster_tests::hostile::metric;
use rekor_cluster_tests::{node_binary, wait_until, NodeProcess, NodeSpec};

/// Starts a node that must refuse to run; returns its log.
async fn refused_start(dir: &Path, extra: &[&str]) -> String {
    let spec = NodeSpec::lone(dir, 1).unwrap();
    let args = spec.serve_args(extra);
    let mut node = NodeProcess::start(spec, args, dir).unwrap();
    let code = wait_until("the node to exit", Duration::from_secs(20), || {
        let exited = node.exited();
        async move { Ok(exited) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: it kept running\n{}", node.log()));
    assert_ne!(code, Some(0), "{}", node.log());
    node.log()
}

fn write_with_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_key_or_secret_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing-key.pem");
    let status = Command::new(node_binary().unwrap())
        .args(["keygen", "--out"])
        .arg(&key)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let secret = dir.path().join("cluster-secret");
    write_with_mode(&secret, &"s".repeat(40), 0o600);
    let key_arg = key.display().to_string();
    let secret_arg = secret.display().to_string();

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = refused_start(
        dir.path(),
        &[
            "--signing-key",
            &key_arg,
            "--cluster-secret-file",
            &secret_arg,
        ],
    )
    .await;
    assert!(log.contains("readable by other users"), "{log}");
    assert!(log.contains("signing-key.pem"), "{log}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o604)).unwrap();
    let log = refused_start(
        dir.path(),
        &[
            "--signing-key",
            &key_arg,
            "--cluster-secret-file",
            &secret_arg,
        ],
    )
    .await;
    assert!(log.contains("readable by other users"), "{log}");
    assert!(log.contains("cluster-secret"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_secret_is_refused_from_a_flag_and_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = refused_start(dir.path(), &["--cluster-secret", "sixteen-chars-ok"]).await;
    assert!(log.contains("at least 32"), "{log}");

    let secret = dir.path().join("short-secret");
    write_with_mode(&secret, "0123456789abcdef0123", 0o600);
    let secret_arg = secret.display().to_string();
    let log = refused_start(dir.path(), &["--cluster-secret-file", &secret_arg]).await;
    assert!(log.contains("at least 32"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_development_key_is_marked_in_the_log_the_status_page_and_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::lone(dir.path(), 1).unwrap();
    let args = spec.serve_args(&[]);
    let node = NodeProcess::start(spec, args, dir.path()).unwrap();
    node.wait_live(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
    assert!(
        node.log().contains("DEVELOPMENT SIGNING KEY"),
        "{}",
        node.log()
    );
    let status: serde_json::Value = reqwest::get(format!("{}/status.json", node.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["development_key"], true, "{status}");
    let marked = metric(
        &node.base_url(),
        "rekor_signing_key_info",
        &["development=\"true\""],
    )
    .await
    .unwrap();
    assert_eq!(marked, Some(1.0));
}
