//! Starting, stopping and killing node processes, and forming clusters from them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::chaos::disk::SmallFilesystem;
use crate::pki::{ClusterPki, Identity};

/// The `rekor-node` binary under test.
pub fn node_binary() -> Result<PathBuf> {
    let path = match std::env::var_os("REKOR_NODE_BIN") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/rekor-node"),
    };
    if !path.exists() {
        bail!(
            "rekor-node binary not found at {} (run `cargo build -p rekor-node` or set REKOR_NODE_BIN)",
            path.display()
        );
    }
    Ok(path)
}

/// A free TCP port on 127.0.0.1, bound and released, and never one this process has handed out
/// before. The kernel reuses a released port soon, so without that memory a port reserved for a
/// process that is not running yet (a witness started later, a node restarted on its old port)
/// could be handed to another node, which would then answer in its place.
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: Mutex<Option<std::collections::HashSet<u16>>> = Mutex::new(None);
    // Held until the end, so that each try gets a port different from the ones before it.
    let mut tried = Vec::new();
    for _ in 0..1000 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        tried.push(listener);
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.get_or_insert_with(Default::default).insert(port) {
            return Ok(port);
        }
    }
    bail!("no unused loopback port after 1000 tries")
}

/// A base port such that nodes `0..nodes`' two ports each (base + 10·i, +1), the layout of
/// `scripts/local-cluster.sh`, are free right now.
pub fn free_base_port(nodes: u16) -> u16 {
    let mut seed = std::process::id() as u16;
    for _ in 0..200 {
        seed = seed.wrapping_mul(31).wrapping_add(7);
        let base = 20_000 + (seed % 3_000) * 10;
        let all_free = (0..nodes).all(|i| {
            // Public, internal, and the read listener of scripts/local-cluster.sh.
            [base + 10 * i, base + 10 * i + 1, base + 10 * i + 3]
                .iter()
                .all(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        });
        if all_free {
            return base;
        }
    }
    panic!("no free port range for {nodes} nodes");
}

/// Polls `condition` until it returns `Ok(Some(value))` or `deadline` passes.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut condition: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match condition().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How to start one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: u64,
    pub public_port: u16,
    pub internal_port: u16,
    pub data_dir: PathBuf,
    pub extra_args: Vec<String>,
}

impl NodeSpec {
    /// A node started on its own (no [`Cluster`]): fresh loopback ports, data under `dir/node{id}`.
    pub fn lone(dir: &Path, id: u64) -> Result<Self> {
        Ok(NodeSpec {
            id,
            public_port: free_port()?,
            internal_port: free_port()?,
            data_dir: dir.join(format!("node{id}")),
            extra_args: Vec::new(),
        })
    }

    /// `serve` arguments for a node started on its own: its id, data directory and listeners,
    /// then `extra`. (With the development key on loopback it forms a one-node log of itself
    /// unless `extra` says `--bootstrap-single=false`.)
    pub fn serve_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--node-id".into(),
            self.id.to_string(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--listen".into(),
            self.public_addr(),
            "--listen-internal".into(),
            self.internal_addr(),
        ];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args
    }

    pub fn public_addr(&self) -> String {
        format!("127.0.0.1:{}", self.public_port)
    }
    pub fn internal_addr(&self) -> String {
        format!("127.0.0.1:{}", self.internal_port)
    }
    pub fn member_arg(&self) -> String {
        format!(
            "{}={},{}",
            self.id,
            self.internal_addr(),
            self.public_addr()
        )
    }
}

/// Environment variable that sets a node process's `/livez` start token.
pub const START_TOKEN_VARIABLE: &str = "REKOR_INSTANCE_TOKEN";

/// A running node process. Killed (SIGKILL) when dropped.
pub struct NodeProcess {
    pub spec: NodeSpec,
    /// Behind a lock so that [`NodeProcess::wait_live`] (`&self`) can see an early exit.
    child: Mutex<Option<Child>>,
    args: Vec<String>,
    log_path: PathBuf,
    /// The start token handed to the running process; a new one at every spawn.
    start_token: String,
    /// The CA of the public listener's certificate when it serves HTTPS.
    public_ca: Option<PathBuf>,
    /// Environment variables set for the process on top of this one's (a signer's credentials).
    env: Vec<(String, String)>,
}

impl NodeProcess {
    /// Starts `rekor-node` with `args`, logging to `<data_dir>.log`.
    pub fn start(spec: NodeSpec, args: Vec<String>, cwd: &Path) -> Result<Self> {
        Self::start_with_env(spec, args, Vec::new(), cwd)
    }

