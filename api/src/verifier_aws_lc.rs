//! [`AwsLcVerifier`]: entry-signature verification (rekor-v2-api.md §5 step 7) with aws-lc-rs
//! arithmetic for ECDSA P-256/P-384/P-521 and RSA PKCS#1 v1.5, the default backend.
//!
//! The benchmark report (docs/benchmarks.md) found RustCrypto's ECDSA and RSA arithmetic to be
//! the write path's bottleneck; aws-lc-rs verifies the same prehashed digests 6–9× faster.
//!
//! The verdicts must be exactly those of [`RustCryptoVerifier`] (the reference), so only the
//! arithmetic moves to aws-lc-rs:
//! - ECDSA signatures are still *parsed* by RustCrypto with the same rules (strict DER first,
//!   then IEEE P1363 `r‖s` as sigstore accepts it); the parsed `(r, s)` is re-encoded as
//!   canonical DER and checked by aws-lc-rs with its ASN.1 algorithm for the (curve, hash) pair.
//!   aws-lc-rs's `*_FIXED` algorithms exist only for the matching hash of each curve and want
//!   exactly `2 × field` bytes, so they cannot express sigstore's looser P1363 rule.
//! - RSA keys go to aws-lc-rs only when they lie inside what both libraries accept (2048–8192-bit
//!   odd modulus, odd exponent of 3..=33 bits); anything else stays on RustCrypto.
//! - Everything aws-lc-rs cannot take or where the libraries' rules differ stays on RustCrypto:
//!   Ed25519/Ed25519ph, P-224, P-521 with a SHA-256 digest (RustCrypto refuses prehashes shorter
//!   than half the field), and any key aws-lc-rs rejects.

use aws_lc_rs::digest::{Digest, SHA256, SHA384, SHA512};
use aws_lc_rs::signature::{self as lc, ParsedPublicKey, VerificationAlgorithm};

use crate::key_details::HashAlgorithm;
use crate::verifier::{
    p1363_fixed, EntryVerifier, RustCryptoVerifier, SignatureError, VerifierKey,
};

/// [`EntryVerifier`] that checks ECDSA and RSA signatures with aws-lc-rs and delegates the rest
/// (Ed25519, and every case listed in the module docs) to [`RustCryptoVerifier`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsLcVerifier;

/// RSA keys aws-lc-rs verifies with the same verdicts as RustCrypto. aws-lc checks the modulus
/// size only when verifying (so a parse would not catch it), and refuses even or oversized
/// exponents that the `rsa` crate accepts.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;
const RSA_MAX_EXPONENT_BITS: usize = 33;

/// ECDSA over a prehash, with RustCrypto's parsing rules and aws-lc-rs's arithmetic (see the
/// module docs). A macro for the same reason as `verify_ecdsa!` in `verifier.rs`.
macro_rules! verify_ecdsa_aws_lc {
    ($curve:ty, $public_key:expr, $digest:expr, $signature:expr) => {{
        let (public_key, digest, signature): (&ParsedPublicKey, &Digest, &[u8]) =
            ($public_key, $digest, $signature);
        let verifies = |parsed: ecdsa::Signature<$curve>| {
            public_key
                .verify_digest_sig(digest, parsed.to_der().as_bytes())
                .is_ok()
        };
        let der_ok = ecdsa::Signature::<$curve>::from_der(signature)
            .map(verifies)
            .unwrap_or(false);
        if der_ok {
            Ok(())
        } else {
            let field_len = <ecdsa::elliptic_curve::FieldBytesSize<$curve> as ecdsa::elliptic_curve::generic_array::typenum::Unsigned>::USIZE;
            p1363_fixed(signature, field_len)
                .and_then(|fixed| ecdsa::Signature::<$curve>::from_slice(&fixed).ok())
                .filter(|parsed| verifies(*parsed))
                .map(|_| ())
                .ok_or(SignatureError::Invalid)
        }
    }};
}

fn digest_algorithm(hash: HashAlgorithm) -> &'static aws_lc_rs::digest::Algorithm {
    match hash {
        HashAlgorithm::Sha256 => &SHA256,
        HashAlgorithm::Sha384 => &SHA384,
        HashAlgorithm::Sha512 => &SHA512,
    }
}

/// The aws-lc-rs ECDSA algorithm for a curve and the client's hash, where its verdict matches
/// RustCrypto's (both truncate or left-pad the digest the same way for these pairs).
fn ecdsa_algorithm(
    key: &VerifierKey,
    hash: HashAlgorithm,
) -> Option<&'static lc::EcdsaVerificationAlgorithm> {
    use HashAlgorithm::{Sha256, Sha384, Sha512};
    Some(match (key, hash) {
        (VerifierKey::EcdsaP256(_), Sha256) => &lc::ECDSA_P256_SHA256_ASN1,
        (VerifierKey::EcdsaP256(_), Sha384) => &lc::ECDSA_P256_SHA384_ASN1,
        (VerifierKey::EcdsaP256(_), Sha512) => &lc::ECDSA_P256_SHA512_ASN1,
        (VerifierKey::EcdsaP384(_), Sha256) => &lc::ECDSA_P384_SHA256_ASN1,
        (VerifierKey::EcdsaP384(_), Sha384) => &lc::ECDSA_P384_SHA384_ASN1,
        (VerifierKey::EcdsaP384(_), Sha512) => &lc::ECDSA_P384_SHA512_ASN1,
        // P-521 with SHA-256: RustCrypto rejects a 32-byte prehash (under half of 66 bytes).
        (VerifierKey::EcdsaP521(_), Sha384) => &lc::ECDSA_P521_SHA384_ASN1,
        (VerifierKey::EcdsaP521(_), Sha512) => &lc::ECDSA_P521_SHA512_ASN1,
        _ => return None,
    })
}

