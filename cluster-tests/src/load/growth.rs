//! The growth scenario of the benchmark (the performance issue: "integration rate and
//! proof-building latency at 0, 1 M and 10 M entries … and disk bytes per entry"; "peak RSS
//! per node stays under 512 MiB while a log grows to 10 M entries, and integration rate at 10 M
//! is within 20% of the rate at 0").
//!
//! Filling a real node to 10 M entries through HTTP would take hours of signing, so the log is
//! grown through an in-process path that runs the node integrator's own step
//! (`node/src/integrator.rs`, `write_step`): a step takes at most [`MAX_LEAVES_PER_STEP`]
//! committed leaves and ends on a batch boundary (batches of [`BATCH_SIZE`], as a saturated
//! sequencer cuts them), [`TreeBuilder::stage`] hashes them, and [`StagedStep::write`] writes
//! every tile, then every bundle, of the step (partial objects only where it ends), create-once
//! and fsynced, [`WRITE_CONCURRENCY`] at a time, before the next step starts. Before that, the
//! step's leaves go through the node's real Raft storage ([`RaftStorage`]): appended to the Raft
//! log in batches (durably), applied by the state machine (dedup through the identity index,
//! leaf bodies held until integrated), read back from it for the step, then marked integrated;
//! a snapshot is built and the log purged behind it every [`SNAPSHOT_EVERY`] Raft entries, as
//! openraft does with the node's defaults. Left out are the Raft network and checkpoints (the
//! node also writes the partial objects of a checkpoint's size when no step ended there).
//!
//! [`StagedStep::write`]: rekor_storage::integrate::StagedStep::write
//!
//! The entries are synthetic but realistic: canonical hashedrekord v0.0.2 bodies produced by
//! the node's validator from a few really signed requests, each copy with its own digest bytes
//! so that every leaf differs (tlog-tiles.md §11 for the tiles and bundles they land in).
//!
//! Proofs are built the way `node/src/backend.rs` builds them for a 201 (tiles read through
//! the store's read cache, hashed through a [`HashedTileCache`], [`build_inclusion_proof`]) and
//! verified with [`merkle::verify_inclusion`] against the builder's root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rekor_storage::integrate::{TreeBuilder, MAX_LEAVES_PER_STEP};
use rekor_storage::merkle;
use rekor_storage::proof::{build_inclusion_proof, tiles_for_inclusion, HashedTileCache, TileSet};
use rekor_storage::tile_store::{TileStore, DEFAULT_CACHE_CAPACITY, WRITE_CONCURRENCY};

use super::requests::{RequestMix, RequestPool};
use super::system;

/// Entries per committed Raft batch, as the node's sequencer cuts them by default: steps end
/// on a multiple of it.
pub const BATCH_SIZE: usize = 512;
/// Hashed tiles kept for proof building (`HASHED_TILE_CACHE_TILES` of the node's backend).
pub const HASHED_TILE_CACHE_TILES: usize = 1024;
/// Raft entries between snapshots (the node's `--raft-snapshot-every` default)...
pub const SNAPSHOT_EVERY: u64 = 250;
/// ... of which this many stay in the log behind a snapshot.
const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 62;
/// Signed requests the synthetic entries are derived from.
const TEMPLATES: usize = 64;
/// Bytes a stored entry takes beyond its body, for the free-space check (tiles, partial
/// tiles, file-system slack, the Raft storage: mostly the identity index).
const DISK_OVERHEAD_PER_ENTRY: u64 = 350;

/// What to measure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GrowthSettings {
    /// Log sizes at which to measure, ascending (duplicates ignored).
    pub sizes: Vec<u64>,
    /// Entries integrated, and timed, starting at each size.
    pub window: u64,
    /// Inclusion proofs built and verified at each size.
    pub proofs: usize,
    /// Directory in which the temporary tile directory is created (default: the system temp
    /// dir). The tile directory is always removed at the end, also on error.
    pub parent_dir: Option<PathBuf>,
    /// The tile store's read cache (the node's default is 64 MiB).
    pub tile_cache_bytes: usize,
    /// Request mix of the signed templates (sizes of keys and certificates vary the body size).
    pub mix: RequestMix,
    /// Interval of the progress lines on stderr.
    pub progress_every: Duration,
}

