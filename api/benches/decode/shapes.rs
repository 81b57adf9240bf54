//! The worst request bodies of up to 4 MiB we know for the decoder, each with the verdict it
//! must get. Shared by the `decode` benchmark (which times them) and `tests/negative.rs`
//! (which checks the verdicts).

/// The API's body limit (rekor-v2-api.md §13).
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// What decoding a shape must give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Accepted,
    /// Rejected with a message that contains this text.
    Rejected(&'static str),
}

pub struct Shape {
    pub name: &'static str,
    pub body: Vec<u8>,
    pub expected: Expected,
}

const H: &str = "hashedRekordRequestV002";

/// A valid-looking hashedrekord request (decoding does not verify) with `digest` as given.
fn hashed_rekord(digest: &str) -> String {
    format!(
        r#"{{"{H}":{{"digest":"{digest}","signature":{{"content":"AQ==","verifier":{{"publicKey":{{"rawBytes":"Ag=="}},"keyDetails":"PKIX_ECDSA_P256_SHA_256"}}}}}}}}"#
    )
}

/// `open` + as many copies of `item` (joined by `sep`) as fit in the limit + `close`.
fn repeat(open: &str, item: &str, sep: &str, close: &str) -> Vec<u8> {
    let room = BODY_LIMIT - open.len() - close.len();
    let count = (room + sep.len()) / (item.len() + sep.len());
    let mut body = String::with_capacity(BODY_LIMIT);
    body.push_str(open);
    for i in 0..count {
        if i > 0 {
            body.push_str(sep);
        }
        body.push_str(item);
    }
    body.push_str(close);
    body.into_bytes()
}

/// `open` + `{"k0000000":0,"k0000001":0,...}` (distinct keys) filling the limit + `close`.
fn distinct_keys(open: &str, close: &str) -> Vec<u8> {
    let mut body = String::with_capacity(BODY_LIMIT);
    body.push_str(open);
    body.push('{');
    let mut i = 0;
    while body.len() + 14 + close.len() < BODY_LIMIT {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!("\"k{i:07}\":0"));
        i += 1;
    }
    body.push('}');
    body.push_str(close);
    body.into_bytes()
}

fn dsse(signatures: &str, verifiers: &str) -> String {
    format!(
        r#"{{"dsseRequestV002":{{"envelope":{{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{signatures}]}},"verifiers":[{verifiers}]}}}}"#
    )
}

const VERIFIER: &str = r#"{"publicKey":{"rawBytes":"Ag=="},"keyDetails":"PKIX_ED25519"}"#;

