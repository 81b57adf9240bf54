//! Verifier keys and signature verification for entries (rekor-v2-api.md §5 steps 2 and 7).
//!
//! Parsing follows Go's `x509.ParsePKIXPublicKey` / `x509.ParseCertificate`: DER only (no PEM),
//! no trailing bytes, and the certificate is used only for its public key. Verification is
//! behind the [`EntryVerifier`] trait: [`RustCryptoVerifier`] is the reference, and
//! [`crate::verifier_aws_lc::AwsLcVerifier`] (the default) makes the same decisions with aws-lc-rs
//! arithmetic for ECDSA and RSA, which measured 6–9× faster.

use der::{Decode, Encode};
use sha2::digest::consts::U64;
use sha2::digest::{FixedOutput, HashMarker, Output, OutputSizeUser, Update};
use signature::hazmat::PrehashVerifier;
use spki::SubjectPublicKeyInfoRef;

use crate::key_details::{HashAlgorithm, KeyType};
use crate::request::VerifierMaterial;

const OID_RSA_ENCRYPTION: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC_PUBLIC_KEY: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_ED25519: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_P224: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.132.0.33");
const OID_P256: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// A verifier's public key, parsed.
#[derive(Clone)]
pub enum VerifierKey {
    Rsa(rsa::RsaPublicKey),
    /// Go parses P-224 keys, so they pass step 2; no algorithm allows them (step 4).
    EcdsaP224,
    EcdsaP256(p256::ecdsa::VerifyingKey),
    EcdsaP384(p384::ecdsa::VerifyingKey),
    EcdsaP521(Box<p521::ecdsa::VerifyingKey>),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// Why a verifier's bytes are not a usable key (step 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    #[error("invalid DER SubjectPublicKeyInfo: {0}")]
    Spki(String),
    #[error("invalid DER X.509 certificate: {0}")]
    Certificate(String),
    #[error("unsupported public key algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("invalid {0} public key")]
    InvalidKey(&'static str),
}

impl std::fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifierKey({})", self.key_type())
    }
}

impl VerifierKey {
    /// Parses a verifier's `publicKey` (DER SPKI) or `x509Certificate` (DER certificate).
    pub fn from_material(material: &VerifierMaterial) -> Result<Self, KeyParseError> {
        match material {
            VerifierMaterial::PublicKey { raw_bytes } => Self::from_spki_der(raw_bytes),
            VerifierMaterial::X509Certificate { raw_bytes } => {
                let certificate = x509_cert::Certificate::from_der(raw_bytes)
                    .map_err(|e| KeyParseError::Certificate(e.to_string()))?;
                let spki = certificate
                    .tbs_certificate
                    .subject_public_key_info
                    .to_der()
                    .map_err(|e| KeyParseError::Certificate(e.to_string()))?;
                Self::from_spki_der(&spki)
            }
        }
    }

