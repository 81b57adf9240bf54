//! C2SP signed-note: note text plus signature lines, key IDs, verifier-key strings,
//! and the log's note signers and verifiers (tlog-tiles.md §7–§8,
//! rekor-v2-api.md §8.3).
//!
//! Key types: Ed25519 (0x01, the C2SP formula), ECDSA P-256 (the transparency-dev
//! 0x02 convention: key hash = SHA-256 of the DER SPKI, origin not included; DER
//! signature over SHA-256 of the text) and RSA PKCS#1 v1.5 (0xFF ‖
//! "PKIX-RSA-PKCS#1v1.5" ‖ DER SPKI), as in sigstore/rekor-tiles `pkg/note`.
//!
//! This module holds the note format and what every key type shares: a signer is a key name
//! and a signing key ([`NoteKeySigner`]), a verifier a key name, key ID and public key
//! ([`NoteKeyVerifier`]), and which type a DER key is picks the rest ([`log_id`],
//! [`signer_from_pem`], [`verifier_from_spki_der`]). Key names, IDs and key strings are in
//! `keys`; what differs per key type (its key hash, signature encoding and constructors) is in
//! `ed25519`, `ecdsa_p256` and `rsa_pkcs1v15`.

mod ecdsa_p256;
mod ed25519;
mod keys;
mod rsa_pkcs1v15;

pub use ecdsa_p256::{EcdsaP256NoteSigner, EcdsaP256NoteVerifier};
pub(crate) use ed25519::public_key as ed25519_public_key;
pub use ed25519::{Ed25519NoteSigner, Ed25519NoteVerifier};
pub use keys::{check_key_name, key_hash, key_id, key_id_from_hash, VerifierKey};
pub(crate) use keys::{type_and_key, NotePrivateKey};
pub use rsa_pkcs1v15::RsaNoteVerifier;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use pkcs8::EncodePrivateKey;
use spki::EncodePublicKey;

/// signed-note §Signatures: each line starts with U+2014 EM DASH and a space.
pub const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// signed-note type byte for Ed25519 note signatures.
pub const ALG_ED25519: u8 = 0x01;
/// signed-note type byte for ECDSA (transparency-dev convention).
pub const ALG_ECDSA: u8 = 0x02;
/// signed-note type byte for timestamped Ed25519 cosignatures (tlog-cosignature).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// signed-note "unassigned" type byte, followed by an identifier (rekor-tiles RSA).
pub const ALG_UNASSIGNED: u8 = 0xFF;
/// The identifier rekor-tiles puts after 0xFF for RSA PKCS#1 v1.5 keys.
pub const RSA_PKCS1V15_ID: &[u8] = b"PKIX-RSA-PKCS#1v1.5";
/// We refuse notes with more signature lines than this (C2SP asks for at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// Why a note, key or signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note is not well formed.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A key name is empty or contains whitespace or `+`.
    #[error("invalid key name {0:?}")]
    InvalidKeyName(String),
    /// A verifier or signer key string is malformed.
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    /// The key's stated ID does not match the computed one.
    #[error("key ID mismatch")]
    KeyIdMismatch,
    /// A signature by a known key did not verify.
    #[error("signature by {name} does not verify")]
    BadSignature { name: String },
    /// No signature by a known key was found.
    #[error("no signature by a known key")]
    NoKnownSignature,
    /// Signing failed.
    #[error("signing failed")]
    SigningFailed,
    /// The key type is not supported.
    #[error("unsupported key type")]
    UnsupportedKey,
}

/// One signature line: key name, 4-byte key ID, signature bytes (after the ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line `— <name> <base64(key ID ‖ signature)>\n`.
    pub fn to_line(&self) -> String {
        let mut payload = Vec::with_capacity(4 + self.signature.len());
        payload.extend_from_slice(&self.key_id.to_be_bytes());
        payload.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, B64.encode(payload))
    }

    /// Parses one signature line without its trailing newline.
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let rest = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or(NoteError::Malformed(
                "signature line must start with an em dash and space",
            ))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(NoteError::Malformed("signature line needs a name"))?;
        check_key_name(name)?;
        let payload = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if payload.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        let (id, sig) = payload.split_at(4);
        Ok(Self {
            name: name.to_string(),
            key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
            signature: sig.to_vec(),
        })
    }
}

