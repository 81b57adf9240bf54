//! Pre-signed hashedrekord v0.0.2 requests (rekor-v2-api.md §4, §5).
//!
//! Benchmarks must not spend the measured time signing, so every request body is built and
//! serialised before the clock starts. The pool mimics what a public log receives: mostly
//! ECDSA P-256 (Sigstore's default), some P-384 and RSA-2048, and about half of the verifiers
//! are X.509 certificates (Fulcio-style, with extensions, so bodies have a realistic size)
//! rather than bare public keys. Each request signs a distinct digest, so no two are
//! duplicates and the log never answers from its dedup index.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use der::asn1::{BitString, Ia5String, OctetString, Utf8StringRef};
use der::{Encode, EncodePem};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256, Sha384};
use spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;
use x509_cert::{Certificate, TbsCertificate, Version};

/// The signing algorithm of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum KeyKind {
    /// ECDSA P-256 over SHA-256 (`PKIX_ECDSA_P256_SHA_256`).
    P256,
    /// ECDSA P-384 over SHA-384 (`PKIX_ECDSA_P384_SHA_384`).
    P384,
    /// RSA-2048 PKCS#1 v1.5 over SHA-256 (`PKIX_RSA_PKCS1V15_2048_SHA256`).
    Rsa2048,
}

impl KeyKind {
    fn key_details(self) -> &'static str {
        match self {
            KeyKind::P256 => "PKIX_ECDSA_P256_SHA_256",
            KeyKind::P384 => "PKIX_ECDSA_P384_SHA_384",
            KeyKind::Rsa2048 => "PKIX_RSA_PKCS1V15_2048_SHA256",
        }
    }
}

/// Proportions of the pool, in percent.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RequestMix {
    pub p256_percent: u32,
    pub p384_percent: u32,
    pub rsa2048_percent: u32,
    /// Share of requests whose verifier is a certificate rather than a bare public key.
    pub certificate_percent: u32,
}

impl Default for RequestMix {
    fn default() -> Self {
        Self {
            p256_percent: 85,
            p384_percent: 10,
            rsa2048_percent: 5,
            certificate_percent: 50,
        }
    }
}

impl FromStr for RequestMix {
    type Err = anyhow::Error;

    /// `p256=85,p384=10,rsa=5,cert=50` (any subset; missing key types count 0 once one is given).
    fn from_str(text: &str) -> Result<Self> {
        let mut mix = RequestMix {
            p256_percent: 0,
            p384_percent: 0,
            rsa2048_percent: 0,
            certificate_percent: RequestMix::default().certificate_percent,
        };
        for part in text.split(',').filter(|part| !part.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .with_context(|| format!("mix item {part:?} is not name=percent"))?;
            let value: u32 = value.trim().parse()?;
            match name.trim() {
                "p256" => mix.p256_percent = value,
                "p384" => mix.p384_percent = value,
                "rsa" | "rsa2048" => mix.rsa2048_percent = value,
                "cert" => mix.certificate_percent = value,
                other => bail!("unknown mix item {other:?} (p256, p384, rsa, cert)"),
            }
        }
        mix.validate()?;
        Ok(mix)
    }
}

impl RequestMix {
    fn validate(&self) -> Result<()> {
        if self.p256_percent + self.p384_percent + self.rsa2048_percent == 0 {
            bail!("the mix has no key type");
        }
        if self.certificate_percent > 100 {
            bail!("cert percent above 100");
        }
        Ok(())
    }

    /// The key type and verifier kind of request `index`: a fixed, well-spread pattern so
    /// that any prefix of the pool has the mix's proportions.
    fn pick(&self, index: u64) -> (KeyKind, bool) {
        let total = u64::from(self.p256_percent + self.p384_percent + self.rsa2048_percent);
        // Multiplying by a prime coprime to the total visits every residue evenly.
        let slot = index.wrapping_mul(7919) % total;
        let kind = if slot < u64::from(self.p256_percent) {
            KeyKind::P256
        } else if slot < u64::from(self.p256_percent + self.p384_percent) {
            KeyKind::P384
        } else {
            KeyKind::Rsa2048
        };
        let certificate = index.wrapping_mul(104_729) % 100 < u64::from(self.certificate_percent);
        (kind, certificate)
    }
}

