//! Checkpoint signing keys: loading (PEM PKCS#8, Ed25519 or ECDSA P-256), generating a development
//! key for the embedded default, and `rekor-node keygen`, which prints everything a client needs
//! to trust the log (public key, note verifier key, log ID, a trusted-root `tlogs` entry).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::{Args, ValueEnum};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rekor_storage::note::{EcdsaP256NoteSigner, Ed25519NoteSigner, NoteSigner};
use tracing::warn;

use crate::config::ServeConfig;
use crate::secrets::{read_private_file, write_private_file};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Algorithm {
    /// Ed25519 (recommended; C2SP witnesses expect it).
    Ed25519,
    /// ECDSA P-256 with SHA-256.
    EcdsaP256,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Key type.
    #[arg(long, value_enum, default_value = "ed25519")]
    pub algorithm: Algorithm,
    /// The log's origin (checkpoint key name): a bare host name.
    #[arg(long, default_value = crate::config::defaults::ORIGIN)]
    pub origin: String,
    /// Where to write the private key (PEM, PKCS#8, mode 0600). Refuses to overwrite.
    #[arg(long)]
    pub out: PathBuf,
    /// The log's public URL for the trusted-root entry. Default: https://<origin>.
    #[arg(long)]
    pub base_url: Option<String>,
}

/// A signing key in memory, before it is bound to an origin.
enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    EcdsaP256(p256::ecdsa::SigningKey),
}

impl SigningKey {
    fn generate(algorithm: Algorithm) -> Self {
        let mut rng = rand_core::OsRng;
        match algorithm {
            Algorithm::Ed25519 => Self::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng)),
            Algorithm::EcdsaP256 => Self::EcdsaP256(p256::ecdsa::SigningKey::random(&mut rng)),
        }
    }

    fn from_pem(pem: &str) -> Result<Self> {
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Self::Ed25519(key));
        }
        if let Ok(key) = p256::SecretKey::from_pkcs8_pem(pem) {
            return Ok(Self::EcdsaP256(key.into()));
        }
        bail!("not a PKCS#8 PEM Ed25519 or ECDSA P-256 private key")
    }

    fn to_pem(&self) -> Result<String> {
        let pem = match self {
            Self::Ed25519(key) => key.to_pkcs8_pem(Default::default())?,
            Self::EcdsaP256(key) => p256::SecretKey::from(key).to_pkcs8_pem(Default::default())?,
        };
        Ok(pem.to_string())
    }

    fn into_signer(self, origin: &str) -> Result<Arc<dyn NoteSigner>> {
        Ok(match self {
            Self::Ed25519(key) => Arc::new(Ed25519NoteSigner::new(origin, key)?),
            Self::EcdsaP256(key) => Arc::new(EcdsaP256NoteSigner::new(origin, key)?),
        })
    }

    fn key_details(&self) -> &'static str {
        match self {
            Self::Ed25519(_) => "PKIX_ED25519",
            Self::EcdsaP256(_) => "PKIX_ECDSA_P256_SHA_256",
        }
    }
}

/// The serve-time signer: the configured key, or for the embedded default a development key
/// generated on first start.
pub fn load_or_generate(config: &ServeConfig) -> Result<Arc<dyn NoteSigner>> {
    let path = &config.signing_key;
    if !path.exists() {
        if !config.signing_key_is_default {
            bail!("signing key {} does not exist", path.display());
        }
        let key = SigningKey::generate(Algorithm::Ed25519);
        write_private_file(path, key.to_pem()?.as_bytes())?;
        warn!(
            path = %path.display(),
            "generated a development signing key (Ed25519); use `rekor-node keygen` and --signing-key for a real log"
        );
    }
    let pem = read_private_file(path, "the signing key")?;
    SigningKey::from_pem(&pem)
        .with_context(|| format!("parsing signing key {}", path.display()))?
        .into_signer(&config.origin)
}

/// The start-up banner of a node signing with a generated development key: loud, because a log
/// whose key lives next to its data is not one anybody should trust.
pub fn warn_development_key(path: &Path) {
    warn!(
        path = %path.display(),
        "\n\
         ************************************************************************\n\
         *  DEVELOPMENT SIGNING KEY: this log signs checkpoints with a key it   *\n\
         *  generated itself. Fine for trying it out; not a production log.     *\n\
         *  For a real log: `rekor-node keygen` and --signing-key (see          *\n\
         *  docs/operations.md).                                                *\n\
         ************************************************************************"
    );
}

pub fn keygen(args: KeygenArgs) -> Result<()> {
    if args.out.exists() {
        bail!("{} exists; refusing to overwrite a key", args.out.display());
    }
    let key = SigningKey::generate(args.algorithm);
    let key_details = key.key_details();
    let type_byte = match key {
        SigningKey::Ed25519(_) => rekor_storage::note::ALG_ED25519,
        SigningKey::EcdsaP256(_) => rekor_storage::note::ALG_ECDSA,
    };
    write_private_file(&args.out, key.to_pem()?.as_bytes())?;
    let signer = key.into_signer(&args.origin)?;
    let public_key = STANDARD.encode(signer.public_key_der());
    let log_id = STANDARD.encode(signer.log_id());
    let base_url = args
        .base_url
        .unwrap_or_else(|| format!("https://{}", args.origin));
    let tlog = serde_json::json!({
        "baseUrl": base_url,
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": public_key,
            "keyDetails": key_details,
            "validFor": {"start": rfc3339_now()},
        },
        "logId": {"keyId": log_id},
        "checkpointKeyId": {"keyId": log_id},
    });
    println!("private key:   {}", args.out.display());
    println!("public key:    {public_key}");
    println!(
        "verifier key:  {}",
        verifier_key(signer.as_ref(), type_byte)
    );
    println!("log ID:        {log_id}");
    println!("trusted-root tlogs entry:");
    println!("{}", serde_json::to_string_pretty(&tlog)?);
    Ok(())
}

/// The C2SP note verifier key (`<name>+<key id>+<base64(type ‖ key)>`): Ed25519 carries the raw
/// 32-byte key, ECDSA (transparency-dev convention) the DER SPKI.
fn verifier_key(signer: &dyn NoteSigner, type_byte: u8) -> String {
    let der = signer.public_key_der();
    let key = if type_byte == rekor_storage::note::ALG_ED25519 {
        der[der.len().saturating_sub(32)..].to_vec()
    } else {
        der
    };
    let mut type_and_key = vec![type_byte];
    type_and_key.extend_from_slice(&key);
    rekor_storage::note::VerifierKey {
        name: signer.name().to_owned(),
        key_id: signer.key_id(),
        type_and_key,
    }
    .to_vkey()
}

/// The current UTC time as RFC 3339 (seconds precision), without a date-time dependency.
fn rfc3339_now() -> String {
    let secs = crate::publisher::unix_now();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days` algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_782), (2026, 11, 25));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn pem_round_trip_for_both_algorithms() {
        for algorithm in [Algorithm::Ed25519, Algorithm::EcdsaP256] {
            let key = SigningKey::generate(algorithm);
            let pem = key.to_pem().unwrap();
            let again = SigningKey::from_pem(&pem).unwrap();
            assert_eq!(key.key_details(), again.key_details());
        }
        assert!(SigningKey::from_pem("-----BEGIN NONSENSE-----").is_err());
    }
}
