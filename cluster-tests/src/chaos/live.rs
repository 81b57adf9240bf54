//! Chaos against a running deployment (issue "Chaos against a running deployment"): the `chaos
//! live` mode drives a cluster the tool did not start.
//!
//! It knows the nodes only by their public URLs and touches them only through what they serve
//! publicly (`/status.json` for the leader, `/livez` and `/healthz` for liveness and readiness, the
//! read API for the checker) and through the operator's hook commands ([`super::hooks`]) for
//! faults. So the same run works against `scripts/local-cluster.sh`, `docker compose`, systemd
//! units or a Kubernetes StatefulSet. Each run puts open-loop load on every node, applies one
//! fault, waits for the cluster to recover, and ends with the invariant checker
//! ([`super::checker`]) over the live nodes; a last check covers everything acknowledged in the
//! whole session (nothing lost across all the faults, no size with two roots among every
//! checkpoint seen).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::checker::{check_cluster, LogVerifier, NodeView, Observations};
use super::hooks::{Hook, HookTarget};
use super::load::{Answer, CheckpointPoller, Load, LoadConfig};
use crate::{wait_until, EntryFactory, LogClient};

/// The scenarios of the live mode, by name.
pub const LIVE_SCENARIOS: &[&str] = &[
    "leader-kill",
    "leader-restart",
    "follower-restart",
    "leader-isolation",
    "check",
];

/// Most bytes read of a `/status.json`, `/livez` or `/healthz` answer.
const PROBE_BODY_LIMIT: usize = 1 << 20;

/// The operator's commands for one kind of fault.
#[derive(Debug, Clone, Default)]
pub struct LiveHooks {
    /// Stops a node abruptly (SIGKILL, `docker compose kill`, `kubectl delete pod --force`).
    pub kill: Option<Hook>,
    /// Stops a node gracefully, as a planned restart does (SIGTERM, `systemctl stop`,
    /// `docker compose stop`, `kubectl delete pod`): a leader hands its leadership over first.
    pub stop: Option<Hook>,
    /// Starts a killed node again. Without it the deployment must restart it by itself (a
    /// StatefulSet, `restart: always`).
    pub start: Option<Hook>,
    /// Cuts a node off from the others (or freezes it: SIGSTOP is a stand-in).
    pub isolate: Option<Hook>,
    /// Undoes `isolate`.
    pub heal: Option<Hook>,
}

/// How a live session runs.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Each node's public base URL; hooks see position `i` as `{index}` = i + 1.
    pub urls: Vec<String>,
    pub hooks: LiveHooks,
    /// Open-loop load (its `rate` should be set).
    pub load: LoadConfig,
    /// Length of each load phase (before the fault, after recovery, after the node is back).
    pub phase: Duration,
    /// How long to wait for a new leader, for the first 201 after a fault, and for a node to
    /// come back.
    pub recovery_timeout: Duration,
    /// How long the checker waits for the nodes to converge.
    pub convergence_timeout: Duration,
}

/// One node of the deployment, as the tool sees it.
#[derive(Clone)]
struct LiveNode {
    /// 1-based position in the URL list.
    index: usize,
    url: String,
    id: u64,
    client: LogClient,
}

impl LiveNode {
    fn target(&self) -> HookTarget {
        HookTarget {
            index: self.index,
            id: Some(self.id),
            url: self.url.clone(),
        }
    }

    fn view(&self) -> NodeView {
        NodeView {
            id: self.id,
            client: self.client.clone(),
        }
    }
}

/// What `/status.json` says about Raft.
#[derive(Debug, Clone)]
struct RaftStatus {
    node_id: u64,
    state: String,
    term: u64,
    leader: Option<u64>,
}

/// GETs on the nodes' public probes, with short deadlines (a frozen node must not hang a wait).
#[derive(Clone)]
struct Probe {
    http: reqwest::Client,
}