impl Default for GrowthSettings {
    fn default() -> Self {
        Self {
            sizes: vec![0, 1_000_000, 10_000_000],
            window: 1_000_000,
            proofs: 1_000,
            parent_dir: None,
            tile_cache_bytes: DEFAULT_CACHE_CAPACITY,
            mix: RequestMix::default(),
            progress_every: Duration::from_secs(5),
        }
    }
}

/// Inclusion proofs built and verified at one size.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProofFigures {
    /// Tree size the proofs are built for.
    pub tree_size: u64,
    pub built: u64,
    pub verified: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Read-cache hits and misses of the tile store while building them.
    pub store_cache_hits: u64,
    pub store_cache_misses: u64,
}

/// Figures at one requested size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GrowthPoint {
    /// The log size the window started at.
    pub size: u64,
    /// Entries integrated in the timed window.
    pub window_entries: u64,
    pub window_s: f64,
    /// Integration rate over the window: entries over the time spent building and writing tiles
    /// and bundles (the node's integrator), the Raft storage's time left out.
    pub entries_per_s: f64,
    /// This rate over the rate at the first size.
    pub ratio_to_first: Option<f64>,
    /// Rate of the Raft storage part (log append, apply with dedup, leaves read back, mark
    /// integrated, snapshots and purges) over the time it took in the window.
    pub raft_entries_per_s: f64,
    /// This rate over the rate at the first size.
    pub raft_ratio_to_first: Option<f64>,
    /// Both parts one after the other: entries over the window's wall time.
    pub pipeline_entries_per_s: f64,
    /// Slowest integration step in the window (a step is up to [`MAX_LEAVES_PER_STEP`] leaves).
    pub max_step_ms: f64,
    /// CPU time of this process (all threads, user and system) per entry in the window: less
    /// sensitive than the rate to other processes sharing the cores.
    pub cpu_us_per_entry: Option<f64>,
    /// One-minute load average when the window ended (contention from other processes).
    pub load_average: Option<f64>,
    /// Measured after the window, at `proofs.tree_size`.
    pub proofs: ProofFigures,
    /// Bytes of the tile directory after the window (apparent size).
    pub tile_dir_bytes: u64,
    /// `tile_dir_bytes` over the tree size after the window.
    pub disk_bytes_per_entry: Option<f64>,
    /// Bytes of the Raft storage directory (log, leaf bodies, identity index, sled).
    pub raft_dir_bytes: u64,
    /// Peak resident set of this process since the scenario started (`VmHWM`).
    pub peak_rss_bytes: Option<u64>,
}

/// The growth scenario's report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GrowthReport {
    pub settings: GrowthSettings,
    pub batch_size: usize,
    pub step_leaves: u64,
    pub write_concurrency: usize,
    /// Mean size of the synthetic canonical bodies (the leaves).
    pub mean_entry_bytes: f64,
    /// Resident set when the scenario started (part of every peak).
    pub baseline_rss_bytes: Option<u64>,
    /// `MALLOC_ARENA_MAX` if set: glibc's per-thread arenas account for much of the peak when
    /// many threads allocate (the step's buffers are made on the blocking pool).
    pub malloc_arena_max: Option<String>,
    /// Whether the peak was reset at the start (`/proc/self/clear_refs`); if not, the peaks
    /// include whatever the process held before.
    pub peak_reset: bool,
    pub points: Vec<GrowthPoint>,
    /// Wall time of the whole scenario, fills included.
    pub total_s: f64,
    /// Tree size at the end and its root (hex), for reproducibility checks.
    pub final_size: u64,
    pub final_root: String,
}

/// Canonical hashedrekord bodies to copy, each with the offset of its base64 digest.
#[derive(Debug, Clone)]
pub struct SyntheticEntries {
    templates: Vec<(Vec<u8>, usize)>,
}

impl SyntheticEntries {
    /// Validates `requests` (serialised create-entry requests) with the node's validator and
    /// keeps their canonical bodies.
    pub fn from_requests(requests: &[Bytes]) -> Result<Self> {
        let validator = rekor_api::EntryValidator::with_verifier(
            rekor_api::AlgorithmPolicy::default(),
            false,
            Arc::new(rekor_api::AwsLcVerifier),
        );
        let marker = b"\"digest\":\"";
        let mut templates = Vec::new();
        for body in requests {
            let request = rekor_api::CreateEntryRequest::from_json(body)
                .map_err(|e| anyhow::anyhow!("template request does not parse: {e:?}"))?;
            let entry = validator
                .validate(&request)
                .map_err(|(e, _)| anyhow::anyhow!("template request is invalid: {e}"))?;
            let body = entry.canonical_body;
            let at = body
                .windows(marker.len())
                .position(|w| w == marker)
                .map(|p| p + marker.len())
                .context("canonical body has no digest")?;
            // 44 base64 characters for a SHA-256 digest; the first 8 are rewritten per entry.
            if body.len() < at + 44 {
                bail!("canonical body's digest is too short");
            }
            templates.push((body, at));
        }
        if templates.is_empty() {
            bail!("no template requests");
        }
        Ok(Self { templates })
    }

