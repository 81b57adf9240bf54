//! A node signing with an encrypted PKCS#8 key file (`--signing-key-password-file`), and
//! `keygen --key-uri`, which prints the trust outputs of an existing key: the log ID it prints is
//! the one the node serves, and checkpoints verify under the public key it prints.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use rekor_cluster_tests::{check_logged_entry, node_binary, Cluster, EntryFactory, Signer};
use rekor_storage::note::{verifier_from_spki_der, Note};

const ORIGIN: &str = "cluster.test.local";

fn write_private(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `rekor-node keygen --key-uri <key> ...`: the printed (public key, log ID).
fn trust_outputs(key: &Path, password_file: &Path) -> (Vec<u8>, String) {
    let output = Command::new(node_binary().unwrap())
        .args(["keygen", "--origin", ORIGIN, "--key-uri"])
        .arg(key)
        .arg("--password-file")
        .arg(password_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains("PRIVATE"), "{stdout}");
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| value.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
    };
    let public_key = STANDARD.decode(field("public key:")).unwrap();
    (public_key, field("log ID:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_signs_with_an_encrypted_key_file_and_keygen_reads_its_trust_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("log-key.enc.pem");
    let password_path = dir.path().join("log-key.password");
    let pem = p256::SecretKey::random(&mut rand_core::OsRng)
        .to_pkcs8_encrypted_pem(&mut rand_core::OsRng, "s3cret pass", LineEnding::LF)
        .unwrap();
    write_private(&key_path, pem.as_bytes());
    write_private(&password_path, b"s3cret pass\n");
    let (public_key, log_id) = trust_outputs(&key_path, &password_path);

    let password_arg = password_path.display().to_string();
    let cluster = Cluster::start_with_signer(
        1,
        &["--signing-key-password-file", &password_arg],
        Signer {
            key: Some(key_path.display().to_string()),
            env: Vec::new(),
        },
    )
    .await
    .expect("a node with an encrypted key starts");
    let client = &cluster.clients()[0];
    let result = client.submit(&EntryFactory::new().request()).await.unwrap();
    assert_eq!(result.status, 201, "{}", cluster.logs());
    let entry = result.json().unwrap();
    check_logged_entry(&entry).unwrap();
    assert_eq!(
        entry["logId"]["keyId"].as_str(),
        Some(log_id.as_str()),
        "the log ID keygen printed is the one the node serves"
    );
    let checkpoint = client.checkpoint().await.unwrap().unwrap();
    let note = Note::parse(checkpoint.as_bytes()).unwrap();
    let verifier = verifier_from_spki_der(ORIGIN, &public_key).unwrap();
    note.verify(&[verifier.as_ref()])
        .expect("the checkpoint verifies under the public key keygen printed");
}

#[test]
fn an_encrypted_key_without_its_password_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("log-key.enc.pem");
    let pem = encrypted_key_pem();
    write_private(&key_path, pem.as_bytes());
    let output = Command::new(node_binary().unwrap())
        .args([
            "serve",
            "--node-id",
            "1",
            "--bootstrap-single=false",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--signing-key")
        .arg(&key_path)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--listen-internal",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--signing-key-password-file"),
        "the error names the missing flag: {stderr}"
    );
}

/// An encrypted P-256 key (what the test needs is only that it is encrypted).
fn encrypted_key_pem() -> String {
    p256::SecretKey::random(&mut rand_core::OsRng)
        .to_pkcs8_encrypted_pem(&mut rand_core::OsRng, "pw", LineEnding::LF)
        .unwrap()
        .to_string()
}
