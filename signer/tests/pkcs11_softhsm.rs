//! The PKCS#11 backend against a real SoftHSM2 token: keys generated inside the token, opened by
//! `pkcs11:` URI, note signatures checked with the storage crate's verifier (not the backend's
//! own view of the key), and the failures an operator meets: a wrong PIN, a missing key, a
//! session that lost its login, a key deleted under a running signer.
//!
//! Without SoftHSM2 these tests skip with a notice, or fail when `CI` is set.

use std::sync::Arc;

use rekor_cluster_tests::softhsm::{KeyKind, SoftHsm, TestToken};
use rekor_signer::{KeyBackend, KeyUri, LogSigner, OpenOptions, SignerError};
use rekor_storage::note::{self, Note};

const ORIGIN: &str = "pkcs11.test.local";
const TEXT: &str = "pkcs11.test.local\n42\nq6ZyS9QvxAsgUW2bfGtwAGyFS7Eh1Zk8bFmz3bKkhTw=\n";

/// A fresh token labelled `label` holding one key pair of `kind` labelled `checkpoint`; gives
/// the token and the public key read from it.
fn token_with_key(hsm: &'static SoftHsm, label: &str, kind: KeyKind) -> (TestToken, Vec<u8>) {
    let token = hsm.create_token(label, "246810").unwrap();
    let spki = token.generate_key(kind, "checkpoint", &[0x01]).unwrap();
    (token, spki)
}

