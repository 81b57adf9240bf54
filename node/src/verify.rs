//! `rekor-node verify`: an independent audit of any C2SP tlog-tiles log, this one or another, from
//! its URL alone (tlog-tiles.md §2–§6, §11).
//!
//! The audit trusts nothing the log serves except what the log's key signed:
//! 1. fetch `<url>/checkpoint` and verify its signature and origin (§6–§8);
//! 2. fetch every entry bundle up to the checkpoint size, hash each entry as a leaf, and compare the
//!    leaf hashes with the level-0 hash tile of the same index;
//! 3. level by level, hash each full tile's row into its subtree root (the node one tile level up)
//!    and compare those with the served tiles above, up to the partial tiles of the right edge;
//! 4. fold the leaves into the root and compare it with the checkpoint's root;
//! 5. optionally, check that a checkpoint saved by an earlier run is a prefix of this one: the root
//!    of the first `size₁` leaves, recomputed from the entries, must be the saved root.
//!
//! Memory stays bounded whatever the log size: the leaves are folded into a compact range
//! (≤ 64 hashes) and each tile level keeps only the row it is filling (≤ 256 hashes).
//!
//! When something does not match, the audit names the exact object: a hash tile whose hashes differ
//! from the ones recomputed from the entries (when the entries are consistent with the signed
//! root), or an entry bundle whose entries no longer hash to its tile (when the tiles are consistent
//! with the signed root and the entries are not).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use rekor_storage::checkpoint::Checkpoint;
use rekor_storage::merkle::{self, CompactRange, Hash};
use rekor_storage::note::{self, NoteVerifier, VerifierKey};
use rekor_storage::proof::{self, TileSet};
use rekor_storage::tiles::{self, BundleId, TileId, TILE_WIDTH};

/// Flags of `verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The log's tlog-tiles base URL: the prefix of `checkpoint` and `tile/`
    /// (for rekor-node: http://HOST:PORT/api/v2).
    #[arg(long, env = "REKOR_VERIFY_URL")]
    pub url: String,
    /// The log's note verifier key `<origin>+<key id>+<base64>` (printed by `rekor-node keygen`).
    #[arg(long, conflicts_with = "public_key")]
    pub vkey: Option<String>,
    /// A file with the log's public key: PEM SubjectPublicKeyInfo, or its base64 DER (the
    /// `public key:` line of `rekor-node keygen`). Ed25519, ECDSA P-256 or RSA. Needs --origin.
    #[arg(long, requires = "origin")]
    pub public_key: Option<PathBuf>,
    /// The checkpoint origin. With --vkey it defaults to, and must equal, the key name.
    #[arg(long)]
    pub origin: Option<String>,
    /// A signed checkpoint saved by an earlier run (see --save-checkpoint): fail unless the log
    /// still contains exactly that tree as a prefix.
    #[arg(long)]
    pub previous: Option<PathBuf>,
    /// After a successful audit, write the verified checkpoint here (for the next --previous).
    #[arg(long)]
    pub save_checkpoint: Option<PathBuf>,
    /// How many bundle/tile pairs to fetch concurrently.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 2)]
    pub progress_interval_s: u64,
}

/// What a successful audit established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub hash_tiles: u64,
    pub bundles: u64,
    /// The size of the previous checkpoint shown to be a prefix, if one was given.
    pub consistent_with: Option<u64>,
    /// The frozen marker line, when the log is sealed.
    pub frozen: Option<String>,
}

/// Runs `rekor-node verify`: prints a summary and returns Ok when the log checks out; otherwise
/// the error names the first object that failed.
pub fn run(args: VerifyArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(audit(&args))?;
    println!(
        "OK: {} at size {} (root {}): {} entry bundles and {} hash tiles match the signed checkpoint",
        report.origin,
        report.size,
        STANDARD.encode(report.root),
        report.bundles,
        report.hash_tiles
    );
    if let Some(previous) = report.consistent_with {
        println!("OK: consistent with the previous checkpoint at size {previous}");
    }
    if let Some(marker) = &report.frozen {
        println!("the log is frozen: {marker}");
    }
    Ok(())
}

