//! The chaos invariant checker can fail: on a healthy cluster it passes, and each kind of lie
//! planted in the observations (a changed acknowledged body, a lost index, a 409 pointing at the
//! wrong entry, a checkpoint from another key, a second root for a size) is reported.

use std::sync::Arc;
use std::time::Duration;

use rekor_cluster_tests::chaos::checker::{Acknowledged, Conflict, SeenCheckpoint};
use rekor_cluster_tests::chaos::{
    check_cluster, Load, LoadConfig, LogVerifier, NodeView, Observations, Violation,
};
use rekor_cluster_tests::{wait_until, Cluster, EntryFactory};
use rekor_storage::checkpoint::Checkpoint;
use rekor_storage::note;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_passes_a_healthy_cluster_and_catches_planted_lies() {
    let cluster = Cluster::start(3, &[]).await.expect("cluster starts");
    let views = NodeView::all(&cluster);
    let load = Load::start(
        views.clone(),
        Arc::new(EntryFactory::new()),
        LoadConfig::default(),
    );
    wait_until("30 entries", Duration::from_secs(60), || async {
        Ok((load.acknowledged() >= 30).then_some(()))
    })
    .await
    .unwrap();
    let (_, observations) = load.stop().await;
    let verifier = LogVerifier::from_key_file(&cluster.origin, &cluster.key_file).unwrap();
    let timeout = Duration::from_secs(30);

    let report = check_cluster(&views, &verifier, &observations, timeout)
        .await
        .unwrap();
    assert!(
        report.violations.is_empty(),
        "{:?}\n{}",
        report.violations,
        cluster.logs()
    );
    let size = report.final_size;
    assert!(size >= 30);
    assert!(report.checkpoints_checked >= 1);

    let check = |observations: Observations| {
        let views = views.clone();
        let verifier = &verifier;
        async move {
            check_cluster(&views, verifier, &observations, timeout)
                .await
                .unwrap()
                .violations
        }
    };
    let first = observations.acknowledged[0].clone();

    // A different body at an acknowledged index.
    let mut lie = observations.clone();
    lie.acknowledged[0].body.push(b' ');
    let violations = check(lie).await;
    assert!(
        violations.iter().any(|v| matches!(v, Violation::LostEntry { index, problem: "different bytes", .. } if *index == first.index)),
        "{violations:?}"
    );

    // An acknowledged index the log never reached: the nodes cannot converge on a size covering
    // it.
    let mut lie = Observations::default();
    lie.acknowledged.push(Acknowledged {
        index: size + 5,
        body: first.body.clone(),
        node: 1,
    });
    let short = check_cluster(&views, &verifier, &lie, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        matches!(
            short.violations.as_slice(),
            [Violation::NotConverged { .. }]
        ),
        "{:?}",
        short.violations
    );

    // A 409 pointing at an entry for another artifact.
    let mut lie = Observations::default();
    lie.conflicts.push(Conflict {
        index: first.index,
        digest: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        node: 2,
    });
    let violations = check(lie).await;
    assert!(
        matches!(violations.as_slice(), [Violation::BadConflict { .. }]),
        "{violations:?}"
    );

    // A checkpoint signed by another key.
    let stranger = note::Ed25519NoteSigner::generate(&cluster.origin).unwrap();
    let forged = Checkpoint::new(&cluster.origin, 1, [7u8; 32])
        .sign(&stranger)
        .unwrap();
    let mut lie = Observations::default();
    lie.checkpoints.push(SeenCheckpoint {
        text: String::from_utf8(forged).unwrap(),
        node: 3,
    });
    let violations = check(lie).await;
    assert!(
        matches!(violations.as_slice(), [Violation::Unsigned { node: 3, .. }]),
        "{violations:?}"
    );

    // Checkpoints signed by the log key with roots that are not the tree's: a second root for
    // the final size (a fork) and a smaller tree the final one does not extend.
    let pem = std::fs::read_to_string(&cluster.key_file).unwrap();
    let signer = note::signer_from_pem(&cluster.origin, &pem).unwrap();
    let mut lie = Observations::default();
    for forged_size in [size, size - 1] {
        let text = Checkpoint::new(&cluster.origin, forged_size, [9u8; 32])
            .sign(signer.as_ref())
            .unwrap();
        lie.checkpoints.push(SeenCheckpoint {
            text: String::from_utf8(text).unwrap(),
            node: 1,
        });
    }
    let violations = check(lie).await;
    assert!(
        violations
            .iter()
            .any(|v| matches!(v, Violation::Fork { size: s } if *s == size)),
        "{violations:?}"
    );
    assert!(
        violations
            .iter()
            .any(|v| matches!(v, Violation::Inconsistent { size: s, .. } if *s == size - 1)),
        "{violations:?}"
    );
}