    /// Signs a few requests following `mix` and keeps their canonical bodies.
    pub fn generate(mix: &RequestMix) -> Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = RequestPool::generate(TEMPLATES, mix, threads)?;
        Self::from_requests(&pool.bodies)
    }

    /// Leaf `index`: a template with the first 6 digest bytes replaced by the index (every
    /// index below 2^48 gives a distinct leaf).
    pub fn entry(&self, index: u64) -> Vec<u8> {
        let (body, at) = &self.templates[(index % self.templates.len() as u64) as usize];
        let mut entry = body.clone();
        let prefix = &index.to_be_bytes()[2..];
        // 6 bytes are exactly 8 base64 characters, so the digest keeps its length and padding.
        let _ = base64::engine::general_purpose::STANDARD
            .encode_slice(prefix, &mut entry[*at..*at + 8]);
        entry
    }

    pub fn mean_bytes(&self) -> f64 {
        self.templates
            .iter()
            .map(|(b, _)| b.len() as f64)
            .sum::<f64>()
            / self.templates.len() as f64
    }
}

/// A tree grown step by step into a tile store, as the node's integrator grows it.
pub struct Filler {
    builder: TreeBuilder,
    store: Arc<TileStore>,
    entries: Arc<SyntheticEntries>,
    raft: Option<RaftStorage>,
    /// Time spent in the Raft storage so far.
    raft_time: Duration,
}

/// The node's Raft storage (log store and state machine, as `rekor_raft::open_stores` opens
/// them for `rekor-node serve`), driven the way openraft and the integrator drive it.
pub struct RaftStorage {
    // Dropped before the engine.
    log: rekor_raft::LogStore,
    state_machine: rekor_raft::StateMachineStore,
    reader: rekor_raft::StateReader,
    _engine: rekor_raft::SledEngine,
    last_log_index: u64,
    last_snapshot_index: u64,
}

impl RaftStorage {
    /// Open the stores under `dir` with the node's defaults.
    pub fn open(dir: &Path) -> Result<Self> {
        let engine =
            rekor_raft::SledEngine::open(&rekor_raft::EngineConfig::new(dir.join("raft")))?;
        let (log, state_machine) = rekor_raft::open_stores(&engine, dir)?;
        let reader = state_machine.reader();
        Ok(Self {
            log,
            state_machine,
            reader,
            _engine: engine,
            last_log_index: 0,
            last_snapshot_index: 0,
        })
    }

    /// Sequence `bodies` (the leaves `from..`): one Raft entry per [`BATCH_SIZE`], appended
    /// durably, then applied in one call; every body must be logged as new.
    async fn sequence(&mut self, from: u64, bodies: Vec<Vec<u8>>) -> Result<()> {
        use openraft::storage::{
            RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine,
        };
        let leader = openraft::CommittedLeaderId::new(1, 1);
        let mut entries = Vec::new();
        let mut bodies = bodies.into_iter().peekable();
        while bodies.peek().is_some() {
            self.last_log_index += 1;
            let batch: Vec<rekor_raft::SequencedEntry> = bodies
                .by_ref()
                .take(BATCH_SIZE)
                .map(rekor_raft::SequencedEntry::new)
                .collect();
            entries.push(openraft::Entry::<rekor_raft::TypeConfig> {
                log_id: openraft::LogId::new(leader, self.last_log_index),
                payload: openraft::EntryPayload::Normal(rekor_raft::Command::Append {
                    entries: batch,
                }),
            });
        }
        self.log.blocking_append(entries.clone()).await?;
        let responses = self.state_machine.apply(entries).await?;
        let logged: u64 = responses
            .iter()
            .map(|response| match response {
                rekor_raft::CommandResponse::Appended(outcomes) => outcomes
                    .iter()
                    .filter(|o| matches!(o, rekor_raft::AppendOutcome::Logged { .. }))
                    .count()
                    as u64,
                _ => 0,
            })
            .sum();
        let applied = self.reader.applied().size;
        if applied != from + logged || logged == 0 {
            bail!("the state machine logged {logged} leaves from {from} (now {applied})");
        }
        if self.last_log_index - self.last_snapshot_index >= SNAPSHOT_EVERY {
            let snapshot = self
                .state_machine
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await?;
            if let Some(last) = snapshot.meta.last_log_id {
                self.last_snapshot_index = last.index;
                if last.index > LOG_KEPT_BEHIND_SNAPSHOT {
                    let upto = last.index - LOG_KEPT_BEHIND_SNAPSHOT;
                    self.log.purge(openraft::LogId::new(leader, upto)).await?;
                }
            }
        }
        Ok(())
    }
}

