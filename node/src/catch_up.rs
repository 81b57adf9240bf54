//! Catch-up from peers (DESIGN.md, "Snapshots and catch-up"): a node that installed a Raft
//! snapshot does not hold the leaf bodies below the snapshot (the other nodes integrated and
//! deleted them), so its integrator pulls those entries from a peer's public read API as entry
//! bundles. Nothing pulled is trusted: the integrator appends the entries and compares the
//! resulting root with the root the committed order implies before anything is written or served.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use rekor_raft::types::Raft;
use rekor_storage::tiles::{decode_bundle, BundleId, TILE_WIDTH};
use tracing::{debug, info};

/// How to reach the other members' public listeners.
#[derive(Clone)]
pub struct Peers {
    self_id: u64,
    raft: Raft,
    http: reqwest::Client,
}

impl Peers {
    pub fn new(self_id: u64, raft: Raft) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            self_id,
            raft,
            http,
        })
    }

    /// Public base URLs of the other members, the leader first (it is the furthest along).
    fn public_urls(&self) -> Vec<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let mut nodes: Vec<(u64, String)> = membership
            .nodes()
            .filter(|(id, _)| **id != self.self_id)
            .map(|(id, node)| (*id, format!("http://{}", node.public_addr)))
            .collect();
        nodes.sort_by_key(|(id, _)| Some(*id) != metrics.current_leader);
        nodes.into_iter().map(|(_, url)| url).collect()
    }

    /// The entries `from..to`, read from the first peer that serves all of them.
    pub async fn pull_entries(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>> {
        let urls = self.public_urls();
        if urls.is_empty() {
            bail!("no peer to pull entries {from}..{to} from");
        }
        let mut last_error = None;
        for url in urls {
            match self.pull_from(&url, from, to).await {
                Ok(entries) => {
                    info!(peer = %url, from, to, "pulled entries from a peer");
                    return Ok(entries);
                }
                Err(error) => {
                    debug!(peer = %url, %error, "peer could not serve the entries");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no peer answered")))
    }

    async fn pull_from(&self, base: &str, from: u64, to: u64) -> Result<Vec<Vec<u8>>> {
        let width = u64::from(TILE_WIDTH);
        let mut entries = Vec::with_capacity((to - from) as usize);
        let mut bundle_index = from / width;
        while bundle_index * width < to {
            let start = bundle_index * width;
            let needed_end = to.min(start + width);
            let bundle = self
                .fetch_bundle(base, bundle_index, needed_end - start)
                .await?;
            let records = decode_bundle(&bundle).context("decoding a pulled bundle")?;
            let skip = from.saturating_sub(start) as usize;
            let take = (needed_end - start) as usize;
            if records.len() < take {
                bail!(
                    "bundle {bundle_index} has {} entries, need {take}",
                    records.len()
                );
            }
            entries.extend(records[skip..take].iter().map(|record| record.to_vec()));
            bundle_index += 1;
        }
        Ok(entries)
    }

    /// The full bundle if the peer has it, else the partial one of `width` entries.
    async fn fetch_bundle(&self, base: &str, index: u64, width: u64) -> Result<bytes::Bytes> {
        let full = BundleId::new(index, TILE_WIDTH)?;
        let mut candidates = vec![full];
        if width < u64::from(TILE_WIDTH) {
            candidates.push(BundleId::new(index, width as u16)?);
        }
        for id in candidates {
            let url = format!("{base}/api/v2/{}", id.path());
            let response = self.http.get(&url).send().await?;
            if response.status().is_success() {
                return Ok(response.bytes().await?);
            }
        }
        bail!("{base} serves no bundle {index} with {width} entries")
    }
}
