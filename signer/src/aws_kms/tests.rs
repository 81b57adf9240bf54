//! Request shapes and answers, against a scripted HTTP server on loopback: a stand-in for the
//! KMS API that records each request and answers with canned responses (no KMS logic at all;
//! the backend against a real implementation of the API is tested in
//! `cluster-tests/tests/aws_kms_moto.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted HTTP server: answers the n-th request with `answers[n]` and closes the connection.
struct Scripted {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    async fn start(answers: Vec<(u16, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            for (status, body) in answers {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut buffer = Vec::new();
                let head_end = loop {
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed before the request ended");
                    buffer.extend_from_slice(&chunk[..n]);
                    if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let head = String::from_utf8(buffer[..head_end].to_vec()).unwrap();
                let headers: Vec<(String, String)> = head
                    .lines()
                    .skip(1)
                    .filter_map(|line| line.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                while buffer.len() < head_end + length {
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0);
                    buffer.extend_from_slice(&chunk[..n]);
                }
                assert!(head.starts_with("POST / HTTP/1.1\r\n"), "{head}");
                record.lock().unwrap().push(Seen {
                    headers,
                    body: serde_json::from_slice(&buffer[head_end..head_end + length]).unwrap(),
                });
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).await.unwrap();
                stream.shutdown().await.unwrap();
            }
        });
        Self { port, seen }
    }

    fn uri(&self, key: &str) -> String {
        format!("awskms://127.0.0.1:{}/{key}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn env_with(token: Option<&'static str>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        match name {
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE"),
            "AWS_SECRET_ACCESS_KEY" => Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            "AWS_REGION" => Some("eu-west-1"),
            "AWS_SESSION_TOKEN" => token,
            _ => None,
        }
        .map(str::to_owned)
    }
}

const KEY_ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn p256_key() -> (p256::ecdsa::SigningKey, String) {
    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let spki = key.verifying_key().to_public_key_der().unwrap();
    (key, BASE64.encode(spki.as_bytes()))
}

fn public_key_answer(spec: &str, usage: &str, spki_b64: &str, algorithms: &str) -> String {
    format!(
        r#"{{"KeyId":"{KEY_ARN}","KeySpec":"{spec}","CustomerMasterKeySpec":"{spec}","KeyUsage":"{usage}","PublicKey":"{spki_b64}","SigningAlgorithms":[{algorithms}]}}"#
    )
}

fn options() -> OpenOptions {
    OpenOptions {
        request_timeout: Duration::from_secs(5),
        ..OpenOptions::default()
    }
}

#[tokio::test]
async fn get_public_key_then_sign_as_the_kms_json_api_wants() {
    let (key, spki_b64) = p256_key();
    let text = b"rekor.example - 1\n5\nAAAA\n";
    let signature: p256::ecdsa::Signature = key.sign(text);
    let signature_der = signature.to_der();
    let server = Scripted::start(vec![
        (
            200,
            public_key_answer(
                "ECC_NIST_P256",
                "SIGN_VERIFY",
                &spki_b64,
                r#""ECDSA_SHA_256""#,
            ),
        ),
        (
            200,
            format!(
                r#"{{"KeyId":"{KEY_ARN}","Signature":"{}","SigningAlgorithm":"ECDSA_SHA_256"}}"#,
                BASE64.encode(signature_der.as_bytes())
            ),
        ),
    ])
    .await;
    let backend = open_with_env(
        &server.uri("alias/rekor"),
        &options(),
        &env_with(Some("session-token-example")),
    )
    .await
    .unwrap();
    assert_eq!(
        backend.public_key_der(),
        key.verifying_key().to_public_key_der().unwrap().as_bytes()
    );
    let signed = backend.sign(text).await.unwrap();
    assert_eq!(signed, signature_der.as_bytes());

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for (request, target) in seen.iter().zip(["GetPublicKey", "Sign"]) {
        assert_eq!(
            request.header("x-amz-target"),
            Some(format!("TrentService.{target}").as_str())
        );
        assert_eq!(request.header("content-type"), Some(client::CONTENT_TYPE));
        assert_eq!(
            request.header("x-amz-security-token"),
            Some("session-token-example")
        );
        let authorization = request.header("authorization").unwrap();
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{authorization}"
        );
        assert!(
            authorization.contains("/eu-west-1/kms/aws4_request"),
            "{authorization}"
        );
        assert!(
            authorization.contains(
                "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
            ),
            "{authorization}"
        );
        assert!(!authorization.contains("wJalr"), "{authorization}");
        assert!(request.header("x-amz-date").is_some());
    }
    assert_eq!(seen[0].body, json!({ "KeyId": "alias/rekor" }));
    // The alias was resolved once: signatures name the key GetPublicKey answered with.
    assert_eq!(
        seen[1].body,
        json!({
            "KeyId": KEY_ARN,
            "Message": BASE64.encode(text),
            "MessageType": "RAW",
            "SigningAlgorithm": "ECDSA_SHA_256",
        })
    );
    assert!(backend.describe().contains(KEY_ARN));
    assert!(!backend.describe().contains("wJalr"));
}