impl Probe {
    fn new() -> Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(2))
                .build()?,
        })
    }

    /// Status code and body (at most [`PROBE_BODY_LIMIT`] bytes) of `GET {url}{path}`.
    async fn get(&self, url: &str, path: &str) -> Result<(u16, Vec<u8>)> {
        let mut response = self
            .http
            .get(format!("{}{path}", url.trim_end_matches('/')))
            .send()
            .await?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > PROBE_BODY_LIMIT {
                bail!("{url}{path}: answer larger than {PROBE_BODY_LIMIT} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    async fn raft_status(&self, url: &str) -> Result<RaftStatus> {
        let (status, body) = self.get(url, "/status.json").await?;
        if status != 200 {
            bail!("{url}/status.json: HTTP {status}");
        }
        let json: serde_json::Value =
            serde_json::from_slice(&body).with_context(|| format!("{url}/status.json"))?;
        Ok(RaftStatus {
            node_id: json["node_id"]
                .as_u64()
                .ok_or_else(|| anyhow!("{url}/status.json has no node_id"))?,
            state: json["state"].as_str().unwrap_or_default().to_owned(),
            term: json["term"].as_u64().unwrap_or(0),
            leader: json["leader"].as_u64(),
        })
    }

    /// The process serves HTTP: `/livez` answers 200. A node built before `/livez` existed
    /// answers 404 there; then any answer of `/status.json` counts. Returns the start token
    /// `/livez` names, if any.
    async fn live(&self, url: &str) -> Option<Option<String>> {
        match self.get(url, "/livez").await {
            Ok((200, body)) => Some(
                serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|json| json["startToken"].as_str().map(str::to_owned)),
            ),
            Ok((404, _)) => self
                .get(url, "/status.json")
                .await
                .ok()
                .filter(|(status, _)| *status == 200)
                .map(|_| None),
            _ => None,
        }
    }

    /// The node is ready: `/healthz` answers 200.
    async fn ready(&self, url: &str) -> bool {
        matches!(self.get(url, "/healthz").await, Ok((200, _)))
    }
}

/// The outcome of one run (one fault).
#[derive(Debug, Clone)]
pub struct LiveRunReport {
    pub scenario: String,
    /// 1-based run number within the scenario.
    pub run: usize,
    pub passed: bool,
    /// The node the fault hit (`{index}`, node id).
    pub target: Option<(usize, u64)>,
    /// The longest stretch without a 201, from the fault hook's start until the first 201 for a
    /// request sent after the hook returned.
    pub unavailability: Option<Duration>,
    /// From the fault hook's start until another node reported itself leader in a later term.
    pub election: Option<Duration>,
    /// 201 answers during the run.
    pub acknowledged: usize,
    /// Open-loop arrivals skipped because too many requests were outstanding.
    pub skipped: u64,
    /// Size of the tree the nodes converged on.
    pub final_size: u64,
    pub violations: Vec<String>,
    /// Why the run could not complete (a hook failure with its output, a timeout).
    pub error: Option<String>,
}

/// The checker over the whole session.
#[derive(Debug, Clone)]
pub struct SessionCheck {
    pub passed: bool,
    pub acknowledged: usize,
    pub final_size: u64,
    pub checkpoints_checked: usize,
    pub violations: Vec<String>,
    pub error: Option<String>,
}

/// Median, best and worst of some durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationFigures {
    pub count: usize,
    pub median: Duration,
    pub best: Duration,
    pub worst: Duration,
}

impl DurationFigures {
    /// `None` without measurements.
    pub fn of(mut durations: Vec<Duration>) -> Option<Self> {
        durations.sort_unstable();
        let (best, worst) = (*durations.first()?, *durations.last()?);
        let middle = durations.len() / 2;
        let median = if durations.len().is_multiple_of(2) {
            (durations[middle - 1] + durations[middle]) / 2
        } else {
            durations[middle]
        };
        Some(Self {
            count: durations.len(),
            median,
            best,
            worst,
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "runs": self.count,
            "median_ms": self.median.as_millis() as u64,
            "best_ms": self.best.as_millis() as u64,
            "worst_ms": self.worst.as_millis() as u64,
        })
    }
}