/// A private key of one of the mix's kinds.
enum SigningKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Rsa2048(Box<rsa::RsaPrivateKey>),
}

impl SigningKey {
    fn generate(kind: KeyKind) -> Result<Self> {
        Ok(match kind {
            KeyKind::P256 => SigningKey::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            KeyKind::P384 => SigningKey::P384(p384::ecdsa::SigningKey::random(&mut OsRng)),
            KeyKind::Rsa2048 => {
                SigningKey::Rsa2048(Box::new(rsa::RsaPrivateKey::new(&mut OsRng, 2048)?))
            }
        })
    }

    fn spki_der(&self) -> Result<Vec<u8>> {
        use spki::EncodePublicKey;
        let der = match self {
            SigningKey::P256(key) => key.verifying_key().to_public_key_der()?,
            SigningKey::P384(key) => key.verifying_key().to_public_key_der()?,
            SigningKey::Rsa2048(key) => key.to_public_key().to_public_key_der()?,
        };
        Ok(der.as_bytes().to_vec())
    }

    /// The digest hashedrekord expects for this key type.
    fn digest(&self, artifact: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::P384(_) => Sha384::digest(artifact).to_vec(),
            SigningKey::P256(_) | SigningKey::Rsa2048(_) => Sha256::digest(artifact).to_vec(),
        }
    }

    /// Signs a digest (the hashedrekord signature: the server only ever sees the digest).
    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>> {
        use signature::hazmat::PrehashSigner;
        Ok(match self {
            SigningKey::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign_prehash(digest)?;
                signature.to_der().as_bytes().to_vec()
            }
            SigningKey::P384(key) => {
                let signature: p384::ecdsa::Signature = key.sign_prehash(digest)?;
                signature.to_der().as_bytes().to_vec()
            }
            SigningKey::Rsa2048(key) => key.sign(rsa::Pkcs1v15Sign::new::<Sha256>(), digest)?,
        })
    }

    /// The certificate signature algorithm (self-signed: the key signs its own certificate).
    fn certificate_algorithm(&self) -> AlgorithmIdentifierOwned {
        let (oid, parameters) = match self {
            // ecdsa-with-SHA256 / ecdsa-with-SHA384 take no parameters (RFC 5758).
            SigningKey::P256(_) => ("1.2.840.10045.4.3.2", None),
            SigningKey::P384(_) => ("1.2.840.10045.4.3.3", None),
            // sha256WithRSAEncryption takes an explicit NULL (RFC 4055).
            SigningKey::Rsa2048(_) => ("1.2.840.113549.1.1.11", Some(der::asn1::Null.into())),
        };
        AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap(oid),
            parameters,
        }
    }

    fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>> {
        match self {
            SigningKey::P384(_) => self.sign_digest(&Sha384::digest(message)),
            SigningKey::P256(_) | SigningKey::Rsa2048(_) => {
                self.sign_digest(&Sha256::digest(message))
            }
        }
    }
}

/// One signer of the pool: a key and the verifier JSON that names it.
struct Signer {
    key: SigningKey,
    public_key_verifier: serde_json::Value,
    certificate_verifier: serde_json::Value,
}

impl Signer {
    fn new(kind: KeyKind, number: usize) -> Result<Self> {
        let key = SigningKey::generate(kind)?;
        let spki = key.spki_der()?;
        let certificate = self_signed_certificate(&key, &spki, number)?;
        let details = kind.key_details();
        Ok(Self {
            public_key_verifier: serde_json::json!({
                "publicKey": {"rawBytes": STANDARD.encode(&spki)},
                "keyDetails": details,
            }),
            certificate_verifier: serde_json::json!({
                "x509Certificate": {"rawBytes": STANDARD.encode(&certificate)},
                "keyDetails": details,
            }),
            key,
        })
    }

    fn request(&self, artifact: &[u8], certificate: bool) -> Result<Bytes> {
        let digest = self.key.digest(artifact);
        let signature = self.key.sign_digest(&digest)?;
        let verifier = if certificate {
            &self.certificate_verifier
        } else {
            &self.public_key_verifier
        };
        let request = serde_json::json!({
            "hashedRekordRequestV002": {
                "digest": STANDARD.encode(&digest),
                "signature": {
                    "content": STANDARD.encode(&signature),
                    "verifier": verifier,
                }
            }
        });
        Ok(Bytes::from(serde_json::to_vec(&request)?))
    }
}

