//! Witnessing with a real node process and the `test-witness` process (rekor-v2-api.md §9,
//! tlog-tiles.md §10): checkpoints carry the witness's cosignature; a down witness does not
//! stop the log by default (fail-open); with `--require-witness-quorum` it does, until the witness
//! is back (a restarted witness has forgotten its size, so this also exercises the 409 resync).
//! A witness answering with its line 200 times adds one line and does not stop the log; witnesses
//! at the quorum that have cosigned a larger tree than the log committed halt publication.

use std::path::Path;
use std::time::Duration;

use rekor_cluster_tests::witness::{TestWitness, WitnessPolicy, WitnessProgram, TEST_WITNESS_VKEY};
use rekor_cluster_tests::{check_logged_entry, wait_until, Cluster, EntryFactory, LogClient};
use rekor_storage::cosignature::CosignatureVerifier;
use rekor_storage::note::Note;

/// A one-node cluster whose witness policy names one test witness (not started yet), with
/// `extra` node flags.
async fn witnessed_node(dir: &Path, extra: &[&str]) -> (Cluster, WitnessPolicy) {
    let policy = WitnessPolicy::write(dir, TEST_WITNESS_VKEY).unwrap();
    let mut args = policy.node_args();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = Cluster::start(1, &args).await.expect("node starts");
    (cluster, policy)
}

