//! The HTTP signer backends of `rekor-signer` (GCP Cloud KMS, Azure Key Vault, Vault transit)
//! against the fakes of their APIs (`rekor_cluster_tests::kms_fakes`): opening, signing and
//! verifying, token renewal, refused credentials, outages, latency and the fakes' own checks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rekor_cluster_tests::kms_fakes::azure::FakeAzureKeyVault;
use rekor_cluster_tests::kms_fakes::gcp::FakeGcpKms;
use rekor_cluster_tests::kms_fakes::vault::FakeVault;
use rekor_cluster_tests::wait_until;
use rekor_signer::azure_key_vault::{self, AzureCredentials};
use rekor_signer::gcp_kms::{self, GcpCredentials, GcpSettings};
use rekor_signer::vault_transit::{self, VaultSettings, VaultToken};
use rekor_signer::{KeyBackend, LogSigner, OpenOptions, RetryPolicy, SignerError};

const ORIGIN: &str = "signer-fakes.test";
const NOTE: &str = "signer-fakes.test\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

fn options() -> OpenOptions {
    OpenOptions {
        request_timeout: Duration::from_secs(3),
        ..OpenOptions::default()
    }
}

/// No retries: each call is one attempt, so the test sees the backend's own error.
fn one_attempt() -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::from_secs(3),
        total_timeout: Duration::ZERO,
        ..RetryPolicy::default()
    }
}

/// A log signer over `backend` whose public key must be `expected`; signing checks every
/// signature against it.
fn log_signer(backend: Arc<dyn KeyBackend>, expected: &[u8]) -> LogSigner {
    assert_eq!(backend.public_key_der(), expected, "{}", backend.describe());
    LogSigner::new(ORIGIN, backend, "test")
        .unwrap()
        .with_retry(one_attempt())
}

fn error_of<T>(result: Result<T, SignerError>) -> SignerError {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(error) => error,
    }
}

// GCP Cloud KMS.

fn gcp_static(fake: &FakeGcpKms, token: &str) -> GcpSettings {
    GcpSettings {
        endpoint: fake.endpoint().parse().unwrap(),
        credentials: GcpCredentials::AccessToken(token.into()),
    }
}

