//! Ed25519 note keys (signed-note type 0x01): key hash SHA-256(name ‖ `\n` ‖ 0x01 ‖ key),
//! 64-byte signatures of the note text, verified strictly; Go-ecosystem signer keys and vkeys.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{SigningKey, VerifyingKey};
use signature::Signer;

use super::keys::{self, check_key_name, key_id_from_hash, NotePrivateKey, VerifierKey};
use super::{
    NoteError, NoteKeySigner, NoteKeyVerifier, NotePublicKey, NoteSigner, NoteSigningKey,
    ALG_ED25519,
};

/// An Ed25519 note signer (type 0x01).
pub type Ed25519NoteSigner = NoteKeySigner<SigningKey>;

/// Ed25519 note verifier (type 0x01).
pub type Ed25519NoteVerifier = NoteKeyVerifier<VerifyingKey>;

/// The key hash of the Ed25519 key `key` (32 raw bytes) named `name`.
pub(super) fn key_hash(name: &str, key: &[u8; 32]) -> [u8; 32] {
    keys::key_hash(name, &keys::type_and_key(ALG_ED25519, key))
}

/// An Ed25519 public key from its 32 raw bytes.
pub(crate) fn public_key(raw: &[u8]) -> Result<VerifyingKey, NoteError> {
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|_| NoteError::MalformedKey("Ed25519 key must be 32 bytes"))?;
    VerifyingKey::from_bytes(&raw).map_err(|_| NoteError::MalformedKey("invalid Ed25519 key"))
}

impl NoteSigningKey for SigningKey {
    type Public = VerifyingKey;
    fn public_key(&self) -> VerifyingKey {
        self.verifying_key()
    }
    fn sign_note(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError> {
        Ok(self.sign(msg).to_bytes().to_vec())
    }
}

impl NotePublicKey for VerifyingKey {
    fn verify_note(&self, msg: &[u8], sig: &[u8]) -> bool {
        ed25519_dalek::Signature::from_slice(sig)
            .is_ok_and(|sig| self.verify_strict(msg, &sig).is_ok())
    }
}

impl Ed25519NoteSigner {
    /// A fresh random key.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        Self::new(name, SigningKey::generate(&mut rand_core::OsRng))
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`.
    pub fn from_note_key(skey: &str) -> Result<Self, NoteError> {
        let parsed = NotePrivateKey::parse(skey)?;
        if parsed.alg != ALG_ED25519 {
            return Err(NoteError::UnsupportedKey);
        }
        let signer = Self::new(&parsed.name, SigningKey::from_bytes(&parsed.seed))?;
        if signer.key_id() != parsed.key_id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(signer)
    }

    /// Formats as `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`.
    pub fn to_note_key(&self) -> String {
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id(),
            B64.encode(keys::type_and_key(ALG_ED25519, &self.key.to_bytes()))
        )
    }

    /// Loads a PKCS#8 PEM private key.
    pub fn from_pkcs8_pem(name: &str, pem: &str) -> Result<Self, NoteError> {
        let key = SigningKey::from_pkcs8_pem(pem)
            .map_err(|_| NoteError::MalformedKey("not an Ed25519 PKCS#8 PEM key"))?;
        Self::new(name, key)
    }

    /// The verifier key string for this signer.
    pub fn verifier_key(&self) -> String {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id(),
            type_and_key: keys::type_and_key(ALG_ED25519, self.key.verifying_key().as_bytes()),
        }
        .to_vkey()
    }

    /// The underlying key (for cosignatures with the same key material).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl Ed25519NoteVerifier {
    /// From a key name and a raw 32-byte public key.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key_id = key_id_from_hash(&key_hash(name, key.as_bytes()));
        Ok(Self::from_parts(name.to_string(), key_id, key))
    }

    /// From a vkey string of type 0x01.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let vk = VerifierKey::parse(vkey)?;
        let [ALG_ED25519, raw @ ..] = vk.type_and_key.as_slice() else {
            return Err(NoteError::UnsupportedKey);
        };
        let key = public_key(raw)?;
        Ok(Self::from_parts(vk.name, vk.key_id, key))
    }
}
