//! Admin commands of the binary (`init`, `status`, `node add|remove|list`, `freeze`): thin clients
//! of a running node's internal listener. The server side is in `internal`. The leader-only
//! commands (`node add|remove`, `freeze`) may be sent to any member: a follower's 421 names the
//! leader, and the client follows it there.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::internal::{paths, ChangeMembershipRequest, InitRequest, Member, NotLeader};

/// How to reach a node's internal listener.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Internal (node-to-node) address of the node to ask, host:port.
    #[arg(long, env = "REKOR_TARGET", default_value_t = crate::config::defaults::LISTEN_INTERNAL.to_string())]
    pub target: String,
    /// The cluster secret.
    #[arg(long, env = "REKOR_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// File holding the cluster secret. Default: ./rekor-data/cluster-secret.
    #[arg(long, env = "REKOR_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// The cluster CA bundle, for a node whose internal listener runs mutual TLS (with
    /// --tls-cert-file and --tls-key-file: an operator certificate from that CA).
    #[arg(long, env = "REKOR_ADMIN_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Operator certificate (PEM; names `urn:rekor-raft:operator:<name>`).
    #[arg(long, env = "REKOR_ADMIN_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key of --tls-cert-file.
    #[arg(long, env = "REKOR_ADMIN_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
}

impl Target {
    fn secret(&self) -> Result<String> {
        if let Some(secret) = &self.cluster_secret {
            return Ok(secret.clone());
        }
        let path = self.cluster_secret_file.clone().unwrap_or_else(|| {
            PathBuf::from(crate::config::defaults::DATA_DIR)
                .join(crate::config::defaults::CLUSTER_SECRET_FILE)
        });
        let secret = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the cluster secret from {}", path.display()))?;
        Ok(secret.trim().to_owned())
    }

    /// The operator's TLS configuration, if the node runs mutual TLS.
    fn tls(&self) -> Result<Option<rustls::ClientConfig>> {
        match (&self.tls_ca_file, &self.tls_cert_file, &self.tls_key_file) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(crate::tls::operator_client_config(
                ca,
                &crate::tls::CertificateFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                },
            )?)),
            _ => bail!("--tls-ca-file, --tls-cert-file and --tls-key-file go together"),
        }
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.tls_ca_file.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{}", self.target, path)
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub target: Target,
    /// A voter of the new cluster: `ID=INTERNAL_ADDR,PUBLIC_ADDR` (repeat for each node).
    #[arg(long = "member", required = true)]
    pub members: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct FreezeArgs {
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Add a node: as a learner, wait until it has caught up, then promote it to voter.
    Add {
        #[command(flatten)]
        target: Target,
        /// The new node: `ID=INTERNAL_ADDR,PUBLIC_ADDR`.
        #[arg(long)]
        member: String,
        /// Leave it a non-voting learner.
        #[arg(long)]
        learner_only: bool,
    },
    /// Remove a node from the voters and learners.
    Remove {
        #[command(flatten)]
        target: Target,
        /// The node id to remove.
        #[arg(long)]
        id: u64,
    },
    /// List members and their roles.
    List {
        #[command(flatten)]
        target: Target,
    },
}

/// Parses `ID=INTERNAL_ADDR,PUBLIC_ADDR`.
pub fn parse_member(text: &str) -> Result<(u64, Member)> {
    let (id, addrs) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("member {text:?} is not ID=INTERNAL_ADDR,PUBLIC_ADDR"))?;
    let id: u64 = id
        .trim()
        .parse()
        .with_context(|| format!("node id in {text:?}"))?;
    if id == 0 {
        bail!("node ids start at 1");
    }
    let (internal_addr, public_addr) = addrs
        .split_once(',')
        .ok_or_else(|| anyhow!("member {text:?} is not ID=INTERNAL_ADDR,PUBLIC_ADDR"))?;
    Ok((
        id,
        Member {
            internal_addr: internal_addr.trim().to_owned(),
            public_addr: public_addr.trim().to_owned(),
        },
    ))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn call<B: Serialize, R: for<'de> Deserialize<'de>>(
    target: &Target,
    path: &str,
    body: Option<&B>,
    timeout: Duration,
) -> Result<R> {
    let (status, text) = send(target, path, body, timeout).await?;
    if !status.is_success() {
        bail!("{} answered {status}: {}", target.target, text.trim());
    }
    serde_json::from_str(&text).with_context(|| format!("decoding the answer: {text}"))
}

/// How many times a leader-only call follows a 421 to the leader it names.
const LEADER_FOLLOWS: usize = 2;