/// Starts the test witness `policy` names, with `extra` flags (the adversarial modes
/// `--copies`, `--claim-size`).
async fn start_witness(
    cluster: &Cluster,
    policy: &WitnessPolicy,
    dir: &Path,
    extra: &[&str],
) -> TestWitness {
    let program = WitnessProgram::with_test_key(env!("CARGO_BIN_EXE_test-witness"));
    TestWitness::start(&program, policy.port, cluster, dir, extra)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Submits a fresh entry and returns the HTTP status (and checks the entry when it is 201).
async fn submit(client: &LogClient, factory: &EntryFactory) -> u16 {
    let result = client.submit(&factory.request()).await.unwrap();
    if result.status == 201 {
        check_logged_entry(&result.json().unwrap()).expect("a verifying entry");
    }
    result.status
}

/// The served checkpoint's signature lines: (total, whether one verifies with the witness key).
async fn checkpoint_signatures(client: &LogClient) -> (usize, bool) {
    let text = client.checkpoint().await.unwrap().expect("a checkpoint");
    let note = Note::parse(text.as_bytes()).unwrap();
    let verifier = CosignatureVerifier::from_vkey(TEST_WITNESS_VKEY).unwrap();
    let cosigned = note
        .signatures
        .iter()
        .any(|signature| verifier.verify_signature(&note.text, signature).is_ok());
    (note.signatures.len(), cosigned)
}

/// The node's `/metrics` page.
async fn metrics_text(client: &LogClient) -> String {
    reqwest::get(format!("{}/metrics", client.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the metric line that starts with `series ` (0 if absent).
async fn metric(client: &LogClient, series: &str) -> u64 {
    let metrics = metrics_text(client).await;
    let prefix = format!("{series} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

async fn status_json(client: &LogClient) -> serde_json::Value {
    reqwest::get(format!("{}/status.json", client.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_cosigned_and_a_down_witness_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, policy) = witnessed_node(dir.path(), &[]).await;
    let mut witness = start_witness(&cluster, &policy, dir.path(), &[]).await;
    let client = &cluster.clients()[0];
    let factory = EntryFactory::new();

    for _ in 0..3 {
        let status = submit(client, &factory).await;
        assert_eq!(status, 201, "{}\n{}", cluster.logs(), witness.log());
    }
    // The checkpoint covering those entries was published after the witness came up.
    assert_eq!(
        checkpoint_signatures(client).await,
        (2, true),
        "the log's signature and the witness's cosignature\n{}",
        cluster.logs()
    );

    witness.stop();
    let status = submit(client, &factory).await;
    assert_eq!(status, 201, "fail-open by default\n{}", cluster.logs());
    assert_eq!(
        checkpoint_signatures(client).await,
        (1, false),
        "published without the cosignature"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_quorum_holds_publication_until_the_witness_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, policy) = witnessed_node(
        dir.path(),
        &["--require-witness-quorum", "--submit-timeout-s", "2"],
    )
    .await;
    let mut witness = start_witness(&cluster, &policy, dir.path(), &[]).await;
    let client = &cluster.clients()[0];
    let factory = EntryFactory::new();

    assert_eq!(submit(client, &factory).await, 201, "{}", cluster.logs());
    assert_eq!(checkpoint_signatures(client).await, (2, true));

    witness.stop();
    let status = submit(client, &factory).await;
    assert_ne!(
        status,
        201,
        "no checkpoint without the quorum\n{}",
        cluster.logs()
    );
    // What is served is still the last cosigned checkpoint.
    assert_eq!(checkpoint_signatures(client).await, (2, true));

    // A restarted test witness starts from size 0: the node resyncs on its 409 and publishes.
    let witness = start_witness(&cluster, &policy, dir.path(), &[]).await;
    wait_until(
        "a 201 with the witness back",
        Duration::from_secs(20),
        || async { Ok((submit(client, &factory).await == 201).then_some(())) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", cluster.logs(), witness.log()));
    assert_eq!(checkpoint_signatures(client).await, (2, true));

    // The metrics saw the refused exchanges while the witness was down, and the resync.
    let metrics = metrics_text(client).await;
    let count = |outcome: &str| -> u64 {
        let prefix =
            format!("rekor_node_witness_requests_total{{outcome=\"{outcome}\",witness=\"w1\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    assert!(count("cosigned") >= 2, "{metrics}");
    assert!(count("unreachable") >= 1, "{metrics}");
    assert!(count("conflict") >= 1, "{metrics}");
    assert!(
        metrics.contains("rekor_node_witness_quorum_missed_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_repeating_its_line_adds_one_line_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, policy) = witnessed_node(dir.path(), &[]).await;
    // 200 copies of its line, a junk line and a stranger's cosignature in every answer.
    let witness = start_witness(&cluster, &policy, dir.path(), &["--copies", "200"]).await;
    let client = &cluster.clients()[0];
    let factory = EntryFactory::new();
    let verifier = CosignatureVerifier::from_vkey(TEST_WITNESS_VKEY).unwrap();

    for _ in 0..3 {
        let result = client.submit(&factory.request()).await.unwrap();
        assert_eq!(result.status, 201, "{}\n{}", cluster.logs(), witness.log());
        let entry = result.json().unwrap();
        check_logged_entry(&entry).expect("a verifying entry");
        let envelope = entry["inclusionProof"]["checkpoint"]["envelope"]
            .as_str()
            .unwrap();
        let note = Note::parse(envelope.as_bytes()).unwrap();
        assert_eq!(
            note.signatures.len(),
            2,
            "the log's line and one cosignature:\n{envelope}"
        );
        let witness_lines: Vec<_> = note
            .signatures
            .iter()
            .filter(|signature| signature.name == "rekor-witness-test")
            .collect();
        assert_eq!(witness_lines.len(), 1, "{envelope}");
        verifier
            .verify_signature(&note.text, witness_lines[0])
            .expect("the witness's cosignature verifies");
    }
    let dropped = metric(client, "rekor_witness_lines_dropped_total{witness=\"w1\"}").await;
    assert!(dropped >= 3 * 201, "dropped {dropped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witnesses_at_the_quorum_claiming_a_larger_tree_halt_publication() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, policy) = witnessed_node(dir.path(), &["--submit-timeout-s", "2"]).await;
    let mut witness = start_witness(&cluster, &policy, dir.path(), &[]).await;
    let client = &cluster.clients()[0];
    let factory = EntryFactory::new();

    assert_eq!(submit(client, &factory).await, 201, "{}", cluster.logs());
    assert_eq!(metric(client, "rekor_publication_halted").await, 0);
    let published = status_json(client).await["tree_size"].as_u64().unwrap();

    // The witness (the whole quorum) now says it has cosigned a million leaves of this origin:
    // this log was rolled back, or someone else signs for it.
    witness.stop();
    let witness = start_witness(&cluster, &policy, dir.path(), &["--claim-size", "1000000"]).await;
    let status = submit(client, &factory).await;
    assert_ne!(status, 201, "{}\n{}", cluster.logs(), witness.log());
    wait_until("the publication halt", Duration::from_secs(20), || async {
        Ok((metric(client, "rekor_publication_halted").await == 1).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));

    // Halted for good: later writes are not answered either, nothing more is published.
    assert_ne!(submit(client, &factory).await, 201, "{}", cluster.logs());
    let status = status_json(client).await;
    assert_eq!(status["tree_size"].as_u64(), Some(published), "{status}");
    let reason = status["publication_halted"].as_str().unwrap_or_default();
    assert!(reason.contains("w1 has cosigned size 1000000"), "{status}");
    assert!(
        metric(
            client,
            "rekor_witness_rollback_evidence_total{kind=\"larger_tree\",witness=\"w1\"}"
        )
        .await
            >= 1
    );
    let logs = cluster.logs();
    assert!(logs.contains("ROLLBACK EVIDENCE"), "{logs}");
    assert!(logs.contains("witness_size=1000000"), "{logs}");
    assert!(logs.contains("PUBLICATION HALTED"), "{logs}");
}
