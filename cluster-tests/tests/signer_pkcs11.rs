//! Three nodes whose checkpoint key is a key pair generated inside a SoftHSM2 token
//! (`--signing-key pkcs11:...`, `SOFTHSM2_CONF` in every node's environment): every node opens
//! its own session on the shared token directory.
//! Entries are logged and checkpoints verify under the token's public key, the sigstore-python
//! client signs and verifies against the cluster, and after the leader is killed the new leader
//! signs through its own session.
//!
//! Without SoftHSM2 the test skips with a notice, or fails when `CI` is set; without the
//! sigstore-python venv only the client part is skipped (or fails in CI).

mod sigstore_client;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rekor_cluster_tests::hostile::metric_value;
use rekor_cluster_tests::softhsm::{KeyKind, SoftHsm};
use rekor_cluster_tests::{
    check_logged_entry, wait_until, Cluster, EntryFactory, LogClient, Signer,
};
use rekor_storage::note::{verifier_from_spki_der, Note, NoteVerifier};
use sigstore_client::{check_served_tree, logged_public_key, python, run_harness, Checks};

const PIN: &str = "97531";

/// The pkcs11 backend's successful signatures on `client`'s node.
async fn pkcs11_signatures(client: &LogClient) -> anyhow::Result<f64> {
    let metrics = client.metrics().await?;
    Ok(metric_value(
        &metrics,
        "rekor_signer_requests_total",
        &["backend=\"pkcs11\"", "outcome=\"ok\""],
    )
    .unwrap_or(0.0))
}

/// Submits a fresh entry to `client`: 201, its proof verifies, and the checkpoint it carries
/// verifies under the token's key. Returns the log index.
async fn log_one(
    client: &LogClient,
    verifier: &dyn NoteVerifier,
    logs: impl Fn() -> String,
) -> u64 {
    let result = client.submit(&EntryFactory::new().request()).await.unwrap();
    assert_eq!(result.status, 201, "{}", logs());
    let entry = result.json().unwrap();
    let (index, _) = check_logged_entry(&entry).unwrap();
    let envelope = entry["inclusionProof"]["checkpoint"]["envelope"]
        .as_str()
        .unwrap();
    Note::parse(envelope.as_bytes())
        .unwrap()
        .verify(&[verifier])
        .expect("the entry's checkpoint verifies under the token's key");
    index
}

/// The served checkpoint of `client`'s node verifies under the token's key.
async fn served_checkpoint_verifies(client: &LogClient, verifier: &dyn NoteVerifier) {
    let checkpoint = client.checkpoint().await.unwrap().expect("a checkpoint");
    Note::parse(checkpoint.as_bytes())
        .unwrap()
        .verify(&[verifier])
        .expect("the served checkpoint verifies under the token's key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_sign_checkpoints_with_a_key_in_a_softhsm_token() {
    let Some(hsm) = SoftHsm::require() else {
        return;
    };
    let token = hsm.create_token("rekor-cluster", PIN).unwrap();
    let spki = token
        .generate_key(KeyKind::EcdsaP256, "checkpoint", &[0x2a])
        .unwrap();
    let spki_b64 = STANDARD.encode(&spki);
    let secrets = tempfile::tempdir().unwrap();
    let pin_file = secrets.path().join("token.pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let uri = token.uri("checkpoint", &format!("pin-source={}", pin_file.display()));

    // The nodes start one at a time: the first forms the log, the others join it. SoftHSM reads
    // the token directory once, when a process loads it, and a login rewrites the token's file,
    // so a node loading SoftHSM while another logs in can miss the token (a limitation of
    // SoftHSM's file store, not of PKCS#11: with an HSM each node talks to the device).
    let mut cluster = Cluster::start_with_signer(
        1,
        &[],
        Signer {
            key: Some(uri),
            env: hsm.env(),
        },
    )
    .await
    .expect("the first node opens the token");
    let first = cluster.nodes[0].spec.internal_addr();
    for id in 2..=3 {
        let (member, _) = cluster
            .start_new_node(id, &[], Duration::from_secs(30))
            .await
            .unwrap_or_else(|error| panic!("node {id} opens the token: {error}"));
        cluster
            .admin(&["node", "add", "--target", &first, "--member", &member])
            .await
            .unwrap_or_else(|error| panic!("{error}\n{}", cluster.logs()));
    }
    let origin = cluster.origin.clone();
    let verifier = verifier_from_spki_der(&origin, &spki).unwrap();
    for node in &cluster.nodes {
        assert_eq!(
            logged_public_key(&node.log()),
            spki_b64,
            "every node serves the token's public key"
        );
    }

    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let follower = (leader + 1) % 3;
    let clients = cluster.clients();
    // Through the leader and through a follower (forwarded to the leader, which signs).
    for client in [&clients[leader], &clients[follower]] {
        for _ in 0..3 {
            log_one(client, verifier.as_ref(), || cluster.logs()).await;
        }
    }
    for client in &clients {
        served_checkpoint_verifies(client, verifier.as_ref()).await;
    }
    assert!(
        pkcs11_signatures(&clients[leader]).await.unwrap() >= 1.0,
        "the leader signed through the token"
    );

    // The real client, through a follower.
    if let Some(python) = python() {
        let base = clients[follower].base().to_owned();
        run_harness(
            &python,
            &base,
            &origin,
            "ecdsa-p256",
            &spki_b64,
            Checks::default(),
        )
        .await;
        for client in &clients {
            check_served_tree(client, &origin, &spki_b64).await;
        }
    }

    // The leader dies; a survivor takes over and signs through its own session.
    cluster.nodes[leader].kill();
    let new_leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .unwrap();
    assert_ne!(new_leader, leader);
    let new_client = &clients[new_leader];
    let before = pkcs11_signatures(new_client).await.unwrap();
    let index = log_one(new_client, verifier.as_ref(), || cluster.logs()).await;
    wait_until(
        "the new leader signs a checkpoint",
        Duration::from_secs(20),
        || async {
            let signed = pkcs11_signatures(new_client).await?;
            Ok((signed > before).then_some(signed))
        },
    )
    .await
    .unwrap();
    let survivor = 3 - leader - new_leader;
    for position in [new_leader, survivor] {
        let client = &clients[position];
        let checkpoint = wait_until(
            "a checkpoint covering the new entry",
            Duration::from_secs(20),
            || async {
                let text = client.checkpoint().await?.unwrap_or_default();
                let size: u64 = text.lines().nth(1).unwrap_or("0").parse().unwrap_or(0);
                Ok((size > index).then_some(text))
            },
        )
        .await
        .unwrap();
        Note::parse(checkpoint.as_bytes())
            .unwrap()
            .verify(&[verifier.as_ref()])
            .expect("the new leader's checkpoint verifies under the token's key");
    }
}