/// The whole audit, as a library call (the test drives `run` through the binary).
pub async fn audit(args: &VerifyArgs) -> Result<AuditReport> {
    let (origin, verifier) = load_verifier(args)?;
    let fetcher = Fetcher::new(&args.url)?;
    let signed = fetcher
        .get("checkpoint")
        .await?
        .ok_or_else(|| anyhow!("{} has no checkpoint (404)", fetcher.url("checkpoint")))?;
    let (checkpoint, _) = Checkpoint::open(&signed, &origin, verifier.as_ref())
        .with_context(|| format!("checkpoint at {}", fetcher.url("checkpoint")))?;

    let previous = match &args.previous {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading the previous checkpoint {}", path.display()))?;
            let (previous, _) = Checkpoint::open(&bytes, &origin, verifier.as_ref())
                .with_context(|| format!("previous checkpoint {}", path.display()))?;
            if previous.size > checkpoint.size {
                bail!(
                    "the log shrank: the previous checkpoint has size {}, the log now signs size {}",
                    previous.size,
                    checkpoint.size
                );
            }
            Some(previous)
        }
        None => None,
    };

    let mut audit = Audit::new(&fetcher, &checkpoint, previous.as_ref().map(|p| p.size));
    audit
        .run(args.parallel.max(1), args.progress_interval_s)
        .await?;
    audit.verdict(&checkpoint)?;

    let consistent_with = match previous {
        Some(previous) => {
            let recomputed = audit.previous_root.unwrap_or(merkle::EMPTY_ROOT);
            if recomputed != previous.root {
                bail!(
                    "the log is not consistent with the previous checkpoint: its first {} entries \
                     hash to {}, the previous checkpoint signed {}",
                    previous.size,
                    STANDARD.encode(recomputed),
                    STANDARD.encode(previous.root)
                );
            }
            Some(previous.size)
        }
        None => None,
    };
    if let Some(path) = &args.save_checkpoint {
        std::fs::write(path, &signed)
            .with_context(|| format!("saving the checkpoint to {}", path.display()))?;
    }
    Ok(AuditReport {
        origin,
        size: checkpoint.size,
        root: checkpoint.root,
        hash_tiles: audit.hash_tiles,
        bundles: audit.bundles,
        consistent_with,
        frozen: checkpoint
            .extensions
            .iter()
            .find(|line| line.starts_with(rekor_storage::checkpoint::FROZEN_PREFIX))
            .cloned(),
    })
}

/// The checkpoint origin and a verifier for the log's key, from --vkey or --public-key.
fn load_verifier(args: &VerifyArgs) -> Result<(String, Box<dyn NoteVerifier>)> {
    if let Some(vkey) = &args.vkey {
        let parsed = VerifierKey::parse(vkey).context("parsing --vkey")?;
        if let Some(origin) = &args.origin {
            if *origin != parsed.name {
                bail!(
                    "--origin {origin:?} differs from the --vkey key name {:?}",
                    parsed.name
                );
            }
        }
        let verifier: Box<dyn NoteVerifier> = match parsed.type_and_key.split_first() {
            Some((&note::ALG_ED25519, _)) => Box::new(note::Ed25519NoteVerifier::from_vkey(vkey)?),
            // transparency-dev convention: 0x02 ‖ DER SPKI (see rekor_storage::note::ecdsa_p256).
            Some((&note::ALG_ECDSA, der)) => note::verifier_from_spki_der(&parsed.name, der)?,
            Some((&note::ALG_UNASSIGNED, rest)) if rest.starts_with(note::RSA_PKCS1V15_ID) => {
                note::verifier_from_spki_der(&parsed.name, &rest[note::RSA_PKCS1V15_ID.len()..])?
            }
            _ => bail!("--vkey has an unsupported key type"),
        };
        if verifier.key_id() != parsed.key_id {
            bail!(
                "--vkey states key ID {:08x}, but its key has ID {:08x}",
                parsed.key_id,
                verifier.key_id()
            );
        }
        return Ok((parsed.name, verifier));
    }
    let (Some(path), Some(origin)) = (&args.public_key, &args.origin) else {
        bail!("give --vkey, or --public-key with --origin");
    };
    let der = read_public_key(path)?;
    let verifier = note::verifier_from_spki_der(origin, &der)
        .with_context(|| format!("public key {}", path.display()))?;
    Ok((origin.clone(), verifier))
}

