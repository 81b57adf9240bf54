//! The chaos scenarios (cluster operations issue, "Acceptance"): each starts a cluster of real
//! node processes, runs background load, injects one fault, heals it, and ends with the
//! invariant checker. Used by the `chaos_*` tests and by the `chaos` operator binary.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::checker::{check_cluster, LogVerifier, NodeView, Violation};
use super::load::{Answer, CheckpointPoller, Load, LoadConfig, Outcome, ServedObservation};
use super::proxy::LinkProxy;
use crate::{wait_until, Cluster, EntryFactory};

/// Every scenario, by name.
pub const SCENARIOS: &[&str] = &[
    "leader-kill",
    "leader-restart",
    "follower-restart",
    "whole-cluster-restart",
    "frozen-leader",
    "minority-partition",
    "leader-isolation",
    "grow-shrink",
    "grow-shrink-leader",
    "full-disk-leader",
    "full-disk-follower",
];

/// Scenarios that need each node on a tile store of its own (they fill one node's disk).
pub const PER_NODE_STORE_ONLY: &[&str] = &["full-disk-leader", "full-disk-follower"];

/// How big a scenario is.
#[derive(Debug, Clone)]
pub struct ScenarioOptions {
    /// Nodes in the cluster (3 or more).
    pub nodes: usize,
    /// Length of each load phase (before the fault, during it, after healing).
    pub phase: Duration,
    pub load: LoadConfig,
    /// How long the checker waits for the nodes to converge.
    pub convergence_timeout: Duration,
    /// If set, every node's log is copied here when the scenario ends, as
    /// `<scenario>-<unix ms>-node<id>.log` (the cluster's own directory is deleted).
    pub keep_logs: Option<PathBuf>,
    /// Run the nodes on one shared tile store (`--shared-tile-store`, one directory) instead of
    /// a store each. Not for the full-disk scenarios, whose faults are per node.
    pub shared_tile_store: bool,
}

impl ScenarioOptions {
    /// Short by default (a few seconds of load); long when `REKOR_SOAK=1`.
    pub fn from_env() -> Self {
        let soak = std::env::var("REKOR_SOAK").is_ok_and(|value| value == "1");
        Self {
            nodes: 3,
            phase: if soak {
                Duration::from_secs(30)
            } else {
                Duration::from_millis(1500)
            },
            load: LoadConfig::default(),
            convergence_timeout: Duration::from_secs(60),
            keep_logs: None,
            shared_tile_store: false,
        }
    }
}

/// The outcome of one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    pub name: String,
    pub passed: bool,
    /// Time from the fault to the first 201 for a request sent after it (leader faults).
    pub unavailability: Option<Duration>,
    /// Time from the fault until a surviving node reported itself leader (leader faults).
    pub election: Option<Duration>,
    /// 201 answers during the scenario.
    pub acknowledged: usize,
    /// Size of the converged tree.
    pub final_size: u64,
    pub violations: Vec<Violation>,
    /// The tail of every node's log when the scenario failed.
    pub logs: String,
}

impl std::fmt::Display for ScenarioReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<22} {:<4} acknowledged={:<6} final_size={:<6} unavailability={} election={}",
            self.name,
            if self.passed { "PASS" } else { "FAIL" },
            self.acknowledged,
            self.final_size,
            self.unavailability
                .map(|d| format!("{} ms", d.as_millis()))
                .unwrap_or_else(|| "-".into()),
            self.election
                .map(|d| format!("{} ms", d.as_millis()))
                .unwrap_or_else(|| "-".into()),
        )?;
        for violation in &self.violations {
            write!(f, "\n    violation: {violation}")?;
        }
        Ok(())
    }
}

