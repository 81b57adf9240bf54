//! Key files: PEM PKCS#8 Ed25519 or ECDSA P-256 (SEC1 too for P-256), optionally encrypted
//! (`ENCRYPTED PRIVATE KEY`, PBES2) with the password read from a file.
//!
//! With a key file every node that may lead holds the private key: compromising any one node's
//! disk compromises the log. Remote backends exist so that this is not necessary.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePublicKey};
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};

use crate::backend::{KeyBackend, SignFuture};
use crate::SignerError;

/// A private key read from a file.
pub enum FileKey {
    Ed25519(ed25519_dalek::SigningKey),
    EcdsaP256(p256::ecdsa::SigningKey),
}

/// The key-file backend.
pub struct FileBackend {
    path: PathBuf,
    key: FileKey,
    spki: Vec<u8>,
}

impl FileBackend {
    /// Reads `path`; an encrypted key needs `password` (the password file's contents, without a
    /// trailing newline).
    pub fn open(path: &Path, password: Option<&[u8]>) -> Result<Self, SignerError> {
        let pem = std::fs::read_to_string(path).map_err(|error| {
            SignerError::Config(format!("reading key file {}: {error}", path.display()))
        })?;
        let key = parse_pem(&pem, password).map_err(|reason| {
            SignerError::Config(format!("key file {}: {reason}", path.display()))
        })?;
        Ok(Self::from_key(path.to_path_buf(), key))
    }

    /// A backend for a key already in memory (`path` is only for messages).
    pub fn from_key(path: PathBuf, key: FileKey) -> Self {
        let spki = match &key {
            FileKey::Ed25519(key) => key.verifying_key().to_public_key_der(),
            FileKey::EcdsaP256(key) => key.verifying_key().to_public_key_der(),
        }
        .map(|der| der.into_vec())
        .unwrap_or_default();
        Self { path, key, spki }
    }
}

/// Parses a PEM private key: plain PKCS#8 (Ed25519 or P-256), SEC1 P-256, or encrypted PKCS#8.
pub fn parse_pem(pem: &str, password: Option<&[u8]>) -> Result<FileKey, String> {
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let password = password
            .ok_or("the key is encrypted: give its password file (--signing-key-password-file)")?;
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_encrypted_pem(pem, password) {
            return Ok(FileKey::Ed25519(key));
        }
        return p256::SecretKey::from_pkcs8_encrypted_pem(pem, password)
            .map(|key| FileKey::EcdsaP256(key.into()))
            .map_err(|_| {
                "cannot decrypt it: wrong password, or not an Ed25519 or ECDSA P-256 key".to_owned()
            });
    }
    if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
        return Ok(FileKey::Ed25519(key));
    }
    if let Ok(key) = p256::SecretKey::from_pkcs8_pem(pem) {
        return Ok(FileKey::EcdsaP256(key.into()));
    }
    if let Ok(key) = p256::SecretKey::from_sec1_pem(pem) {
        return Ok(FileKey::EcdsaP256(key.into()));
    }
    Err("not a PEM PKCS#8 Ed25519 or ECDSA P-256 private key".into())
}

/// Reads a password file: its contents up to the first line break (a file written by `echo`
/// ends in one).
pub fn read_password_file(path: &Path) -> Result<Vec<u8>, SignerError> {
    let contents = std::fs::read(path).map_err(|error| {
        SignerError::Config(format!("reading password file {}: {error}", path.display()))
    })?;
    let end = contents
        .iter()
        .position(|&byte| byte == b'\n' || byte == b'\r')
        .unwrap_or(contents.len());
    Ok(contents[..end].to_vec())
}

impl KeyBackend for FileBackend {
    fn describe(&self) -> String {
        format!("key file {}", self.path.display())
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign<'a>(&'a self, text: &'a [u8]) -> SignFuture<'a> {
        let signature = match &self.key {
            FileKey::Ed25519(key) => key.sign(text).to_bytes().to_vec(),
            FileKey::EcdsaP256(key) => {
                let digest = Sha256::digest(text);
                match p256::ecdsa::signature::hazmat::PrehashSigner::<p256::ecdsa::Signature>::sign_prehash(key, &digest) {
                    Ok(signature) => signature.to_der().as_bytes().to_vec(),
                    Err(error) => {
                        return Box::pin(std::future::ready(Err(SignerError::Unavailable(
                            format!("ECDSA signing: {error}"),
                        ))))
                    }
                }
            }
        };
        Box::pin(std::future::ready(Ok(signature)))
    }
}