    /// Like [`NodeProcess::start`], with `env` set for this process and its restarts.
    pub fn start_with_env(
        spec: NodeSpec,
        args: Vec<String>,
        env: Vec<(String, String)>,
        cwd: &Path,
    ) -> Result<Self> {
        let log_path = spec.data_dir.with_extension("log");
        let mut process = Self {
            spec,
            child: Mutex::new(None),
            args,
            log_path,
            start_token: String::new(),
            public_ca: None,
            env,
        };
        process.spawn(cwd)?;
        Ok(process)
    }

    fn spawn(&mut self, cwd: &Path) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let start_token = format!("{:032x}", rand::random::<u128>());
        let child = Command::new(node_binary()?)
            .args(&self.args)
            .current_dir(cwd)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env(START_TOKEN_VARIABLE, &start_token)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning rekor-node")?;
        *self.child_mut() = Some(child);
        self.start_token = start_token;
        Ok(())
    }

    fn child_mut(&mut self) -> &mut Option<Child> {
        self.child.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn pid(&self) -> Option<u32> {
        let child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child.as_ref().map(|child| child.id())
    }

    /// The start token the running process reports on `/livez`.
    pub fn start_token(&self) -> &str {
        &self.start_token
    }

    /// How the process ended, if it has (reaping it); `None` while it runs or was never started.
    fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn base_url(&self) -> String {
        let scheme = if self.public_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.spec.public_addr())
    }

    /// Marks the public listener as HTTPS with a certificate from the CA in `ca`.
    pub fn serving_https(&mut self, ca: PathBuf) {
        self.public_ca = Some(ca);
    }

    /// A client of this node's public listener (trusting its CA when it serves HTTPS).
    pub fn client(&self) -> crate::LogClient {
        crate::LogClient::with_roots(&self.base_url(), self.public_ca.as_deref())
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child_mut().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (e.g. "TERM", "STOP", "CONT") with the system `kill` command.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid().context("process not running")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }

    /// SIGTERM, then wait for the exit (with a deadline) and return its status code.
    pub fn terminate(&mut self, timeout: Duration) -> Result<Option<i32>> {
        self.signal("TERM")?;
        let deadline = Instant::now() + timeout;
        let id = self.spec.id;
        let slot = self.child_mut();
        let child = slot.as_mut().context("process not running")?;
        loop {
            if let Some(status) = child.try_wait()? {
                *slot = None;
                return Ok(status.code());
            }
            if Instant::now() >= deadline {
                bail!("node {id} did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit code if the process has exited (`Some(None)` for death by a signal), `None` while
    /// it runs (or was never started).
    pub fn exited(&mut self) -> Option<Option<i32>> {
        let child = self.child_mut().as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.code()),
            _ => None,
        }
    }

    /// Starts the process again with the same arguments and data directory.
    pub fn restart(&mut self, cwd: &Path) -> Result<()> {
        self.kill();
        self.spawn(cwd)
    }

    /// The node's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// N nodes on loopback sharing one signing key and cluster secret, formed with `rekor-node init`.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<NodeProcess>,
    pub secret_file: PathBuf,
    pub key_file: PathBuf,
    pub origin: String,
    /// Small filesystems under the nodes' data directories ([`Cluster::start_on_small_disks`]).
    pub mounts: Vec<SmallFilesystem>,
    /// The certificates of the internal listeners' mutual TLS; `None` when they run plain HTTP
    /// ([`Cluster::start_plain`]).
    pub pki: Option<ClusterPki>,
    /// Whether the public listeners serve HTTPS with the nodes' certificates
    /// ([`Cluster::start_https`]).
    pub public_https: bool,
    /// The `--signing-key` every node gets, and the environment it needs
    /// ([`Cluster::start_with_signer`]); by default the generated `key_file`.
    pub signer: Signer,
}

/// Where a cluster's nodes sign checkpoints: a `--signing-key` value (a path or a key URI) and
/// the environment variables its backend reads (credentials, endpoints).
#[derive(Debug, Clone, Default)]
pub struct Signer {
    /// `None`: the key file the harness generates.
    pub key: Option<String>,
    pub env: Vec<(String, String)>,
}

/// How a cluster's nodes talk to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Internal {
    MutualTls,
    Plain,
    /// Mutual TLS between nodes and HTTPS on the public listeners.
    PublicHttps,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Nodes first, then the mounts under `dir`, so the temporary directory can be removed.
        self.kill_all();
        self.mounts.clear();
    }
}

