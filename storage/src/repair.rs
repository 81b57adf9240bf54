//! Naming and rebuilding damaged right-edge objects.
//!
//! The integrator resumes from the right edge at its integrated size: the partial hash tile of
//! each level and the partial entry bundle ([`TreeBuilder::right_edge`]). They are the only
//! objects it reads back and builds on, so a damaged one (a flipped bit on disk, a truncated
//! file) would be trusted by every later tile and checkpoint. [`TreeBuilder::resume_checked`]
//! notices that the root differs from the one the committed order implies; this module says
//! *which* object is wrong and what its right bytes are.
//!
//! Every right-edge object is re-derived from what lies below it: the partial tile of level
//! `l ≥ 1` from the full tiles of level `l − 1` (entry `j` is the root of full tile `256·i + j`),
//! the level-0 row from the leaves. Candidate level-0 rows come from the leaves the caller holds
//! (if any), the stored level-0 tile, and the stored bundle; the first that, with the derived
//! upper rows, reproduces the expected root is the truth. An object that differs from the truth
//! is wrong. The bundle can be rebuilt only from leaves whose hashes match the true row (the
//! caller's, or the stored bundle's own when only a tile was damaged).

use bytes::Bytes;

use crate::integrate::{IntegrateError, TreeBuilder};
use crate::merkle::{leaf_hash, CompactRange, Hash};
use crate::proof::{self, TileSet};
use crate::tile_store::TileStore;
use crate::tiles::{self, BundleId, TileId, TILE_WIDTH};

/// A right-edge object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeObject {
    Tile(TileId),
    Bundle(BundleId),
}

impl EdgeObject {
    /// Its path in the tile store.
    pub fn path(&self) -> String {
        match self {
            EdgeObject::Tile(id) => id.path(),
            EdgeObject::Bundle(id) => id.path(),
        }
    }

    /// `tile` or `bundle` (a metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            EdgeObject::Tile(_) => "tile",
            EdgeObject::Bundle(_) => "bundle",
        }
    }
}

impl std::fmt::Display for EdgeObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EdgeObject::Tile(id) => write!(
                f,
                "hash tile level {} index {} width {} ({})",
                id.level,
                id.index,
                id.width,
                id.path()
            ),
            EdgeObject::Bundle(id) => write!(
                f,
                "entry bundle index {} width {} ({})",
                id.index,
                id.width,
                id.path()
            ),
        }
    }
}

/// One wrong object: what it is, why, and its right bytes when they can be rebuilt here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongObject {
    pub object: EdgeObject,
    /// `missing`, `undecodable` or `differs`.
    pub problem: &'static str,
    /// The right bytes; `None` for a bundle whose entries are needed (see
    /// [`Diagnosis::needs_leaves`]).
    pub right: Option<Bytes>,
}

/// What [`diagnose`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnosis {
    /// The right edge reproduces the expected root and every object is as derived.
    Sound,
    /// These objects are wrong; the rest reproduce the expected root.
    Wrong(Vec<WrongObject>),
    /// No candidate reproduces the expected root: both the level-0 tile and the bundle are
    /// damaged (and no leaves were given), or a full tile below the right edge is.
    Unresolved {
        /// Objects that disagree with each other or could not be read.
        suspects: Vec<String>,
    },
}

impl Diagnosis {
    /// The leaf range whose entries would let the bundle be rebuilt, if it is wrong and no
    /// right bytes were found.
    pub fn needs_leaves(&self, size: u64) -> Option<std::ops::Range<u64>> {
        let start = size - size % u64::from(TILE_WIDTH);
        let needs = match self {
            Diagnosis::Sound => false,
            Diagnosis::Wrong(wrong) => wrong
                .iter()
                .any(|w| matches!(w.object, EdgeObject::Bundle(_)) && w.right.is_none()),
            Diagnosis::Unresolved { .. } => true,
        };
        (needs && start < size).then_some(start..size)
    }
}

/// A candidate level-0 row, with the leaves it was hashed from when known.
type Candidate = (Vec<Hash>, Option<Vec<Vec<u8>>>);

/// The root of a full tile's 256 hashes (the tree node one tile level up).
fn tile_root(hashes: &[Hash]) -> Result<Hash, IntegrateError> {
    let mut range = CompactRange::new();
    for hash in hashes {
        range.append(*hash).map_err(|_| IntegrateError::Overflow)?;
    }
    Ok(range.root())
}