/// A signed note: the text (ending in `\n`) and its signatures in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note strictly: valid UTF-8, no control characters but `\n`,
    /// text and signatures separated by the last blank line, at least one
    /// signature line, each `— <name> <base64>` and newline-terminated.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        if s.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Malformed("control character"));
        }
        let split = s
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before signatures"))?;
        let text = &s[..split + 1];
        let sigs = &s[split + 2..];
        let body = sigs
            .strip_suffix('\n')
            .ok_or(NoteError::Malformed("missing final newline"))?;
        if body.is_empty() {
            return Err(NoteError::Malformed("no signature lines"));
        }
        let signatures = body
            .split('\n')
            .map(NoteSignature::parse_line)
            .collect::<Result<Vec<_>, _>>()?;
        if signatures.len() > MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        Ok(Self {
            text: text.to_string(),
            signatures,
        })
    }

    /// Signs `text` (which must end in `\n`) with each signer, in order.
    pub fn sign(text: &str, signers: &[&dyn NoteSigner]) -> Result<Self, NoteError> {
        check_text(text)?;
        let signatures = signers
            .iter()
            .map(|s| {
                Ok(NoteSignature {
                    name: s.name().to_string(),
                    key_id: s.key_id(),
                    signature: s.sign(text.as_bytes())?,
                })
            })
            .collect::<Result<Vec<_>, NoteError>>()?;
        Ok(Self {
            text: text.to_string(),
            signatures,
        })
    }

    /// The serialised note: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// signed-note §Verification: signatures by unknown (name, ID) pairs are
    /// ignored; a known key whose signature fails rejects the note; at least one
    /// known key must have signed. Returns the indices of verified signatures.
    pub fn verify(&self, verifiers: &[&dyn NoteVerifier]) -> Result<Vec<usize>, NoteError> {
        let mut verified = Vec::new();
        for (i, sig) in self.signatures.iter().enumerate() {
            let Some(v) = verifiers
                .iter()
                .find(|v| v.name() == sig.name && v.key_id() == sig.key_id)
            else {
                continue;
            };
            if !v.verify(self.text.as_bytes(), &sig.signature) {
                return Err(NoteError::BadSignature {
                    name: sig.name.clone(),
                });
            }
            verified.push(i);
        }
        if verified.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        Ok(verified)
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for s in &self.signatures {
            f.write_str(&s.to_line())?;
        }
        Ok(())
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end with a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed("control character"));
    }
    Ok(())
}

/// Something that signs note texts under a key name.
pub trait NoteSigner: Send + Sync {
    /// The key name (for a log: its origin).
    fn name(&self) -> &str;
    /// The 4-byte key ID written in signature lines.
    fn key_id(&self) -> u32;
    /// Signs `msg`, returning the signature bytes that follow the key ID.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError>;
    /// The 32-byte log ID (`logId.keyId`) for this key (rekor-v2-api.md §8.3).
    fn log_id(&self) -> [u8; 32];
    /// The public key as DER SubjectPublicKeyInfo.
    fn public_key_der(&self) -> Vec<u8>;
}

/// Something that verifies note signatures for one (name, key ID).
pub trait NoteVerifier: Send + Sync {
    /// The key name.
    fn name(&self) -> &str;
    /// The 4-byte key ID.
    fn key_id(&self) -> u32;
    /// Whether `sig` (the bytes after the key ID) is valid for `msg`.
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool;
}

/// What a signing key of one type brings to a [`NoteKeySigner`].
pub trait NoteSigningKey: Send + Sync {
    /// The type of its public key.
    type Public: NotePublicKey + EncodePublicKey;
    /// Its public key.
    fn public_key(&self) -> Self::Public;
    /// Signs `msg`, returning the signature bytes that follow the key ID.
    fn sign_note(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError>;
}

/// What a public key of one type brings to a [`NoteKeyVerifier`].
pub trait NotePublicKey: Send + Sync {
    /// Whether `sig` (the bytes after the key ID) is a valid signature of `msg` by this key.
    fn verify_note(&self, msg: &[u8], sig: &[u8]) -> bool;
}

/// A note signer: a key name and a signing key ([`Ed25519NoteSigner`],
/// [`EcdsaP256NoteSigner`]).
pub struct NoteKeySigner<K> {
    name: String,
    key: K,
    /// The public key as DER SubjectPublicKeyInfo.
    spki: Vec<u8>,
    /// The key hash, which is the log ID; its first 4 bytes are the key ID.
    hash: [u8; 32],
}

impl<K: NoteSigningKey> NoteKeySigner<K> {
    /// A signer for `name` with the given key.
    pub fn new(name: &str, key: K) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let spki = key
            .public_key()
            .to_public_key_der()
            .map_err(|_| NoteError::MalformedKey("cannot encode key"))?
            .into_vec();
        let hash = log_id(name, &spki)?;
        Ok(Self {
            name: name.to_string(),
            key,
            spki,
            hash,
        })
    }

