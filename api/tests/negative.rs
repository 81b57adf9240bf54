//! The negative suite: for every decoding and validation rule (rekor-v2-api.md §3, §5, §10,
//! §13) one request that breaks only that rule. Each must get 400 with the right body, and the
//! log must be unchanged afterwards.

#[path = "../benches/decode/shapes.rs"]
mod shapes;
mod support;

use actix_web::http::{header, StatusCode};
use actix_web::{test, App};
use rekor_api::ApiConfig;
use serde_json::{json, Value};
use support::*;

const HASHEDREKORD: &str = "invalid hashedrekord request";
const INVALID_TYPE: &str = "invalid type, must be hashedrekord";
/// protojson's own error text: we only require our `proto:` prefix.
const PROTO: &str = "proto:";

macro_rules! read_checkpoint {
    ($app:expr) => {{
        let response = test::call_service(
            $app,
            test::TestRequest::get()
                .uri("/api/v2/checkpoint")
                .to_request(),
        )
        .await;
        test::read_body(response).await.to_vec()
    }};
}

type Mutation = Box<dyn Fn(&mut Value)>;

fn set(path: &[&str], value: Value) -> Mutation {
    let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
    Box::new(move |request: &mut Value| {
        let mut at = request;
        for key in &path[..path.len() - 1] {
            at = &mut at[key.as_str()];
        }
        match value {
            Value::Null => {
                at.as_object_mut()
                    .unwrap()
                    .remove(path[path.len() - 1].as_str());
            }
            ref v => at[path[path.len() - 1].as_str()] = v.clone(),
        }
    })
}

const H: &str = "hashedRekordRequestV002";