impl Filler {
    /// An empty tree over `store`, without Raft (the leaves are made, not read back).
    pub fn new(store: Arc<TileStore>, entries: Arc<SyntheticEntries>) -> Self {
        Self {
            builder: TreeBuilder::new(),
            store,
            entries,
            raft: None,
            raft_time: Duration::ZERO,
        }
    }

    /// Sequence every leaf through the node's Raft storage first, and integrate what the state
    /// machine holds.
    pub fn with_raft(mut self, raft: RaftStorage) -> Self {
        self.raft = Some(raft);
        self
    }

    pub fn size(&self) -> u64 {
        self.builder.size()
    }

    pub fn root(&self) -> merkle::Hash {
        self.builder.root()
    }

    /// One integration step to `to` (at most [`MAX_LEAVES_PER_STEP`] past the current size): the
    /// leaves are staged in one go on the calling thread, then every tile and every bundle of
    /// the step (partial ones only at `to`) is written, durably, before this returns.
    pub async fn step(&mut self, to: u64) -> Result<()> {
        let from = self.builder.size();
        if to <= from {
            return Ok(());
        }
        if to - from > MAX_LEAVES_PER_STEP {
            bail!("a step integrates at most {MAX_LEAVES_PER_STEP} leaves");
        }
        // Leaves are made and hashed on this task's thread, as the node's integrator does on its
        // own arbiter thread (not on the blocking pool: see node/src/integrator.rs).
        let staged = {
            let made: Vec<Vec<u8>> = (from..to).map(|index| self.entries.entry(index)).collect();
            let leaves = match &mut self.raft {
                Some(raft) => {
                    let started = Instant::now();
                    raft.sequence(from, made).await?;
                    let leaves = raft.reader.leaves_now(from..to)?;
                    self.raft_time += started.elapsed();
                    leaves
                }
                None => made,
            };
            self.builder.stage(&leaves)?
        };
        self.builder = staged.write(&self.store).await?;
        if let Some(raft) = &self.raft {
            let started = Instant::now();
            raft.reader.mark_integrated(to).await?;
            self.raft_time += started.elapsed();
        }
        Ok(())
    }

    /// Integrates up to `target` in full steps, printing progress every `every`. Returns the
    /// slowest step.
    pub async fn grow_to(&mut self, target: u64, every: Duration, what: &str) -> Result<Duration> {
        let started = Instant::now();
        let start_size = self.size();
        let (mut last_print, mut last_size) = (Instant::now(), start_size);
        let mut slowest = Duration::ZERO;
        while self.size() < target {
            // Steps end on a batch boundary, like the node's (which ends them at Raft batch
            // boundaries).
            let aligned = self.size() / BATCH_SIZE as u64 * BATCH_SIZE as u64;
            let to = target.min(aligned + MAX_LEAVES_PER_STEP);
            let step_started = Instant::now();
            self.step(to).await?;
            slowest = slowest.max(step_started.elapsed());
            if last_print.elapsed() >= every {
                let rate = (self.size() - last_size) as f64 / last_print.elapsed().as_secs_f64();
                eprintln!(
                    "growth ({what}): {} entries, {rate:.0} entries/s, {:.0} s",
                    self.size(),
                    started.elapsed().as_secs_f64()
                );
                (last_print, last_size) = (Instant::now(), self.size());
            }
        }
        Ok(slowest)
    }

