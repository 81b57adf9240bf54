//! The quick start as an operator runs it (issue: deployment and operator experience):
//! `scripts/local-cluster.sh start 3` brings up three nodes that accept writes (from
//! sigstore-python when `REKOR_TEST_PYTHON` is set, and from the test client always), `status`
//! shows every node, the status page shows the cluster in headless Chromium (through
//! chromedriver's WebDriver protocol), and `stop` ends every node.
//!
//! Chromium and chromedriver are the Debian packages `chromium` and `chromium-driver`
//! (`CHROMEDRIVER` may name the driver). Without them the page check is skipped, except in CI.
//! With `REKOR_UPDATE_DOCS=1` the screenshot is also written to `docs/status-page.png`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rekor_cluster_tests::{node_binary, wait_until, EntryFactory, LogClient};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the script; returns (success, stdout + stderr).
fn script(dir: &Path, base_port: u16, args: &[&str]) -> (bool, String) {
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/local-cluster.sh"))
        .args(args)
        .env("REKOR_CLUSTER_DIR", dir)
        .env("REKOR_BASE_PORT", base_port.to_string())
        .env("REKOR_NODE_BIN", node_binary().unwrap())
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/local-cluster.sh");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Stops the cluster when the test ends, pass or fail.
struct StopOnDrop(PathBuf, u16);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = script(&self.0, self.1, &["stop"]);
    }
}

