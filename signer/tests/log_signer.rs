//! `LogSigner` over key files and over backends that misbehave: encrypted key files open only
//! with their password; a signature that does not verify is never returned; failures that may
//! pass are retried, refusals are not; a slow signer meets its deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use p256::pkcs8::{EncodePrivateKey, LineEnding};
use rekor_signer::file::{FileBackend, FileKey};
use rekor_signer::{
    open, KeyAlgorithm, KeyBackend, KeyUri, LogSigner, OpenOptions, RetryPolicy, SignFuture,
    SignerError,
};
use rekor_storage::checkpoint::Checkpoint;
use rekor_storage::note::{verifier_from_spki_der, Note};

const ORIGIN: &str = "log.example";

fn ed25519_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng)
}

fn p256_key() -> p256::SecretKey {
    p256::SecretKey::random(&mut rand_core::OsRng)
}

/// Checks that `signed` is `text` with one signature by `signer`'s key.
fn assert_signed_by(signer: &LogSigner, text: &str, signed: &str) {
    let note = Note::parse(signed.as_bytes()).unwrap();
    assert_eq!(note.text, text);
    assert_eq!(note.signatures.len(), 1);
    let verifier = verifier_from_spki_der(ORIGIN, signer.public_key_der()).unwrap();
    note.verify(&[verifier.as_ref()]).unwrap();
}

#[tokio::test]
async fn key_files_of_both_types_sign_verifiable_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let ed = dir.path().join("ed25519.pem");
    std::fs::write(
        &ed,
        ed25519_key()
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let ec = dir.path().join("p256.pem");
    std::fs::write(
        &ec,
        p256_key().to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();

    for (path, algorithm) in [(ed, KeyAlgorithm::Ed25519), (ec, KeyAlgorithm::EcdsaP256)] {
        let uri = KeyUri::parse(&format!("file://{}", path.display())).unwrap();
        let signer = open(&uri, ORIGIN, &OpenOptions::default()).await.unwrap();
        assert_eq!(signer.algorithm(), algorithm);
        let checkpoint = Checkpoint::new(ORIGIN, 7, [3; 32]);
        let signed = signer.sign_checkpoint(&checkpoint).await.unwrap();
        assert_signed_by(&signer, &checkpoint.body(), &signed);
        assert!(signer.verifier_key().starts_with("log.example+"));
    }
}

#[tokio::test]
async fn an_encrypted_key_file_opens_only_with_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "correct horse\n").unwrap();
    let wrong_password_file = dir.path().join("wrong");
    std::fs::write(&wrong_password_file, "battery staple\n").unwrap();
    let encrypted: [(&str, pkcs8::der::zeroize::Zeroizing<String>); 2] = [
        (
            "ed25519",
            ed25519_key()
                .to_pkcs8_encrypted_pem(&mut rand_core::OsRng, "correct horse", LineEnding::LF)
                .unwrap(),
        ),
        (
            "p256",
            p256_key()
                .to_pkcs8_encrypted_pem(&mut rand_core::OsRng, "correct horse", LineEnding::LF)
                .unwrap(),
        ),
    ];
    for (name, pem) in encrypted {
        let path = dir.path().join(format!("{name}.pem"));
        std::fs::write(&path, pem.as_bytes()).unwrap();
        let uri = KeyUri::File(path);

        let without = open(&uri, ORIGIN, &OpenOptions::default())
            .await
            .err()
            .unwrap();
        assert!(without.to_string().contains("password"), "{without}");

        let wrong = OpenOptions {
            password_file: Some(wrong_password_file.clone()),
            ..OpenOptions::default()
        };
        let error = open(&uri, ORIGIN, &wrong).await.err().unwrap();
        assert!(error.to_string().contains("cannot decrypt"), "{error}");

        let right = OpenOptions {
            password_file: Some(password_file.clone()),
            ..OpenOptions::default()
        };
        let signer = open(&uri, ORIGIN, &right).await.unwrap();
        let signed = signer.sign_note("hello\n").await.unwrap();
        assert_signed_by(&signer, "hello\n", &signed);
    }
}

/// A backend whose first `failures` signatures fail with `error`, and which may lie or stall.
struct Misbehaving {
    inner: FileBackend,
    failures: usize,
    error: SignerError,
    lie: bool,
    stall: Option<Duration>,
    calls: AtomicUsize,
}

impl Misbehaving {
    fn new() -> Self {
        Self {
            inner: FileBackend::from_key("test".into(), FileKey::Ed25519(ed25519_key())),
            failures: 0,
            error: SignerError::Unavailable("down".into()),
            lie: false,
            stall: None,
            calls: AtomicUsize::new(0),
        }
    }
}

impl KeyBackend for Misbehaving {
    fn describe(&self) -> String {
        "misbehaving test backend".into()
    }
    fn public_key_der(&self) -> &[u8] {
        self.inner.public_key_der()
    }
    fn sign<'a>(&'a self, text: &'a [u8]) -> SignFuture<'a> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if let Some(stall) = self.stall {
                tokio::time::sleep(stall).await;
            }
            if call < self.failures {
                return Err(self.error.clone());
            }
            let mut signature = self.inner.sign(text).await?;
            if self.lie {
                signature[0] ^= 1;
            }
            Ok(signature)
        })
    }
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::from_millis(200),
        total_timeout: Duration::from_secs(2),
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
    }
}

fn signer_over(backend: Misbehaving) -> (LogSigner, Arc<Misbehaving>) {
    let backend = Arc::new(backend);
    let signer = LogSigner::new(ORIGIN, backend.clone(), "test")
        .unwrap()
        .with_retry(quick_retries());
    (signer, backend)
}

#[tokio::test]
async fn a_signature_that_does_not_verify_is_never_returned() {
    let (signer, backend) = signer_over(Misbehaving {
        lie: true,
        ..Misbehaving::new()
    });
    let error = signer.sign_note("text\n").await.unwrap_err();
    assert!(matches!(error, SignerError::BadSignature), "{error}");
    assert!(backend.calls.load(Ordering::SeqCst) > 1, "retried");
}

#[tokio::test]
async fn transient_failures_are_retried_and_refusals_are_not() {
    let (signer, backend) = signer_over(Misbehaving {
        failures: 3,
        ..Misbehaving::new()
    });
    let signed = signer.sign_note("text\n").await.unwrap();
    assert_signed_by(&signer, "text\n", &signed);
    assert_eq!(backend.calls.load(Ordering::SeqCst), 4);

    let (signer, backend) = signer_over(Misbehaving {
        failures: 3,
        error: SignerError::Refused("permission denied".into()),
        ..Misbehaving::new()
    });
    let error = signer.sign_note("text\n").await.unwrap_err();
    assert!(matches!(error, SignerError::Refused(_)), "{error}");
    assert_eq!(backend.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stalled_signer_meets_the_attempt_deadline() {
    let (signer, backend) = signer_over(Misbehaving {
        stall: Some(Duration::from_secs(30)),
        ..Misbehaving::new()
    });
    let started = std::time::Instant::now();
    let error = signer.sign_note("text\n").await.unwrap_err();
    assert!(matches!(error, SignerError::Timeout(_)), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(backend.calls.load(Ordering::SeqCst) >= 2, "retried");
}
