//! Property tests of the request path against hostile input: the in-suite twins of the
//! `request_decoding` fuzz target in `fuzz/` (rekor-v2-api.md §3, §5, §10).
//!
//! Every case goes through the real HTTP handler (`actix_web::test`) of an in-process
//! [`MemoryLog`]. The log is seeded first with every valid base request, so a mutation that
//! leaves a request equivalent (the other field spelling, trailing bytes, an enum written as
//! its number, unused base64 bits) answers 409. The properties, for every input:
//! - no panic, and never a 5xx;
//! - the HTTP status is what the pure pipeline (`CreateEntryRequest::from_json`, then the
//!   `EntryValidator`) predicts: 400 for every rejection, 409 for an entry already logged;
//! - a rejected input leaves the log size unchanged.
//!
//! A mutation can make a *new* valid entry only by touching bytes nobody signs, e.g. a
//! certificate's issuer name (Rekor checks the key in the certificate, not its chain); the
//! pipeline then predicts 201 and the log must grow by exactly one.
//!
//! Case counts are moderate so the suite stays fast; raise them with `PROPTEST_CASES`.

mod support;

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::rt::{System, SystemRunner};
use actix_web::test as web_test;
use actix_web::App;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rekor_api::memory_log::MemoryLog;
use rekor_api::{ApiConfig, ApiState, CreateEntryRequest, TileRequest};
use serde_json::{json, Value};
use support::*;

/// One API over one in-process log, on a runtime owned by the test thread.
struct Harness {
    runtime: SystemRunner,
    log: Arc<MemoryLog>,
    state: ApiState,
    /// Valid requests of every shape, all already logged.
    bases: Vec<Value>,
    /// The log size after seeding.
    seeded_size: u64,
    /// Identities of every entry logged so far.
    logged: RefCell<HashSet<[u8; 32]>>,
}

impl Harness {
    fn new() -> Self {
        let runtime = System::new();
        let config = ApiConfig {
            enable_dsse: true,
            ..ApiConfig::default()
        };
        let (log, state) = runtime.block_on(log_and_state(upstream_ed25519_signer(), config));
        let bases = valid_requests();
        let mut harness = Harness {
            runtime,
            log,
            state,
            bases,
            seeded_size: 0,
            logged: RefCell::new(HashSet::new()),
        };
        for base in &harness.bases {
            let body = base.to_string().into_bytes();
            assert_eq!(harness.expected_status(&body), StatusCode::CREATED);
            assert_eq!(
                harness.post(body),
                StatusCode::CREATED,
                "seed request rejected: {base}"
            );
        }
        harness.seeded_size = harness.size();
        assert_eq!(harness.seeded_size, harness.bases.len() as u64);
        harness
    }

    fn size(&self) -> u64 {
        self.runtime.block_on(self.log.size())
    }

    fn post(&self, body: Vec<u8>) -> StatusCode {
        self.runtime.block_on(async {
            let state = self.state.clone();
            let app =
                web_test::init_service(App::new().configure(move |cfg| state.configure(cfg))).await;
            let request = web_test::TestRequest::post()
                .uri("/api/v2/log/entries")
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .set_payload(body)
                .to_request();
            web_test::call_service(&app, request).await.status()
        })
    }

    fn get(&self, uri: &str) -> StatusCode {
        self.runtime.block_on(async {
            let state = self.state.clone();
            let app =
                web_test::init_service(App::new().configure(move |cfg| state.configure(cfg))).await;
            web_test::call_service(&app, web_test::TestRequest::get().uri(uri).to_request())
                .await
                .status()
        })
    }

