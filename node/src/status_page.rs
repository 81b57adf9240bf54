//! The read-only status page on the public listener: `/` (plain HTML), `/status.js` (the script
//! that polls), `/status.json` (what this node knows: origin, log ID, tree size and checkpoint age,
//! Raft role and leader, members and their replication lag, recent throughput).
//!
//! Nothing here changes state and nothing secret is shown: no internal addresses, no cluster
//! secret. Replication lag is only known to the leader (openraft tracks it there), so a follower's
//! page says so and links to the leader's page.
//!
//! The assets are compiled in (`include_str!`), so the page needs no build step and no files at
//! run time.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{http::header, web, HttpResponse};
use base64::Engine;
use rekor_raft::types::Raft;
use serde::Serialize;
use tokio::sync::watch;

use crate::served::Served;

const PAGE_HTML: &str = include_str!("../assets/status.html");
const PAGE_JS: &str = include_str!("../assets/status.js");

/// How often the tree size is sampled for the throughput chart.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// How many samples are kept: ten minutes at two seconds.
const SAMPLES_KEPT: usize = 300;

/// The status page: cheap to clone, shared by every worker of the public listener.
#[derive(Clone)]
pub struct StatusPage {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: u64,
    origin: String,
    log_id: String,
    read_only: bool,
    raft: Raft,
    served: watch::Receiver<Served>,
    state_machine: rekor_raft::StateReader,
    history: Mutex<History>,
}

#[derive(Default)]
struct History {
    /// `(unix seconds, integrated size)`, oldest first.
    samples: VecDeque<(f64, u64)>,
    /// The checkpoint text last seen and the unix time this node started serving it.
    checkpoint: Option<(Arc<str>, f64)>,
}

/// The JSON behind the page (`/status.json`).
#[derive(Debug, Serialize)]
pub struct StatusSnapshot {
    pub node_id: u64,
    pub origin: String,
    pub log_id: String,
    pub read_only: bool,
    pub frozen: bool,
    /// Raft role of this node: Leader, Follower, Candidate, Learner, Shutdown.
    pub state: String,
    pub term: u64,
    pub leader: Option<u64>,
    /// The leader's public address, to link to its page.
    pub leader_public_addr: Option<String>,
    /// Size and root of the checkpoint this node serves.
    pub tree_size: u64,
    pub root: Option<String>,
    /// Seconds since this node started serving its current checkpoint.
    pub checkpoint_age_s: Option<f64>,
    pub integrated_size: u64,
    pub sequenced_size: u64,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    /// Whether `members[].lag` is known (only on the leader).
    pub lag_known: bool,
    pub members: Vec<MemberStatus>,
    /// Entries per second over the last minute.
    pub entries_per_s_1m: f64,
    /// `[unix seconds, integrated size]` pairs, oldest first, every two seconds.
    pub samples: Vec<(f64, u64)>,
    pub now: f64,
    pub version: &'static str,
}

/// One cluster member as the page shows it.
#[derive(Debug, Serialize)]
pub struct MemberStatus {
    pub id: u64,
    pub voter: bool,
    pub public_addr: String,
    pub is_leader: bool,
    pub is_self: bool,
    /// Raft entries behind the leader's last log index (leader only).
    pub lag: Option<u64>,
}

impl StatusPage {
    /// Creates the page state and starts the sampler task (on the current tokio runtime; it
    /// ends when the integrator's `served` channel closes).
    pub fn start(
        node_id: u64,
        origin: &str,
        log_id: [u8; 32],
        read_only: bool,
        raft: Raft,
        served: watch::Receiver<Served>,
        state_machine: rekor_raft::StateReader,
    ) -> Self {
        let page = Self {
            inner: Arc::new(Inner {
                node_id,
                origin: origin.to_owned(),
                log_id: base64::engine::general_purpose::STANDARD.encode(log_id),
                read_only,
                raft,
                served,
                state_machine,
                history: Mutex::new(History::default()),
            }),
        };
        tokio::spawn(page.clone().sample());
        page
    }

