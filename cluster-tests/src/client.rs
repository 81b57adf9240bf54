//! A small Rekor v2 client for tests: builds signed hashedrekord requests, posts them, reads
//! checkpoints and tiles, and checks what comes back.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// Makes valid, distinct hashedrekord v0.0.2 requests signed by one P-256 key.
pub struct EntryFactory {
    key: SigningKey,
    spki_der: Vec<u8>,
}

impl Default for EntryFactory {
    fn default() -> Self {
        Self::new()
    }
}

impl EntryFactory {
    pub fn new() -> Self {
        let key = SigningKey::random(&mut OsRng);
        let spki_der = key
            .verifying_key()
            .to_public_key_der()
            .map(|der| der.as_bytes().to_vec())
            .unwrap_or_default();
        Self { key, spki_der }
    }

    /// A request for a fresh random artifact.
    pub fn request(&self) -> serde_json::Value {
        let mut artifact = [0u8; 32];
        OsRng.fill_bytes(&mut artifact);
        self.request_for(&artifact)
    }

    /// A request over the SHA-256 digest of `artifact`.
    pub fn request_for(&self, artifact: &[u8]) -> serde_json::Value {
        let digest = Sha256::digest(artifact);
        let signature: Signature = self
            .key
            .sign_prehash(&digest)
            .unwrap_or_else(|error| panic!("signing a digest: {error}"));
        serde_json::json!({
            "hashedRekordRequestV002": {
                "digest": STANDARD.encode(digest),
                "signature": {
                    "content": STANDARD.encode(signature.to_der().as_bytes()),
                    "verifier": {
                        "publicKey": {"rawBytes": STANDARD.encode(&self.spki_der)},
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256"
                    }
                }
            }
        })
    }
}

/// The answer to a POST.
#[derive(Debug)]
pub struct SubmitResult {
    pub status: u16,
    pub body: String,
    pub log_index_header: Option<u64>,
}

impl SubmitResult {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }
}

/// HTTP access to one node's public listener.
#[derive(Clone)]
pub struct LogClient {
    base: String,
    http: reqwest::Client,
}

impl LogClient {
    pub fn new(base: &str) -> Self {
        Self::with_roots(base, None)
    }

    /// A client of an HTTPS listener whose certificate chains to the CA in `ca` (PEM) and to
    /// nothing else; `None`: the platform's roots.
    pub fn with_roots(base: &str, ca: Option<&std::path::Path>) -> Self {
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(60));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca)
                .unwrap_or_else(|error| panic!("reading {}: {error}", ca.display()));
            let root = reqwest::Certificate::from_pem(&pem)
                .unwrap_or_else(|error| panic!("parsing {}: {error}", ca.display()));
            http = http.tls_certs_only([root]);
        }
        let http = http
            .build()
            .unwrap_or_else(|error| panic!("building an HTTP client: {error}"));
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The node's Prometheus exposition (`/metrics`).
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// The `/livez` body of a 2xx answer (who answers: `nodeId`, `startToken`).
    pub async fn liveness(&self) -> Result<serde_json::Value> {
        let response = self
            .http
            .get(format!("{}/livez", self.base))
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json().await?)
    }

    /// The readiness answer: `/healthz`'s status code and JSON body (200 ready, 503 not).
    pub async fn readiness(&self) -> Result<(u16, serde_json::Value)> {
        let response = self
            .http
            .get(format!("{}/healthz", self.base))
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    pub async fn submit(&self, request: &serde_json::Value) -> Result<SubmitResult> {
        let response = self
            .http
            .post(format!("{}/api/v2/log/entries", self.base))
            .json(request)
            .send()
            .await?;
        let status = response.status().as_u16();
        let log_index_header = response
            .headers()
            .get("x-log-index")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        let body = response.text().await?;
        Ok(SubmitResult {
            status,
            body,
            log_index_header,
        })
    }

    /// The served checkpoint text, if any (404 → None).
    pub async fn checkpoint(&self) -> Result<Option<String>> {
        let response = self
            .http
            .get(format!("{}/api/v2/checkpoint", self.base))
            .send()
            .await?;
        match response.status().as_u16() {
            200 => Ok(Some(response.text().await?)),
            404 => Ok(None),
            status => bail!("checkpoint: HTTP {status}"),
        }
    }

    /// A tile or bundle by its path under `/api/v2/` (e.g. `tile/0/000.p/5`); 404 → None.
    pub async fn get(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let response = self
            .http
            .get(format!("{}/api/v2/{path}", self.base))
            .send()
            .await?;
        match response.status().as_u16() {
            200 => Ok(Some(response.bytes().await?.to_vec())),
            404 => Ok(None),
            status => bail!("{path}: HTTP {status}"),
        }
    }
}

/// Checks a 201 TransparencyLogEntry: the inclusion proof of its canonical body against its root,
/// and that the checkpoint commits to the same size and root. Returns (log index, tree size).
pub fn check_logged_entry(entry: &serde_json::Value) -> Result<(u64, u64)> {
    let decode = |value: &serde_json::Value| -> Result<Vec<u8>> {
        Ok(STANDARD.decode(value.as_str().context("expected a base64 string")?)?)
    };
    let hash = |value: &serde_json::Value| -> Result<[u8; 32]> {
        decode(value)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("hash is not 32 bytes"))
    };
    let index: u64 = entry["logIndex"].as_str().context("logIndex")?.parse()?;
    let proof = &entry["inclusionProof"];
    let size: u64 = proof["treeSize"].as_str().context("treeSize")?.parse()?;
    let proof_index: u64 = proof["logIndex"]
        .as_str()
        .context("proof logIndex")?
        .parse()?;
    if proof_index != index {
        bail!("inclusionProof.logIndex {proof_index} != logIndex {index}");
    }
    let root = hash(&proof["rootHash"])?;
    let hashes = proof["hashes"]
        .as_array()
        .context("hashes")?
        .iter()
        .map(hash)
        .collect::<Result<Vec<_>>>()?;
    let body = decode(&entry["canonicalizedBody"])?;
    let leaf = rekor_storage::merkle::leaf_hash(&body);
    rekor_storage::merkle::verify_inclusion(index, size, &leaf, &hashes, &root)
        .map_err(|error| anyhow::anyhow!("inclusion proof does not verify: {error}"))?;
    let envelope = proof["checkpoint"]["envelope"]
        .as_str()
        .context("checkpoint envelope")?;
    let mut lines = envelope.lines();
    let _origin = lines.next().context("checkpoint origin")?;
    let checkpoint_size: u64 = lines.next().context("checkpoint size")?.parse()?;
    let checkpoint_root = STANDARD.decode(lines.next().context("checkpoint root")?)?;
    if checkpoint_size != size || checkpoint_root != root {
        bail!("checkpoint ({checkpoint_size}) does not match the proof's size {size} and root");
    }
    Ok((index, size))
}
