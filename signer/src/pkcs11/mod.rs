//! PKCS#11 tokens (an HSM, a smart card, SoftHSM): the key never leaves the token; the node
//! holds one logged-in session and asks the token for each checkpoint signature.
//!
//! The key URI is RFC 7512 ([`uri`]): `token`, `object`, `id` and `slot-id` pick the token and
//! the key pair; `module-path` (or `REKOR_PKCS11_MODULE`) is the module to load; `pin-source`
//! (a file, read again whenever a session logs in) or `pin-value` is the user PIN. Opening the
//! backend loads the module, logs in, finds both halves of the key pair and reads the public
//! key, so the first signature is one call to the token.
//!
//! PKCS#11 calls block, so they run on tokio's blocking pool, one at a time per backend (a
//! session is not to be shared between threads). A session that is lost (the token removed,
//! the module restarted, the login gone) makes that signature `Unavailable` and is opened
//! again, with a fresh login, on the next one.

mod spki;
mod token;
pub mod uri;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, TryLockError};

use sha2::{Digest, Sha256};

use crate::backend::{KeyBackend, SignFuture};
use crate::{ecdsa_p256_fixed_to_der, KeyAlgorithm, OpenOptions, SignerError};
use token::{SignMechanism, Token};
pub use uri::{Pin, Pkcs11Uri};

/// The environment variable naming the module when the URI has no `module-path`.
pub const MODULE_ENV: &str = "REKOR_PKCS11_MODULE";

/// Opens the key `uri` names.
pub async fn open(uri: &str, options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, SignerError> {
    let parsed = Pkcs11Uri::parse(uri)?;
    let module_path = module_path(&parsed, std::env::var_os(MODULE_ENV))?;
    let describe = parsed.redacted.clone();
    let opening = tokio::task::spawn_blocking(move || {
        let context = token::module(&module_path)?;
        Token::open(context, parsed)
    });
    let (token, public) = match tokio::time::timeout(options.request_timeout, opening).await {
        Err(_) => return Err(SignerError::Timeout(options.request_timeout)),
        Ok(joined) => joined.map_err(|error| {
            SignerError::Unavailable(format!("opening the PKCS#11 token: {error}"))
        })??,
    };
    Ok(Arc::new(Pkcs11Backend {
        describe,
        algorithm: public.algorithm,
        spki: public.spki,
        token: Arc::new(Mutex::new(token)),
    }))
}

/// The module to load: the URI's `module-path`, else `from_env` (`$REKOR_PKCS11_MODULE`).
fn module_path(uri: &Pkcs11Uri, from_env: Option<OsString>) -> Result<PathBuf, SignerError> {
    if let Some(path) = &uri.module_path {
        return Ok(path.clone());
    }
    match from_env {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(SignerError::InvalidUri {
            uri: uri.redacted.clone(),
            reason: format!("no module-path, and {MODULE_ENV} is not set"),
        }),
    }
}

/// A key pair in a PKCS#11 token.
struct Pkcs11Backend {
    describe: String,
    algorithm: KeyAlgorithm,
    spki: Vec<u8>,
    token: Arc<Mutex<Token>>,
}

impl KeyBackend for Pkcs11Backend {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign<'a>(&'a self, text: &'a [u8]) -> SignFuture<'a> {
        let algorithm = self.algorithm;
        let (mechanism, data) = match algorithm {
            KeyAlgorithm::EcdsaP256 => (SignMechanism::Ecdsa, Sha256::digest(text).to_vec()),
            KeyAlgorithm::Ed25519 => (SignMechanism::Eddsa, text.to_vec()),
        };
        let token = Arc::clone(&self.token);
        Box::pin(async move {
            let signature = tokio::task::spawn_blocking(move || {
                // A call that has not returned (its attempt timed out) still holds the session:
                // say so rather than queue behind it.
                let mut token = match token.try_lock() {
                    Ok(token) => token,
                    Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                    Err(TryLockError::WouldBlock) => {
                        return Err(SignerError::Unavailable(
                            "the token is still busy with an earlier call".into(),
                        ))
                    }
                };
                token.sign(mechanism, &data)
            })
            .await
            .map_err(|error| {
                SignerError::Unavailable(format!("PKCS#11 signing task: {error}"))
            })??;
            match algorithm {
                KeyAlgorithm::EcdsaP256 => ecdsa_p256_fixed_to_der(&signature),
                KeyAlgorithm::Ed25519 if signature.len() == 64 => Ok(signature),
                KeyAlgorithm::Ed25519 => Err(SignerError::Unavailable(format!(
                    "the token returned a {}-byte Ed25519 signature",
                    signature.len()
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_is_the_uris_or_the_environments() {
        let with = Pkcs11Uri::parse("pkcs11:object=k?module-path=/uri.so").unwrap();
        let without = Pkcs11Uri::parse("pkcs11:object=k").unwrap();
        assert_eq!(
            module_path(&with, Some("/env.so".into())).unwrap(),
            PathBuf::from("/uri.so")
        );
        assert_eq!(
            module_path(&without, Some("/env.so".into())).unwrap(),
            PathBuf::from("/env.so")
        );
        for unset in [None, Some(OsString::new())] {
            let error = module_path(&without, unset).unwrap_err();
            assert!(error.to_string().contains(MODULE_ENV), "{error}");
        }
    }
}
