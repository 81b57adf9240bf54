//! moto in server mode, as the AWS KMS signer tests run it: a local implementation of the AWS
//! KMS API, standing in for AWS. It is a real HTTP server in its own process speaking the KMS
//! JSON protocol (`CreateKey`, `CreateAlias`, `GetPublicKey`, `Sign`, ... with KMS's error
//! types), so the signer's requests, answers and error handling run exactly as against AWS.
//!
//! Where moto 5.2 differs from AWS (what the tests therefore cannot show): it does not check
//! SigV4 signatures, it still signs with a disabled key, it hashes a `DIGEST` message again
//! as if it were `RAW`, and it has no `ECC_NIST_EDWARDS25519` keys, so only P-256 keys are
//! tested here.
//!
//! The program is `$MOTO_SERVER_BIN` (scripts/test.sh installs moto in `.venv-moto/`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rekor_signer::aws_kms::{AwsConfig, KeyRef, KmsClient};
use rekor_signer::http::HttpClient;
use serde::Deserialize;
use serde_json::json;

use crate::{free_port, wait_until};

/// The region the tests' requests are signed for (moto keeps one set of keys per region).
pub const REGION: &str = "eu-west-1";
/// moto's default account.
pub const ACCOUNT: &str = "123456789012";

/// `moto_server` from `$MOTO_SERVER_BIN`. Without it the caller skips, with a notice, except in
/// CI (`$CI` set), where the tool must be there and its absence is an error.
pub fn moto_server_bin() -> Result<Option<PathBuf>> {
    match std::env::var_os("MOTO_SERVER_BIN").map(PathBuf::from) {
        Some(path) if path.exists() => Ok(Some(path)),
        found => {
            let why = match found {
                Some(path) => format!("MOTO_SERVER_BIN={} does not exist", path.display()),
                None => "MOTO_SERVER_BIN is not set".to_owned(),
            };
            if std::env::var_os("CI").is_some() {
                bail!("{why}: scripts/test.sh installs moto in .venv-moto and sets it");
            }
            eprintln!(
                "\n!!!!!!!! SKIPPED: the AWS KMS tests need moto ({why}; run scripts/test.sh \
                 --setup, then MOTO_SERVER_BIN=.venv-moto/bin/moto_server) !!!!!!!!\n"
            );
            Ok(None)
        }
    }
}

/// A KMS key created in moto.
#[derive(Debug, Clone)]
pub struct MotoKey {
    pub key_id: String,
    pub arn: String,
    /// `alias/<name>`.
    pub alias: String,
}

/// A running `moto_server` on a loopback port; killed when dropped.
pub struct MotoKms {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl MotoKms {
    /// Starts `binary` on a free loopback port and returns once it answers KMS requests.
    pub async fn start(binary: &std::path::Path) -> Result<Self> {
        let port = free_port()?;
        let dir = tempfile::tempdir()?;
        let log = std::fs::File::create(dir.path().join("moto.log"))?;
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let moto = Self { child, port, dir };
        let client = moto.client()?;
        wait_until(
            "moto to answer KMS requests",
            Duration::from_secs(30),
            || {
                let client = client.clone();
                async move {
                    let answer: Result<serde_json::Value, _> =
                        client.call("ListKeys", &json!({})).await;
                    Ok(answer.ok().map(|_| ()))
                }
            },
        )
        .await
        .with_context(|| format!("moto log:\n{}", moto.log()))?;
        Ok(moto)
    }

    /// The loopback port moto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its endpoint URL.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `awskms://127.0.0.1:<port>/<key>`: a key URI naming moto as the endpoint.
    pub fn uri(&self, key: &str) -> String {
        format!("awskms://127.0.0.1:{}/{key}", self.port)
    }

    /// The environment a signer needs to reach moto: dummy credentials (moto accepts any) and
    /// the region.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "rekor-test-access-key"),
            ("AWS_SECRET_ACCESS_KEY", "rekor-test-secret-key"),
            ("AWS_REGION", REGION),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    }

    /// [`MotoKms::env`] as a lookup function, for `rekor_signer::aws_kms::open_with_env`.
    pub fn env_lookup(&self) -> impl Fn(&str) -> Option<String> {
        let env = self.env();
        move |name| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        }
    }

    /// A KMS client of moto (the signer's own request code).
    pub fn client(&self) -> Result<KmsClient> {
        let key = KeyRef::parse(&self.uri("alias/any"))?;
        let config = AwsConfig::resolve(&key, &self.env_lookup())?;
        Ok(KmsClient::new(
            HttpClient::new(Duration::from_secs(10))?,
            config,
        ))
    }

    /// Creates an `ECC_NIST_P256` `SIGN_VERIFY` key and the alias `alias/<alias>` for it.
    pub async fn create_p256_key(&self, alias: &str) -> Result<MotoKey> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Created {
            key_metadata: Metadata,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Metadata {
            key_id: String,
            arn: String,
        }
        let client = self.client()?;
        let created: Created = client
            .call(
                "CreateKey",
                &json!({
                    "KeySpec": "ECC_NIST_P256",
                    "KeyUsage": "SIGN_VERIFY",
                    "Description": "rekor-raft test checkpoint key",
                }),
            )
            .await?;
        let alias = format!("alias/{alias}");
        let () = client
            .call(
                "CreateAlias",
                &json!({ "AliasName": alias, "TargetKeyId": created.key_metadata.key_id }),
            )
            .await?;
        Ok(MotoKey {
            key_id: created.key_metadata.key_id,
            arn: created.key_metadata.arn,
            alias,
        })
    }

    /// The DER SubjectPublicKeyInfo of `key`, read with `GetPublicKey`.
    pub async fn public_key_der(&self, key: &str) -> Result<Vec<u8>> {
        use base64::Engine as _;
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer {
            public_key: String,
        }
        let answer: Answer = self
            .client()?
            .call("GetPublicKey", &json!({ "KeyId": key }))
            .await?;
        Ok(base64::engine::general_purpose::STANDARD.decode(answer.public_key)?)
    }

    /// Everything moto has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// Kills moto and waits for it to exit.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MotoKms {
    fn drop(&mut self) {
        self.stop();
    }
}
