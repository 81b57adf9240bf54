//! Checkpoint signing keys: opening the configured signer (a key file or a remote signer, through
//! `rekor-signer`), generating a development key for the embedded default, and `rekor-node
//! keygen`, which makes a key file or reads an existing key's public half and prints everything a
//! client needs to trust the log (public key, note verifier key, log ID, a trusted-root `tlogs`
//! entry).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::{Args, ValueEnum};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use rekor_signer::{KeyUri, LogSigner, OpenOptions, RetryPolicy};
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
    /// Key type of a new key file.
    #[arg(long, value_enum, default_value = "ed25519")]
    pub algorithm: Algorithm,
    /// The log's origin (checkpoint key name): a bare host name.
    #[arg(long, default_value = crate::config::defaults::ORIGIN)]
    pub origin: String,
    /// Where to write a new private key (PEM, PKCS#8, mode 0600). Refuses to overwrite.
    #[arg(long, required_unless_present = "key_uri", conflicts_with = "key_uri")]
    pub out: Option<PathBuf>,
    /// Instead of making a key: print the trust outputs of an existing one, a key file or a key
    /// URI (pkcs11:, awskms://, gcpkms://, azurekms://, hashivault://), whose public key is read
    /// from the service with the same credentials `serve` uses.
    #[arg(long)]
    pub key_uri: Option<String>,
    /// Password file of an encrypted --key-uri key file.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// The log's public URL for the trusted-root entry. Default: https://<origin>.
    #[arg(long)]
    pub base_url: Option<String>,
}

/// A new signing key in memory.
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

    fn to_pem(&self) -> Result<String> {
        let pem = match self {
            Self::Ed25519(key) => key.to_pkcs8_pem(Default::default())?,
            Self::EcdsaP256(key) => p256::SecretKey::from(key).to_pkcs8_pem(Default::default())?,
        };
        Ok(pem.to_string())
    }
}

/// The serve-time signer: the configured key (a file or a remote signer, opened and its public
/// key read), or for the embedded default a development key generated on first start.
pub async fn load_or_generate(config: &ServeConfig) -> Result<LogSigner> {
    if let KeyUri::File(path) = &config.signing_key {
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
        // The node refuses a key file, or its password file, other users could read.
        read_private_file(path, "the signing key")?;
    }
    if let Some(password_file) = &config.signing_key_password_file {
        read_private_file(password_file, "the signing key's password file")?;
    }
    let options = OpenOptions {
        password_file: config.signing_key_password_file.clone(),
        request_timeout: config.signer_timeout,
    };
    let signer = rekor_signer::open(&config.signing_key, &config.origin, &options)
        .await
        .with_context(|| format!("opening the checkpoint signer {}", config.signing_key))?;
    Ok(signer.with_retry(RetryPolicy {
        attempt_timeout: config.signer_timeout,
        total_timeout: config.signer_timeout * 2,
        ..RetryPolicy::default()
    }))
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a runtime")?;
    runtime.block_on(keygen_async(args))
}

async fn keygen_async(args: KeygenArgs) -> Result<()> {
    let (uri, wrote) = match (&args.key_uri, &args.out) {
        (Some(uri), _) => (KeyUri::parse(uri)?, None),
        (None, Some(out)) => {
            if out.exists() {
                bail!("{} exists; refusing to overwrite a key", out.display());
            }
            let key = SigningKey::generate(args.algorithm);
            write_private_file(out, key.to_pem()?.as_bytes())?;
            (KeyUri::File(out.clone()), Some(out.clone()))
        }
        (None, None) => bail!("give --out (a new key file) or --key-uri (an existing key)"),
    };
    let options = OpenOptions {
        password_file: args.password_file.clone(),
        ..OpenOptions::default()
    };
    let signer = rekor_signer::open(&uri, &args.origin, &options)
        .await
        .with_context(|| format!("opening {uri}"))?;
    let public_key = STANDARD.encode(signer.public_key_der());
    let log_id = STANDARD.encode(signer.log_id());
    let base_url = args
        .base_url
        .unwrap_or_else(|| format!("https://{}", args.origin));
    let tlog = tlog_entry(&signer, &base_url, &rfc3339_now());
    match wrote {
        Some(path) => println!("private key:   {}", path.display()),
        None => println!("key:           {}", signer.describe()),
    }
    println!("public key:    {public_key}");
    println!("verifier key:  {}", signer.verifier_key());
    println!("log ID:        {log_id}");
    println!("trusted-root tlogs entry:");
    println!("{}", serde_json::to_string_pretty(&tlog)?);
    Ok(())
}

/// The trusted-root `tlogs` entry of a log at `base_url` signing with `signer`'s key from
/// `valid_from` (RFC 3339).
pub fn tlog_entry(signer: &LogSigner, base_url: &str, valid_from: &str) -> serde_json::Value {
    let log_id = STANDARD.encode(signer.log_id());
    serde_json::json!({
        "baseUrl": base_url,
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": STANDARD.encode(signer.public_key_der()),
            "keyDetails": signer.algorithm().key_details(),
            "validFor": {"start": valid_from},
        },
        "logId": {"keyId": log_id},
        "checkpointKeyId": {"keyId": log_id},
    })
}

/// Opens the key at `uri` (a file or a key URI) for `origin`, to read its public half.
pub async fn open_for_public_key(
    uri: &str,
    origin: &str,
    password_file: Option<PathBuf>,
) -> Result<LogSigner> {
    let uri = KeyUri::parse(uri)?;
    let options = OpenOptions {
        password_file,
        ..OpenOptions::default()
    };
    rekor_signer::open(&uri, origin, &options)
        .await
        .with_context(|| format!("opening {uri}"))
}

/// The current UTC time as RFC 3339 (seconds precision), without a date-time dependency.
pub fn rfc3339_now() -> String {
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
            let parsed = rekor_signer::file::parse_pem(&pem, None).unwrap();
            let same_type = matches!(
                (&key, &parsed),
                (
                    SigningKey::Ed25519(_),
                    rekor_signer::file::FileKey::Ed25519(_)
                ) | (
                    SigningKey::EcdsaP256(_),
                    rekor_signer::file::FileKey::EcdsaP256(_)
                )
            );
            assert!(same_type);
        }
        assert!(rekor_signer::file::parse_pem("-----BEGIN NONSENSE-----", None).is_err());
    }
}
