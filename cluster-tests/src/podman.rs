//! Podman, driven from tests with a store of its own: images and containers live in a temporary
//! directory (`--root`, `--runroot`, `--tmpdir`), never in the machine's store, and go away with
//! it. `cluster-tests/tests/container_image.rs` builds the rekor-node image with it and runs a
//! node from that image.
//!
//! The global flags are what a test machine without systemd and with a mixed cgroup setup needs
//! (each was found necessary on the project's test machines, Debian bookworm's podman 4.3):
//! - `--storage-driver vfs`: no overlay mount or fuse-overlayfs needed (slower, but the image is
//!   one layer);
//! - `--cgroup-manager cgroupfs`, `--events-backend file`: there is no systemd;
//! - `--runtime runc` when runc is installed: crun 1.8 refuses to start a container on a host in
//!   cgroup "hybrid" mode (v1 controllers plus a v2 hierarchy with controllers), which runc
//!   accepts.
//!
//! and every container gets explicit `nofile`/`nproc` limits no higher than this process's: as
//! root podman asks for 1048576 open files and 4194304 processes, which a sandbox that forbids
//! raising limits (even with CAP_SYS_RESOURCE) refuses with "setrlimit: Operation not permitted".

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// A podman command line bound to a private store under a temporary directory.
pub struct Podman {
    dir: tempfile::TempDir,
    global_args: Vec<String>,
}

/// Is podman on this machine? (`podman --version` runs.)
pub fn installed() -> bool {
    answers_version("podman")
}

fn runc_installed() -> bool {
    answers_version("runc")
}

/// `program --version` runs and succeeds.
fn answers_version(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// This process's soft and hard limit of `resource` (a row name of `/proc/self/limits`, e.g.
/// "Max open files"); "unlimited" is `None`.
fn own_limit(resource: &str) -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with(resource))?;
    let mut values = line[resource.len()..].split_whitespace();
    let soft = values.next()?.parse().ok()?;
    let hard = values.next()?.parse().ok()?;
    Some((soft, hard))
}