    /// Builds and verifies the inclusion proofs of `count` random leaves at the current size,
    /// one at a time, with a fresh hashed-tile cache.
    pub async fn measure_proofs(&self, count: usize, seed: u64) -> Result<ProofFigures> {
        let size = self.size();
        let mut figures = ProofFigures {
            tree_size: size,
            ..ProofFigures::default()
        };
        if size == 0 || count == 0 {
            return Ok(figures);
        }
        let root = self.root();
        let hashed_tiles = HashedTileCache::new(HASHED_TILE_CACHE_TILES);
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let before = self.store.cache_stats();
        for _ in 0..count {
            let index = rng.gen_range(0..size);
            let leaf = merkle::leaf_hash(&self.entries.entry(index));
            let started = Instant::now();
            let proof = inclusion_proof_from_store(&self.store, &hashed_tiles, index, size).await;
            let verified = proof.as_ref().is_ok_and(|proof| {
                merkle::verify_inclusion(index, size, &leaf, proof, &root).is_ok()
            });
            let micros = started.elapsed().as_micros().max(1) as u64;
            figures.built += u64::from(proof.is_ok());
            if verified {
                figures.verified += 1;
                histogram.saturating_record(micros);
            } else {
                figures.failed += 1;
            }
        }
        let after = self.store.cache_stats();
        figures.store_cache_hits = after.hits.saturating_sub(before.hits);
        figures.store_cache_misses = after.misses.saturating_sub(before.misses);
        let ms = |micros: u64| micros as f64 / 1000.0;
        if !histogram.is_empty() {
            figures.p50_ms = ms(histogram.value_at_quantile(0.50));
            figures.p99_ms = ms(histogram.value_at_quantile(0.99));
            figures.max_ms = ms(histogram.max());
        }
        Ok(figures)
    }
}

/// The node's proof path (`inclusion_proof_from_store` in `node/src/backend.rs`): the tiles the
/// proof needs are read concurrently through the hashed-tile cache, then the proof is computed.
async fn inclusion_proof_from_store(
    store: &TileStore,
    hashed_tiles: &HashedTileCache,
    index: u64,
    size: u64,
) -> Result<Vec<merkle::Hash>> {
    let needed = tiles_for_inclusion(index, size)?;
    let fetched = futures::future::try_join_all(needed.into_iter().map(|id| async move {
        if let Some(tile) = hashed_tiles.get(id) {
            return Ok((id, tile));
        }
        match store.get_tile(id).await? {
            Some(bytes) => Ok((id, hashed_tiles.get_or_decode(id, &bytes)?)),
            None => bail!("tile {} is missing", id.path()),
        }
    }))
    .await?;
    let mut tiles = TileSet::new();
    for (id, tile) in fetched {
        tiles.insert_hashed(id.level, id.index, tile);
    }
    Ok(build_inclusion_proof(index, size, &tiles)?)
}

/// Runs the growth scenario: fills a temporary tile directory to each size in turn, timing a
/// window of integration and building proofs at each. The directory is removed at the end,
/// whether the run succeeded or not.
pub async fn run_growth(settings: &GrowthSettings) -> Result<GrowthReport> {
    let (report, dir) = run_growth_keeping_files(settings).await?;
    dir.close()
        .with_context(|| "removing the growth scenario's directory")?;
    Ok(report)
}