fn gcp_metadata(fake: &FakeGcpKms) -> GcpSettings {
    GcpSettings {
        endpoint: fake.endpoint().parse().unwrap(),
        credentials: GcpCredentials::MetadataServer {
            host: fake.metadata_host(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_p256_and_ed25519_keys_sign_in_one_round_trip() {
    let fake = FakeGcpKms::start().unwrap();
    for key in [FakeGcpKms::P256_KEY, FakeGcpKms::ED25519_KEY] {
        let backend = gcp_kms::open_with(
            &FakeGcpKms::uri(key),
            &options(),
            gcp_static(&fake, FakeGcpKms::STATIC_TOKEN),
        )
        .await
        .unwrap();
        assert!(!backend.describe().contains(FakeGcpKms::STATIC_TOKEN));
        let signer = log_signer(backend, &fake.public_key_der(key).unwrap());
        let before = fake.controls().requests();
        let note = signer.sign_note(NOTE).await.unwrap();
        assert!(note.starts_with(NOTE), "{note}");
        assert_eq!(
            fake.controls().requests(),
            before + 1,
            "one request per signature"
        );
    }
    assert_eq!(fake.controls().signatures(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_metadata_tokens_are_renewed_before_they_expire() {
    let fake = FakeGcpKms::start().unwrap();
    fake.set_token_lifetime(Duration::from_secs(2));
    let backend = gcp_kms::open_with(
        &FakeGcpKms::uri(FakeGcpKms::P256_KEY),
        &options(),
        gcp_metadata(&fake),
    )
    .await
    .unwrap();
    assert_eq!(fake.controls().tokens_issued(), 1);
    let signer = log_signer(backend, &fake.public_key_der(FakeGcpKms::P256_KEY).unwrap());
    signer.sign_note(NOTE).await.unwrap();
    let first = fake.last_token_used().unwrap();
    assert_eq!(
        fake.controls().tokens_issued(),
        1,
        "a fresh token is not fetched again"
    );
    // Two renewals at 80% of 2 s: by then the first token has expired at the fake.
    wait_until("two token renewals", Duration::from_secs(15), || async {
        Ok((fake.controls().tokens_issued() >= 3).then_some(()))
    })
    .await
    .unwrap();
    signer.sign_note(NOTE).await.unwrap();
    assert_ne!(fake.last_token_used().unwrap(), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_refused_tokens_are_refused_and_then_replaced() {
    let fake = FakeGcpKms::start().unwrap();
    let error = error_of(
        gcp_kms::open_with(
            &FakeGcpKms::uri(FakeGcpKms::P256_KEY),
            &options(),
            gcp_static(&fake, "ya29.wrong"),
        )
        .await,
    );
    assert!(matches!(error, SignerError::Refused(_)), "{error}");

    // A revoked metadata token: refused once, then a new token is fetched.
    let backend = gcp_kms::open_with(
        &FakeGcpKms::uri(FakeGcpKms::ED25519_KEY),
        &options(),
        gcp_metadata(&fake),
    )
    .await
    .unwrap();
    let signer = log_signer(
        backend,
        &fake.public_key_der(FakeGcpKms::ED25519_KEY).unwrap(),
    );
    fake.revoke_tokens();
    let error = error_of(signer.sign_note(NOTE).await);
    assert!(matches!(error, SignerError::Refused(_)), "{error}");
    signer.sign_note(NOTE).await.unwrap();
    assert_eq!(fake.controls().tokens_issued(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_outage_is_unavailable_and_passes() {
    let fake = FakeGcpKms::start().unwrap();
    let backend = gcp_kms::open_with(
        &FakeGcpKms::uri(FakeGcpKms::P256_KEY),
        &options(),
        gcp_static(&fake, FakeGcpKms::STATIC_TOKEN),
    )
    .await
    .unwrap();
    let signer = log_signer(backend, &fake.public_key_der(FakeGcpKms::P256_KEY).unwrap());
    fake.controls().set_available(false);
    let error = error_of(signer.sign_note(NOTE).await);
    assert!(matches!(error, SignerError::Unavailable(_)), "{error}");
    fake.controls().set_available(true);
    signer.sign_note(NOTE).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_fake_refuses_what_the_api_refuses() {
    let fake = FakeGcpKms::start().unwrap();
    let client = reqwest::Client::new();
    let sign_url = format!(
        "{}/v1/{}:asymmetricSign",
        fake.endpoint(),
        FakeGcpKms::P256_KEY
    );
    let unauthenticated = client
        .post(&sign_url)
        .json(&serde_json::json!({"digest": {"sha256": ""}}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let body: serde_json::Value = unauthenticated.json().await.unwrap();
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    let wrong_field = client
        .post(&sign_url)
        .bearer_auth(FakeGcpKms::STATIC_TOKEN)
        .json(&serde_json::json!({"data": "aGVsbG8="}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_field.status(), 400);
    let no_flavor = client
        .get(format!(
            "http://{}/computeMetadata/v1/instance/service-accounts/default/token",
            fake.metadata_host()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(no_flavor.status(), 403);
    assert_eq!(fake.controls().signatures(), 0);
}

// Azure Key Vault.

fn azure_secret(fake: &FakeAzureKeyVault) -> AzureCredentials {
    AzureCredentials::ClientSecret {
        authority: format!("{}/", fake.base_url()).parse().unwrap(),
        tenant: FakeAzureKeyVault::TENANT_ID.into(),
        client_id: FakeAzureKeyVault::CLIENT_ID.into(),
        secret: FakeAzureKeyVault::CLIENT_SECRET.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_signs_with_the_current_version_or_the_one_named() {
    let fake = FakeAzureKeyVault::start().unwrap();
    let versions = fake.versions();
    let (old, current) = (&versions[0], &versions[1]);

    let backend = azure_key_vault::open_with(&fake.uri(), &options(), azure_secret(&fake))
        .await
        .unwrap();
    assert!(backend.describe().contains(current.as_str()));
    assert!(!backend
        .describe()
        .contains(FakeAzureKeyVault::CLIENT_SECRET));
    let signer = log_signer(backend, &fake.public_key_der(current).unwrap());
    let before = fake.controls().requests();
    signer.sign_note(NOTE).await.unwrap();
    assert_eq!(
        fake.controls().requests(),
        before + 1,
        "one request per signature"
    );

    let pinned =
        azure_key_vault::open_with(&fake.uri_with_version(old), &options(), azure_secret(&fake))
            .await
            .unwrap();
    log_signer(pinned, &fake.public_key_der(old).unwrap())
        .sign_note(NOTE)
        .await
        .unwrap();
    assert_eq!(fake.controls().signatures(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_managed_identity_tokens_are_renewed() {
    let fake = FakeAzureKeyVault::start().unwrap();
    fake.set_token_lifetime(Duration::from_secs(2));
    let credentials = AzureCredentials::ManagedIdentity {
        endpoint: format!("{}/", fake.base_url()).parse().unwrap(),
        client_id: None,
    };
    let backend = azure_key_vault::open_with(&fake.uri(), &options(), credentials)
        .await
        .unwrap();
    let current = fake.versions().pop().unwrap();
    let signer = log_signer(backend, &fake.public_key_der(&current).unwrap());
    signer.sign_note(NOTE).await.unwrap();
    let first = fake.last_token_used().unwrap();
    wait_until("two token renewals", Duration::from_secs(15), || async {
        Ok((fake.controls().tokens_issued() >= 3).then_some(()))
    })
    .await
    .unwrap();
    signer.sign_note(NOTE).await.unwrap();
    assert_ne!(fake.last_token_used().unwrap(), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_wrong_secret_is_refused_and_outage_unavailable() {
    let fake = FakeAzureKeyVault::start().unwrap();
    let AzureCredentials::ClientSecret {
        authority,
        tenant,
        client_id,
        ..
    } = azure_secret(&fake)
    else {
        unreachable!()
    };
    let wrong = AzureCredentials::ClientSecret {
        authority,
        tenant,
        client_id,
        secret: "not-the-secret".into(),
    };
    let error = error_of(azure_key_vault::open_with(&fake.uri(), &options(), wrong).await);
    assert!(matches!(error, SignerError::Refused(_)), "{error}");

    let backend = azure_key_vault::open_with(&fake.uri(), &options(), azure_secret(&fake))
        .await
        .unwrap();
    let current = fake.versions().pop().unwrap();
    let signer = log_signer(backend, &fake.public_key_der(&current).unwrap());
    fake.revoke_tokens();
    let error = error_of(signer.sign_note(NOTE).await);
    assert!(matches!(error, SignerError::Refused(_)), "{error}");
    fake.controls().set_available(false);
    let error = error_of(signer.sign_note(NOTE).await);
    assert!(matches!(error, SignerError::Unavailable(_)), "{error}");
    fake.controls().set_available(true);
    signer.sign_note(NOTE).await.unwrap();
}

// Vault transit.

fn vault_settings(fake: &FakeVault, token: VaultToken) -> VaultSettings {
    VaultSettings {
        address: fake.address().parse().unwrap(),
        token,
        namespace: None,
        mount: "transit".into(),
    }
}

fn vault_token(fake: &FakeVault) -> VaultToken {
    VaultToken::Value(fake.token())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_ed25519_and_p256_keys_sign_with_the_version_read() {
    let fake = FakeVault::start().unwrap();
    for key in [FakeVault::ED25519_KEY, FakeVault::P256_KEY] {
        let backend = vault_transit::open_with(
            &FakeVault::uri(key),
            &options(),
            vault_settings(&fake, vault_token(&fake)),
        )
        .await
        .unwrap();
        assert!(!backend.describe().contains(FakeVault::INITIAL_TOKEN));
        let signer = log_signer(backend, &fake.public_key_der(key, 1).unwrap());
        let before = fake.controls().requests();
        signer.sign_note(NOTE).await.unwrap();
        assert_eq!(fake.controls().requests(), before + 1);
        // A rotation in Vault does not change the key the log signs with.
        assert_eq!(fake.rotate(key), Some(2));
        signer.sign_note(NOTE).await.unwrap();
    }
    assert_eq!(fake.controls().signatures(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_wrong_token_is_refused_and_a_renewed_token_file_is_read() {
    let fake = FakeVault::start().unwrap();
    let error = error_of(
        vault_transit::open_with(
            &FakeVault::uri(FakeVault::P256_KEY),
            &options(),
            vault_settings(&fake, VaultToken::Value("hvs.wrong".into())),
        )
        .await,
    );
    assert!(matches!(error, SignerError::Refused(_)), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", fake.token())).unwrap();
    let from_file = vault_transit::open_with(
        &FakeVault::uri(FakeVault::P256_KEY),
        &options(),
        vault_settings(&fake, VaultToken::File(token_file.clone())),
    )
    .await
    .unwrap();
    let from_file = log_signer(
        from_file,
        &fake.public_key_der(FakeVault::P256_KEY, 1).unwrap(),
    );
    let fixed = vault_transit::open_with(
        &FakeVault::uri(FakeVault::P256_KEY),
        &options(),
        vault_settings(&fake, vault_token(&fake)),
    )
    .await
    .unwrap();
    let fixed = log_signer(fixed, &fake.public_key_der(FakeVault::P256_KEY, 1).unwrap());

    // The old token is revoked and a new one written to the file (as a Vault Agent would).
    fake.set_token("hvs.renewed");
    let error = error_of(fixed.sign_note(NOTE).await);
    assert!(matches!(error, SignerError::Refused(_)), "{error}");
    let error = error_of(from_file.sign_note(NOTE).await);
    assert!(
        matches!(error, SignerError::Refused(_)),
        "the file still holds the old token: {error}"
    );
    std::fs::write(&token_file, "hvs.renewed\n").unwrap();
    from_file.sign_note(NOTE).await.unwrap();
    from_file.sign_note(NOTE).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_namespace_header_is_sent() {
    let fake = FakeVault::start().unwrap();
    fake.set_namespace(Some("team-a"));
    let uri = FakeVault::uri(FakeVault::ED25519_KEY);
    let error = error_of(
        vault_transit::open_with(&uri, &options(), vault_settings(&fake, vault_token(&fake))).await,
    );
    assert!(matches!(error, SignerError::Refused(_)), "{error}");
    let mut settings = vault_settings(&fake, vault_token(&fake));
    settings.namespace = Some("team-a".into());
    let backend = vault_transit::open_with(&uri, &options(), settings)
        .await
        .unwrap();
    log_signer(
        backend,
        &fake.public_key_der(FakeVault::ED25519_KEY, 1).unwrap(),
    )
    .sign_note(NOTE)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_outage_delay_and_concurrency() {
    let fake = FakeVault::start().unwrap();
    let backend = vault_transit::open_with(
        &FakeVault::uri(FakeVault::P256_KEY),
        &options(),
        vault_settings(&fake, vault_token(&fake)),
    )
    .await
    .unwrap();
    let signer = Arc::new(log_signer(
        backend,
        &fake.public_key_der(FakeVault::P256_KEY, 1).unwrap(),
    ));

    fake.controls().set_available(false);
    let error = error_of(signer.sign_note(NOTE).await);
    assert!(matches!(error, SignerError::Unavailable(_)), "{error}");
    fake.controls().set_available(true);
    signer.sign_note(NOTE).await.unwrap();

    // The delay is per signature and does not serialise concurrent requests.
    let delay = Duration::from_millis(300);
    fake.controls().set_delay(delay);
    let started = Instant::now();
    let signatures = futures::future::join_all((0..10).map(|_| {
        let signer = Arc::clone(&signer);
        async move { signer.sign_note(NOTE).await }
    }))
    .await;
    let elapsed = started.elapsed();
    assert!(signatures.iter().all(Result::is_ok), "{signatures:?}");
    assert!(elapsed >= delay, "{elapsed:?}");
    assert!(elapsed < delay * 6, "10 signatures took {elapsed:?}");

    // A signature slower than the attempt deadline times out.
    let impatient = vault_transit::open_with(
        &FakeVault::uri(FakeVault::P256_KEY),
        &options(),
        vault_settings(&fake, vault_token(&fake)),
    )
    .await
    .unwrap();
    let impatient = LogSigner::new(ORIGIN, impatient, "test")
        .unwrap()
        .with_retry(RetryPolicy {
            attempt_timeout: Duration::from_millis(100),
            total_timeout: Duration::ZERO,
            ..RetryPolicy::default()
        });
    let error = error_of(impatient.sign_note(NOTE).await);
    assert!(matches!(error, SignerError::Timeout(_)), "{error}");
    assert_eq!(fake.controls().signatures(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_fake_checks_requests_and_stops_on_drop() {
    let fake = FakeVault::start().unwrap();
    let client = reqwest::Client::new();
    let sign_url = format!("{}/v1/transit/sign/{}", fake.address(), FakeVault::P256_KEY);
    let forbidden = client
        .post(&sign_url)
        .json(&serde_json::json!({"input": "aGVsbG8="}))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    let body: serde_json::Value = forbidden.json().await.unwrap();
    assert_eq!(body["errors"][0], "permission denied");
    let unknown_field = client
        .post(&sign_url)
        .header("X-Vault-Token", fake.token())
        .json(&serde_json::json!({"input": "aGVsbG8=", "algorithm": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_field.status(), 400);
    assert_eq!(fake.controls().signatures(), 0);

    let address = fake.address();
    drop(fake);
    let after = client.get(format!("{address}/v1/sys/health")).send().await;
    assert!(
        after.is_err(),
        "the fake still answers after it was dropped"
    );
}