/// Like [`call`], for routes only the leader serves (`node add|remove`, `freeze`): a node that is
/// not the leader answers 421 naming the leader's internal address, and the call is sent there
/// instead (at most [`LEADER_FOLLOWS`] times; a 421 that names no leader, as during an election,
/// is retried at the same node after a pause). Each redirect is reported on standard error.
async fn call_leader<B: Serialize, R: for<'de> Deserialize<'de>>(
    target: &Target,
    path: &str,
    body: Option<&B>,
    timeout: Duration,
) -> Result<R> {
    let mut target = target.clone();
    let mut follows = 0;
    loop {
        let (status, text) = send(&target, path, body, timeout).await?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .with_context(|| format!("decoding the answer: {text}"));
        }
        if status != reqwest::StatusCode::MISDIRECTED_REQUEST || follows == LEADER_FOLLOWS {
            bail!("{} answered {status}: {}", target.target, text.trim());
        }
        follows += 1;
        let not_leader: Option<NotLeader> = serde_json::from_str(&text).ok();
        match not_leader.and_then(|n| n.leader_id.zip(n.leader_internal_addr)) {
            Some((id, address)) if address != target.target => {
                eprintln!(
                    "{} is not the leader; following it to the leader, node {id} at {address}",
                    target.target
                );
                target.target = address;
            }
            _ => {
                eprintln!(
                    "{} is not the leader and names none (an election?); asking again",
                    target.target
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Sends one admin request; returns the status and body text whatever the status.
async fn send<B: Serialize>(
    target: &Target,
    path: &str,
    body: Option<&B>,
    timeout: Duration,
) -> Result<(reqwest::StatusCode, String)> {
    let mut client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(timeout)
        .no_proxy();
    if let Some(tls) = target.tls()? {
        client = client.tls_backend_preconfigured(tls);
    }
    let client = client.build()?;
    let request = match body {
        Some(body) => client.post(target.url(path)).json(body),
        None => client.get(target.url(path)),
    };
    let response = request
        .header(rekor_raft::network::CLUSTER_SECRET_HEADER, target.secret()?)
        .send()
        .await
        .with_context(|| format!("calling {}", target.url(path)))?;
    let status = response.status();
    let text = response.text().await?;
    Ok((status, text))
}

pub fn init(args: InitArgs) -> Result<()> {
    let mut members = BTreeMap::new();
    for member in &args.members {
        let (id, member) = parse_member(member)?;
        if members.insert(id, member).is_some() {
            bail!("node id {id} given twice");
        }
    }
    let request = InitRequest { members };
    let answer: serde_json::Value = runtime()?.block_on(call(
        &args.target,
        paths::INIT,
        Some(&request),
        Duration::from_secs(30),
    ))?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

pub fn status(args: StatusArgs) -> Result<()> {
    let answer: serde_json::Value = runtime()?.block_on(call::<(), _>(
        &args.target,
        paths::STATUS,
        None,
        Duration::from_secs(10),
    ))?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

pub fn freeze(args: FreezeArgs) -> Result<()> {
    let answer: serde_json::Value = runtime()?.block_on(call_leader(
        &args.target,
        paths::FREEZE,
        Some(&()),
        Duration::from_secs(60),
    ))?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

pub fn node(command: NodeCommand) -> Result<()> {
    let rt = runtime()?;
    let answer: serde_json::Value = match command {
        NodeCommand::Add {
            target,
            member,
            learner_only,
        } => {
            let (id, member) = parse_member(&member)?;
            let request = crate::internal::AddNodeRequest {
                id,
                member,
                promote: !learner_only,
            };
            rt.block_on(call_leader(
                &target,
                paths::ADD_NODE,
                Some(&request),
                Duration::from_secs(600),
            ))?
        }
        NodeCommand::Remove { target, id } => {
            let request = ChangeMembershipRequest { remove: vec![id] };
            rt.block_on(call_leader(
                &target,
                paths::REMOVE_NODE,
                Some(&request),
                Duration::from_secs(60),
            ))?
        }
        NodeCommand::List { target } => rt.block_on(call::<(), serde_json::Value>(
            &target,
            paths::STATUS,
            None,
            Duration::from_secs(10),
        ))?["members"]
            .take(),
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_syntax() {
        let (id, member) = parse_member("2=127.0.0.1:4001,127.0.0.1:4000").unwrap();
        assert_eq!(id, 2);
        assert_eq!(member.internal_addr, "127.0.0.1:4001");
        assert_eq!(member.public_addr, "127.0.0.1:4000");
        for bad in ["2", "x=a,b", "0=a,b", "2=a"] {
            assert!(parse_member(bad).is_err(), "{bad} accepted");
        }
    }
}