/// [`run_growth`], but the filled directory is handed back rather than removed (it is removed
/// when the caller drops it; on an error return it is removed at once). The benchmark keeps it
/// until its last scenario: deleting ~100,000 files just before a write scenario slows that
/// scenario's own file creations (ext4 without a journal skips inodes freed in the last minutes
/// when it allocates one, and scanning past them shows in a node's profile).
pub async fn run_growth_keeping_files(
    settings: &GrowthSettings,
) -> Result<(GrowthReport, tempfile::TempDir)> {
    let mut sizes = settings.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let started = Instant::now();
    let entries = Arc::new(SyntheticEntries::generate(&settings.mix)?);

    let parent = settings
        .parent_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let largest = sizes.last().copied().unwrap_or(0) + settings.window;
    let needed = largest * (entries.mean_bytes() as u64 + DISK_OVERHEAD_PER_ENTRY);
    if let Some(free) = free_bytes(&parent) {
        eprintln!(
            "growth: {} MiB free under {}, about {} MiB needed",
            free >> 20,
            parent.display(),
            needed >> 20
        );
        if free < needed + (1 << 30) {
            bail!(
                "growth to {largest} entries needs about {} MiB under {} but only {} MiB are free \
                 (choose another --growth-dir or smaller --growth-sizes)",
                needed >> 20,
                parent.display(),
                free >> 20
            );
        }
    }
    // Removed on drop: at the end, on an error return, and on a panic.
    let dir = tempfile::Builder::new()
        .prefix("rekor-growth-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a directory under {}", parent.display()))?;
    let tile_dir = dir.path().join("tiles");
    let store = Arc::new(
        TileStore::from_url(&tile_dir.display().to_string(), &Default::default())?
            .with_cache_capacity(settings.tile_cache_bytes),
    );

    let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let baseline_rss_bytes = own_status_kib("VmRSS:").map(|kib| kib * 1024);
    let raft = RaftStorage::open(&dir.path().join("node"))?;
    let mut filler = Filler::new(store, entries.clone()).with_raft(raft);
    let mut points: Vec<GrowthPoint> = Vec::new();
    for &size in &sizes {
        if filler.size() < size {
            eprintln!("growth: filling to {size} entries…");
            filler
                .grow_to(size, settings.progress_every, "fill")
                .await?;
        }
        let start = filler.size();
        eprintln!("growth: timing {} entries from {start}…", settings.window);
        let window_started = Instant::now();
        let cpu_before = own_cpu_seconds();
        let raft_before = filler.raft_time;
        let slowest = filler
            .grow_to(start + settings.window, settings.progress_every, "window")
            .await?;
        let window_s = window_started.elapsed().as_secs_f64().max(1e-9);
        let raft_s = (filler.raft_time - raft_before).as_secs_f64();
        let cpu_s = own_cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| after - before);
        let window_entries = filler.size() - start;
        eprintln!(
            "growth: {} inclusion proofs at {}…",
            settings.proofs,
            filler.size()
        );
        let proofs = filler.measure_proofs(settings.proofs, size).await?;
        let tile_dir_bytes = system::dir_bytes(&tile_dir)?;
        let raft_dir_bytes = system::dir_bytes(&dir.path().join("node"))?;
        let entries_per_s = window_entries as f64 / (window_s - raft_s).max(1e-9);
        let raft_entries_per_s = window_entries as f64 / raft_s.max(1e-9);
        let ratio = |now: f64, first: Option<f64>| first.filter(|r| *r > 0.0).map(|r| now / r);
        let point = GrowthPoint {
            size,
            window_entries,
            window_s,
            entries_per_s,
            ratio_to_first: ratio(entries_per_s, points.first().map(|p| p.entries_per_s)),
            raft_entries_per_s,
            raft_ratio_to_first: ratio(
                raft_entries_per_s,
                points.first().map(|p| p.raft_entries_per_s),
            ),
            pipeline_entries_per_s: window_entries as f64 / window_s,
            max_step_ms: slowest.as_secs_f64() * 1e3,
            cpu_us_per_entry: cpu_s
                .filter(|_| window_entries > 0)
                .map(|cpu| cpu * 1e6 / window_entries as f64),
            load_average: load_average(),
            proofs,
            tile_dir_bytes,
            disk_bytes_per_entry: (filler.size() > 0)
                .then(|| tile_dir_bytes as f64 / filler.size() as f64),
            raft_dir_bytes,
            peak_rss_bytes: own_status_kib("VmHWM:").map(|kib| kib * 1024),
        };
        eprintln!(
            "growth: at {size}: {:.0} entries/s, proofs p50 {:.2} ms p99 {:.2} ms ({} verified, \
             {} failed), {:.0} disk bytes/entry, peak RSS {} MiB",
            point.entries_per_s,
            point.proofs.p50_ms,
            point.proofs.p99_ms,
            point.proofs.verified,
            point.proofs.failed,
            point.disk_bytes_per_entry.unwrap_or(0.0),
            point.peak_rss_bytes.unwrap_or(0) >> 20
        );
        points.push(point);
    }
    let report = GrowthReport {
        settings: settings.clone(),
        batch_size: BATCH_SIZE,
        step_leaves: MAX_LEAVES_PER_STEP,
        write_concurrency: WRITE_CONCURRENCY,
        mean_entry_bytes: entries.mean_bytes(),
        baseline_rss_bytes,
        malloc_arena_max: std::env::var("MALLOC_ARENA_MAX").ok(),
        peak_reset,
        points,
        total_s: started.elapsed().as_secs_f64(),
        final_size: filler.size(),
        final_root: hex::encode(filler.root()),
    };
    drop(filler);
    Ok((report, dir))
}

