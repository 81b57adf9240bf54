//! C2SP tlog-cosignature `cosignature/v1` (signed-note key type 0x04): timestamped
//! Ed25519 cosignatures over a checkpoint body, as produced by witnesses
//! (tlog-tiles.md §9, rekor-v2-api.md §9).
//!
//! The signed message is `cosignature/v1\ntime <seconds>\n` followed by the whole
//! checkpoint text; the signature line payload is the 8-byte big-endian timestamp
//! followed by the 64-byte Ed25519 signature.

use crate::note::{
    self, ed25519_public_key, type_and_key, NoteError, NoteKeyVerifier, NotePrivateKey,
    NotePublicKey, NoteSignature, NoteVerifier, VerifierKey, ALG_COSIGNATURE_V1, ALG_ED25519,
};
use signature::Signer;

/// tlog-cosignature: timestamps must be ≤ 2^63 − 1.
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// The message a `cosignature/v1` signature covers.
pub fn cosignature_message(timestamp: u64, checkpoint_text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}").into_bytes()
}

fn cosigner_key_id(name: &str, key: &ed25519_dalek::VerifyingKey) -> u32 {
    note::key_id(name, &type_and_key(ALG_COSIGNATURE_V1, key.as_bytes()))
}

/// Verifies `cosignature/v1` lines for one witness key. As a [`NoteVerifier`] it
/// takes the line payload (timestamp ‖ signature) and the checkpoint text.
pub type CosignatureVerifier = NoteKeyVerifier<CosignerKey>;

/// A witness's Ed25519 key, as what checks `cosignature/v1` payloads.
#[derive(Debug, Clone)]
pub struct CosignerKey(ed25519_dalek::VerifyingKey);

impl CosignerKey {
    /// The timestamp of `payload` (timestamp ‖ signature) if it is a valid cosignature of
    /// `checkpoint_text` by this key.
    fn verify_cosignature(&self, checkpoint_text: &str, payload: &[u8]) -> Option<u64> {
        let (ts, s) = split_payload(payload)?;
        let s = ed25519_dalek::Signature::from_slice(s).ok()?;
        self.0
            .verify_strict(&cosignature_message(ts, checkpoint_text), &s)
            .ok()?;
        Some(ts)
    }
}

impl NotePublicKey for CosignerKey {
    fn verify_note(&self, msg: &[u8], sig: &[u8]) -> bool {
        std::str::from_utf8(msg)
            .ok()
            .and_then(|text| self.verify_cosignature(text, sig))
            .is_some()
    }
}

impl CosignatureVerifier {
    /// From a witness vkey of type 0x04, or 0x01 (an Ed25519 key used as a
    /// cosigner key; the line's key ID is still computed with type 0x04).
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let vk = VerifierKey::parse(vkey)?;
        let [alg, raw @ ..] = vk.type_and_key.as_slice() else {
            return Err(NoteError::MalformedKey("empty key"));
        };
        if *alg != ALG_COSIGNATURE_V1 && *alg != ALG_ED25519 {
            return Err(NoteError::UnsupportedKey);
        }
        let key = ed25519_public_key(raw)?;
        let key_id = cosigner_key_id(&vk.name, &key);
        Ok(Self::from_parts(vk.name, key_id, CosignerKey(key)))
    }

    /// Verifies one cosignature over `checkpoint_text`, returning its timestamp.
    pub fn verify_signature(
        &self,
        checkpoint_text: &str,
        sig: &NoteSignature,
    ) -> Result<u64, NoteError> {
        let bad = || NoteError::BadSignature {
            name: sig.name.clone(),
        };
        if sig.name != self.name() || sig.key_id != self.key_id() {
            return Err(bad());
        }
        self.key()
            .verify_cosignature(checkpoint_text, &sig.signature)
            .ok_or_else(bad)
    }

    /// Verifies a cosignature line (with or without its trailing newline).
    pub fn verify_line(&self, checkpoint_text: &str, line: &str) -> Result<u64, NoteError> {
        let sig = NoteSignature::parse_line(line.strip_suffix('\n').unwrap_or(line))?;
        self.verify_signature(checkpoint_text, &sig)
    }
}

fn split_payload(payload: &[u8]) -> Option<(u64, &[u8])> {
    if payload.len() != 72 {
        return None;
    }
    let (ts, sig) = payload.split_at(8);
    let ts = u64::from_be_bytes(ts.try_into().ok()?);
    (ts <= MAX_TIMESTAMP).then_some((ts, sig))
}

/// Produces `cosignature/v1` lines with an Ed25519 key.
pub struct CosignatureSigner {
    name: String,
    key_id: u32,
    key: ed25519_dalek::SigningKey,
}

impl CosignatureSigner {
    /// A cosigner named `name` with the given key.
    pub fn new(name: &str, key: ed25519_dalek::SigningKey) -> Result<Self, NoteError> {
        note::check_key_name(name)?;
        Ok(Self {
            key_id: cosigner_key_id(name, &key.verifying_key()),
            name: name.to_string(),
            key,
        })
    }

    /// From `PRIVATE+KEY+<name>+<id>+<base64(type ‖ seed)>` with type 0x01 or 0x04.
    pub fn from_note_key(skey: &str) -> Result<Self, NoteError> {
        let parsed = NotePrivateKey::parse(skey)?;
        let key = ed25519_dalek::SigningKey::from_bytes(&parsed.seed);
        let tk = type_and_key(parsed.alg, key.verifying_key().as_bytes());
        let stated_ok = match parsed.alg {
            ALG_ED25519 | ALG_COSIGNATURE_V1 => note::key_id(&parsed.name, &tk) == parsed.key_id,
            _ => return Err(NoteError::UnsupportedKey),
        };
        if !stated_ok {
            return Err(NoteError::KeyIdMismatch);
        }
        Self::new(&parsed.name, key)
    }

    /// The witness vkey (type 0x04).
    pub fn verifier_key(&self) -> String {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            type_and_key: type_and_key(ALG_COSIGNATURE_V1, self.key.verifying_key().as_bytes()),
        }
        .to_vkey()
    }

    /// Cosigns `checkpoint_text` at `timestamp` (seconds, ≤ 2^63 − 1).
    pub fn cosign(
        &self,
        checkpoint_text: &str,
        timestamp: u64,
    ) -> Result<NoteSignature, NoteError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(NoteError::SigningFailed);
        }
        let sig = self
            .key
            .sign(&cosignature_message(timestamp, checkpoint_text));
        let mut payload = timestamp.to_be_bytes().to_vec();
        payload.extend_from_slice(&sig.to_bytes());
        Ok(NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: payload,
        })
    }
}