fn json_cases() -> Vec<(&'static str, Mutation, &'static str)> {
    let v = vectors();
    let keys = &v["keys"];
    let cert_der = keys["x509_certificate_p256"]["certificate_der_b64"]
        .as_str()
        .unwrap()
        .to_owned();
    let cert_pem = keys["x509_certificate_p256"]["certificate_pem"]
        .as_str()
        .unwrap()
        .to_owned();
    let p256_spki = keys["ecdsa_p256"]["public_key_spki_der_b64"]
        .as_str()
        .unwrap()
        .to_owned();
    let p256_pem = keys["ecdsa_p256"]["public_key_pem"]
        .as_str()
        .unwrap()
        .to_owned();
    let ed_spki = b64e(&pem_der(
        keys["ed25519"]["public_key_pem"].as_str().unwrap(),
    ));
    let mut spki_trailing = b64(&p256_spki);
    spki_trailing.push(0);
    let base = upstream_valid_request();
    let digest = b64(base[H]["digest"].as_str().unwrap());
    let content = b64(base[H]["signature"]["content"].as_str().unwrap());
    let mut flipped = content.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let mut other_digest = digest.clone();
    other_digest[0] ^= 1;
    vec![
        // §3 decoding.
        ("unknown top-level field", set(&["foo"], json!(1)), PROTO),
        (
            "unknown nested field",
            set(&[H, "signature", "verifier", "extra"], json!("x")),
            PROTO,
        ),
        (
            "field under both names",
            set(&[H, "signature", "verifier", "key_details"], json!(5)),
            PROTO,
        ),
        (
            "two members of the verifier oneof",
            set(
                &[H, "signature", "verifier", "x509Certificate"],
                json!({"rawBytes": cert_der}),
            ),
            PROTO,
        ),
        (
            "two members of the spec oneof",
            set(&["dsseRequestV002"], json!({})),
            PROTO,
        ),
        (
            "bad base64",
            set(&[H, "digest"], json!("not*base64")),
            PROTO,
        ),
        (
            "base64 with wrong padding",
            set(
                &[H, "digest"],
                json!("WzUT9YDIOXIS/yyPRZwZnvwMkOQ1Sl81M63wo//zpTA=="),
            ),
            PROTO,
        ),
        (
            "unknown enum name",
            set(
                &[H, "signature", "verifier", "keyDetails"],
                json!("ECDSA_P256"),
            ),
            PROTO,
        ),
        (
            "enum as a string number",
            set(&[H, "signature", "verifier", "keyDetails"], json!("5")),
            PROTO,
        ),
        ("bytes as a number", set(&[H, "digest"], json!(7)), PROTO),
        (
            "message as a string",
            set(&[H, "signature"], json!("sig")),
            PROTO,
        ),
        (
            "wrong-case field name",
            set(&[H, "Digest"], json!("AA==")),
            PROTO,
        ),
        // §4 type.
        (
            "no spec",
            Box::new(|r: &mut Value| *r = json!({})),
            INVALID_TYPE,
        ),
        ("null spec", set(&[H], json!(null)), INVALID_TYPE),
        (
            "dsse while legacy DSSE is off",
            Box::new(|r: &mut Value| *r = json!({"dsseRequestV002": {}})),
            INVALID_TYPE,
        ),
        // §5 step 1: presence.
        (
            "missing signature",
            set(&[H, "signature"], Value::Null),
            HASHEDREKORD,
        ),
        (
            "empty signature content",
            set(&[H, "signature", "content"], json!("")),
            HASHEDREKORD,
        ),
        (
            "missing verifier",
            set(&[H, "signature", "verifier"], Value::Null),
            HASHEDREKORD,
        ),
        (
            "missing digest",
            set(&[H, "digest"], Value::Null),
            HASHEDREKORD,
        ),
        (
            "verifier without key material",
            set(&[H, "signature", "verifier", "publicKey"], Value::Null),
            HASHEDREKORD,
        ),
        (
            "empty public key bytes",
            set(&[H, "signature", "verifier", "publicKey"], json!({})),
            HASHEDREKORD,
        ),
        // §5 step 2: parse the verifier.
        (
            "PEM public key",
            set(
                &[H, "signature", "verifier", "publicKey", "rawBytes"],
                json!(b64e(p256_pem.as_bytes())),
            ),
            HASHEDREKORD,
        ),
        (
            "SPKI with a trailing byte",
            set(
                &[H, "signature", "verifier", "publicKey", "rawBytes"],
                json!(b64e(&spki_trailing)),
            ),
            HASHEDREKORD,
        ),
        (
            "certificate in publicKey",
            set(
                &[H, "signature", "verifier", "publicKey", "rawBytes"],
                json!(cert_der),
            ),
            HASHEDREKORD,
        ),
        (
            "SPKI in x509Certificate",
            Box::new(move |r: &mut Value| {
                r[H]["signature"]["verifier"] = json!({"x509Certificate": {"rawBytes": p256_spki}, "keyDetails": "PKIX_ECDSA_P256_SHA_256"});
            }),
            HASHEDREKORD,
        ),
        (
            "PEM certificate",
            Box::new(move |r: &mut Value| {
                r[H]["signature"]["verifier"] = json!({"x509Certificate": {"rawBytes": b64e(cert_pem.as_bytes())}, "keyDetails": "PKIX_ECDSA_P256_SHA_256"});
            }),
            HASHEDREKORD,
        ),
        // §5 step 3: keyDetails must be a registry value.
        (
            "keyDetails unspecified",
            set(&[H, "signature", "verifier", "keyDetails"], Value::Null),
            HASHEDREKORD,
        ),
        (
            "keyDetails unknown number",
            set(&[H, "signature", "verifier", "keyDetails"], json!(99)),
            HASHEDREKORD,
        ),
        (
            "keyDetails deprecated PKIX_RSA_PKCS1V5",
            set(
                &[H, "signature", "verifier", "keyDetails"],
                json!("PKIX_RSA_PKCS1V5"),
            ),
            HASHEDREKORD,
        ),
        (
            "keyDetails HMAC",
            set(
                &[H, "signature", "verifier", "keyDetails"],
                json!("PKIX_ECDSA_P256_HMAC_SHA_256"),
            ),
            HASHEDREKORD,
        ),
        (
            "keyDetails ML-DSA",
            set(
                &[H, "signature", "verifier", "keyDetails"],
                json!("ML_DSA_65"),
            ),
            HASHEDREKORD,
        ),
        // §5 step 4: policy, and keyDetails must describe the key (our §5.2 choice).
        (
            "keyDetails for another curve",
            set(
                &[H, "signature", "verifier", "keyDetails"],
                json!("PKIX_ECDSA_P384_SHA_384"),
            ),
            HASHEDREKORD,
        ),
        (
            "keyDetails RSA for a P-256 key",
            set(
                &[H, "signature", "verifier", "keyDetails"],
                json!("PKIX_RSA_PKCS1V15_2048_SHA256"),
            ),
            HASHEDREKORD,
        ),
        (
            "keyDetails known but not allowed (RSA-PSS)",
            set(
                &[H, "signature", "verifier", "keyDetails"],
                json!("PKIX_RSA_PSS_2048_SHA256"),
            ),
            HASHEDREKORD,
        ),
        (
            "keyDetails PKIX_ED25519 with a P-256 key",
            set(
                &[H, "signature", "verifier", "keyDetails"],
                json!("PKIX_ED25519"),
            ),
            HASHEDREKORD,
        ),
        // §5 step 5: pure Ed25519.
        (
            "pure Ed25519",
            Box::new(move |r: &mut Value| {
                r[H]["signature"]["verifier"] =
                    json!({"publicKey": {"rawBytes": ed_spki}, "keyDetails": "PKIX_ED25519"});
                r[H]["digest"] = json!(b64e(&[0xab; 64]));
            }),
            HASHEDREKORD,
        ),
        // §5 step 6: digest length.
        (
            "digest of 31 bytes",
            set(&[H, "digest"], json!(b64e(&digest[..31]))),
            HASHEDREKORD,
        ),
        (
            "digest of 33 bytes",
            set(
                &[H, "digest"],
                json!(b64e(&[digest.as_slice(), &[0]].concat())),
            ),
            HASHEDREKORD,
        ),
        // §5 step 7: the signature.
        (
            "one signature byte changed",
            set(&[H, "signature", "content"], json!(b64e(&flipped))),
            HASHEDREKORD,
        ),
        (
            "signature over another digest",
            set(&[H, "digest"], json!(b64e(&other_digest))),
            HASHEDREKORD,
        ),
        (
            "signature not DER nor P1363",
            set(&[H, "signature", "content"], json!(b64e(b"foobar"))),
            HASHEDREKORD,
        ),
    ]
}