/// Everything a live session found.
#[derive(Debug, Clone)]
pub struct LiveReport {
    pub urls: Vec<String>,
    pub rate: Option<f64>,
    pub runs: Vec<LiveRunReport>,
    pub session: SessionCheck,
}

impl LiveReport {
    pub fn passed(&self) -> bool {
        self.session.passed && self.runs.iter().all(|run| run.passed)
    }

    fn unavailability(&self) -> Option<DurationFigures> {
        DurationFigures::of(self.runs.iter().filter_map(|r| r.unavailability).collect())
    }

    fn election(&self) -> Option<DurationFigures> {
        DurationFigures::of(self.runs.iter().filter_map(|r| r.election).collect())
    }

    /// The report as JSON (`chaos live --json`).
    pub fn json(&self) -> serde_json::Value {
        let runs: Vec<serde_json::Value> = self
            .runs
            .iter()
            .map(|run| {
                serde_json::json!({
                    "scenario": run.scenario,
                    "run": run.run,
                    "passed": run.passed,
                    "target_index": run.target.map(|(index, _)| index),
                    "target_id": run.target.map(|(_, id)| id),
                    "unavailability_ms": run.unavailability.map(|d| d.as_millis() as u64),
                    "election_ms": run.election.map(|d| d.as_millis() as u64),
                    "acknowledged": run.acknowledged,
                    "skipped_arrivals": run.skipped,
                    "final_size": run.final_size,
                    "violations": run.violations,
                    "error": run.error,
                })
            })
            .collect();
        serde_json::json!({
            "nodes": self.urls,
            "rate_per_s": self.rate,
            "passed": self.passed(),
            "runs": runs,
            "write_unavailability": self.unavailability().map(|f| f.json()),
            "new_leader_after": self.election().map(|f| f.json()),
            "checker": {
                "passed": self.session.passed,
                "acknowledged": self.session.acknowledged,
                "final_size": self.session.final_size,
                "checkpoints_checked": self.session.checkpoints_checked,
                "violations": self.session.violations,
                "error": self.session.error,
            },
        })
    }
}

impl std::fmt::Display for LiveRunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let millis = |d: Option<Duration>| {
            d.map(|d| format!("{} ms", d.as_millis()))
                .unwrap_or_else(|| "-".into())
        };
        write!(
            f,
            "{:<17} {:<4} node={:<8} acknowledged={:<6} final_size={:<7} unavailability={} election={}",
            self.scenario,
            if self.passed { "PASS" } else { "FAIL" },
            self.target
                .map(|(index, id)| format!("{index}(id {id})"))
                .unwrap_or_else(|| "-".into()),
            self.acknowledged,
            self.final_size,
            millis(self.unavailability),
            millis(self.election),
        )?;
        if self.skipped > 0 {
            write!(f, " skipped_arrivals={}", self.skipped)?;
        }
        if let Some(error) = &self.error {
            write!(f, "\n    error: {error}")?;
        }
        for violation in &self.violations {
            write!(f, "\n    violation: {violation}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for LiveReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut scenarios: Vec<&str> = Vec::new();
        for run in &self.runs {
            if !scenarios.contains(&run.scenario.as_str()) {
                scenarios.push(&run.scenario);
            }
        }
        for scenario in scenarios {
            let runs: Vec<&LiveRunReport> = self
                .runs
                .iter()
                .filter(|r| r.scenario == scenario)
                .collect();
            for run in &runs {
                writeln!(f, "[{}/{}] {run}", run.run, runs.len())?;
            }
            let passed = runs.iter().filter(|r| r.passed).count();
            let acknowledged: usize = runs.iter().map(|r| r.acknowledged).sum();
            write!(
                f,
                "== {scenario}: {passed}/{} passed, {acknowledged} entries acknowledged;",
                runs.len()
            )?;
            let figures = |label: &str, durations: Vec<Duration>| {
                DurationFigures::of(durations)
                    .map(|d| {
                        format!(
                            " {label} over {} run(s): median {} ms, best {} ms, worst {} ms;",
                            d.count,
                            d.median.as_millis(),
                            d.best.as_millis(),
                            d.worst.as_millis()
                        )
                    })
                    .unwrap_or_default()
            };
            write!(
                f,
                "{}{}",
                figures(
                    "write unavailability",
                    runs.iter().filter_map(|r| r.unavailability).collect()
                ),
                figures(
                    "new leader after",
                    runs.iter().filter_map(|r| r.election).collect()
                )
            )?;
            writeln!(f)?;
        }
        let session = &self.session;
        write!(
            f,
            "== checker over the whole session: {} ({} entries acknowledged, final size {}, {} distinct checkpoints verified)",
            if session.passed { "PASS" } else { "FAIL" },
            session.acknowledged,
            session.final_size,
            session.checkpoints_checked,
        )?;
        if let Some(error) = &session.error {
            write!(f, "\n    error: {error}")?;
        }
        for violation in &session.violations {
            write!(f, "\n    violation: {violation}")?;
        }
        Ok(())
    }
}