impl Cluster {
    /// SIGKILLs every node and reaps it; the data directories stay until the cluster is dropped.
    pub fn kill_all(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }

    /// Starts `n` nodes and forms a cluster of all of them. `extra_args` go to every node. The
    /// internal listeners run mutual TLS with certificates from a development CA (as a
    /// deployment should); the public listeners plain HTTP.
    pub async fn start(n: usize, extra_args: &[&str]) -> Result<Self> {
        Self::start_advertising(n, extra_args, |_| None).await
    }

    /// Like [`Cluster::start`], with plain HTTP between the nodes: for tests that speak raw HTTP
    /// to an internal listener.
    pub async fn start_plain(n: usize, extra_args: &[&str]) -> Result<Self> {
        Self::start_inner(n, extra_args, |_| None, None, Internal::Plain).await
    }

    /// Like [`Cluster::start`], with the public listeners on HTTPS too, each with its node's
    /// certificate from the cluster's development CA (valid for 127.0.0.1 and localhost).
    pub async fn start_https(n: usize, extra_args: &[&str]) -> Result<Self> {
        Self::start_inner(n, extra_args, |_| None, None, Internal::PublicHttps).await
    }

    /// Like [`Cluster::start`], but node `spec` advertises `advertise(spec)` (when `Some`) as its
    /// internal address: peers, and the membership formed by `init`, reach it there. The chaos
    /// harness puts a fault-injection proxy at that address; such a node's peer connections come
    /// from its own loopback address (`chaos::proxy::source_address`), so the proxy can tell
    /// senders apart.
    pub async fn start_advertising(
        n: usize,
        extra_args: &[&str],
        advertise: impl FnMut(&NodeSpec) -> Option<String>,
    ) -> Result<Self> {
        Self::start_inner(n, extra_args, advertise, None, Internal::MutualTls).await
    }

    /// Like [`Cluster::start`], with every node signing through `signer` (a remote signer's key
    /// URI and credentials) instead of the generated key file.
    pub async fn start_with_signer(n: usize, extra_args: &[&str], signer: Signer) -> Result<Self> {
        Self::start_full(
            n,
            extra_args,
            |_| None,
            |_| Vec::new(),
            None,
            Internal::MutualTls,
            signer,
        )
        .await
    }

    /// Like [`Cluster::start`], with `env` set in every node's environment (for example a
    /// bucket's endpoint and credentials, [`crate::s3::S3Server::node_env`]).
    pub async fn start_with_env(
        n: usize,
        extra_args: &[&str],
        env: Vec<(String, String)>,
    ) -> Result<Self> {
        Self::start_with_signer(n, extra_args, Signer { key: None, env }).await
    }

    /// Like [`Cluster::start`], with every node's data directory (Raft log, state machine,
    /// tiles) on its own tmpfs of `size_mib` MiB (`mounts[i]` for `nodes[i]`), for full-disk
    /// tests. Needs permission to mount.
    pub async fn start_on_small_disks(
        n: usize,
        extra_args: &[&str],
        size_mib: u64,
    ) -> Result<Self> {
        Self::start_inner(n, extra_args, |_| None, Some(size_mib), Internal::MutualTls).await
    }

    async fn start_inner(
        n: usize,
        extra_args: &[&str],
        advertise: impl FnMut(&NodeSpec) -> Option<String>,
        small_disk_mib: Option<u64>,
        internal: Internal,
    ) -> Result<Self> {
        Self::start_full(
            n,
            extra_args,
            advertise,
            |_| Vec::new(),
            small_disk_mib,
            internal,
            Signer::default(),
        )
        .await
    }

    /// Like [`Cluster::start`] (or [`Cluster::start_https`] when `https`), with `node_args(spec)`
    /// added to each node's arguments: for flags that differ per node, such as a listener port.
    pub async fn start_with_node_args(
        n: usize,
        extra_args: &[&str],
        https: bool,
        node_args: impl FnMut(&NodeSpec) -> Vec<String>,
    ) -> Result<Self> {
        let internal = if https {
            Internal::PublicHttps
        } else {
            Internal::MutualTls
        };
        Self::start_full(
            n,
            extra_args,
            |_| None,
            node_args,
            None,
            internal,
            Signer::default(),
        )
        .await
    }