/// A PEM `PUBLIC KEY` file, or a file holding the base64 DER alone.
fn read_public_key(path: &Path) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the public key {}", path.display()))?;
    let text = text.trim();
    let base64: String = if text.starts_with("-----BEGIN") {
        if !text.starts_with("-----BEGIN PUBLIC KEY-----") {
            bail!("{} is not a PEM PUBLIC KEY", path.display());
        }
        text.lines()
            .filter(|line| !line.starts_with("-----"))
            .map(str::trim)
            .collect()
    } else {
        text.to_owned()
    };
    STANDARD
        .decode(base64)
        .with_context(|| format!("{} is not PEM or base64", path.display()))
}

/// GETs below the log's base URL, with a few retries for transient failures.
struct Fetcher {
    base: String,
    client: reqwest::Client,
}

impl Fetcher {
    fn new(base: &str) -> Result<Self> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--url must be an http:// or https:// URL: {base:?}");
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// `None` on 404; an error on anything else but 200 after the retries.
    async fn get(&self, path: &str) -> Result<Option<Bytes>> {
        let url = self.url(path);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = self.client.get(&url).send().await;
            let retry = match outcome {
                Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => {
                    return Ok(None)
                }
                Ok(response) if response.status().is_success() => match response.bytes().await {
                    Ok(bytes) => return Ok(Some(bytes)),
                    Err(error) => anyhow!("reading {url}: {error}"),
                },
                Ok(response) if response.status().is_server_error() => {
                    anyhow!("{url} answered {}", response.status())
                }
                Ok(response) => bail!("{url} answered {}", response.status()),
                Err(error) => anyhow!("fetching {url}: {error}"),
            };
            if attempt >= 3 {
                return Err(retry);
            }
            // Back off a little: a busy log may answer 503 (pushback) for a moment.
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
    }

    /// A hash tile's hashes. A missing partial tile may be read from the full tile that replaced
    /// it (tlog-tiles §3: the first `width` hashes of the wider tile are the same).
    async fn hash_tile(&self, id: TileId) -> Result<Vec<Hash>> {
        let (bytes, from_full) = self
            .tile_bytes(&id.path(), id.is_full(), || TileId {
                width: TILE_WIDTH,
                ..id
            })
            .await?;
        let want = usize::from(id.width) * 32;
        let bytes = if from_full && bytes.len() >= want {
            bytes.slice(..want)
        } else {
            bytes
        };
        tiles::decode_tile(&bytes, id.width).map_err(|error| anyhow!("hash tile {id}: {error}"))
    }

    /// An entry bundle's entries (a missing partial bundle may be read from the full one).
    async fn bundle(&self, id: BundleId) -> Result<Vec<Bytes>> {
        let (bytes, from_full) = self
            .tile_bytes(&id.path(), id.is_full(), || BundleId {
                width: TILE_WIDTH,
                ..id
            })
            .await?;
        let entries =
            tiles::decode_bundle(&bytes).map_err(|error| anyhow!("entry bundle {id}: {error}"))?;
        let expected = if from_full {
            256
        } else {
            usize::from(id.width)
        };
        if entries.len() != expected {
            bail!(
                "entry bundle {id} holds {} entries, expected {}",
                entries.len(),
                id.width
            );
        }
        Ok(entries
            .into_iter()
            .take(usize::from(id.width))
            .map(|entry| bytes.slice_ref(entry))
            .collect())
    }