/// Runs the scenario called `name`.
pub async fn run(name: &str, options: &ScenarioOptions) -> Result<ScenarioReport> {
    match name {
        "leader-kill" => leader_kill(options).await,
        "leader-restart" => leader_restart(options).await,
        "follower-restart" => follower_restart(options).await,
        "whole-cluster-restart" => whole_cluster_restart(options).await,
        "frozen-leader" => frozen_leader(options).await,
        "minority-partition" => minority_partition(options).await,
        "leader-isolation" => leader_isolation(options).await,
        "grow-shrink" => grow_shrink(options, false).await,
        "grow-shrink-leader" => grow_shrink(options, true).await,
        "full-disk-leader" => full_disk(options, true).await,
        "full-disk-follower" => full_disk(options, false).await,
        other => bail!(
            "unknown scenario {other:?} (known: {})",
            SCENARIOS.join(", ")
        ),
    }
}

/// Runs the scenario called `name` at the size [`ScenarioOptions::from_env`] picks, prints its
/// report, and panics (with the report and the nodes' log tails) unless every invariant held and
/// at least one entry was acknowledged. The whole body of a `chaos_*` test.
pub async fn assert_scenario_passes(name: &str) {
    assert_scenario_passes_with(name, ScenarioOptions::from_env()).await;
}

/// [`assert_scenario_passes`] with the given options (for example a shared tile store).
pub async fn assert_scenario_passes_with(name: &str, options: ScenarioOptions) {
    let report = run(name, &options)
        .await
        .unwrap_or_else(|error| panic!("scenario {name} could not run: {error:#}"));
    println!("{report}");
    assert!(report.passed, "{report}\n{}", report.logs);
    assert!(report.acknowledged > 0, "no entry was acknowledged");
}

/// A cluster under load, with its observers.
struct Run {
    name: String,
    options: ScenarioOptions,
    cluster: Cluster,
    proxy: Option<LinkProxy>,
    load: Load,
    poller: CheckpointPoller,
    verifier: LogVerifier,
    /// Positions in `cluster.nodes` of the current members: the load goes to them and the checker
    /// checks them (all nodes unless the scenario changes membership).
    members: Vec<usize>,
    /// Violations the scenario itself found (beyond the checker's).
    violations: Vec<Violation>,
    /// The arguments every node gets for the scenario's shared tile store (empty without one);
    /// nodes added later get them too.
    store_args: Vec<String>,
    /// The shared tile store's directory, removed when the run ends.
    _shared_store: Option<tempfile::TempDir>,
}

/// A tile store every node of a scenario shares, when the options ask for one: its directory
/// and the `serve` arguments that point a node at it.
fn shared_store(options: &ScenarioOptions) -> Result<(Option<tempfile::TempDir>, Vec<String>)> {
    if !options.shared_tile_store {
        return Ok((None, Vec::new()));
    }
    let dir = tempfile::tempdir().context("creating the shared tile store's directory")?;
    let args = vec![
        "--shared-tile-store".to_owned(),
        "--tile-store".to_owned(),
        dir.path().join("tiles").display().to_string(),
    ];
    Ok((Some(dir), args))
}

impl Run {
    async fn start(name: &str, options: &ScenarioOptions, proxied: bool) -> Result<Self> {
        if options.nodes < 3 {
            bail!("chaos scenarios need at least 3 nodes");
        }
        let (shared_dir, store_args) = shared_store(options)?;
        let extra: Vec<&str> = store_args.iter().map(String::as_str).collect();
        let (cluster, proxy) = if proxied {
            let proxy = LinkProxy::new();
            let mut failure = None;
            let cluster = Cluster::start_advertising(options.nodes, &extra, |spec| {
                match proxy.listen(spec.id, &spec.internal_addr()) {
                    Ok(address) => Some(address),
                    Err(error) => {
                        failure = Some(error);
                        None
                    }
                }
            })
            .await?;
            if let Some(error) = failure {
                return Err(error.context("starting the link proxy"));
            }
            (cluster, Some(proxy))
        } else {
            (Cluster::start(options.nodes, &extra).await?, None)
        };
        let mut run = Self::observe(name, options, cluster, proxy)?;
        run.store_args = store_args;
        run._shared_store = shared_dir;
        Ok(run)
    }

