//! C2SP signed-note: note text plus signature lines, key IDs, verifier-key strings,
//! and the log's note signers and verifiers (tlog-tiles.md §7–§8,
//! rekor-v2-api.md §8.3).
//!
//! Key types: Ed25519 (0x01, the C2SP formula), ECDSA P-256 (the transparency-dev
//! 0x02 convention: key hash = SHA-256 of the DER SPKI, origin not included; DER
//! signature over SHA-256 of the text) and RSA PKCS#1 v1.5 (0xFF ‖
//! "PKIX-RSA-PKCS#1v1.5" ‖ DER SPKI), as in sigstore/rekor-tiles `pkg/note`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use sha2::{Digest, Sha256};
use signature::{Signer, Verifier};
use spki::{DecodePublicKey, EncodePublicKey};

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

/// signed-note: key names are non-empty, without Unicode spaces or `+`.
pub fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::InvalidKeyName(name.to_string()));
    }
    Ok(())
}

/// signed-note key hash: SHA-256(name ‖ `\n` ‖ type ‖ key), where `type_and_key`
/// is the type byte followed by the public key.
pub fn key_hash(name: &str, type_and_key: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(b"\n")
        .chain_update(type_and_key)
        .finalize()
        .into()
}

/// The 4-byte key ID: the first 4 bytes of a 32-byte key hash, big-endian.
pub fn key_id_from_hash(hash: &[u8; 32]) -> u32 {
    u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]])
}

/// signed-note key ID: the first 4 bytes of [`key_hash`], big-endian.
pub fn key_id(name: &str, type_and_key: &[u8]) -> u32 {
    key_id_from_hash(&key_hash(name, type_and_key))
}

/// rekor-v2-api.md §8.3: the 32-byte log ID (`logId.keyId`) for a checkpoint key
/// given as DER SubjectPublicKeyInfo; Ed25519, ECDSA (any curve; origin not
/// included) or RSA.
pub fn log_id(origin: &str, spki_der: &[u8]) -> Result<[u8; 32], NoteError> {
    match spki_algorithm(spki_der)? {
        SpkiAlgorithm::Ed25519(raw) => {
            let mut tk = vec![ALG_ED25519];
            tk.extend_from_slice(&raw);
            Ok(key_hash(origin, &tk))
        }
        SpkiAlgorithm::Ecdsa => Ok(Sha256::digest(spki_der).into()),
        SpkiAlgorithm::Rsa => Ok(key_hash(origin, &rsa_type_and_key(spki_der))),
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

fn rsa_type_and_key(spki_der: &[u8]) -> Vec<u8> {
    let mut tk = vec![ALG_UNASSIGNED];
    tk.extend_from_slice(RSA_PKCS1V15_ID);
    tk.extend_from_slice(spki_der);
    tk
}

/// A parsed verifier key string `<name>+<hex key ID>+<base64(type ‖ key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub key_id: u32,
    /// The type byte followed by the public key.
    pub type_and_key: Vec<u8>,
}

impl VerifierKey {
    /// Parses a vkey and checks that its key ID matches the C2SP formula. (ECDSA
    /// 0x02 keys use another ID rule and are accepted as stated.)
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::MalformedKey("vkey needs name+id+key"));
        };
        check_key_name(name)?;
        let key_id = parse_key_id(id_hex)?;
        let type_and_key = B64
            .decode(b64)
            .map_err(|_| NoteError::MalformedKey("key is not base64"))?;
        if type_and_key.is_empty() {
            return Err(NoteError::MalformedKey("empty key"));
        }
        if type_and_key[0] != ALG_ECDSA && key_id != self::key_id(name, &type_and_key) {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(Self {
            name: name.to_string(),
            key_id,
            type_and_key,
        })
    }

    /// Formats as `<name>+<hex key ID>+<base64(type ‖ key)>`.
    pub fn to_vkey(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            B64.encode(&self.type_and_key)
        )
    }
}

fn parse_key_id(id_hex: &str) -> Result<u32, NoteError> {
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::MalformedKey("key ID must be 8 hex digits"));
    }
    u32::from_str_radix(id_hex, 16).map_err(|_| NoteError::MalformedKey("key ID"))
}

/// A Go-ecosystem note private key `PRIVATE+KEY+<name>+<hex id>+<base64(type ‖ seed)>`
/// for an Ed25519-based type; the key ID is as stated (not yet checked).
#[derive(Clone)]
pub(crate) struct NotePrivateKey {
    pub(crate) name: String,
    pub(crate) key_id: u32,
    pub(crate) alg: u8,
    pub(crate) seed: [u8; 32],
}