    /// The object at `path`; for a partial one that is gone, the full one (then `true`).
    async fn tile_bytes<T: std::fmt::Display>(
        &self,
        path: &str,
        full: bool,
        full_id: impl FnOnce() -> T,
    ) -> Result<(Bytes, bool)> {
        if let Some(bytes) = self.get(path).await? {
            return Ok((bytes, false));
        }
        if !full {
            let full_path = full_id().to_string();
            if let Some(bytes) = self.get(&full_path).await? {
                return Ok((bytes, true));
            }
        }
        bail!("{path} is missing: {} answered 404", self.url(path))
    }
}

/// One served hash that differs from the hash recomputed from the entries.
#[derive(Debug, Clone)]
struct Mismatch {
    tile: TileId,
    position: usize,
    served: Hash,
    recomputed: Hash,
}

/// The audit's running state.
struct Audit<'a> {
    fetcher: &'a Fetcher,
    size: u64,
    /// The leaf hashes seen so far, folded.
    leaves: CompactRange,
    /// `Some(size₁)` when a previous checkpoint is to be checked; `previous_root` is filled in
    /// when the leaves reach that size.
    previous_size: Option<u64>,
    previous_root: Option<Hash>,
    /// `pending[L]`: the level-L tile row being filled from below (recomputed, not served).
    pending: Vec<Vec<Hash>>,
    /// Served right-edge tiles, to tell a bad bundle from a bad tile when the roots disagree.
    root_tile_ids: HashSet<(u8, u64)>,
    root_tiles: TileSet,
    mismatches: Vec<Mismatch>,
    hash_tiles: u64,
    bundles: u64,
}

impl<'a> Audit<'a> {
    fn new(fetcher: &'a Fetcher, checkpoint: &Checkpoint, previous_size: Option<u64>) -> Self {
        Self {
            fetcher,
            size: checkpoint.size,
            leaves: CompactRange::new(),
            previous_size,
            previous_root: (previous_size == Some(0)).then_some(merkle::EMPTY_ROOT),
            pending: vec![Vec::new(); usize::from(tiles::MAX_TILE_LEVEL) + 2],
            root_tile_ids: proof::tiles_for_root(checkpoint.size)
                .into_iter()
                .map(|id| (id.level, id.index))
                .collect(),
            root_tiles: TileSet::new(),
            mismatches: Vec::new(),
            hash_tiles: 0,
            bundles: 0,
        }
    }

