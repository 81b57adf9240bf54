//! Shared test support: keys from `testdata/rekor-tiles/vectors.json`, request builders,
//! and an in-process log mounted on the API.
#![allow(dead_code)]

use std::sync::Arc;

use base64::Engine as _;
use rekor_api::memory_log::MemoryLog;
use rekor_api::{ApiConfig, ApiState};
use rekor_storage::note::{EcdsaP256NoteSigner, Ed25519NoteSigner, NoteSigner};
use serde_json::{json, Value};

/// The workspace's `testdata/` folder (sources and licences in its README).
pub fn testdata_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata"))
}

/// A file of `testdata/` as text.
pub fn testdata(rel: &str) -> String {
    let full = testdata_dir().join(rel);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

pub fn vectors() -> Value {
    serde_json::from_str(&testdata("rekor-tiles/vectors.json")).unwrap()
}

pub fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

pub fn b64e(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The DER inside a PEM block.
pub fn pem_der(pem: &str) -> Vec<u8> {
    b64(&pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>())
}

/// The upstream Ed25519 test key as the log key, origin `rekor-local` (§15.3, §15.4).
pub fn upstream_ed25519_signer() -> Box<dyn NoteSigner> {
    let pem = vectors()["keys"]["ed25519"]["private_key_pem"]
        .as_str()
        .unwrap()
        .to_owned();
    Box::new(Ed25519NoteSigner::from_pkcs8_pem("rekor-local", &pem).unwrap())
}

/// The upstream P-256 test key as the log key.
pub fn upstream_p256_signer(origin: &str) -> Box<dyn NoteSigner> {
    let pem = vectors()["keys"]["ecdsa_p256"]["private_key_pem"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = p256::ecdsa::SigningKey::from(p256::SecretKey::from_sec1_pem(&pem).unwrap());
    Box::new(EcdsaP256NoteSigner::new(origin, key).unwrap())
}

/// A fresh in-process log and the API state over it.
pub async fn log_and_state(
    signer: Box<dyn NoteSigner>,
    config: ApiConfig,
) -> (Arc<MemoryLog>, ApiState) {
    let log = Arc::new(MemoryLog::new(signer).await.unwrap());
    let config = ApiConfig {
        log_id: log.log_id(),
        ..config
    };
    let registry = prometheus::Registry::new();
    let state = ApiState::new(config, log.clone(), &registry).unwrap();
    (log, state)
}

/// The upstream hashedrekord case "valid hashedrekord" (P-256 public key).
pub fn upstream_valid_request() -> Value {
    vectors()["hashedrekord"]["to_log_entry_cases"][0]["request_protojson"].clone()
}

/// The upstream hashedrekord case "valid hashedrekord with X.509 cert".
pub fn upstream_valid_cert_request() -> Value {
    vectors()["hashedrekord"]["to_log_entry_cases"][6]["request_protojson"].clone()
}

/// A fresh P-256 signer that can produce any number of distinct valid requests.
pub struct P256Client {
    pub key: p256::ecdsa::SigningKey,
    pub spki: Vec<u8>,
}

impl P256Client {
    pub fn new() -> Self {
        use p256::pkcs8::EncodePublicKey as _;
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let spki = key.verifying_key().to_public_key_der().unwrap().into_vec();
        P256Client { key, spki }
    }

    /// A hashedrekord request over SHA-256(`artifact`), `publicKey` verifier, DER signature.
    pub fn request(&self, artifact: &[u8]) -> Value {
        use sha2::Digest as _;
        use signature::hazmat::PrehashSigner as _;
        let digest = sha2::Sha256::digest(artifact);
        let signature: p256::ecdsa::Signature = self.key.sign_prehash(&digest).unwrap();
        json!({"hashedRekordRequestV002": {
            "digest": b64e(&digest),
            "signature": {
                "content": b64e(signature.to_der().as_bytes()),
                "verifier": {"publicKey": {"rawBytes": b64e(&self.spki)}, "keyDetails": "PKIX_ECDSA_P256_SHA_256"}
            }
        }})
    }
}
