//! CPU time by stage: a process's threads read from `/proc/<pid>/task/*/stat`, grouped by thread
//! name into the node's stages (the node names its threads after their jobs: `rekor-verify-N`
//! for the signature-verification pool, `rekor-worker` for the tokio runtime and its blocking
//! pool, `raft-log-writer`, `sled-io-N`; actix's HTTP workers and the actors' arbiters are
//! `actix-rt|system:…`, and the blocking pools of actix's runtimes, where the tile store's file
//! writes run, keep tokio's default name, `tokio-rt-worker`). Two samples around a write run,
//! divided by the entries it logged, give the CPU per entry of each stage without a profiler (the
//! benchmark report's "CPU per entry by stage"). Linux only; elsewhere the samples are empty.
//! `scripts/perf_breakdown.py` groups a profile's threads the same way: keep the two in step.

use std::collections::BTreeMap;
use std::path::Path;

/// The signature-verification pool's stage.
pub const VERIFICATION: &str = "verification pool";

/// The stages, in report order, and the thread-name prefixes that belong to each.
pub const STAGES: [(&str, &[&str]); 6] = [
    (VERIFICATION, &["rekor-verify"]),
    ("HTTP workers and actors", &["actix-rt", "actix-server"]),
    (
        "tokio runtime (Raft, forwarding, file IO)",
        // tokio's default thread name: `tokio-rt-worker` now, `tokio-runtime-worker` in older
        // releases.
        &["rekor-worker", "tokio-runtime", "tokio-rt-"],
    ),
    ("Raft log writer", &["raft-log-writer"]),
    ("sled", &["sled-", "log flusher"]),
    ("other", &[]),
];

/// CPU clock ticks of one process, by stage, plus its whole (threads that exited included).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSample {
    pub by_stage: BTreeMap<&'static str, u64>,
    pub total: u64,
}

/// The stage a thread named `comm` belongs to.
pub fn stage_of(comm: &str) -> &'static str {
    STAGES
        .iter()
        .find(|(_, prefixes)| prefixes.iter().any(|prefix| comm.starts_with(prefix)))
        .map_or("other", |(stage, _)| stage)
}

/// Reads every live thread of `pid`. Threads that exited since the previous sample are counted
/// in `total` only (their time is in the process's own `stat`), and show as "other".
pub fn sample(pid: u32) -> CpuSample {
    let mut sample = CpuSample {
        total: read_ticks(&Path::new("/proc").join(pid.to_string()).join("stat"))
            .map_or(0, |(_, ticks)| ticks),
        ..CpuSample::default()
    };
    let Ok(tasks) = std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("task")) else {
        return sample;
    };
    for task in tasks.flatten() {
        if let Some((comm, ticks)) = read_ticks(&task.path().join("stat")) {
            *sample.by_stage.entry(stage_of(&comm)).or_default() += ticks;
        }
    }
    sample
}