impl NotePrivateKey {
    pub(crate) fn parse(skey: &str) -> Result<Self, NoteError> {
        let rest = skey
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey(
                "signer key must start with PRIVATE+KEY+",
            ))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::MalformedKey("signer key needs name+id+key"));
        };
        check_key_name(name)?;
        let key_id = parse_key_id(id_hex)?;
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::MalformedKey("key is not base64"))?;
        let [alg, seed @ ..] = raw.as_slice() else {
            return Err(NoteError::MalformedKey("empty key"));
        };
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| NoteError::MalformedKey("seed must be 32 bytes"))?;
        Ok(Self {
            name: name.to_string(),
            key_id,
            alg: *alg,
            seed,
        })
    }
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

/// An Ed25519 note signer (type 0x01).
pub struct Ed25519NoteSigner {
    name: String,
    key: ed25519_dalek::SigningKey,
    hash: [u8; 32],
}

impl Ed25519NoteSigner {
    /// A signer for `name` with the given key.
    pub fn new(name: &str, key: ed25519_dalek::SigningKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let hash = key_hash(name, &ed25519_type_and_key(&key.verifying_key()));
        Ok(Self {
            name: name.to_string(),
            key,
            hash,
        })
    }

    /// A fresh random key.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        Self::new(
            name,
            ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng),
        )
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`.
    pub fn from_note_key(skey: &str) -> Result<Self, NoteError> {
        let parsed = NotePrivateKey::parse(skey)?;
        if parsed.alg != ALG_ED25519 {
            return Err(NoteError::UnsupportedKey);
        }
        let signer = Self::new(
            &parsed.name,
            ed25519_dalek::SigningKey::from_bytes(&parsed.seed),
        )?;
        if signer.key_id() != parsed.key_id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(signer)
    }

    /// Formats as `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`.
    pub fn to_note_key(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(&self.key.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id(),
            B64.encode(raw)
        )
    }

    /// Loads a PKCS#8 PEM private key.
    pub fn from_pkcs8_pem(name: &str, pem: &str) -> Result<Self, NoteError> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|_| NoteError::MalformedKey("not an Ed25519 PKCS#8 PEM key"))?;
        Self::new(name, key)
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Result<String, NoteError> {
        self.key
            .to_pkcs8_pem(Default::default())
            .map(|z| z.to_string())
            .map_err(|_| NoteError::MalformedKey("cannot encode key"))
    }

    /// The verifier key string for this signer.
    pub fn verifier_key(&self) -> String {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id(),
            type_and_key: ed25519_type_and_key(&self.key.verifying_key()),
        }
        .to_vkey()
    }

    /// A verifier for this signer's key.
    pub fn verifier(&self) -> Ed25519NoteVerifier {
        Ed25519NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id(),
            key: self.key.verifying_key(),
        }
    }

    /// The underlying key (for cosignatures with the same key material).
    pub fn signing_key(&self) -> &ed25519_dalek::SigningKey {
        &self.key
    }
}

fn ed25519_type_and_key(key: &ed25519_dalek::VerifyingKey) -> Vec<u8> {
    let mut tk = vec![ALG_ED25519];
    tk.extend_from_slice(key.as_bytes());
    tk
}

impl NoteSigner for Ed25519NoteSigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        key_id_from_hash(&self.hash)
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
    fn log_id(&self) -> [u8; 32] {
        self.hash
    }
    fn public_key_der(&self) -> Vec<u8> {
        // Encoding a 32-byte key into a fixed SPKI structure cannot fail in practice.
        self.key
            .verifying_key()
            .to_public_key_der()
            .map(|d| d.into_vec())
            .unwrap_or_default()
    }
}

/// An ECDSA P-256 note signer (transparency-dev 0x02 convention): ASN.1 DER
/// signature over SHA-256 of the text; key hash = SHA-256(DER SPKI).
pub struct EcdsaP256NoteSigner {
    name: String,
    key: p256::ecdsa::SigningKey,
    spki: Vec<u8>,
    hash: [u8; 32],
}

impl EcdsaP256NoteSigner {
    /// A signer for `name` with the given key.
    pub fn new(name: &str, key: p256::ecdsa::SigningKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .map_err(|_| NoteError::MalformedKey("cannot encode key"))?
            .into_vec();
        let hash = Sha256::digest(&spki).into();
        Ok(Self {
            name: name.to_string(),
            key,
            spki,
            hash,
        })
    }

    /// A fresh random key.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        Self::new(name, p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
    }

    /// Loads a PEM private key: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
    pub fn from_pem(name: &str, pem: &str) -> Result<Self, NoteError> {
        let key = match p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            Ok(k) => k,
            Err(_) => p256::SecretKey::from_sec1_pem(pem)
                .map(p256::ecdsa::SigningKey::from)
                .map_err(|_| NoteError::MalformedKey("not a P-256 PKCS#8 or SEC1 PEM key"))?,
        };
        Self::new(name, key)
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Result<String, NoteError> {
        self.key
            .to_pkcs8_pem(Default::default())
            .map(|z| z.to_string())
            .map_err(|_| NoteError::MalformedKey("cannot encode key"))
    }

    /// A verifier for this signer's key.
    pub fn verifier(&self) -> EcdsaP256NoteVerifier {
        EcdsaP256NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id(),
            key: *self.key.verifying_key(),
        }
    }
}

impl NoteSigner for EcdsaP256NoteSigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        key_id_from_hash(&self.hash)
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError> {
        // `Signer` on p256 hashes with SHA-256 and signs deterministically (RFC 6979).
        let sig: p256::ecdsa::Signature = self
            .key
            .try_sign(msg)
            .map_err(|_| NoteError::SigningFailed)?;
        Ok(sig.to_der().as_bytes().to_vec())
    }
    fn log_id(&self) -> [u8; 32] {
        self.hash
    }
    fn public_key_der(&self) -> Vec<u8> {
        self.spki.clone()
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

/// Ed25519 note verifier (type 0x01).
#[derive(Debug, Clone)]
pub struct Ed25519NoteVerifier {
    name: String,
    key_id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl Ed25519NoteVerifier {
    /// From a key name and a raw 32-byte public key.
    pub fn new(name: &str, key: ed25519_dalek::VerifyingKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key_id = key_id(name, &ed25519_type_and_key(&key));
        Ok(Self {
            name: name.to_string(),
            key_id,
            key,
        })
    }

    /// From a vkey string of type 0x01.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let vk = VerifierKey::parse(vkey)?;
        let [ALG_ED25519, raw @ ..] = vk.type_and_key.as_slice() else {
            return Err(NoteError::UnsupportedKey);
        };
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| NoteError::MalformedKey("Ed25519 key must be 32 bytes"))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .map_err(|_| NoteError::MalformedKey("invalid Ed25519 key"))?;
        Ok(Self {
            name: vk.name,
            key_id: vk.key_id,
            key,
        })
    }
}

impl NoteVerifier for Ed25519NoteVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

/// ECDSA P-256 note verifier (0x02 convention; DER signature over SHA-256).
#[derive(Debug, Clone)]
pub struct EcdsaP256NoteVerifier {
    name: String,
    key_id: u32,
    key: p256::ecdsa::VerifyingKey,
}

impl EcdsaP256NoteVerifier {
    /// From a key name and a DER SPKI public key.
    pub fn from_spki_der(name: &str, der: &[u8]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(der)
            .map_err(|_| NoteError::MalformedKey("not a P-256 SPKI"))?;
        let key_id = key_id_from_hash(&Sha256::digest(der).into());
        Ok(Self {
            name: name.to_string(),
            key_id,
            key,
        })
    }
}

impl NoteVerifier for EcdsaP256NoteVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = p256::ecdsa::Signature::from_der(sig) else {
            return false;
        };
        self.key.verify(msg, &sig).is_ok()
    }
}

/// RSA PKCS#1 v1.5 (SHA-256) note verifier (type 0xFF ‖ "PKIX-RSA-PKCS#1v1.5").
#[derive(Debug, Clone)]
pub struct RsaNoteVerifier {
    name: String,
    key_id: u32,
    key: rsa::pkcs1v15::VerifyingKey<Sha256>,
}

impl RsaNoteVerifier {
    /// From a key name and a DER SPKI public key.
    pub fn from_spki_der(name: &str, der: &[u8]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let pk = rsa::RsaPublicKey::from_public_key_der(der)
            .map_err(|_| NoteError::MalformedKey("not an RSA SPKI"))?;
        let key_id = key_id(name, &rsa_type_and_key(der));
        Ok(Self {
            name: name.to_string(),
            key_id,
            key: rsa::pkcs1v15::VerifyingKey::new(pk),
        })
    }
}

impl NoteVerifier for RsaNoteVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = rsa::pkcs1v15::Signature::try_from(sig) else {
            return false;
        };
        self.key.verify(msg, &sig).is_ok()
    }
}

/// A note verifier for a checkpoint key given as DER SPKI (Ed25519, P-256 or RSA).
pub fn verifier_from_spki_der(name: &str, der: &[u8]) -> Result<Box<dyn NoteVerifier>, NoteError> {
    match spki_algorithm(der)? {
        SpkiAlgorithm::Ed25519(raw) => {
            let key = ed25519_dalek::VerifyingKey::from_bytes(&raw)
                .map_err(|_| NoteError::MalformedKey("invalid Ed25519 key"))?;
            Ok(Box::new(Ed25519NoteVerifier::new(name, key)?))
        }
        SpkiAlgorithm::Ecdsa => Ok(Box::new(EcdsaP256NoteVerifier::from_spki_der(name, der)?)),
        SpkiAlgorithm::Rsa => Ok(Box::new(RsaNoteVerifier::from_spki_der(name, der)?)),
    }
}