    async fn start_full(
        n: usize,
        extra_args: &[&str],
        mut advertise: impl FnMut(&NodeSpec) -> Option<String>,
        mut node_args: impl FnMut(&NodeSpec) -> Vec<String>,
        small_disk_mib: Option<u64>,
        internal: Internal,
        signer: Signer,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let pki = match internal {
            Internal::MutualTls | Internal::PublicHttps => {
                Some(ClusterPki::create(&dir.path().join("certs"), 1..=n as u64)?)
            }
            Internal::Plain => None,
        };
        let origin = "cluster.test.local".to_owned();
        let secret_file = dir.path().join("cluster-secret");
        std::fs::write(&secret_file, "test-cluster-secret-0123456789abcdef")?;
        // The node refuses a secret other users could read.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600))?;
        }
        let key_file = dir.path().join("signing-key.pem");
        let status = Command::new(node_binary()?)
            .args(["keygen", "--origin", &origin, "--out"])
            .arg(&key_file)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("rekor-node keygen failed");
        }
        let mut cluster = Self {
            dir,
            nodes: Vec::new(),
            secret_file,
            key_file,
            origin,
            mounts: Vec::new(),
            pki,
            public_https: internal == Internal::PublicHttps,
            signer,
        };
        let mut members = Vec::new();
        for id in 1..=n as u64 {
            let mut spec = NodeSpec {
                id,
                public_port: free_port()?,
                internal_port: free_port()?,
                data_dir: cluster.dir.path().join(format!("node{id}")),
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            };
            match advertise(&spec) {
                Some(address) => {
                    members.push(format!("{id}={address},{}", spec.public_addr()));
                    spec.extra_args.push("--advertise-internal".into());
                    spec.extra_args.push(address);
                    spec.extra_args.push("--peer-source-address".into());
                    spec.extra_args
                        .push(crate::chaos::proxy::source_address(id).to_string());
                }
                None => members.push(spec.member_arg()),
            }
            let own_args = node_args(&spec);
            spec.extra_args.extend(own_args);
            if let Some(size_mib) = small_disk_mib {
                let mount = SmallFilesystem::mount(&spec.data_dir, size_mib)?;
                cluster.mounts.push(mount);
            }
            cluster.spawn_node(spec)?;
        }
        for node in &cluster.nodes {
            node.wait_live(Duration::from_secs(30)).await?;
        }
        cluster.init(&members).await?;
        cluster.wait_for_leader(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// The `serve` arguments for `spec`.
    pub fn serve_args(&self, spec: &NodeSpec) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--node-id".into(),
            spec.id.to_string(),
            "--data-dir".into(),
            spec.data_dir.display().to_string(),
            "--listen".into(),
            spec.public_addr(),
            "--listen-internal".into(),
            spec.internal_addr(),
            "--origin".into(),
            self.origin.clone(),
            "--signing-key".into(),
            self.signer
                .key
                .clone()
                .unwrap_or_else(|| self.key_file.display().to_string()),
            "--cluster-secret-file".into(),
            self.secret_file.display().to_string(),
            "--bootstrap-single=false".into(),
        ];
        if let Some(pki) = &self.pki {
            args.extend(pki.serve_args(spec.id));
            if self.public_https {
                args.extend([
                    "--http-tls-cert-file".to_owned(),
                    pki.node_cert(spec.id).display().to_string(),
                    "--http-tls-key-file".to_owned(),
                    pki.node_key(spec.id).display().to_string(),
                ]);
            }
        }
        args.extend(spec.extra_args.iter().cloned());
        args
    }

    /// The flags every admin command of this cluster needs: the secret, and the operator
    /// certificate under mutual TLS.
    pub fn admin_args(&self) -> Vec<String> {
        let mut args = vec![
            "--cluster-secret-file".to_owned(),
            self.secret_file.display().to_string(),
        ];
        if let Some(pki) = &self.pki {
            args.extend(pki.operator_args());
        }
        args
    }

    /// A client of the internal listeners as `identity`, and the scheme they speak.
    pub fn internal_client(&self, identity: Identity) -> Result<(reqwest::Client, &'static str)> {
        match &self.pki {
            Some(pki) => Ok((pki.client(identity)?, "https")),
            None => Ok((reqwest::Client::builder().no_proxy().build()?, "http")),
        }
    }

    /// Starts node `id`, not yet a member, with `extra_args` on top of the cluster's, on free
    /// ports under the cluster's directory, and waits until it is healthy. Returns its
    /// `ID=INTERNAL,PUBLIC` member argument for `node add` and its position in `nodes`.
    pub async fn start_new_node(
        &mut self,
        id: u64,
        extra_args: &[&str],
        timeout: Duration,
    ) -> Result<(String, usize)> {
        let spec = NodeSpec {
            id,
            public_port: free_port()?,
            internal_port: free_port()?,
            data_dir: self.dir.path().join(format!("node{id}")),
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        };
        let member = spec.member_arg();
        self.spawn_node(spec)?;
        let position = self.nodes.len() - 1;
        self.nodes[position].wait_live(timeout).await?;
        Ok((member, position))
    }

    /// Starts a node process for `spec` (it is not a member until added).
    pub fn spawn_node(&mut self, spec: NodeSpec) -> Result<&mut NodeProcess> {
        if let Some(pki) = &self.pki {
            pki.ensure_node(spec.id)?;
        }
        let args = self.serve_args(&spec);
        let mut node =
            NodeProcess::start_with_env(spec, args, self.signer.env.clone(), self.dir.path())?;
        if let (true, Some(pki)) = (self.public_https, &self.pki) {
            node.serving_https(pki.ca());
        }
        self.nodes.push(node);
        self.nodes.last_mut().context("just pushed")
    }

    async fn init(&self, members: &[String]) -> Result<()> {
        let mut args: Vec<String> = vec![
            "init".into(),
            "--target".into(),
            self.nodes[0].spec.internal_addr(),
        ];
        args.extend(self.admin_args());
        for member in members {
            args.push("--member".into());
            args.push(member.clone());
        }
        let output = tokio::process::Command::new(node_binary()?)
            .args(&args)
            .output()
            .await?;
        if !output.status.success() {
            bail!(
                "rekor-node init failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Runs an admin subcommand of `rekor-node` (e.g. `["node", "add", "--target", ...]`) with
    /// this cluster's secret; returns its standard output, or an error with its standard error.
    pub async fn admin(&self, args: &[&str]) -> Result<String> {
        Ok(self.admin_output(args).await?.0)
    }

    /// Like [`Cluster::admin`], returning standard output and standard error of a successful run
    /// (the admin client reports there when it follows a 421 to the leader).
    pub async fn admin_output(&self, args: &[&str]) -> Result<(String, String)> {
        let output = tokio::process::Command::new(node_binary()?)
            .args(args)
            .args(self.admin_args())
            .output()
            .await?;
        if !output.status.success() {
            bail!(
                "rekor-node {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok((
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }

    /// `rekor-node status` of node `index`, as JSON.
    pub async fn status(&self, index: usize) -> Result<serde_json::Value> {
        let output = tokio::process::Command::new(node_binary()?)
            .args([
                "status",
                "--target",
                &self.nodes[index].spec.internal_addr(),
            ])
            .args(self.admin_args())
            .output()
            .await?;
        if !output.status.success() {
            bail!("status failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// Waits until some running node reports itself leader; returns its position in `nodes`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<usize> {
        wait_until("a leader", timeout, || async {
            for (index, node) in self.nodes.iter().enumerate() {
                if node.pid().is_none() {
                    continue;
                }
                if let Ok(status) = self.status(index).await {
                    if status["leader"].as_u64() == Some(node.spec.id)
                        && status["state"].as_str() == Some("Leader")
                    {
                        return Ok(Some(index));
                    }
                }
            }
            Ok(None)
        })
        .await
    }

    pub fn clients(&self) -> Vec<crate::LogClient> {
        self.nodes.iter().map(NodeProcess::client).collect()
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("===== node {} =====\n{}", node.spec.id, node.log()))
            .collect()
    }
}

impl NodeProcess {
    /// Waits until this process answers `/livez`: the answer must name this node's id and
    /// the start token given to this process, so a stranger holding the port (an earlier
    /// process, another test) is never taken for it. Fails as soon as the process exits (for
    /// example because it could not bind its port).
    pub async fn wait_live(&self, timeout: Duration) -> Result<()> {
        let id = self.spec.id;
        let client = self.client();
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        loop {
            if let Some(status) = self.exit_status() {
                bail!(
                    "node {id} exited before it was live ({status}); last /livez: {last}\n{}",
                    self.log()
                );
            }
            match client.liveness().await {
                Ok(body)
                    if body["nodeId"].as_u64() == Some(id)
                        && body["startToken"].as_str() == Some(self.start_token.as_str()) =>
                {
                    return Ok(());
                }
                Ok(body) => last = format!("answered by another process: {body}"),
                Err(error) => last = format!("{error:#}"),
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for node {id} to be live ({last})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
