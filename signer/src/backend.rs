//! The one interface every key custody backend implements.

use std::future::Future;
use std::pin::Pin;

use crate::SignerError;

/// The future a backend's `sign` returns.
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, SignerError>> + Send + 'a>>;

/// The checkpoint key types a log can sign with (tlog-tiles: Ed25519 is what C2SP witnesses
/// expect; ECDSA P-256 is what most KMS and HSMs offer everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Ed25519,
    EcdsaP256,
}

impl KeyAlgorithm {
    /// The trusted-root `keyDetails` name of the key type.
    pub fn key_details(self) -> &'static str {
        match self {
            Self::Ed25519 => "PKIX_ED25519",
            Self::EcdsaP256 => "PKIX_ECDSA_P256_SHA_256",
        }
    }

    /// The signed-note type byte of the key type.
    pub fn note_type_byte(self) -> u8 {
        match self {
            Self::Ed25519 => rekor_storage::note::ALG_ED25519,
            Self::EcdsaP256 => rekor_storage::note::ALG_ECDSA,
        }
    }

    /// The key type of a DER SubjectPublicKeyInfo, if it is one a log can sign with.
    pub fn of_spki_der(der: &[u8]) -> Result<Self, SignerError> {
        use p256::pkcs8::DecodePublicKey;
        if ed25519_dalek::VerifyingKey::from_public_key_der(der).is_ok() {
            return Ok(Self::Ed25519);
        }
        if p256::PublicKey::from_public_key_der(der).is_ok() {
            return Ok(Self::EcdsaP256);
        }
        Err(SignerError::UnsupportedKey(
            "the public key is neither Ed25519 nor ECDSA P-256".into(),
        ))
    }
}

/// A key held somewhere (a file, a token, a cloud service) that signs note texts.
///
/// Opening a backend reads its public key (and, for remote services, gets credentials and
/// connections ready), so that the first signature of a leader's term costs one round trip.
/// What a backend returns is checked by [`crate::LogSigner`] against the public key before it
/// is used: a backend may be wrong, never trusted.
pub trait KeyBackend: Send + Sync {
    /// Where the key is, for logs and errors (the key URI without credentials).
    fn describe(&self) -> String;
    /// The public key as DER SubjectPublicKeyInfo, read when the backend was opened.
    fn public_key_der(&self) -> &[u8];
    /// Signs a note's text as signed-note wants it for the key type: Ed25519, the 64-byte
    /// signature of `text`; ECDSA P-256, the DER signature of SHA-256(`text`).
    fn sign<'a>(&'a self, text: &'a [u8]) -> SignFuture<'a>;
}

/// An ECDSA P-256 signature given as the 64-byte `r ‖ s` (JOSE, PKCS#11 `CKM_ECDSA`) in the
/// DER form signed-note uses.
pub fn ecdsa_p256_fixed_to_der(fixed: &[u8]) -> Result<Vec<u8>, SignerError> {
    let signature = p256::ecdsa::Signature::from_slice(fixed).map_err(|_| {
        SignerError::Unavailable(format!(
            "the signer returned a {}-byte ECDSA signature, not 64 bytes r ‖ s",
            fixed.len()
        ))
    })?;
    Ok(signature.to_der().as_bytes().to_vec())
}

/// A PEM `PUBLIC KEY` (SubjectPublicKeyInfo, as cloud KMS and Vault hand public keys out) as DER.
pub fn spki_der_from_pem(pem: &str) -> Result<Vec<u8>, SignerError> {
    let (label, der) = spki::der::pem::decode_vec(pem.trim().as_bytes()).map_err(|error| {
        SignerError::UnsupportedKey(format!("the public key is not PEM: {error}"))
    })?;
    if label != "PUBLIC KEY" {
        return Err(SignerError::UnsupportedKey(format!(
            "the public key is a PEM {label:?}, not a PUBLIC KEY"
        )));
    }
    Ok(der)
}
