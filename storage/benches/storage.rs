//! Throughput benchmarks: leaves integrated per second (tile bytes included),
//! inclusion proofs built per second, and checkpoint note signatures per second.
//! Run quickly with `cargo bench -p rekor-storage -- --quick`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rekor_storage::checkpoint::Checkpoint;
use rekor_storage::integrate::TreeBuilder;
use rekor_storage::note::{EcdsaP256NoteSigner, Ed25519NoteSigner};
use rekor_storage::proof::{self, TileSet};
use std::collections::HashMap;

/// Roughly the size of a hashedrekord canonical body.
fn entries(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{i:0>489}").into_bytes()).collect()
}

fn integrate(c: &mut Criterion) {
    let batch = entries(1024);
    let prefix = entries(1000);
    let mut g = c.benchmark_group("integrate");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("append_1024_leaves", |b| {
        b.iter_batched(
            || {
                let mut builder = TreeBuilder::new();
                builder.append(&prefix).map(|_| builder).ok()
            },
            |builder| {
                let mut builder = builder.unwrap_or_default();
                builder
                    .append(&batch)
                    .map(|out| out.tiles.len())
                    .unwrap_or(0)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn proofs(c: &mut Criterion) {
    const SIZE: u64 = 70_000;
    let mut builder = TreeBuilder::new();
    let mut store = HashMap::new();
    for chunk in entries(SIZE as usize).chunks(4096) {
        if let Ok(out) = builder.append(chunk) {
            for (id, bytes) in out.tiles {
                store.insert(id, bytes);
            }
        }
    }
    let mut g = c.benchmark_group("proof");
    g.throughput(Throughput::Elements(1));
    let mut index = 0u64;
    g.bench_function("inclusion_from_tiles_70000", |b| {
        b.iter(|| {
            index = (index + 7919) % SIZE;
            let ids = proof::tiles_for_inclusion(index, SIZE).unwrap_or_default();
            // Wider tiles stand in for partials never written at exactly this size.
            let fetched = ids.iter().filter_map(|id| {
                (id.width..=256)
                    .find_map(|w| store.get(&rekor_storage::tiles::TileId { width: w, ..*id }))
                    .map(|bytes| (*id, bytes.slice(..usize::from(id.width) * 32)))
            });
            let set = TileSet::from_fetched(fetched).unwrap_or_default();
            proof::build_inclusion_proof(index, SIZE, &set)
                .map(|p| p.len())
                .unwrap_or(0)
        })
    });
    g.finish();
}

fn signatures(c: &mut Criterion) {
    let cp = Checkpoint::new("rekor.example", 123_456, [7; 32]);
    let mut g = c.benchmark_group("note");
    g.throughput(Throughput::Elements(1));
    if let Ok(ed) = Ed25519NoteSigner::generate("rekor.example") {
        g.bench_function("sign_checkpoint_ed25519", |b| {
            b.iter(|| cp.sign(&ed).map(|v| v.len()))
        });
    }
    if let Ok(ec) = EcdsaP256NoteSigner::generate("rekor.example") {
        g.bench_function("sign_checkpoint_ecdsa_p256", |b| {
            b.iter(|| cp.sign(&ec).map(|v| v.len()))
        });
    }
    g.finish();
}

criterion_group!(benches, integrate, proofs, signatures);
criterion_main!(benches);
