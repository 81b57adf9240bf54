//! `rekor-node trust-files`: the files a Sigstore client needs to use this log, written for a
//! running log's key: a trusted root (`trusted_root.json`) with this log's `tlogs` entry, a
//! signing config (`signing_config.json`, v0.2) listing the log with `majorApiVersion: 2`, and
//! both in one client trust config (`trust_config.json`), which sigstore-python's
//! `--trust-config` reads. cosign (`--trusted-root`, `--signing-config`) and sigstore-js read the
//! first two.
//!
//! The certificate authorities, CT logs and timestamp authorities are not this log's to invent:
//! they come from a base trusted root and signing config the operator names (for example the
//! public-good instance's, as its TUF repository serves them), or from `--ca-url`/`--tsa-url`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::keys::{open_for_public_key, rfc3339_now, tlog_entry};

const TRUSTED_ROOT_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.trustedroot+json;version=0.1";
const SIGNING_CONFIG_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.signingconfig.v0.2+json";
const TRUST_CONFIG_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json";

#[derive(Debug, Args)]
pub struct TrustFilesArgs {
    /// The log's public URL (what clients POST to and read from).
    #[arg(long)]
    pub base_url: String,
    /// The log's origin (checkpoint key name).
    #[arg(long, default_value = crate::config::defaults::ORIGIN)]
    pub origin: String,
    /// The log's key: a key file or a key URI, as given to `serve --signing-key` (the public key
    /// is read from it, with the same credentials in the environment).
    #[arg(long)]
    pub signing_key: String,
    /// Password file of an encrypted --signing-key file.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// A trusted root whose certificate authorities, CT logs and timestamp authorities to keep
    /// (e.g. the public-good instance's `trusted_root.json`).
    #[arg(long)]
    pub base_trusted_root: Option<PathBuf>,
    /// A signing config (v0.2) whose CA, OIDC and TSA URLs to keep.
    #[arg(long)]
    pub base_signing_config: Option<PathBuf>,
    /// Keep the base trusted root's other transparency logs (to verify their bundles too).
    #[arg(long)]
    pub keep_other_tlogs: bool,
    /// A Fulcio URL for the signing config (repeatable), on top of the base's.
    #[arg(long)]
    pub ca_url: Vec<String>,
    /// An OIDC issuer URL for the signing config (repeatable), on top of the base's.
    #[arg(long)]
    pub oidc_url: Vec<String>,
    /// A timestamp authority URL for the signing config (repeatable), on top of the base's.
    #[arg(long)]
    pub tsa_url: Vec<String>,
    /// When clients may start trusting the log (RFC 3339). Default: now.
    #[arg(long)]
    pub valid_from: Option<String>,
    /// Where to write the three files (created if missing).
    #[arg(long)]
    pub out_dir: PathBuf,
}

pub fn run(args: TrustFilesArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a runtime")?;
    let signer = runtime.block_on(open_for_public_key(
        &args.signing_key,
        &args.origin,
        args.password_file.clone(),
    ))?;
    let valid_from = args.valid_from.clone().unwrap_or_else(rfc3339_now);
    let tlog = tlog_entry(&signer, &args.base_url, &valid_from);
    let trusted_root = trusted_root(&args, tlog)?;
    let signing_config = signing_config(&args, &valid_from)?;
    let trust_config = json!({
        "mediaType": TRUST_CONFIG_MEDIA_TYPE,
        "trustedRoot": trusted_root,
        "signingConfig": signing_config,
    });
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    for (name, value) in [
        ("trusted_root.json", &trusted_root),
        ("signing_config.json", &signing_config),
        ("trust_config.json", &trust_config),
    ] {
        let path = args.out_dir.join(name);
        let mut text = serde_json::to_string_pretty(value)?;
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn read_json(path: &Path, what: &str) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON ({what})", path.display()))?;
    if !value.is_object() {
        bail!("{} is not a JSON object ({what})", path.display());
    }
    Ok(value)
}

/// The base trusted root (or an empty one) with this log's entry in `tlogs`.
fn trusted_root(args: &TrustFilesArgs, tlog: Value) -> Result<Value> {
    let mut root = match &args.base_trusted_root {
        Some(path) => read_json(path, "a trusted root")?,
        None => json!({
            "certificateAuthorities": [],
            "ctlogs": [],
            "timestampAuthorities": [],
        }),
    };
    root["mediaType"] = json!(TRUSTED_ROOT_MEDIA_TYPE);
    let mut tlogs = match root.get("tlogs").and_then(Value::as_array) {
        Some(others) if args.keep_other_tlogs => others
            .iter()
            .filter(|other| other["baseUrl"] != tlog["baseUrl"])
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    tlogs.push(tlog);
    root["tlogs"] = Value::Array(tlogs);
    Ok(root)
}

/// The base signing config (or an empty one) listing this log as its only transparency log.
fn signing_config(args: &TrustFilesArgs, valid_from: &str) -> Result<Value> {
    let mut config = match &args.base_signing_config {
        Some(path) => read_json(path, "a signing config")?,
        None => json!({}),
    };
    if let Some(media_type) = config.get("mediaType").and_then(Value::as_str) {
        if media_type != SIGNING_CONFIG_MEDIA_TYPE {
            bail!("the base signing config is {media_type}; only {SIGNING_CONFIG_MEDIA_TYPE} carries Rekor v2 URLs");
        }
    }
    config["mediaType"] = json!(SIGNING_CONFIG_MEDIA_TYPE);
    let service = |url: &str, version: u32| {
        json!({
            "url": url,
            "majorApiVersion": version,
            "validFor": {"start": valid_from},
            "operator": args.origin,
        })
    };
    for (field, urls) in [
        ("caUrls", &args.ca_url),
        ("oidcUrls", &args.oidc_url),
        ("tsaUrls", &args.tsa_url),
    ] {
        let mut services = config
            .get(field)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        services.extend(urls.iter().map(|url| service(url, 1)));
        config[field] = Value::Array(services);
    }
    config["rekorTlogUrls"] = json!([service(&args.base_url, 2)]);
    config["rekorTlogConfig"] = json!({"selector": "ANY"});
    if config.get("tsaConfig").is_none() {
        config["tsaConfig"] = json!({"selector": "ANY"});
    }
    if config["caUrls"].as_array().is_none_or(Vec::is_empty) {
        eprintln!(
            "note: the signing config names no certificate authority (--ca-url or \
             --base-signing-config); clients that sign need one"
        );
    }
    Ok(config)
}
