//! The tile store: the only module that does IO. Hash tiles, entry bundles and the
//! checkpoint live in an `object_store` backend under their C2SP paths
//! (`tile/0/x001/234`, `tile/entries/000.p/3`, `checkpoint`; spec/tlog-tiles.md §2).
//!
//! Durability promise: every `put_*` returns only once the object is durable. The
//! local backend is opened with `with_fsync(true)` (file and parent directory are
//! synced before success); cloud backends acknowledge only durable writes.
//!
//! Tiles and bundles are create-once (`PutMode::Create`). Integration is
//! deterministic, so a retry after a crash or an ambiguous timeout writes the same
//! bytes: on `AlreadyExists` the object is read back and identical bytes count as
//! success; different bytes are a [`TileStoreError::Conflict`] (a bug or a fork).
//! The checkpoint is overwritten in place (spec/rust-stack.md §5).

use crate::integrate::Integration;
use crate::proof::TileSet;
use crate::tiles::{BundleId, TileError, TileId, TILE_WIDTH};
use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The object key of the checkpoint.
pub const CHECKPOINT_PATH: &str = "checkpoint";

/// Why a tile-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TileStoreError {
    /// A create-once object already holds different bytes.
    #[error("conflicting object at {path}: existing bytes differ from the new ones")]
    Conflict { path: String },
    /// The store URL is not one we can open.
    #[error("unsupported tile store URL {0:?}")]
    UnsupportedUrl(String),
    /// A backend option key is not known to the backend.
    #[error("unknown option {key:?} for {scheme} tile store")]
    UnknownOption { scheme: &'static str, key: String },
    /// A local directory could not be created.
    #[error("cannot create tile store directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    /// An identifier was invalid.
    #[error(transparent)]
    Tile(#[from] TileError),
    /// The backend failed.
    #[error("object store error: {0}")]
    Backend(#[from] object_store::Error),
}

/// A tile store over any `object_store` backend, with an optional key prefix.
#[derive(Clone)]
pub struct TileStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl std::fmt::Debug for TileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TileStore")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl TileStore {
    /// Wraps an existing backend. `prefix` (may be empty) is prepended to every key.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// An in-memory store (tests, benchmarks).
    pub fn in_memory() -> Self {
        Self::new(Arc::new(InMemory::new()), "")
    }

    /// Opens a store from a URL:
    /// - `file://<dir>` or a plain directory path: local filesystem with fsync, the
    ///   directory is created if missing;
    /// - `memory://`: in memory;
    /// - `s3://bucket[/prefix]`, `gs://bucket[/prefix]`, `az://container[/prefix]`:
    ///   the object_store builder configured from the environment, then from
    ///   `options` (object_store config keys such as `endpoint`, `region`,
    ///   `allow_http`, `virtual_hosted_style_request`, `access_key_id`).
    pub fn from_url(url: &str, options: &BTreeMap<String, String>) -> Result<Self, TileStoreError> {
        let unsupported = || TileStoreError::UnsupportedUrl(url.to_string());
        let Some((scheme, rest)) = url.split_once("://") else {
            return Self::local(url);
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        match scheme {
            "file" => Self::local(rest),
            "memory" => Ok(Self::in_memory()),
            "s3" | "gs" | "az" if bucket.is_empty() => Err(unsupported()),
            "s3" => {
                let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
                for (k, v) in options {
                    let key: AmazonS3ConfigKey =
                        k.parse().map_err(|_| TileStoreError::UnknownOption {
                            scheme: "s3",
                            key: k.clone(),
                        })?;
                    b = b.with_config(key, v);
                }
                Ok(Self::new(Arc::new(b.build()?), prefix))
            }
            "gs" => {
                let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
                for (k, v) in options {
                    let key: GoogleConfigKey =
                        k.parse().map_err(|_| TileStoreError::UnknownOption {
                            scheme: "gs",
                            key: k.clone(),
                        })?;
                    b = b.with_config(key, v);
                }
                Ok(Self::new(Arc::new(b.build()?), prefix))
            }
            "az" => {
                let mut b = MicrosoftAzureBuilder::from_env().with_container_name(bucket);
                for (k, v) in options {
                    let key: AzureConfigKey =
                        k.parse().map_err(|_| TileStoreError::UnknownOption {
                            scheme: "az",
                            key: k.clone(),
                        })?;
                    b = b.with_config(key, v);
                }
                Ok(Self::new(Arc::new(b.build()?), prefix))
            }
            _ => Err(unsupported()),
        }
    }

    fn local(dir: &str) -> Result<Self, TileStoreError> {
        if dir.is_empty() {
            return Err(TileStoreError::UnsupportedUrl(dir.to_string()));
        }
        std::fs::create_dir_all(dir).map_err(|source| TileStoreError::CreateDir {
            path: dir.to_string(),
            source,
        })?;
        // with_fsync(true): a put returns only after the file and its parent
        // directory are synced, so a tile we announce survives a power loss.
        let fs = LocalFileSystem::new_with_prefix(dir)?.with_fsync(true);
        Ok(Self::new(Arc::new(fs), ""))
    }

    fn key(&self, path: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(path)
        } else {
            Path::from(format!("{}/{}", self.prefix, path))
        }
    }

    /// Writes a create-once object; identical existing bytes count as success.
    async fn put_once(&self, path: &str, bytes: Bytes) -> Result<(), TileStoreError> {
        let key = self.key(path);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&key, PutPayload::from_bytes(bytes.clone()), opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                // A retry of our own write (or another node's identical one) is fine:
                // integration is deterministic. Anything else means a fork or a bug.
                let existing = self.store.get(&key).await?.bytes().await?;
                if existing == bytes {
                    Ok(())
                } else {
                    Err(TileStoreError::Conflict {
                        path: path.to_string(),
                    })
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn get_opt(&self, path: &str) -> Result<Option<Bytes>, TileStoreError> {
        match self.store.get(&self.key(path)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a hash tile (create-once, durable on return).
    pub async fn put_tile(&self, id: TileId, bytes: Bytes) -> Result<(), TileStoreError> {
        self.put_once(&id.path(), bytes).await
    }

    /// Reads a hash tile; `None` if it does not exist.
    pub async fn get_tile(&self, id: TileId) -> Result<Option<Bytes>, TileStoreError> {
        self.get_opt(&id.path()).await
    }

    /// Writes entry bundle `index` of `width` entries (256 = full; create-once).
    pub async fn put_bundle(
        &self,
        index: u64,
        width: u16,
        bytes: Bytes,
    ) -> Result<(), TileStoreError> {
        let id = BundleId::new(index, width)?;
        self.put_once(&id.path(), bytes).await
    }

    /// Reads entry bundle `index` of `width` entries; `None` if it does not exist.
    pub async fn get_bundle(
        &self,
        index: u64,
        width: u16,
    ) -> Result<Option<Bytes>, TileStoreError> {
        let id = BundleId::new(index, width)?;
        self.get_opt(&id.path()).await
    }

    /// Overwrites the checkpoint (durable on return).
    pub async fn put_checkpoint(&self, bytes: Bytes) -> Result<(), TileStoreError> {
        let opts = PutOptions {
            mode: PutMode::Overwrite,
            ..Default::default()
        };
        self.store
            .put_opts(
                &self.key(CHECKPOINT_PATH),
                PutPayload::from_bytes(bytes),
                opts,
            )
            .await?;
        Ok(())
    }

    /// Reads the checkpoint; `None` if none was written yet.
    pub async fn get_checkpoint(&self) -> Result<Option<Bytes>, TileStoreError> {
        self.get_opt(CHECKPOINT_PATH).await
    }

    /// Writes every tile and bundle of an integration concurrently; returns once all
    /// are durable. Safe to repeat after a crash (identical bytes are accepted).
    pub async fn put_integration(&self, out: &Integration) -> Result<(), TileStoreError> {
        let tiles = out
            .tiles
            .iter()
            .map(|(id, b)| self.put_tile(*id, b.clone()));
        let bundles = out
            .bundles
            .iter()
            .map(|(id, b)| self.put_bundle(id.index, id.width, b.clone()));
        futures::future::try_join_all(tiles).await?;
        futures::future::try_join_all(bundles).await?;
        Ok(())
    }

    /// Fetches the tiles a proof needs (from [`crate::proof::tiles_for_inclusion`] and
    /// friends) concurrently. A partial tile that was garbage-collected is replaced by
    /// the full tile of the same index, which holds it as a prefix. A tile that is
    /// missing both ways is left out; building the proof then reports it.
    pub async fn fetch_tile_set(&self, ids: &[TileId]) -> Result<TileSet, TileStoreError> {
        let fetched = futures::future::try_join_all(ids.iter().map(|id| async move {
            if let Some(bytes) = self.get_tile(*id).await? {
                return Ok::<_, TileStoreError>(Some((*id, bytes)));
            }
            if id.is_full() {
                return Ok(None);
            }
            let full = TileId {
                width: TILE_WIDTH,
                ..*id
            };
            Ok(self.get_tile(full).await?.map(|b| (full, b)))
        }))
        .await?;
        Ok(TileSet::from_fetched(fetched.into_iter().flatten())?)
    }

    /// Reads any object by its C2SP path relative to the store root (for serving).
    pub async fn get_path(&self, path: &str) -> Result<Option<Bytes>, TileStoreError> {
        self.get_opt(path).await
    }
}
