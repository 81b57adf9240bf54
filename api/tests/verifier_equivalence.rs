//! `AwsLcVerifier` (the default) against `RustCryptoVerifier` (the reference): every signature
//! case we can think of, the upstream hashedrekord vectors, and a proptest over random keys and
//! digests must get identical verdicts (rekor-v2-api.md §5 step 7).

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rekor_api::key_details::{AlgorithmPolicy, HashAlgorithm, PublicKeyDetails};
use rekor_api::verifier::{SignatureError, VerifierKey};
use rekor_api::{
    AwsLcVerifier, CreateEntryRequest, EntryValidator, EntryVerifier, RustCryptoVerifier,
};
use sha2::Digest as _;
use signature::hazmat::PrehashSigner as _;

const HASHES: [HashAlgorithm; 3] = [
    HashAlgorithm::Sha256,
    HashAlgorithm::Sha384,
    HashAlgorithm::Sha512,
];

mod support;

use support::{b64, vectors};

fn digest_of(hash: HashAlgorithm, message: &[u8]) -> Vec<u8> {
    hash.digest(message)
}

/// Both verdicts, asserted equal; returns the verdict.
fn same_verdict(
    label: &str,
    key: &VerifierKey,
    hash: HashAlgorithm,
    digest: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let reference = RustCryptoVerifier.verify_digest(key, hash, digest, signature);
    let fast = AwsLcVerifier.verify_digest(key, hash, digest, signature);
    assert_eq!(
        reference,
        fast,
        "{label}: key {:?}, {hash:?}, digest {} bytes, signature {}",
        key,
        digest.len(),
        hex::encode(signature)
    );
    fast
}

// --- minimal DER helpers for hand-made signature encodings ---

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else if len < 0x100 {
        vec![0x81, len as u8]
    } else {
        vec![0x82, (len >> 8) as u8, len as u8]
    }
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

/// A minimal unsigned INTEGER's content octets.
fn minimal_uint(bytes: &[u8]) -> Vec<u8> {
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut out = bytes[first..].to_vec();
    if out[0] & 0x80 != 0 {
        out.insert(0, 0);
    }
    out
}

/// `SEQUENCE { r, s }` from P1363 halves, with `r`'s content optionally prefixed.
fn der_signature(fixed: &[u8], r_prefix: &[u8]) -> Vec<u8> {
    let (r, s) = fixed.split_at(fixed.len() / 2);
    let mut r_content = r_prefix.to_vec();
    r_content.extend(minimal_uint(r));
    let mut body = der_tlv(0x02, &r_content);
    body.extend(der_tlv(0x02, &minimal_uint(s)));
    der_tlv(0x30, &body)
}

