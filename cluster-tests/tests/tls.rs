//! Transport security on real node processes (issue: TLS and node identities): mutual TLS on the
//! internal listener, node and operator identities, certificate renewal without a restart, and
//! what crosses the wire between two nodes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rekor_cluster_tests::hostile::{metric, metric_value};
use rekor_cluster_tests::pki::{ClusterPki, Identity};
use rekor_cluster_tests::{wait_until, Cluster, EntryFactory};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET_HEADER: &str = "x-rekor-cluster-secret";
const SOURCE_HEADER: &str = "x-rekor-source-node";
const TARGET_HEADER: &str = "x-rekor-target-node";

fn secret(cluster: &Cluster) -> String {
    std::fs::read_to_string(&cluster.secret_file)
        .unwrap()
        .trim()
        .to_owned()
}

fn pki(cluster: &Cluster) -> &ClusterPki {
    cluster.pki.as_ref().expect("a mutual-TLS cluster")
}

fn internal_url(cluster: &Cluster, index: usize, path: &str) -> String {
    format!(
        "https://{}{path}",
        cluster.nodes[index].spec.internal_addr()
    )
}

/// A bincode RequestVote from `candidate` at `term`, as the Raft network encodes it.
fn vote_request(candidate: u64, term: u64) -> Vec<u8> {
    let request: openraft::raft::VoteRequest<u64> =
        openraft::raft::VoteRequest::new(openraft::Vote::new(term, candidate), None);
    rekor_raft::codec::encode(&request).unwrap()
}

async fn post_vote(
    client: &reqwest::Client,
    cluster: &Cluster,
    claimed_source: u64,
    candidate: u64,
) -> u16 {
    client
        .post(internal_url(cluster, 0, "/internal/raft/vote"))
        .header(SECRET_HEADER, secret(cluster))
        .header(SOURCE_HEADER, claimed_source.to_string())
        .header(TARGET_HEADER, cluster.nodes[0].spec.id.to_string())
        .body(vote_request(candidate, 0))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_client_gets_no_answer_from_a_tls_internal_port() {
    let cluster = Cluster::start(1, &[]).await.unwrap();
    let mut stream = TcpStream::connect(cluster.nodes[0].spec.internal_addr())
        .await
        .unwrap();
    let request = format!(
        "GET /internal/v1/admin/status HTTP/1.1\r\nhost: x\r\n{SECRET_HEADER}: {}\r\n\r\n",
        secret(&cluster)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is closed, not left hanging");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "no HTTP answer to clear text: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // The same request over mutual TLS is answered.
    let (operator, scheme) = cluster.internal_client(Identity::Operator).unwrap();
    assert_eq!(scheme, "https");
    let status = operator
        .get(internal_url(&cluster, 0, "/internal/v1/admin/status"))
        .header(SECRET_HEADER, secret(&cluster))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let cluster = Cluster::start(1, &[]).await.unwrap();
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = ClusterPki::create(stranger_dir.path(), [1]).unwrap();
    // Trusts the cluster's CA (so the client side of the handshake succeeds) but presents an
    // operator certificate and a node certificate of another CA.
    for (cert, key) in [
        (stranger.operator_cert(), stranger.operator_key()),
        (stranger.node_cert(1), stranger.node_key(1)),
    ] {
        let mut identity = std::fs::read(cert).unwrap();
        identity.extend(std::fs::read(key).unwrap());
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(
                &std::fs::read(pki(&cluster).ca()).unwrap(),
            )
            .unwrap()])
            .identity(reqwest::Identity::from_pem(&identity).unwrap())
            .no_proxy()
            .build()
            .unwrap();
        let answer = client
            .get(internal_url(&cluster, 0, "/internal/v1/admin/status"))
            .header(SECRET_HEADER, secret(&cluster))
            .send()
            .await;
        assert!(
            answer.is_err(),
            "a foreign certificate got an answer: {:?}",
            answer.map(|r| r.status())
        );
    }
    let refused = metric(
        &cluster.nodes[0].base_url(),
        "rekor_tls_client_certificates_refused_total",
        &["listener=\"internal\""],
    )
    .await
    .unwrap();
    assert_eq!(refused, Some(2.0), "{}", cluster.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_cannot_speak_for_another_node() {
    let cluster = Cluster::start(1, &[]).await.unwrap();
    let pki = pki(&cluster);
    pki.ensure_node(2).unwrap();
    let node2 = pki.client(Identity::Node(2)).unwrap();

    // Control: node 2 asking for a stale vote as itself is heard (and refused by Raft).
    assert_eq!(post_vote(&node2, &cluster, 2, 2).await, 200);
    // Claiming to be node 3 in the header.
    assert_eq!(post_vote(&node2, &cluster, 3, 3).await, 403);
    // Honest header, but a vote that names node 3 as the candidate.
    assert_eq!(post_vote(&node2, &cluster, 2, 3).await, 403);
    // Forwarding entries as node 3.
    let status = node2
        .post(internal_url(&cluster, 0, "/internal/v1/sequence-batch"))
        .header(SECRET_HEADER, secret(&cluster))
        .header(SOURCE_HEADER, "3")
        .body(Vec::new())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403);
    let mismatches = metric(
        &cluster.nodes[0].base_url(),
        "rekor_internal_requests_refused_total",
        &["reason=\"identity_mismatch\""],
    )
    .await
    .unwrap();
    assert_eq!(mismatches, Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_certificates_run_admin_commands_and_node_certificates_cannot() {
    let cluster = Cluster::start(1, &[]).await.unwrap();
    let pki = pki(&cluster);
    let status_url = internal_url(&cluster, 0, "/internal/v1/admin/status");
    let operator = pki.client(Identity::Operator).unwrap();
    let node1 = pki.client(Identity::Node(1)).unwrap();
    let ask = |client: &reqwest::Client, source: Option<&str>| {
        let mut request = client
            .get(&status_url)
            .header(SECRET_HEADER, secret(&cluster));
        if let Some(source) = source {
            request = request.header(SOURCE_HEADER, source);
        }
        request.send()
    };
    assert_eq!(ask(&operator, None).await.unwrap().status(), 200);
    assert_eq!(ask(&node1, Some("1")).await.unwrap().status(), 403);
    // An operator cannot send Raft messages either.
    assert_eq!(post_vote(&operator, &cluster, 1, 1).await, 403);

    // The admin tool: with the operator certificate it works, with a node certificate it does not.
    assert!(cluster.status(0).await.is_ok());
    let output = tokio::process::Command::new(rekor_cluster_tests::node_binary().unwrap())
        .args(["status", "--target", &cluster.nodes[0].spec.internal_addr()])
        .arg("--cluster-secret-file")
        .arg(&cluster.secret_file)
        .arg("--tls-ca-file")
        .arg(pki.ca())
        .arg("--tls-cert-file")
        .arg(pki.node_cert(1))
        .arg("--tls-key-file")
        .arg(pki.node_key(1))
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("403"), "{stderr}");
}

/// The leaf certificate (DER) a fresh connection to `url` is served.
async fn served_certificate(pki: &ClusterPki, url: &str) -> Vec<u8> {
    let client = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(&std::fs::read(pki.ca()).unwrap()).unwrap(),
        ])
        .tls_info(true)
        .no_proxy()
        .build()
        .unwrap();
    let response = client.get(url).send().await.unwrap();
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("a peer certificate")
        .to_vec()
}