    /// Mounts `/`, `/status.js` and `/status.json`. Mount it before the API's `configure`:
    /// the API's catch-all scope answers every path it is given first.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        let data = web::Data::new(self.clone());
        cfg.app_data(data.clone())
            .service(web::resource("/").route(web::get().to(page)))
            .service(web::resource("/status.js").route(web::get().to(script)))
            .service(web::resource("/status.json").route(web::get().to(status_json)));
    }

    /// Samples the integrated size every two seconds and notes when the served checkpoint changes.
    async fn sample(self) {
        let mut served = self.inner.served.clone();
        let mut timer = tokio::time::interval(SAMPLE_INTERVAL);
        self.note_checkpoint(&served.borrow().clone());
        loop {
            tokio::select! {
                changed = served.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = served.borrow_and_update().clone();
                    self.note_checkpoint(&now);
                }
                _ = timer.tick() => {
                    let size = served.borrow().integrated_size;
                    if let Ok(mut history) = self.inner.history.lock() {
                        history.samples.push_back((unix_now(), size));
                        while history.samples.len() > SAMPLES_KEPT {
                            history.samples.pop_front();
                        }
                    }
                }
            }
        }
    }

    fn note_checkpoint(&self, served: &Served) {
        let Some(checkpoint) = &served.checkpoint else {
            return;
        };
        if let Ok(mut history) = self.inner.history.lock() {
            let changed = history
                .checkpoint
                .as_ref()
                .is_none_or(|(text, _)| text != &checkpoint.text);
            if changed {
                history.checkpoint = Some((checkpoint.text.clone(), unix_now()));
            }
        }
    }

    /// What `/status.json` answers.
    pub fn snapshot(&self) -> StatusSnapshot {
        let inner = &self.inner;
        let metrics = inner.raft.metrics().borrow().clone();
        let served = inner.served.borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let is_leader = metrics.current_leader == Some(inner.node_id);
        let last_log_index = metrics.last_log_index.unwrap_or(0);
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let lag = if *id == inner.node_id && is_leader {
                    Some(0)
                } else {
                    metrics
                        .replication
                        .as_ref()
                        .and_then(|replication| replication.get(id).cloned())
                        .map(|matched| {
                            last_log_index.saturating_sub(matched.map_or(0, |log_id| log_id.index))
                        })
                };
                MemberStatus {
                    id: *id,
                    voter: voters.contains(id),
                    public_addr: node.public_addr.clone(),
                    is_leader: metrics.current_leader == Some(*id),
                    is_self: *id == inner.node_id,
                    lag,
                }
            })
            .collect();
        let leader_public_addr = metrics
            .current_leader
            .and_then(|id| membership.get_node(&id))
            .map(|node| node.public_addr.clone());
        let now = unix_now();
        let (samples, checkpoint_since) = match inner.history.lock() {
            Ok(history) => (
                history.samples.iter().copied().collect::<Vec<_>>(),
                history.checkpoint.as_ref().map(|(_, since)| *since),
            ),
            Err(_) => (Vec::new(), None),
        };
        StatusSnapshot {
            node_id: inner.node_id,
            origin: inner.origin.clone(),
            log_id: inner.log_id.clone(),
            read_only: inner.read_only,
            frozen: served.checkpoint.as_ref().is_some_and(|cp| cp.frozen),
            state: format!("{:?}", metrics.state),
            term: metrics.current_term,
            leader: metrics.current_leader,
            leader_public_addr,
            tree_size: served.checkpoint.as_ref().map_or(0, |cp| cp.size),
            root: served
                .checkpoint
                .as_ref()
                .map(|cp| base64::engine::general_purpose::STANDARD.encode(cp.root)),
            checkpoint_age_s: checkpoint_since.map(|since| (now - since).max(0.0)),
            integrated_size: served.integrated_size,
            sequenced_size: inner.state_machine.applied().size,
            last_log_index: metrics.last_log_index,
            last_applied: metrics.last_applied.map(|id| id.index),
            lag_known: is_leader,
            members,
            entries_per_s_1m: rate_over(&samples, 60.0),
            samples,
            now,
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// Entries per second between the newest sample and the oldest one within `window` seconds.
fn rate_over(samples: &[(f64, u64)], window: f64) -> f64 {
    let Some(&(t_last, size_last)) = samples.last() else {
        return 0.0;
    };
    let first = samples
        .iter()
        .find(|(t, _)| t_last - t <= window)
        .copied()
        .unwrap_or((t_last, size_last));
    let seconds = t_last - first.0;
    if seconds <= 0.0 {
        return 0.0;
    }
    size_last.saturating_sub(first.1) as f64 / seconds
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(PAGE_HTML)
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(PAGE_JS)
}

async fn status_json(page: web::Data<StatusPage>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(page.snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_over_the_last_minute() {
        assert_eq!(rate_over(&[], 60.0), 0.0);
        assert_eq!(rate_over(&[(10.0, 5)], 60.0), 0.0);
        // 100 s of history; only the last 60 s count: 600 entries in 60 s.
        let samples: Vec<(f64, u64)> = (0..=50).map(|i| (i as f64 * 2.0, i * 20)).collect();
        let rate = rate_over(&samples, 60.0);
        assert!((rate - 10.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn the_page_loads_its_script_and_polls_the_json() {
        assert!(PAGE_HTML.contains("src=\"status.js\""));
        assert!(PAGE_JS.contains("\"status.json\""));
    }
}
