//! Signature verification per key type, split into its two parts: parsing the verifier's key
//! (step 2) and checking the signature (step 7). The write path's largest CPU share
//! (docs/benchmarks.md, "CPU per logged entry by stage"); this times it without HTTP.
//!
//! `cargo bench -p rekor-api --bench verify -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use p256::pkcs8::EncodePublicKey as _;
use rekor_api::key_details::HashAlgorithm;
use rekor_api::verifier::{EntryVerifier, VerifierKey};
use rekor_api::verifier_aws_lc::AwsLcVerifier;
use sha2::Digest as _;
use signature::hazmat::PrehashSigner;

struct Case {
    name: &'static str,
    spki: Vec<u8>,
    hash: HashAlgorithm,
    digest: Vec<u8>,
    signature: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let mut rng = rand_core::OsRng;
    let message = b"a message the client signed";
    let sha256 = sha2::Sha256::digest(message).to_vec();
    let sha384 = sha2::Sha384::digest(message).to_vec();

    let p256_key = p256::ecdsa::SigningKey::random(&mut rng);
    let p256_signature: p256::ecdsa::Signature = p256_key.sign_prehash(&sha256).unwrap();
    let p384_key = p384::ecdsa::SigningKey::random(&mut rng);
    let p384_signature: p384::ecdsa::Signature = p384_key.sign_prehash(&sha384).unwrap();
    let rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let rsa_signature = rsa_key
        .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &sha256)
        .unwrap();

    vec![
        Case {
            name: "p256_sha256",
            spki: p256_key
                .verifying_key()
                .to_public_key_der()
                .unwrap()
                .into_vec(),
            hash: HashAlgorithm::Sha256,
            digest: sha256.clone(),
            signature: p256_signature.to_der().as_bytes().to_vec(),
        },
        Case {
            name: "p384_sha384",
            spki: p384_key
                .verifying_key()
                .to_public_key_der()
                .unwrap()
                .into_vec(),
            hash: HashAlgorithm::Sha384,
            digest: sha384,
            signature: p384_signature.to_der().as_bytes().to_vec(),
        },
        Case {
            name: "rsa2048_sha256",
            spki: rsa::RsaPublicKey::from(&rsa_key)
                .to_public_key_der()
                .unwrap()
                .into_vec(),
            hash: HashAlgorithm::Sha256,
            digest: sha256,
            signature: rsa_signature,
        },
    ]
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    for case in cases() {
        let key = VerifierKey::from_spki_der(&case.spki).unwrap();
        AwsLcVerifier
            .verify_digest(&key, case.hash, &case.digest, &case.signature)
            .unwrap();
        group.bench_function(format!("{}/parse_key", case.name), |b| {
            b.iter(|| VerifierKey::from_spki_der(std::hint::black_box(&case.spki)))
        });
        group.bench_function(format!("{}/verify", case.name), |b| {
            b.iter(|| {
                AwsLcVerifier.verify_digest(
                    std::hint::black_box(&key),
                    case.hash,
                    &case.digest,
                    &case.signature,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
