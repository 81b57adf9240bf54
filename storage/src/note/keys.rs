//! Key names, key hashes and key IDs, and the two key strings: verifier keys
//! (`<name>+<hex key ID>+<base64(type ‖ key)>`) and Go-ecosystem signer keys
//! (`PRIVATE+KEY+<name>+<hex key ID>+<base64(type ‖ seed)>`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{NoteError, ALG_ECDSA};

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

/// The type byte `alg` followed by `key`, as key strings and key hashes carry a key.
pub(crate) fn type_and_key(alg: u8, key: &[u8]) -> Vec<u8> {
    let mut tk = Vec::with_capacity(1 + key.len());
    tk.push(alg);
    tk.extend_from_slice(key);
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
        let (name, key_id, type_and_key) = parse_key_parts(vkey, "vkey needs name+id+key")?;
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
        let (name, key_id, raw) = parse_key_parts(rest, "signer key needs name+id+key")?;
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

/// The parts both key strings share, `<name>+<hex key ID>+<base64(type ‖ key)>`, checked: a
/// valid name, 8 hex digits, base64 of at least the type byte. `missing` is the error when
/// there are fewer than three parts.
fn parse_key_parts<'a>(
    text: &'a str,
    missing: &'static str,
) -> Result<(&'a str, u32, Vec<u8>), NoteError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::MalformedKey(missing));
    };
    check_key_name(name)?;
    let key_id = parse_key_id(id_hex)?;
    let type_and_key = B64
        .decode(b64)
        .map_err(|_| NoteError::MalformedKey("key is not base64"))?;
    if type_and_key.is_empty() {
        return Err(NoteError::MalformedKey("empty key"));
    }
    Ok((name, key_id, type_and_key))
}

fn parse_key_id(id_hex: &str) -> Result<u32, NoteError> {
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::MalformedKey("key ID must be 8 hex digits"));
    }
    u32::from_str_radix(id_hex, 16).map_err(|_| NoteError::MalformedKey("key ID"))
}
