//! Writing and checking a canonical hashedrekord body of the benchmark's typical size (a
//! Fulcio-sized certificate, a P-256 DER signature, a SHA-256 digest), and writing the 201 answer
//! that carries it. Every entry's body is written once on the verification pool, and a leader
//! writes it again for each forwarded entry it checks ([`check_canonical_body`]).
//!
//! `cargo bench -p rekor-api --bench canonical -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use rekor_api::backend::{EntryKind, LoggedEntry};
use rekor_api::canonical::{check_canonical_body, hashedrekord_body};
use rekor_api::key_details::{HashAlgorithm, PublicKeyDetails};
use rekor_api::request::{Verifier, VerifierMaterial};
use rekor_api::response::transparency_log_entry;

fn canonical(c: &mut Criterion) {
    let verifier = Verifier {
        material: Some(VerifierMaterial::X509Certificate {
            raw_bytes: (0..720u32).map(|i| (i * 7 + 3) as u8).collect(),
        }),
        key_details: PublicKeyDetails::PKIX_ECDSA_P256_SHA_256.number(),
    };
    let digest = [0x5a; 32];
    let signature: Vec<u8> = (0..71u8).collect();
    let mut group = c.benchmark_group("hashedrekord");
    group.bench_function("write_body", |b| {
        b.iter(|| {
            hashedrekord_body(
                HashAlgorithm::Sha256,
                std::hint::black_box(&digest),
                std::hint::black_box(&signature),
                std::hint::black_box(&verifier),
            )
        })
    });
    let body = hashedrekord_body(HashAlgorithm::Sha256, &digest, &signature, &verifier);
    assert!(check_canonical_body(&body, false).is_ok());
    group.bench_function("check_body", |b| {
        b.iter(|| check_canonical_body(std::hint::black_box(&body), false))
    });
    let logged = LoggedEntry {
        log_index: 1_234_567,
        tree_size: 1_234_890,
        root_hash: [9; 32],
        inclusion_proof: vec![[7; 32]; 21],
        checkpoint: format!(
            "rekor.example/log\n1234890\n{}=\n\n\u{2014} rekor.example/log {}\n",
            "q".repeat(43),
            "s".repeat(96)
        ),
    };
    group.bench_function("write_201_answer", |b| {
        b.iter(|| {
            transparency_log_entry(
                std::hint::black_box(&[3; 32]),
                EntryKind::HashedRekord,
                std::hint::black_box(&body),
                std::hint::black_box(&logged),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, canonical);
criterion_main!(benches);