/// Every encoding variant of one ECDSA signature, valid and broken. `fixed` is `r‖s` at field
/// width and `high_s_fixed` the same signature with `s` replaced by `n − s`.
fn ecdsa_signature_variants(fixed: &[u8], high_s_fixed: &[u8]) -> Vec<(String, Vec<u8>)> {
    let field_len = fixed.len() / 2;
    let der = der_signature(fixed, &[]);
    let mut variants: Vec<(String, Vec<u8>)> = vec![
        ("der".into(), der.clone()),
        ("p1363".into(), fixed.to_vec()),
        ("high-s der".into(), der_signature(high_s_fixed, &[])),
        ("high-s p1363".into(), high_s_fixed.to_vec()),
        (
            "der + trailing byte".into(),
            [der.as_slice(), &[0]].concat(),
        ),
        (
            "der + two trailing bytes".into(),
            [der.as_slice(), &[0, 0]].concat(),
        ),
        ("p1363 + trailing byte".into(), [fixed, &[0]].concat()),
        (
            "p1363 + two trailing bytes".into(),
            [fixed, &[0, 0]].concat(),
        ),
        ("der truncated".into(), der[..der.len() - 1].to_vec()),
        ("p1363 truncated".into(), fixed[..fixed.len() - 1].to_vec()),
        (
            "p1363 truncated by two".into(),
            fixed[..fixed.len() - 2].to_vec(),
        ),
        ("der non-minimal r".into(), der_signature(fixed, &[0])),
        ("empty".into(), vec![]),
        ("foobar!".into(), b"foobar!".to_vec()),
        ("r = s = 0 (p1363)".into(), vec![0; 2 * field_len]),
        (
            "r = s = 0 (der)".into(),
            der_signature(&vec![0; 2 * field_len], &[]),
        ),
        ("all ones (p1363)".into(), vec![0xff; 2 * field_len]),
        ("133 bytes".into(), vec![1; 133]),
        ("132 bytes".into(), vec![1; 132]),
    ];
    // P1363 with each half padded by a zero byte (sigstore accepts it) and with both halves
    // stripped of leading zeros.
    let (r, s) = fixed.split_at(field_len);
    variants.push((
        "p1363 halves zero-padded".into(),
        [&[0], r, &[0], s].concat(),
    ));
    let strip = |half: &[u8]| half[half.iter().position(|b| *b != 0).unwrap_or(0)..].to_vec();
    let (r_stripped, s_stripped) = (strip(r), strip(s));
    if r_stripped.len() == s_stripped.len() {
        variants.push((
            "p1363 halves stripped".into(),
            [r_stripped, s_stripped].concat(),
        ));
    }
    // r and s swapped.
    variants.push(("p1363 r/s swapped".into(), [s, r].concat()));
    // BER long-form length on the outer SEQUENCE (not DER).
    if der[1] < 0x80 {
        let mut ber = vec![0x30, 0x81, der[1]];
        ber.extend_from_slice(&der[2..]);
        variants.push(("der long-form length".into(), ber));
    }
    // Bit flips across the encodings.
    for (name, base) in [("der", der.clone()), ("p1363", fixed.to_vec())] {
        for index in [0, 1, 3, base.len() / 2, base.len() - 1] {
            let mut flipped = base.clone();
            flipped[index] ^= 0x01;
            variants.push((format!("{name} bit flip at {index}"), flipped));
        }
    }
    variants
}

/// Signs a digest: `(r‖s, r‖(n−s))`, or `None` when RustCrypto cannot sign this prehash.
type PrehashSign = dyn Fn(&[u8]) -> Option<(Vec<u8>, Vec<u8>)>;

/// One ECDSA key pair of any supported curve, as the tests need it.
struct EcdsaKeyPair {
    name: &'static str,
    public: VerifierKey,
    /// `(r‖s, r‖(n−s))` over `digest`, or `None` when RustCrypto cannot sign this prehash.
    sign: Box<PrehashSign>,
}

macro_rules! ecdsa_pair {
    ($name:expr, $module:ident, $secret:expr) => {{
        let signing = $module::ecdsa::SigningKey::from_slice($secret).unwrap();
        let public = VerifierKey::from_spki_der(
            {
                use $module::pkcs8::EncodePublicKey as _;
                $module::PublicKey::from_sec1_bytes(
                    $module::ecdsa::VerifyingKey::from(&signing)
                        .to_encoded_point(false)
                        .as_bytes(),
                )
                .unwrap()
                .to_public_key_der()
                .unwrap()
            }
            .as_bytes(),
        )
        .unwrap();
        EcdsaKeyPair {
            name: $name,
            public,
            sign: Box::new(move |digest: &[u8]| {
                let signature: $module::ecdsa::Signature = signing.sign_prehash(digest).ok()?;
                let (r, s) = signature.split_scalars();
                let high = $module::ecdsa::Signature::from_scalars(r, -s).unwrap();
                Some((signature.to_bytes().to_vec(), high.to_bytes().to_vec()))
            }),
        }
    }};
}

fn p521_secret(seed: &[u8]) -> Vec<u8> {
    let mut secret = seed[..66].to_vec();
    secret[0] &= 0x01;
    secret
}

fn ecdsa_pairs() -> Vec<EcdsaKeyPair> {
    let seed: Vec<u8> = (1..=66u8).collect();
    let other: Vec<u8> = (1..=66u8).rev().collect();
    vec![
        ecdsa_pair!("p256", p256, &seed[..32]),
        ecdsa_pair!("p256 other", p256, &other[..32]),
        ecdsa_pair!("p384", p384, &seed[..48]),
        ecdsa_pair!("p384 other", p384, &other[..48]),
        ecdsa_pair!("p521", p521, &p521_secret(&seed)),
        ecdsa_pair!("p521 other", p521, &p521_secret(&other)),
    ]
}

