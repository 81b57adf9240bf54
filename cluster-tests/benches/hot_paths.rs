//! Criterion micro-benchmarks of the write path's hot spots, through the crates' public APIs
//! (the performance issue): request decoding, validation with canonicalisation, signature
//! verification per algorithm (RustCrypto, next to aws-lc-rs over the same prehashed digests),
//! integration (`TreeBuilder`), inclusion-proof building from tiles, and the Raft state
//! machine's apply of an `Append`.
//!
//! Run: `cargo bench -p rekor-cluster-tests --bench hot_paths` (about two minutes).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use rekor_api::canonical::hashedrekord_body;
use rekor_api::request::{RequestSpec, VerifierMaterial};
use rekor_api::verifier::VerifierKey;
use rekor_api::{
    AlgorithmPolicy, CreateEntryRequest, EntryValidator, EntryVerifier, HashAlgorithm,
    RustCryptoVerifier,
};
use rekor_cluster_tests::load::{RequestMix, RequestPool};
use rekor_raft::{open_stores, Command, EngineConfig, SequencedEntry, SledEngine};
use rekor_storage::integrate::TreeBuilder;
use rekor_storage::proof::{build_inclusion_proof, TileSet};

/// One pre-signed request of each kind the benches compare.
struct Sample {
    name: &'static str,
    body: bytes::Bytes,
    hash: HashAlgorithm,
}

fn sample(name: &'static str, mix: &str, hash: HashAlgorithm) -> Sample {
    let mix: RequestMix = mix.parse().expect("mix");
    let pool = RequestPool::generate(1, &mix, 1).expect("signing");
    Sample {
        name,
        body: pool.bodies[0].clone(),
        hash,
    }
}

fn samples() -> Vec<Sample> {
    vec![
        sample("p256-key", "p256=100,cert=0", HashAlgorithm::Sha256),
        sample("p256-cert", "p256=100,cert=100", HashAlgorithm::Sha256),
        sample("p384-key", "p384=100,cert=0", HashAlgorithm::Sha384),
        sample("rsa2048-key", "rsa=100,cert=0", HashAlgorithm::Sha256),
    ]
}

/// The parts of a decoded hashedrekord request that verification needs.
struct Parts {
    spki_or_cert: Vec<u8>,
    digest: Vec<u8>,
    signature: Vec<u8>,
    key: VerifierKey,
    verifier: rekor_api::request::Verifier,
}

fn parts(body: &[u8]) -> Parts {
    let request = CreateEntryRequest::from_json(body).expect("decodes");
    let Some(RequestSpec::HashedRekord(hashed)) = request.spec else {
        panic!("not a hashedrekord request");
    };
    let signature = hashed.signature.expect("signature");
    let verifier = signature.verifier.expect("verifier");
    let material = verifier.material.clone().expect("material");
    let key = VerifierKey::from_material(&material).expect("key parses");
    let spki_or_cert = match material {
        VerifierMaterial::PublicKey { raw_bytes }
        | VerifierMaterial::X509Certificate { raw_bytes } => raw_bytes,
    };
    Parts {
        spki_or_cert,
        digest: hashed.digest,
        signature: signature.content,
        key,
        verifier,
    }
}

fn decoding_and_validation(c: &mut Criterion) {
    // The node's validator: signatures verified with aws-lc-rs.
    let validator = EntryValidator::with_verifier(
        AlgorithmPolicy::default(),
        false,
        std::sync::Arc::new(rekor_api::AwsLcVerifier),
    );
    let mut group = c.benchmark_group("request");
    for sample in samples() {
        group.throughput(Throughput::Bytes(sample.body.len() as u64));
        group.bench_function(format!("decode/{}", sample.name), |b| {
            b.iter(|| CreateEntryRequest::from_json(&sample.body).expect("decodes"))
        });
        group.bench_function(
            format!("decode+validate(aws-lc-rs)+canonicalise/{}", sample.name),
            |b| {
                b.iter(|| {
                    let request = CreateEntryRequest::from_json(&sample.body).expect("decodes");
                    validator.validate(&request).expect("valid")
                })
            },
        );
        let parts = parts(&sample.body);
        group.bench_function(format!("canonicalise+leaf-hash/{}", sample.name), |b| {
            b.iter(|| {
                let body = hashedrekord_body(
                    sample.hash,
                    &parts.digest,
                    &parts.signature,
                    &parts.verifier,
                );
                rekor_api::canonical::leaf_hash(&body)
            })
        });
        group.bench_function(format!("parse-verifier/{}", sample.name), |b| {
            let material = parts.verifier.material.clone().expect("material");
            b.iter(|| VerifierKey::from_material(&material).expect("parses"))
        });
    }
    group.finish();
}