/// A Fulcio-like short-lived code-signing certificate for `key` (self-signed; the log uses a
/// certificate only for its public key, so no chain is needed, but the DER is well formed and
/// the signature is real).
fn self_signed_certificate(key: &SigningKey, spki_der: &[u8], number: usize) -> Result<Vec<u8>> {
    use der::Decode;
    let subject_public_key_info = SubjectPublicKeyInfoOwned::from_der(spki_der)?;
    let mut serial = [0u8; 20];
    OsRng.fill_bytes(&mut serial);
    serial[0] &= 0x7f; // a positive INTEGER
    serial[0] |= 0x01; // and no leading zero octet
    let email = format!("load-generator-{number}@bench.example");
    let san = SubjectAltName(vec![GeneralName::Rfc822Name(Ia5String::new(&email)?)]);
    // Fulcio's issuer and workflow extensions (OID arc 1.3.6.1.4.1.57264.1) as DER UTF8Strings.
    let fulcio = |arc: &str, value: &str| -> Result<Extension> {
        Ok(Extension {
            extn_id: ObjectIdentifier::new(&format!("1.3.6.1.4.1.57264.1.{arc}"))?,
            critical: false,
            extn_value: OctetString::new(Utf8StringRef::new(value)?.to_der()?)?,
        })
    };
    let extensions = vec![
        Extension {
            // keyUsage: digitalSignature.
            extn_id: ObjectIdentifier::new_unwrap("2.5.29.15"),
            critical: true,
            extn_value: OctetString::new(vec![0x03, 0x02, 0x07, 0x80])?,
        },
        Extension {
            // extKeyUsage: codeSigning.
            extn_id: ObjectIdentifier::new_unwrap("2.5.29.37"),
            critical: false,
            extn_value: OctetString::new(
                vec![ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3")].to_der()?,
            )?,
        },
        Extension {
            extn_id: ObjectIdentifier::new_unwrap("2.5.29.17"),
            critical: true,
            extn_value: OctetString::new(san.to_der()?)?,
        },
        fulcio("8", "https://accounts.bench.example")?,
        fulcio(
            "9",
            "https://git.bench.example/org/repo/.ci/workflows/release.yml@refs/heads/main",
        )?,
        fulcio("10", "0123456789abcdef0123456789abcdef01234567")?,
        fulcio("11", "bench-hosted")?,
        fulcio("12", "https://git.bench.example/org/repo")?,
        fulcio("14", "refs/heads/main")?,
    ];
    let name = Name::from_str("O=sigstore.dev,CN=sigstore-intermediate")?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial)?,
        signature: key.certificate_algorithm(),
        issuer: name,
        validity: Validity::from_now(Duration::from_secs(600))?,
        subject: Name::default(),
        subject_public_key_info,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let signature = key.sign_message(&tbs.to_der()?)?;
    let certificate = Certificate {
        signature_algorithm: key.certificate_algorithm(),
        tbs_certificate: tbs,
        signature: BitString::from_bytes(&signature)?,
    };
    // Round-trip through PEM once to make sure the structure encodes as a whole.
    certificate.to_pem(der::pem::LineEnding::LF)?;
    Ok(certificate.to_der()?)
}

/// Requests signed ahead of time, in submission order.
pub struct RequestPool {
    /// Serialised JSON request bodies.
    pub bodies: Vec<Bytes>,
    /// How many of each key type.
    pub counts: Vec<(KeyKind, usize)>,
    /// How many carry a certificate verifier.
    pub certificates: usize,
}

