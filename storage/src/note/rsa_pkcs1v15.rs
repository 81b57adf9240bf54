//! RSA PKCS#1 v1.5 (SHA-256) note keys, verified only: type 0xFF ‖ "PKIX-RSA-PKCS#1v1.5" ‖ DER
//! SubjectPublicKeyInfo, as rekor-tiles signs with them.

use rsa::pkcs1v15::{Signature, VerifyingKey};
use sha2::Sha256;
use signature::Verifier;
use spki::DecodePublicKey;

use super::keys::{self, check_key_name, key_id_from_hash};
use super::{NoteError, NoteKeyVerifier, NotePublicKey, ALG_UNASSIGNED, RSA_PKCS1V15_ID};

/// RSA PKCS#1 v1.5 (SHA-256) note verifier (type 0xFF ‖ "PKIX-RSA-PKCS#1v1.5").
pub type RsaNoteVerifier = NoteKeyVerifier<VerifyingKey<Sha256>>;

/// The key hash of the RSA key given as DER SPKI and named `name`.
pub(super) fn key_hash(name: &str, spki_der: &[u8]) -> [u8; 32] {
    let key = [RSA_PKCS1V15_ID, spki_der].concat();
    keys::key_hash(name, &keys::type_and_key(ALG_UNASSIGNED, &key))
}

impl NotePublicKey for VerifyingKey<Sha256> {
    fn verify_note(&self, msg: &[u8], sig: &[u8]) -> bool {
        Signature::try_from(sig).is_ok_and(|sig| self.verify(msg, &sig).is_ok())
    }
}

impl RsaNoteVerifier {
    /// From a key name and a DER SPKI public key.
    pub fn from_spki_der(name: &str, der: &[u8]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key = rsa::RsaPublicKey::from_public_key_der(der)
            .map_err(|_| NoteError::MalformedKey("not an RSA SPKI"))?;
        Ok(Self::from_parts(
            name.to_string(),
            key_id_from_hash(&key_hash(name, der)),
            VerifyingKey::new(key),
        ))
    }
}
