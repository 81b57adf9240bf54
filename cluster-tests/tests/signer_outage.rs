//! The checkpoint signer is unreachable for 10 s under load: three nodes sign through a fake of
//! the Vault transit API (`kms_fakes::vault`, a stand-in: no Vault server runs here), which
//! answers `503 Vault is sealed` for the outage. Checked: no 201 is answered while nothing can be
//! signed (a 201 needs a committed, signed checkpoint); writes answer 503 after the submit
//! timeout; publication resumes within a second of the signer's return; and the invariant
//! checker finds every acknowledged entry at its index, every checkpoint signed by the log's key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rekor_cluster_tests::chaos::load::Outcome;
use rekor_cluster_tests::chaos::{
    check_cluster, CheckpointPoller, Load, LoadConfig, LogVerifier, NodeView,
};
use rekor_cluster_tests::hostile::metric_value;
use rekor_cluster_tests::kms_fakes::vault::FakeVault;
use rekor_cluster_tests::{wait_until, Cluster, EntryFactory, Signer};

const OUTAGE: Duration = Duration::from_secs(10);
const SUBMIT_TIMEOUT_S: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signer_outage_pauses_publication_loses_nothing_and_ends_by_itself() {
    let vault = FakeVault::start().unwrap();
    let submit_timeout = SUBMIT_TIMEOUT_S.to_string();
    let cluster = Cluster::start_with_signer(
        3,
        &[
            "--submit-timeout-s",
            &submit_timeout,
            "--signer-timeout-ms",
            "1000",
        ],
        Signer {
            key: Some(FakeVault::uri(FakeVault::ED25519_KEY)),
            env: vault.env(),
        },
    )
    .await
    .unwrap();
    let public_key = vault.public_key_der(FakeVault::ED25519_KEY, 1).unwrap();
    let verifier = LogVerifier::from_public_key_der(&cluster.origin, &public_key).unwrap();
    let nodes = NodeView::all(&cluster);
    let load = Load::start(
        nodes.clone(),
        Arc::new(EntryFactory::new()),
        LoadConfig {
            workers: 8,
            request_timeout: Duration::from_secs(SUBMIT_TIMEOUT_S + 4),
            ..LoadConfig::default()
        },
    );
    let poller = CheckpointPoller::start(nodes.clone(), Duration::from_millis(20));
    wait_until(
        "201s before the outage",
        Duration::from_secs(30),
        || async { Ok((load.acknowledged() >= 50).then_some(())) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));

    vault.controls().set_available(false);
    let outage_started = Instant::now();
    tokio::time::sleep(OUTAGE).await; // the fault itself, not synchronisation
    let largest_during_outage = largest_size(&poller, &verifier, Instant::now());
    vault.controls().set_available(true);
    let restored = Instant::now();

    // Publication resumes: a larger checkpoint is served, and soon.
    let resumed_at = wait_until("a new checkpoint", Duration::from_secs(10), || async {
        Ok(poller
            .seen()
            .into_iter()
            .filter(|seen| seen.at >= restored)
            .filter(|seen| {
                verifier
                    .open(&seen.text)
                    .is_ok_and(|checkpoint| checkpoint.size > largest_during_outage)
            })
            .map(|seen| seen.at)
            .min())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let resumed_after = resumed_at - restored;
    let acknowledged_after_outage = load.acknowledged();
    wait_until("201s after the outage", Duration::from_secs(30), || async {
        Ok((load.acknowledged() >= acknowledged_after_outage + 50).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let (answers, mut observations) = load.stop().await;
    poller.stop_into(&mut observations).await;

    // A publication already signed when the outage began may still commit: allow one second.
    let quiet_from = outage_started + Duration::from_secs(1);
    let logged_during_outage = answers
        .iter()
        .filter(|answer| matches!(answer.outcome, Outcome::Logged(_)))
        .filter(|answer| answer.done >= quiet_from && answer.done < restored)
        .count();
    assert_eq!(
        logged_during_outage, 0,
        "no 201 while no checkpoint can be signed"
    );
    let unavailable: Vec<_> = answers
        .iter()
        .filter(|answer| answer.outcome == Outcome::Status(503))
        .filter(|answer| answer.sent >= outage_started && answer.done < restored)
        .collect();
    assert!(
        !unavailable.is_empty(),
        "writes answer 503 while the signer is down"
    );
    for answer in &unavailable {
        assert!(
            answer.done - answer.sent >= Duration::from_millis(SUBMIT_TIMEOUT_S * 1000 - 100),
            "a 503 comes after the submit timeout, not before: {:?}",
            answer.done - answer.sent
        );
    }
    assert!(
        resumed_after <= Duration::from_secs(1),
        "publication resumed {resumed_after:?} after the signer came back"
    );

    let report = check_cluster(&nodes, &verifier, &observations, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        report.violations.is_empty(),
        "{:#?}\n{}",
        report.violations,
        cluster.logs()
    );

    // Whoever led counted the refused signatures.
    let mut refused_signatures = 0.0;
    for client in cluster.clients() {
        let metrics = client.metrics().await.unwrap();
        refused_signatures += metric_value(
            &metrics,
            "rekor_signer_requests_total",
            &["backend=\"hashivault\"", "outcome=\"unavailable\""],
        )
        .unwrap_or(0.0);
    }
    assert!(
        refused_signatures >= 1.0,
        "rekor_signer_requests_total counts the outage"
    );
    eprintln!(
        "outage {OUTAGE:?}: {} answers 503, publication resumed {resumed_after:?} after the \
         signer's return, {} entries checked, {refused_signatures} refused signatures counted",
        unavailable.len(),
        report.final_size
    );
}

/// The largest checkpoint size served before `until` (0 if none).
fn largest_size(poller: &CheckpointPoller, verifier: &LogVerifier, until: Instant) -> u64 {
    poller
        .seen()
        .into_iter()
        .filter(|seen| seen.at < until)
        .filter_map(|seen| verifier.open(&seen.text).ok())
        .map(|checkpoint| checkpoint.size)
        .max()
        .unwrap_or(0)
}