/// A deployment under test.
pub struct LiveDeployment {
    options: LiveOptions,
    nodes: Vec<LiveNode>,
    verifier: LogVerifier,
    probe: Probe,
    factory: Arc<EntryFactory>,
    /// Everything clients were told in every run so far, for the session's final check.
    observed: Observations,
}

impl LiveDeployment {
    /// Waits until every node answers `/status.json` (up to `recovery_timeout`) and learns each
    /// node's id. `verifier` checks the log's checkpoints (key and origin given by the operator).
    pub async fn connect(options: LiveOptions, verifier: LogVerifier) -> Result<Self> {
        if options.urls.is_empty() {
            bail!("no nodes given");
        }
        let probe = Probe::new()?;
        let mut nodes = Vec::with_capacity(options.urls.len());
        for (position, url) in options.urls.iter().enumerate() {
            let status = wait_until(
                &format!("{url}/status.json"),
                options.recovery_timeout,
                || async { probe.raft_status(url).await.map(Some) },
            )
            .await?;
            nodes.push(LiveNode {
                index: position + 1,
                url: url.trim_end_matches('/').to_owned(),
                id: status.node_id,
                client: LogClient::new(url),
            });
        }
        let mut ids: Vec<u64> = nodes.iter().map(|n| n.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != nodes.len() {
            bail!(
                "two of the URLs are the same node (node ids {ids:?} for {} URLs)",
                nodes.len()
            );
        }
        Ok(Self {
            options,
            nodes,
            verifier,
            probe,
            factory: Arc::new(EntryFactory::new()),
            observed: Observations::default(),
        })
    }

    /// The `origin` a node's `/status.json` names (for a verifier when none is given).
    pub async fn served_origin(url: &str) -> Result<String> {
        let (status, body) = Probe::new()?.get(url, "/status.json").await?;
        if status != 200 {
            bail!("{url}/status.json: HTTP {status}");
        }
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        json["origin"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{url}/status.json names no origin"))
    }

    /// Runs `runs` runs of `scenario`, each with its own load and checker.
    pub async fn run_scenario(&mut self, scenario: &str, runs: usize) -> Vec<LiveRunReport> {
        let mut reports = Vec::with_capacity(runs);
        for run in 1..=runs {
            let report = self.run_once(scenario, run).await;
            eprintln!("[{run}/{runs}] {report}");
            reports.push(report);
        }
        reports
    }

    /// The checker over everything acknowledged and every checkpoint seen in the session.
    pub async fn check_session(&self) -> SessionCheck {
        let views: Vec<NodeView> = self.nodes.iter().map(LiveNode::view).collect();
        let acknowledged = self.observed.acknowledged.len();
        match check_cluster(
            &views,
            &self.verifier,
            &self.observed,
            self.options.convergence_timeout,
        )
        .await
        {
            Ok(report) => SessionCheck {
                passed: report.violations.is_empty(),
                acknowledged,
                final_size: report.final_size,
                checkpoints_checked: report.checkpoints_checked,
                violations: report.violations.iter().map(ToString::to_string).collect(),
                error: None,
            },
            Err(error) => SessionCheck {
                passed: false,
                acknowledged,
                final_size: 0,
                checkpoints_checked: 0,
                violations: Vec::new(),
                error: Some(format!("{error:#}")),
            },
        }
    }

    async fn run_once(&mut self, scenario: &str, run: usize) -> LiveRunReport {
        let views: Vec<NodeView> = self.nodes.iter().map(LiveNode::view).collect();
        let load = Load::start(
            views.clone(),
            self.factory.clone(),
            self.options.load.clone(),
        );
        let poller = CheckpointPoller::start(views.clone(), Duration::from_millis(100));
        let mut fault = FaultOutcome::default();
        let result = match scenario {
            "leader-kill" => self.leader_kill(&load, &mut fault).await,
            "leader-restart" => self.leader_restart(&load, &mut fault).await,
            "follower-restart" => self.follower_restart(&load, &mut fault).await,
            "leader-isolation" => self.leader_isolation(&load, &mut fault).await,
            "check" => self.phase(&load).await,
            other => Err(anyhow!(
                "unknown live scenario {other:?} (known: {})",
                LIVE_SCENARIOS.join(", ")
            )),
        };
        // A run that failed half-way must not leave a node down or cut off.
        let restored = self.restore(&fault).await;
        let skipped = load.skipped();
        let (_, mut observations) = load.stop().await;
        poller.stop_into(&mut observations).await;
        let acknowledged = observations.acknowledged.len();
        let mut error = match (result, restored) {
            (Err(error), _) => Some(format!("{error:#}")),
            (Ok(()), Err(error)) => Some(format!("{error:#}")),
            (Ok(()), Ok(())) => None,
        };
        let mut violations = Vec::new();
        let mut final_size = 0;
        match check_cluster(
            &views,
            &self.verifier,
            &observations,
            self.options.convergence_timeout,
        )
        .await
        {
            Ok(report) => {
                violations = report.violations.iter().map(ToString::to_string).collect();
                final_size = report.final_size;
            }
            Err(check_error) => {
                let text = format!("checker: {check_error:#}");
                error = Some(error.map_or(text.clone(), |e| format!("{e}\n    {text}")));
            }
        }
        if acknowledged == 0 && error.is_none() {
            error = Some("no entry was acknowledged during the run".into());
        }
        self.observed.extend(observations);
        LiveRunReport {
            scenario: scenario.to_owned(),
            run,
            passed: error.is_none() && violations.is_empty(),
            target: fault
                .target
                .map(|p| (self.nodes[p].index, self.nodes[p].id)),
            unavailability: fault.unavailability,
            election: fault.election,
            acknowledged,
            skipped,
            final_size,
            violations,
            error,
        }
    }

    /// Lets the load run for one phase, and at least until one more 201 arrived.
    async fn phase(&self, load: &Load) -> Result<()> {
        let before = load.acknowledged();
        let end = Instant::now() + self.options.phase;
        wait_until(
            "a 201 during a load phase",
            self.options.phase + self.options.recovery_timeout,
            || async { Ok((Instant::now() >= end && load.acknowledged() > before).then_some(())) },
        )
        .await
    }

    /// Position and term of a node that reports itself leader, among `positions`, with a term
    /// above `after_term`.
    async fn leader_among(
        &self,
        positions: &[usize],
        after_term: Option<u64>,
        timeout: Duration,
    ) -> Result<(usize, u64)> {
        wait_until("a leader", timeout, || async {
            let polls = positions.iter().map(|&position| async move {
                (
                    position,
                    self.probe.raft_status(&self.nodes[position].url).await,
                )
            });
            for (position, status) in futures::future::join_all(polls).await {
                let Ok(status) = status else { continue };
                if status.state == "Leader"
                    && status.leader == Some(status.node_id)
                    && status.node_id == self.nodes[position].id
                    && after_term.is_none_or(|term| status.term > term)
                {
                    return Ok(Some((position, status.term)));
                }
            }
            Ok(None)
        })
        .await
    }

    async fn leader(&self) -> Result<(usize, u64)> {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.leader_among(&all, None, Duration::from_secs(30)).await
    }

    fn others(&self, position: usize) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&p| p != position).collect()
    }