#[actix_web::test]
async fn every_rule_has_a_request_that_breaks_only_it() {
    let (log, state) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    let app = test::init_service(App::new().configure(|cfg| state.configure(cfg))).await;
    // A valid entry first, so "unchanged" means more than "still empty".
    let response = test::call_service(
        &app,
        post(b"".to_vec(), &P256Client::new().request(b"first")).to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let checkpoint_before = read_checkpoint!(&app);

    // The untouched base request is valid: each case below breaks exactly one thing.
    let base = upstream_valid_request();
    let validator = state.validator();
    let decoded = rekor_api::CreateEntryRequest::from_json(base.to_string().as_bytes()).unwrap();
    assert!(validator.validate(&decoded).is_ok());

    let cases = json_cases();
    assert!(cases.len() >= 40);
    for (name, mutate, message) in &cases {
        let mut request = base.clone();
        mutate(&mut request);
        let response = test::call_service(&app, post(b"".to_vec(), &request).to_request()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/json",
            "{name}"
        );
        let body: Value = test::read_body_json(response).await;
        assert_eq!(body["code"], json!(3), "{name}");
        assert_eq!(body["details"], json!([]), "{name}");
        let got = body["message"].as_str().unwrap();
        if *message == PROTO {
            assert!(got.starts_with(PROTO), "{name}: {got}");
        } else {
            assert_eq!(got, *message, "{name}");
        }
        assert_eq!(log.size().await, 1, "{name} changed the log");
    }

    // Raw-body rules.
    let raw: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty body", Vec::new(), INVALID_TYPE),
        (
            "syntax error",
            b"{\"hashedRekordRequestV002\":".to_vec(),
            PROTO,
        ),
        (
            "duplicate key",
            format!("{{\"{H}\":{{}},\"{H}\":{{}}}}").into_bytes(),
            PROTO,
        ),
        (
            "raw newline in a string",
            b"{\"hashedRekordRequestV002\":{\"digest\":\"AA\nAA\"}}".to_vec(),
            PROTO,
        ),
        ("not an object", b"[]".to_vec(), PROTO),
    ];
    for (name, body, message) in raw {
        let response = test::call_service(&app, post(body, &Value::Null).to_request()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        let body: Value = test::read_body_json(response).await;
        let got = body["message"].as_str().unwrap();
        assert!(
            if message == PROTO {
                got.starts_with(PROTO)
            } else {
                got == message
            },
            "{name}: {got}"
        );
        assert_eq!(log.size().await, 1, "{name} changed the log");
    }

    // §13: a body over 4 MiB is 400, not 413, even if it is otherwise valid JSON.
    let mut huge = upstream_valid_request();
    huge[H]["signature"]["verifier"]["publicKey"]["rawBytes"] =
        json!(b64e(&vec![0u8; 3 * 1024 * 1024 + 1]));
    let huge = huge.to_string().into_bytes();
    assert!(huge.len() > rekor_api::http::DEFAULT_MAX_REQUEST_BODY_SIZE);
    let response = test::call_service(&app, post(huge, &Value::Null).to_request()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(
        body,
        json!({"code": 3, "message": "http: request body too large", "details": []})
    );

    assert_eq!(log.size().await, 1);
    assert_eq!(read_checkpoint!(&app), checkpoint_before);
}

fn post(raw: Vec<u8>, request: &Value) -> test::TestRequest {
    let body = if request.is_null() {
        raw
    } else {
        request.to_string().into_bytes()
    };
    test::TestRequest::post()
        .uri("/api/v2/log/entries")
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(body)
}

/// The decoding benchmark's worst 4 MiB bodies get the verdicts they should (their timing is
/// in `benches/decode`).
#[actix_web::test]
async fn worst_case_bodies_get_their_verdicts() {
    for shape in shapes::shapes() {
        let got = rekor_api::CreateEntryRequest::from_json(&shape.body);
        match (shape.expected, &got) {
            (shapes::Expected::Accepted, Ok(_)) => {}
            (shapes::Expected::Rejected(text), Err(error)) => {
                let message = error.to_string();
                assert!(message.contains(text), "{}: {message}", shape.name);
                assert!(
                    message.len() < 512,
                    "{}: {} bytes",
                    shape.name,
                    message.len()
                );
            }
            (expected, got) => panic!(
                "{}: expected {expected:?}, got {:?}",
                shape.name,
                got.as_ref().map(|_| "a request")
            ),
        }
    }
}