fn leaf_der(path: &std::path::Path) -> Vec<u8> {
    let pem = std::fs::read_to_string(path).unwrap();
    let body: String = pem
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificates_are_picked_up_without_a_restart() {
    let cluster = Cluster::start_https(3, &["--tls-reload-interval-s", "0"])
        .await
        .unwrap();
    let pki = pki(&cluster).clone();
    let url = format!("{}/livez", cluster.nodes[0].base_url());
    let before = served_certificate(&pki, &url).await;
    assert_eq!(before, leaf_der(&pki.node_cert(1)));
    let pids: Vec<_> = cluster.nodes.iter().map(|node| node.pid()).collect();

    // Renew every node's certificate (new keys too) and tell the nodes.
    pki.certs(&["--node-ids".into(), "1,2,3".into()]).unwrap();
    let renewed = leaf_der(&pki.node_cert(1));
    assert_ne!(renewed, before);
    for node in &cluster.nodes {
        node.signal("HUP").unwrap();
    }
    wait_until(
        "node 1 to serve its renewed certificate",
        Duration::from_secs(20),
        || async { Ok((served_certificate(&pki, &url).await == renewed).then_some(())) },
    )
    .await
    .unwrap();
    let pids_after: Vec<_> = cluster.nodes.iter().map(|node| node.pid()).collect();
    assert_eq!(pids, pids_after, "no node restarted");
    let metrics = cluster.nodes[0].client().metrics().await.unwrap();
    for listener in ["listener=\"internal\"", "listener=\"public\""] {
        let reloads = metric_value(
            &metrics,
            "rekor_tls_reloads_total",
            &[listener, "result=\"ok\""],
        );
        assert_eq!(reloads, Some(1.0), "{listener}\n{metrics}");
    }

    // The cluster still replicates with the renewed certificates: a write through a follower
    // is forwarded to the leader and committed by a quorum.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let follower = (leader + 1) % 3;
    let factory = EntryFactory::new();
    let result = cluster.clients()[follower]
        .submit(&factory.request())
        .await
        .unwrap();
    assert_eq!(result.status, 201, "{}\n{}", result.body, cluster.logs());
}

/// A TCP relay to `upstream` that keeps every byte its callers send; returns its address. Must
/// run inside a tokio runtime.
fn recording_relay(upstream: String, recorded: Arc<Mutex<Vec<Vec<u8>>>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let listener = TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            let sink = recorded.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let index = {
                    let mut all = sink.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let (mut in_read, mut in_write) = inbound.split();
                let (mut out_read, mut out_write) = outbound.split();
                let requests = async {
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let n = match in_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        sink.lock().unwrap()[index].extend_from_slice(&buffer[..n]);
                        if out_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = out_write.shutdown().await;
                };
                let answers = async {
                    let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
                    let _ = in_write.shutdown().await;
                };
                tokio::join!(requests, answers);
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_send_only_tls_records_and_never_the_secret_in_clear() {
    // Node 3 is reached by its peers (and the admin tool) through a relay that records what
    // they send.
    let recorded: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let cluster = Cluster::start_advertising(3, &[], |spec| {
        (spec.id == 3).then(|| recording_relay(spec.internal_addr(), recorded.clone()))
    })
    .await
    .unwrap();
    let factory = EntryFactory::new();
    for client in cluster.clients() {
        for _ in 0..5 {
            let result = client.submit(&factory.request()).await.unwrap();
            assert_eq!(result.status, 201, "{}", result.body);
        }
    }
    let connections = recorded.lock().unwrap().clone();
    assert!(
        connections.iter().any(|bytes| bytes.len() > 1024),
        "Raft traffic went through the relay: {:?}",
        connections.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let secret = secret(&cluster);
    for bytes in connections.iter().filter(|bytes| !bytes.is_empty()) {
        // A TLS handshake record (content type 22, version 3.x) opens every connection.
        assert_eq!(
            &bytes[..2],
            &[0x16, 0x03],
            "not TLS: {:?}",
            &bytes[..bytes.len().min(32)]
        );
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains(&secret),
            "the cluster secret crossed in clear text"
        );
        assert!(!text.contains("HTTP/1.1"), "HTTP crossed in clear text");
        assert!(
            !text.contains(SOURCE_HEADER),
            "headers crossed in clear text"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_speaks_tls_1_2_and_1_3_and_http_2() {
    let cluster = Cluster::start_https(1, &[]).await.unwrap();
    let pki = pki(&cluster);
    let url = format!("{}/api/v2/checkpoint", cluster.nodes[0].base_url());
    let ca = || reqwest::Certificate::from_pem(&std::fs::read(pki.ca()).unwrap()).unwrap();
    for (max, min) in [
        (
            reqwest::tls::Version::TLS_1_2,
            reqwest::tls::Version::TLS_1_2,
        ),
        (
            reqwest::tls::Version::TLS_1_3,
            reqwest::tls::Version::TLS_1_3,
        ),
    ] {
        let client = reqwest::Client::builder()
            .tls_certs_only([ca()])
            .max_tls_version(max)
            .min_tls_version(min)
            .no_proxy()
            .build()
            .unwrap();
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{max:?}");
        assert_eq!(
            response.version(),
            reqwest::Version::HTTP_2,
            "{max:?}: h2 by ALPN"
        );
    }
    let http1 = reqwest::Client::builder()
        .tls_certs_only([ca()])
        .http1_only()
        .no_proxy()
        .build()
        .unwrap();
    let response = http1.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    // A client that trusts only the platform's roots does not trust the development CA.
    let stranger = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(stranger.get(&url).send().await.is_err());

    let metrics = cluster.nodes[0].client().metrics().await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for labels in [
        ["listener=\"public\"", "kind=\"certificate\""],
        ["listener=\"internal\"", "kind=\"certificate\""],
        ["listener=\"internal\"", "kind=\"ca\""],
    ] {
        let expiry = metric_value(
            &metrics,
            "rekor_tls_certificate_expiry_timestamp_seconds",
            &labels,
        )
        .unwrap_or_else(|| panic!("{labels:?} missing\n{metrics}"));
        assert!(expiry > now + 80.0 * 86_400.0, "{labels:?}: {expiry}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_does_not_load_is_refused_and_the_old_certificate_kept() {
    let cluster = Cluster::start_https(1, &["--tls-reload-interval-s", "0"])
        .await
        .unwrap();
    let pki = pki(&cluster).clone();
    let url = format!("{}/livez", cluster.nodes[0].base_url());
    let before = served_certificate(&pki, &url).await;
    // A key that does not fit the certificate, as a half-done renewal would leave it.
    pki.ensure_node(2).unwrap();
    std::fs::copy(pki.node_key(2), pki.node_key(1)).unwrap();
    cluster.nodes[0].signal("HUP").unwrap();
    let client = cluster.nodes[0].client();
    wait_until(
        "the failed reload to be counted",
        Duration::from_secs(20),
        || async {
            let metrics = client.metrics().await?;
            let failed = metric_value(
                &metrics,
                "rekor_tls_reloads_total",
                &["listener=\"public\"", "result=\"error\""],
            );
            Ok(failed.is_some_and(|count| count >= 1.0).then_some(()))
        },
    )
    .await
    .unwrap();
    assert_eq!(served_certificate(&pki, &url).await, before);
    let result = client.submit(&EntryFactory::new().request()).await.unwrap();
    assert_eq!(result.status, 201, "{}", result.body);
    assert!(
        cluster.nodes[0]
            .log()
            .contains("renewed TLS material does not load; still using the previous one"),
        "{}",
        cluster.logs()
    );
}