/// Names the wrong right-edge objects at `size`, given the root the committed order implies
/// there and, optionally, the leaves `size − size % 256 .. size` from a source the caller trusts
/// no more than the root check (they are used only if they reproduce it).
pub async fn diagnose(
    store: &TileStore,
    size: u64,
    expected_root: &Hash,
    leaves: Option<&[Vec<u8>]>,
) -> Result<Diagnosis, IntegrateError> {
    let (want_tiles, want_bundle) = TreeBuilder::right_edge(size);
    let partial0 = size % u64::from(TILE_WIDTH);
    let mut suspects = Vec::new();

    // The rows of levels ≥ 1, derived from the full tiles below them.
    let mut upper: Vec<(TileId, Vec<Hash>)> = Vec::new();
    for id in want_tiles.iter().filter(|id| id.level > 0) {
        let mut row = Vec::with_capacity(usize::from(id.width));
        for j in 0..u64::from(id.width) {
            let below = TileId {
                level: id.level - 1,
                index: id.index * u64::from(TILE_WIDTH) + j,
                width: TILE_WIDTH,
            };
            let bytes = store
                .get_tile(below)
                .await?
                .ok_or(IntegrateError::MissingTile(below))?;
            let hashes = tiles::decode_tile(&bytes, TILE_WIDTH)?;
            row.push(tile_root(&hashes)?);
        }
        upper.push((*id, row));
    }

    // Candidate level-0 rows, with the leaves they come from when known.
    let tile0 = want_tiles.iter().find(|id| id.level == 0).copied();
    let stored_tile0 = match tile0 {
        Some(id) => store.get_tile(id).await?,
        None => None,
    };
    let stored_bundle = match want_bundle {
        Some(id) => store.get_bundle(id.index, id.width).await?,
        None => None,
    };
    let bundle_leaves: Option<Vec<Vec<u8>>> = stored_bundle.as_ref().and_then(|bytes| {
        tiles::decode_bundle(bytes)
            .ok()
            .filter(|records| records.len() as u64 == partial0)
            .map(|records| records.iter().map(|r| r.to_vec()).collect())
    });
    let given: Option<Vec<Vec<u8>>> = leaves
        .filter(|leaves| leaves.len() as u64 == partial0)
        .map(|leaves| leaves.to_vec());
    let row_of = |leaves: &Vec<Vec<u8>>| leaves.iter().map(|l| leaf_hash(l)).collect::<Vec<_>>();
    let mut candidates: Vec<Candidate> = Vec::new();
    if let Some(given) = &given {
        candidates.push((row_of(given), Some(given.clone())));
    }
    if let (Some(id), Some(bytes)) = (tile0, &stored_tile0) {
        if let Ok(row) = tiles::decode_tile(bytes, id.width) {
            candidates.push((row, None));
        }
    }
    if let Some(leaves) = &bundle_leaves {
        candidates.push((row_of(leaves), Some(leaves.clone())));
    }
    if tile0.is_none() {
        candidates.push((Vec::new(), None));
    }

    let mut truth = None;
    for (row0, leaves) in candidates {
        let mut set = TileSet::new();
        if let Some(id) = tile0 {
            set.insert_hashes(0, id.index, row0.clone());
        }
        for (id, row) in &upper {
            set.insert_hashes(id.level, id.index, row.clone());
        }
        match proof::compact_range_from_tiles(size, &set) {
            Ok(range) if &range.root() == expected_root => {
                truth = Some((row0, leaves));
                break;
            }
            _ => {}
        }
    }
    let Some((row0, truth_leaves)) = truth else {
        if let Some(id) = tile0 {
            suspects.push(EdgeObject::Tile(id).to_string());
        }
        if let Some(id) = want_bundle {
            suspects.push(EdgeObject::Bundle(id).to_string());
        }
        for (id, _) in &upper {
            suspects.push(format!(
                "the full tiles of level {} below {}",
                id.level - 1,
                EdgeObject::Tile(*id)
            ));
        }
        return Ok(Diagnosis::Unresolved { suspects });
    };

    let mut wrong = Vec::new();
    let mut check_tile = |id: TileId, row: &[Hash], stored: Option<&Bytes>| {
        let right = Bytes::from(tiles::encode_tile(row));
        let problem = match stored {
            None => Some("missing"),
            Some(bytes) if tiles::decode_tile(bytes, id.width).is_err() => Some("undecodable"),
            Some(bytes) if *bytes != right => Some("differs"),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            wrong.push(WrongObject {
                object: EdgeObject::Tile(id),
                problem,
                right: Some(right),
            });
        }
    };
    if let Some(id) = tile0 {
        check_tile(id, &row0, stored_tile0.as_ref());
    }
    for (id, row) in &upper {
        let stored = store.get_tile(*id).await?;
        check_tile(*id, row, stored.as_ref());
    }
    if let Some(id) = want_bundle {
        let bundle_ok = bundle_leaves
            .as_ref()
            .is_some_and(|leaves| row_of(leaves) == row0);
        if !bundle_ok {
            let problem = match (&stored_bundle, &bundle_leaves) {
                (None, _) => "missing",
                (Some(_), None) => "undecodable",
                (Some(_), Some(_)) => "differs",
            };
            let right = truth_leaves
                .filter(|leaves| row_of(leaves) == row0)
                .map(|leaves| tiles::encode_bundle(&leaves).map(Bytes::from))
                .transpose()?;
            wrong.push(WrongObject {
                object: EdgeObject::Bundle(id),
                problem,
                right,
            });
        }
    }
    Ok(if wrong.is_empty() {
        Diagnosis::Sound
    } else {
        Diagnosis::Wrong(wrong)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store holding the log of `n` entries as the integrator writes it.
    async fn store_with(n: u64) -> (TileStore, Hash, Vec<Vec<u8>>) {
        let store = TileStore::in_memory();
        let leaves: Vec<Vec<u8>> = (0..n).map(|i| format!("entry {i}").into_bytes()).collect();
        let mut builder = TreeBuilder::new();
        let out = builder.append(&leaves).unwrap();
        store.put_integration(&out).await.unwrap();
        (store, out.root, leaves)
    }

    fn flip(bytes: &Bytes) -> Bytes {
        let mut damaged = bytes.to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        Bytes::from(damaged)
    }

    const SIZE: u64 = 256 * 256 + 3 * 256 + 5;

    #[tokio::test]
    async fn a_sound_right_edge_is_sound() {
        let (store, root, _) = store_with(SIZE).await;
        assert_eq!(
            diagnose(&store, SIZE, &root, None).await.unwrap(),
            Diagnosis::Sound
        );
        TreeBuilder::resume_checked(&store, SIZE, &root)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn each_damaged_tile_is_named_and_its_right_bytes_found() {
        let (store, root, _) = store_with(SIZE).await;
        let (tiles, _) = TreeBuilder::right_edge(SIZE);
        assert_eq!(tiles.len(), 3);
        for id in tiles {
            let right = store.get_tile(id).await.unwrap().unwrap();
            store
                .replace_damaged(&id.path(), flip(&right))
                .await
                .unwrap();
            assert!(TreeBuilder::resume_checked(&store, SIZE, &root)
                .await
                .is_err());
            let Diagnosis::Wrong(wrong) = diagnose(&store, SIZE, &root, None).await.unwrap() else {
                panic!("tile {id} not found wrong");
            };
            assert_eq!(wrong.len(), 1, "{wrong:?}");
            assert_eq!(wrong[0].object, EdgeObject::Tile(id));
            assert_eq!(wrong[0].right.as_ref(), Some(&right));
            store.replace_damaged(&id.path(), right).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_damaged_bundle_is_named_and_rebuilt_only_from_matching_leaves() {
        let (store, root, leaves) = store_with(SIZE).await;
        let (_, bundle) = TreeBuilder::right_edge(SIZE);
        let id = bundle.unwrap();
        let right = store.get_bundle(id.index, id.width).await.unwrap().unwrap();
        store
            .replace_damaged(&id.path(), flip(&right))
            .await
            .unwrap();
        // The tiles still reproduce the root, so the check of the resumed root alone passes;
        // the bundle is named all the same.
        let diagnosis = diagnose(&store, SIZE, &root, None).await.unwrap();
        let Diagnosis::Wrong(wrong) = &diagnosis else {
            panic!("{diagnosis:?}");
        };
        assert_eq!(wrong[0].object, EdgeObject::Bundle(id));
        assert_eq!(wrong[0].right, None);
        assert_eq!(diagnosis.needs_leaves(SIZE), Some(SIZE - 5..SIZE));
        // Wrong leaves are not used; the right ones rebuild the bundle.
        let lies = vec![b"lie".to_vec(); 5];
        let with_lies = diagnose(&store, SIZE, &root, Some(&lies)).await.unwrap();
        assert!(matches!(&with_lies, Diagnosis::Wrong(w) if w[0].right.is_none()));
        let tail = &leaves[(SIZE - 5) as usize..];
        let Diagnosis::Wrong(wrong) = diagnose(&store, SIZE, &root, Some(tail)).await.unwrap()
        else {
            panic!("bundle not found wrong");
        };
        assert_eq!(wrong[0].right.as_ref(), Some(&right));
    }

    #[tokio::test]
    async fn a_damaged_tile_and_bundle_together_need_the_leaves() {
        let (store, root, leaves) = store_with(SIZE).await;
        let (tiles, bundle) = TreeBuilder::right_edge(SIZE);
        let tile0 = tiles.iter().find(|t| t.level == 0).copied().unwrap();
        let bundle = bundle.unwrap();
        for path in [tile0.path(), bundle.path()] {
            let bytes = store.get_path(&path).await.unwrap().unwrap();
            store.replace_damaged(&path, flip(&bytes)).await.unwrap();
        }
        assert!(matches!(
            diagnose(&store, SIZE, &root, None).await.unwrap(),
            Diagnosis::Unresolved { .. }
        ));
        let tail = &leaves[(SIZE - 5) as usize..];
        let Diagnosis::Wrong(wrong) = diagnose(&store, SIZE, &root, Some(tail)).await.unwrap()
        else {
            panic!("not resolved with the leaves");
        };
        let named: Vec<_> = wrong.iter().map(|w| w.object).collect();
        assert_eq!(
            named,
            vec![EdgeObject::Tile(tile0), EdgeObject::Bundle(bundle)]
        );
        assert!(wrong.iter().all(|w| w.right.is_some()));
    }
}