    /// Parses a DER SubjectPublicKeyInfo (trailing bytes rejected).
    pub fn from_spki_der(der_bytes: &[u8]) -> Result<Self, KeyParseError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der_bytes)
            .map_err(|e| KeyParseError::Spki(e.to_string()))?;
        let key_bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or(KeyParseError::Spki(
                "public key bit string has unused bits".into(),
            ))?;
        let oid = spki.algorithm.oid;
        if oid == OID_RSA_ENCRYPTION {
            use rsa::pkcs8::DecodePublicKey as _;
            let key = rsa::RsaPublicKey::from_public_key_der(der_bytes)
                .map_err(|_| KeyParseError::InvalidKey("RSA"))?;
            Ok(VerifierKey::Rsa(key))
        } else if oid == OID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters_oid()
                .map_err(|_| KeyParseError::Spki("ECDSA key without a named curve".into()))?;
            // Go accepts only uncompressed points here.
            if key_bits.first() != Some(&0x04) {
                return Err(KeyParseError::InvalidKey("ECDSA"));
            }
            if curve == OID_P256 {
                p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bits)
                    .map(VerifierKey::EcdsaP256)
                    .map_err(|_| KeyParseError::InvalidKey("P-256"))
            } else if curve == OID_P384 {
                p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bits)
                    .map(VerifierKey::EcdsaP384)
                    .map_err(|_| KeyParseError::InvalidKey("P-384"))
            } else if curve == OID_P521 {
                p521::ecdsa::VerifyingKey::from_sec1_bytes(key_bits)
                    .map(|key| VerifierKey::EcdsaP521(Box::new(key)))
                    .map_err(|_| KeyParseError::InvalidKey("P-521"))
            } else if curve == OID_P224 {
                // 1 + 2 × 28 bytes: a well-formed uncompressed P-224 point encoding.
                if key_bits.len() != 57 {
                    return Err(KeyParseError::InvalidKey("P-224"));
                }
                Ok(VerifierKey::EcdsaP224)
            } else {
                Err(KeyParseError::UnsupportedAlgorithm(format!(
                    "ECDSA curve {curve}"
                )))
            }
        } else if oid == OID_ED25519 {
            if spki.algorithm.parameters.is_some() {
                return Err(KeyParseError::InvalidKey("Ed25519"));
            }
            let bytes: [u8; 32] = key_bits
                .try_into()
                .map_err(|_| KeyParseError::InvalidKey("Ed25519"))?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map(VerifierKey::Ed25519)
                .map_err(|_| KeyParseError::InvalidKey("Ed25519"))
        } else {
            Err(KeyParseError::UnsupportedAlgorithm(oid.to_string()))
        }
    }

    /// The key's type and size, for the algorithm policy (step 4).
    pub fn key_type(&self) -> KeyType {
        match self {
            VerifierKey::Rsa(key) => {
                use rsa::traits::PublicKeyParts as _;
                KeyType::Rsa {
                    bits: key.size() * 8,
                }
            }
            VerifierKey::EcdsaP224 => KeyType::EcdsaP224,
            VerifierKey::EcdsaP256(_) => KeyType::EcdsaP256,
            VerifierKey::EcdsaP384(_) => KeyType::EcdsaP384,
            VerifierKey::EcdsaP521(_) => KeyType::EcdsaP521,
            VerifierKey::Ed25519(_) => KeyType::Ed25519,
        }
    }
}

/// A signature that does not verify, or cannot be verified with this key and hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("malformed signature")]
    Malformed,
    #[error("signature does not verify")]
    Invalid,
    #[error("{hash} is not usable with {key}")]
    Unsupported { key: KeyType, hash: HashAlgorithm },
}