/// `(comm, utime + stime)` from a `stat` file. `comm` is in parentheses and may itself hold
/// spaces or parentheses, so the fields are counted from the last `)`.
fn read_ticks(stat: &Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(stat).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let mut fields = text.get(close + 1..)?.split_whitespace();
    // After the comm: state (3), …, utime is field 14 and stime field 15 of the whole line.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Clock ticks per second of `/proc`'s CPU times (`getconf CLK_TCK`; 100 on Linux in practice).
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// Microseconds of CPU per entry by stage between `before` and `after` of several processes
/// (the nodes of one cluster, summed), in [`STAGES`] order; "other" also takes the time of
/// threads that exited in between. Empty if nothing was logged.
pub fn micros_per_entry(
    before: &[CpuSample],
    after: &[CpuSample],
    entries: u64,
    ticks_per_second: f64,
) -> Vec<(String, f64)> {
    if entries == 0 || before.len() != after.len() {
        return Vec::new();
    }
    let mut ticks: BTreeMap<&'static str, i64> = BTreeMap::new();
    for (b, a) in before.iter().zip(after) {
        let mut staged = 0i64;
        for (stage, _) in STAGES {
            let delta = *a.by_stage.get(stage).unwrap_or(&0) as i64
                - *b.by_stage.get(stage).unwrap_or(&0) as i64;
            *ticks.entry(stage).or_default() += delta;
            staged += delta;
        }
        let total = a.total as i64 - b.total as i64;
        *ticks.entry("other").or_default() += (total - staged).max(0);
    }
    let micros = |t: i64| micros_per_entry_of(t.max(0) as u64, entries, ticks_per_second);
    STAGES
        .iter()
        .map(|(stage, _)| (stage.to_string(), micros(ticks[stage])))
        .collect()
}

/// One process's CPU per entry between `before` and `after`, in microseconds: all of it, and
/// its verification pool's part (what is left is its share of the HTTP, Raft, storage and
/// integration work). `None` if nothing was logged.
pub fn process_micros_per_entry(
    before: &CpuSample,
    after: &CpuSample,
    entries: u64,
    ticks_per_second: f64,
) -> Option<(f64, f64)> {
    if entries == 0 {
        return None;
    }
    let micros = |ticks: u64| micros_per_entry_of(ticks, entries, ticks_per_second);
    let verification = |sample: &CpuSample| *sample.by_stage.get(VERIFICATION).unwrap_or(&0);
    Some((
        micros(after.total.saturating_sub(before.total)),
        micros(verification(after).saturating_sub(verification(before))),
    ))
}

/// `ticks` of CPU as microseconds per entry.
fn micros_per_entry_of(ticks: u64, entries: u64, ticks_per_second: f64) -> f64 {
    ticks as f64 / ticks_per_second * 1e6 / entries as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_map_to_stages() {
        assert_eq!(stage_of("rekor-verify-1"), "verification pool");
        assert_eq!(stage_of("actix-rt|system"), "HTTP workers and actors");
        assert_eq!(
            stage_of("rekor-worker"),
            "tokio runtime (Raft, forwarding, file IO)"
        );
        assert_eq!(
            stage_of("tokio-rt-worker"),
            "tokio runtime (Raft, forwarding, file IO)"
        );
        assert_eq!(stage_of("raft-log-writer"), "Raft log writer");
        assert_eq!(stage_of("sled-io-3"), "sled");
        assert_eq!(stage_of("rekor-node"), "other");
    }

    #[test]
    fn one_process_splits_into_all_and_verification() {
        let sample = |total: u64, verification: u64| CpuSample {
            by_stage: BTreeMap::from([("verification pool", verification), ("other", 1)]),
            total,
        };
        // 300 ticks, 100 of them verification, over 1,000 entries at 100 ticks/s: 3,000 µs and
        // 1,000 µs of CPU each.
        let (all, verification) =
            process_micros_per_entry(&sample(50, 20), &sample(350, 120), 1_000, 100.0).unwrap();
        assert!((all - 3_000.0).abs() < 1e-9, "{all}");
        assert!((verification - 1_000.0).abs() < 1e-9, "{verification}");
        assert_eq!(
            process_micros_per_entry(&sample(0, 0), &sample(1, 1), 0, 100.0),
            None
        );
    }

    #[test]
    fn this_process_has_cpu_time_by_thread() {
        let busy = std::thread::Builder::new()
            .name("rekor-verify-9".into())
            .spawn(|| {
                let started = std::time::Instant::now();
                let mut x = 0u64;
                while started.elapsed() < std::time::Duration::from_millis(200) {
                    x = x.wrapping_mul(31).wrapping_add(7);
                }
                x
            })
            .unwrap();
        let before = sample(std::process::id());
        let _ = busy.join();
        let after = sample(std::process::id());
        assert!(after.total >= before.total);
        // The spinning thread exited: its time is in the total, hence in "other".
        let per_entry = micros_per_entry(&[before], &[after], 1, ticks_per_second());
        assert_eq!(per_entry.len(), STAGES.len());
        let sum: f64 = per_entry.iter().map(|(_, micros)| micros).sum();
        assert!(sum >= 20_000.0, "{per_entry:?}");
    }

    #[test]
    fn comm_with_parentheses_and_spaces_parses() {
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("stat");
        std::fs::write(
            &stat,
            "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 120 30 0 0 20 0 1 0 5 6 7\n",
        )
        .unwrap();
        assert_eq!(read_ticks(&stat), Some(("a (b) c".to_owned(), 150)));
    }
}
