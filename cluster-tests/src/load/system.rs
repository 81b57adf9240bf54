//! What the operating system and a node's `/metrics` say about a node: peak resident memory
//! (`VmHWM` in `/proc/<pid>/status`), bytes on disk, and the node's own timing histograms.

use std::path::Path;

use anyhow::{Context, Result};

/// Peak resident set size of process `pid`, in bytes (Linux `VmHWM`).
pub fn peak_rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .context("no VmHWM line")?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

/// Bytes of all regular files under `dir` (apparent size, as `du --apparent-size`).
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata()?.len();
            }
        }
    }
    Ok(total)
}

/// Files under `root`, as `/`-separated paths relative to it.
pub fn relative_files(root: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                let parts: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                files.push(parts.join("/"));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Mean of a Prometheus histogram (`<name>_sum / <name>_count`) with its count, from the
/// text exposition format.
pub fn histogram_mean(metrics: &str, name: &str) -> Option<(f64, f64)> {
    let value = |suffix: &str| -> Option<f64> {
        let key = format!("{name}_{suffix}");
        metrics.lines().find_map(|line| {
            let (metric, value) = line.rsplit_once(' ')?;
            (metric == key || metric.starts_with(&format!("{key}{{")))
                .then(|| value.parse().ok())?
        })
    };
    let count = value("count")?;
    let sum = value("sum")?;
    (count > 0.0).then(|| (sum / count, count))
}

/// The value of a gauge or counter without labels.
pub fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (metric, value) = line.rsplit_once(' ')?;
        (metric == name).then(|| value.parse().ok())?
    })
}

/// Re-execute this benchmark process with `MALLOC_ARENA_MAX=2` unless it is set, as
/// `rekor-node serve` does for itself (see `node/src/malloc_arenas.rs` for why), so that the
/// in-process growth scenario measures memory the way a node holds it. Returns only if it does
/// not re-execute.
pub fn bound_malloc_arenas_like_the_node() {
    const VARIABLE: &str = "MALLOC_ARENA_MAX";
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || std::env::var_os(VARIABLE).is_some() {
        return;
    }
    use std::os::unix::process::CommandExt;
    if let Ok(program) = std::env::current_exe() {
        let error = std::process::Command::new(program)
            .args(std::env::args_os().skip(1))
            .env(VARIABLE, "2")
            .exec();
        eprintln!("could not re-execute with {VARIABLE}=2 ({error}); glibc's default arenas");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_peak_rss() {
        let rss = peak_rss_bytes(std::process::id()).unwrap();
        assert!(rss > 1024 * 1024, "{rss}");
    }

    #[test]
    fn parses_prometheus_histograms_and_gauges() {
        let text = "# HELP x y\nrekor_node_batch_size_bucket{le=\"1\"} 3\nrekor_node_batch_size_sum 600\nrekor_node_batch_size_count 4\nrekor_node_integrated_size 42\n";
        assert_eq!(
            histogram_mean(text, "rekor_node_batch_size"),
            Some((150.0, 4.0))
        );
        assert_eq!(histogram_mean(text, "missing"), None);
        assert_eq!(metric_value(text, "rekor_node_integrated_size"), Some(42.0));
    }

    #[test]
    fn lists_and_sizes_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tile/0")).unwrap();
        std::fs::write(dir.path().join("tile/0/000"), [0u8; 64]).unwrap();
        std::fs::write(dir.path().join("checkpoint"), b"abc").unwrap();
        assert_eq!(
            relative_files(dir.path()).unwrap(),
            vec!["checkpoint".to_owned(), "tile/0/000".to_owned()]
        );
        assert_eq!(dir_bytes(dir.path()).unwrap(), 67);
    }
}