#[test]
fn ecdsa_cases_get_identical_verdicts() {
    let pairs = ecdsa_pairs();
    let mut accepted = 0;
    let mut rejected = 0;
    for signer in &pairs {
        for hash in HASHES {
            let digest = digest_of(hash, b"artifact");
            let Some((fixed, high_s)) = (signer.sign)(&digest) else {
                // P-521 cannot sign a SHA-256 prehash with RustCrypto; random bytes still must
                // get the same verdict.
                for verifier in &pairs {
                    let verdict =
                        same_verdict("unsignable", &verifier.public, hash, &digest, &[7; 132]);
                    assert!(verdict.is_err());
                }
                continue;
            };
            let mut wrong_digest = digest.clone();
            wrong_digest[0] ^= 0x80;
            for (variant, signature) in ecdsa_signature_variants(&fixed, &high_s) {
                for verifier in &pairs {
                    let label = format!(
                        "{} signs, {} verifies, {variant}",
                        signer.name, verifier.name
                    );
                    let verdict = same_verdict(&label, &verifier.public, hash, &digest, &signature);
                    let should_verify = verifier.name == signer.name
                        && matches!(
                            variant.as_str(),
                            "der"
                                | "p1363"
                                | "high-s der"
                                | "high-s p1363"
                                | "p1363 halves stripped"
                        )
                        // sigstore's P1363 rule allows at most 132 bytes: P-521 padded is 134.
                        || (verifier.name == signer.name
                            && variant == "p1363 halves zero-padded"
                            && fixed.len() + 2 <= 132);
                    assert_eq!(verdict.is_ok(), should_verify, "{label}: {verdict:?}");
                    if verdict.is_ok() {
                        accepted += 1;
                    } else {
                        rejected += 1;
                    }
                    // The same signature over another digest, under every hash (wrong hash).
                    let _ = same_verdict(&label, &verifier.public, hash, &wrong_digest, &signature);
                    for other_hash in HASHES {
                        let other = digest_of(other_hash, b"artifact");
                        let _ =
                            same_verdict(&label, &verifier.public, other_hash, &other, &signature);
                    }
                    // A digest of the wrong length is malformed for both.
                    assert_eq!(
                        same_verdict(&label, &verifier.public, hash, &digest[1..], &signature),
                        Err(SignatureError::Malformed)
                    );
                }
            }
        }
    }
    assert!(accepted > 50 && rejected > 1000, "{accepted} / {rejected}");
}

fn rsa_private(pem_name: &str) -> rsa::RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey as _;
    let vectors = vectors();
    let pem = vectors["keys"][pem_name]["private_key_pem"]
        .as_str()
        .unwrap();
    rsa::RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| {
            use rsa::pkcs1::DecodeRsaPrivateKey as _;
            rsa::RsaPrivateKey::from_pkcs1_pem(pem)
        })
        .unwrap()
}

fn rsa_sign(private: &rsa::RsaPrivateKey, hash: HashAlgorithm, digest: &[u8]) -> Vec<u8> {
    let scheme = match hash {
        HashAlgorithm::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlgorithm::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlgorithm::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
    };
    private.sign(scheme, digest).unwrap()
}

