//! ECDSA P-256 note keys (the transparency-dev 0x02 convention): key hash = SHA-256 of the DER
//! SubjectPublicKeyInfo (the key name not included), ASN.1 DER signatures over SHA-256 of the
//! note text.

use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::DecodePrivateKey;
use sha2::{Digest, Sha256};
use signature::{Signer, Verifier};
use spki::DecodePublicKey;

use super::keys::{check_key_name, key_id_from_hash};
use super::{NoteError, NoteKeySigner, NoteKeyVerifier, NotePublicKey, NoteSigningKey};

/// An ECDSA P-256 note signer (transparency-dev 0x02 convention).
pub type EcdsaP256NoteSigner = NoteKeySigner<SigningKey>;

/// ECDSA P-256 note verifier (0x02 convention; DER signature over SHA-256).
pub type EcdsaP256NoteVerifier = NoteKeyVerifier<VerifyingKey>;

/// The key hash of an ECDSA key (of any curve) given as DER SPKI.
pub(super) fn key_hash(spki_der: &[u8]) -> [u8; 32] {
    Sha256::digest(spki_der).into()
}

impl NoteSigningKey for SigningKey {
    type Public = VerifyingKey;
    fn public_key(&self) -> VerifyingKey {
        *self.verifying_key()
    }
    fn sign_note(&self, msg: &[u8]) -> Result<Vec<u8>, NoteError> {
        // `Signer` on p256 hashes with SHA-256 and signs deterministically (RFC 6979).
        let sig: Signature = self.try_sign(msg).map_err(|_| NoteError::SigningFailed)?;
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

impl NotePublicKey for VerifyingKey {
    fn verify_note(&self, msg: &[u8], sig: &[u8]) -> bool {
        Signature::from_der(sig).is_ok_and(|sig| self.verify(msg, &sig).is_ok())
    }
}

impl EcdsaP256NoteSigner {
    /// A fresh random key.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        Self::new(name, SigningKey::random(&mut rand_core::OsRng))
    }

    /// Loads a PEM private key: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
    pub fn from_pem(name: &str, pem: &str) -> Result<Self, NoteError> {
        let key = match SigningKey::from_pkcs8_pem(pem) {
            Ok(k) => k,
            Err(_) => p256::SecretKey::from_sec1_pem(pem)
                .map(SigningKey::from)
                .map_err(|_| NoteError::MalformedKey("not a P-256 PKCS#8 or SEC1 PEM key"))?,
        };
        Self::new(name, key)
    }
}

impl EcdsaP256NoteVerifier {
    /// From a key name and a DER SPKI public key.
    pub fn from_spki_der(name: &str, der: &[u8]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key = VerifyingKey::from_public_key_der(der)
            .map_err(|_| NoteError::MalformedKey("not a P-256 SPKI"))?;
        Ok(Self::from_parts(
            name.to_string(),
            key_id_from_hash(&key_hash(der)),
            key,
        ))
    }
}