/// Whether process `pid` runs: it exists and is not a zombie (whoever reaps the node's orphans
/// may not have yet).
fn pid_alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may hold spaces.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_script_status_page_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let cluster_dir = dir.path().join("local-cluster");
    let base = rekor_cluster_tests::process::free_base_port(3);
    let (ok, output) = script(&cluster_dir, base, &["start", "3"]);
    let _stop = StopOnDrop(cluster_dir.clone(), base);
    assert!(ok, "start failed:\n{output}");
    assert!(output.contains("started 3 nodes"), "{output}");

    // Writes to a follower's address and to node 1 are logged.
    let urls: Vec<String> = (0..3)
        .map(|i| format!("http://127.0.0.1:{}", base + 10 * i))
        .collect();
    let factory = EntryFactory::new();
    let mut logged = 0u64;
    for url in &urls {
        let client = LogClient::new(url);
        for _ in 0..5 {
            let result = client.submit(&factory.request()).await.unwrap();
            assert_eq!(result.status, 201, "{url}: {}", result.body);
            logged += 1;
        }
    }
    if let Some(python) = std::env::var_os("REKOR_TEST_PYTHON") {
        let keygen = std::fs::read_to_string(cluster_dir.join("keygen.txt")).unwrap();
        let public_key = keygen
            .lines()
            .find_map(|line| line.strip_prefix("public key:"))
            .map(str::trim)
            .expect("keygen.txt has the public key");
        let harness = tokio::process::Command::new(python)
            .arg(repo_root().join("scripts/client/harness.py"))
            .args(["--base-url", &urls[1], "--origin", "rekor.local"])
            .args([
                "--log-key-type",
                "ed25519",
                "--log-key-spki-b64",
                public_key,
            ])
            .args(["--entries", "20"])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&harness.stdout);
        assert!(
            harness.status.success(),
            "sigstore-python against the local cluster failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&harness.stderr)
        );
        eprintln!("sigstore-python: {}", stdout.lines().last().unwrap_or(""));
    } else {
        eprintln!("(sigstore-python part skipped: REKOR_TEST_PYTHON is not set)");
    }
    let leader_client = LogClient::new(&urls[0]);
    let size = wait_until(
        "a checkpoint with the entries",
        Duration::from_secs(30),
        || async {
            let size: u64 = leader_client
                .checkpoint()
                .await?
                .unwrap_or_default()
                .lines()
                .nth(1)
                .and_then(|line| line.parse().ok())
                .unwrap_or(0);
            Ok((size >= logged).then_some(size))
        },
    )
    .await
    .unwrap();
    // Each node's read listener, three ports above its public one, serves what it serves.
    for (i, url) in urls.iter().enumerate() {
        let read = LogClient::new(&format!("http://127.0.0.1:{}", base + 10 * i as u16 + 3));
        let public = LogClient::new(url);
        let from_public = wait_until("the first entry served", Duration::from_secs(30), || {
            let public = public.clone();
            async move { Ok(public.get("tile/entries/000.p/1").await?.map(Some)) }
        })
        .await
        .unwrap();
        assert_eq!(
            read.get("tile/entries/000.p/1").await.unwrap(),
            from_public,
            "node {}",
            i + 1
        );
    }

    // A pidfile can outlive its process and its pid be reused (pids wrap around): a node killed
    // through the script whose pid now names another live process is not running, so
    // `start-node` starts it instead of refusing. A follower, so the cluster keeps its leader
    // for the `status` check below.
    let (ok, leader) = script(&cluster_dir, base, &["leader"]);
    assert!(ok, "{leader}");
    let leader: u64 = leader.trim().parse().unwrap();
    let follower = (leader % 3 + 1).to_string();
    let (ok, output) = script(&cluster_dir, base, &["kill", &follower]);
    assert!(ok, "{output}");
    std::fs::write(
        cluster_dir.join(format!("node{follower}.pid")),
        std::process::id().to_string(),
    )
    .unwrap();
    let (ok, output) = script(&cluster_dir, base, &["start-node", &follower]);
    assert!(
        ok,
        "a foreign pid in node {follower}'s pidfile blocked its start:\n{output}"
    );
    assert!(
        output.contains(&format!("node {follower} started")),
        "{output}"
    );

    // `status` shows the three nodes with their pids and one leader.
    let (ok, status) = script(&cluster_dir, base, &["status"]);
    assert!(ok, "{status}");
    for i in 1..=3 {
        assert!(status.contains(&format!("== node {i}: pid ")), "{status}");
    }
    assert!(status.contains("\"state\": \"Leader\""), "{status}");

    // The status page, in headless Chromium.
    match chromedriver() {
        Some(driver) => check_status_page(driver, &urls[0], size).await,
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "chromedriver is missing in CI: install the Debian packages chromium and chromium-driver"
            );
            eprintln!(
                "\n!!!!!!!! SKIPPED the status page check: chromedriver not found \
                 (apt-get install chromium chromium-driver) !!!!!!!!\n"
            );
        }
    }

    // `stop` ends every node.
    let pids: Vec<String> = (1..=3)
        .map(|i| {
            std::fs::read_to_string(cluster_dir.join(format!("node{i}.pid")))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    let (ok, output) = script(&cluster_dir, base, &["stop"]);
    assert!(ok, "{output}");
    for pid in &pids {
        assert!(!pid_alive(pid), "node pid {pid} still alive after stop");
    }
}

fn chromedriver() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMEDRIVER") {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromedriver", "/usr/local/bin/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// chromedriver, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("WebDriver call");
        let status = response.status();
        let answer: serde_json::Value = response.json().await.expect("WebDriver JSON");
        assert!(status.is_success(), "WebDriver {path}: {status} {answer}");
        answer["value"].clone()
    }
}