/// User plus system CPU seconds of this process, all threads (`/proc/self/stat` fields 14 and
/// 15, in USER_HZ ticks, which Linux fixes at 100 per second).
fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; fields are counted after its closing parenthesis,
    // where field 3 (state) comes first.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}

/// The one-minute load average.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// A `kB` line of `/proc/self/status`, in KiB.
fn own_status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Free bytes of the file system holding `dir`, from POSIX `df -Pk` (no unsafe `statvfs`).
fn free_bytes(dir: &Path) -> Option<u64> {
    let output = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

impl GrowthReport {
    /// The `## Growth` section of the benchmark report (without the heading).
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        md.push_str(&format!(
            "In-process path, not HTTP: the node's integration code (`TreeBuilder` and `TileStore` \
             on a local directory, fsynced, steps of up to {} leaves ending on a {}-entry batch \
             boundary, {} writes in flight) fed with synthetic canonical hashedrekord bodies (mean {:.0} \
             bytes), each leaf first sequenced through the node's Raft storage (log store and \
             state machine on sled and their files: durable append in {}-entry Raft entries, \
             apply with dedup, leaves read back, marked integrated, snapshot and log purge \
             every {} Raft entries; no Raft network). Integration is timed apart from the Raft \
             storage (the node runs them on different threads, one after the other per entry); \
             \"both\" is the window's wall time. Each rate is over {} entries starting at that size; {} inclusion proofs per size are built through the store \
             ({} MiB read cache, a fresh hashed-tile cache) at the size after the window and \
             verified; disk is the tile directory after the window, Raft MiB the Raft storage \
             (log, leaf bodies, identity index, sled). Peak RSS is this process's \
             (`VmHWM`{}; {} MiB when the scenario started; {}). CPU µs/entry is this \
             process's CPU time, all threads, over the window's entries; load avg is the \
             machine's at the end of the window (other processes on the cores lower the rate).\n\n",
            self.step_leaves,
            self.batch_size,
            self.write_concurrency,
            self.mean_entry_bytes,
            self.batch_size,
            SNAPSHOT_EVERY,
            self.settings.window,
            self.settings.proofs,
            self.settings.tile_cache_bytes >> 20,
            if self.peak_reset {
                ", reset at the start"
            } else {
                ", not reset: includes earlier scenarios"
            },
            self.baseline_rss_bytes.unwrap_or(0) >> 20,
            self.malloc_arena_max.as_ref().map_or_else(
                || "jemalloc as the node uses it; glibc malloc, default arenas, for C code".to_owned(),
                |max| format!("jemalloc as the node uses it; glibc malloc, MALLOC_ARENA_MAX={max}, for C code")
            ),
        ));
        md.push_str(
            "| size | integration entries/s | ratio to first | Raft storage entries/s | ratio to first | both entries/s | CPU µs/entry | load avg | slowest step ms | proof p50 ms | proof p99 ms | proof max ms | proofs verified | disk bytes/entry | Raft MiB | peak RSS MiB |\n",
        );
        md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for p in &self.points {
            md.push_str(&format!(
                "| {} | {:.0} | {} | {:.0} | {} | {:.0} | {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {}/{} | {} | {} | {} |\n",
                p.size,
                p.entries_per_s,
                p.ratio_to_first
                    .map_or_else(|| "–".into(), |r| format!("{r:.2}")),
                p.raft_entries_per_s,
                p.raft_ratio_to_first
                    .map_or_else(|| "–".into(), |r| format!("{r:.2}")),
                p.pipeline_entries_per_s,
                p.cpu_us_per_entry
                    .map_or_else(|| "–".into(), |c| format!("{c:.1}")),
                p.load_average
                    .map_or_else(|| "–".into(), |l| format!("{l:.1}")),
                p.max_step_ms,
                p.proofs.p50_ms,
                p.proofs.p99_ms,
                p.proofs.max_ms,
                p.proofs.verified,
                p.proofs.verified + p.proofs.failed,
                p.disk_bytes_per_entry
                    .map_or_else(|| "–".into(), |b| format!("{b:.0}")),
                p.raft_dir_bytes >> 20,
                p.peak_rss_bytes
                    .map_or_else(|| "–".into(), |b| format!("{:.0}", b as f64 / 1048576.0)),
            ));
        }
        md.push_str(&format!(
            "\nTotal {:.0} s (fills included); final size {}.\n",
            self.total_s, self.final_size
        ));
        md
    }
}