#[test]
fn rsa_cases_get_identical_verdicts() {
    use rsa::traits::PublicKeyParts as _;
    let upstream = rsa_private("rsa_2048");
    // 1024 bits and e = 3 stay on RustCrypto (outside aws-lc's accepted keys) or go to aws-lc;
    // either way the verdicts must match.
    let mut rng = rand_core::OsRng;
    let small = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
    let exponent_three =
        rsa::RsaPrivateKey::new_with_exp(&mut rng, 2048, &rsa::BigUint::from(3u32)).unwrap();
    let keys = [
        ("rsa-2048 upstream", upstream),
        ("rsa-1024", small),
        ("rsa-2048 e=3", exponent_three),
    ];
    let mut accepted = 0;
    for (signer_name, signer) in &keys {
        for hash in HASHES {
            let digest = digest_of(hash, b"artifact");
            let signature = rsa_sign(signer, hash, &digest);
            let modulus = signer.n().to_bytes_be();
            let mut variants: Vec<(String, Vec<u8>)> = vec![
                ("valid".into(), signature.clone()),
                (
                    "leading zero added".into(),
                    [&[0], signature.as_slice()].concat(),
                ),
                (
                    "trailing byte".into(),
                    [signature.as_slice(), &[0]].concat(),
                ),
                ("truncated".into(), signature[1..].to_vec()),
                ("zero".into(), vec![0; signature.len()]),
                ("one".into(), {
                    let mut one = vec![0; signature.len()];
                    *one.last_mut().unwrap() = 1;
                    one
                }),
                ("modulus".into(), modulus.clone()),
                ("all ones".into(), vec![0xff; signature.len()]),
                ("empty".into(), vec![]),
            ];
            for index in [0, 1, signature.len() / 2, signature.len() - 1] {
                let mut flipped = signature.clone();
                flipped[index] ^= 0x01;
                variants.push((format!("bit flip at {index}"), flipped));
            }
            let mut wrong_digest = digest.clone();
            wrong_digest[3] ^= 0x10;
            for (variant, sig) in &variants {
                for (verifier_name, verifier) in &keys {
                    let key = VerifierKey::Rsa(verifier.to_public_key());
                    let label = format!("{signer_name} signs, {verifier_name} verifies, {variant}");
                    let verdict = same_verdict(&label, &key, hash, &digest, sig);
                    let should_verify = signer_name == verifier_name && variant == "valid";
                    assert_eq!(verdict.is_ok(), should_verify, "{label}: {verdict:?}");
                    accepted += usize::from(verdict.is_ok());
                    let _ = same_verdict(&label, &key, hash, &wrong_digest, sig);
                    // A signature made with one hash, checked as another (same message).
                    for other_hash in HASHES {
                        let other = digest_of(other_hash, b"artifact");
                        let verdict = same_verdict(&label, &key, other_hash, &other, sig);
                        if other_hash != hash {
                            assert!(verdict.is_err(), "{label}: {other_hash:?}");
                        }
                    }
                }
            }
        }
    }
    assert_eq!(accepted, 9);
}

#[test]
fn delegated_keys_get_identical_verdicts() {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    let vectors = vectors();
    let pem = vectors["keys"]["ed25519"]["private_key_pem"]
        .as_str()
        .unwrap();
    let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).unwrap();
    let key = VerifierKey::Ed25519(signing.verifying_key());
    let digest = sha2::Sha512::digest(b"artifact");
    let mut prehash = sha2::Sha512::new();
    sha2::Digest::update(&mut prehash, b"artifact");
    let ph = signing.sign_prehashed(prehash, None).unwrap().to_bytes();
    assert_eq!(
        same_verdict("ed25519ph", &key, HashAlgorithm::Sha512, &digest, &ph),
        Ok(())
    );
    let mut flipped = ph;
    flipped[10] ^= 1;
    assert!(same_verdict(
        "ed25519ph flipped",
        &key,
        HashAlgorithm::Sha512,
        &digest,
        &flipped
    )
    .is_err());
    for hash in [HashAlgorithm::Sha256, HashAlgorithm::Sha384] {
        let digest = digest_of(hash, b"artifact");
        assert!(same_verdict("ed25519 other hash", &key, hash, &digest, &ph).is_err());
    }
    // Pure Ed25519 over a message (legacy DSSE) and the hashed message path.
    use signature::Signer as _;
    let pure = signing.sign(b"pae").to_bytes();
    for hash in [
        None,
        Some(HashAlgorithm::Sha512),
        Some(HashAlgorithm::Sha256),
    ] {
        assert_eq!(
            RustCryptoVerifier.verify_message(&key, hash, b"pae", &pure),
            AwsLcVerifier.verify_message(&key, hash, b"pae", &pure),
            "{hash:?}"
        );
    }
    assert_eq!(
        AwsLcVerifier.verify_message(&key, None, b"pae", &pure),
        Ok(())
    );
    // P-224 parses but never verifies.
    let p224 = VerifierKey::EcdsaP224;
    for hash in HASHES {
        let digest = digest_of(hash, b"artifact");
        assert!(same_verdict("p224", &p224, hash, &digest, &[1; 56]).is_err());
    }
    // ECDSA through verify_message with a hash (the DSSE path).
    let pairs = ecdsa_pairs();
    let digest = digest_of(HashAlgorithm::Sha256, b"pae");
    let (fixed, _) = (pairs[0].sign)(&digest).unwrap();
    assert_eq!(
        AwsLcVerifier.verify_message(
            &pairs[0].public,
            Some(HashAlgorithm::Sha256),
            b"pae",
            &fixed
        ),
        Ok(())
    );
    assert_eq!(
        AwsLcVerifier.verify_message(&pairs[0].public, None, b"pae", &fixed),
        RustCryptoVerifier.verify_message(&pairs[0].public, None, b"pae", &fixed)
    );
}