    /// Waits until the node at `position` is live (a process other than `previous_token`, when
    /// both are known), then ready, then knows a leader.
    async fn wait_rejoined(&self, position: usize, previous_token: Option<&str>) -> Result<()> {
        let node = &self.nodes[position];
        let timeout = self.options.recovery_timeout;
        wait_until(
            &format!("node {} to be live", node.index),
            timeout,
            || async {
                Ok(match self.probe.live(&node.url).await {
                    Some(Some(token)) if Some(token.as_str()) == previous_token => None,
                    Some(_) => Some(()),
                    None => None,
                })
            },
        )
        .await?;
        wait_until(
            &format!("node {} to be ready", node.index),
            timeout,
            || async {
                if !self.probe.ready(&node.url).await {
                    return Ok(None);
                }
                let status = self.probe.raft_status(&node.url).await?;
                Ok(status.leader.map(|_| ()))
            },
        )
        .await
    }

    /// The fault's hook on the node at `position`; records it so [`Self::restore`] can undo it.
    async fn apply(
        &self,
        hook: &Hook,
        position: usize,
        undo: Undo,
        fault: &mut FaultOutcome,
    ) -> Result<HookWindow> {
        fault.target = Some(position);
        // Before the hook: a hook that fails half-way may still have acted.
        fault.pending = Some(undo);
        let started = Instant::now();
        hook.run(&self.nodes[position].target()).await?;
        Ok(HookWindow {
            started,
            returned: Instant::now(),
        })
    }

