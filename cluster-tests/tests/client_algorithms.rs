//! `--client-signing-algorithms` narrows the entry signing algorithms a node accepts, as
//! upstream's flag of the same name does: an entry signed with another algorithm gets a 400 and is
//! not logged.

use rekor_cluster_tests::{Cluster, EntryFactory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_an_algorithm_off_the_list_are_refused() {
    // The test entries are ECDSA P-256 with SHA-256.
    let narrowed = Cluster::start(
        1,
        &[
            "--client-signing-algorithms",
            "ecdsa-sha2-384-nistp384,ed25519-ph",
        ],
    )
    .await
    .unwrap();
    let factory = EntryFactory::new();
    let client = &narrowed.clients()[0];
    let refused = client.submit(&factory.request()).await.unwrap();
    assert_eq!(refused.status, 400, "{}", refused.body);
    // Upstream's answer, byte for byte: the reason goes to the log, not to the client.
    assert!(
        refused.body.contains("invalid hashedrekord request"),
        "{}",
        refused.body
    );
    assert_eq!(
        narrowed.status(0).await.unwrap()["sequenced_size"].as_u64(),
        Some(0),
        "nothing was logged"
    );

    let listed = Cluster::start(
        1,
        &["--client-signing-algorithms", "ecdsa-sha2-256-nistp256"],
    )
    .await
    .unwrap();
    let accepted = listed.clients()[0]
        .submit(&factory.request())
        .await
        .unwrap();
    assert_eq!(accepted.status, 201, "{}", accepted.body);
}
