//! A bound on glibc's malloc arenas for `serve`.
//!
//! Rust allocations go to jemalloc (the global allocator, `main.rs`); glibc's malloc still serves
//! the C code linked in (aws-lc's signature arithmetic, jemalloc's own bootstrap), so the bound
//! still applies to those. It was written for glibc as the Rust allocator, which it was until the
//! second performance round:
//!
//! glibc gives threads that allocate at the same time arenas of their own, up to eight per core,
//! and memory freed into one arena is not reused by another. The node allocates large, short-lived
//! buffers (Raft batches, entry bodies read back for integration, snapshots) on many threads —
//! tokio's blocking pool, the log writer, the integrator — and frees them on others, so with the
//! default the resident set climbed with the log: the growth scenario (the node's storage and
//! integration code in-process) held 400 MiB at 2.5 M entries with glibc's default and 232 MiB with
//! `MALLOC_ARENA_MAX=2`, at the same rate. glibc reads the variable only when the process starts,
//! so `serve` executes itself again, once, with it set, unless it is set already (any value: an
//! operator's choice wins). On other C libraries, or if the re-execution fails, nothing changes.

/// The variable glibc reads, and the value `serve` uses when none is set.
pub const VARIABLE: &str = "MALLOC_ARENA_MAX";
const DEFAULT_ARENAS: &str = "2";

/// Re-execute this process with [`VARIABLE`] set if it is not; returns only if it does not
/// (already set, not glibc, or the exec failed — said on stderr).
pub fn bound_or_reexec() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || std::env::var_os(VARIABLE).is_some() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(program)
        .args(std::env::args_os().skip(1))
        .env(VARIABLE, DEFAULT_ARENAS)
        .exec();
    eprintln!("rekor-node: could not re-execute with {VARIABLE}={DEFAULT_ARENAS} ({error}); continuing with glibc's default arenas");
}