    /// Undoes a fault still in place (after a failed run): start or heal the node.
    async fn restore(&self, fault: &FaultOutcome) -> Result<()> {
        let (Some(position), Some(undo)) = (fault.target, fault.pending) else {
            return Ok(());
        };
        let hook = match undo {
            Undo::Start => self.options.hooks.start.as_ref(),
            Undo::Heal => self.options.hooks.heal.as_ref(),
        };
        if let Some(hook) = hook {
            hook.run(&self.nodes[position].target())
                .await
                .context("restoring the node after a failed run")?;
        }
        Ok(())
    }

    /// Runs the start hook (if any) and waits for the node to come back.
    async fn bring_back(
        &self,
        position: usize,
        token: Option<&str>,
        fault: &mut FaultOutcome,
    ) -> Result<()> {
        if let Some(start) = &self.options.hooks.start {
            start.run(&self.nodes[position].target()).await?;
        }
        fault.pending = None;
        self.wait_rejoined(position, token).await
    }

    /// The start token of the process at `position` now (to tell its successor apart).
    async fn start_token(&self, position: usize) -> Option<String> {
        self.probe.live(&self.nodes[position].url).await.flatten()
    }

    fn hook<'a>(&self, hook: &'a Option<Hook>, scenario: &str, flag: &str) -> Result<&'a Hook> {
        hook.as_ref()
            .with_context(|| format!("the {scenario} scenario needs {flag}"))
    }

    /// The leader is killed under load (kill hook); a new leader takes over; the node is started
    /// again (start hook, or the deployment restarts it) and rejoins.
    async fn leader_kill(&self, load: &Load, fault: &mut FaultOutcome) -> Result<()> {
        let kill = self.hook(&self.options.hooks.kill, "leader-kill", "--kill-hook")?;
        self.leader_down(kill, load, fault).await
    }

    /// The leader is stopped gracefully under load (stop hook), as for a planned restart: it
    /// hands its leadership over before it exits; the node is started again and rejoins.
    async fn leader_restart(&self, load: &Load, fault: &mut FaultOutcome) -> Result<()> {
        let stop = self.hook(&self.options.hooks.stop, "leader-restart", "--stop-hook")?;
        self.leader_down(stop, load, fault).await
    }

    /// The leader is taken down by `hook`; measures the election and the write unavailability,
    /// then brings the node back.
    async fn leader_down(&self, hook: &Hook, load: &Load, fault: &mut FaultOutcome) -> Result<()> {
        self.phase(load).await?;
        let (leader, term) = self.leader().await?;
        let token = self.start_token(leader).await;
        self.fault_leader(hook, (leader, term), Undo::Start, load, fault)
            .await?;
        self.phase(load).await?;
        self.bring_back(leader, token.as_deref(), fault).await?;
        self.phase(load).await
    }

    /// Applies `hook` to the leader at `position` (elected in `term`) and records how long until
    /// another node led in a later term and the write unavailability. The new leader is watched
    /// for while the hook runs: a graceful stop hands leadership over well before its process
    /// has drained and exited, which is when the hook returns.
    async fn fault_leader(
        &self,
        hook: &Hook,
        (position, term): (usize, u64),
        undo: Undo,
        load: &Load,
        fault: &mut FaultOutcome,
    ) -> Result<()> {
        let timeout = self.options.recovery_timeout;
        let others = self.others(position);
        let started = Instant::now();
        let (window, elected) = tokio::try_join!(self.apply(hook, position, undo, fault), async {
            self.leader_among(&others, Some(term), timeout).await?;
            Ok(started.elapsed())
        })?;
        fault.election = Some(elected);
        fault.unavailability = Some(unavailability_during(load, window, timeout).await?);
        Ok(())
    }

    /// A follower is killed under load and started again; it catches up.
    async fn follower_restart(&self, load: &Load, fault: &mut FaultOutcome) -> Result<()> {
        let kill = self.hook(&self.options.hooks.kill, "follower-restart", "--kill-hook")?;
        self.phase(load).await?;
        let (leader, _) = self.leader().await?;
        let follower = (leader + 1) % self.nodes.len();
        let token = self.start_token(follower).await;
        self.apply(kill, follower, Undo::Start, fault).await?;
        self.phase(load).await?;
        self.bring_back(follower, token.as_deref(), fault).await?;
        self.phase(load).await
    }

    /// The leader is isolated under load (isolate hook); the others elect a new leader; the
    /// node is healed (heal hook) and rejoins as a follower.
    async fn leader_isolation(&self, load: &Load, fault: &mut FaultOutcome) -> Result<()> {
        let isolate = self.hook(
            &self.options.hooks.isolate,
            "leader-isolation",
            "--isolate-hook",
        )?;
        let heal = self.hook(&self.options.hooks.heal, "leader-isolation", "--heal-hook")?;
        self.phase(load).await?;
        let (leader, term) = self.leader().await?;
        self.fault_leader(isolate, (leader, term), Undo::Heal, load, fault)
            .await?;
        self.phase(load).await?;
        heal.run(&self.nodes[leader].target()).await?;
        fault.pending = None;
        self.wait_rejoined(leader, None).await?;
        self.phase(load).await
    }
}

