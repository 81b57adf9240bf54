//! A full disk on demand (cluster operations issue: "a full disk simulated by a small
//! filesystem"): a small tmpfs mounted at a node's data directory, and a filler file that takes
//! every free byte of it so the node's writes fail with ENOSPC. Needs `mount` (root, or
//! CAP_SYS_ADMIN); unmounted (lazily, so a process still holding files cannot block it) on drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A tmpfs of a fixed size mounted at a directory.
pub struct SmallFilesystem {
    mount_point: PathBuf,
}

impl SmallFilesystem {
    /// Mounts a tmpfs of `size_mib` MiB at `mount_point` (created if missing).
    pub fn mount(mount_point: &Path, size_mib: u64) -> Result<Self> {
        std::fs::create_dir_all(mount_point)
            .with_context(|| format!("creating {}", mount_point.display()))?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(mount_point)
            .output()
            .context("running mount")?;
        if !output.status.success() {
            bail!(
                "mount -t tmpfs at {} failed: {}",
                mount_point.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(Self {
            mount_point: mount_point.to_owned(),
        })
    }

    fn filler(&self) -> PathBuf {
        self.mount_point.join("filler")
    }

    /// Writes a filler file until the filesystem refuses with ENOSPC; returns its size in bytes.
    pub fn fill(&self) -> Result<u64> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())?;
        let mut written = 0u64;
        // Big chunks first, then smaller ones, so the last free bytes are taken too.
        let mut chunk = 1usize << 20;
        let zeros = vec![0u8; chunk];
        while chunk > 0 {
            match file.write(&zeros[..chunk]) {
                Ok(0) => chunk /= 2,
                Ok(n) => written += n as u64,
                Err(error) if error.raw_os_error() == Some(28) => chunk /= 2,
                Err(error) => return Err(error).context("writing the filler file"),
            }
        }
        let _ = file.sync_all();
        Ok(written)
    }

    /// Deletes the filler file, giving the space back.
    pub fn free(&self) -> Result<()> {
        std::fs::remove_file(self.filler()).context("deleting the filler file")
    }

    /// Free bytes on the filesystem (from `df`).
    pub fn available(&self) -> Result<u64> {
        let output = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.mount_point)
            .output()?;
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .context("parsing df output")
    }
}

/// Whether this process may mount a tmpfs: `Ok(())`, or why not. Running as root (as here and in
/// CI) it should always be allowed; in an unprivileged container it is not.
pub fn mount_permitted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    SmallFilesystem::mount(&dir.path().join("probe"), 1).map(drop)
}

/// Whether this process runs as root (`id -u` is 0).
pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg("-l")
            .arg(&self.mount_point)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            eprintln!(
                "warning: could not unmount the test tmpfs at {}",
                self.mount_point.display()
            );
        }
    }
}
