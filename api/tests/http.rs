//! HTTP-level tests with `actix_web::test`: routes, headers, status codes and bodies
//! (rekor-v2-api.md §2.1, §7, §10, §15; tlog-tiles.md §2, §12), over the in-process log.

mod support;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{test, App};
use rekor_api::backend::SubmitError;
use rekor_api::memory_log::InjectedFault;
use rekor_api::{ApiConfig, ApiState, PublicKeyDetails};
use serde_json::{json, Value};
use std::sync::Arc;
use support::*;

/// Builds the service for `state` and binds it to `$app`.
macro_rules! app {
    ($state:expr) => {{
        let state = $state.clone();
        test::init_service(App::new().configure(move |cfg| state.configure(cfg))).await
    }};
}

fn post(body: impl Into<Vec<u8>>) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/api/v2/log/entries")
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(body.into())
}

fn header_str<B>(response: &actix_web::dev::ServiceResponse<B>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

const SECTION_15_3_COMPACT: &str = concat!(
    r#"{"logIndex":"0","logId":{"keyId":"2AtEIMfG6Y41yK0tcwRTBS2tjhOrjKGIpDkHFgp65g0="},"#,
    r#""kindVersion":{"kind":"hashedrekord","version":"0.0.2"},"integratedTime":"0","inclusionPromise":null,"#,
    r#""inclusionProof":{"logIndex":"0","rootHash":"Uym3efeSrMCTH0BDFLAnqwbi1GjOYfydlkHmJc5gw9o=","treeSize":"1","hashes":[],"#,
    r#""checkpoint":{"envelope":"rekor-local\n1\nUym3efeSrMCTH0BDFLAnqwbi1GjOYfydlkHmJc5gw9o=\n\n— rekor-local 2AtEIEto2rjdlosAMG1UeQxPSPDLPF/diOZaxmBU6ZUumCnIXhVrKnLhLCmYJhYatg4p1t4CBmp+m+w3CAOtQkysKwo=\n"}},"#,
    r#""canonicalizedBody":"eyJhcGlWZXJzaW9uIjoiMC4wLjIiLCJraW5kIjoiaGFzaGVkcmVrb3JkIiwic3BlYyI6eyJoYXNoZWRSZWtvcmRWMDAyIjp7ImRhdGEiOnsiYWxnb3JpdGhtIjoiU0hBMl8yNTYiLCJkaWdlc3QiOiJkeWo0ZWRuWUhqTjQvenNqakJlZUxhaFM5c2xwOTdaNjdMVEFWeGpyalh3PSJ9LCJzaWduYXR1cmUiOnsiY29udGVudCI6Ik1FUUNJQitZUGE5bzNTTjBzUTR1ZHVHZittWnh3RmZPaEZaMENneStwN1Z0MW8yU0FpQVBGREhxT0FKTFltdnRDV09zRHlOWTFINFYzem00TkVEWXMzTnl2SGgxUGc9PSIsInZlcmlmaWVyIjp7ImtleURldGFpbHMiOiJQS0lYX0VDRFNBX1AyNTZfU0hBXzI1NiIsInB1YmxpY0tleSI6eyJyYXdCeXRlcyI6Ik1Ga3dFd1lIS29aSXpqMENBUVlJS29aSXpqMERBUWNEUWdBRTJzbE9mOGVaY2oybW9XMnQ0VUZqN3ZDTDZRcER6a0RxcVNVbW00T0pDVnZJYXVLTHhtMGFHczNWTVBQZmF1TVBhTXV0bjAvczNqZzBycm9GeG9pY3lnPT0ifX19fX19"}"#
);

fn section_15_1_request() -> Value {
    json!({"hashedRekordRequestV002": {
        "digest": "dyj4ednYHjN4/zsjjBeeLahS9slp97Z67LTAVxjrjXw=",
        "signature": {
            "content": "MEQCIB+YPa9o3SN0sQ4uduGf+mZxwFfOhFZ0Cgy+p7Vt1o2SAiAPFDHqOAJLYmvtCWOsDyNY1H4V3zm4NEDYs3NyvHh1Pg==",
            "verifier": {
                "publicKey": {"rawBytes": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2slOf8eZcj2moW2t4UFj7vCL6QpDzkDqqSUmm4OJCVvIauKLxm0aGs3VMPPfauMPaMutn0/s3jg0rroFxoicyg=="},
                "keyDetails": "PKIX_ECDSA_P256_SHA_256"
            }
        }
    }})
}

#[actix_web::test]
async fn section_15_4_empty_tree_checkpoint() {
    let (_log, state) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    let app = app!(state);
    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/v2/checkpoint")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_str(&response, "content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
    assert_eq!(header_str(&response, "cache-control").unwrap(), "no-cache");
    let body = test::read_body(response).await;
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        "rekor-local\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n\u{2014} rekor-local 2AtEIMW9FcaEMSaxW3Q+uG1WCwP65vde3Rllsrhb+D06rjMtNKEhhkLXmkJ4lkyWpuZpiNC29calCGi2lS9Y8iCbmQg=\n"
    );
}

#[actix_web::test]
async fn section_15_3_complete_response_end_to_end() {
    let (log, state) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    assert_eq!(
        rekor_api::proto_json::encode_bytes(&log.log_id()),
        "2AtEIMfG6Y41yK0tcwRTBS2tjhOrjKGIpDkHFgp65g0="
    );
    let app = app!(state);
    let response =
        test::call_service(&app, post(section_15_1_request().to_string()).to_request()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header_str(&response, "content-type").unwrap(),
        "application/json"
    );
    for absent in ["cache-control", "location", "etag", "x-log-index"] {
        assert!(response.headers().get(absent).is_none(), "{absent} present");
    }
    let body = test::read_body(response).await;
    assert_eq!(std::str::from_utf8(&body).unwrap(), SECTION_15_3_COMPACT);
    // The checkpoint route now serves the same note as the response.
    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/v2/checkpoint")
            .to_request(),
    )
    .await;
    let served = test::read_body(response).await;
    let tle: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        served,
        tle["inclusionProof"]["checkpoint"]["envelope"]
            .as_str()
            .unwrap()
            .as_bytes()
    );
}

