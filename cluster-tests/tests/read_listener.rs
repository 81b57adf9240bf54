//! The read listener (`--read-listen`, issue: performance round two, reads ≥ nginx): on a real
//! node, every read answers exactly as on the public listener (status, body, content type,
//! caching), complete bundles go out from their files, and the listener's bounds hold against
//! hostile clients (header deadline, head size, no bodies, connection cap).

use std::time::Duration;

use rekor_cluster_tests::hostile::{closed_within, metric, read_answer, send_head, Answer};
use rekor_cluster_tests::{check_logged_entry, Cluster, EntryFactory, LogClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-node cluster with a read listener; returns it and the listener's address.
async fn node_with_read_listener(extra: &[&str]) -> (Cluster, String) {
    let address = format!("127.0.0.1:{}", rekor_cluster_tests::free_port().unwrap());
    let mut args = vec!["--read-listen", address.as_str()];
    args.extend_from_slice(extra);
    let cluster = Cluster::start_plain(1, &args).await.unwrap();
    (cluster, address)
}

/// Logs `count` entries at once and returns the size the node serves afterwards.
async fn log_entries(client: &LogClient, count: usize) -> u64 {
    let factory = EntryFactory::new();
    let requests: Vec<_> = (0..count).map(|_| factory.request()).collect();
    let results =
        futures::future::join_all(requests.iter().map(|request| client.submit(request))).await;
    for result in results {
        let result = result.unwrap();
        assert_eq!(result.status, 201, "{}", result.body);
        check_logged_entry(&result.json().unwrap()).unwrap();
    }
    let checkpoint = client.checkpoint().await.unwrap().unwrap();
    checkpoint.lines().nth(1).unwrap().parse().unwrap()
}

/// Status, body and the headers a cache or client acts on.
async fn fetch(
    http: &reqwest::Client,
    url: &str,
) -> (u16, Vec<u8>, Option<String>, Option<String>) {
    let response = http.get(url).send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_string())
    };
    let (content_type, cache_control) = (header("content-type"), header("cache-control"));
    let status = response.status().as_u16();
    (
        status,
        response.bytes().await.unwrap().to_vec(),
        content_type,
        cache_control,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_answers_as_on_the_public_listener() {
    let (cluster, read_address) = node_with_read_listener(&[]).await;
    let public = cluster.nodes[0].base_url();
    let read = format!("http://{read_address}");
    let client = LogClient::new(&public);
    let size = log_entries(&client, 300).await;
    assert!(size >= 300, "served size {size}");
    let partial = size - 256;
    let http = reqwest::Client::new();
    let paths = [
        "checkpoint".to_string(),
        "tile/0/000".into(),
        // Routed as actix-web routes it: unreserved characters decoded, `%2F` not a separator.
        "tile/0/%30%30%30".into(),
        "tile%2F0/000".into(),
        format!("tile/0/001.p/{partial}"),
        "tile/1/000.p/1".into(),
        "tile/entries/000".into(),
        format!("tile/entries/001.p/{partial}"),
        // A narrower partial than any stored one: cut from the wider object.
        "tile/entries/001.p/3".into(),
        // Beyond the tree, not canonical, not a read path.
        "tile/entries/002".into(),
        "tile/0/005".into(),
        "tile/entries/x".into(),
        "tile/0/00".into(),
        "log/entries/0".into(),
    ];
    // The tile store's checkpoint file names a size only once that size's partial objects are
    // stored too (the integrator holds the newest ones in memory, not in files).
    let tiles = cluster.nodes[0].spec.data_dir.join("tiles");
    rekor_cluster_tests::wait_until(
        "the checkpoint file names the served size",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(tiles.join("checkpoint")).unwrap_or_default();
            let named = text
                .lines()
                .nth(1)
                .and_then(|line| line.parse::<u64>().ok());
            async move { Ok((named == Some(size)).then_some(())) }
        },
    )
    .await
    .unwrap();
    let stored_partial_path = format!("tile/entries/001.p/{partial}");
    assert!(
        tiles.join(&stored_partial_path).exists(),
        "{stored_partial_path}"
    );
    let file_bytes_before = metric(&public, "rekor_read_listener_file_bytes_total", &[])
        .await
        .unwrap()
        .unwrap();
    let mut bodies = std::collections::HashMap::new();
    for path in &paths {
        let from_public = fetch(&http, &format!("{public}/api/v2/{path}")).await;
        let from_read = fetch(&http, &format!("{read}/api/v2/{path}")).await;
        assert_eq!(from_read, from_public, "{path}");
        bodies.insert(path.clone(), from_read.1);
    }
    let (status, bundle, ..) = fetch(&http, &format!("{read}/api/v2/tile/entries/000")).await;
    assert_eq!(status, 200);
    assert!(bundle.len() > 256, "a bundle of 256 entries");
    // The stored bundles (two reads of the full one, one of the partial) went out from their
    // files; the narrower partial, cut from the wider one, through the backend.
    let stored_partial = &bodies[&stored_partial_path];
    let file_bytes = metric(&public, "rekor_read_listener_file_bytes_total", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        file_bytes - file_bytes_before,
        (2 * bundle.len() + stored_partial.len()) as f64
    );

    // HEAD: the length, no body (the public listener, like upstream's grpc-gateway, has no HEAD).
    let head = http
        .head(format!("{read}/api/v2/tile/entries/000"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        bundle.len().to_string()
    );
    assert!(head.bytes().await.unwrap().is_empty());

    // A known path with another method is 501, as on the public listener; there is no write API.
    for (method, path) in [("DELETE", "tile/0/000"), ("POST", "log/entries")] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let on_public = http
            .request(method.clone(), format!("{public}/api/v2/{path}"))
            .send()
            .await
            .unwrap()
            .status();
        let on_read = http
            .request(method, format!("{read}/api/v2/{path}"))
            .send()
            .await
            .unwrap()
            .status();
        if path == "log/entries" {
            assert_eq!(on_read, 404, "no writes on the read listener");
        } else {
            assert_eq!(on_read, on_public, "{path}");
            assert_eq!(on_read, 501);
        }
    }
    let counted = metric(
        &public,
        "rekor_read_listener_requests_total",
        &["object=\"bundle\"", "code=\"200\""],
    )
    .await
    .unwrap();
    assert!(counted.is_some_and(|n| n >= 4.0), "{counted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_pipelined_requests_until_close() {
    let (cluster, read_address) = node_with_read_listener(&[]).await;
    // One entry, so that a checkpoint is served.
    log_entries(&LogClient::new(&cluster.nodes[0].base_url()), 1).await;
    let mut stream = tokio::net::TcpStream::connect(&read_address).await.unwrap();
    stream
        .write_all(
            b"GET /api/v2/checkpoint HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /api/v2/tile/0/000 HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /api/v2/checkpoint HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the connection closes after the request that asked for it")
        .unwrap();
    let text = String::from_utf8_lossy(&received);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &text[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "404", "200"], "{text}");
    assert!(text.ends_with("\n"), "the last answer is whole: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_request_heads_are_refused_and_their_connections_closed() {
    let (cluster, addr) =
        node_with_read_listener(&["--header-timeout-ms", "500", "--keep-alive-s", "2"]).await;
    let deadline = Duration::from_secs(4);

    // A spare connection, unused past the header deadline: its request is still served (the
    // deadline runs from the head's first byte).
    let mut spare = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert!(
        !closed_within(&mut spare, Duration::from_secs(1)).await,
        "a spare connection was closed at the header deadline"
    );
    spare
        .write_all(b"GET /api/v2/checkpoint HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_answer(&mut spare, deadline).await.unwrap().status(),
        Some(200)
    );

    // No request at all: closed quietly at the keep-alive time.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(
        read_answer(&mut idle, deadline).await.unwrap(),
        Answer::Closed,
        "an idle connection"
    );

    // A head that never completes: 408, then closed.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /api/v2/checkpoint HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_answer(&mut slow, deadline).await.unwrap().status(),
        Some(408)
    );
    assert!(closed_within(&mut slow, deadline).await);

    // A head past 8 KiB: 431 without waiting for the rest.
    let filler = "a".repeat(9 * 1024);
    let mut large = send_head(
        &addr,
        "GET",
        "/api/v2/checkpoint",
        &[("x-filler", &filler)],
        0,
    )
    .await
    .unwrap();
    assert_eq!(
        read_answer(&mut large, deadline).await.unwrap().status(),
        Some(431)
    );
    assert!(closed_within(&mut large, deadline).await);

    // A body is never read: 400 and closed, before the body is sent.
    let mut with_body = send_head(&addr, "GET", "/api/v2/checkpoint", &[], 1 << 20)
        .await
        .unwrap();
    assert_eq!(
        read_answer(&mut with_body, deadline)
            .await
            .unwrap()
            .status(),
        Some(400)
    );
    assert!(closed_within(&mut with_body, deadline).await);

    // Not HTTP (a TLS ClientHello): 400.
    let mut garbage = tokio::net::TcpStream::connect(&addr).await.unwrap();
    garbage
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .await
        .unwrap();
    assert_eq!(
        read_answer(&mut garbage, deadline).await.unwrap().status(),
        Some(400)
    );

    // The node still serves.
    let client = LogClient::new(&format!("http://{addr}"));
    assert!(client.checkpoint().await.unwrap().is_some());
    let refused = metric(
        &cluster.nodes[0].base_url(),
        "rekor_read_listener_requests_total",
        &["object=\"other\"", "code=\"431\""],
    )
    .await
    .unwrap();
    assert_eq!(refused, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let (cluster, addr) =
        node_with_read_listener(&["--max-connections", "2", "--keep-alive-s", "5"]).await;
    // Two connections that send nothing hold both slots until their keep-alive time.
    let mut holders = Vec::new();
    for _ in 0..2 {
        holders.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let public = cluster.nodes[0].base_url();
    rekor_cluster_tests::wait_until("both slots taken", Duration::from_secs(5), || {
        let public = public.clone();
        async move {
            let held = metric(&public, "rekor_read_listener_connections", &[]).await?;
            Ok((held == Some(2.0)).then_some(()))
        }
    })
    .await
    .unwrap();
    // A third client's request waits in the kernel's backlog, unanswered, while they hold them...
    let mut third = send_head(&addr, "GET", "/api/v2/checkpoint", &[], 0)
        .await
        .unwrap();
    assert_eq!(
        read_answer(&mut third, Duration::from_millis(1000))
            .await
            .unwrap(),
        Answer::Silent,
        "a third connection was served past the cap of 2"
    );
    // ...and is answered once the keep-alive time frees a slot.
    assert_eq!(
        read_answer(&mut third, Duration::from_secs(10))
            .await
            .unwrap()
            .status(),
        Some(200)
    );
    for mut holder in holders {
        assert!(closed_within(&mut holder, Duration::from_secs(5)).await);
    }
}
