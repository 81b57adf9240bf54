//! The tile store over the local filesystem, in memory, S3 (a real `s3s-fs` server
//! started by the test) and the GCS configuration path.

use bytes::Bytes;
use rekor_storage::tile_store::{TileStore, TileStoreError};
use rekor_storage::tiles::TileId;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

/// The create-once / overwrite contract every backend must honour.
async fn exercise(store: &TileStore) {
    store.probe_create_once().await.unwrap();
    let id = TileId::new(0, 1234, 3).unwrap();
    let bytes = Bytes::from(vec![1u8; 96]);
    assert_eq!(store.get_tile(id).await.unwrap(), None);
    store.put_tile(id, bytes.clone()).await.unwrap();
    assert_eq!(store.get_tile(id).await.unwrap(), Some(bytes.clone()));
    // A retry with identical bytes succeeds (deterministic integration).
    store.put_tile(id, bytes.clone()).await.unwrap();
    // Different bytes at the same path are a conflict naming the path.
    match store.put_tile(id, Bytes::from(vec![2u8; 96])).await {
        Err(TileStoreError::Conflict { path }) => assert_eq!(path, "tile/0/x001/234.p/3"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get_tile(id).await.unwrap(), Some(bytes));

    // A full tile beside partials of the same index (`000` vs `000.p/3`).
    let full = TileId::new(1, 0, 256).unwrap();
    store
        .put_tile(full, Bytes::from(vec![3u8; 8192]))
        .await
        .unwrap();
    assert_eq!(store.get_tile(full).await.unwrap().unwrap().len(), 8192);

    store
        .put_bundle(0, 3, Bytes::from_static(b"\x00\x01a\x00\x01b\x00\x01c"))
        .await
        .unwrap();
    store
        .put_bundle(0, 3, Bytes::from_static(b"\x00\x01a\x00\x01b\x00\x01c"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .put_bundle(0, 3, Bytes::from_static(b"\x00\x01x"))
            .await,
        Err(TileStoreError::Conflict { .. })
    ));
    assert_eq!(
        store.get_bundle(0, 3).await.unwrap().unwrap(),
        Bytes::from_static(b"\x00\x01a\x00\x01b\x00\x01c")
    );
    assert_eq!(store.get_bundle(0, 4).await.unwrap(), None);
    assert!(store.put_bundle(0, 0, Bytes::new()).await.is_err());

    // The checkpoint is overwritten in place.
    assert_eq!(store.get_checkpoint().await.unwrap(), None);
    store
        .put_checkpoint(Bytes::from_static(b"one"))
        .await
        .unwrap();
    store
        .put_checkpoint(Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(
        store.get_checkpoint().await.unwrap(),
        Some(Bytes::from_static(b"two"))
    );
    assert_eq!(
        store.get_path("checkpoint").await.unwrap(),
        Some(Bytes::from_static(b"two"))
    );
}

#[tokio::test]
async fn local_filesystem_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("log");
    let store = TileStore::from_url(root.to_str().unwrap(), &BTreeMap::new()).unwrap();
    exercise(&store).await;
    // Objects live at their C2SP paths on disk.
    assert_eq!(
        std::fs::read(root.join("tile/0/x001/234.p/3")).unwrap(),
        vec![1u8; 96]
    );
    assert_eq!(std::fs::read(root.join("checkpoint")).unwrap(), b"two");
    // A `file://` URL opens the same directory.
    let again =
        TileStore::from_url(&format!("file://{}", root.display()), &BTreeMap::new()).unwrap();
    assert_eq!(
        again.get_checkpoint().await.unwrap(),
        Some(Bytes::from_static(b"two"))
    );

    // Reads that miss the cache come straight from the files (`read_local_file`): what is on
    // disk, absent objects as `None`, a path through a file as `None`, a directory as an error.
    let uncached = TileStore::from_url(root.to_str().unwrap(), &BTreeMap::new())
        .unwrap()
        .with_cache_capacity(0);
    let id = TileId::new(0, 1234, 3).unwrap();
    assert_eq!(
        uncached.get_tile(id).await.unwrap(),
        Some(Bytes::from(vec![1u8; 96]))
    );
    let bundle = uncached.get_bundle(0, 3).await.unwrap().unwrap();
    assert_eq!(bundle, Bytes::from_static(b"\x00\x01a\x00\x01b\x00\x01c"));
    assert_eq!(bundle.len(), 9);
    assert_eq!(uncached.get_bundle(7, 3).await.unwrap(), None);
    assert_eq!(
        uncached
            .get_path("tile/0/x001/234.p/3/beyond")
            .await
            .unwrap(),
        None
    );
    let big = vec![7u8; 300_000];
    std::fs::create_dir_all(root.join("tile/entries")).unwrap();
    std::fs::write(root.join("tile/entries/009"), &big).unwrap();
    assert_eq!(
        uncached.get_path("tile/entries/009").await.unwrap(),
        Some(Bytes::from(big))
    );
    match uncached.get_path("tile/0/x001").await {
        Err(TileStoreError::LocalRead { path, .. }) => assert!(path.ends_with("tile/0/x001")),
        other => panic!("reading a directory should fail, got {other:?}"),
    }
}

#[tokio::test]
async fn in_memory_store() {
    exercise(&TileStore::from_url("memory://", &BTreeMap::new()).unwrap()).await;
}

#[test]
fn unsupported_urls_and_options_are_refused() {
    let none = BTreeMap::new();
    assert!(matches!(
        TileStore::from_url("ftp://x", &none),
        Err(TileStoreError::UnsupportedUrl(_))
    ));
    assert!(matches!(
        TileStore::from_url("s3://", &none),
        Err(TileStoreError::UnsupportedUrl(_))
    ));
    let opts = BTreeMap::from([("no_such_option".to_string(), "1".to_string())]);
    assert!(matches!(
        TileStore::from_url("s3://bucket", &opts),
        Err(TileStoreError::UnknownOption { .. })
    ));
}

/// No GCS emulator works with object_store (rust-stack.md §6.3): only check that
/// `gs://` URLs configure, with a mock service account (no network is touched).
#[test]
fn gcs_urls_configure() {
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("mock-service-account.json");
    // Any RSA PKCS#8 key will do for a mock account; reuse the published test key.
    let key = support::testdata("rekor-tiles/pki/rsa-priv-key.pem");
    let account = serde_json::json!({
        "type": "service_account",
        "private_key": key,
        "private_key_id": "mock",
        "client_email": "mock@example.invalid",
    });
    std::fs::write(&sa, account.to_string()).unwrap();
    let opts = BTreeMap::from([(
        "google_service_account".to_string(),
        sa.to_str().unwrap().to_string(),
    )]);
    let store = TileStore::from_url("gs://bucket/prefix/log", &opts).unwrap();
    assert!(format!("{store:?}").contains("prefix/log"));
    let bad = BTreeMap::from([("bogus".to_string(), "x".to_string())]);
    assert!(TileStore::from_url("gs://bucket", &bad).is_err());
}

/// An `s3s-fs` server for the duration of a test; killed on drop.
struct S3sFs {
    child: Child,
    port: u16,
    _root: tempfile::TempDir,
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("S3S_FS_BIN") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
    })
}