#[actix_web::test]
async fn duplicate_is_409_with_x_log_index_and_log_unchanged() {
    let (log, state) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    let app = app!(state);
    let client = P256Client::new();
    for i in 0..3 {
        let r = test::call_service(
            &app,
            post(client.request(format!("a{i}").as_bytes()).to_string()).to_request(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    assert_eq!(log.size().await, 3);
    // A different verifier encoding (certificate vs key) is a different body, not a duplicate.
    let response = test::call_service(
        &app,
        post(upstream_valid_request().to_string()).to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = test::call_service(
        &app,
        post(upstream_valid_cert_request().to_string()).to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let same = client.request(b"twice");
    let first = test::call_service(&app, post(same.to_string()).to_request()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let second = test::call_service(&app, post(same.to_string()).to_request()).await;
    assert_eq!(second.status(), StatusCode::CONFLICT);
    assert_eq!(header_str(&second, "x-log-index").unwrap(), "5");
    assert_eq!(
        header_str(&second, "content-type").unwrap(),
        "application/json"
    );
    let body: Value = test::read_body_json(second).await;
    assert_eq!(
        body,
        json!({"code": 6, "message": "an equivalent entry already exists in the transparency log with index 5", "details": []})
    );
    assert_eq!(log.size().await, 6);
    // Same request in another spelling (proto names, URL-safe base64): same body, duplicate.
    let r = &same["hashedRekordRequestV002"];
    let respelled = json!({"hashed_rekord_request_v002": {"digest": r["digest"], "signature": {
        "content": r["signature"]["content"],
        "verifier": {"public_key": {"raw_bytes": r["signature"]["verifier"]["publicKey"]["rawBytes"]}, "key_details": 5}}}});
    let third = test::call_service(&app, post(respelled.to_string()).to_request()).await;
    assert_eq!(third.status(), StatusCode::CONFLICT);
    assert_eq!(header_str(&third, "x-log-index").unwrap(), "5");
    assert_eq!(log.size().await, 6);
}

#[actix_web::test]
async fn read_routes_serve_tiles_and_bundles_with_cache_headers() {
    let (log, state) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    let app = app!(state);
    let client = P256Client::new();
    let mut bodies = Vec::new();
    for i in 0..300u32 {
        let response = test::call_service(
            &app,
            post(client.request(&i.to_be_bytes()).to_string()).to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let tle: Value = test::read_body_json(response).await;
        assert_eq!(tle["logIndex"], json!(i.to_string()));
        assert_eq!(
            tle["inclusionProof"]["treeSize"],
            json!((i + 1).to_string())
        );
        bodies.push(b64(tle["canonicalizedBody"].as_str().unwrap()));
    }
    assert_eq!(log.size().await, 300);
    let get = |uri: &str| test::TestRequest::get().uri(uri).to_request();
    for (uri, len) in [
        ("/api/v2/tile/0/000", 256 * 32),
        ("/api/v2/tile/0/001.p/44", 44 * 32),
        ("/api/v2/tile/1/000.p/1", 32),
        ("/api/v2/tile/0/000.p/7", 7 * 32),
    ] {
        let response = test::call_service(&app, get(uri)).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        assert_eq!(
            header_str(&response, "content-type").unwrap(),
            "application/octet-stream"
        );
        assert_eq!(
            header_str(&response, "cache-control").unwrap(),
            "max-age=604800,immutable"
        );
        assert_eq!(test::read_body(response).await.len(), len, "{uri}");
    }
    // The level-0 tile holds the leaf hashes of the logged bodies.
    let tile =
        test::read_body(test::call_service(&app, get("/api/v2/tile/0/001.p/44")).await).await;
    assert_eq!(&tile[..32], rekor_api::canonical::leaf_hash(&bodies[256]));
    // Entry bundles: 2-byte big-endian length + body, per entry.
    let bundle =
        test::read_body(test::call_service(&app, get("/api/v2/tile/entries/001.p/44")).await).await;
    let decoded = rekor_storage::tiles::decode_bundle(&bundle).unwrap();
    assert_eq!(decoded.len(), 44);
    assert_eq!(decoded[0], bodies[256].as_slice());
    let response = test::call_service(&app, get("/api/v2/tile/entries/000")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_str(&response, "cache-control").unwrap(),
        "max-age=604800,immutable"
    );
    // Beyond the served checkpoint, or malformed: 404 JSON.
    for uri in [
        "/api/v2/tile/0/001",
        "/api/v2/tile/0/001.p/45",
        "/api/v2/tile/1/000",
        "/api/v2/tile/entries/002.p/1",
        "/api/v2/tile/0/1",
        "/api/v2/tile/0/x000/001",
        "/api/v2/tile/00/000",
        "/api/v2/tile/0/000.p/256",
        "/api/v2/tile/64/000",
        "/api/v2/tile/entries/",
    ] {
        let response = test::call_service(&app, get(uri)).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
        let body: Value = test::read_body_json(response).await;
        assert_eq!(
            body,
            json!({"code": 5, "message": "Not Found", "details": []}),
            "{uri}"
        );
    }
}

/// With an instance configured, `/healthz` names it: the node id and the process's start token.
#[actix_web::test]
async fn healthz_names_the_instance() {
    let config = ApiConfig {
        instance: Some(rekor_api::Instance {
            node_id: 3,
            start_token: "token-\"quoted\"".into(),
        }),
        ..ApiConfig::default()
    };
    let (_log, state) = log_and_state(upstream_ed25519_signer(), config).await;
    let app = app!(state);
    let response =
        test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_str(&response, "content-type").unwrap(),
        "application/json"
    );
    let body: Value = test::read_body_json(response).await;
    assert_eq!(
        body,
        json!({"status": "SERVING", "nodeId": 3, "startToken": "token-\"quoted\""})
    );
}

#[actix_web::test]
async fn healthz_not_found_and_wrong_methods() {
    let (_log, state) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    let app = app!(state);
    for uri in ["/healthz", "/healthz?service=rekor"] {
        let response =
            test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_str(&response, "content-type").unwrap(),
            "application/json"
        );
        assert_eq!(
            test::read_body(response).await,
            "{\"status\":\"SERVING\"}\n"
        );
    }
    for uri in [
        "/",
        "/api/v2",
        "/api/v1/log/entries",
        "/api/v2/log/entries/0",
        "/checkpoint",
    ] {
        let response =
            test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(
            header_str(&response, "content-type").unwrap(),
            "application/json"
        );
        let body: Value = test::read_body_json(response).await;
        assert_eq!(
            body,
            json!({"code": 5, "message": "Not Found", "details": []})
        );
    }
    for (method, uri) in [
        (Method::GET, "/api/v2/log/entries"),
        (Method::PUT, "/api/v2/log/entries"),
        (Method::POST, "/healthz"),
        (Method::DELETE, "/api/v2/checkpoint"),
        (Method::POST, "/api/v2/tile/0/000"),
    ] {
        let response = test::call_service(
            &app,
            test::TestRequest::default()
                .method(method.clone())
                .uri(uri)
                .to_request(),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::NOT_IMPLEMENTED,
            "{method} {uri}"
        );
        let body: Value = test::read_body_json(response).await;
        assert_eq!(
            body,
            json!({"code": 12, "message": "Method Not Allowed", "details": []})
        );
    }
}

#[actix_web::test]
async fn any_content_type_and_trailing_bytes_are_accepted() {
    let (log, state) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    let app = app!(state);
    let client = P256Client::new();
    let mut body = client.request(b"x").to_string().into_bytes();
    body.extend_from_slice(b"\n trailing bytes are ignored");
    let request = test::TestRequest::post()
        .uri("/api/v2/log/entries")
        .insert_header((header::CONTENT_TYPE, "text/plain"))
        .insert_header((header::ACCEPT, "application/xml"))
        .set_payload(body)
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(log.size().await, 1);
}

#[actix_web::test]
async fn frozen_log_answers_405_plain_text() {
    let config = ApiConfig {
        read_only: true,
        ..ApiConfig::default()
    };
    let (log, state) = log_and_state(upstream_ed25519_signer(), config).await;
    let app = app!(state);
    let response =
        test::call_service(&app, post(section_15_1_request().to_string()).to_request()).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        header_str(&response, "content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        test::read_body(response).await,
        "This log has been frozen, please switch to the latest log.\n"
    );
    assert_eq!(log.size().await, 0);
    // Reads keep being served.
    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/v2/checkpoint")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[actix_web::test]
async fn backend_errors_map_to_their_statuses() {
    let (log, state) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    let app = app!(state);
    let client = P256Client::new();
    let cases = [
        (
            InjectedFault::Fail(SubmitError::Overloaded),
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"code": 14, "message": "reached max pushback; retry", "details": []}),
        ),
        (
            InjectedFault::Fail(SubmitError::Unavailable("no leader".into())),
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"code": 14, "message": "log unavailable; retry", "details": []}),
        ),
        (
            InjectedFault::Fail(SubmitError::Internal("disk".into())),
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"code": 2, "message": "failed to integrate entry", "details": []}),
        ),
    ];
    for (i, (fault, status, body)) in cases.into_iter().enumerate() {
        log.inject_fault(fault);
        let response = test::call_service(
            &app,
            post(client.request(&[i as u8]).to_string()).to_request(),
        )
        .await;
        assert_eq!(response.status(), status);
        let got: Value = test::read_body_json(response).await;
        assert_eq!(got, body);
    }
    assert_eq!(log.size().await, 0);
    log.inject_fault(InjectedFault::Fail(SubmitError::Frozen));
    let response =
        test::call_service(&app, post(client.request(b"f").to_string()).to_request()).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        test::read_body(response).await,
        rekor_api::http::FROZEN_MESSAGE
    );

    // A proof that does not verify is never returned: 500 and the failure counter.
    assert_eq!(state.metrics().inclusion_proof_failure_total.get(), 0);
    log.inject_fault(InjectedFault::CorruptProof);
    let response = test::call_service(
        &app,
        post(client.request(b"corrupt").to_string()).to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let got: Value = test::read_body_json(response).await;
    assert_eq!(
        got,
        json!({"code": 2, "message": "failed to integrate entry", "details": []})
    );
    assert_eq!(state.metrics().inclusion_proof_failure_total.get(), 1);
}

