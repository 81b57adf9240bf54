//! The container image is built and run here, without a registry (issue #15).
//!
//! `deploy/image/build.sh` makes the image from the `rekor-node` binary under test
//! (`$REKOR_NODE_BIN`) and this machine's Debian files, FROM scratch, with podman in a private
//! store. The test then:
//! - inspects it: unprivileged user, entrypoint and command, ports, data volume, listeners on
//!   all interfaces, labels (the binary's version), a HEALTHCHECK on /livez;
//! - when this machine can run containers, runs the Kubernetes manifests' serve command in the
//!   image's shell (pod N becomes node N+1 with its own certificate), and starts a
//!   node from it on the default network with its ports published on loopback, the signing key,
//!   cluster secret and mutual-TLS certificate mounted as a deployment would, and checks that
//!   the image's HEALTHCHECK passes, that the Helm chart's init script
//!   (deploy/helm/rekor-raft/files/init-cluster.sh) forms the cluster from a second container of
//!   the same image and is a no-op the second time, that a signed entry gets 201 with a valid
//!   inclusion proof, that the log lives in the volume, and that SIGTERM stops the node cleanly.
//!
//! Under `CI` a missing podman fails the test (scripts/test.sh installs it). A machine that can
//! build but not run containers (the image's static busybox does not start) still builds and
//! inspects, and says why it did not run one; once busybox runs, the node must run too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rekor_cluster_tests::podman::{self, Container, Podman};
use rekor_cluster_tests::{check_logged_entry, free_port, node_binary, wait_until};
use rekor_cluster_tests::{EntryFactory, LogClient};

const TAG: &str = "localhost/rekor-node:test";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_builds_without_a_registry_and_serves_a_signed_entry() {
    if !podman::installed() {
        if std::env::var_os("CI").is_some() {
            panic!("podman is not installed: scripts/test.sh installs it (apt-get install podman runc)");
        }
        eprintln!("SKIPPED: podman is not installed (apt-get install podman runc)");
        return;
    }
    let binary = node_binary().unwrap();
    let podman = Podman::new().unwrap();
    podman
        .build_node_image(&repo_root(), &binary, TAG)
        .unwrap_or_else(|error| panic!("{error:#}"));
    inspect(&podman, &binary);

    if let Err(error) = podman.probe_machine(TAG) {
        eprintln!(
            "NOT RUN: this machine cannot run containers, so the image was built and inspected \
             but no node was started from it: {error:#}"
        );
        return;
    }
    // The machine runs containers: from here on a failure is the image's.
    let version = podman
        .run_once(TAG, "none", None, &["--version"])
        .unwrap_or_else(|error| panic!("the image's rekor-node does not run: {error:#}"));
    assert!(version.starts_with("rekor-node "), "{version}");
    manifest_command_derives_the_node_id(&podman);
    run_a_node(&podman).await;
}

