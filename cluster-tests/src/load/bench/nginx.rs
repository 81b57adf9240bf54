//! nginx as the read scenarios' yardstick: a throwaway configuration serving a node's tile
//! directory under `/api/v2/`, started on a free loopback port and stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{wait_until, LogClient};

/// nginx serving a tile directory under `/api/v2/` on a loopback port. Killed when dropped.
pub(super) struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub(super) async fn start(binary: &str, tile_dir: &Path) -> Result<Self> {
        let binary = find_program(binary).with_context(|| format!("{binary} not found"))?;
        let dir = tempfile::tempdir()?;
        let port = crate::free_port()?;
        let prefix = dir.path().display().to_string();
        // As root, nginx's workers would drop to `nobody`, who cannot read the node's 0700
        // temporary directories; run them as the current user instead.
        let user = if current_uid() == Some(0) {
            "user root;\n"
        } else {
            ""
        };
        let config = format!(
            "{user}worker_processes auto;\ndaemon off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n  keepalive_timeout 120s;\n\
               client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n  fastcgi_temp_path {prefix}/fastcgi;\n\
               uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n  default_type application/octet-stream;\n\
               server {{\n    listen 127.0.0.1:{port};\n    location /api/v2/ {{ alias {tiles}/; }}\n  }}\n}}\n",
            tiles = tile_dir.display(),
        );
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning nginx")?;
        let nginx = Self {
            child,
            port,
            _dir: dir,
        };
        let client = LogClient::new(&nginx.base_url());
        let ready = wait_until(
            "nginx to serve the checkpoint",
            Duration::from_secs(10),
            || {
                let client = client.clone();
                async move { Ok(client.checkpoint().await.ok().flatten().map(|_| ())) }
            },
        )
        .await;
        if let Err(error) = ready {
            let log =
                std::fs::read_to_string(nginx._dir.path().join("error.log")).unwrap_or_default();
            bail!("{error}; nginx error log: {log}");
        }
        Ok(nginx)
    }

    pub(super) fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    /// SIGTERM lets the master stop its workers; a SIGKILLed master would orphan them, still
    /// holding cores and the port after the benchmark.
    fn drop(&mut self) {
        let terminated = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|status| status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while terminated && std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` if it is a path, else the first match on PATH or in the sbin directories (where
/// Debian puts nginx, often outside a non-login PATH).
fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return path.exists().then_some(path);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file());
    found
}

fn current_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
