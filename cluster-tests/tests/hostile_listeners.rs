//! The listeners' bounds against hostile clients and peers, on a real node (issue: adversarial
//! robustness, items 2 and 3): authentication before a body is read, body deadlines, the byte
//! budget of bodies being read, the header deadline.

use std::time::Duration;

use rekor_cluster_tests::hostile::{closed_within, metric, read_answer, send_head, Answer};
use rekor_cluster_tests::{check_logged_entry, wait_until, Cluster, EntryFactory, LogClient};

const SIXTY_FOUR_MIB: usize = 64 * 1024 * 1024;

fn internal_addr(cluster: &Cluster) -> String {
    cluster.nodes[0].spec.internal_addr()
}

fn public_addr(cluster: &Cluster) -> String {
    cluster.nodes[0].spec.public_addr()
}

async fn secret(cluster: &Cluster) -> String {
    std::fs::read_to_string(&cluster.secret_file).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_routes_refuse_a_request_without_the_secret_before_its_body() {
    let cluster = Cluster::start_plain(1, &[]).await.unwrap();
    let addr = internal_addr(&cluster);
    // A Raft RPC, a forwarding route and an admin route; no secret, then a wrong one. The body is
    // never sent: the answer must come from the headers alone.
    for path in [
        "/internal/raft/append",
        "/internal/v1/sequence-batch",
        "/internal/v1/admin/init",
    ] {
        for headers in [
            vec![],
            vec![("x-rekor-cluster-secret", "not-the-secret-not-the-secret-00")],
        ] {
            let mut stream = send_head(&addr, "POST", path, &headers, SIXTY_FOUR_MIB)
                .await
                .unwrap();
            let answer = read_answer(&mut stream, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(
                answer.status(),
                Some(401),
                "{path} with {headers:?}: {answer:?}\n{}",
                cluster.logs()
            );
            assert!(
                closed_within(&mut stream, Duration::from_secs(5)).await,
                "{path}: the connection of a refused request with an unread body is closed"
            );
        }
    }
    // The secret still opens them (status is a GET without a body).
    let secret = secret(&cluster).await;
    let mut stream = send_head(
        &addr,
        "GET",
        "/internal/v1/admin/status",
        &[("x-rekor-cluster-secret", secret.trim())],
        0,
    )
    .await
    .unwrap();
    let answer = read_answer(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer.status(), Some(200), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_408_at_the_deadline_on_both_listeners() {
    let cluster = Cluster::start_plain(
        1,
        &[
            "--body-timeout-ms",
            "1000",
            "--internal-body-timeout-ms",
            "1000",
        ],
    )
    .await
    .unwrap();
    let secret = secret(&cluster).await;
    let cases = [
        (public_addr(&cluster), "/api/v2/log/entries", vec![]),
        (
            internal_addr(&cluster),
            "/internal/v1/sequence-batch",
            vec![("x-rekor-cluster-secret", secret.trim())],
        ),
    ];
    for (addr, path, headers) in cases {
        let mut stream = send_head(&addr, "POST", path, &headers, 1000)
            .await
            .unwrap();
        use tokio::io::AsyncWriteExt as _;
        stream.write_all(b"{\"hashed").await.unwrap();
        // The client now stalls. The node must give up on it, not wait forever.
        let answer = read_answer(&mut stream, Duration::from_secs(10))
            .await
            .unwrap();
        match &answer {
            Answer::Response { status, .. } => assert_eq!(*status, 408, "{path}: {answer:?}"),
            other => panic!("{path}: no 408 for a stalled body: {other:?}"),
        }
        assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    }
    let refused = metric(
        &cluster.nodes[0].base_url(),
        "rekor_http_body_refused_total",
        &["listener=\"public\"", "reason=\"deadline\""],
    )
    .await
    .unwrap();
    assert_eq!(refused, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_beyond_the_budget_get_a_fast_503_and_the_budget_is_given_back() {
    const MIB: usize = 1024 * 1024;
    let cluster = Cluster::start_plain(
        1,
        &[
            "--max-request-body-size",
            "1048576",
            "--body-budget-mib",
            "1",
        ],
    )
    .await
    .unwrap();
    let base = cluster.nodes[0].base_url();
    let addr = public_addr(&cluster);

    // A slow client holds most of the budget: 900 KiB of a 1 MiB body, then silence.
    let mut holder = send_head(&addr, "POST", "/api/v2/log/entries", &[], MIB)
        .await
        .unwrap();
    use tokio::io::AsyncWriteExt as _;
    holder.write_all(&vec![b' '; 900 * 1024]).await.unwrap();
    let held = "rekor_http_body_bytes_held";
    let public = ["listener=\"public\""];
    wait_until(
        "the node to hold the slow body",
        Duration::from_secs(10),
        || {
            let base = base.clone();
            async move {
                Ok(metric(&base, held, &public)
                    .await?
                    .filter(|bytes| *bytes >= (900 * 1024) as f64))
            }
        },
    )
    .await
    .unwrap();

    // A body that cannot fit is refused from its headers, before any of it is sent.
    let mut refused = send_head(&addr, "POST", "/api/v2/log/entries", &[], 512 * 1024)
        .await
        .unwrap();
    let answer = read_answer(&mut refused, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer.status(), Some(503), "{answer:?}");

    // A chunked body (no Content-Length) is cut off at the budget too.
    let mut chunked = tokio::net::TcpStream::connect(&addr).await.unwrap();
    chunked
        .write_all(
            format!(
                "POST /api/v2/log/entries HTTP/1.1\r\nHost: {addr}\r\n\
                 Transfer-Encoding: chunked\r\n\r\n40000\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    chunked.write_all(&vec![b' '; 0x40000]).await.unwrap();
    chunked.write_all(b"\r\n").await.unwrap();
    let answer = read_answer(&mut chunked, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer.status(), Some(503), "{answer:?}");

    // The slow client goes away: its bytes are given back and honest writes go through.
    drop(holder);
    wait_until(
        "the budget to be given back",
        Duration::from_secs(10),
        || {
            let base = base.clone();
            async move {
                Ok(metric(&base, held, &public)
                    .await?
                    .filter(|bytes| *bytes == 0.0))
            }
        },
    )
    .await
    .unwrap();
    let client = LogClient::new(&base);
    let result = client.submit(&EntryFactory::new().request()).await.unwrap();
    assert_eq!(result.status, 201, "{}", result.body);
    check_logged_entry(&result.json().unwrap()).unwrap();
}

/// Sends a whole `GET /livez` on `stream` and checks that it is answered, and not with a 408.
async fn assert_served(stream: &mut tokio::net::TcpStream, what: &str) {
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(b"GET /livez HTTP/1.1\r\nHost: node\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(stream, Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(&answer, Answer::Response { status, .. } if *status != 408),
        "{what}: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_timed_from_each_request_s_first_byte() {
    use tokio::io::AsyncWriteExt;
    let cluster = Cluster::start_plain(1, &["--header-timeout-ms", "300", "--keep-alive-s", "2"])
        .await
        .unwrap();
    for addr in [public_addr(&cluster), internal_addr(&cluster)] {
        // A client pool's spare: opened, then unused past the header deadline. Its first
        // request is served, not answered 408 (the deadline runs from the request's first byte).
        let mut spare = tokio::net::TcpStream::connect(&addr).await.unwrap();
        assert!(
            !closed_within(&mut spare, Duration::from_secs(1)).await,
            "{addr}: an unused connection was closed at the header deadline"
        );
        assert_served(
            &mut spare,
            &format!("{addr}: the spare connection's request"),
        )
        .await;

        // A connection that never sends a byte is closed quietly at the keep-alive time: no
        // request was made, so there is nothing to answer.
        let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let answer = read_answer(&mut idle, Duration::from_secs(6))
            .await
            .unwrap();
        assert!(
            matches!(answer, Answer::Closed),
            "{addr}: an idle connection: {answer:?}"
        );

        // The head of a later request on a connection gets the header deadline too.
        let mut trickling = tokio::net::TcpStream::connect(&addr).await.unwrap();
        assert_served(&mut trickling, &format!("{addr}: the first request")).await;
        trickling
            .write_all(b"GET /livez HTTP/1.1\r\nHo")
            .await
            .unwrap();
        let answer = read_answer(&mut trickling, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(
            matches!(&answer, Answer::Response { status: 408, .. }),
            "{addr}: a stalled second head: {answer:?}"
        );
        assert!(closed_within(&mut trickling, Duration::from_secs(2)).await);
    }
    assert!(
        cluster
            .logs()
            .contains("--keep-alive-s is not above the time peers keep an idle connection"),
        "a keep-alive of 2 s is not warned of:\n{}",
        cluster.logs()
    );
    let base = format!("http://{}", public_addr(&cluster));
    for (listener, deadline) in [
        ("public", "idle"),
        ("public", "head"),
        ("internal", "idle"),
        ("internal", "head"),
    ] {
        let labels = [
            format!("listener=\"{listener}\""),
            format!("deadline=\"{deadline}\""),
        ];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let count = metric(&base, "rekor_http_connections_timed_out_total", &labels)
            .await
            .unwrap();
        assert!(
            count.is_some_and(|count| count >= 1.0),
            "{listener} {deadline}: {count:?}"
        );
    }
}