/// The serve command of deploy/kubernetes/statefulset.yaml: its `>-` folded block, lines joined by
/// spaces as YAML folds them. The Helm chart runs the same command (check_chart.py compares
/// their flags).
fn statefulset_command() -> String {
    let text =
        std::fs::read_to_string(repo_root().join("deploy/kubernetes/statefulset.yaml")).unwrap();
    let mut lines = text
        .lines()
        .skip_while(|line| line.trim() != "- >-")
        .skip(1);
    let first = lines.next().expect("a `>-` block in statefulset.yaml");
    let indent = first.len() - first.trim_start().len();
    std::iter::once(first)
        .chain(lines.take_while(|line| {
            line.len() > indent
                && line[..indent].trim().is_empty()
                && line.as_bytes()[indent] != b' '
        }))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The image's shell runs the manifests' command: pod rekor-node-2 serves as node 3 with node 3's
/// certificate and its stable name. `rekor-node` is a stub here that prints its arguments.
fn manifest_command_derives_the_node_id(podman: &Podman) {
    let stub = podman.scratch_dir("stub").unwrap();
    std::fs::write(
        stub.join("rekor-node"),
        "#!/bin/sh\nprintf '%s\\n' \"$@\"\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            stub.join("rekor-node"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let command = statefulset_command();
    assert!(command.contains("exec rekor-node serve"), "{command}");
    let mut args: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "--network".into(),
        "none".into(),
    ];
    args.extend(Podman::limit_args());
    args.extend(
        [
            "--volume",
            &format!("{}:/stub:ro", stub.display()),
            "--env",
            "PATH=/stub:/usr/local/bin:/usr/bin:/bin",
            "--env",
            "POD_NAME=rekor-node-2",
            "--env",
            "POD_NAMESPACE=rekor",
            "--entrypoint",
            "sh",
            TAG,
            "-c",
            &command,
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = podman
        .run_ok(&args)
        .unwrap_or_else(|error| panic!("{error:#}"));
    let printed: Vec<&str> = output.lines().collect();
    let value_of = |flag: &str| {
        printed
            .iter()
            .position(|arg| *arg == flag)
            .and_then(|i| printed.get(i + 1).copied())
    };
    assert_eq!(printed.first().copied(), Some("serve"), "{output}");
    assert_eq!(value_of("--node-id"), Some("3"), "{output}");
    assert_eq!(
        value_of("--advertise-internal"),
        Some("rekor-node-2.rekor-node-internal.rekor.svc:3001"),
        "{output}"
    );
    assert_eq!(
        value_of("--internal-tls-cert-file"),
        Some("/etc/rekor-tls/node-3.pem"),
        "{output}"
    );
}

/// What the image promises a deployment (deploy/Dockerfile's runtime stage promises the same).
fn inspect(podman: &Podman, binary: &Path) {
    let image = podman.inspect_image(TAG).unwrap();
    let config = &image["Config"];
    assert_eq!(
        config["User"], "10001",
        "runs as the unprivileged user: {config}"
    );
    assert_eq!(config["Entrypoint"], serde_json::json!(["rekor-node"]));
    assert_eq!(config["Cmd"], serde_json::json!(["serve"]));
    assert_eq!(config["WorkingDir"], "/var/lib/rekor");
    assert_eq!(config["StopSignal"], "SIGTERM");
    for port in ["3000/tcp", "3001/tcp"] {
        assert!(
            config["ExposedPorts"].get(port).is_some(),
            "{port}: {config}"
        );
    }
    assert!(
        config["Volumes"].get("/var/lib/rekor").is_some(),
        "{config}"
    );
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|value| value.as_str())
        .collect();
    for wanted in [
        "REKOR_DATA_DIR=/var/lib/rekor",
        "REKOR_LISTEN=0.0.0.0:3000",
        "REKOR_LISTEN_INTERNAL=0.0.0.0:3001",
    ] {
        assert!(env.contains(&wanted), "{wanted} not in {env:?}");
    }
    let version = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "rekor-node");
    assert_eq!(
        labels["org.opencontainers.image.version"],
        version.trim().trim_start_matches("rekor-node ")
    );
    let healthcheck = image["Healthcheck"]["Test"].to_string();
    assert!(
        healthcheck.contains("http://127.0.0.1:3000/livez"),
        "HEALTHCHECK must probe liveness: {healthcheck}"
    );
}

async fn run_a_node(podman: &Podman) {
    let node_bin = node_binary().unwrap();
    // What a deployment mounts: the key and secret (/etc/rekor), this node's certificate and the
    // CA (/etc/rekor-tls), and the data volume. `:U` hands them to the image's user, as fsGroup
    // or a chown would.
    let etc = podman.scratch_dir("etc").unwrap();
    let tls = podman.scratch_dir("tls").unwrap();
    let data = podman.scratch_dir("data").unwrap();
    let admin = podman.scratch_dir("admin").unwrap();
    let origin = "image.test.local";
    let status = std::process::Command::new(&node_bin)
        .args(["keygen", "--origin", origin, "--out"])
        .arg(etc.join("signing-key.pem"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(
        etc.join("cluster-secret"),
        "image-test-secret-0123456789abcdef",
    )
    .unwrap();
    let pki = rekor_cluster_tests::pki::ClusterPki::create(&admin.join("pki"), [1]).unwrap();
    for file in ["ca.pem", "node-1.pem", "node-1-key.pem"] {
        std::fs::copy(pki.dir().join(file), tls.join(file)).unwrap();
    }
    for dir in [&etc, &tls] {
        for entry in std::fs::read_dir(dir).unwrap() {
            use std::os::unix::fs::PermissionsExt;
            let path = entry.unwrap().path();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    // The admin side (outside the node's container) keeps its own copy of the secret.
    std::fs::copy(etc.join("cluster-secret"), admin.join("cluster-secret")).unwrap();

    let public_port = free_port().unwrap();
    let internal_port = free_port().unwrap();
    let public = format!("127.0.0.1:{public_port}");
    let internal = format!("127.0.0.1:{internal_port}");
    let mount =
        |host: &Path, inside: &str, options: &str| format!("{}:{inside}:{options}", host.display());
    let run_args: Vec<String> = [
        "--publish",
        &format!("{public}:3000"),
        "--publish",
        &format!("{internal}:3001"),
        "--volume",
        &mount(&etc, "/etc/rekor", "ro,U"),
        "--volume",
        &mount(&tls, "/etc/rekor-tls", "ro,U"),
        "--volume",
        &mount(&data, "/var/lib/rekor", "U"),
        TAG,
        // The image's CMD is `serve`; its listeners default to 0.0.0.0:3000 and :3001.
        "serve",
        "--node-id",
        "1",
        "--origin",
        origin,
        "--signing-key",
        "/etc/rekor/signing-key.pem",
        "--cluster-secret-file",
        "/etc/rekor/cluster-secret",
        "--bootstrap-single=false",
        "--advertise",
        &public,
        "--advertise-internal",
        &internal,
        "--internal-tls-ca-file",
        "/etc/rekor-tls/ca.pem",
        "--internal-tls-cert-file",
        "/etc/rekor-tls/node-1.pem",
        "--internal-tls-key-file",
        "/etc/rekor-tls/node-1-key.pem",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let node = Container::start(podman, "rekor-node-1", &run_args)
        .unwrap_or_else(|error| panic!("{error:#}"));

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("http://{public}");
    wait_until("the node's /livez", Duration::from_secs(60), || {
        let http = http.clone();
        let url = format!("{base}/livez");
        let node = &node;
        async move {
            if !node.running()? {
                anyhow::bail!("the container exited:\n{}", node.logs());
            }
            match http.get(url).send().await {
                Ok(response) if response.status() == 200 => Ok(Some(())),
                _ => Ok(None),
            }
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error:#}\n{}", node.logs()));

    // The image's own HEALTHCHECK (busybox wget on /livez inside the container) passes.
    let health = podman.output(&["healthcheck", "run", &node.name]).unwrap();
    assert!(
        health.status.success(),
        "HEALTHCHECK failed: {}{}",
        String::from_utf8_lossy(&health.stdout),
        String::from_utf8_lossy(&health.stderr)
    );
    // Not ready before init.
    let readiness = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(readiness.status(), 503, "/healthz before init");

    // The chart's init Job, as a container of the same image next to the node: forms the
    // cluster, then does nothing the second time.
    let script = repo_root().join("deploy/helm/rekor-raft/files/init-cluster.sh");
    let run_init = |name: &str| {
        let mut args: Vec<String> = vec!["run".into()];
        args.extend(Podman::limit_args());
        args.extend(
            [
                "--rm",
                "--name",
                name,
                "--network",
                "host",
                "--volume",
                &mount(&admin, "/etc/rekor-admin", "ro,U"),
                "--volume",
                &format!("{}:/scripts/init-cluster.sh:ro", script.display()),
                "--env",
                &format!("REKOR_TARGET={internal}"),
                "--env",
                &format!("INIT_MEMBERS=1={internal},{public}"),
                "--env",
                "INIT_RETRY_S=1",
                "--env",
                "REKOR_CLUSTER_SECRET_FILE=/etc/rekor-admin/cluster-secret",
                "--env",
                "REKOR_ADMIN_TLS_CA_FILE=/etc/rekor-admin/pki/ca.pem",
                "--env",
                "REKOR_ADMIN_TLS_CERT_FILE=/etc/rekor-admin/pki/operator-harness.pem",
                "--env",
                "REKOR_ADMIN_TLS_KEY_FILE=/etc/rekor-admin/pki/operator-harness-key.pem",
                "--entrypoint",
                "sh",
                TAG,
                "/scripts/init-cluster.sh",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        podman
            .run_ok(&args)
            .unwrap_or_else(|error| panic!("{error:#}"))
    };
    let first = run_init("rekor-init-1");
    assert!(first.contains("cluster formed"), "{first}");
    let second = run_init("rekor-init-2");
    assert!(second.contains("cluster already formed"), "{second}");

    wait_until("/healthz 200 after init", Duration::from_secs(30), || {
        let http = http.clone();
        let url = format!("{base}/healthz");
        async move {
            let status = http.get(url).send().await?.status();
            Ok((status == 200).then_some(()))
        }
    })
    .await
    .unwrap_or_else(|error| panic!("{error:#}\n{}", node.logs()));

    let client = LogClient::new(&base);
    let result = client.submit(&EntryFactory::new().request()).await.unwrap();
    assert_eq!(result.status, 201, "{}", result.body);
    let (index, size) = check_logged_entry(&result.json().unwrap()).unwrap();
    assert_eq!((index, size), (0, 1));
    // The log is in the volume, not in the container's own layer.
    assert!(
        data.join("raft-log").is_dir(),
        "nothing under the data volume"
    );

    let exit_code = node.stop(20).unwrap();
    assert_eq!(exit_code, 0, "SIGTERM: {}", node.logs());
}
