//! The `test-witness` binary (`src/bin/test-witness.rs`) as the tests run it next to a cluster.
//!
//! The order is fixed by the node: it reads its witness policy at start-up, so the witness's
//! port and the policy naming it come first ([`WitnessPolicy::write`], whose
//! [`WitnessPolicy::node_args`] go to the cluster's start), and the witness itself starts once
//! the cluster exists, because it needs the log's verifier key ([`TestWitness::start`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{free_port, wait_until, Cluster};

/// The repository's test vectors (sources and licences in its README).
const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata");

/// Verifier key of the upstream e2e witness key (testdata/rekor-tiles/witness/policy.yaml).
pub const TEST_WITNESS_VKEY: &str =
    "rekor-witness-test+a478f5cd+AUtKAvrTeY7srtAMfP5JCUOkZoU+A7F5VA094y5LGr89";

/// Which witness program to run, and with which key.
#[derive(Debug, Clone)]
pub struct WitnessProgram {
    /// The `test-witness` binary.
    pub binary: PathBuf,
    /// Its `--key` argument (`@file` with the witness's private key).
    pub key_arg: String,
    /// The witness's verifier key (for the policy file).
    pub vkey: String,
}

impl WitnessProgram {
    /// `binary` signing with the upstream e2e witness key from the test vectors. Integration
    /// tests pass `env!("CARGO_BIN_EXE_test-witness")`.
    pub fn with_test_key(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            key_arg: format!("@{TESTDATA}/rekor-tiles/witness/private.key"),
            vkey: TEST_WITNESS_VKEY.to_owned(),
        }
    }
}

/// A one-witness policy file (`w1`, quorum `w1`) and the loopback port it names.
#[derive(Debug, Clone)]
pub struct WitnessPolicy {
    /// Where the witness must listen.
    pub port: u16,
    /// The policy file.
    pub path: PathBuf,
}

impl WitnessPolicy {
    /// Picks a free port and writes `dir/witness-policy.txt` naming the witness with `vkey` there.
    pub fn write(dir: &Path, vkey: &str) -> Result<Self> {
        let port = free_port()?;
        let path = dir.join("witness-policy.txt");
        std::fs::write(
            &path,
            format!("# test witness\nwitness w1 {vkey} http://127.0.0.1:{port}\nquorum w1\n"),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { port, path })
    }

    /// The node flags for this policy: the file, plain HTTP (the test witness listens on loopback
    /// without TLS) and a 1 s timeout per witness request.
    pub fn node_args(&self) -> Vec<String> {
        vec![
            "--witness-policy".to_owned(),
            self.path.display().to_string(),
            "--witness-allow-http".to_owned(),
            "--witness-timeout-ms".to_owned(),
            "1000".to_owned(),
        ]
    }
}

/// A running `test-witness` process; killed when dropped.
pub struct TestWitness {
    child: Child,
    log_path: PathBuf,
}

impl TestWitness {
    /// Starts `program` on `port`, cosigning checkpoints signed with `cluster`'s log key, with
    /// `extra` flags (the adversarial modes `--copies`, `--claim-size`), and returns once it
    /// accepts connections. Its output goes to `dir/witness-<port>.log`, appended, so a witness
    /// restarted on the same port keeps the earlier lines.
    pub async fn start(
        program: &WitnessProgram,
        port: u16,
        cluster: &Cluster,
        dir: &Path,
        extra: &[&str],
    ) -> Result<Self> {
        let log_vkey = log_vkey(cluster)?;
        let log_path = dir.join(format!("witness-{port}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let child = Command::new(&program.binary)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--key", &program.key_arg])
            .args(["--log-vkey", &log_vkey])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning test-witness")?;
        let witness = Self { child, log_path };
        wait_until(
            "the test witness to listen",
            Duration::from_secs(10),
            || async {
                Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ()))
            },
        )
        .await
        .with_context(|| format!("test-witness log:\n{}", witness.log()))?;
        Ok(witness)
    }

    /// Everything the witness has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills the witness (a down witness, for the node's point of view).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestWitness {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The log's verifier key, from the cluster's signing key.
fn log_vkey(cluster: &Cluster) -> Result<String> {
    let pem = std::fs::read_to_string(&cluster.key_file)
        .with_context(|| format!("reading {}", cluster.key_file.display()))?;
    Ok(
        rekor_storage::note::Ed25519NoteSigner::from_pkcs8_pem(&cluster.origin, &pem)
            .context("the cluster's key")?
            .verifier_key(),
    )
}
