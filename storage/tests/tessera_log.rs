//! Rebuilds transparency-dev/tessera's golden log (`testdata/tessera-log/`,
//! Apache-2.0, upstream commit 1811ae1a) from its 15 entries: every tile, bundle,
//! root and signed checkpoint must match byte for byte.

use rekor_storage::checkpoint::Checkpoint;
use rekor_storage::integrate::TreeBuilder;
use rekor_storage::note::{Ed25519NoteSigner, Ed25519NoteVerifier, Note, NoteSigner};
use rekor_storage::tile_store::TileStore;
use std::path::PathBuf;

mod support;

/// The entries upstream's `build_log.sh` appended, one per checkpoint (misspellings are upstream's).
const ENTRIES: [&str; 15] = [
    "one", "two", "three", "four", "five", "six", "seven", "eit", "nain", "ten", "ileven", "twelf",
    "threeten", "fourten", "fivten",
];
const ORIGIN: &str = "example.com/log/testdata";

fn log_dir() -> PathBuf {
    support::testdata_dir().join("tessera-log")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(log_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn signer() -> Ed25519NoteSigner {
    let key = String::from_utf8(read("log.TESTONLY.note-signer-key")).unwrap();
    Ed25519NoteSigner::from_note_key(key.trim()).unwrap()
}

#[test]
fn rebuild_reproduces_every_tile_bundle_and_root() {
    let mut builder = TreeBuilder::new();
    for (i, entry) in ENTRIES.iter().enumerate() {
        let size = i as u64 + 1;
        let out = builder.append(&[entry.as_bytes().to_vec()]).unwrap();
        assert_eq!(out.size, size);
        let cp = Checkpoint::parse_body(
            &Note::parse(&read(&format!("checkpoint.{size}")))
                .unwrap()
                .text,
        )
        .unwrap();
        assert_eq!(out.root, cp.root, "root at size {size}");
        assert_eq!(out.tiles.len(), 1);
        assert_eq!(out.bundles.len(), 1);
        let (tile, bytes) = &out.tiles[0];
        assert_eq!(tile.path(), format!("tile/0/000.p/{size}"));
        assert_eq!(bytes.as_ref(), read(&tile.path()).as_slice());
        let (bundle, bytes) = &out.bundles[0];
        assert_eq!(bundle.path(), format!("tile/entries/000.p/{size}"));
        assert_eq!(bytes.as_ref(), read(&bundle.path()).as_slice());
    }
}

#[test]
fn batch_append_matches_one_by_one() {
    let mut builder = TreeBuilder::new();
    let entries: Vec<Vec<u8>> = ENTRIES.iter().map(|e| e.as_bytes().to_vec()).collect();
    let out = builder.append(&entries).unwrap();
    assert_eq!(out.tiles.len(), 1);
    assert_eq!(out.tiles[0].1.as_ref(), read("tile/0/000.p/15").as_slice());
    assert_eq!(
        out.bundles[0].1.as_ref(),
        read("tile/entries/000.p/15").as_slice()
    );
}

#[test]
fn signing_each_checkpoint_body_reproduces_it() {
    let signer = signer();
    let vkey = String::from_utf8(read("log.vkey")).unwrap();
    assert_eq!(signer.verifier_key(), vkey.trim());
    assert_eq!(format!("{:08x}", signer.key_id()), "33d7b496");
    let verifier = Ed25519NoteVerifier::from_vkey(vkey.trim()).unwrap();
    for size in 0..=15u64 {
        let golden = read(&format!("checkpoint.{size}"));
        let note = Note::parse(&golden).unwrap();
        let cp = Checkpoint::parse_body(&note.text).unwrap();
        assert_eq!(cp.size, size);
        assert_eq!(cp.body(), note.text);
        assert_eq!(cp.sign(&signer).unwrap(), golden, "checkpoint.{size}");
        let (opened, _) = Checkpoint::open(&golden, ORIGIN, &verifier).unwrap();
        assert_eq!(opened, cp);
    }
    assert_eq!(read("checkpoint"), read("checkpoint.15"));
}

#[test]
fn empty_tree_checkpoint_uses_the_empty_root() {
    let cp = Checkpoint::parse_body(&Note::parse(&read("checkpoint.0")).unwrap().text).unwrap();
    assert_eq!(cp.root, rekor_storage::merkle::EMPTY_ROOT);
    assert_eq!(TreeBuilder::new().root(), rekor_storage::merkle::EMPTY_ROOT);
}

#[tokio::test]
async fn resume_from_the_golden_tiles() {
    // Load the golden log into a store, resume at each size, and check the root.
    let store = TileStore::in_memory();
    for size in 1..=15u16 {
        let id = rekor_storage::tiles::TileId::new(0, 0, size).unwrap();
        store.put_tile(id, read(&id.path()).into()).await.unwrap();
        store
            .put_bundle(0, size, read(&format!("tile/entries/000.p/{size}")).into())
            .await
            .unwrap();
    }
    for size in 0..=15u64 {
        let cp = Checkpoint::parse_body(
            &Note::parse(&read(&format!("checkpoint.{size}")))
                .unwrap()
                .text,
        )
        .unwrap();
        let mut b = TreeBuilder::resume_checked(&store, size, &cp.root)
            .await
            .unwrap();
        // Appending the rest from the resumed state gives the final golden tile.
        let rest: Vec<Vec<u8>> = ENTRIES[size as usize..]
            .iter()
            .map(|e| e.as_bytes().to_vec())
            .collect();
        let out = b.append(&rest).unwrap();
        if !rest.is_empty() {
            assert_eq!(out.tiles[0].1.as_ref(), read("tile/0/000.p/15").as_slice());
            assert_eq!(
                out.bundles[0].1.as_ref(),
                read("tile/entries/000.p/15").as_slice()
            );
        }
    }
    let wrong = [7u8; 32];
    assert!(TreeBuilder::resume_checked(&store, 5, &wrong)
        .await
        .is_err());
}