impl RequestPool {
    /// Signs `count` distinct requests following `mix`, on `threads` threads.
    pub fn generate(count: usize, mix: &RequestMix, threads: usize) -> Result<Self> {
        mix.validate()?;
        // A few keys per type: one client per key is not needed to load the server (it parses
        // the verifier of every request anyway), and RSA key generation is slow.
        let mut signers: Vec<Vec<Signer>> = Vec::new();
        for (kind, keys, percent) in [
            (KeyKind::P256, 8, mix.p256_percent),
            (KeyKind::P384, 2, mix.p384_percent),
            (KeyKind::Rsa2048, 2, mix.rsa2048_percent),
        ] {
            let keys = if percent == 0 { 0 } else { keys };
            signers.push(
                (0..keys)
                    .map(|number| Signer::new(kind, number))
                    .collect::<Result<_>>()?,
            );
        }
        let signer_for = |kind: KeyKind, index: u64| -> Option<&Signer> {
            let group = match kind {
                KeyKind::P256 => &signers[0],
                KeyKind::P384 => &signers[1],
                KeyKind::Rsa2048 => &signers[2],
            };
            group.get((index as usize / 3) % group.len().max(1))
        };
        // A per-pool nonce keeps artifacts distinct from every earlier run against the same log.
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        let threads = threads.max(1);
        let chunks: Vec<Result<Vec<Bytes>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|thread| {
                    let signer_for = &signer_for;
                    scope.spawn(move || -> Result<Vec<Bytes>> {
                        let mut out = Vec::with_capacity(count / threads + 1);
                        let mut index = thread;
                        while index < count {
                            let (kind, certificate) = mix.pick(index as u64);
                            let signer = signer_for(kind, index as u64)
                                .context("no signer for a kind in the mix")?;
                            let mut artifact = nonce.to_vec();
                            artifact.extend_from_slice(&(index as u64).to_be_bytes());
                            out.push(signer.request(&artifact, certificate)?);
                            index += threads;
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a signing thread panicked")))
                })
                .collect()
        });
        let chunks = chunks.into_iter().collect::<Result<Vec<_>>>()?;
        // Interleave back into index order (thread t made indices t, t+threads, ...).
        let mut iters: Vec<_> = chunks.into_iter().map(Vec::into_iter).collect();
        let mut bodies = Vec::with_capacity(count);
        for index in 0..count {
            bodies.push(
                iters[index % threads]
                    .next()
                    .context("signing threads returned too few requests")?,
            );
        }
        let mut counts = Vec::new();
        let mut certificates = 0;
        for kind in [KeyKind::P256, KeyKind::P384, KeyKind::Rsa2048] {
            counts.push((kind, 0usize));
        }
        for index in 0..count as u64 {
            let (kind, certificate) = mix.pick(index);
            if let Some(entry) = counts.iter_mut().find(|(k, _)| *k == kind) {
                entry.1 += 1;
            }
            certificates += usize::from(certificate);
        }
        Ok(Self {
            bodies,
            counts,
            certificates,
        })
    }

    /// Mean serialised request size in bytes.
    pub fn mean_body_bytes(&self) -> f64 {
        if self.bodies.is_empty() {
            return 0.0;
        }
        self.bodies.iter().map(|b| b.len() as f64).sum::<f64>() / self.bodies.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pooled_request_validates_and_the_mix_holds() {
        let mix = RequestMix::default();
        let pool = RequestPool::generate(200, &mix, 2).unwrap();
        assert_eq!(pool.bodies.len(), 200);
        let validator =
            rekor_api::EntryValidator::new(rekor_api::AlgorithmPolicy::default(), false);
        let mut bodies = std::collections::HashSet::new();
        for body in &pool.bodies {
            let request = rekor_api::CreateEntryRequest::from_json(body).unwrap();
            let entry = validator.validate(&request).map_err(|(e, _)| e).unwrap();
            assert!(bodies.insert(entry.canonical_body), "requests are distinct");
        }
        let p256 = pool
            .counts
            .iter()
            .find(|(k, _)| *k == KeyKind::P256)
            .unwrap()
            .1;
        assert_eq!(p256, 170);
        assert_eq!(pool.certificates, 100);
        assert!(pool.mean_body_bytes() > 500.0, "{}", pool.mean_body_bytes());
    }

    #[test]
    fn mix_parses_and_rejects_nonsense() {
        let mix: RequestMix = "p256=1,cert=0".parse().unwrap();
        assert_eq!(mix.p256_percent, 1);
        assert_eq!(mix.p384_percent, 0);
        assert!("p256=0".parse::<RequestMix>().is_err());
        assert!("ed25519=5".parse::<RequestMix>().is_err());
    }
}