    /// A verifier for this signer's key.
    pub fn verifier(&self) -> NoteKeyVerifier<K::Public> {
        NoteKeyVerifier::from_parts(self.name.clone(), self.key_id(), self.key.public_key())
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Result<String, NoteError>
    where
        K: EncodePrivateKey,
    {
        self.key
            .to_pkcs8_pem(Default::default())
            .map(|z| z.to_string())
            .map_err(|_| NoteError::MalformedKey("cannot encode key"))
    }
}

impl<K: NoteSigningKey> NoteSigner for NoteKeySigner<K> {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        key_id_from_hash(&self.hash)
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError> {
        self.key.sign_note(msg)
    }
    fn log_id(&self) -> [u8; 32] {
        self.hash
    }
    fn public_key_der(&self) -> Vec<u8> {
        self.spki.clone()
    }
}

/// A note verifier for one (name, key ID): [`Ed25519NoteVerifier`], [`EcdsaP256NoteVerifier`],
/// [`RsaNoteVerifier`], and the witnesses' [`CosignatureVerifier`](crate::cosignature::CosignatureVerifier).
#[derive(Debug, Clone)]
pub struct NoteKeyVerifier<K> {
    name: String,
    key_id: u32,
    key: K,
}

impl<K> NoteKeyVerifier<K> {
    /// A verifier of `key` under `name` and `key_id`, both checked by the caller.
    pub(crate) fn from_parts(name: String, key_id: u32, key: K) -> Self {
        Self { name, key_id, key }
    }

    /// The public key.
    pub(crate) fn key(&self) -> &K {
        &self.key
    }
}

impl<K: NotePublicKey> NoteVerifier for NoteKeyVerifier<K> {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.key.verify_note(msg, sig)
    }
}

/// rekor-v2-api.md §8.3: the 32-byte log ID (`logId.keyId`) for a checkpoint key
/// given as DER SubjectPublicKeyInfo; Ed25519, ECDSA (any curve; origin not
/// included) or RSA. It is the key's signed-note key hash, so a note key ID is its first 4
/// bytes.
pub fn log_id(origin: &str, spki_der: &[u8]) -> Result<[u8; 32], NoteError> {
    match spki_algorithm(spki_der)? {
        SpkiAlgorithm::Ed25519(raw) => Ok(ed25519::key_hash(origin, &raw)),
        SpkiAlgorithm::Ecdsa => Ok(ecdsa_p256::key_hash(spki_der)),
        SpkiAlgorithm::Rsa => Ok(rsa_pkcs1v15::key_hash(origin, spki_der)),
    }
}

/// Loads a log signing key from PEM: Ed25519 (PKCS#8) or ECDSA P-256 (PKCS#8 or SEC1).
pub fn signer_from_pem(name: &str, pem: &str) -> Result<Box<dyn NoteSigner>, NoteError> {
    if let Ok(s) = Ed25519NoteSigner::from_pkcs8_pem(name, pem) {
        return Ok(Box::new(s));
    }
    if let Ok(s) = EcdsaP256NoteSigner::from_pem(name, pem) {
        return Ok(Box::new(s));
    }
    Err(NoteError::UnsupportedKey)
}

/// A note verifier for a checkpoint key given as DER SPKI (Ed25519, P-256 or RSA).
pub fn verifier_from_spki_der(name: &str, der: &[u8]) -> Result<Box<dyn NoteVerifier>, NoteError> {
    match spki_algorithm(der)? {
        SpkiAlgorithm::Ed25519(raw) => Ok(Box::new(Ed25519NoteVerifier::new(
            name,
            ed25519_public_key(&raw)?,
        )?)),
        SpkiAlgorithm::Ecdsa => Ok(Box::new(EcdsaP256NoteVerifier::from_spki_der(name, der)?)),
        SpkiAlgorithm::Rsa => Ok(Box::new(RsaNoteVerifier::from_spki_der(name, der)?)),
    }
}

enum SpkiAlgorithm {
    Ed25519([u8; 32]),
    Ecdsa,
    Rsa,
}

const OID_ED25519: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_EC_PUBLIC_KEY: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_RSA_ENCRYPTION: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

fn spki_algorithm(der: &[u8]) -> Result<SpkiAlgorithm, NoteError> {
    let info = spki::SubjectPublicKeyInfoRef::try_from(der)
        .map_err(|_| NoteError::MalformedKey("not a DER SubjectPublicKeyInfo"))?;
    let oid = info.algorithm.oid;
    if oid == OID_ED25519 {
        let raw: [u8; 32] = info
            .subject_public_key
            .as_bytes()
            .and_then(|b| b.try_into().ok())
            .ok_or(NoteError::MalformedKey("Ed25519 key must be 32 bytes"))?;
        Ok(SpkiAlgorithm::Ed25519(raw))
    } else if oid == OID_EC_PUBLIC_KEY {
        Ok(SpkiAlgorithm::Ecdsa)
    } else if oid == OID_RSA_ENCRYPTION {
        Ok(SpkiAlgorithm::Rsa)
    } else {
        Err(NoteError::UnsupportedKey)
    }
}
