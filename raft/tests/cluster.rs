//! A 3-node cluster in one process over real loopback HTTP: openraft on a multi-thread tokio
//! runtime, each node's internal listener an actix-web `HttpServer` on its own actix System
//! thread (rust-stack.md §4.3), the Raft RPCs going through `HttpNetwork`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer};
use rekor_raft::network::{CLUSTER_SECRET_HEADER, RAFT_SCOPE, TARGET_NODE_HEADER, VOTE_PATH};
use rekor_raft::{
    build_config, open_stores, raft_scope, AppendOutcome, ClusterSecret, Command, CommandResponse,
    EngineConfig, HttpNetwork, NetworkConfig, NodeAddress, PeerClients, Raft, RaftServerConfig,
    RaftTuning, SequencedEntry, SledEngine, StateReader, PEER_CONNECT_TIMEOUT,
};
use rekor_storage::merkle::{leaf_hash, CompactRange};

const SECRET: &str = "test cluster secret";

struct TestNode {
    id: u64,
    raft: Raft,
    reader: StateReader,
    addr: String,
    server: actix_web::dev::ServerHandle,
    server_thread: std::thread::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Start node `id`: stores, Raft (on the current multi-thread runtime) and its internal HTTP
/// listener on an ephemeral loopback port.
async fn start_node(id: u64) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let engine = SledEngine::open(&EngineConfig::new(dir.path().join("raft"))).unwrap();
    let (log, sm) = open_stores(&engine, dir.path()).unwrap();
    let reader = sm.reader();
    let secret = ClusterSecret::new(SECRET);
    let peers = PeerClients::plain(id, secret.clone(), PEER_CONNECT_TIMEOUT, None).unwrap();
    let network = HttpNetwork::new(NetworkConfig::new(id), Arc::new(peers));
    let config = Arc::new(build_config(&RaftTuning::default()).unwrap());
    let raft = Raft::new(id, config, network, log, sm).await.unwrap();

    let (tx, rx) = std::sync::mpsc::channel();
    let server_raft = raft.clone();
    let server_config = RaftServerConfig::new(id, secret);
    let server_thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new().service(raft_scope(server_raft.clone(), server_config.clone()))
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .unwrap();
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send((addr, server.handle())).unwrap();
            server.await.unwrap();
        })
    });
    let (addr, server) = rx.recv().unwrap();
    TestNode {
        id,
        raft,
        reader,
        addr: addr.to_string(),
        server,
        server_thread,
        _dir: dir,
    }
}