impl Podman {
    /// A podman with an empty private store.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("podman-test").tempdir()?;
        let path = |name: &str| dir.path().join(name).display().to_string();
        let mut global_args = vec![
            "--root".to_owned(),
            path("storage"),
            "--runroot".to_owned(),
            path("run"),
            "--tmpdir".to_owned(),
            path("tmp"),
            "--storage-driver".to_owned(),
            "vfs".to_owned(),
            "--cgroup-manager".to_owned(),
            "cgroupfs".to_owned(),
            "--events-backend".to_owned(),
            "file".to_owned(),
        ];
        if runc_installed() {
            global_args.extend(["--runtime".to_owned(), "runc".to_owned()]);
        }
        Ok(Self { dir, global_args })
    }

    /// The podman command with the private store's flags, as one string (for `PODMAN=` of
    /// deploy/image/build.sh).
    pub fn command_line(&self) -> String {
        std::iter::once("podman".to_owned())
            .chain(self.global_args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A directory inside the private store's temporary directory, for a test's files.
    pub fn scratch_dir(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }

    /// `podman <args>`, its output whatever the exit status.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        Command::new("podman")
            .args(&self.global_args)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running podman {args:?}"))
    }

    /// `podman <args>`, its stdout; an error naming stderr when it fails.
    pub fn run_ok(&self, args: &[&str]) -> Result<String> {
        let output = self.output(args)?;
        if !output.status.success() {
            bail!(
                "podman {args:?} exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The resource limits every `podman run` must pass (see the module docs).
    pub fn limit_args() -> Vec<String> {
        let (nofile_soft, nofile_hard) = own_limit("Max open files").unwrap_or((1024, 1024));
        // A node needs far fewer; 4096 stays under any pid_max.
        let nproc = own_limit("Max processes")
            .map(|(soft, _)| soft.min(4096))
            .unwrap_or(4096);
        vec![
            "--ulimit".to_owned(),
            format!("nofile={nofile_soft}:{nofile_hard}"),
            "--ulimit".to_owned(),
            format!("nproc={nproc}:{nproc}"),
        ]
    }

    /// Builds `tag` from the `rekor-node` binary with deploy/image/build.sh.
    pub fn build_node_image(&self, repo_root: &Path, binary: &Path, tag: &str) -> Result<()> {
        let output = Command::new(repo_root.join("deploy/image/build.sh"))
            .arg(binary)
            .arg(tag)
            .env("PODMAN", self.command_line())
            .stdin(Stdio::null())
            .output()
            .context("running deploy/image/build.sh")?;
        if !output.status.success() {
            bail!(
                "deploy/image/build.sh failed ({}):\n{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// `podman image inspect <image>`: the first (only) object.
    pub fn inspect_image(&self, image: &str) -> Result<serde_json::Value> {
        let text = self.run_ok(&["image", "inspect", image])?;
        let mut all: Vec<serde_json::Value> =
            serde_json::from_str(&text).with_context(|| format!("decoding {text}"))?;
        if all.is_empty() {
            bail!("podman image inspect {image}: no image");
        }
        Ok(all.swap_remove(0))
    }

    /// `podman run --rm --network <network> [--entrypoint <entrypoint>] <image> <args>`.
    pub fn run_once(
        &self,
        image: &str,
        network: &str,
        entrypoint: Option<&str>,
        args: &[&str],
    ) -> Result<String> {
        let limits = Self::limit_args();
        let mut all = vec!["run", "--rm", "--network", network];
        all.extend(limits.iter().map(String::as_str));
        if let Some(entrypoint) = entrypoint {
            all.extend(["--entrypoint", entrypoint]);
        }
        all.push(image);
        all.extend(args);
        self.run_ok(&all)
    }

    /// Can this machine run containers on podman's default (bridge) network? Runs the static
    /// busybox of `image` (the rekor-node image carries one), which needs nothing else from the
    /// image, so a failure is the machine's (`Err` holds podman's reason), not the image's.
    pub fn probe_machine(&self, image: &str) -> Result<()> {
        self.run_once(image, "bridge", Some("/bin/busybox"), &["true"])
            .map(drop)
    }
}

/// A container started with `podman run -d`; removed (`podman rm -f`) when dropped.
pub struct Container<'a> {
    podman: &'a Podman,
    pub name: String,
}

impl<'a> Container<'a> {
    /// `podman run -d --name <name> <run_args>`.
    pub fn start(podman: &'a Podman, name: &str, run_args: &[String]) -> Result<Self> {
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.into()];
        args.extend(Podman::limit_args());
        args.extend(run_args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        podman.run_ok(&args)?;
        Ok(Self {
            podman,
            name: name.to_owned(),
        })
    }

    /// Whether the container is still running.
    pub fn running(&self) -> Result<bool> {
        let state =
            self.podman
                .run_ok(&["inspect", "--format", "{{.State.Running}}", &self.name])?;
        Ok(state.trim() == "true")
    }

    /// The container's output so far.
    pub fn logs(&self) -> String {
        match self.podman.output(&["logs", &self.name]) {
            Ok(output) => format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => format!("(no logs: {error:#})"),
        }
    }

    /// `podman stop -t <grace>` (SIGTERM, then SIGKILL), then the exit code.
    pub fn stop(&self, grace_seconds: u32) -> Result<i64> {
        self.podman
            .run_ok(&["stop", "-t", &grace_seconds.to_string(), &self.name])?;
        let code =
            self.podman
                .run_ok(&["inspect", "--format", "{{.State.ExitCode}}", &self.name])?;
        code.trim()
            .parse()
            .with_context(|| format!("exit code {code:?}"))
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.podman.output(&["rm", "-f", "-t", "0", &self.name]);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers first (their network namespaces and conmon processes), then the store.
        let _ = self.output(&["rm", "-a", "-f", "-t", "0"]);
        let _ = self.output(&["rmi", "-a", "-f"]);
    }
}