/// When a fault hook ran. The fault lands somewhere inside the window (a shell starting, a
/// graceful stop handing leadership over, a poll until the process is gone), so neither end alone
/// times it.
#[derive(Debug, Clone, Copy)]
struct HookWindow {
    started: Instant,
    returned: Instant,
}

/// The write unavailability of a fault applied by a hook: the longest stretch without a 201
/// arriving, from the hook's start until the first 201 to a request sent after the hook returned
/// (when the fault had certainly landed). Not the first 201 to a request sent after the hook
/// started: requests sent while the hook's shell was still starting are answered before the
/// fault lands, and would make a leader kill look like a 40 ms outage.
async fn unavailability_during(
    load: &Load,
    window: HookWindow,
    timeout: Duration,
) -> Result<Duration> {
    let recovered: Answer = wait_until("a 201 after the fault", timeout, || async {
        Ok(load.first_logged_since(window.returned))
    })
    .await?;
    Ok(load.longest_gap_between(window.started, recovered.done))
}

/// How to undo a fault.
#[derive(Debug, Clone, Copy)]
enum Undo {
    Start,
    Heal,
}

/// What one run's fault did.
#[derive(Debug, Default)]
struct FaultOutcome {
    /// Position of the node it hit.
    target: Option<usize>,
    /// Still to undo.
    pending: Option<Undo>,
    unavailability: Option<Duration>,
    election: Option<Duration>,
}

