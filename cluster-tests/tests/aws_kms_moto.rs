//! The AWS KMS signer backend against moto in server mode (a local implementation of the KMS
//! API standing in for AWS, `rekor_cluster_tests::moto`): opening reads the key's public key,
//! checkpoints signed through KMS verify, a missing key is refused with KMS's own reason, and a
//! KMS that is gone is unavailable (retried), not refused.

use std::time::Duration;

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use rekor_cluster_tests::moto::{moto_server_bin, MotoKms, ACCOUNT, REGION};
use rekor_signer::{aws_kms, KeyAlgorithm, LogSigner, OpenOptions, RetryPolicy, SignerError};
use rekor_storage::checkpoint::Checkpoint;
use rekor_storage::note::Note;

const ORIGIN: &str = "kms.test.local";

fn options() -> OpenOptions {
    OpenOptions {
        request_timeout: Duration::from_secs(5),
        ..OpenOptions::default()
    }
}

async fn moto() -> Option<MotoKms> {
    let binary = moto_server_bin().unwrap()?;
    Some(MotoKms::start(&binary).await.unwrap())
}

/// The one signature of a serialised signed note.
fn note_signature(note: &str) -> Vec<u8> {
    let parsed = Note::parse(note.as_bytes()).unwrap();
    assert_eq!(parsed.signatures.len(), 1, "{note}");
    parsed.signatures[0].signature.clone()
}

#[tokio::test]
async fn a_kms_key_signs_checkpoints_that_verify_under_its_public_key() {
    let Some(moto) = moto().await else { return };
    let key = moto.create_p256_key("rekor-checkpoints").await.unwrap();
    let kms_public_key = moto.public_key_der(&key.key_id).await.unwrap();

    let backend = aws_kms::open_with_env(&moto.uri(&key.alias), &options(), &moto.env_lookup())
        .await
        .unwrap();
    assert_eq!(backend.public_key_der(), &kms_public_key[..]);
    assert!(
        backend.describe().contains(&key.key_id),
        "{}",
        backend.describe()
    );

    let signer = LogSigner::new(ORIGIN, backend, "awskms").unwrap();
    assert_eq!(signer.algorithm(), KeyAlgorithm::EcdsaP256);
    let checkpoint = Checkpoint::new(ORIGIN, 42, [7u8; 32]);
    let note = signer.sign_checkpoint(&checkpoint).await.unwrap();
    assert!(note.starts_with(&checkpoint.body()), "{note}");

    // Checked here independently of the LogSigner's own check: an ECDSA P-256 signature in DER
    // over SHA-256 of the note text, under the key KMS holds.
    let verifying_key = VerifyingKey::from_public_key_der(&kms_public_key).unwrap();
    let signature = Signature::from_der(&note_signature(&note)).unwrap();
    verifying_key
        .verify(checkpoint.body().as_bytes(), &signature)
        .unwrap();
}

#[tokio::test]
async fn every_uri_form_reaches_the_same_key() {
    let Some(moto) = moto().await else { return };
    let key = moto.create_p256_key("rekor-forms").await.unwrap();
    let expected = moto.public_key_der(&key.key_id).await.unwrap();
    let alias_arn = format!("arn:aws:kms:{REGION}:{ACCOUNT}:{}", key.alias);
    for form in [
        key.key_id.clone(),
        key.arn.clone(),
        key.alias.clone(),
        alias_arn,
    ] {
        let backend = aws_kms::open_with_env(&moto.uri(&form), &options(), &moto.env_lookup())
            .await
            .unwrap_or_else(|error| panic!("{form}: {error}"));
        assert_eq!(backend.public_key_der(), &expected[..], "{form}");
        let signature = backend.sign(b"form\n").await.unwrap();
        let verifying_key = VerifyingKey::from_public_key_der(&expected).unwrap();
        verifying_key
            .verify(b"form\n", &Signature::from_der(&signature).unwrap())
            .unwrap();
    }

    // The endpoint from the environment (what AWS SDKs read) instead of the URI.
    let mut env = moto.env();
    env.push(("AWS_ENDPOINT_URL_KMS".into(), moto.endpoint_url()));
    let lookup = move |name: &str| {
        env.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let backend = aws_kms::open_with_env(&format!("awskms:///{}", key.alias), &options(), &lookup)
        .await
        .unwrap();
    assert_eq!(backend.public_key_der(), &expected[..]);
}

#[tokio::test]
async fn a_missing_key_is_refused_with_kms_reason() {
    let Some(moto) = moto().await else { return };
    for missing in ["alias/no-such-key", "0d6a3b9e-5f0c-4f0e-9d3a-2b7c1e4f5a60"] {
        match aws_kms::open_with_env(&moto.uri(missing), &options(), &moto.env_lookup()).await {
            Err(SignerError::Refused(message)) => {
                assert!(message.contains("NotFoundException"), "{message}");
                assert!(!message.contains("rekor-test-secret-key"), "{message}");
            }
            Err(other) => panic!("{missing}: {other:?}"),
            Ok(_) => panic!("{missing}: opened a key that does not exist"),
        }
    }
}

#[tokio::test]
async fn a_stopped_kms_is_unavailable_not_refused() {
    let Some(mut moto) = moto().await else { return };
    let key = moto.create_p256_key("rekor-stopped").await.unwrap();
    let backend = aws_kms::open_with_env(&moto.uri(&key.alias), &options(), &moto.env_lookup())
        .await
        .unwrap();
    let signer = LogSigner::new(ORIGIN, backend.clone(), "awskms")
        .unwrap()
        .with_retry(RetryPolicy {
            attempt_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_millis(500),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        });
    signer.sign_note("before\n").await.unwrap();

    moto.stop();
    let error = backend.sign(b"after\n").await.unwrap_err();
    assert!(matches!(error, SignerError::Unavailable(_)), "{error:?}");
    assert!(error.is_transient());
    let error = signer.sign_note("after\n").await.unwrap_err();
    assert!(matches!(error, SignerError::Unavailable(_)), "{error:?}");
    // Opening fails the same way: a node starting while KMS is down is told to try again.
    match aws_kms::open_with_env(&moto.uri(&key.alias), &options(), &moto.env_lookup()).await {
        Err(SignerError::Unavailable(_)) => {}
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("opened a key with KMS stopped"),
    }
}
