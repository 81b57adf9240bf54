//! The leader trusts nothing it cannot integrate (issue #12, item 4): entries forwarded on the
//! internal listener, with the right cluster secret, are checked like the public API's before
//! they are sequenced. A real node; the requests are what a broken or hostile peer would send.

use std::time::Duration;

use rekor_api::{AlgorithmPolicy, CreateEntryRequest, EntryValidator};
use rekor_cluster_tests::{Cluster, EntryFactory, LogClient};
use rekor_raft::types::{AppendOutcome, NodeAddress, SequencedEntry};
use serde::Deserialize;

const SEQUENCE: &str = "/internal/v1/sequence";
const SEQUENCE_BATCH: &str = "/internal/v1/sequence-batch";

/// The wire form of the node's `SequenceError` (bincode: variant order matters).
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
enum SequenceError {
    NotLeader { leader: Option<(u64, NodeAddress)> },
    Raft(String),
    Overloaded,
    Frozen,
    UnexpectedResponse,
    Refused(String),
}

/// A canonical body exactly as the public API writes it.
fn canonical_body(factory: &EntryFactory) -> Vec<u8> {
    let request = serde_json::to_vec(&factory.request()).unwrap();
    let request = CreateEntryRequest::from_json(&request).unwrap();
    EntryValidator::new(AlgorithmPolicy::default(), false)
        .validate(&request)
        .unwrap()
        .canonical_body
}

async fn post(cluster: &Cluster, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let url = format!("http://{}{path}", cluster.nodes[0].spec.internal_addr());
    let secret = std::fs::read_to_string(&cluster.secret_file).unwrap();
    let response = reqwest::Client::new()
        .post(url)
        .header("x-rekor-cluster-secret", secret.trim())
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

async fn sequenced_size(cluster: &Cluster) -> u64 {
    cluster.status(0).await.unwrap()["sequenced_size"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_refuses_forwarded_entries_the_public_api_would_not_produce() {
    let cluster = Cluster::start_plain(1, &[])
        .await
        .expect("a one-node cluster");
    let client = LogClient::new(&cluster.nodes[0].base_url());
    let factory = EntryFactory::new();
    let logged = client.submit(&factory.request()).await.unwrap();
    assert_eq!(logged.status, 201, "{}", cluster.logs());
    assert_eq!(sequenced_size(&cluster).await, 1);

    let oversized = SequencedEntry::new(vec![b'x'; 70_000]);
    let honest = canonical_body(&factory);
    let mut spaced = String::from_utf8(honest.clone()).unwrap();
    spaced.insert(1, ' ');
    let not_canonical = SequencedEntry::new(spaced.into_bytes());
    let dsse_off = SequencedEntry::new(
        br#"{"apiVersion":"0.0.2","kind":"dsse","spec":{"dsseV002":{}}}"#.to_vec(),
    );

    for (entry, reason) in [
        (&oversized, "exceeds 65535"),
        (&not_canonical, "not in canonical form"),
        (&dsse_off, "is not accepted by this log"),
    ] {
        let (status, body) = post(&cluster, SEQUENCE, bincode::serialize(entry).unwrap()).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(reason), "{body}");
    }
    assert_eq!(sequenced_size(&cluster).await, 1, "nothing was sequenced");

    // In a batch, each bad entry is refused on its own and the honest one is logged.
    let batch = vec![
        oversized,
        SequencedEntry::new(honest.clone()),
        not_canonical,
    ];
    let (status, body) = post(
        &cluster,
        SEQUENCE_BATCH,
        bincode::serialize(&batch).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let outcomes: Vec<Result<AppendOutcome, SequenceError>> = bincode::deserialize(&body).unwrap();
    assert_eq!(outcomes.len(), 3);
    assert!(
        matches!(&outcomes[0], Err(SequenceError::Refused(reason)) if reason.contains("exceeds")),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Ok(AppendOutcome::Logged { index: 1 })),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[2], Err(SequenceError::Refused(reason)) if reason.contains("canonical")),
        "{outcomes:?}"
    );
    assert_eq!(sequenced_size(&cluster).await, 2);

    // The log keeps going: later honest writes are logged and covered by checkpoints.
    for _ in 0..3 {
        let result = client.submit(&factory.request()).await.unwrap();
        assert_eq!(result.status, 201, "{}\n{}", result.body, cluster.logs());
    }
    rekor_cluster_tests::wait_until(
        "the integrator to pass the refused entries",
        Duration::from_secs(30),
        || async {
            let status = cluster.status(0).await?;
            Ok((status["integrated_size"].as_u64() == Some(5)).then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
}
