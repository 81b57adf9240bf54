//! The byte-exact vectors of rekor-v2-api.md §15 and the upstream hashedrekord cases in
//! `testdata/rekor-tiles/vectors.json` (built from sigstore/rekor-tiles
//! `pkg/types/hashedrekord/hashedrekord_test.go` at 74e3eb0; see the testdata README).

use base64::Engine as _;
use rekor_api::backend::{EntryKind, LoggedEntry};
use rekor_api::canonical::{hashedrekord_body, identity_hash, leaf_hash};
use rekor_api::entry::{pre_authentication_encoding, EntryError};
use rekor_api::key_details::{AlgorithmPolicy, HashAlgorithm, PublicKeyDetails};
use rekor_api::request::{CreateEntryRequest, Verifier, VerifierMaterial};
use rekor_api::response::transparency_log_entry;
use rekor_api::EntryValidator;
use serde_json::{json, Value};
use sha2::Digest as _;

mod support;

use support::{b64, b64e, vectors};

fn validate(
    validator: &EntryValidator,
    request: &Value,
) -> Result<rekor_api::ValidatedEntry, EntryError> {
    let decoded = CreateEntryRequest::from_json(request.to_string().as_bytes()).unwrap();
    validator.validate(&decoded).map_err(|(e, _)| e)
}

/// §15.1 inputs (upstream CLIENTS.md sample).
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

const SECTION_15_1_BODY: &str = r#"{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{"hashedRekordV002":{"data":{"algorithm":"SHA2_256","digest":"dyj4ednYHjN4/zsjjBeeLahS9slp97Z67LTAVxjrjXw="},"signature":{"content":"MEQCIB+YPa9o3SN0sQ4uduGf+mZxwFfOhFZ0Cgy+p7Vt1o2SAiAPFDHqOAJLYmvtCWOsDyNY1H4V3zm4NEDYs3NyvHh1Pg==","verifier":{"keyDetails":"PKIX_ECDSA_P256_SHA_256","publicKey":{"rawBytes":"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2slOf8eZcj2moW2t4UFj7vCL6QpDzkDqqSUmm4OJCVvIauKLxm0aGs3VMPPfauMPaMutn0/s3jg0rroFxoicyg=="}}}}}}"#;

#[test]
fn section_15_1_canonical_body_and_leaf_hash() {
    let entry = validate(
        &EntryValidator::new(AlgorithmPolicy::default(), false),
        &section_15_1_request(),
    )
    .unwrap();
    assert_eq!(entry.kind, EntryKind::HashedRekord);
    assert_eq!(entry.canonical_body.len(), 489);
    assert_eq!(
        std::str::from_utf8(&entry.canonical_body).unwrap(),
        SECTION_15_1_BODY
    );
    assert_eq!(
        hex::encode(entry.leaf_hash),
        "5329b779f792acc0931f404314b027ab06e2d468ce61fc9d9641e625ce60c3da"
    );
    assert_eq!(
        entry.identity,
        <[u8; 32]>::from(sha2::Sha256::digest(SECTION_15_1_BODY))
    );
}

#[test]
fn section_15_1_same_body_from_proto_names_and_url_safe_unpadded_base64() {
    // The stored form is rebuilt from the parsed message (§3): names normalised, bytes re-encoded.
    let request = section_15_1_request();
    let h = &request["hashedRekordRequestV002"];
    let url_safe = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b64(v.as_str().unwrap()))
    };
    let rewritten = json!({"hashed_rekord_request_v002": {
        "digest": url_safe(&h["digest"]),
        "signature": {
            "content": url_safe(&h["signature"]["content"]),
            "verifier": {
                "key_details": 5,
                "public_key": {"raw_bytes": url_safe(&h["signature"]["verifier"]["publicKey"]["rawBytes"])}
            }
        }
    }});
    let entry = validate(
        &EntryValidator::new(AlgorithmPolicy::default(), false),
        &rewritten,
    )
    .unwrap();
    assert_eq!(
        std::str::from_utf8(&entry.canonical_body).unwrap(),
        SECTION_15_1_BODY
    );
}