/// Every shape, each close to [`BODY_LIMIT`] bytes.
pub fn shapes() -> Vec<Shape> {
    use Expected::{Accepted, Rejected};
    let mut shapes = Vec::new();
    let mut add = |name, body: Vec<u8>, expected| {
        assert!(body.len() <= BODY_LIMIT, "{name} is {} bytes", body.len());
        shapes.push(Shape {
            name,
            body,
            expected,
        })
    };
    let nested = [
        ("keys in CreateEntryRequest", String::new(), String::new()),
        (
            "keys in HashedRekordRequestV002",
            format!(r#"{{"{H}":"#),
            "}".into(),
        ),
        (
            "keys in Signature",
            format!(r#"{{"{H}":{{"signature":"#),
            "}}".into(),
        ),
        (
            "keys in Verifier",
            format!(r#"{{"{H}":{{"signature":{{"verifier":"#),
            "}}}".into(),
        ),
        (
            "keys in PublicKey",
            format!(r#"{{"{H}":{{"signature":{{"verifier":{{"publicKey":"#),
            "}}}}".into(),
        ),
        (
            "keys in Envelope",
            r#"{"dsseRequestV002":{"envelope":"#.into(),
            "}}".into(),
        ),
        (
            "keys in a DSSE verifier",
            r#"{"dsseRequestV002":{"verifiers":["#.into(),
            "]}}".into(),
        ),
    ];
    for (name, open, close) in nested {
        add(
            name,
            distinct_keys(&open, &close),
            Rejected("unknown field \"k0000000\""),
        );
    }
    add(
        "duplicate keys",
        repeat("{", &format!(r#""{H}":null"#), ",", "}"),
        Rejected("duplicate field \"hashed_rekord_request_v002\""),
    );
    add(
        "duplicate keys under both names",
        repeat(
            &format!(r#"{{"{H}":{{"signature":{{"verifier":{{"#),
            r#""keyDetails":1,"key_details":1"#,
            ",",
            "}}}}",
        ),
        Rejected("duplicate field \"key_details\""),
    );
    add(
        "oneof members",
        repeat(
            "{",
            &format!(r#""{H}":{{}},"dsseRequestV002":{{}}"#),
            ",",
            "}",
        ),
        Rejected("oneof spec is already set"),
    );
    add(
        "deep arrays at the top",
        repeat("", "[", "", ""),
        Rejected("invalid value for message CreateEntryRequest: array"),
    );
    add(
        "deep arrays in a field",
        repeat(&format!(r#"{{"{H}":"#), "[", "", ""),
        Rejected("invalid value for message field hashedRekordRequestV002: array"),
    );
    add(
        "deep objects",
        repeat(
            "",
            r#"{"dsseRequestV002":{"verifiers":[{"publicKey":"#,
            "",
            "",
        ),
        Rejected("unknown field \"dsseRequestV002\""),
    );
    add(
        "deep arrays in a repeated field",
        repeat(r#"{"dsseRequestV002":{"verifiers":"#, "[", "", ""),
        Rejected("invalid value for message Verifier: array"),
    );
    add(
        "[0,0,...] at the top",
        repeat("[", "0", ",", "]"),
        Rejected("invalid value for message CreateEntryRequest: array"),
    );
    add(
        "[0,0,...] in a repeated field",
        repeat(r#"{"dsseRequestV002":{"verifiers":["#, "0", ",", "]}}"),
        Rejected("invalid value for message Verifier: number"),
    );
    add(
        "[{},{},...] in a repeated field",
        repeat(r#"{"dsseRequestV002":{"verifiers":["#, "{}", ",", "]}}"),
        Rejected("too many JSON values"),
    );
    add(
        "DSSE request with thousands of signatures",
        dsse(
            &vec![r#"{"sig":"AQ==","keyid":""}"#; (BODY_LIMIT - 400) / 26].join(","),
            VERIFIER,
        )
        .into_bytes(),
        Rejected("too many JSON values"),
    );
    let sig = "A".repeat(BODY_LIMIT / 200);
    add(
        "DSSE request with 190 large signatures",
        dsse(
            &vec![format!(r#"{{"sig":"{sig}","keyid":"k"}}"#); 190].join(","),
            &[VERIFIER; 10].join(","),
        )
        .into_bytes(),
        Accepted,
    );
    add(
        "\\u00XX escapes in bytes",
        repeat(&format!(r#"{{"{H}":{{"digest":""#), r"\u0041", "", r#""}}"#),
        Accepted,
    );
    add(
        "\\u00XX escapes in a string",
        repeat(
            r#"{"dsseRequestV002":{"envelope":{"payloadType":""#,
            r"\u00e9",
            "",
            r#""}}}"#,
        ),
        Accepted,
    );
    add(
        "\\u00XX escapes in a key",
        repeat(r#"{""#, r"\u0001", "", r#"":0}"#),
        Rejected("unknown field \"\\u{1}"),
    );
    add(
        "escaped newlines in bytes",
        repeat(&format!(r#"{{"{H}":{{"digest":""#), r"AAAA\n", "", r#""}}"#),
        Accepted,
    );
    add(
        "huge integer enum",
        repeat(
            &format!(r#"{{"{H}":{{"signature":{{"verifier":{{"keyDetails":"#),
            "9",
            "",
            "}}}}",
        ),
        Rejected("syntax error"),
    );
    add(
        "huge fraction enum",
        repeat(
            &format!(r#"{{"{H}":{{"signature":{{"verifier":{{"keyDetails":0."#),
            "1",
            "",
            "}}}}",
        ),
        Rejected("invalid value for enum field keyDetails"),
    );
    add(
        "huge base64 digest",
        hashed_rekord(&"A".repeat(BODY_LIMIT - 200)).into_bytes(),
        Accepted,
    );
    add(
        "valid request padded with whitespace",
        {
            let pad = " \n\t\r".repeat(BODY_LIMIT / 80);
            hashed_rekord("AAEC")
                .replace(':', &format!("{pad}:{pad}"))
                .into_bytes()
        },
        Accepted,
    );
    add(
        "valid request and trailing garbage",
        {
            let mut body = hashed_rekord("AAEC").into_bytes();
            body.resize(BODY_LIMIT, b'[');
            body
        },
        Accepted,
    );
    add("whitespace only", vec![b' '; BODY_LIMIT], Accepted);
    shapes
}