fn rsa_algorithm(hash: HashAlgorithm) -> &'static lc::RsaParameters {
    match hash {
        HashAlgorithm::Sha256 => &lc::RSA_PKCS1_2048_8192_SHA256,
        HashAlgorithm::Sha384 => &lc::RSA_PKCS1_2048_8192_SHA384,
        HashAlgorithm::Sha512 => &lc::RSA_PKCS1_2048_8192_SHA512,
    }
}

/// The key as aws-lc-rs parses it for `algorithm`, or `None` when the key must stay on RustCrypto.
fn aws_lc_key(
    key: &VerifierKey,
    algorithm: &'static dyn VerificationAlgorithm,
) -> Option<ParsedPublicKey> {
    let bytes: Vec<u8> = match key {
        // Uncompressed SEC1 points: aws-lc-rs takes them as they are for ECDSA.
        VerifierKey::EcdsaP256(key) => key.to_encoded_point(false).as_bytes().to_vec(),
        VerifierKey::EcdsaP384(key) => key.to_encoded_point(false).as_bytes().to_vec(),
        VerifierKey::EcdsaP521(key) => key.to_encoded_point(false).as_bytes().to_vec(),
        VerifierKey::Rsa(key) => {
            use rsa::pkcs1::EncodeRsaPublicKey as _;
            use rsa::traits::PublicKeyParts as _;
            let modulus_bits = key.n().bits();
            let modulus_odd = key.n().to_bytes_le().first().is_some_and(|b| b & 1 == 1);
            let exponent_bits = key.e().bits();
            let exponent_odd = key.e().to_bytes_le().first().is_some_and(|b| b & 1 == 1);
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&modulus_bits)
                || !modulus_odd
                || !exponent_odd
                || !(2..=RSA_MAX_EXPONENT_BITS).contains(&exponent_bits)
            {
                return None;
            }
            key.to_pkcs1_der().ok()?.as_bytes().to_vec()
        }
        VerifierKey::EcdsaP224 | VerifierKey::Ed25519(_) => return None,
    };
    ParsedPublicKey::new(algorithm, bytes).ok()
}

impl EntryVerifier for AwsLcVerifier {
    fn verify_digest(
        &self,
        key: &VerifierKey,
        hash: HashAlgorithm,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        if digest.len() != hash.output_len() {
            return Err(SignatureError::Malformed);
        }
        let algorithm: &'static dyn VerificationAlgorithm = match key {
            VerifierKey::Rsa(_) => rsa_algorithm(hash),
            _ => match ecdsa_algorithm(key, hash) {
                Some(algorithm) => algorithm,
                None => return RustCryptoVerifier.verify_digest(key, hash, digest, signature),
            },
        };
        let (Some(public_key), Ok(digest_value)) = (
            aws_lc_key(key, algorithm),
            Digest::import_less_safe(digest, digest_algorithm(hash)),
        ) else {
            return RustCryptoVerifier.verify_digest(key, hash, digest, signature);
        };
        let digest_value = &digest_value;
        match key {
            VerifierKey::EcdsaP256(_) => {
                verify_ecdsa_aws_lc!(p256::NistP256, &public_key, digest_value, signature)
            }
            VerifierKey::EcdsaP384(_) => {
                verify_ecdsa_aws_lc!(p384::NistP384, &public_key, digest_value, signature)
            }
            VerifierKey::EcdsaP521(_) => {
                verify_ecdsa_aws_lc!(p521::NistP521, &public_key, digest_value, signature)
            }
            VerifierKey::Rsa(_) => public_key
                .verify_digest_sig(digest_value, signature)
                .map_err(|_| SignatureError::Invalid),
            // `aws_lc_key` returned None for these, so they never get here.
            VerifierKey::EcdsaP224 | VerifierKey::Ed25519(_) => {
                RustCryptoVerifier.verify_digest(key, hash, digest, signature)
            }
        }
    }

    fn verify_message(
        &self,
        key: &VerifierKey,
        hash: Option<HashAlgorithm>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        match hash {
            Some(hash) => self.verify_digest(key, hash, &hash.digest(message), signature),
            // Pure Ed25519 (legacy DSSE): RustCrypto.
            None => RustCryptoVerifier.verify_message(key, None, message, signature),
        }
    }
}