#[tokio::test]
async fn an_ed25519_key_signs_raw_with_ed25519_sha_512() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let spki = key.verifying_key().to_public_key_der().unwrap();
    let server = Scripted::start(vec![(
        200,
        public_key_answer(
            "ECC_NIST_EDWARDS25519",
            "SIGN_VERIFY",
            &BASE64.encode(spki.as_bytes()),
            r#""ED25519_SHA_512","ED25519_PH_SHA_512""#,
        ),
    )])
    .await;
    let client = KmsClient::new(
        HttpClient::new(Duration::from_secs(5)).unwrap(),
        AwsConfig::resolve(
            &KeyRef::parse(&server.uri("alias/ed")).unwrap(),
            &env_with(None),
        )
        .unwrap(),
    );
    let backend = AwsKmsBackend::open(client, "alias/ed").await.unwrap();
    assert_eq!(backend.key_id(), KEY_ARN);
    assert_eq!(
        backend.sign_request(b"note\n").unwrap(),
        json!({
            "KeyId": KEY_ARN,
            "Message": BASE64.encode(b"note\n"),
            "MessageType": "RAW",
            "SigningAlgorithm": "ED25519_SHA_512",
        })
    );
    // Ed25519 over a digest would be Ed25519ph: a text too long for RAW is refused.
    let long = vec![b'x'; MAX_RAW_MESSAGE + 1];
    assert!(matches!(
        backend.sign_request(&long),
        Err(SignerError::Refused(_))
    ));
    assert!(server.seen()[0].header("x-amz-security-token").is_none());
}

#[tokio::test]
async fn a_long_p256_text_is_signed_as_its_sha256_digest() {
    let (_, spki_b64) = p256_key();
    let server = Scripted::start(vec![(
        200,
        public_key_answer(
            "ECC_NIST_P256",
            "SIGN_VERIFY",
            &spki_b64,
            r#""ECDSA_SHA_256""#,
        ),
    )])
    .await;
    let config = AwsConfig::resolve(
        &KeyRef::parse(&server.uri("alias/p")).unwrap(),
        &env_with(None),
    )
    .unwrap();
    let client = KmsClient::new(HttpClient::new(Duration::from_secs(5)).unwrap(), config);
    let backend = AwsKmsBackend::open(client, "alias/p").await.unwrap();
    let long = vec![b'x'; MAX_RAW_MESSAGE + 1];
    assert_eq!(
        backend.sign_request(&long).unwrap(),
        json!({
            "KeyId": KEY_ARN,
            "Message": BASE64.encode(Sha256::digest(&long)),
            "MessageType": "DIGEST",
            "SigningAlgorithm": "ECDSA_SHA_256",
        })
    );
}

