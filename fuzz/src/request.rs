//! Request decoding (rekor-v2-api.md §3, §5, §10): arbitrary bytes as the body of
//! `POST /api/v2/log/entries`.
//!
//! Each input goes through the pure pipeline (`CreateEntryRequest::from_json`, then an
//! `EntryValidator` with and without legacy dsse) and through the real HTTP handler
//! (`actix_web::test`) over an in-process `MemoryLog`. Properties:
//! - no panic;
//! - every decoding error is a `proto:` message, every validation error is the client's
//!   (`is_client_error`, a 400), a body too large for a bundle record included (upstream answers
//!   that one with a 500);
//! - an accepted entry's hashes are those of its canonical body, which is JSON within the
//!   bundle-record limit, and the hashedrekord-only validator accepts a subset of what the
//!   dsse-enabled one accepts, with the same result;
//! - the HTTP status is what the pipeline predicts (400 for any rejection; 201 for a new
//!   valid entry, 409 for one already logged), and the log grows only on a 201, by one.
//!
//! There is no pure function from an error to its HTTP status in rekor-api (the mapping is
//! inline in the handler), which is why the handler itself is called.

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::rt::{System, SystemRunner};
use actix_web::{test, App};
use rekor_api::canonical::MAX_ENTRY_SIZE;
use rekor_api::entry::EntryError;
use rekor_api::memory_log::MemoryLog;
use rekor_api::{
    AlgorithmPolicy, ApiConfig, ApiState, CreateEntryRequest, EntryValidator, ValidatedEntry,
};
use rekor_storage::note::Ed25519NoteSigner;
use sha2::{Digest, Sha256};

/// Sends one body to the entries route and resolves to the status.
type Post = Box<dyn Fn(Vec<u8>) -> Pin<Box<dyn Future<Output = StatusCode>>>>;

/// One API over one in-process log, on a runtime owned by the fuzzing thread.
struct Harness {
    runtime: SystemRunner,
    log: Arc<MemoryLog>,
    state: ApiState,
    /// The app is built once: actix-router leaks a little on every build (it interns
    /// segment names), which LeakSanitizer would report as a leak of the input.
    post: Post,
    hashedrekord_only: EntryValidator,
    /// Identities of every entry logged so far.
    logged: RefCell<HashSet<[u8; 32]>>,
}

impl Harness {
    fn new() -> Self {
        let runtime = System::new();
        let signer = Ed25519NoteSigner::generate("fuzz.example/log").expect("a fresh note key");
        let log = Arc::new(
            runtime
                .block_on(MemoryLog::new(Box::new(signer)))
                .expect("an in-memory log"),
        );
        let config = ApiConfig {
            log_id: log.log_id(),
            enable_dsse: true,
            ..ApiConfig::default()
        };
        let state = ApiState::new(config, log.clone(), &prometheus::Registry::new())
            .expect("API metrics register on a fresh registry");
        let app_state = state.clone();
        let app = Rc::new(runtime.block_on(test::init_service(
            App::new().configure(move |cfg| app_state.configure(cfg)),
        )));
        let post: Post = Box::new(move |body| {
            let app = app.clone();
            Box::pin(async move {
                let request = test::TestRequest::post()
                    .uri("/api/v2/log/entries")
                    .insert_header((header::CONTENT_TYPE, "application/json"))
                    .set_payload(body)
                    .to_request();
                test::call_service(&*app, request).await.status()
            })
        });
        Harness {
            runtime,
            log,
            state,
            post,
            hashedrekord_only: EntryValidator::new(AlgorithmPolicy::default(), false),
            logged: RefCell::new(HashSet::new()),
        }
    }

    fn post(&self, body: &[u8]) -> StatusCode {
        self.runtime.block_on((self.post)(body.to_vec()))
    }

    fn size(&self) -> u64 {
        self.runtime.block_on(self.log.size())
    }
}

thread_local! {
    /// Never dropped: libFuzzer exits from inside the process, and tearing down the actix
    /// runtime in thread-local destructors then panics.
    static HARNESS: &'static Harness = Box::leak(Box::new(Harness::new()));
}

/// Builds the harness before the first input (libFuzzer's init hook), so that its one-time
/// allocations, some of which actix leaks on purpose, are not charged to an input.
pub fn init() {
    HARNESS.with(|_| ());
}

/// The checks for one input.
pub fn check(body: &[u8]) {
    HARNESS.with(|harness| check_with(harness, body));
}

fn check_with(harness: &Harness, body: &[u8]) {
    let expected = match CreateEntryRequest::from_json(body) {
        Err(error) => {
            assert!(
                error.to_string().starts_with("proto: "),
                "decoding error {error}"
            );
            StatusCode::BAD_REQUEST
        }
        Ok(request) => {
            let strict = harness.hashedrekord_only.validate(&request);
            let outcome = harness.state.validator().validate(&request);
            if let Ok(entry) = &strict {
                assert_eq!(
                    outcome.as_ref().ok(),
                    Some(entry),
                    "enabling dsse changed a hashedrekord verdict"
                );
            }
            if let Err((error, kind)) = &strict {
                check_rejection(&harness.hashedrekord_only, error, *kind);
            }
            match outcome {
                Ok(entry) => {
                    check_entry(&entry);
                    if harness.logged.borrow_mut().insert(entry.identity) {
                        StatusCode::CREATED
                    } else {
                        StatusCode::CONFLICT
                    }
                }
                Err((error, kind)) => {
                    check_rejection(harness.state.validator(), &error, kind);
                    if error.is_client_error() {
                        StatusCode::BAD_REQUEST
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                }
            }
        }
    };
    let before = harness.size();
    let status = harness.post(body);
    let after = harness.size();
    assert_eq!(status, expected, "the handler disagrees with the pipeline");
    let grown = if status == StatusCode::CREATED { 1 } else { 0 };
    assert_eq!(after, before + grown, "log size after a {status}");
}

fn check_rejection(
    validator: &EntryValidator,
    error: &EntryError,
    kind: Option<rekor_api::EntryKind>,
) {
    match error {
        // A validly signed entry too large for a bundle record: a 400 here (500 upstream).
        EntryError::EntryTooLarge { size } => assert!(*size > MAX_ENTRY_SIZE),
        _ => {}
    }
    assert!(error.is_client_error(), "{error} is not a client error");
    assert!(!validator.client_message(error, kind).is_empty());
}

fn check_entry(entry: &ValidatedEntry) {
    let body = &entry.canonical_body;
    assert!(body.len() <= MAX_ENTRY_SIZE);
    assert!(
        serde_json::from_slice::<serde_json::Value>(body).is_ok(),
        "canonical body is not JSON"
    );
    let identity: [u8; 32] = Sha256::digest(body).into();
    let leaf: [u8; 32] = Sha256::new()
        .chain_update([0u8])
        .chain_update(body)
        .finalize()
        .into();
    assert_eq!(entry.identity, identity);
    assert_eq!(entry.leaf_hash, leaf);
}