/// RustCrypto (our verifier) against aws-lc-rs, both over the client's prehashed digest.
/// aws-lc-rs verifies digests through `UnparsedPublicKey::verify_digest` /
/// `ParsedPublicKey::verify_digest_sig` with a `digest::Digest::import_less_safe` digest.
fn signature_verification(c: &mut Criterion) {
    use aws_lc_rs::signature::{
        ParsedPublicKey, UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_ASN1,
        ECDSA_P384_SHA384_ASN1, RSA_PKCS1_2048_8192_SHA256,
    };
    let mut group = c.benchmark_group("verify");
    for sample in samples().into_iter().filter(|s| s.name.ends_with("-key")) {
        let parts = parts(&sample.body);
        group.bench_function(format!("rustcrypto/{}", sample.name), |b| {
            b.iter(|| {
                RustCryptoVerifier
                    .verify_digest(&parts.key, sample.hash, &parts.digest, &parts.signature)
                    .expect("verifies")
            })
        });
        let (algorithm, digest_algorithm): (&'static dyn VerificationAlgorithm, _) =
            match sample.name {
                "p256-key" => (&ECDSA_P256_SHA256_ASN1, &aws_lc_rs::digest::SHA256),
                "p384-key" => (&ECDSA_P384_SHA384_ASN1, &aws_lc_rs::digest::SHA384),
                _ => (&RSA_PKCS1_2048_8192_SHA256, &aws_lc_rs::digest::SHA256),
            };
        let digest = aws_lc_rs::digest::Digest::import_less_safe(&parts.digest, digest_algorithm)
            .expect("digest length");
        let unparsed = UnparsedPublicKey::new(algorithm, parts.spki_or_cert.clone());
        unparsed
            .verify_digest(&digest, &parts.signature)
            .expect("aws-lc-rs verifies the same signature");
        let parsed = ParsedPublicKey::new(algorithm, parts.spki_or_cert.clone()).expect("key");
        group.bench_function(format!("aws-lc-rs/{}", sample.name), |b| {
            b.iter(|| {
                parsed
                    .verify_digest_sig(&digest, &parts.signature)
                    .expect("ok")
            })
        });
        // What a request costs: the key arrives with every request, so it is parsed each time.
        group.bench_function(format!("aws-lc-rs+parse-key/{}", sample.name), |b| {
            b.iter(|| {
                unparsed
                    .verify_digest(&digest, &parts.signature)
                    .expect("ok")
            })
        });
    }
    group.finish();
}

/// Canonical-body-sized leaves for the storage benches.
fn leaves(count: usize, salt: u64) -> Vec<Vec<u8>> {
    (0..count as u64)
        .map(|i| {
            let mut leaf = vec![b'x'; 700];
            leaf[..8].copy_from_slice(&salt.to_be_bytes());
            leaf[8..16].copy_from_slice(&i.to_be_bytes());
            leaf
        })
        .collect()
}

fn integration_and_proofs(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage");
    let batch = leaves(512, 0);
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("integrate/512-entry-batch", |b| {
        let mut builder = TreeBuilder::new();
        b.iter(|| builder.append(&batch).expect("appends"))
    });

    // A 2^16-entry tree, its tiles kept in memory (the widest version of each).
    let size = 1u64 << 16;
    let mut builder = TreeBuilder::new();
    let mut tiles = TileSet::new();
    for chunk in 0..(size / 4096) {
        let integration = builder.append(&leaves(4096, chunk)).expect("appends");
        for (id, bytes) in integration.tiles {
            tiles.insert(id, &bytes).expect("tile");
        }
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("inclusion-proof/size-65536", |b| {
        let mut index = 0u64;
        b.iter(|| {
            index = (index + 7919) % size;
            build_inclusion_proof(index, size, &tiles).expect("proof")
        })
    });
    group.finish();
}

/// Applying one `Append` of 512 entries to the state machine (assigning indices,
/// dedup lookups and inserts, the compact range), as every node does for every batch.
fn raft_apply(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = SledEngine::open(&EngineConfig::new(dir.path().join("raft"))).expect("sled");
    let (_log, mut state_machine) = open_stores(&engine, dir.path()).expect("stores");
    let mut group = c.benchmark_group("raft");
    group.throughput(Throughput::Elements(512));
    let mut log_index = 0u64;
    group.bench_function("apply/append-512", |b| {
        b.iter_batched(
            || {
                log_index += 1;
                let entries = leaves(512, log_index)
                    .into_iter()
                    .map(SequencedEntry::new)
                    .collect();
                Entry {
                    log_id: LogId::new(CommittedLeaderId::new(1, 0), log_index),
                    payload: EntryPayload::Normal(Command::Append { entries }),
                }
            },
            |entry| {
                runtime
                    .block_on(state_machine.apply([entry]))
                    .expect("applies")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = decoding_and_validation, signature_verification, integration_and_proofs, raft_apply
}
criterion_main!(hot_paths);
