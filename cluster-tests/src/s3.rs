//! A real S3-compatible server (`s3s-fs`) for tests that put tile stores in a bucket.
//!
//! The binary is `$S3S_FS_BIN` (the test command installs it), else `s3s-fs` on `PATH`. Under
//! `CI` a missing binary is an error, never a skipped test. The server can be stopped and
//! started again on the same port and directory, to take the store away from running nodes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::process::{free_port, wait_until};

const ACCESS_KEY: &str = "test-access";
const SECRET_KEY: &str = "test-secret";

/// An `s3s-fs` process serving the buckets under a temporary directory; killed on drop.
pub struct S3Server {
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    root: tempfile::TempDir,
}

/// The `s3s-fs` binary, or why there is none.
pub fn s3s_fs_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("S3S_FS_BIN") {
        return Ok(PathBuf::from(path));
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("s3s-fs"))
                .find(|path| path.is_file())
        })
        .context("s3s-fs not found: set S3S_FS_BIN (scripts/test.sh installs it)")
}

impl S3Server {
    /// Starts a server with the given (empty) buckets and waits until it accepts connections.
    pub async fn start(buckets: &[&str]) -> Result<Self> {
        let binary = s3s_fs_binary()?;
        let root = tempfile::tempdir()?;
        for bucket in buckets {
            std::fs::create_dir(root.path().join(bucket))?;
        }
        let mut server = S3Server {
            child: None,
            binary,
            port: free_port()?,
            root,
        };
        server.resume().await?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a `rekor-node` (object_store's S3 builder) needs to reach this server.
    pub fn node_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// Kills the server (the bucket contents stay on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory; waits until it accepts.
    pub async fn resume(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("s3s-fs is already running");
        }
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.port);
        wait_until(
            "s3s-fs to accept connections",
            Duration::from_secs(20),
            || {
                let address = address.clone();
                async move { Ok(tokio::net::TcpStream::connect(&address).await.ok()) }
            },
        )
        .await?;
        Ok(())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