fn start_s3s_fs(bucket: &str) -> Option<S3sFs> {
    let Some(bin) = s3s_fs_binary() else {
        if std::env::var_os("CI").is_some() {
            panic!("s3s-fs not found (set S3S_FS_BIN or put s3s-fs on PATH)");
        }
        eprintln!(
            "\n!!!!! SKIPPING the S3 tile-store test: s3s-fs not found (set S3S_FS_BIN) !!!!!\n"
        );
        return None;
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join(bucket)).unwrap();
    // Ask the OS for a free port, then hand it to the server.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", "test-access", "--secret-key", "test-secret"])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = S3sFs {
        child,
        port,
        _root: root,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "s3s-fs did not start listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

#[tokio::test]
async fn s3_store_against_s3s_fs() {
    let Some(server) = start_s3s_fs("tiles") else {
        return;
    };
    let opts: BTreeMap<String, String> = [
        ("endpoint", format!("http://127.0.0.1:{}", server.port)),
        ("allow_http", "true".into()),
        ("virtual_hosted_style_request", "false".into()),
        ("region", "us-east-1".into()),
        ("access_key_id", "test-access".into()),
        ("secret_access_key", "test-secret".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let store = TileStore::from_url("s3://tiles/rekor/shard1", &opts).unwrap();
    exercise(&store).await;
    // The prefix is honoured: objects sit under it in the bucket directory.
    let on_disk = server._root.path().join("tiles/rekor/shard1/checkpoint");
    assert_eq!(std::fs::read(on_disk).unwrap(), b"two");
}

/// The node's path: append, write the integration, resume from the store, and the
/// API's path: fetch proof tiles from the store, build and verify.
#[tokio::test]
async fn integration_round_trip_through_a_store() {
    use rekor_storage::integrate::TreeBuilder;
    use rekor_storage::{merkle, proof};
    let store = TileStore::in_memory();
    let mut builder = TreeBuilder::new();
    let mut leaves = Vec::new();
    for batch in [1usize, 300, 255, 1, 700] {
        let entries: Vec<Vec<u8>> = (0..batch)
            .map(|i| format!("{}-{i}", leaves.len()).into_bytes())
            .collect();
        leaves.extend(entries.iter().map(|e| merkle::leaf_hash(e)));
        let out = builder.append(&entries).unwrap();
        store.put_integration(&out).await.unwrap();
        store.put_integration(&out).await.unwrap(); // a retry is harmless
        let resumed = TreeBuilder::resume_checked(&store, out.size, &out.root)
            .await
            .unwrap();
        builder = resumed;
        let size = out.size;
        for index in [0, size / 3, size - 1] {
            let ids = proof::tiles_for_inclusion(index, size).unwrap();
            let set = store.fetch_tile_set(&ids).await.unwrap();
            let p = proof::build_inclusion_proof(index, size, &set).unwrap();
            merkle::verify_inclusion(index, size, &leaves[index as usize], &p, &out.root).unwrap();
        }
        if size > 1 {
            let m = size / 2;
            let set = store
                .fetch_tile_set(&proof::tiles_for_consistency(m, size).unwrap())
                .await
                .unwrap();
            let p = proof::build_consistency_proof(m, size, &set).unwrap();
            // Partial tiles exist only at integration boundaries, so the old root
            // comes from the leaves here.
            let mut old = merkle::CompactRange::new();
            for h in &leaves[..m as usize] {
                old.append(*h).unwrap();
            }
            merkle::verify_consistency(m, size, &p, &old.root(), &out.root).unwrap();
        }
    }
}

/// FAKE, named as such: an object store that ignores conditional writes (`PutMode::Create` is
/// treated as an overwrite), as some S3-compatible servers do. No such server runs here, so the
/// in-memory store is wrapped to behave like one.
#[derive(Debug)]
struct FakeStoreIgnoringConditionalWrites(object_store::memory::InMemory);

impl std::fmt::Display for FakeStoreIgnoringConditionalWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeStoreIgnoringConditionalWrites")
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for FakeStoreIgnoringConditionalWrites {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        mut opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        opts.mode = object_store::PutMode::Overwrite;
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.0.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.0.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.0.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn a_store_that_ignores_create_once_is_refused_by_the_probe() {
    let fake = std::sync::Arc::new(FakeStoreIgnoringConditionalWrites(
        object_store::memory::InMemory::new(),
    ));
    let store = TileStore::new(fake.clone(), "prefix");
    match store.probe_create_once().await {
        Err(TileStoreError::CreateOnceIgnored { path }) => {
            assert!(path.starts_with(".probes/create-once-"), "{path}")
        }
        other => panic!("expected CreateOnceIgnored, got {other:?}"),
    }
    // The probe leaves nothing behind.
    use futures::StreamExt as _;
    let left: Vec<_> = object_store::ObjectStore::list(fake.as_ref(), None)
        .collect()
        .await;
    assert!(left.is_empty(), "{left:?}");
}