    async fn run(&mut self, parallel: usize, progress_interval_s: u64) -> Result<()> {
        let fetcher = self.fetcher;
        let size = self.size;
        let bundle_count = size.div_ceil(u64::from(TILE_WIDTH));
        // Each bundle and the level-0 tile of the same index, fetched ahead in order.
        let mut pairs = futures::stream::iter(0..bundle_count)
            .map(move |index| async move {
                let bundle = tiles::bundle_at_size(index, size)
                    .ok_or_else(|| anyhow!("no bundle {index} at size {size}"))?;
                let tile = TileId {
                    level: 0,
                    index,
                    width: bundle.width,
                };
                let (entries, hashes) =
                    futures::try_join!(fetcher.bundle(bundle), fetcher.hash_tile(tile))?;
                anyhow::Ok((tile, entries, hashes))
            })
            .buffered(parallel);

        let started = Instant::now();
        let mut last_progress = started;
        while let Some(fetched) = pairs.next().await {
            let (tile, entries, served) = fetched?;
            let recomputed: Vec<Hash> = entries
                .iter()
                .map(|entry| merkle::leaf_hash(entry))
                .collect();
            for leaf in &recomputed {
                self.leaves
                    .append(*leaf)
                    .map_err(|error| anyhow!("folding leaves: {error}"))?;
                if self.previous_size == Some(self.leaves.size()) {
                    self.previous_root = Some(self.leaves.root());
                }
            }
            self.bundles += 1;
            self.tile_checked(tile, &recomputed, served).await?;
            if progress_interval_s > 0
                && last_progress.elapsed() >= Duration::from_secs(progress_interval_s)
            {
                last_progress = Instant::now();
                let done = self.leaves.size();
                let seconds = started.elapsed().as_secs_f64().max(0.001);
                eprintln!(
                    "verify: {done}/{size} entries ({:.1}%), {} hash tiles, {:.0} entries/s",
                    100.0 * done as f64 / size.max(1) as f64,
                    self.hash_tiles,
                    done as f64 / seconds
                );
            }
        }
        drop(pairs);

        // The right edge: every level's partial row is the partial tile of that level.
        for level in 1..self.pending.len() {
            if self.pending[level].is_empty() {
                continue;
            }
            let row = std::mem::take(&mut self.pending[level]);
            let level = level as u8;
            let id = tiles::tile_at_size(level, (size >> (8 * u32::from(level))) / 256, size)
                .filter(|id| usize::from(id.width) == row.len())
                .ok_or_else(|| anyhow!("internal: level {level} right edge does not line up"))?;
            let served = self.fetcher.hash_tile(id).await?;
            self.tile_checked(id, &row, served).await?;
        }
        if progress_interval_s > 0 {
            eprintln!(
                "verify: {}/{size} entries, {} hash tiles, done in {:.1}s",
                self.leaves.size(),
                self.hash_tiles,
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    /// Compares a served tile with its recomputed row, then carries a full tile's subtree root
    /// up a level, checking each tile above that this completes.
    async fn tile_checked(
        &mut self,
        mut tile: TileId,
        recomputed: &[Hash],
        mut served: Vec<Hash>,
    ) -> Result<()> {
        let mut parent = self.compare(tile, recomputed, &mut served)?;
        while let Some(node) = parent.take() {
            let level = usize::from(tile.level) + 1;
            let row = self
                .pending
                .get_mut(level)
                .ok_or_else(|| anyhow!("tree deeper than 64 levels"))?;
            row.push(node);
            if row.len() < usize::from(TILE_WIDTH) {
                break;
            }
            let row = std::mem::take(row);
            tile = TileId {
                level: level as u8,
                index: tile.index / u64::from(TILE_WIDTH),
                width: TILE_WIDTH,
            };
            let mut served = self.fetcher.hash_tile(tile).await?;
            parent = self.compare(tile, &row, &mut served)?;
        }
        Ok(())
    }

    /// Records differences; returns the subtree root of a full tile (from the recomputed row).
    fn compare(
        &mut self,
        tile: TileId,
        recomputed: &[Hash],
        served: &mut Vec<Hash>,
    ) -> Result<Option<Hash>> {
        self.hash_tiles += 1;
        if let Some(position) = recomputed
            .iter()
            .zip(served.iter())
            .position(|(a, b)| a != b)
        {
            self.mismatches.push(Mismatch {
                tile,
                position,
                served: served[position],
                recomputed: recomputed[position],
            });
        }
        if self.root_tile_ids.contains(&(tile.level, tile.index)) {
            self.root_tiles
                .insert_hashes(tile.level, tile.index, std::mem::take(served));
        }
        if !tile.is_full() {
            return Ok(None);
        }
        merkle::subtree_root(recomputed)
            .map(Some)
            .ok_or_else(|| anyhow!("internal: empty row for {tile}"))
    }

    /// Decides, from the mismatches and the two roots, whether the log checks out and if not,
    /// which object is to blame.
    fn verdict(&self, checkpoint: &Checkpoint) -> Result<()> {
        let leaves_root = self.leaves.root();
        if self.leaves.size() != checkpoint.size {
            bail!(
                "read {} entries but the checkpoint has size {}",
                self.leaves.size(),
                checkpoint.size
            );
        }
        for mismatch in self.mismatches.iter().take(20) {
            eprintln!(
                "verify: {} hash {} differs: served {}, recomputed from the entries {}",
                mismatch.tile,
                mismatch.position,
                STANDARD.encode(mismatch.served),
                STANDARD.encode(mismatch.recomputed)
            );
        }
        let others = |n: usize| {
            if n > 1 {
                format!(" (and {} more; see above)", n - 1)
            } else {
                String::new()
            }
        };
        if leaves_root == checkpoint.root {
            // The entries are what the log signed, so every differing tile is corrupt.
            return match self.mismatches.first() {
                None => Ok(()),
                Some(first) => Err(anyhow!(
                    "hash tile {} is corrupt: hash {} does not match the entries, which match the \
                     signed root{}",
                    first.tile,
                    first.position,
                    others(self.mismatches.len())
                )),
            };
        }
        let tiles_root = proof::root_from_tiles(checkpoint.size, &self.root_tiles).ok();
        if tiles_root == Some(checkpoint.root) {
            // The tiles carry the signed root, so the entries that hash differently are corrupt.
            if let Some(first) = self.mismatches.iter().find(|m| m.tile.level == 0) {
                let bundle = BundleId {
                    index: first.tile.index,
                    width: first.tile.width,
                };
                let count = self.mismatches.iter().filter(|m| m.tile.level == 0).count();
                bail!(
                    "entry bundle {bundle} is corrupt: entry {} no longer hashes to hash {} of {}, \
                     and the tiles match the signed root{}",
                    first.tile.index * u64::from(TILE_WIDTH) + first.position as u64,
                    first.position,
                    first.tile,
                    others(count)
                );
            }
        }
        let first = self
            .mismatches
            .first()
            .map(|m| format!("; first difference in {} at hash {}", m.tile, m.position))
            .unwrap_or_default();
        bail!(
            "the signed root {} matches neither the entries (root {}) nor the tiles{first}",
            STANDARD.encode(checkpoint.root),
            STANDARD.encode(leaves_root)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_files_in_pem_or_base64() {
        let dir = tempfile::tempdir().unwrap();
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let b64 = STANDARD.encode(&der);
        let pem = dir.path().join("key.pem");
        std::fs::write(
            &pem,
            format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"),
        )
        .unwrap();
        assert_eq!(read_public_key(&pem).unwrap(), der);
        let raw = dir.path().join("key.b64");
        std::fs::write(&raw, format!("{b64}\n")).unwrap();
        assert_eq!(read_public_key(&raw).unwrap(), der);
        let private = dir.path().join("private.pem");
        std::fs::write(
            &private,
            "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(read_public_key(&private).is_err());
    }

    #[test]
    fn vkey_name_is_the_origin() {
        let signer = note::Ed25519NoteSigner::generate("log.example").unwrap();
        let args = VerifyArgs {
            url: "http://127.0.0.1:1/api/v2".into(),
            vkey: Some(signer.verifier_key()),
            public_key: None,
            origin: None,
            previous: None,
            save_checkpoint: None,
            parallel: 1,
            progress_interval_s: 0,
        };
        let (origin, verifier) = load_verifier(&args).unwrap();
        assert_eq!(origin, "log.example");
        assert_eq!(verifier.name(), "log.example");
        let wrong = VerifyArgs {
            origin: Some("other.example".into()),
            ..args
        };
        assert!(load_verifier(&wrong).is_err());
    }

    #[test]
    fn urls_must_be_http() {
        assert!(Fetcher::new("ftp://x/api/v2").is_err());
        let fetcher = Fetcher::new("http://x:1/api/v2/").unwrap();
        assert_eq!(fetcher.url("checkpoint"), "http://x:1/api/v2/checkpoint");
    }
}
