//! Fault hooks of the live mode (issue "Chaos against a running deployment"): the operator's own
//! commands that kill, start, isolate or heal one node of a deployment the tool did not start
//! (`systemctl`, `docker compose`, `kubectl`, `scripts/local-cluster.sh`).
//!
//! A hook is a command template run through `sh -c` after its placeholders are filled in for one
//! node: `{index}` (1-based position in the tool's node list), `{index0}` (0-based, for a
//! StatefulSet's pod ordinal), `{id}` (the Raft node id the node reports) and `{url}` (its public
//! URL). Every run has a deadline; a hook that overruns is killed with its whole process group,
//! and the output of a hook that failed is kept (its tail) for the report.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// Bytes of a hook's stdout and stderr kept for the report (the tail).
const OUTPUT_KEPT: usize = 4096;

/// The node a hook acts on.
#[derive(Debug, Clone)]
pub struct HookTarget {
    /// 1-based position in the node list.
    pub index: usize,
    /// Raft node id, if known.
    pub id: Option<u64>,
    pub url: String,
}

/// A command template with placeholders.
#[derive(Debug, Clone)]
pub struct Hook {
    /// What the hook does (`kill`, `start`, ...), for messages.
    pub name: &'static str,
    pub template: String,
    pub timeout: Duration,
}

/// A hook that did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{name} hook `{command}` {failure} after {elapsed_ms} ms; output:\n{output}")]
pub struct HookFailure {
    pub name: &'static str,
    pub command: String,
    /// `exited with status N`, `timed out`, or why it could not start.
    pub failure: String,
    pub elapsed_ms: u128,
    /// The tail of its stdout and stderr.
    pub output: String,
}

impl Hook {
    /// The command line for `target`.
    pub fn command_for(&self, target: &HookTarget) -> String {
        let id = target.id.map(|id| id.to_string()).unwrap_or_default();
        self.template
            .replace("{index0}", &(target.index.saturating_sub(1)).to_string())
            .replace("{index}", &target.index.to_string())
            .replace("{id}", &id)
            .replace("{url}", &target.url)
    }

    /// Runs the hook for `target`; returns how long it took.
    pub async fn run(&self, target: &HookTarget) -> Result<Duration, HookFailure> {
        let command = self.command_for(target);
        let started = Instant::now();
        let failure = |failure: String, output: String| HookFailure {
            name: self.name,
            command: command.clone(),
            failure,
            elapsed_ms: started.elapsed().as_millis(),
            output,
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills whatever it started too.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| failure(format!("could not start: {error}"), String::new()))?;
        let group = child.id();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let collect = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let read_out = async {
                if let Some(pipe) = stdout.as_mut() {
                    let _ = pipe.read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(pipe) = stderr.as_mut() {
                    let _ = pipe.read_to_end(&mut err).await;
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (status, out, err)
        };
        match tokio::time::timeout(self.timeout, collect).await {
            Ok((Ok(status), out, err)) if status.success() => {
                let _ = (out, err);
                Ok(started.elapsed())
            }
            Ok((Ok(status), out, err)) => Err(failure(
                format!("exited with {status}"),
                output_tail(&out, &err),
            )),
            Ok((Err(error), out, err)) => Err(failure(
                format!("wait failed: {error}"),
                output_tail(&out, &err),
            )),
            Err(_) => {
                if let Some(group) = group {
                    kill_group(group).await;
                }
                Err(failure(
                    format!("timed out (limit {} s)", self.timeout.as_secs()),
                    "(output not collected: the hook was killed)".to_owned(),
                ))
            }
        }
    }
}

/// SIGKILL to a whole process group.
async fn kill_group(group: u32) {
    let _ = tokio::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

fn output_tail(out: &[u8], err: &[u8]) -> String {
    let mut text = String::new();
    for (label, bytes) in [("stdout", out), ("stderr", err)] {
        let bytes = &bytes[bytes.len().saturating_sub(OUTPUT_KEPT)..];
        let body = String::from_utf8_lossy(bytes);
        let body = body.trim_end();
        if !body.is_empty() {
            text.push_str(&format!("--- {label} ---\n{body}\n"));
        }
    }
    if text.is_empty() {
        text.push_str("(no output)\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> HookTarget {
        HookTarget {
            index: 2,
            id: Some(7),
            url: "http://127.0.0.1:3010".into(),
        }
    }

    #[test]
    fn placeholders_are_filled_in() {
        let hook = Hook {
            name: "kill",
            template: "kubectl delete pod rekor-node-{index0}; x {index} {id} {url}".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            hook.command_for(&target()),
            "kubectl delete pod rekor-node-1; x 2 7 http://127.0.0.1:3010"
        );
    }

    #[tokio::test]
    async fn a_failing_hook_reports_its_output() {
        let hook = Hook {
            name: "kill",
            template: "echo about node {index}; echo broken >&2; exit 3".into(),
            timeout: Duration::from_secs(10),
        };
        let failure = hook.run(&target()).await.unwrap_err();
        assert!(failure.failure.contains("exit status: 3"), "{failure}");
        assert!(failure.output.contains("about node 2"), "{failure}");
        assert!(failure.output.contains("broken"), "{failure}");
    }

    #[tokio::test]
    async fn a_hook_past_its_deadline_is_killed() {
        let hook = Hook {
            name: "start",
            template: "sleep 30".into(),
            timeout: Duration::from_millis(300),
        };
        let started = Instant::now();
        let failure = hook.run(&target()).await.unwrap_err();
        assert!(failure.failure.contains("timed out"), "{failure}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_succeeding_hook_is_ok() {
        let hook = Hook {
            name: "heal",
            template: "true".into(),
            timeout: Duration::from_secs(10),
        };
        assert!(hook.run(&target()).await.is_ok());
    }
}