/// Signature verification for entries. Implementations must be pure and thread-safe: the HTTP
/// layer calls them on blocking threads, concurrently.
pub trait EntryVerifier: Send + Sync + 'static {
    /// Verifies `signature` over `digest`, a hash computed by the client with `hash`
    /// (hashedrekord: the server never sees the message).
    fn verify_digest(
        &self,
        key: &VerifierKey,
        hash: HashAlgorithm,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError>;

    /// Verifies `signature` over `message` (legacy DSSE: the PAE). With a hash the message is
    /// hashed and checked as in [`EntryVerifier::verify_digest`]; without one the key must be
    /// Ed25519 and the signature is pure Ed25519 over the message.
    fn verify_message(
        &self,
        key: &VerifierKey,
        hash: Option<HashAlgorithm>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError>;
}

/// ECDSA over a prehash: the signature is ASN.1 DER `SEQUENCE{r,s}` or, failing that, IEEE P1363
/// `r‖s` (even length, at most 132 bytes), as sigstore/sigstore accepts. A macro rather than a
/// generic function: the RustCrypto trait bounds for "any prime curve with DER signatures" are
/// longer than the three expansions.
macro_rules! verify_ecdsa {
    ($curve:ty, $key:expr, $digest:expr, $signature:expr) => {{
        let (key, digest, signature): (_, &[u8], &[u8]) = ($key, $digest, $signature);
        let der_ok = ecdsa::Signature::<$curve>::from_der(signature)
            .map(|parsed| key.verify_prehash(digest, &parsed).is_ok())
            .unwrap_or(false);
        if der_ok {
            Ok(())
        } else {
            let field_len = <ecdsa::elliptic_curve::FieldBytesSize<$curve> as ecdsa::elliptic_curve::generic_array::typenum::Unsigned>::USIZE;
            p1363_fixed(signature, field_len)
                .and_then(|fixed| ecdsa::Signature::<$curve>::from_slice(&fixed).ok())
                .and_then(|parsed| key.verify_prehash(digest, &parsed).ok())
                .ok_or(SignatureError::Invalid)
        }
    }};
}

/// Re-encodes a P1363 `r‖s` signature with each half left-padded to `field_len` bytes.
pub(crate) fn p1363_fixed(signature: &[u8], field_len: usize) -> Option<Vec<u8>> {
    if signature.is_empty() || !signature.len().is_multiple_of(2) || signature.len() > 132 {
        return None;
    }
    let (r, s) = signature.split_at(signature.len() / 2);
    let mut fixed = vec![0u8; 2 * field_len];
    for (half, out) in [r, s].into_iter().zip(fixed.chunks_mut(field_len)) {
        // Big-endian integers: leading zeros carry no value (Go's big.Int.SetBytes).
        let first_nonzero = half.iter().position(|b| *b != 0).unwrap_or(half.len());
        let half = &half[first_nonzero..];
        if half.len() > field_len {
            return None;
        }
        out[field_len - half.len()..].copy_from_slice(half);
    }
    Some(fixed)
}

/// [`EntryVerifier`] on the RustCrypto crates.
#[derive(Debug, Clone, Copy, Default)]
pub struct RustCryptoVerifier;

impl EntryVerifier for RustCryptoVerifier {
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
        match key {
            VerifierKey::EcdsaP256(key) => verify_ecdsa!(p256::NistP256, key, digest, signature),
            VerifierKey::EcdsaP384(key) => verify_ecdsa!(p384::NistP384, key, digest, signature),
            VerifierKey::EcdsaP521(key) => {
                verify_ecdsa!(p521::NistP521, key.as_ref(), digest, signature)
            }
            VerifierKey::Rsa(key) => {
                let scheme = match hash {
                    HashAlgorithm::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                    HashAlgorithm::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                    HashAlgorithm::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
                };
                key.verify(scheme, digest, signature)
                    .map_err(|_| SignatureError::Invalid)
            }
            VerifierKey::Ed25519(key) => {
                if hash != HashAlgorithm::Sha512 {
                    return Err(SignatureError::Unsupported {
                        key: KeyType::Ed25519,
                        hash,
                    });
                }
                let signature = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| SignatureError::Malformed)?;
                let prehash = Sha512Output::from_digest(digest);
                key.verify_prehashed(prehash, None, &signature)
                    .map_err(|_| SignatureError::Invalid)
            }
            VerifierKey::EcdsaP224 => Err(SignatureError::Unsupported {
                key: KeyType::EcdsaP224,
                hash,
            }),
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
            None => match key {
                VerifierKey::Ed25519(key) => {
                    let signature = ed25519_dalek::Signature::from_slice(signature)
                        .map_err(|_| SignatureError::Malformed)?;
                    use signature::Verifier as _;
                    key.verify(message, &signature)
                        .map_err(|_| SignatureError::Invalid)
                }
                other => Err(SignatureError::Unsupported {
                    key: other.key_type(),
                    hash: HashAlgorithm::Sha512,
                }),
            },
        }
    }
}

/// A "hash" whose output is a SHA-512 digest computed elsewhere. ed25519-dalek's Ed25519ph API
/// takes a hasher, not a digest, and hashedrekord only ever has the 64-byte digest.
#[derive(Default, Clone)]
struct Sha512Output {
    bytes: Vec<u8>,
}

impl Sha512Output {
    fn from_digest(digest: &[u8]) -> Self {
        Sha512Output {
            bytes: digest.to_vec(),
        }
    }
}

impl HashMarker for Sha512Output {}

impl OutputSizeUser for Sha512Output {
    type OutputSize = U64;
}

impl Update for Sha512Output {
    fn update(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
    }
}

