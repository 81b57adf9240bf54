//! Real nodes signing checkpoints through the HTTP signer backends, each against a fake of its
//! service's API (`kms_fakes`, stand-ins: no Vault, Cloud KMS or Key Vault runs here): the key
//! URI and credentials reach the nodes as a deployment gives them (`--signing-key` and the
//! environment), entries get 201s whose log ID is the remote key's, and every checkpoint a node
//! serves verifies under the public key the fake holds.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rekor_cluster_tests::chaos::LogVerifier;
use rekor_cluster_tests::kms_fakes::azure::FakeAzureKeyVault;
use rekor_cluster_tests::kms_fakes::gcp::FakeGcpKms;
use rekor_cluster_tests::kms_fakes::vault::FakeVault;
use rekor_cluster_tests::{check_logged_entry, wait_until, Cluster, EntryFactory, Signer};

/// Submits `count` entries round-robin over the nodes and checks each answer: 201, a valid
/// inclusion proof, the log ID of `public_key`, and a checkpoint signed by it.
async fn submit_and_verify(cluster: &Cluster, public_key: &[u8], count: usize) {
    let verifier = LogVerifier::from_public_key_der(&cluster.origin, public_key).unwrap();
    let log_id = STANDARD.encode(rekor_storage::note::log_id(&cluster.origin, public_key).unwrap());
    let factory = EntryFactory::new();
    let clients = cluster.clients();
    let answers = futures::future::join_all((0..count).map(|i| {
        let client = clients[i % clients.len()].clone();
        let request = factory.request();
        async move { client.submit(&request).await }
    }))
    .await;
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.status, 201, "{}", cluster.logs());
        let entry = answer.json().unwrap();
        check_logged_entry(&entry).unwrap();
        assert_eq!(entry["logId"]["keyId"].as_str(), Some(log_id.as_str()));
        let envelope = entry["inclusionProof"]["checkpoint"]["envelope"]
            .as_str()
            .unwrap();
        verifier
            .open(envelope)
            .expect("the entry's checkpoint verifies under the remote key");
    }
    // Every node serves a checkpoint of the whole log, signed by the remote key.
    let size = count as u64;
    for client in &clients {
        wait_until(
            "the node to serve the log",
            Duration::from_secs(20),
            || async {
                let Some(text) = client.checkpoint().await? else {
                    return Ok(None);
                };
                let checkpoint = verifier.open(&text).map_err(anyhow::Error::msg)?;
                Ok((checkpoint.size >= size).then_some(()))
            },
        )
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", cluster.logs()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_sign_through_vault_transit() {
    let vault = FakeVault::start().unwrap();
    let cluster = Cluster::start_with_signer(
        3,
        &[],
        Signer {
            key: Some(FakeVault::uri(FakeVault::P256_KEY)),
            env: vault.env(),
        },
    )
    .await
    .unwrap();
    let public_key = vault.public_key_der(FakeVault::P256_KEY, 1).unwrap();
    submit_and_verify(&cluster, &public_key, 12).await;
    assert!(vault.controls().signatures() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_signs_through_gcp_cloud_kms_with_metadata_tokens() {
    let kms = FakeGcpKms::start().unwrap();
    let cluster = Cluster::start_with_signer(
        1,
        &[],
        Signer {
            key: Some(FakeGcpKms::uri(FakeGcpKms::ED25519_KEY)),
            env: kms.env_metadata(),
        },
    )
    .await
    .unwrap();
    let public_key = kms.public_key_der(FakeGcpKms::ED25519_KEY).unwrap();
    submit_and_verify(&cluster, &public_key, 4).await;
    assert!(kms.controls().signatures() >= 1);
    assert!(kms.controls().tokens_issued() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_signs_through_azure_key_vault_with_client_credentials() {
    let key_vault = FakeAzureKeyVault::start().unwrap();
    let cluster = Cluster::start_with_signer(
        1,
        &[],
        Signer {
            key: Some(key_vault.uri()),
            env: key_vault.env_client_secret(),
        },
    )
    .await
    .unwrap();
    let current = key_vault.versions().pop().unwrap();
    let public_key = key_vault.public_key_der(&current).unwrap();
    submit_and_verify(&cluster, &public_key, 4).await;
    assert!(key_vault.controls().signatures() >= 1);
}