/// A PIN file (the `pin-source` of a URI) in the token directory.
fn pin_file(hsm: &SoftHsm, name: &str, contents: &str) -> String {
    let path = hsm.dir().join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

async fn open_backend(uri: &str) -> Result<Arc<dyn KeyBackend>, SignerError> {
    rekor_signer::open_backend(&KeyUri::parse(uri).unwrap(), &OpenOptions::default()).await
}

/// Signs TEXT through a [`LogSigner`] on `uri` and checks the note with the storage crate's
/// verifier for `spki`.
async fn signs_verifiable_notes(uri: &str, spki: &[u8]) {
    let signer = rekor_signer::open(
        &KeyUri::parse(uri).unwrap(),
        ORIGIN,
        &OpenOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        signer.public_key_der(),
        spki,
        "the backend reads the token's key"
    );
    let verifier = note::verifier_from_spki_der(ORIGIN, spki).unwrap();
    for _ in 0..3 {
        let signed = signer.sign_note(TEXT).await.unwrap();
        let parsed = Note::parse(signed.as_bytes()).unwrap();
        assert_eq!(parsed.text, TEXT);
        assert_eq!(parsed.verify(&[verifier.as_ref()]).unwrap(), vec![0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p256_key_in_the_token_signs_notes() {
    let Some(hsm) = SoftHsm::require() else {
        return;
    };
    let (token, spki) = token_with_key(hsm, "signer-p256", KeyKind::EcdsaP256);
    let pin = pin_file(hsm, "p256.pin", "246810\n");
    // By label and id, the PIN from a file.
    signs_verifiable_notes(
        &token.uri("checkpoint", &format!("pin-source={pin}")),
        &spki,
    )
    .await;
    // By id alone, the PIN as a file: URI.
    let by_id = format!(
        "pkcs11:token=signer-p256;id=%01?module-path={}&pin-source=file://{pin}",
        hsm.module().display()
    );
    signs_verifiable_notes(&by_id, &spki).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_key_in_the_token_signs_notes() {
    let Some(hsm) = SoftHsm::require() else {
        return;
    };
    let (token, spki) = token_with_key(hsm, "signer-ed25519", KeyKind::Ed25519);
    let signer = rekor_signer::open(
        &KeyUri::parse(&token.uri("checkpoint", "pin-value=246810")).unwrap(),
        ORIGIN,
        &OpenOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(signer.algorithm(), rekor_signer::KeyAlgorithm::Ed25519);
    signs_verifiable_notes(&token.uri("checkpoint", "pin-value=246810"), &spki).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_never_shows_the_pin() {
    let Some(hsm) = SoftHsm::require() else {
        return;
    };
    let (token, _) = token_with_key(hsm, "signer-describe", KeyKind::EcdsaP256);
    let backend = open_backend(&token.uri("checkpoint", "pin-value=246810"))
        .await
        .unwrap();
    let described = backend.describe();
    assert!(described.starts_with("pkcs11:token=signer-describe;object=checkpoint?module-path="));
    assert!(!described.contains("246810"), "{described}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_is_a_configuration_error() {
    let Some(hsm) = SoftHsm::require() else {
        return;
    };
    let (token, _) = token_with_key(hsm, "signer-wrong-pin", KeyKind::EcdsaP256);
    let pin = pin_file(hsm, "wrong.pin", "135790\n");
    let error = open_backend(&token.uri("checkpoint", &format!("pin-source={pin}")))
        .await
        .err()
        .expect("a wrong PIN is refused");
    assert!(
        matches!(&error, SignerError::Config(message) if message.contains("PIN")),
        "{error}"
    );
    assert!(!error.is_transient());
    let missing = open_backend(&token.uri("checkpoint", "pin-source=/nonexistent/pin"))
        .await
        .err()
        .expect("an unreadable PIN file is refused");
    assert!(
        matches!(&missing, SignerError::Config(message) if message.contains("/nonexistent/pin")),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_or_token_is_refused() {
    let Some(hsm) = SoftHsm::require() else {
        return;
    };
    let (token, _) = token_with_key(hsm, "signer-missing", KeyKind::EcdsaP256);
    let error = open_backend(&token.uri("no-such-key", "pin-value=246810"))
        .await
        .err()
        .expect("a missing key is refused");
    assert!(
        matches!(&error, SignerError::Config(message) if message.contains("no private key labelled \"no-such-key\"")),
        "{error}"
    );
    let wrong_id = format!(
        "pkcs11:token=signer-missing;object=checkpoint;id=%02?module-path={}&pin-value=246810",
        hsm.module().display()
    );
    let error = open_backend(&wrong_id).await.err().expect("wrong id");
    assert!(
        matches!(&error, SignerError::Config(message) if message.contains("with id %02")),
        "{error}"
    );
    let no_token = format!(
        "pkcs11:token=no-such-token;object=checkpoint?module-path={}&pin-value=246810",
        hsm.module().display()
    );
    let error = open_backend(&no_token).await.err().expect("missing token");
    assert!(
        matches!(&error, SignerError::Config(message) if message.contains("no token labelled \"no-such-token\"")),
        "{error}"
    );
    let no_module = "pkcs11:object=checkpoint?module-path=/nonexistent/module.so";
    let error = open_backend(no_module).await.err().expect("missing module");
    assert!(
        matches!(&error, SignerError::Config(message) if message.contains("loading the PKCS#11 module")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_login_is_unavailable_once_then_the_session_is_reopened() {
    let Some(hsm) = SoftHsm::require() else {
        return;
    };
    let (token, spki) = token_with_key(hsm, "signer-relogin", KeyKind::EcdsaP256);
    let uri = token.uri("checkpoint", "pin-value=246810");
    let backend = open_backend(&uri).await.unwrap();
    backend.sign(TEXT.as_bytes()).await.unwrap();

    token.log_out_everywhere().unwrap();
    let error = backend.sign(TEXT.as_bytes()).await.unwrap_err();
    assert!(
        matches!(error, SignerError::Unavailable(_)),
        "a lost login is worth a retry: {error}"
    );
    // The next call opens a session and logs in again.
    backend.sign(TEXT.as_bytes()).await.unwrap();

    // Through a LogSigner the retry happens inside one sign_note.
    let signer = LogSigner::new(ORIGIN, backend, "pkcs11").unwrap();
    token.log_out_everywhere().unwrap();
    let signed = signer.sign_note(TEXT).await.unwrap();
    let verifier = note::verifier_from_spki_der(ORIGIN, &spki).unwrap();
    Note::parse(signed.as_bytes())
        .unwrap()
        .verify(&[verifier.as_ref()])
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deleted_under_a_running_signer_is_refused() {
    let Some(hsm) = SoftHsm::require() else {
        return;
    };
    let (token, _) = token_with_key(hsm, "signer-deleted", KeyKind::EcdsaP256);
    let backend = open_backend(&token.uri("checkpoint", "pin-value=246810"))
        .await
        .unwrap();
    backend.sign(TEXT.as_bytes()).await.unwrap();
    token.delete_key("checkpoint").unwrap();
    // The handle is gone: the session is dropped, and the new one finds no key.
    let first = backend.sign(TEXT.as_bytes()).await.unwrap_err();
    assert!(matches!(first, SignerError::Unavailable(_)), "{first}");
    let second = backend.sign(TEXT.as_bytes()).await.unwrap_err();
    assert!(
        matches!(&second, SignerError::Refused(message) if message.contains("no private key")),
        "{second}"
    );
}