    /// What the pure pipeline says the answer must be: 400 for every rejection; for a valid
    /// entry 409 if it is logged already, else 201 (the entry is then remembered as logged).
    fn expected_status(&self, body: &[u8]) -> StatusCode {
        let Ok(request) = CreateEntryRequest::from_json(body) else {
            return StatusCode::BAD_REQUEST;
        };
        match self.state.validator().validate(&request) {
            Ok(entry) if self.logged.borrow().contains(&entry.identity) => StatusCode::CONFLICT,
            Ok(entry) => {
                self.logged.borrow_mut().insert(entry.identity);
                StatusCode::CREATED
            }
            Err((error, _)) if error.is_client_error() => StatusCode::BAD_REQUEST,
            // Too large for a bundle record: needs a valid signature over a huge body.
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The properties every input must satisfy. The size is compared with the size before
    /// this case, so that shrinking after a failure still reports the input at fault.
    fn check(&self, body: Vec<u8>) -> Result<(), TestCaseError> {
        let before = self.size();
        let expected = self.expected_status(&body);
        let status = self.post(body.clone());
        let after = self.size();
        let shown = String::from_utf8_lossy(&body);
        prop_assert!(
            status == expected,
            "HTTP answered {} where the pure pipeline says {}: {}",
            status,
            expected,
            shown
        );
        if status == StatusCode::CREATED {
            // Still a valid entry: mutations of parts nobody signs (a certificate's own
            // signature or names; Rekor does not verify chains) can make a new one.
            prop_assert!(
                after == before + 1,
                "201 but the log went {} -> {}",
                before,
                after
            );
            return Ok(());
        }
        prop_assert!(
            status.is_client_error(),
            "{} for a malformed request: {}",
            status,
            shown
        );
        prop_assert!(
            after == before,
            "log size changed from {} to {}: {}",
            before,
            after,
            shown
        );
        Ok(())
    }
}

/// The valid upstream hashedrekord vectors (P-256 key, P-256 certificate, P-384 key) and a
/// legacy dsse request signed with the upstream Ed25519 test key.
fn valid_requests() -> Vec<Value> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    use ed25519_dalek::Signer as _;
    let vectors = vectors();
    let mut requests: Vec<Value> = vectors["hashedrekord"]["to_log_entry_cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|case| case["name"].as_str().unwrap().starts_with("valid"))
        .map(|case| case["request_protojson"].clone())
        .collect();
    assert_eq!(requests.len(), 3, "the vectors have three valid cases");
    let ed25519 = &vectors["keys"]["ed25519"];
    let key =
        ed25519_dalek::SigningKey::from_pkcs8_pem(ed25519["private_key_pem"].as_str().unwrap())
            .unwrap();
    let payload = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;
    let payload_type = "application/vnd.in-toto+json";
    let signature = key.sign(&rekor_api::entry::pre_authentication_encoding(
        payload_type,
        payload,
    ));
    let spki = pem_der(ed25519["public_key_pem"].as_str().unwrap());
    requests.push(json!({"dsseRequestV002": {
        "envelope": {
            "payload": b64e(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": b64e(&signature.to_bytes()), "keyid": ""}]
        },
        "verifiers": [{"publicKey": {"rawBytes": b64e(&spki)}, "keyDetails": "PKIX_ED25519"}]
    }}));
    requests
}

/// A runner for `cases` cases, or `PROPTEST_CASES` when set (for long local runs).
fn runner(cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    TestRunner::new(Config {
        cases,
        // Cases here are cheap to regenerate; no regression files in the tree.
        failure_persistence: None,
        ..Config::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Structured near-valid mutations.

/// One step of a path into a request: an object member or an array item.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Item(usize),
}

/// Every member and item path in `value`, parents before children.
fn paths(value: &Value) -> Vec<Vec<Step>> {
    fn walk(value: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        let children: Vec<(Step, &Value)> = match value {
            Value::Object(map) => map.iter().map(|(k, v)| (Step::Key(k.clone()), v)).collect(),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (Step::Item(i), v))
                .collect(),
            _ => Vec::new(),
        };
        for (step, child) in children {
            prefix.push(step);
            out.push(prefix.clone());
            walk(child, prefix, out);
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// The container holding the last step of `path`.
fn parent_mut<'a>(root: &'a mut Value, path: &[Step]) -> &'a mut Value {
    let mut at = root;
    for step in &path[..path.len() - 1] {
        at = match step {
            Step::Key(k) => &mut at[k.as_str()],
            Step::Item(i) => &mut at[*i],
        };
    }
    at
}

/// protojson accepts both the JSON name and the proto name; this is the other spelling.
fn other_spelling(key: &str) -> String {
    if key.contains('_') {
        let mut out = String::new();
        let mut upper = false;
        for c in key.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    } else {
        let mut out = String::new();
        for c in key.chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// A placeholder the serialised request contains exactly once, replaced by raw text.
const RAW: &str = "\u{1}raw\u{1}";

#[derive(Debug, Clone)]
enum Mutation {
    /// Remove a member or item.
    Drop(usize),
    /// Repeat a member, under the same name or the other accepted spelling.
    Duplicate(usize, bool),
    /// Rename a member to a name protojson does not know.
    Rename(usize, &'static str),
    /// Replace a value with a JSON value of (usually) the wrong type.
    Replace(usize, Value),
    /// Replace a value with raw text: huge numbers, deep nesting, invalid JSON.
    ReplaceRaw(usize, String),
    /// Cut the serialised body short (an index is taken modulo the length).
    Truncate(usize),
    /// Overwrite one byte of the serialised body.
    Overwrite(usize, u8),
}

fn wrong_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e300f64..1e300).prop_map(|f| json!(f)),
        Just(json!([])),
        Just(json!({})),
        Just(json!([{"rawBytes": "AA=="}])),
        Just(json!({"rawBytes": 1})),
        // Bad (and occasionally good) base64 and enum names.
        "[A-Za-z0-9+/=_.~ -]{0,24}".prop_map(Value::String),
        "\\PC{0,12}".prop_map(Value::String),
        Just(json!("PKIX_ECDSA_P256_SHA_256")),
        Just(json!("PKIX_ED25519")),
        Just(json!("AAAA====")),
        Just(json!("A")),
    ]
}

fn raw_value() -> impl Strategy<Value = String> {
    prop_oneof![
        // Numbers no integer or enum field can hold.
        Just("1e400".to_owned()),
        Just("-1e400".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
        Just("2147483648".to_owned()),
        Just("-2147483649".to_owned()),
        Just("5.0".to_owned()),
        Just("5e0".to_owned()),
        Just("-0".to_owned()),
        Just("0.5".to_owned()),
        "-?[0-9]{1,40}(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,4})?",
        // Deep nesting, past serde_json's recursion limit too.
        (1usize..400).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
        (1usize..400).prop_map(|depth| format!(
            "{}1{}",
            "{\"a\":".repeat(depth),
            "}".repeat(depth)
        )),
        (1usize..2000).prop_map(|depth| "[".repeat(depth)),
        // Not JSON at all.
        Just("\"unterminated".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        Just("NaN".to_owned()),
        Just("'AA=='".to_owned()),
        Just(String::new()),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Drop),
        (any::<usize>(), any::<bool>()).prop_map(|(i, b)| Mutation::Duplicate(i, b)),
        (
            any::<usize>(),
            prop::sample::select(vec!["X", "_", "s", " ", "\u{0}", "ⅹ"])
        )
            .prop_map(|(i, s)| Mutation::Rename(i, s)),
        (any::<usize>(), wrong_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        (any::<usize>(), raw_value()).prop_map(|(i, v)| Mutation::ReplaceRaw(i, v)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Overwrite(i, b)),
    ]
}

/// Applies a mutation to a request, giving the body to send.
fn apply(base: &Value, mutation: &Mutation) -> Vec<u8> {
    let mut request = base.clone();
    let all = paths(base);
    let pick = |index: usize| all[index % all.len()].clone();
    // Members are serialised in order (serde_json's preserve_order is off: keys sort), so a
    // placeholder key or value is found by text search after serialising.
    let with_raw = |request: &Value, raw: &str| {
        request
            .to_string()
            .replacen(&serde_json::to_string(RAW).unwrap(), raw, 1)
            .into_bytes()
    };
    match mutation {
        Mutation::Drop(index) => {
            let path = pick(*index);
            match (parent_mut(&mut request, &path), path.last().unwrap()) {
                (Value::Object(map), Step::Key(k)) => {
                    map.remove(k);
                }
                (Value::Array(items), Step::Item(i)) => {
                    items.remove(*i);
                }
                _ => unreachable!("paths() only yields members and items"),
            }
            request.to_string().into_bytes()
        }
        Mutation::Duplicate(index, other) => {
            let path = pick(*index);
            match (parent_mut(&mut request, &path), path.last().unwrap()) {
                (Value::Object(map), Step::Key(key)) => {
                    let value = map.remove(key).unwrap();
                    let twin = if *other {
                        other_spelling(key)
                    } else {
                        key.clone()
                    };
                    map.insert(RAW.to_owned(), Value::Null);
                    let members = format!(
                        "{}:{value},{}:{value}",
                        serde_json::to_string(key).unwrap(),
                        serde_json::to_string(&twin).unwrap()
                    );
                    let placeholder = format!("{}:null", serde_json::to_string(RAW).unwrap());
                    request
                        .to_string()
                        .replacen(&placeholder, &members, 1)
                        .into_bytes()
                }
                // An array item: repeat it instead (repeated signatures or verifiers).
                (Value::Array(items), Step::Item(i)) => {
                    let item = items[*i].clone();
                    items.insert(*i, item);
                    request.to_string().into_bytes()
                }
                _ => unreachable!("paths() only yields members and items"),
            }
        }
        Mutation::Rename(index, suffix) => {
            let path = pick(*index);
            if let (Value::Object(map), Step::Key(key)) =
                (parent_mut(&mut request, &path), path.last().unwrap())
            {
                let value = map.remove(key).unwrap();
                map.insert(format!("{key}{suffix}"), value);
            }
            request.to_string().into_bytes()
        }
        Mutation::Replace(index, value) => {
            let path = pick(*index);
            set(&mut request, &path, value.clone());
            request.to_string().into_bytes()
        }
        Mutation::ReplaceRaw(index, raw) => {
            let path = pick(*index);
            set(&mut request, &path, json!(RAW));
            with_raw(&request, raw)
        }
        Mutation::Truncate(index) => {
            let mut body = request.to_string().into_bytes();
            body.truncate(index % (body.len() + 1));
            body
        }
        Mutation::Overwrite(index, byte) => {
            let mut body = request.to_string().into_bytes();
            let at = index % body.len();
            body[at] = *byte;
            body
        }
    }
}

fn set(root: &mut Value, path: &[Step], value: Value) {
    let parent = parent_mut(root, path);
    match path.last().unwrap() {
        Step::Key(k) => parent[k.as_str()] = value,
        Step::Item(i) => parent[*i] = value,
    }
}

#[test]
fn near_valid_requests_get_the_pipeline_answer() {
    let harness = Harness::new();
    let bases = harness.bases.clone();
    let strategy = (prop::sample::select(bases), mutation());
    runner(384)
        .run(&strategy, |(base, mutation)| {
            harness.check(apply(&base, &mutation))
        })
        .unwrap();
}

#[test]
fn several_mutations_at_once_get_the_pipeline_answer() {
    let harness = Harness::new();
    let bases = harness.bases.clone();
    let strategy = (
        prop::sample::select(bases),
        prop::collection::vec(mutation(), 2..5),
    );
    runner(128)
        .run(&strategy, |(base, mutations)| {
            // Chain the mutations while the body still parses as JSON.
            let mut body = base.to_string().into_bytes();
            for mutation in &mutations {
                let Ok(value) = serde_json::from_slice::<Value>(&body) else {
                    break;
                };
                if paths(&value).is_empty() {
                    break;
                }
                body = apply(&value, mutation);
            }
            harness.check(body)
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Unstructured input.

#[test]
fn arbitrary_bytes_are_rejected_with_400() {
    let harness = Harness::new();
    runner(256)
        .run(&prop::collection::vec(any::<u8>(), 0..512), |body| {
            harness.check(body)
        })
        .unwrap();
}

/// JSON documents over the request vocabulary: right names in the wrong places, wrong types,
/// oneofs with both members, arrays where messages belong.
fn request_like_json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "hashedRekordRequestV002",
        "hashed_rekord_request_v002",
        "dsseRequestV002",
        "dsse_request_v002",
        "digest",
        "signature",
        "content",
        "verifier",
        "verifiers",
        "publicKey",
        "public_key",
        "x509Certificate",
        "x509_certificate",
        "rawBytes",
        "raw_bytes",
        "keyDetails",
        "key_details",
        "envelope",
        "payload",
        "payloadType",
        "payload_type",
        "signatures",
        "sig",
        "keyid",
        "unknown",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[A-Za-z0-9+/=_-]{0,16}".prop_map(Value::String),
        Just(json!("PKIX_ECDSA_P256_SHA_256")),
        Just(json!("PKIX_ED25519")),
    ];
    leaf.prop_recursive(5, 48, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..4).prop_map(|members| {
                Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    })
}

#[test]
fn request_shaped_json_is_rejected_with_400() {
    let harness = Harness::new();
    runner(256)
        .run(&request_like_json(), |value| {
            harness.check(value.to_string().into_bytes())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The tile read route: an unparseable path is a 404, never a 5xx.

#[test]
fn tile_paths_answer_200_or_404() {
    let harness = Harness::new();
    let strategy = prop_oneof![
        "[0-9a-z./_-]{0,40}",
        "(entries|[0-9]{1,3})/(x[0-9]{3}/){0,7}[0-9]{1,4}(\\.p/[0-9]{1,4})?",
    ];
    runner(256)
        .run(&strategy, |tail| {
            let status = harness.get(&format!("/api/v2/tile/{tail}"));
            let within =
                TileRequest::parse(&tail).is_some_and(|t| t.is_within(harness.seeded_size));
            prop_assert!(
                status == StatusCode::OK || status == StatusCode::NOT_FOUND,
                "{status} for tile/{tail}"
            );
            if status == StatusCode::OK {
                prop_assert!(within, "200 for tile/{tail}, outside the tree");
            }
            prop_assert_eq!(harness.size(), harness.seeded_size);
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The mutation machinery itself must be able to fail the properties.

#[test]
fn mutations_produce_what_they_claim() {
    let base = valid_requests().remove(0);
    let all = paths(&base);
    let at = |name: &str| {
        all.iter()
            .position(|p| p.last() == Some(&Step::Key(name.into())))
            .unwrap()
    };
    assert_eq!(other_spelling("keyDetails"), "key_details");
    assert_eq!(other_spelling("raw_bytes"), "rawBytes");
    assert_eq!(
        other_spelling("hashedRekordRequestV002"),
        "hashed_rekord_request_v002"
    );
    let text = |m: Mutation| String::from_utf8(apply(&base, &m)).unwrap();
    let digest = base["hashedRekordRequestV002"]["digest"].as_str().unwrap();
    assert!(text(Mutation::ReplaceRaw(at("digest"), "1e400".into())).contains(r#""digest":1e400"#));
    assert!(text(Mutation::Duplicate(at("digest"), false))
        .contains(&format!(r#""digest":"{digest}","digest":"{digest}""#)));
    assert!(text(Mutation::Duplicate(at("keyDetails"), true)).contains(
        r#""keyDetails":"PKIX_ECDSA_P256_SHA_256","key_details":"PKIX_ECDSA_P256_SHA_256""#
    ));
    assert!(!text(Mutation::Drop(at("digest"))).contains("digest"));
    assert!(text(Mutation::Rename(at("digest"), "X")).contains(r#""digestX""#));

    // The harness tells a valid (already logged) request from a broken one, so the
    // properties can fail: the base would be a 409, a duplicated field a 400.
    let harness = Harness::new();
    assert_eq!(
        harness.expected_status(base.to_string().as_bytes()),
        StatusCode::CONFLICT
    );
    assert_eq!(
        harness.post(base.to_string().into_bytes()),
        StatusCode::CONFLICT
    );
    let duplicated = apply(&base, &Mutation::Duplicate(at("digest"), false));
    assert_eq!(
        harness.expected_status(&duplicated),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(harness.post(duplicated), StatusCode::BAD_REQUEST);
    assert_eq!(harness.size(), harness.seeded_size);
}