#[actix_web::test]
async fn metrics_route_exposes_upstream_names() {
    let (_log, state) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    let app = app!(state);
    let client = P256Client::new();
    let response =
        test::call_service(&app, post(client.request(b"m").to_string()).to_request()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = test::call_service(&app, post(b"{}".to_vec()).to_request()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response =
        test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
    for line in [
        "rekor_v2_new_hashedrekord_entries 1",
        "rekor_v2_new_dsse_entries 0",
        "rekor_v2_inclusion_proof_failure_total 0",
        "rekor_v2_http_requests_total{code=\"201\",method=\"POST\"} 1",
        "rekor_v2_http_requests_total{code=\"400\",method=\"POST\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("rekor_v2_http_api_latency_bucket"));
}

#[actix_web::test]
async fn valid_entries_of_every_allowed_algorithm() {
    use sha2::Digest as _;
    use signature::hazmat::PrehashSigner as _;
    let (log, state) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    let app = app!(state);
    let hashed = |verifier: Value, digest: &[u8], signature: &[u8]| json!({"hashedRekordRequestV002": {"digest": b64e(digest), "signature": {"content": b64e(signature), "verifier": verifier}}});
    let mut requests: Vec<(&str, Value, &str)> = vec![
        (
            "upstream P-256 public key",
            upstream_valid_request(),
            "SHA2_256",
        ),
        (
            "upstream P-256 certificate",
            upstream_valid_cert_request(),
            "SHA2_256",
        ),
        (
            "upstream P-384",
            vectors()["hashedrekord"]["to_log_entry_cases"][8]["request_protojson"].clone(),
            "SHA2_384",
        ),
    ];
    // P-256 with an IEEE P1363 signature.
    let p256 = P256Client::new();
    let digest = sha2::Sha256::digest(b"p1363");
    let signature: p256::ecdsa::Signature = p256.key.sign_prehash(&digest).unwrap();
    requests.push((
        "P-256 P1363",
        hashed(json!({"publicKey": {"rawBytes": b64e(&p256.spki)}, "keyDetails": "PKIX_ECDSA_P256_SHA_256"}), &digest, &signature.to_bytes()),
        "SHA2_256",
    ));
    // P-521 / SHA-512.
    let p521 = p521::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let p521_spki = {
        use p521::pkcs8::EncodePublicKey as _;
        p521::PublicKey::from_sec1_bytes(
            p521::ecdsa::VerifyingKey::from(&p521)
                .to_encoded_point(false)
                .as_bytes(),
        )
        .unwrap()
        .to_public_key_der()
        .unwrap()
        .into_vec()
    };
    let digest = sha2::Sha512::digest(b"p521");
    let signature: p521::ecdsa::Signature = p521.sign_prehash(&digest).unwrap();
    requests.push((
        "P-521",
        hashed(json!({"publicKey": {"rawBytes": b64e(&p521_spki)}, "keyDetails": "PKIX_ECDSA_P521_SHA_512"}), &digest, &signature.to_der().to_bytes()),
        "SHA2_512",
    ));
    // RSA-2048 PKCS#1 v1.5 / SHA-256 (the upstream note test key).
    let rsa_private = {
        use rsa::pkcs8::DecodePrivateKey as _;
        rsa::RsaPrivateKey::from_pkcs8_pem(
            vectors()["keys"]["rsa_2048"]["private_key_pem"]
                .as_str()
                .unwrap(),
        )
        .unwrap()
    };
    let digest = sha2::Sha256::digest(b"rsa");
    let signature = rsa_private
        .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
        .unwrap();
    let rsa_spki = pem_der(
        vectors()["keys"]["rsa_2048"]["public_key_pem"]
            .as_str()
            .unwrap(),
    );
    requests.push((
        "RSA-2048",
        hashed(json!({"publicKey": {"rawBytes": b64e(&rsa_spki)}, "keyDetails": "PKIX_RSA_PKCS1V15_2048_SHA256"}), &digest, &signature),
        "SHA2_256",
    ));
    // Ed25519ph over a SHA-512 digest (the upstream Ed25519 test key).
    let ed = {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        ed25519_dalek::SigningKey::from_pkcs8_pem(
            vectors()["keys"]["ed25519"]["private_key_pem"]
                .as_str()
                .unwrap(),
        )
        .unwrap()
    };
    let mut prehash = sha2::Sha512::new();
    sha2::Digest::update(&mut prehash, b"ed25519ph");
    let digest = prehash.clone().finalize();
    let signature = ed.sign_prehashed(prehash, None).unwrap();
    let ed_spki = pem_der(
        vectors()["keys"]["ed25519"]["public_key_pem"]
            .as_str()
            .unwrap(),
    );
    requests.push((
        "Ed25519ph",
        hashed(
            json!({"publicKey": {"rawBytes": b64e(&ed_spki)}, "keyDetails": "PKIX_ED25519_PH"}),
            &digest,
            &signature.to_bytes(),
        ),
        "SHA2_512",
    ));

    for (i, (name, request, algorithm)) in requests.iter().enumerate() {
        let response = test::call_service(&app, post(request.to_string()).to_request()).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{name}");
        let tle: Value = test::read_body_json(response).await;
        assert_eq!(tle["logIndex"], json!(i.to_string()), "{name}");
        let body: Value =
            serde_json::from_slice(&b64(tle["canonicalizedBody"].as_str().unwrap())).unwrap();
        let r = &request["hashedRekordRequestV002"];
        assert_eq!(
            body,
            json!({"apiVersion": "0.0.2", "kind": "hashedrekord", "spec": {"hashedRekordV002": {
                "data": {"algorithm": algorithm, "digest": r["digest"]}, "signature": r["signature"]}}}),
            "{name}: the verifier is not echoed verbatim"
        );
    }
    assert_eq!(log.size().await, requests.len() as u64);
}

#[actix_web::test]
async fn legacy_dsse_is_opt_in() {
    use ed25519_dalek::Signer as _;
    let ed = {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        ed25519_dalek::SigningKey::from_pkcs8_pem(
            vectors()["keys"]["ed25519"]["private_key_pem"]
                .as_str()
                .unwrap(),
        )
        .unwrap()
    };
    let payload = b"{}";
    let signature = ed.sign(&rekor_api::entry::pre_authentication_encoding("t", payload));
    let request = json!({"dsseRequestV002": {
        "envelope": {"payload": b64e(payload), "payloadType": "t", "signatures": [{"sig": b64e(&signature.to_bytes())}]},
        "verifiers": [{"publicKey": {"rawBytes": b64e(&pem_der(vectors()["keys"]["ed25519"]["public_key_pem"].as_str().unwrap()))}, "keyDetails": "PKIX_ED25519"}]
    }});

    let (log, state) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    let app = app!(state);
    let response = test::call_service(&app, post(request.to_string()).to_request()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(
        body,
        json!({"code": 3, "message": "invalid type, must be hashedrekord", "details": []})
    );
    assert_eq!(log.size().await, 0);

    let config = ApiConfig {
        enable_dsse: true,
        ..ApiConfig::default()
    };
    let (log, state) = log_and_state(upstream_ed25519_signer(), config).await;
    let app = app!(state);
    let response = test::call_service(&app, post(request.to_string()).to_request()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let tle: Value = test::read_body_json(response).await;
    assert_eq!(
        tle["kindVersion"],
        json!({"kind": "dsse", "version": "0.0.2"})
    );
    assert_eq!(log.size().await, 1);
    assert_eq!(state.metrics().new_dsse_entries.get(), 1);
    // Errors name the legacy type too.
    let mut bad = request.clone();
    bad["dsseRequestV002"]["envelope"]["payloadType"] = json!("u");
    let response = test::call_service(&app, post(bad.to_string()).to_request()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(
        body,
        json!({"code": 3, "message": "invalid dsse request", "details": []})
    );
    let response = test::call_service(&app, post(b"{}".to_vec()).to_request()).await;
    let body: Value = test::read_body_json(response).await;
    assert_eq!(
        body["message"],
        json!("invalid type, must be either hashedrekord or dsse")
    );
}

#[actix_web::test]
async fn narrowed_algorithm_list_rejects_the_rest() {
    let config = ApiConfig {
        algorithms: rekor_api::AlgorithmPolicy::new([PublicKeyDetails::PKIX_ED25519_PH]).unwrap(),
        ..ApiConfig::default()
    };
    let (log, state) = log_and_state(upstream_ed25519_signer(), config).await;
    let app = app!(state);
    let response = test::call_service(
        &app,
        post(upstream_valid_request().to_string()).to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(
        body,
        json!({"code": 3, "message": "invalid hashedrekord request", "details": []})
    );
    assert_eq!(log.size().await, 0);
}

/// Issue #12, item 10: a validly signed request whose canonical body would exceed the 65,535-byte
/// bundle-record limit is the client's fault: 400 with the reason, nothing logged (upstream
/// answers 500 `failed to integrate entry`).
#[actix_web::test]
async fn a_validly_signed_entry_too_large_to_log_is_a_400() {
    use der::{Decode as _, Encode as _};
    use sha2::Digest as _;
    use signature::hazmat::PrehashSigner as _;
    use x509_cert::der::asn1::{ObjectIdentifier, OctetString};
    use x509_cert::ext::Extension;
    use x509_cert::spki::SubjectPublicKeyInfoOwned;

    let (log, state) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    let app = app!(state);
    let client = P256Client::new();
    // The test certificate with the client's key and a 50,000-byte private extension: the log
    // reads only the key out of a certificate, so it verifies.
    let keys = &vectors()["keys"];
    let der = b64(keys["x509_certificate_p256"]["certificate_der_b64"]
        .as_str()
        .unwrap());
    let mut cert = x509_cert::Certificate::from_der(&der).unwrap();
    cert.tbs_certificate.subject_public_key_info =
        SubjectPublicKeyInfoOwned::from_der(&client.spki).unwrap();
    cert.tbs_certificate
        .extensions
        .get_or_insert_with(Vec::new)
        .push(Extension {
            extn_id: ObjectIdentifier::new_unwrap("1.3.6.1.4.1.55555.1"),
            critical: false,
            extn_value: OctetString::new(vec![0x5a; 50_000]).unwrap(),
        });
    let cert = cert.to_der().unwrap();
    let digest = sha2::Sha256::digest(b"large");
    let signature: p256::ecdsa::Signature = client.key.sign_prehash(&digest).unwrap();
    let request = json!({"hashedRekordRequestV002": {
        "digest": b64e(&digest),
        "signature": {
            "content": b64e(signature.to_der().as_bytes()),
            "verifier": {"x509Certificate": {"rawBytes": b64e(&cert)}, "keyDetails": "PKIX_ECDSA_P256_SHA_256"}
        }
    }});
    let response = test::call_service(&app, post(request.to_string()).to_request()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let got: Value = test::read_body_json(response).await;
    assert_eq!(
        got,
        json!({
            "code": 3,
            "message": "invalid hashedrekord request: the canonical entry would exceed 65535 bytes",
            "details": []
        })
    );
    assert_eq!(log.size().await, 0);
}

fn get(uri: &str) -> test::TestRequest {
    test::TestRequest::get().uri(uri)
}

/// `GET /api/v2/log/entries/{index}` (our extension): off unless configured; then the entry
/// behind a 409 comes back as the 201's exact bytes, and bad or absent indices are refused.
#[actix_web::test]
async fn the_entry_lookup_route_answers_the_201_bytes_when_enabled() {
    let (_log, off) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    let app = app!(off);
    let created =
        test::call_service(&app, post(section_15_1_request().to_string()).to_request()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let response = test::call_service(&app, get("/api/v2/log/entries/0").to_request()).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "off by default");

    let config = ApiConfig {
        entry_lookup: true,
        ..ApiConfig::default()
    };
    let (_log, state) = log_and_state(upstream_ed25519_signer(), config).await;
    let app = app!(state);
    let created =
        test::call_service(&app, post(section_15_1_request().to_string()).to_request()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = test::read_body(created).await;
    let duplicate =
        test::call_service(&app, post(section_15_1_request().to_string()).to_request()).await;
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);
    let index = header_str(&duplicate, "x-log-index").unwrap();

    let response = test::call_service(
        &app,
        get(&format!("/api/v2/log/entries/{index}")).to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_str(&response, "content-type").unwrap(),
        "application/json"
    );
    let body = test::read_body(response).await;
    assert_eq!(body, created, "the same bytes as the 201");
    assert_eq!(std::str::from_utf8(&body).unwrap(), SECTION_15_3_COMPACT);

    for (uri, status, code) in [
        ("/api/v2/log/entries/1", StatusCode::NOT_FOUND, 5),
        (
            "/api/v2/log/entries/18446744073709551615",
            StatusCode::NOT_FOUND,
            5,
        ),
        ("/api/v2/log/entries/-1", StatusCode::BAD_REQUEST, 3),
        ("/api/v2/log/entries/00", StatusCode::BAD_REQUEST, 3),
        ("/api/v2/log/entries/1e3", StatusCode::BAD_REQUEST, 3),
        (
            "/api/v2/log/entries/18446744073709551616",
            StatusCode::BAD_REQUEST,
            3,
        ),
    ] {
        let response = test::call_service(&app, get(uri).to_request()).await;
        assert_eq!(response.status(), status, "{uri}");
        let body: Value = serde_json::from_slice(&test::read_body(response).await).unwrap();
        assert_eq!(body["code"], code, "{uri}: {body}");
    }
    let response = test::call_service(
        &app,
        test::TestRequest::delete()
            .uri("/api/v2/log/entries/0")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
}

/// A backend whose readiness check fails: `/healthz` must say so, `/livez` must not care.
struct Unready(Arc<rekor_api::memory_log::MemoryLog>);

impl rekor_api::LogBackend for Unready {
    fn submit(
        &self,
        entry: rekor_api::ValidatedEntry,
    ) -> rekor_api::backend::BoxFuture<'_, Result<rekor_api::LoggedEntry, rekor_api::SubmitError>>
    {
        self.0.submit(entry)
    }
    fn checkpoint(
        &self,
    ) -> rekor_api::backend::BoxFuture<'_, Result<Option<bytes::Bytes>, rekor_api::ReadError>> {
        self.0.checkpoint()
    }
    fn tile(
        &self,
        id: rekor_api::TileRequest,
    ) -> rekor_api::backend::BoxFuture<'_, Result<Option<bytes::Bytes>, rekor_api::ReadError>> {
        self.0.tile(id)
    }
    fn entry(
        &self,
        index: u64,
    ) -> rekor_api::backend::BoxFuture<
        '_,
        Result<Option<rekor_api::StoredEntry>, rekor_api::ReadError>,
    > {
        self.0.entry(index)
    }
    fn readiness(&self) -> rekor_api::backend::BoxFuture<'_, rekor_api::Readiness> {
        Box::pin(async {
            rekor_api::Readiness {
                checks: vec![
                    rekor_api::ReadinessCheck::passed("quorum", "leader"),
                    rekor_api::ReadinessCheck::failed("tile_store", "no answer within 2000 ms"),
                ],
            }
        })
    }
}

#[actix_web::test]
async fn healthz_reports_failed_checks_and_livez_does_not() {
    let (log, _) = log_and_state(upstream_ed25519_signer(), ApiConfig::default()).await;
    let config = ApiConfig {
        instance: Some(rekor_api::Instance {
            node_id: 2,
            start_token: "t".into(),
        }),
        ..ApiConfig::default()
    };
    let state =
        ApiState::new(config, Arc::new(Unready(log)), &prometheus::Registry::new()).unwrap();
    let app = app!(state);
    let response = test::call_service(&app, get("/healthz").to_request()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header_str(&response, "cache-control").unwrap(), "no-store");
    let body: Value = test::read_body_json(response).await;
    assert_eq!(
        body,
        json!({
            "status": "NOT_SERVING",
            "nodeId": 2,
            "startToken": "t",
            "checks": {
                "quorum": {"status": "ok", "detail": "leader"},
                "tile_store": {"status": "failed", "detail": "no answer within 2000 ms"},
            }
        })
    );
    let response = test::call_service(&app, get("/livez").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(
        body,
        json!({"status": "ok", "nodeId": 2, "startToken": "t"})
    );
    let response =
        test::call_service(&app, test::TestRequest::post().uri("/livez").to_request()).await;
    assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
}