    /// Starts load and observation against a cluster the scenario started itself.
    fn observe(
        name: &str,
        options: &ScenarioOptions,
        cluster: Cluster,
        proxy: Option<LinkProxy>,
    ) -> Result<Self> {
        let verifier = LogVerifier::from_key_file(&cluster.origin, &cluster.key_file)?;
        let views = NodeView::all(&cluster);
        let load = Load::start(
            views.clone(),
            Arc::new(EntryFactory::new()),
            options.load.clone(),
        );
        let poller = CheckpointPoller::start(views, Duration::from_millis(100));
        let members = (0..cluster.nodes.len()).collect();
        Ok(Self {
            name: name.to_owned(),
            options: options.clone(),
            cluster,
            proxy,
            load,
            poller,
            verifier,
            members,
            violations: Vec::new(),
            store_args: Vec::new(),
            _shared_store: None,
        })
    }

    /// Lets the load run for one phase, and at least until one more 201 arrived.
    async fn phase(&self) -> Result<()> {
        let before = self.load.acknowledged();
        let end = Instant::now() + self.options.phase;
        wait_until(
            "load to make progress",
            self.options.phase + Duration::from_secs(60),
            || async {
                Ok((Instant::now() >= end && self.load.acknowledged() > before).then_some(()))
            },
        )
        .await
        .with_context(|| format!("no 201 during a load phase\n{}", log_tails(&self.cluster)))
    }

    fn ids(&self) -> Vec<u64> {
        self.cluster.nodes.iter().map(|n| n.spec.id).collect()
    }

    /// Waits for a leader among the nodes at `positions`, asking each with a short timeout (a
    /// frozen node would hang `status`).
    async fn leader_among(&self, positions: &[usize], timeout: Duration) -> Result<usize> {
        wait_until("a leader", timeout, || async {
            for &position in positions {
                let status =
                    tokio::time::timeout(Duration::from_secs(2), self.cluster.status(position))
                        .await;
                if let Ok(Ok(status)) = status {
                    let id = self.cluster.nodes[position].spec.id;
                    if status["state"].as_str() == Some("Leader")
                        && status["leader"].as_u64() == Some(id)
                    {
                        return Ok(Some(position));
                    }
                }
            }
            Ok(None)
        })
        .await
    }

    async fn leader(&self) -> Result<usize> {
        let all: Vec<usize> = (0..self.cluster.nodes.len()).collect();
        self.leader_among(&all, Duration::from_secs(30)).await
    }

    /// Membership changed: the load, the poller and the final check follow `members`.
    fn set_members(&mut self, members: Vec<usize>) {
        self.members = members;
        let views = NodeView::of(&self.cluster, &self.members);
        self.load.set_targets(views.clone());
        self.poller.set_targets(views);
    }

    /// Voter ids as node `position` reports them.
    async fn voters(&self, position: usize) -> Result<Vec<u64>> {
        let status = self.cluster.status(position).await?;
        let members = status["members"]
            .as_array()
            .context("status without members")?;
        Ok(members
            .iter()
            .filter(|member| member["voter"] == true)
            .filter_map(|member| member["id"].as_u64())
            .collect())
    }

    async fn restart(&mut self, position: usize) -> Result<()> {
        let cwd = self.cluster.dir.path().to_path_buf();
        let node = &mut self.cluster.nodes[position];
        node.restart(&cwd)?;
        node.wait_live(Duration::from_secs(60)).await
    }

    /// Stops the load, runs the checker, and writes the report.
    async fn finish(self, unavailability: Option<Duration>) -> Result<ScenarioReport> {
        self.finish_with(unavailability, None).await
    }

    async fn finish_with(
        self,
        unavailability: Option<Duration>,
        election: Option<Duration>,
    ) -> Result<ScenarioReport> {
        let Run {
            name,
            options,
            cluster,
            proxy,
            load,
            poller,
            verifier,
            members,
            mut violations,
            store_args: _,
            _shared_store,
        } = self;
        if let Some(proxy) = &proxy {
            proxy.heal();
        }
        let (_, mut observations) = load.stop().await;
        if let Some(dir) = &options.keep_logs {
            keep_logs(&cluster, &name, dir)?;
        }
        poller.stop_into(&mut observations).await;
        if let Some(dir) = &_shared_store {
            violations.extend(unreadable_checkpoints(
                &dir.path().join("tiles"),
                &verifier,
                &observations,
            ));
        }
        let acknowledged = observations.acknowledged.len();
        let report = check_cluster(
            &NodeView::of(&cluster, &members),
            &verifier,
            &observations,
            options.convergence_timeout,
        )
        .await?;
        violations.extend(report.violations);
        let passed = violations.is_empty();
        Ok(ScenarioReport {
            name,
            passed,
            unavailability,
            election,
            acknowledged,
            final_size: report.final_size,
            violations,
            logs: if passed {
                String::new()
            } else {
                log_tails(&cluster)
            },
        })
    }
}