/// The upstream `TestToLogEntry` cases through validators that differ only in the verifier.
#[test]
fn upstream_hashedrekord_cases_get_identical_verdicts() {
    let vectors = vectors();
    let cases = vectors["hashedrekord"]["to_log_entry_cases"]
        .as_array()
        .unwrap();
    let mut accepted = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let allowed: Vec<PublicKeyDetails> = case["allowed_key_details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| PublicKeyDetails::from_name(v.as_str().unwrap()).unwrap())
            .collect();
        let policy = AlgorithmPolicy::new(allowed).unwrap();
        let reference =
            EntryValidator::with_verifier(policy.clone(), false, Arc::new(RustCryptoVerifier));
        let fast = EntryValidator::with_verifier(policy, false, Arc::new(AwsLcVerifier));
        let request =
            CreateEntryRequest::from_json(case["request_protojson"].to_string().as_bytes());
        let Ok(request) = request else { continue };
        let reference = reference.validate(&request).map_err(|(e, _)| e.to_string());
        let fast = fast.validate(&request).map_err(|(e, _)| e.to_string());
        match (&reference, &fast) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.canonical_body, b.canonical_body, "{name}");
                accepted += 1;
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{name}"),
            _ => panic!(
                "{name}: {reference:?} vs {fast:?}",
                reference = reference.is_ok(),
                fast = fast.is_ok()
            ),
        }
        assert_eq!(
            fast.is_ok(),
            case["expect"]["ok"].as_bool().unwrap(),
            "{name}"
        );
    }
    assert_eq!(accepted, 3);
}

/// The P-256 vector from the verifier's unit tests, DER and P1363.
#[test]
fn unit_test_vector_gets_identical_verdicts() {
    let key = VerifierKey::from_spki_der(&b64("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeLw7gX40qy1z7JUhGMAaaDITbV7p2D+C5G9xPEsy/PVAo9H0mgS4NYzpGirkXxBht+IvvL19WR1X9ANXha5ldQ==")).unwrap();
    let der = b64("MEYCIQC59oLS3MsCqm0xCxPOy+8FdQK4RYCZE036s3q1ECfcagIhAJ4ATXlCSdFrklKAS8No0PsAE9uLi37TCbIfRXASJTTb");
    let digest = b64("WzUT9YDIOXIS/yyPRZwZnvwMkOQ1Sl81M63wo//zpTA=");
    let fixed = p256::ecdsa::Signature::from_der(&der).unwrap();
    let (r, s) = fixed.split_scalars();
    let high = p256::ecdsa::Signature::from_scalars(r, -s).unwrap();
    for (variant, signature) in ecdsa_signature_variants(&fixed.to_bytes(), &high.to_bytes()) {
        let _ = same_verdict(&variant, &key, HashAlgorithm::Sha256, &digest, &signature);
    }
    assert_eq!(
        same_verdict("der", &key, HashAlgorithm::Sha256, &digest, &der),
        Ok(())
    );
}

fn proptest_cases() -> u32 {
    if std::env::var_os("REKOR_SOAK").is_some() {
        2048
    } else {
        48
    }
}

/// How a proptest case damages the signature.
#[derive(Debug, Clone)]
enum Damage {
    None,
    FlipBit(usize),
    Truncate(usize),
    Append(u8),
    Replace(Vec<u8>),
}

