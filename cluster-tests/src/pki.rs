//! A test cluster's certificates: a development CA, one certificate per node and the harness's
//! operator certificate, all made by the binary under test (`rekor-node certs`), so the tests
//! exercise the same files an operator would use.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::process::node_binary;

/// The operator name of the harness's admin calls.
pub const OPERATOR: &str = "harness";

/// Who a test client presents itself as on an internal listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Operator,
    Node(u64),
}

/// A directory of certificates made by `rekor-node certs`.
#[derive(Debug, Clone)]
pub struct ClusterPki {
    dir: PathBuf,
}

impl ClusterPki {
    /// Makes a CA in `dir` with certificates for nodes `ids` and the harness operator.
    pub fn create(dir: &Path, ids: impl IntoIterator<Item = u64>) -> Result<Self> {
        let pki = Self {
            dir: dir.to_path_buf(),
        };
        let ids: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
        let mut args = vec!["--operator".to_owned(), OPERATOR.to_owned()];
        if !ids.is_empty() {
            args.push("--node-ids".into());
            args.push(ids.join(","));
        }
        pki.certs(&args)?;
        Ok(pki)
    }

    /// Runs `rekor-node certs --dir <dir>` with `args` (the CA in the directory is reused).
    pub fn certs(&self, args: &[String]) -> Result<()> {
        let output = Command::new(node_binary()?)
            .arg("certs")
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .stdout(Stdio::null())
            .output()
            .context("running rekor-node certs")?;
        if !output.status.success() {
            bail!(
                "rekor-node certs {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Issues node `id`'s certificate unless it exists.
    pub fn ensure_node(&self, id: u64) -> Result<()> {
        if self.node_cert(id).exists() {
            return Ok(());
        }
        self.certs(&["--node-ids".into(), id.to_string()])
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn node_cert(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.pem"))
    }
    pub fn node_key(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}-key.pem"))
    }
    pub fn operator_cert(&self) -> PathBuf {
        self.dir.join(format!("operator-{OPERATOR}.pem"))
    }
    pub fn operator_key(&self) -> PathBuf {
        self.dir.join(format!("operator-{OPERATOR}-key.pem"))
    }

    /// The `serve` flags of node `id`'s mutual TLS.
    pub fn serve_args(&self, id: u64) -> Vec<String> {
        vec![
            "--internal-tls-ca-file".into(),
            self.ca().display().to_string(),
            "--internal-tls-cert-file".into(),
            self.node_cert(id).display().to_string(),
            "--internal-tls-key-file".into(),
            self.node_key(id).display().to_string(),
        ]
    }

    /// The admin commands' flags for the operator certificate.
    pub fn operator_args(&self) -> Vec<String> {
        vec![
            "--tls-ca-file".into(),
            self.ca().display().to_string(),
            "--tls-cert-file".into(),
            self.operator_cert().display().to_string(),
            "--tls-key-file".into(),
            self.operator_key().display().to_string(),
        ]
    }

    /// An HTTPS client that trusts only the cluster CA and presents `identity`'s certificate.
    pub fn client(&self, identity: Identity) -> Result<reqwest::Client> {
        let (cert, key) = match identity {
            Identity::Operator => (self.operator_cert(), self.operator_key()),
            Identity::Node(id) => (self.node_cert(id), self.node_key(id)),
        };
        let mut pem = std::fs::read(&cert)?;
        pem.extend_from_slice(&std::fs::read(&key)?);
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.ca())?)?;
        Ok(reqwest::Client::builder()
            .tls_certs_only([ca])
            .identity(reqwest::Identity::from_pem(&pem)?)
            .no_proxy()
            .build()?)
    }
}
