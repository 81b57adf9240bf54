//! A three-node cluster whose checkpoints are signed by an AWS KMS key: every node runs with
//! `--signing-key awskms://127.0.0.1:<port>/alias/<name>` and the AWS variables in its
//! environment, against moto in server mode (a local implementation of the KMS API standing in
//! for AWS, `rekor_cluster_tests::moto`). Entries are logged, the log ID the nodes serve is the
//! KMS key's, and the served checkpoint verifies under the public key KMS gives out; `rekor-node
//! keygen --key-uri` prints the same public key and log ID for the operator's trust root.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rekor_cluster_tests::moto::{moto_server_bin, MotoKms};
use rekor_cluster_tests::{check_logged_entry, node_binary, Cluster, EntryFactory, Signer};
use rekor_storage::note::{log_id, verifier_from_spki_der, Note};

/// The harness's log origin.
const ORIGIN: &str = "cluster.test.local";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_signs_checkpoints_with_a_kms_key() {
    let Some(binary) = moto_server_bin().unwrap() else {
        return;
    };
    let moto = MotoKms::start(&binary).await.unwrap();
    let key = moto.create_p256_key("rekor-cluster").await.unwrap();
    let public_key = moto.public_key_der(&key.alias).await.unwrap();

    let cluster = Cluster::start_with_signer(
        3,
        &[],
        Signer {
            key: Some(moto.uri(&key.alias)),
            env: moto.env(),
        },
    )
    .await
    .unwrap_or_else(|error| panic!("a cluster signing with AWS KMS starts: {error:#}"));

    let expected_log_id = STANDARD.encode(log_id(ORIGIN, &public_key).unwrap());
    let keygen = std::process::Command::new(node_binary().unwrap())
        .args([
            "keygen",
            "--origin",
            ORIGIN,
            "--key-uri",
            &moto.uri(&key.alias),
        ])
        .envs(moto.env())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&keygen.stdout);
    assert!(
        keygen.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let field = |name: &str| {
        printed
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {printed}"))
    };
    assert_eq!(field("public key:"), STANDARD.encode(&public_key));
    assert_eq!(field("log ID:"), expected_log_id);
    let factory = EntryFactory::new();
    // One entry through each node: followers forward, the leader's checkpoint covers them all.
    for client in cluster.clients() {
        let result = client.submit(&factory.request()).await.unwrap();
        assert_eq!(result.status, 201, "{}", cluster.logs());
        let entry = result.json().unwrap();
        check_logged_entry(&entry).unwrap();
        assert_eq!(
            entry["logId"]["keyId"].as_str(),
            Some(expected_log_id.as_str()),
            "the log ID is the KMS key's"
        );
    }

    let verifier = verifier_from_spki_der(ORIGIN, &public_key).unwrap();
    for client in cluster.clients() {
        let checkpoint = client.checkpoint().await.unwrap().unwrap();
        let note = Note::parse(checkpoint.as_bytes()).unwrap();
        note.verify(&[verifier.as_ref()])
            .expect("the served checkpoint verifies under the KMS key");
    }
}