fn damage(signature: &[u8], how: &Damage) -> Vec<u8> {
    let mut out = signature.to_vec();
    match how {
        Damage::None => {}
        Damage::FlipBit(bit) => {
            let index = (bit / 8) % out.len();
            out[index] ^= 1 << (bit % 8);
        }
        Damage::Truncate(n) => out.truncate(out.len().saturating_sub(1 + n % 4)),
        Damage::Append(byte) => out.push(*byte),
        Damage::Replace(bytes) => out = bytes.clone(),
    }
    out
}

fn damage_strategy() -> impl Strategy<Value = Damage> {
    prop_oneof![
        2 => Just(Damage::None),
        2 => any::<usize>().prop_map(Damage::FlipBit),
        1 => any::<usize>().prop_map(Damage::Truncate),
        1 => any::<u8>().prop_map(Damage::Append),
        1 => proptest::collection::vec(any::<u8>(), 0..140).prop_map(Damage::Replace),
    ]
}

/// Random keys on every curve, random digests under every hash, DER or P1363, damaged or not.
#[test]
fn proptest_random_ecdsa_keys_and_digests() {
    let mut runner = TestRunner::new(Config {
        cases: proptest_cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0usize..3,
        0usize..3,
        proptest::collection::vec(any::<u8>(), 66),
        proptest::collection::vec(any::<u8>(), 64),
        any::<bool>(),
        any::<bool>(),
        damage_strategy(),
    );
    runner
        .run(
            &strategy,
            |(curve, hash, seed, digest_bytes, as_der, wrong_key, how)| {
                let hash = HASHES[hash];
                let digest = &digest_bytes[..hash.output_len()];
                let pair = match curve {
                    0 => p256::ecdsa::SigningKey::from_slice(&seed[..32])
                        .ok()
                        .map(|_| ecdsa_pair!("random", p256, &seed[..32])),
                    1 => p384::ecdsa::SigningKey::from_slice(&seed[..48])
                        .ok()
                        .map(|_| ecdsa_pair!("random", p384, &seed[..48])),
                    _ => {
                        let secret = p521_secret(&seed);
                        p521::ecdsa::SigningKey::from_slice(&secret)
                            .ok()
                            .map(|_| ecdsa_pair!("random", p521, &secret))
                    }
                };
                let Some(pair) = pair else { return Ok(()) };
                let Some((fixed, _)) = (pair.sign)(digest) else {
                    let _ = same_verdict("unsignable", &pair.public, hash, digest, &[3; 132]);
                    return Ok(());
                };
                let signature = if as_der {
                    der_signature(&fixed, &[])
                } else {
                    fixed
                };
                let damaged = damage(&signature, &how);
                let verifier = if wrong_key {
                    &ecdsa_pairs()[curve * 2].public
                } else {
                    &pair.public
                };
                let verdict = same_verdict("proptest", verifier, hash, digest, &damaged);
                if !wrong_key && matches!(how, Damage::None) {
                    prop_assert_eq!(verdict, Ok(()));
                }
                Ok(())
            },
        )
        .unwrap();
}

/// The upstream RSA key over random digests under every hash, damaged or not.
#[test]
fn proptest_random_rsa_digests() {
    let private = rsa_private("rsa_2048");
    let key = VerifierKey::Rsa(private.to_public_key());
    let mut runner = TestRunner::new(Config {
        cases: proptest_cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0usize..3,
        0usize..3,
        proptest::collection::vec(any::<u8>(), 64),
        damage_strategy(),
    );
    runner
        .run(&strategy, |(sign_hash, verify_hash, digest_bytes, how)| {
            let (sign_hash, verify_hash) = (HASHES[sign_hash], HASHES[verify_hash]);
            let signature = rsa_sign(&private, sign_hash, &digest_bytes[..sign_hash.output_len()]);
            let damaged = damage(&signature, &how);
            let digest = &digest_bytes[..verify_hash.output_len()];
            let verdict = same_verdict("proptest rsa", &key, verify_hash, digest, &damaged);
            if sign_hash == verify_hash && matches!(how, Damage::None) {
                prop_assert_eq!(verdict, Ok(()));
            }
            Ok(())
        })
        .unwrap();
}