impl FixedOutput for Sha512Output {
    fn finalize_into(self, out: &mut Output<Self>) {
        // The caller checked the length is 64; copy what fits so no path can panic.
        let n = self.bytes.len().min(out.len());
        out[..n].copy_from_slice(&self.bytes[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    use sha2::Digest as _;

    fn b64(text: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap()
    }

    const P256_SPKI: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeLw7gX40qy1z7JUhGMAaaDITbV7p2D+C5G9xPEsy/PVAo9H0mgS4NYzpGirkXxBht+IvvL19WR1X9ANXha5ldQ==";
    const P256_SIG: &str = "MEYCIQC59oLS3MsCqm0xCxPOy+8FdQK4RYCZE036s3q1ECfcagIhAJ4ATXlCSdFrklKAS8No0PsAE9uLi37TCbIfRXASJTTb";
    const P256_DIGEST: &str = "WzUT9YDIOXIS/yyPRZwZnvwMkOQ1Sl81M63wo//zpTA=";

    #[test]
    fn ecdsa_der_and_p1363_both_verify() {
        let key = VerifierKey::from_spki_der(&b64(P256_SPKI)).unwrap();
        assert_eq!(key.key_type(), KeyType::EcdsaP256);
        let der_sig = b64(P256_SIG);
        let digest = b64(P256_DIGEST);
        let v = RustCryptoVerifier;
        v.verify_digest(&key, HashAlgorithm::Sha256, &digest, &der_sig)
            .unwrap();
        let p1363 = p256::ecdsa::Signature::from_der(&der_sig)
            .unwrap()
            .to_bytes();
        v.verify_digest(&key, HashAlgorithm::Sha256, &digest, &p1363)
            .unwrap();
        let mut wrong = digest.clone();
        wrong[0] ^= 1;
        assert_eq!(
            v.verify_digest(&key, HashAlgorithm::Sha256, &wrong, &der_sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            v.verify_digest(&key, HashAlgorithm::Sha256, &wrong, &p1363),
            Err(SignatureError::Invalid)
        );
        assert!(v
            .verify_digest(&key, HashAlgorithm::Sha256, &digest, b"foobar!")
            .is_err());
    }

    #[test]
    fn spki_with_trailing_bytes_is_rejected() {
        let mut der_bytes = b64(P256_SPKI);
        der_bytes.push(0);
        assert!(VerifierKey::from_spki_der(&der_bytes).is_err());
    }

    #[test]
    fn pem_is_not_accepted() {
        let pem = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeLw7gX40qy1z7JUhGMAaaDITbV7p\n-----END PUBLIC KEY-----\n";
        assert!(VerifierKey::from_spki_der(pem).is_err());
        let cert = VerifierMaterial::X509Certificate {
            raw_bytes: pem.to_vec(),
        };
        assert!(VerifierKey::from_material(&cert).is_err());
    }

    #[test]
    fn ed25519ph_over_a_sha512_digest() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIGuZ8UWTFmXi/26ZgF4VYL8HfLSuW12TN5XMFQRt1Loc\n-----END PRIVATE KEY-----\n";
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).unwrap();
        let message = b"artifact";
        let mut prehash = sha2::Sha512::new();
        sha2::Digest::update(&mut prehash, message);
        let signature = signing.sign_prehashed(prehash, None).unwrap();
        let key = VerifierKey::Ed25519(signing.verifying_key());
        let digest = sha2::Sha512::digest(message);
        let v = RustCryptoVerifier;
        v.verify_digest(&key, HashAlgorithm::Sha512, &digest, &signature.to_bytes())
            .unwrap();
        // A pure Ed25519 signature over the digest is not an Ed25519ph signature.
        use signature::Signer as _;
        let pure = signing.sign(&digest);
        assert_eq!(
            v.verify_digest(&key, HashAlgorithm::Sha512, &digest, &pure.to_bytes()),
            Err(SignatureError::Invalid)
        );
        // And pure Ed25519 over a message is the DSSE path.
        v.verify_message(&key, None, &digest, &pure.to_bytes())
            .unwrap();
    }

    #[test]
    fn rsa_pkcs1v15_over_a_digest() {
        use rsa::pkcs8::DecodePrivateKey as _;
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../testdata/rekor-tiles/vectors.json")).unwrap();
        let pem = vectors["keys"]["rsa_2048"]["private_key_pem"]
            .as_str()
            .unwrap();
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
        let digest = sha2::Sha256::digest(b"artifact");
        let signature = private
            .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
            .unwrap();
        let key = VerifierKey::Rsa(private.to_public_key());
        assert_eq!(key.key_type(), KeyType::Rsa { bits: 2048 });
        let v = RustCryptoVerifier;
        v.verify_digest(&key, HashAlgorithm::Sha256, &digest, &signature)
            .unwrap();
        assert!(v
            .verify_digest(&key, HashAlgorithm::Sha256, &digest, &signature[1..])
            .is_err());
    }
}