#[tokio::test]
async fn keys_a_log_cannot_sign_with_are_refused_at_open() {
    let (_, p256_b64) = p256_key();
    for (answer, expected) in [
        (
            public_key_answer(
                "RSA_2048",
                "SIGN_VERIFY",
                &p256_b64,
                r#""RSASSA_PSS_SHA_256""#,
            ),
            "RSA_2048",
        ),
        (
            public_key_answer("ECC_NIST_P256", "ENCRYPT_DECRYPT", &p256_b64, ""),
            "ENCRYPT_DECRYPT",
        ),
        (
            public_key_answer(
                "ECC_NIST_EDWARDS25519",
                "SIGN_VERIFY",
                &p256_b64,
                r#""ED25519_SHA_512""#,
            ),
            "not the ECC_NIST_EDWARDS25519 key",
        ),
    ] {
        let server = Scripted::start(vec![(200, answer)]).await;
        match open_with_env(&server.uri("alias/x"), &options(), &env_with(None)).await {
            Err(SignerError::UnsupportedKey(message)) => {
                assert!(message.contains(expected), "{message}")
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("opened an unusable key"),
        }
    }
}

#[tokio::test]
async fn kms_errors_reach_the_caller_sorted() {
    let (_, spki_b64) = p256_key();
    let server = Scripted::start(vec![
        (
            400,
            r#"{"__type":"NotFoundException","message":"Alias arn:aws:kms:eu-west-1:111122223333:alias/nope is not found."}"#.into(),
        ),
        (
            200,
            public_key_answer("ECC_NIST_P256", "SIGN_VERIFY", &spki_b64, r#""ECDSA_SHA_256""#),
        ),
        (
            400,
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into(),
        ),
        (
            400,
            r#"{"__type":"DisabledException","message":"key is disabled"}"#.into(),
        ),
    ])
    .await;
    match open_with_env(&server.uri("alias/nope"), &options(), &env_with(None)).await {
        Err(SignerError::Refused(message)) => {
            assert!(message.contains("NotFoundException"), "{message}");
            assert!(message.contains("alias/nope is not found"), "{message}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened a missing key"),
    }
    let backend = open_with_env(&server.uri("alias/rekor"), &options(), &env_with(None))
        .await
        .unwrap();
    assert!(matches!(
        backend.sign(b"x\n").await,
        Err(SignerError::Unavailable(message)) if message.contains("ThrottlingException")
    ));
    assert!(matches!(
        backend.sign(b"x\n").await,
        Err(SignerError::Refused(message)) if message.contains("key is disabled")
    ));
}

/// The signature of a fixed request and time, computed independently with botocore's
/// `SigV4Auth` (the AWS SDK for Python's signer), with the AWS documentation's example
/// credentials.
#[test]
fn sigv4_matches_an_independent_implementation() {
    let key = KeyRef::parse("awskms://127.0.0.1:4566/alias/rekor").unwrap();
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
    let body = br#"{"KeyId":"alias/rekor"}"#;
    for (token, signed_headers, signature) in [
        (
            None,
            "content-type;host;x-amz-date;x-amz-target",
            "0804ea9aa1332f73549adad31762e1ddab538bf7bc4916476f885d80922c4abd",
        ),
        (
            Some("session-token-example"),
            "content-type;host;x-amz-date;x-amz-security-token;x-amz-target",
            "a825108f2e8c9d5839833719a93c1caf00ea46636e48fa7f9e3c977f33255a00",
        ),
    ] {
        let env = move |name: &str| match name {
            "AWS_REGION" => Some("us-east-1".to_owned()),
            _ => env_with(token)(name),
        };
        let client = KmsClient::new(
            HttpClient::new(Duration::from_secs(1)).unwrap(),
            AwsConfig::resolve(&key, &env).unwrap(),
        );
        let headers = client
            .signed_headers("TrentService.GetPublicKey", body, time)
            .unwrap();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(header("x-amz-security-token"), token);
        assert_eq!(
            header("authorization").unwrap(),
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, \
                 SignedHeaders={signed_headers}, Signature={signature}"
            )
        );
    }
}