/// With a shared tile store: every checkpoint a client saw whose right edge (the partial tiles
/// and bundle at exactly its size) is not in the store, which a reader of the store itself would
/// need. The leader signs only sizes it has made durable there and nobody writes partial objects
/// afterwards, so there should be none.
fn unreadable_checkpoints(
    tiles: &Path,
    verifier: &LogVerifier,
    observations: &super::Observations,
) -> Vec<Violation> {
    let sizes: std::collections::BTreeSet<u64> = observations
        .checkpoints
        .iter()
        .filter_map(|seen| verifier.open(&seen.text).ok())
        .map(|checkpoint| checkpoint.size)
        .collect();
    let mut violations = Vec::new();
    for size in sizes {
        let (right_tiles, bundle) = rekor_storage::integrate::TreeBuilder::right_edge(size);
        let paths = right_tiles
            .iter()
            .map(|id| id.path())
            .chain(bundle.map(|id| id.path()));
        for path in paths {
            if !tiles.join(&path).is_file() {
                violations.push(Violation::Scenario(format!(
                    "checkpoint size {size}: {path} is not in the shared tile store"
                )));
            }
        }
    }
    violations
}

/// Copies every node's log into `dir` (created if missing).
fn keep_logs(cluster: &Cluster, scenario: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    for node in &cluster.nodes {
        let target = dir.join(format!("{scenario}-{stamp}-node{}.log", node.spec.id));
        std::fs::write(&target, node.log())
            .with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

/// The last lines of every node's log.
fn log_tails(cluster: &Cluster) -> String {
    cluster
        .nodes
        .iter()
        .map(|node| {
            let log = node.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            format!("===== node {} (tail) =====\n{tail}\n", node.spec.id)
        })
        .collect()
}

/// Time from `fault` to the first 201 for a request sent after it, waiting up to `timeout`.
pub(crate) async fn unavailability_after(
    load: &Load,
    fault: Instant,
    timeout: Duration,
) -> Result<Duration> {
    let first: Answer = wait_until("a 201 after the fault", timeout, || async {
        Ok(load.first_logged_since(fault))
    })
    .await?;
    Ok(first.done.saturating_duration_since(fault))
}

/// The leader is killed with SIGKILL under load; a new leader takes over; the old one restarts
/// and catches up.
pub async fn leader_kill(options: &ScenarioOptions) -> Result<ScenarioReport> {
    let mut run = Run::start("leader-kill", options, false).await?;
    run.phase().await?;
    let leader = run.leader().await?;
    let others: Vec<usize> = (0..run.cluster.nodes.len())
        .filter(|&p| p != leader)
        .collect();
    let killed = Instant::now();
    run.cluster.nodes[leader].kill();
    let (elected, unavailability) = tokio::join!(
        async {
            run.leader_among(&others, Duration::from_secs(60)).await?;
            Ok::<_, anyhow::Error>(killed.elapsed())
        },
        unavailability_after(&run.load, killed, Duration::from_secs(60)),
    );
    let (election, unavailability) = (elected?, unavailability?);
    run.phase().await?;
    run.restart(leader).await?;
    run.phase().await?;
    run.finish_with(Some(unavailability), Some(election)).await
}

/// The leader is stopped with SIGTERM under load, as a rolling upgrade stops it: it hands its
/// leadership to a caught-up follower before it exits (node/src/handover.rs), then starts again.
/// In a three-node cluster the hand-over must happen (the old leader logs it); with more voters
/// the others' leader leases may refuse the successor, and the cluster fails over as for a kill.
pub async fn leader_restart(options: &ScenarioOptions) -> Result<ScenarioReport> {
    let mut run = Run::start("leader-restart", options, false).await?;
    run.phase().await?;
    let leader = run.leader().await?;
    let others: Vec<usize> = (0..run.cluster.nodes.len())
        .filter(|&p| p != leader)
        .collect();
    let stopped = Instant::now();
    run.cluster.nodes[leader].signal("TERM")?;
    let (elected, unavailability) = tokio::join!(
        async {
            run.leader_among(&others, Duration::from_secs(60)).await?;
            Ok::<_, anyhow::Error>(stopped.elapsed())
        },
        unavailability_after(&run.load, stopped, Duration::from_secs(60)),
    );
    let (election, unavailability) = (elected?, unavailability?);
    let exit_deadline = Instant::now() + Duration::from_secs(30);
    while run.cluster.nodes[leader].exited().is_none() {
        if Instant::now() >= exit_deadline {
            bail!("the old leader did not exit within 30 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = run.cluster.nodes[leader].log();
    if options.nodes == 3 && !log.contains("leadership handed over") {
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        bail!(
            "the old leader stopped without handing its leadership over:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    run.phase().await?;
    run.restart(leader).await?;
    run.phase().await?;
    run.finish_with(Some(unavailability), Some(election)).await
}

/// A follower is killed under load and restarted; it catches up.
pub async fn follower_restart(options: &ScenarioOptions) -> Result<ScenarioReport> {
    let mut run = Run::start("follower-restart", options, false).await?;
    run.phase().await?;
    let leader = run.leader().await?;
    let follower = (leader + 1) % run.cluster.nodes.len();
    run.cluster.nodes[follower].kill();
    run.phase().await?;
    run.restart(follower).await?;
    run.phase().await?;
    run.finish(None).await
}

/// Every node is killed at once (SIGKILL to all before reaping any) and restarted; everything
/// acknowledged before is still there.
pub async fn whole_cluster_restart(options: &ScenarioOptions) -> Result<ScenarioReport> {
    let mut run = Run::start("whole-cluster-restart", options, false).await?;
    run.phase().await?;
    for node in &run.cluster.nodes {
        node.signal("KILL")?;
    }
    let killed = Instant::now();
    for node in &mut run.cluster.nodes {
        node.kill();
    }
    for position in 0..run.cluster.nodes.len() {
        run.restart(position).await?;
    }
    let unavailability = unavailability_after(&run.load, killed, Duration::from_secs(90)).await?;
    run.phase().await?;
    run.finish(Some(unavailability)).await
}

/// The leader is frozen (SIGSTOP) under load; the others elect a new leader; the old one is
/// thawed (SIGCONT) and rejoins as a follower.
pub async fn frozen_leader(options: &ScenarioOptions) -> Result<ScenarioReport> {
    let run = Run::start("frozen-leader", options, false).await?;
    run.phase().await?;
    let leader = run.leader().await?;
    run.cluster.nodes[leader].signal("STOP")?;
    let frozen = Instant::now();
    let others: Vec<usize> = (0..run.cluster.nodes.len())
        .filter(|&p| p != leader)
        .collect();
    let outcome = async {
        run.leader_among(&others, Duration::from_secs(60)).await?;
        let unavailability =
            unavailability_after(&run.load, frozen, Duration::from_secs(60)).await?;
        run.phase().await?;
        Ok::<_, anyhow::Error>(unavailability)
    }
    .await;
    // Thaw whatever happened, so the node does not stay stopped.
    run.cluster.nodes[leader].signal("CONT")?;
    let unavailability = outcome?;
    run.phase().await?;
    run.finish(Some(unavailability)).await
}

/// A minority of followers is cut off from the rest (both directions) under load, then healed.
pub async fn minority_partition(options: &ScenarioOptions) -> Result<ScenarioReport> {
    let mut run = Run::start("minority-partition", options, true).await?;
    let proxy = run.proxy.clone().context("proxied run")?;
    run.phase().await?;
    let leader = run.leader().await?;
    let ids = run.ids();
    let minority_size = (ids.len() - 1) / 2;
    let leader_id = ids[leader];
    let minority: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|&id| id != leader_id)
        .take(minority_size)
        .collect();
    let majority: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| !minority.contains(id))
        .collect();
    proxy.partition(&minority, &majority);
    run.phase().await?;
    // The cut must have bitten: the minority is behind the majority when it heals.
    let size_of = |id: u64| {
        let seen = run.poller.seen();
        seen.iter()
            .filter(|s| s.node == id)
            .filter_map(|s| run.verifier.open(&s.text).ok().map(|c| c.size))
            .max()
            .unwrap_or(0)
    };
    let majority_size = majority.iter().map(|&id| size_of(id)).max().unwrap_or(0);
    for &id in &minority {
        if size_of(id) >= majority_size {
            run.violations.push(Violation::Scenario(format!(
                "partitioned node {id} kept up with the majority (size {majority_size}): the cut had no effect"
            )));
        }
    }
    proxy.heal();
    run.phase().await?;
    run.finish(None).await
}

/// The leader is cut off from all its followers. It must stop acknowledging writes, and no
/// checkpoint it signs after losing leadership may be served by anyone.
pub async fn leader_isolation(options: &ScenarioOptions) -> Result<ScenarioReport> {
    let mut run = Run::start("leader-isolation", options, true).await?;
    let proxy = run.proxy.clone().context("proxied run")?;
    run.phase().await?;
    let leader = run.leader().await?;
    let ids = run.ids();
    let old_leader = ids[leader];
    let followers: Vec<u64> = ids.iter().copied().filter(|&id| id != old_leader).collect();
    proxy.partition(&[old_leader], &followers);
    let isolated = Instant::now();
    let others: Vec<usize> = (0..ids.len()).filter(|&p| p != leader).collect();
    run.leader_among(&others, Duration::from_secs(60)).await?;
    let unavailability = unavailability_after(&run.load, isolated, Duration::from_secs(60)).await?;
    run.phase().await?;
    let healed = Instant::now();
    proxy.heal();

    // No write sent to the isolated leader while it was cut off was acknowledged.
    let during: Vec<Answer> = run
        .load
        .answers()
        .into_iter()
        .filter(|a| a.node == old_leader && a.sent >= isolated && a.done < healed)
        .collect();
    for answer in &during {
        if let Outcome::Logged(index) = answer.outcome {
            run.violations.push(Violation::Scenario(format!(
                "isolated old leader {old_leader} acknowledged index {index}"
            )));
        }
    }

    run.phase().await?;
    // Every checkpoint the old leader served while isolated was also served (or returned) by
    // a node of the majority: it was committed, not signed alone.
    let served = run.poller.seen();
    let majority_texts: std::collections::HashSet<String> = served
        .iter()
        .filter(|seen| seen.node != old_leader)
        .map(|seen| seen.text.clone())
        .collect();
    let isolated_texts: Vec<&ServedObservation> = served
        .iter()
        .filter(|seen| seen.node == old_leader && seen.at >= isolated && seen.at < healed)
        .collect();
    for seen in isolated_texts {
        if !majority_texts.contains(&seen.text) {
            run.violations.push(Violation::Scenario(format!(
                "isolated old leader served a checkpoint no majority node ever served: {:?}",
                seen.text
            )));
        }
    }
    run.finish(Some(unavailability)).await
}

/// A fourth and fifth node join a three-node cluster under load (each added through a follower,
/// whose 421 the admin client follows to the leader: learner, catch up, voter); the load then
/// spreads over all five; then two of the original three are removed (with `remove_leader`, the
/// current leader is one of them, and a new leader is elected among the rest), the removed
/// processes are stopped, and the checker runs over the three remaining members.
pub async fn grow_shrink(options: &ScenarioOptions, remove_leader: bool) -> Result<ScenarioReport> {
    let name = if remove_leader {
        "grow-shrink-leader"
    } else {
        "grow-shrink"
    };
    let mut run = Run::start(name, options, false).await?;
    let original = run.cluster.nodes.len();
    run.phase().await?;

    // Grow: two new nodes, added under load.
    let first_new_id = run.ids().into_iter().max().unwrap_or(0) + 1;
    let store_args = run.store_args.clone();
    let store_args: Vec<&str> = store_args.iter().map(String::as_str).collect();
    for id in first_new_id..first_new_id + 2 {
        let leader = run.leader().await?;
        let via = (0..original)
            .find(|&p| p != leader)
            .context("a follower to send the admin call to")?;
        let (member, _) = run
            .cluster
            .start_new_node(id, &store_args, Duration::from_secs(60))
            .await?;
        let via_address = run.cluster.nodes[via].spec.internal_addr();
        run.cluster
            .admin(&["node", "add", "--target", &via_address, "--member", &member])
            .await
            .with_context(|| format!("adding node {id}\n{}", log_tails(&run.cluster)))?;
    }
    let everyone: Vec<usize> = (0..run.cluster.nodes.len()).collect();
    let mut voters = run.voters(run.leader().await?).await?;
    voters.sort_unstable();
    let all_ids = run.ids();
    if voters != all_ids {
        run.violations.push(Violation::Scenario(format!(
            "after adding two nodes the voters are {voters:?}, expected {all_ids:?}"
        )));
    }
    run.set_members(everyone.clone());
    run.phase().await?;

    // Shrink: two of the original three; the current leader last, if it goes.
    let leader = run.leader_among(&everyone, Duration::from_secs(30)).await?;
    let mut removed: Vec<usize> = (0..original)
        .filter(|&p| p != leader)
        .take(if remove_leader { 1 } else { 2 })
        .collect();
    if remove_leader {
        removed.push(leader);
    }
    let remaining: Vec<usize> = everyone
        .iter()
        .copied()
        .filter(|p| !removed.contains(p))
        .collect();
    // Sent to a node that stays (a new one): it follows the 421 to the leader.
    let via_address = run.cluster.nodes[*remaining.last().context("a remaining node")?]
        .spec
        .internal_addr();
    let mut removed_at = Instant::now();
    for &position in &removed {
        let id = run.cluster.nodes[position].spec.id.to_string();
        removed_at = Instant::now();
        run.cluster
            .admin(&["node", "remove", "--target", &via_address, "--id", &id])
            .await
            .with_context(|| format!("removing node {id}\n{}", log_tails(&run.cluster)))?;
    }
    run.set_members(remaining.clone());
    let new_leader = run
        .leader_among(&remaining, Duration::from_secs(60))
        .await?;
    let election = removed_at.elapsed();
    // The old leader keeps serving until it has replicated the membership that removes it, so
    // "first 201 after the fault" would flatter: report the longest stretch without a 201 from
    // the removal to the end of the next load phase instead.
    unavailability_after(&run.load, removed_at, Duration::from_secs(60)).await?;
    // The removed nodes are shut down, as an operator would.
    for &position in &removed {
        run.cluster.nodes[position].kill();
    }
    let mut voters = run.voters(new_leader).await?;
    voters.sort_unstable();
    let expected: Vec<u64> = remaining
        .iter()
        .map(|&p| run.cluster.nodes[p].spec.id)
        .collect();
    if voters != expected {
        run.violations.push(Violation::Scenario(format!(
            "after removing two nodes the voters are {voters:?}, expected {expected:?}"
        )));
    }
    run.phase().await?;
    let unavailability = run.load.longest_gap_since(removed_at);
    if remove_leader {
        run.finish_with(Some(unavailability), Some(election)).await
    } else {
        run.finish(None).await
    }
}

/// Size of each node's tmpfs in the full-disk scenarios: room for a short run's Raft log, state
/// machine and tiles, and quick to fill.
pub const SMALL_DISK_MIB: u64 = 64;

/// What a node logs when its storage fails and it exits: Raft's storage (`node/src/serve.rs`) or
/// the tile store's disk (`node/src/integrator.rs`).
pub const STORAGE_FAILURE_LINE: &str = "stopped on a storage error";

/// Exit code of a node whose Raft failed on a storage error (EX_IOERR).
pub const STORAGE_FAILURE_EXIT_CODE: i32 = 74;

/// Waits until the process at `position` exits; returns its exit code (`None`: killed by a
/// signal), or `Err` if it still runs after `timeout`.
pub async fn wait_for_exit(
    cluster: &mut Cluster,
    position: usize,
    timeout: Duration,
) -> Result<Option<i32>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(code) = cluster.nodes[position].exited() {
            return Ok(code);
        }
        if Instant::now() >= deadline {
            bail!(
                "node {} still runs {timeout:?} after its disk filled up",
                cluster.nodes[position].spec.id
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One node's disk fills up under load (every node's data directory is a small tmpfs; a filler
/// file takes the rest of the chosen node's, so its writes fail with ENOSPC). The node must stop
/// acknowledging (no 201 that a quorum did not persist), exit with a clear log line rather than
/// panic or hang, and the others must keep accepting writes (electing a new leader when the full
/// node led). Then the space is freed, the node restarted; it catches up and the checker runs over
/// all.
pub async fn full_disk(options: &ScenarioOptions, leader: bool) -> Result<ScenarioReport> {
    let name = if leader {
        "full-disk-leader"
    } else {
        "full-disk-follower"
    };
    if options.shared_tile_store {
        bail!("{name} fills one node's own disk; it does not run with a shared tile store");
    }
    let cluster = Cluster::start_on_small_disks(options.nodes, &[], SMALL_DISK_MIB)
        .await
        .context(
            "starting a cluster on small tmpfs data directories (needs permission to mount)",
        )?;
    let mut run = Run::observe(name, options, cluster, None)?;
    run.phase().await?;
    let current_leader = run.leader().await?;
    let full = if leader {
        current_leader
    } else {
        (current_leader + 1) % run.cluster.nodes.len()
    };
    let full_id = run.cluster.nodes[full].spec.id;
    run.cluster.mounts[full].fill()?;
    let filled = Instant::now();

    // The full node stops: openraft fails on the first log write that hits ENOSPC, and the node
    // exits with a clear line (not a panic, not a zombie that keeps claiming leadership).
    let code = wait_for_exit(&mut run.cluster, full, Duration::from_secs(60))
        .await
        .with_context(|| log_tails(&run.cluster))?;
    let log = run.cluster.nodes[full].log();
    if code != Some(STORAGE_FAILURE_EXIT_CODE) {
        run.violations.push(Violation::Scenario(format!(
            "node {full_id} with a full disk exited with {code:?}, expected {STORAGE_FAILURE_EXIT_CODE}"
        )));
    }
    if !log.contains(STORAGE_FAILURE_LINE) {
        run.violations.push(Violation::Scenario(format!(
            "node {full_id} with a full disk did not log {STORAGE_FAILURE_LINE:?}"
        )));
    }
    if log.contains("panicked at") {
        run.violations.push(Violation::Scenario(format!(
            "node {full_id} panicked when its disk filled up"
        )));
    }

    // The others carry on (a new leader when the full node led).
    let others: Vec<usize> = (0..run.cluster.nodes.len())
        .filter(|&p| p != full)
        .collect();
    let election = if leader {
        run.leader_among(&others, Duration::from_secs(60)).await?;
        Some(filled.elapsed())
    } else {
        None
    };
    let unavailability = unavailability_after(&run.load, filled, Duration::from_secs(60)).await?;
    run.phase().await?;

    // The full node may still acknowledge a few entries after the fill, legitimately: a write
    // can land in a page its files already hold (tmpfs allocates whole pages), and a leader's
    // entry is committed once both followers have fsynced it, whatever its own disk says. What
    // must hold is durability by a quorum: every entry it acknowledged is in the survivors' log at
    // its index with its bytes, which the checker verifies over every answer of the run.

    // Space back; the node restarts and catches up.
    run.cluster.mounts[full].free()?;
    run.restart(full).await?;
    run.phase().await?;
    run.finish_with(Some(unavailability), election).await
}