/// Loads the leader's status page (lag is known there) and checks what it shows.
async fn check_status_page(driver_path: PathBuf, any_node_url: &str, size: u64) {
    let status: serde_json::Value = reqwest::get(format!("{any_node_url}/status.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let leader_id = status["leader"].as_u64().expect("a leader");
    assert_eq!(status["tile_store"], "per-node", "{status}");
    let page_url = format!(
        "http://{}/",
        status["leader_public_addr"]
            .as_str()
            .expect("the leader's address")
    );
    let port = rekor_cluster_tests::free_port().unwrap();
    let child = Command::new(&driver_path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    };
    let ready_url = format!("{}/status", driver.url);
    wait_until("chromedriver", Duration::from_secs(20), || async {
        let ready = driver
            .http
            .get(&ready_url)
            .send()
            .await?
            .json::<serde_json::Value>()
            .await?;
        Ok(ready["value"]["ready"]
            .as_bool()
            .unwrap_or(false)
            .then_some(()))
    })
    .await
    .unwrap();

    let session = driver
        .call(
            reqwest::Method::POST,
            "/session",
            Some(serde_json::json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1200,1100"
                ]}
            }}})),
        )
        .await;
    let id = session["sessionId"]
        .as_str()
        .expect("a session id")
        .to_owned();
    let session_path = format!("/session/{id}");
    driver
        .call(
            reqwest::Method::POST,
            &format!("{session_path}/url"),
            Some(serde_json::json!({"url": &page_url})),
        )
        .await;

    // Poll the rendered page until the script has filled it in with the log's numbers.
    let read_page = serde_json::json!({"script": "return {
        loaded: document.body.dataset.loaded === 'true',
        treeSize: document.getElementById('tree-size').textContent,
        leader: document.getElementById('leader').textContent,
        origin: document.getElementById('origin').textContent,
        logId: document.getElementById('log-id').textContent,
        members: document.querySelectorAll('#members tr').length,
        roles: Array.from(document.querySelectorAll('#members td.role')).map(td => td.textContent),
        lags: Array.from(document.querySelectorAll('#members td.lag')).map(td => td.textContent),
        age: document.getElementById('checkpoint-age').textContent,
    };", "args": []});
    let expected_size = size.to_string();
    let page = wait_until(
        "the status page to show the log",
        Duration::from_secs(30),
        || async {
            let page = driver
                .call(
                    reqwest::Method::POST,
                    &format!("{session_path}/execute/sync"),
                    Some(read_page.clone()),
                )
                .await;
            let size_shown = page["treeSize"].as_str().unwrap_or("").replace(',', "");
            let size_ok = size_shown.parse::<u64>().is_ok_and(|shown| shown >= size);
            Ok((page["loaded"] == true && page["members"] == 3 && size_ok).then_some(page))
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error} (wanted tree size ≥ {expected_size})"));
    assert_eq!(page["origin"], "rekor.local", "{page}");
    assert_eq!(page["leader"], format!("node {leader_id}"), "{page}");
    assert_eq!(page["logId"].as_str().map(str::len), Some(44), "{page}");
    let mut roles: Vec<&str> = page["roles"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    roles.sort_unstable();
    assert_eq!(roles, ["leader", "voter", "voter"], "{page}");
    // On the leader, every member's lag is a number of entries.
    for lag in page["lags"].as_array().unwrap() {
        assert!(
            lag.as_str().unwrap_or("").ends_with("entries")
                || lag.as_str().unwrap_or("").ends_with("entry"),
            "{page}"
        );
    }
    assert!(
        page["age"].as_str().unwrap_or("").ends_with(" s")
            || page["age"].as_str().unwrap_or("").ends_with("min"),
        "{page}"
    );

    // The throughput chart draws a line once it has three samples (two seconds apart).
    let chart = serde_json::json!({
        "script": "return document.querySelector('#chart polyline') !== null;", "args": []
    });
    wait_until("the throughput chart", Duration::from_secs(30), || async {
        let drawn = driver
            .call(
                reqwest::Method::POST,
                &format!("{session_path}/execute/sync"),
                Some(chart.clone()),
            )
            .await;
        Ok((drawn == true).then_some(()))
    })
    .await
    .unwrap();
    let png = driver
        .call(
            reqwest::Method::GET,
            &format!("{session_path}/screenshot"),
            None,
        )
        .await;
    let png = STANDARD
        .decode(png.as_str().expect("base64 screenshot"))
        .unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let out = std::env::temp_dir().join(format!("rekor-status-page-{}.png", std::process::id()));
    std::fs::write(&out, &png).unwrap();
    eprintln!("status page screenshot: {}", out.display());
    if std::env::var_os("REKOR_UPDATE_DOCS").is_some() {
        std::fs::write(repo_root().join("docs/status-page.png"), &png).unwrap();
    }
    driver
        .call(reqwest::Method::DELETE, &session_path, None)
        .await;
}
