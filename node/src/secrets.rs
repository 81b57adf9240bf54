//! Private files and secrets: the checkpoint signing key and the cluster secret.
//!
//! Whoever reads the signing key can fork the log, and whoever reads the cluster secret can vote,
//! append and change membership; so both are refused when other users could read them:
//!
//! - a file owned by the user running the node must have no group or other permission bits
//!   (`chmod 600`), as `ssh` requires of private keys;
//! - a file owned by root may also be readable by its group (`0640`, `0440`): that is how
//!   root-managed secret mounts reach a non-root service (a Kubernetes Secret volume with
//!   `fsGroup`, a file provisioned by configuration management), and root already owns the
//!   machine. The same rule PostgreSQL applies to its key files.
//!
//! A secret shorter than [`MIN_SECRET_BYTES`] is refused whatever its source (flag, environment
//! variable or file): it could be guessed or brute-forced off one captured request.
//!
//! New private files are created `0600` with `create_new`, written, fsynced, and their directory
//! fsynced too, so a generated key or secret survives a crash together with its name.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tracing::info;

use crate::config::SecretSource;

/// The shortest cluster secret accepted, in bytes (a random 32-byte secret, hex-encoded, is 64).
pub const MIN_SECRET_BYTES: usize = 32;

/// Writes `bytes` to a new file readable only by its owner, durably (file and directory).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    sync_directory(parent).with_context(|| format!("syncing directory {}", parent.display()))?;
    Ok(())
}

/// Replaces `path` (or creates it) with a file readable only by its owner, atomically: a
/// reader sees the old bytes or the new ones, never a mix (renewed certificates are reloaded by
/// running nodes).
pub fn replace_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".new-{}", std::process::id()));
    let staging = std::path::PathBuf::from(staging);
    // A leftover of an interrupted run of ours.
    let _ = std::fs::remove_file(&staging);
    write_private_file(&staging, bytes)?;
    std::fs::rename(&staging, path).with_context(|| format!("replacing {}", path.display()))?;
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_directory(parent).with_context(|| format!("syncing directory {}", parent.display()))
}

#[cfg(unix)]
fn sync_directory(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Reads a private file (`what` names it in errors), refusing one that other users can read.
pub fn read_private_file(path: &Path, what: &str) -> Result<String> {
    check_private(path, what)?;
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

#[cfg(unix)]
fn check_private(path: &Path, what: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let metadata =
        std::fs::metadata(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let mode = metadata.mode() & 0o777;
    let group_allowed = metadata.uid() == 0;
    let exposed = if group_allowed { 0o007 } else { 0o077 };
    if mode & exposed != 0 {
        let fix = if group_allowed {
            "chmod 640"
        } else {
            "chmod 600"
        };
        bail!(
            "{what} {} is readable by other users (mode {mode:03o}); restrict it ({fix}) and \
             start again — anyone who can read it can {}",
            path.display(),
            if what.contains("TLS") {
                "impersonate this node or operator to the cluster"
            } else if what.contains("CA") {
                "issue certificates the cluster trusts"
            } else if what.contains("key") {
                "sign checkpoints as this log"
            } else {
                "act as a member of this cluster"
            }
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _what: &str) -> Result<()> {
    Ok(())
}

/// Refuses a secret shorter than [`MIN_SECRET_BYTES`]; `source` says where it came from.
pub fn check_secret_length(secret: &str, source: &str) -> Result<()> {
    if secret.len() < MIN_SECRET_BYTES {
        bail!(
            "the cluster secret from {source} is {} bytes; at least {MIN_SECRET_BYTES} are needed \
             (e.g. `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'`)",
            secret.len()
        );
    }
    Ok(())
}

/// Reads the cluster secret, generating a random one for a fresh single node.
pub fn load_cluster_secret(source: &SecretSource) -> Result<String> {
    match source {
        SecretSource::Literal(secret) => {
            check_secret_length(secret, "--cluster-secret / REKOR_CLUSTER_SECRET")?;
            Ok(secret.clone())
        }
        SecretSource::File {
            path,
            generate_if_missing,
        } => {
            if !path.exists() && *generate_if_missing {
                generate_secret_file(path)?;
                info!(path = %path.display(), "generated a cluster secret");
            }
            let secret = read_private_file(path, "the cluster secret")?
                .trim()
                .to_owned();
            check_secret_length(&secret, &path.display().to_string())?;
            Ok(secret)
        }
    }
}

fn generate_secret_file(path: &Path) -> Result<()> {
    use rand_core::RngCore;
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    write_private_file(path, hex::encode(bytes).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn new_private_files_are_owner_only_and_readable_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("key.pem");
        write_private_file(&path, b"secret").unwrap();
        assert_eq!(read_private_file(&path, "the key").unwrap(), "secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        }
        assert!(
            write_private_file(&path, b"again").is_err(),
            "never overwrites"
        );
    }

    #[cfg(unix)]
    #[test]
    fn files_other_users_can_read_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "secret").unwrap();
        for mode in [0o644, 0o604, 0o666, 0o601] {
            chmod(&path, mode);
            let error = read_private_file(&path, "the signing key").unwrap_err();
            assert!(
                error.to_string().contains("readable by other users"),
                "{mode:o}: {error}"
            );
        }
        chmod(&path, 0o400);
        assert!(read_private_file(&path, "the signing key").is_ok());
    }

    #[test]
    fn short_secrets_are_refused_from_every_source() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_cluster_secret(&SecretSource::Literal("short".into())).is_err());
        assert!(load_cluster_secret(&SecretSource::Literal("x".repeat(31))).is_err());
        assert!(load_cluster_secret(&SecretSource::Literal("x".repeat(32))).is_ok());
        let path = dir.path().join("secret");
        write_private_file(&path, b"0123456789abcdef").unwrap();
        let from_file = SecretSource::File {
            path: path.clone(),
            generate_if_missing: false,
        };
        assert!(load_cluster_secret(&from_file).is_err());
        let generated = SecretSource::File {
            path: dir.path().join("generated"),
            generate_if_missing: true,
        };
        assert_eq!(load_cluster_secret(&generated).unwrap().len(), 64);
    }
}