#[test]
fn upstream_to_log_entry_cases_give_the_expected_verdict() {
    let vectors = vectors();
    let cases = vectors["hashedrekord"]["to_log_entry_cases"]
        .as_array()
        .unwrap();
    assert_eq!(cases.len(), 11);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let allowed: Vec<PublicKeyDetails> = case["allowed_key_details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| PublicKeyDetails::from_name(v.as_str().unwrap()).unwrap())
            .collect();
        let validator = EntryValidator::new(AlgorithmPolicy::new(allowed).unwrap(), false);
        let result = validate(&validator, &case["request_protojson"]);
        let expect = &case["expect"];
        if expect["ok"].as_bool().unwrap() {
            let entry = result.unwrap_or_else(|e| panic!("{name}: rejected: {e}"));
            let derived = &expect["derived_not_asserted_upstream"];
            assert_eq!(
                std::str::from_utf8(&entry.canonical_body).unwrap(),
                derived["canonicalized_body_utf8"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(
                hex::encode(entry.leaf_hash),
                derived["entry_leaf_hash_hex"].as_str().unwrap(),
                "{name}"
            );
            // The body parses back to the upstream Entry.
            let parsed: Value = serde_json::from_slice(&entry.canonical_body).unwrap();
            assert_eq!(parsed, expect["entry_protojson"], "{name}");
        } else {
            let error = result.err().unwrap_or_else(|| panic!("{name}: accepted"));
            let wanted = expect["error_contains"].as_str().unwrap();
            assert!(
                error.to_string().contains(wanted),
                "{name}: {error} lacks {wanted:?}"
            );
        }
    }
}

#[test]
fn upstream_pure_ed25519_case_is_rejected() {
    let vectors = vectors();
    let case = &vectors["hashedrekord"]["ed25519_pure_rejected_case"];
    let spki = b64(&vectors["keys"]["ed25519"]["public_key_pem"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>());
    let request = json!({"hashedRekordRequestV002": {
        "digest": b64e(&hex::decode(case["request"]["digest_hex"].as_str().unwrap()).unwrap()),
        "signature": {
            "content": b64e(case["request"]["signature_content_utf8"].as_str().unwrap().as_bytes()),
            "verifier": {"publicKey": {"rawBytes": b64e(&spki)}, "keyDetails": "PKIX_ED25519"}
        }
    }});
    // Upstream allows only PKIX_ED25519 in this test; our policy refuses to list it at all.
    assert!(AlgorithmPolicy::new([PublicKeyDetails::PKIX_ED25519]).is_err());
    let error = validate(
        &EntryValidator::new(AlgorithmPolicy::default(), false),
        &request,
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(case["expect"]["error_contains"].as_str().unwrap()),
        "{error}"
    );
    // The legacy dsse exception for pure Ed25519 does not leak into hashedrekord.
    assert!(validate(
        &EntryValidator::new(AlgorithmPolicy::default(), true),
        &request
    )
    .is_err());
}

#[test]
fn upstream_entry_hash_sensitivity_bodies() {
    let vectors = vectors();
    let section = &vectors["hashedrekord"]["entry_hash_sensitivity"];
    let mut all = vec![&section["base"]];
    all.extend(section["mutations"].as_array().unwrap());
    let mut leaves = std::collections::HashSet::new();
    for case in all {
        let inputs = &case["inputs"];
        let raw = inputs["verifier_raw_bytes_utf8"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec();
        let material = match inputs["verifier_kind"].as_str().unwrap() {
            "publicKey" => VerifierMaterial::PublicKey { raw_bytes: raw },
            "x509Certificate" => VerifierMaterial::X509Certificate { raw_bytes: raw },
            other => panic!("unknown verifier kind {other}"),
        };
        let details = PublicKeyDetails::from_name(inputs["key_details"].as_str().unwrap()).unwrap();
        let verifier = Verifier {
            material: Some(material),
            key_details: details.number(),
        };
        let hash = details
            .registry_hash()
            .unwrap()
            .unwrap_or(HashAlgorithm::Sha256);
        let body = hashedrekord_body(
            hash,
            &hex::decode(inputs["digest_hex"].as_str().unwrap()).unwrap(),
            inputs["signature_content_utf8"]
                .as_str()
                .unwrap()
                .as_bytes(),
            &verifier,
        );
        let derived = &case["derived_not_asserted_upstream"];
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            derived["canonicalized_body_utf8"].as_str().unwrap()
        );
        assert_eq!(
            hex::encode(leaf_hash(&body)),
            derived["entry_leaf_hash_hex"].as_str().unwrap()
        );
        assert!(
            leaves.insert(leaf_hash(&body)),
            "two inputs gave the same leaf"
        );
        assert_ne!(identity_hash(&body), leaf_hash(&body));
    }
}

const SECTION_15_2_BODY: &str = r#"{"apiVersion":"0.0.2","kind":"dsse","spec":{"dsseV002":{"payloadHash":{"algorithm":"SHA2_256","digest":"79Nc9bcrW57u5O4pL11rB5GRMksZ7pIxiS+zkcgsHVE="},"signatures":[{"content":"F6KvFsY+WdwlhE2nAF1HxDMR3ww6E16gy41Y3utoGyYEvfCW8qswWqfnn6u1VIU3ZEFR9SDfOwMtpKQ+WdAlAQ==","verifier":{"keyDetails":"PKIX_ED25519","publicKey":{"rawBytes":"MCowBQYDK2VwAyEAREvJyNZGjX6B3DAIuD3BTg9rIwV00GY8Xg5FU+IFDUQ="}}}]}}}"#;

fn section_15_2_request() -> Value {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    use ed25519_dalek::Signer as _;
    let vectors = vectors();
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(
        vectors["keys"]["ed25519"]["private_key_pem"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let payload = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;
    let payload_type = "application/vnd.in-toto+json";
    let signature = key.sign(&pre_authentication_encoding(payload_type, payload));
    json!({"dsseRequestV002": {
        "envelope": {
            "payload": b64e(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": b64e(&signature.to_bytes()), "keyid": ""}]
        },
        "verifiers": [{
            "publicKey": {"rawBytes": "MCowBQYDK2VwAyEAREvJyNZGjX6B3DAIuD3BTg9rIwV00GY8Xg5FU+IFDUQ="},
            "keyDetails": "PKIX_ED25519"
        }]
    }})
}

#[test]
fn section_15_2_legacy_dsse_body() {
    let request = section_15_2_request();
    let entry = validate(
        &EntryValidator::new(AlgorithmPolicy::default(), true),
        &request,
    )
    .unwrap();
    assert_eq!(entry.kind, EntryKind::Dsse);
    assert_eq!(entry.canonical_body.len(), 400);
    assert_eq!(
        std::str::from_utf8(&entry.canonical_body).unwrap(),
        SECTION_15_2_BODY
    );
    assert_eq!(
        hex::encode(entry.leaf_hash),
        "96bf5314b157d535da8575c9b9b1a1942cd8720f9aeda7a1340fe9d9c1120276"
    );
    // Off by default: the same request is an invalid type.
    let error = validate(
        &EntryValidator::new(AlgorithmPolicy::default(), false),
        &request,
    )
    .unwrap_err();
    assert_eq!(error, EntryError::InvalidType);
}

#[test]
fn legacy_dsse_rules() {
    let validator = EntryValidator::new(AlgorithmPolicy::default(), true);
    let base = section_15_2_request();
    let reject = |mutate: &dyn Fn(&mut Value)| {
        let mut request = base.clone();
        mutate(&mut request);
        validate(&validator, &request).unwrap_err()
    };
    let d = "dsseRequestV002";
    // No envelope; no verifiers; 11 verifiers; duplicate verifiers.
    assert_eq!(
        reject(&|r| r[d]["envelope"] = Value::Null),
        EntryError::MissingEnvelope
    );
    assert_eq!(
        reject(&|r| r[d]["verifiers"] = json!([])),
        EntryError::VerifierCount { count: 0 }
    );
    let v = base[d]["verifiers"][0].clone();
    assert_eq!(
        reject(&|r| r[d]["verifiers"] = json!(vec![v.clone(); 11])),
        EntryError::VerifierCount { count: 11 }
    );
    assert_eq!(
        reject(&|r| r[d]["verifiers"] = json!([v.clone(), v.clone()])),
        EntryError::DuplicateVerifier
    );
    // No signatures; an empty signature; a bad signature.
    assert_eq!(
        reject(&|r| r[d]["envelope"]["signatures"] = json!([])),
        EntryError::SignatureCount { count: 0 }
    );
    assert_eq!(
        reject(&|r| r[d]["envelope"]["signatures"][0]["sig"] = json!("")),
        EntryError::MissingSignature
    );
    assert_eq!(
        reject(&|r| r[d]["envelope"]["payloadType"] = json!("other")),
        EntryError::UnusedVerifier
    );
    // Identical signatures collapse: the body is unchanged.
    let mut doubled = base.clone();
    let sig = doubled[d]["envelope"]["signatures"][0].clone();
    doubled[d]["envelope"]["signatures"] = json!([sig.clone(), sig]);
    let entry = validate(&validator, &doubled).unwrap();
    assert_eq!(
        std::str::from_utf8(&entry.canonical_body).unwrap(),
        SECTION_15_2_BODY
    );
}

/// §15.3: the complete response for the §15.1 entry at index 0 of a fresh `rekor-local` log
/// signed with the upstream Ed25519 test key. Compared byte for byte with the spec's JSON
/// with insignificant whitespace removed (our writer emits compact JSON in field order).
#[test]
fn section_15_3_complete_response() {
    let expected_pretty = r#"{
  "logIndex": "0",
  "logId": { "keyId": "2AtEIMfG6Y41yK0tcwRTBS2tjhOrjKGIpDkHFgp65g0=" },
  "kindVersion": { "kind": "hashedrekord", "version": "0.0.2" },
  "integratedTime": "0",
  "inclusionPromise": null,
  "inclusionProof": {
    "logIndex": "0",
    "rootHash": "Uym3efeSrMCTH0BDFLAnqwbi1GjOYfydlkHmJc5gw9o=",
    "treeSize": "1",
    "hashes": [],
    "checkpoint": {
      "envelope": "rekor-local\n1\nUym3efeSrMCTH0BDFLAnqwbi1GjOYfydlkHmJc5gw9o=\n\n— rekor-local 2AtEIEto2rjdlosAMG1UeQxPSPDLPF/diOZaxmBU6ZUumCnIXhVrKnLhLCmYJhYatg4p1t4CBmp+m+w3CAOtQkysKwo=\n"
    }
  },
  "canonicalizedBody": "eyJhcGlWZXJzaW9uIjoiMC4wLjIiLCJraW5kIjoiaGFzaGVkcmVrb3JkIiwic3BlYyI6eyJoYXNoZWRSZWtvcmRWMDAyIjp7ImRhdGEiOnsiYWxnb3JpdGhtIjoiU0hBMl8yNTYiLCJkaWdlc3QiOiJkeWo0ZWRuWUhqTjQvenNqakJlZUxhaFM5c2xwOTdaNjdMVEFWeGpyalh3PSJ9LCJzaWduYXR1cmUiOnsiY29udGVudCI6Ik1FUUNJQitZUGE5bzNTTjBzUTR1ZHVHZittWnh3RmZPaEZaMENneStwN1Z0MW8yU0FpQVBGREhxT0FKTFltdnRDV09zRHlOWTFINFYzem00TkVEWXMzTnl2SGgxUGc9PSIsInZlcmlmaWVyIjp7ImtleURldGFpbHMiOiJQS0lYX0VDRFNBX1AyNTZfU0hBXzI1NiIsInB1YmxpY0tleSI6eyJyYXdCeXRlcyI6Ik1Ga3dFd1lIS29aSXpqMENBUVlJS29aSXpqMERBUWNEUWdBRTJzbE9mOGVaY2oybW9XMnQ0VUZqN3ZDTDZRcER6a0RxcVNVbW00T0pDVnZJYXVLTHhtMGFHczNWTVBQZmF1TVBhTXV0bjAvczNqZzBycm9GeG9pY3lnPT0ifX19fX19"
}"#;
    let entry = validate(
        &EntryValidator::new(AlgorithmPolicy::default(), false),
        &section_15_1_request(),
    )
    .unwrap();
    let log_id: [u8; 32] = b64("2AtEIMfG6Y41yK0tcwRTBS2tjhOrjKGIpDkHFgp65g0=")
        .try_into()
        .unwrap();
    let logged = LoggedEntry {
        log_index: 0,
        tree_size: 1,
        root_hash: entry.leaf_hash,
        inclusion_proof: vec![],
        checkpoint: "rekor-local\n1\nUym3efeSrMCTH0BDFLAnqwbi1GjOYfydlkHmJc5gw9o=\n\n\u{2014} rekor-local 2AtEIEto2rjdlosAMG1UeQxPSPDLPF/diOZaxmBU6ZUumCnIXhVrKnLhLCmYJhYatg4p1t4CBmp+m+w3CAOtQkysKwo=\n".into(),
    };
    rekor_api::http::check_logged_entry(&entry.leaf_hash, &logged).unwrap();
    let body = transparency_log_entry(&log_id, entry.kind, &entry.canonical_body, &logged);
    assert_eq!(String::from_utf8(body).unwrap(), compact(expected_pretty));
}

/// Removes whitespace outside JSON strings.
fn compact(pretty: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in pretty.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// §15.4 and vectors.json `note_key_hash`: the 32-byte log IDs that become `logId.keyId`.
/// Re-derived here from their definitions (§8.3); the storage crate's signers must agree.
#[test]
fn section_15_4_log_ids() {
    let sha = |parts: &[&[u8]]| {
        let mut h = sha2::Sha256::new();
        for p in parts {
            h.update(p);
        }
        hex::encode(h.finalize())
    };
    let vectors = vectors();
    let ed_raw = hex::decode(
        vectors["keys"]["ed25519"]["public_key_raw_hex"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        sha(&[b"testkey\n\x01", &ed_raw]),
        "e4de82e34c8c270d87612a3d6a1e297e2cd0ed9cb89ea7aeec8ce4d0b54e6775"
    );
    assert_eq!(
        b64e(&hex::decode(sha(&[b"rekor-local\n\x01", &ed_raw])).unwrap()),
        "2AtEIMfG6Y41yK0tcwRTBS2tjhOrjKGIpDkHFgp65g0="
    );
    let p256 = b64(vectors["keys"]["ecdsa_p256"]["public_key_spki_der_b64"]
        .as_str()
        .unwrap());
    assert_eq!(
        sha(&[&p256]),
        "8f92d720f56c219e34895a76a636a3353ddbf7813f9fa317e19982eafa945328"
    );
    let rsa_spki = b64(&vectors["keys"]["rsa_2048"]["public_key_pem"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>());
    assert_eq!(
        sha(&[b"testkey\n\xffPKIX-RSA-PKCS#1v1.5", &rsa_spki]),
        "adf42d0b4478f2d07e5c8c3e63640a7e41b440c19dc47010c3a4936af75d85b6"
    );
}

/// The leader's check of forwarded entries (issue #12, item 4) accepts exactly what validation
/// writes: the §15 vectors pass, legacy dsse only where it is enabled.
#[test]
fn the_forwarded_entry_check_accepts_the_section_15_bodies() {
    use rekor_api::canonical::{check_canonical_body, CanonicalBodyError};
    assert_eq!(
        check_canonical_body(SECTION_15_1_BODY.as_bytes(), false),
        Ok(EntryKind::HashedRekord)
    );
    assert_eq!(
        check_canonical_body(SECTION_15_2_BODY.as_bytes(), true),
        Ok(EntryKind::Dsse)
    );
    assert_eq!(
        check_canonical_body(SECTION_15_2_BODY.as_bytes(), false),
        Err(CanonicalBodyError::KindNotAccepted("dsse".into()))
    );
}