/// Runs every scenario in `scenarios` `runs` times against the deployment, then the session
/// check.
pub async fn run_live(
    options: LiveOptions,
    verifier: LogVerifier,
    scenarios: &[String],
    runs: usize,
) -> Result<LiveReport> {
    for scenario in scenarios {
        if !LIVE_SCENARIOS.contains(&scenario.as_str()) {
            bail!(
                "unknown live scenario {scenario:?} (known: {})",
                LIVE_SCENARIOS.join(", ")
            );
        }
    }
    let urls = options.urls.clone();
    let rate = options.load.rate;
    let mut deployment = LiveDeployment::connect(options, verifier).await?;
    let mut reports = Vec::new();
    for scenario in scenarios {
        reports.extend(deployment.run_scenario(scenario, runs).await);
    }
    let session = deployment.check_session().await;
    Ok(LiveReport {
        urls,
        rate,
        runs: reports,
        session,
    })
}

/// The log's public key (DER SubjectPublicKeyInfo) from what an operator has at hand: a PEM
/// `PUBLIC KEY`, its base64 DER alone, or the output of `rekor-node keygen` (`keygen.txt`:
/// the `public key:` line).
pub fn parse_log_public_key(text: &str) -> Result<Vec<u8>> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let text = text.trim();
    let encoded: String = if text.starts_with("-----BEGIN") {
        if !text.starts_with("-----BEGIN PUBLIC KEY-----") {
            bail!(
                "a PEM file, but not a PUBLIC KEY (give the log's public key, not its private key)"
            );
        }
        text.lines()
            .filter(|line| !line.starts_with("-----"))
            .map(str::trim)
            .collect()
    } else if let Some(line) = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("public key:"))
    {
        line.trim().to_owned()
    } else {
        text.to_owned()
    };
    STANDARD
        .decode(encoded.as_bytes())
        .context("not a PEM public key, base64 DER, or `rekor-node keygen` output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_take_the_middle() {
        let ms = Duration::from_millis;
        let figures = DurationFigures::of(vec![ms(30), ms(10), ms(20), ms(40)]).unwrap();
        assert_eq!(figures.median, ms(25));
        assert_eq!((figures.best, figures.worst), (ms(10), ms(40)));
        assert_eq!(
            DurationFigures::of(vec![ms(5), ms(1), ms(9)])
                .unwrap()
                .median,
            ms(5)
        );
        assert!(DurationFigures::of(Vec::new()).is_none());
    }

    #[test]
    fn public_keys_in_every_form() {
        let der =
            b"\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00abcdefghijklmnopqrstuvwxyz012345";
        let b64 = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(der)
        };
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
        let keygen = format!("private key:   x.pem\npublic key:    {b64}\nlog ID:        abc\n");
        for text in [pem.as_str(), b64.as_str(), keygen.as_str()] {
            assert_eq!(parse_log_public_key(text).unwrap(), der.to_vec(), "{text}");
        }
        let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(parse_log_public_key(private).is_err());
        assert!(parse_log_public_key("not base64 !").is_err());
    }
}