/// Poll `cond` until it holds or `timeout` passes.
async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn batch(from: usize, n: usize) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| format!("entry {i}").into_bytes())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_replicate_appends_and_a_learner_catches_up_by_snapshot() {
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(start_node(id).await);
    }
    let members: BTreeMap<u64, NodeAddress> = nodes
        .iter()
        .map(|n| {
            (
                n.id,
                NodeAddress {
                    internal_addr: n.addr.clone(),
                    public_addr: n.addr.clone(),
                },
            )
        })
        .collect();
    nodes[0].raft.initialize(members).await.unwrap();

    let leader_id = nodes[0]
        .raft
        .wait(Some(Duration::from_secs(20)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap()
        .current_leader
        .unwrap();
    let leader = nodes.iter().find(|n| n.id == leader_id).unwrap();

    // Propose batches through the leader, one with a duplicate inside and one across batches.
    let mut expected = CompactRange::new();
    let mut next_index = 0u64;
    for round in 0..5 {
        let mut bodies = batch(round * 10, 10);
        bodies.push(bodies[0].clone()); // duplicate within the batch
        let entries = bodies.iter().cloned().map(SequencedEntry::new).collect();
        let response = leader
            .raft
            .client_write(Command::Append { entries })
            .await
            .unwrap();
        let CommandResponse::Appended(outcomes) = response.data else {
            panic!("unexpected response {:?}", response.data);
        };
        assert_eq!(outcomes.len(), 11);
        for (i, outcome) in outcomes[..10].iter().enumerate() {
            assert_eq!(
                *outcome,
                AppendOutcome::Logged {
                    index: next_index + i as u64
                }
            );
            expected.append(leaf_hash(&bodies[i])).unwrap();
        }
        assert_eq!(outcomes[10], AppendOutcome::Duplicate { index: next_index });
        next_index += 10;
    }
    let again = leader
        .raft
        .client_write(Command::Append {
            entries: vec![SequencedEntry::new(batch(0, 1).remove(0))],
        })
        .await
        .unwrap();
    assert_eq!(
        again.data,
        CommandResponse::Appended(vec![AppendOutcome::Duplicate { index: 0 }])
    );

    // Every state machine reaches the same size and root.
    for node in &nodes {
        eventually("replication", Duration::from_secs(20), || {
            node.reader.applied().size == 50
        })
        .await;
        assert_eq!(
            node.reader.applied().root,
            expected.root(),
            "node {}",
            node.id
        );
    }

    // A checkpoint with the computed root is recorded on every node.
    let published = leader
        .raft
        .client_write(Command::Publish {
            size: 50,
            root: expected.root(),
            checkpoint: "note".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        published.data,
        CommandResponse::Published { accepted: true }
    );
    for node in &nodes {
        eventually("checkpoint", Duration::from_secs(20), || {
            node.reader.applied().checkpoint_size == Some(50)
        })
        .await;
    }

    // A snapshot, then a purged log: a new learner can only catch up through InstallSnapshot
    // over HTTP, and reaches the same state (identities included).
    leader.raft.trigger().snapshot().await.unwrap();
    let snapshot_index = leader
        .raft
        .wait(Some(Duration::from_secs(20)))
        .metrics(|m| m.snapshot.is_some(), "a snapshot")
        .await
        .unwrap()
        .snapshot
        .unwrap()
        .index;
    leader
        .raft
        .trigger()
        .purge_log(snapshot_index)
        .await
        .unwrap();
    leader
        .raft
        .wait(Some(Duration::from_secs(20)))
        .metrics(
            |m| m.purged.map(|p| p.index) == Some(snapshot_index),
            "the purge",
        )
        .await
        .unwrap();
    let learner = start_node(4).await;
    leader
        .raft
        .add_learner(
            4,
            NodeAddress {
                internal_addr: learner.addr.clone(),
                public_addr: learner.addr.clone(),
            },
            true,
        )
        .await
        .unwrap();
    eventually("snapshot install", Duration::from_secs(20), || {
        learner.reader.applied().size == 50
    })
    .await;
    assert_eq!(learner.reader.applied(), leader.reader.applied());
    let learner_snapshot = learner.raft.metrics().borrow().snapshot;
    assert_eq!(learner_snapshot.map(|s| s.index), Some(snapshot_index));
    let first = SequencedEntry::new(batch(0, 1).remove(0)).identity;
    assert_eq!(learner.reader.lookup_identity(&first).unwrap(), Some(0));
    assert_eq!(learner.reader.leaves(0..2).await.unwrap(), batch(0, 2));
    nodes.push(learner);

    // The internal listener refuses requests without the secret or for another node.
    let client = reqwest::Client::new();
    let url = format!("http://{}{}{}", nodes[1].addr, RAFT_SCOPE, VOTE_PATH);
    let no_secret = client
        .post(&url)
        .header(TARGET_NODE_HEADER, "2")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(no_secret.status().as_u16(), 401);
    let wrong_secret = client
        .post(&url)
        .header(CLUSTER_SECRET_HEADER, "not it")
        .header(TARGET_NODE_HEADER, "2")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status().as_u16(), 401);
    let wrong_target = client
        .post(&url)
        .header(CLUSTER_SECRET_HEADER, SECRET)
        .header(TARGET_NODE_HEADER, "3")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_target.status().as_u16(), 421);

    for node in nodes {
        node.raft.shutdown().await.unwrap();
        node.server.stop(true).await;
        node.server_thread.join().unwrap();
    }
}
