//! Canonical log-entry bodies: `dev.sigstore.rekor.v2.Entry` as protojson, canonicalised with
//! RFC 8785 (JCS), plus the leaf and identity hashes (rekor-v2-api.md §6, §12.3).
//!
//! [`check_canonical_body`] goes the other way: it tells whether some bytes are exactly what
//! validation on this log writes, for entries that arrive already validated by another node.
//!
//! The writer here is our own instead of serde_json's map ordering: serde_json's `preserve_order`
//! feature can be switched on by any crate in the build, which would silently change key order.

use sha2::{Digest as _, Sha256};

use crate::backend::EntryKind;
use crate::key_details::{HashAlgorithm, PublicKeyDetails};
use crate::proto_json::{decode_bytes, encode_bytes};
use crate::request::{Verifier, VerifierMaterial};
use serde_json::Value as JsonValue;

/// C2SP tlog-tiles: entry-bundle records carry a uint16 length, so a body is at most 65,535 bytes.
pub const MAX_ENTRY_SIZE: usize = 65_535;

/// A JSON value built for canonical output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanonicalJson {
    String(String),
    Array(Vec<CanonicalJson>),
    /// Members in any order; written sorted by key.
    Object(Vec<(&'static str, CanonicalJson)>),
}

impl CanonicalJson {
    fn str(text: impl Into<String>) -> Self {
        CanonicalJson::String(text.into())
    }

    /// RFC 8785 serialisation: no whitespace, members sorted by key (UTF-16 code units; every
    /// key here is ASCII, so byte order is the same), strings minimally escaped.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            CanonicalJson::String(text) => write_string(text, out),
            CanonicalJson::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            CanonicalJson::Object(members) => {
                let mut sorted: Vec<&(&'static str, CanonicalJson)> = members.iter().collect();
                sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
                out.push(b'{');
                for (i, (key, value)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(key, out);
                    out.push(b':');
                    value.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// RFC 8785 §3.2.2.2: escape `"` and `\`, the short forms for \b \t \n \f \r, `\u00xx` for other
/// control characters, everything else verbatim. Works on bytes: every byte that needs escaping
/// is ASCII, and the bytes of a multi-byte UTF-8 character are all >= 0x80, so runs of bytes
/// that need none are copied whole (a body's strings are mostly base64, with nothing to escape).
/// serde_json escapes by the same rule (see `strings_escape_as_json_stringify`), so the 201
/// answer's strings are written with it too.
pub(crate) fn write_string(text: &str, out: &mut Vec<u8>) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut verbatim_from = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[verbatim_from..at]);
        verbatim_from = at + 1;
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0x0f)]);
        } else {
            out.extend_from_slice(short);
        }
    }
    out.extend_from_slice(&bytes[verbatim_from..]);
    out.push(b'"');
}

/// `rekor.v2.Verifier` in its stored form. protojson omits zero values, so an unset oneof, empty
/// raw bytes or an UNSPECIFIED keyDetails leave their member out (validation rejects those
/// before a body is ever logged, but the function is total).
pub fn verifier_json(verifier: &Verifier) -> CanonicalJson {
    let mut members = Vec::new();
    if let Some(material) = &verifier.material {
        let (name, raw) = match material {
            VerifierMaterial::PublicKey { raw_bytes } => ("publicKey", raw_bytes),
            VerifierMaterial::X509Certificate { raw_bytes } => ("x509Certificate", raw_bytes),
        };
        let inner = if raw.is_empty() {
            Vec::new()
        } else {
            vec![("rawBytes", CanonicalJson::str(encode_bytes(raw)))]
        };
        members.push((name, CanonicalJson::Object(inner)));
    }
    if verifier.key_details != 0 {
        let name = verifier
            .key_details()
            .map(|details| details.name().to_owned())
            // protojson writes an unknown enum number as a JSON number; never reached for
            // validated entries, and a string keeps the writer simple.
            .unwrap_or_else(|| verifier.key_details.to_string());
        members.push(("keyDetails", CanonicalJson::str(name)));
    }
    CanonicalJson::Object(members)
}

fn bytes_member(
    name: &'static str,
    bytes: &[u8],
    members: &mut Vec<(&'static str, CanonicalJson)>,
) {
    if !bytes.is_empty() {
        members.push((name, CanonicalJson::str(encode_bytes(bytes))));
    }
}

/// The canonical body of a hashedrekord v0.0.2 entry (§6.1): the request's signature message
/// unchanged, `data.algorithm` from the keyDetails hash.
///
/// Every entry's body is written here (on the verification pool, and again on the leader for each
/// forwarded entry it checks), so it is written straight into one buffer in RFC 8785 order
/// instead of through a [`CanonicalJson`] tree: the members of a hashedrekord body are fixed, so
/// their sorted order is too. The result is byte for byte the tree's (a property test compares the
/// two on arbitrary entries).
pub fn hashedrekord_body(
    hash: HashAlgorithm,
    digest: &[u8],
    content: &[u8],
    verifier: &Verifier,
) -> Vec<u8> {
    let raw_len = match &verifier.material {
        Some(material) => material.raw_bytes().len(),
        None => 0,
    };
    let mut out = Vec::with_capacity(224 + (digest.len() + content.len() + raw_len) * 4 / 3);
    // Members in RFC 8785 order: apiVersion < kind < spec; data < signature; algorithm < digest;
    // content < verifier.
    out.extend_from_slice(
        br#"{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{"hashedRekordV002":{"data":{"algorithm":"#,
    );
    write_string(hash.proto_name(), &mut out);
    if !digest.is_empty() {
        out.extend_from_slice(br#","digest":"#);
        write_base64(digest, &mut out);
    }
    out.extend_from_slice(br#"},"signature":{"#);
    if !content.is_empty() {
        out.extend_from_slice(br#""content":"#);
        write_base64(content, &mut out);
        out.push(b',');
    }
    out.extend_from_slice(br#""verifier":"#);
    write_verifier(verifier, &mut out);
    // Closes signature, hashedRekordV002, spec and the body.
    out.extend_from_slice(b"}}}}");
    out
}

/// [`verifier_json`] written directly: keyDetails < publicKey < x509Certificate.
fn write_verifier(verifier: &Verifier, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    if verifier.key_details != 0 {
        out.extend_from_slice(br#""keyDetails":"#);
        match verifier.key_details() {
            Some(details) => write_string(details.name(), out),
            None => write_string(&verifier.key_details.to_string(), out),
        }
        first = false;
    }
    if let Some(material) = &verifier.material {
        if !first {
            out.push(b',');
        }
        let (name, raw): (&[u8], &[u8]) = match material {
            VerifierMaterial::PublicKey { raw_bytes } => (br#""publicKey":{"#, raw_bytes),
            VerifierMaterial::X509Certificate { raw_bytes } => {
                (br#""x509Certificate":{"#, raw_bytes)
            }
        };
        out.extend_from_slice(name);
        if !raw.is_empty() {
            out.extend_from_slice(br#""rawBytes":"#);
            write_base64(raw, out);
        }
        out.push(b'}');
    }
    out.push(b'}');
}

/// `bytes` as a JSON string of standard padded base64 ([`encode_bytes`]), encoded in place: the
/// base64 alphabet has nothing RFC 8785 escapes.
pub(crate) fn write_base64(bytes: &[u8], out: &mut Vec<u8>) {
    use base64::Engine as _;
    out.push(b'"');
    let start = out.len();
    // A body is at most MAX_ENTRY_SIZE bytes, far from overflowing the length.
    let encoded = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + encoded, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    out.push(b'"');
}

/// The canonical body of a legacy dsse v0.0.2 entry (§12.3). `signatures` must already be in
/// logged order (ascending raw signature bytes).
pub fn dsse_body(payload_sha256: &[u8], signatures: &[(&[u8], &Verifier)]) -> Vec<u8> {
    let mut payload_hash = vec![(
        "algorithm",
        CanonicalJson::str(HashAlgorithm::Sha256.proto_name()),
    )];
    bytes_member("digest", payload_sha256, &mut payload_hash);
    let signatures = signatures
        .iter()
        .map(|(content, verifier)| {
            let mut members = Vec::new();
            bytes_member("content", content, &mut members);
            members.push(("verifier", verifier_json(verifier)));
            CanonicalJson::Object(members)
        })
        .collect();
    entry(
        "dsse",
        "dsseV002",
        CanonicalJson::Object(vec![
            ("payloadHash", CanonicalJson::Object(payload_hash)),
            ("signatures", CanonicalJson::Array(signatures)),
        ]),
    )
}

fn entry(kind: &str, spec_name: &'static str, spec: CanonicalJson) -> Vec<u8> {
    CanonicalJson::Object(vec![
        ("kind", CanonicalJson::str(kind)),
        ("apiVersion", CanonicalJson::str("0.0.2")),
        ("spec", CanonicalJson::Object(vec![(spec_name, spec)])),
    ])
    .to_bytes()
}

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ body) (§6.3).
pub fn leaf_hash(body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(body);
    hasher.finalize().into()
}

/// Dedup identity: SHA-256(body), no prefix (§6.3).
pub fn identity_hash(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// Why a body is not one this log's validation could have produced ([`check_canonical_body`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalBodyError {
    #[error("empty entry body")]
    Empty,
    #[error("entry body of {size} bytes exceeds {MAX_ENTRY_SIZE}")]
    TooLarge { size: usize },
    #[error("entry body is not JSON: {0}")]
    NotJson(String),
    #[error("entry kind {0:?} is not accepted by this log")]
    KindNotAccepted(String),
    #[error("malformed {kind} entry body: {reason}")]
    Malformed { kind: &'static str, reason: String },
    #[error("entry body is not in canonical form")]
    NotCanonical,
}

/// Checks that `body` is exactly what validation on this log writes for some entry: within the
/// bundle-record limit, of a kind this log accepts (`dsse` only with `legacy_dsse`), with the
/// shape validation guarantees (a digest of its algorithm's length, a signature, a verifier
/// with key material and known key details), and byte for byte the canonical form of what it
/// says (parsed, rewritten with [`hashedrekord_body`] / [`dsse_body`], compared).
///
/// For entries that arrive already validated by another node (write forwarding): the leader
/// cannot re-verify signatures cheaply, but it must not sequence bytes its integrator or any
/// client could not handle. Signatures are not verified here.
pub fn check_canonical_body(
    body: &[u8],
    legacy_dsse: bool,
) -> Result<EntryKind, CanonicalBodyError> {
    if body.is_empty() {
        return Err(CanonicalBodyError::Empty);
    }
    if body.len() > MAX_ENTRY_SIZE {
        return Err(CanonicalBodyError::TooLarge { size: body.len() });
    }
    if let Some(kind) = typed_hashedrekord(body) {
        return Ok(kind);
    }
    check_by_value(body, legacy_dsse)
}

/// The general path of [`check_canonical_body`]: the body as a JSON value, each member looked up
/// and checked with its own error.
fn check_by_value(body: &[u8], legacy_dsse: bool) -> Result<EntryKind, CanonicalBodyError> {
    // The body is at most MAX_ENTRY_SIZE bytes here, and serde_json's maps are not quadratic.
    let value: JsonValue =
        serde_json::from_slice(body).map_err(|e| CanonicalBodyError::NotJson(e.to_string()))?;
    let kind = match member(&value, "kind") {
        Some(JsonValue::String(kind)) => kind.as_str(),
        _ => return Err(malformed("entry", "no kind")),
    };
    let (kind, rebuilt) = match kind {
        "hashedrekord" => (EntryKind::HashedRekord, rebuild_hashedrekord(&value)?),
        "dsse" if legacy_dsse => (EntryKind::Dsse, rebuild_dsse(&value)?),
        other => return Err(CanonicalBodyError::KindNotAccepted(other.to_owned())),
    };
    if rebuilt != body {
        return Err(CanonicalBodyError::NotCanonical);
    }
    Ok(kind)
}

fn malformed(kind: &'static str, reason: impl Into<String>) -> CanonicalBodyError {
    CanonicalBodyError::Malformed {
        kind,
        reason: reason.into(),
    }
}

fn member<'a>(value: &'a JsonValue, key: &str) -> Option<&'a JsonValue> {
    match value {
        JsonValue::Object(members) => members.get(key),
        _ => None,
    }
}

/// A `bytes` member: absent is empty (the writer omits empty values).
fn bytes_of(
    kind: &'static str,
    value: &JsonValue,
    key: &str,
) -> Result<Vec<u8>, CanonicalBodyError> {
    match member(value, key) {
        None => Ok(Vec::new()),
        Some(JsonValue::String(text)) => {
            decode_bytes(text).map_err(|e| malformed(kind, format!("{key}: {e}")))
        }
        Some(_) => Err(malformed(kind, format!("{key} is not a string"))),
    }
}

fn object<'a>(
    kind: &'static str,
    value: &'a JsonValue,
    key: &str,
) -> Result<&'a JsonValue, CanonicalBodyError> {
    match member(value, key) {
        Some(object @ JsonValue::Object(_)) => Ok(object),
        _ => Err(malformed(kind, format!("no {key} object"))),
    }
}

fn algorithm_of(
    kind: &'static str,
    value: &JsonValue,
) -> Result<HashAlgorithm, CanonicalBodyError> {
    let name = match member(value, "algorithm") {
        Some(JsonValue::String(name)) => name.as_str(),
        _ => return Err(malformed(kind, "no algorithm")),
    };
    [
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha512,
    ]
    .into_iter()
    .find(|hash| hash.proto_name() == name)
    .ok_or_else(|| malformed(kind, format!("unknown algorithm {name:?}")))
}

/// A stored verifier: key material with bytes, and known key details.
fn verifier_of(kind: &'static str, value: &JsonValue) -> Result<Verifier, CanonicalBodyError> {
    let verifier = object(kind, value, "verifier")?;
    let material = if let Some(key) = member(verifier, "publicKey") {
        VerifierMaterial::PublicKey {
            raw_bytes: bytes_of(kind, key, "rawBytes")?,
        }
    } else if let Some(cert) = member(verifier, "x509Certificate") {
        VerifierMaterial::X509Certificate {
            raw_bytes: bytes_of(kind, cert, "rawBytes")?,
        }
    } else {
        return Err(malformed(kind, "verifier without key material"));
    };
    if material.raw_bytes().is_empty() {
        return Err(malformed(kind, "verifier with empty key material"));
    }
    let details = match member(verifier, "keyDetails") {
        Some(JsonValue::String(name)) => PublicKeyDetails::from_name(name)
            .ok_or_else(|| malformed(kind, format!("unknown keyDetails {name:?}")))?,
        _ => return Err(malformed(kind, "verifier without keyDetails")),
    };
    Ok(Verifier {
        material: Some(material),
        key_details: details.number(),
    })
}

fn rebuild_hashedrekord(value: &JsonValue) -> Result<Vec<u8>, CanonicalBodyError> {
    const KIND: &str = "hashedrekord";
    let spec = object(KIND, value, "spec")?;
    let spec = object(KIND, spec, "hashedRekordV002")?;
    let data = object(KIND, spec, "data")?;
    let hash = algorithm_of(KIND, data)?;
    let digest = bytes_of(KIND, data, "digest")?;
    let signature = object(KIND, spec, "signature")?;
    let content = bytes_of(KIND, signature, "content")?;
    let verifier = verifier_of(KIND, signature)?;
    hashedrekord_from_parts(hash, &digest, &content, &verifier)
}

/// The shape checks of a hashedrekord body's decoded members, then its canonical form: shared by
/// the general path ([`rebuild_hashedrekord`]) and the fast one ([`typed_hashedrekord`]), so
/// the two accept the same bodies.
fn hashedrekord_from_parts(
    hash: HashAlgorithm,
    digest: &[u8],
    content: &[u8],
    verifier: &Verifier,
) -> Result<Vec<u8>, CanonicalBodyError> {
    const KIND: &str = "hashedrekord";
    if digest.len() != hash.output_len() {
        return Err(malformed(
            KIND,
            "digest length does not match its algorithm",
        ));
    }
    if content.is_empty() {
        return Err(malformed(KIND, "empty signature"));
    }
    // Validation writes the algorithm of the key details.
    if verifier.key_details().and_then(|d| d.registry_hash()) != Some(Some(hash)) {
        return Err(malformed(KIND, "algorithm does not match keyDetails"));
    }
    Ok(hashedrekord_body(hash, digest, content, verifier))
}

/// A canonical hashedrekord body's members, borrowed: a canonical body's strings are base64 and
/// names, with nothing escaped, so they borrow from the body. Unknown members are skipped here;
/// the comparison with the rebuilt body refuses them.
mod typed {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct Body<'a> {
        pub kind: &'a str,
        #[serde(borrow)]
        pub spec: Spec<'a>,
    }

    #[derive(Deserialize)]
    pub(super) struct Spec<'a> {
        #[serde(rename = "hashedRekordV002", borrow)]
        pub hashed_rekord: HashedRekord<'a>,
    }

    #[derive(Deserialize)]
    pub(super) struct HashedRekord<'a> {
        #[serde(borrow)]
        pub data: Data<'a>,
        #[serde(borrow)]
        pub signature: Signature<'a>,
    }

    #[derive(Deserialize)]
    pub(super) struct Data<'a> {
        pub algorithm: &'a str,
        #[serde(default)]
        pub digest: &'a str,
    }

    #[derive(Deserialize)]
    pub(super) struct Signature<'a> {
        #[serde(default)]
        pub content: &'a str,
        #[serde(borrow)]
        pub verifier: Verifier<'a>,
    }

    #[derive(Deserialize)]
    pub(super) struct Verifier<'a> {
        #[serde(rename = "publicKey", borrow, default)]
        pub public_key: Option<Raw<'a>>,
        #[serde(rename = "x509Certificate", borrow, default)]
        pub x509_certificate: Option<Raw<'a>>,
        #[serde(rename = "keyDetails")]
        pub key_details: &'a str,
    }

    #[derive(Deserialize)]
    pub(super) struct Raw<'a> {
        #[serde(rename = "rawBytes", default)]
        pub raw_bytes: &'a str,
    }
}

/// The fast path of [`check_canonical_body`] for the common case, a canonical hashedrekord body:
/// `Some` only when `body` is exactly the canonical form of what it says, as the general path
/// would find. Anything else (another kind, escapes, a shape or canonical-form failure) is `None`
/// and goes to the general path, which says why.
fn typed_hashedrekord(body: &[u8]) -> Option<EntryKind> {
    let parsed: typed::Body<'_> = serde_json::from_slice(body).ok()?;
    if parsed.kind != "hashedrekord" {
        return None;
    }
    let spec = parsed.spec.hashed_rekord;
    let hash = [
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha512,
    ]
    .into_iter()
    .find(|hash| hash.proto_name() == spec.data.algorithm)?;
    let digest = decode_bytes(spec.data.digest).ok()?;
    let content = decode_bytes(spec.signature.content).ok()?;
    let verifier = &spec.signature.verifier;
    // As `verifier_of`: a public key wins over a certificate.
    let material = match (&verifier.public_key, &verifier.x509_certificate) {
        (Some(key), _) => VerifierMaterial::PublicKey {
            raw_bytes: decode_bytes(key.raw_bytes).ok()?,
        },
        (None, Some(cert)) => VerifierMaterial::X509Certificate {
            raw_bytes: decode_bytes(cert.raw_bytes).ok()?,
        },
        (None, None) => return None,
    };
    if material.raw_bytes().is_empty() {
        return None;
    }
    let details = PublicKeyDetails::from_name(verifier.key_details)?;
    let verifier = Verifier {
        material: Some(material),
        key_details: details.number(),
    };
    let rebuilt = hashedrekord_from_parts(hash, &digest, &content, &verifier).ok()?;
    (rebuilt == body).then_some(EntryKind::HashedRekord)
}

fn rebuild_dsse(value: &JsonValue) -> Result<Vec<u8>, CanonicalBodyError> {
    const KIND: &str = "dsse";
    let spec = object(KIND, value, "spec")?;
    let spec = object(KIND, spec, "dsseV002")?;
    let payload_hash = object(KIND, spec, "payloadHash")?;
    if algorithm_of(KIND, payload_hash)? != HashAlgorithm::Sha256 {
        return Err(malformed(KIND, "payload hash is not SHA2_256"));
    }
    let digest = bytes_of(KIND, payload_hash, "digest")?;
    if digest.len() != HashAlgorithm::Sha256.output_len() {
        return Err(malformed(KIND, "payload digest is not 32 bytes"));
    }
    let Some(JsonValue::Array(items)) = member(spec, "signatures") else {
        return Err(malformed(KIND, "no signatures array"));
    };
    if items.is_empty() || items.len() > crate::entry::MAX_DSSE_SIGNATURES {
        return Err(malformed(KIND, format!("{} signatures", items.len())));
    }
    let mut signatures = Vec::with_capacity(items.len());
    for item in items {
        let content = bytes_of(KIND, item, "content")?;
        if content.is_empty() {
            return Err(malformed(KIND, "empty signature"));
        }
        signatures.push((content, verifier_of(KIND, item)?));
    }
    // Validation logs distinct signatures in ascending byte order.
    if signatures.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
        return Err(malformed(KIND, "signatures not in ascending order"));
    }
    let logged: Vec<(&[u8], &Verifier)> = signatures
        .iter()
        .map(|(content, verifier)| (content.as_slice(), verifier))
        .collect();
    Ok(dsse_body(&digest, &logged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_and_strings_escape_per_rfc8785() {
        let value = CanonicalJson::Object(vec![
            ("b", CanonicalJson::str("x")),
            ("a", CanonicalJson::str("q\"\\\n\u{1}é")),
            ("aa", CanonicalJson::Array(vec![])),
        ]);
        assert_eq!(
            value.to_bytes(),
            "{\"a\":\"q\\\"\\\\\\n\\u0001é\",\"aa\":[],\"b\":\"x\"}".as_bytes()
        );
    }

    /// The hashedrekord body through the generic tree: the reference [`hashedrekord_body`]
    /// must match byte for byte.
    fn hashedrekord_body_by_tree(
        hash: HashAlgorithm,
        digest: &[u8],
        content: &[u8],
        verifier: &Verifier,
    ) -> Vec<u8> {
        let mut data = vec![("algorithm", CanonicalJson::str(hash.proto_name()))];
        bytes_member("digest", digest, &mut data);
        let mut signature = Vec::new();
        bytes_member("content", content, &mut signature);
        signature.push(("verifier", verifier_json(verifier)));
        entry(
            "hashedrekord",
            "hashedRekordV002",
            CanonicalJson::Object(vec![
                ("data", CanonicalJson::Object(data)),
                ("signature", CanonicalJson::Object(signature)),
            ]),
        )
    }

    fn arbitrary_verifier() -> impl proptest::strategy::Strategy<Value = Verifier> {
        use proptest::prelude::*;
        (
            0u8..3,
            proptest::collection::vec(any::<u8>(), 0..1200),
            // Known key details, none, and numbers no name belongs to.
            prop_oneof![0i32..=30, Just(0), 1000i32..1010],
        )
            .prop_map(|(material, raw_bytes, key_details)| Verifier {
                material: match material {
                    0 => None,
                    1 => Some(VerifierMaterial::PublicKey { raw_bytes }),
                    _ => Some(VerifierMaterial::X509Certificate { raw_bytes }),
                },
                key_details,
            })
    }

    proptest::proptest! {
        /// The direct writer and the tree agree on every entry, empty members and unnamed key
        /// details included.
        #[test]
        fn hashedrekord_body_is_the_trees_output(
            hash in proptest::sample::select(vec![
                HashAlgorithm::Sha256,
                HashAlgorithm::Sha384,
                HashAlgorithm::Sha512,
            ]),
            digest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..70),
            content in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            verifier in arbitrary_verifier(),
        ) {
            proptest::prop_assert_eq!(
                hashedrekord_body(hash, &digest, &content, &verifier),
                hashedrekord_body_by_tree(hash, &digest, &content, &verifier)
            );
        }
    }

    proptest::proptest! {
        /// RFC 8785 escapes strings as ECMAScript's JSON.stringify does, which for Rust strings
        /// (no lone surrogates) is serde_json's escaping: the byte-run copy must agree with it
        /// on every string, control characters and multi-byte characters included.
        #[test]
        fn strings_escape_as_json_stringify(text in "(?s).{0,64}|[\\x00-\\x7f]{0,64}") {
            let mut ours = Vec::new();
            write_string(&text, &mut ours);
            proptest::prop_assert_eq!(ours, serde_json::to_vec(&text).unwrap());
        }
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;

    fn p256_verifier() -> Verifier {
        Verifier {
            material: Some(VerifierMaterial::PublicKey {
                raw_bytes: vec![0x30, 0x59, 0x30, 0x13],
            }),
            key_details: PublicKeyDetails::PKIX_ECDSA_P256_SHA_256.number(),
        }
    }

    fn hashedrekord() -> Vec<u8> {
        hashedrekord_body(HashAlgorithm::Sha256, &[7; 32], b"sig", &p256_verifier())
    }

    #[test]
    fn bodies_validation_writes_pass() {
        assert_eq!(
            check_canonical_body(&hashedrekord(), false),
            Ok(EntryKind::HashedRekord)
        );
        // By the fast path, and by the general one.
        assert_eq!(
            typed_hashedrekord(&hashedrekord()),
            Some(EntryKind::HashedRekord)
        );
        assert_eq!(
            check_by_value(&hashedrekord(), false),
            Ok(EntryKind::HashedRekord)
        );
        let verifier = p256_verifier();
        let dsse = dsse_body(&[1; 32], &[(b"a", &verifier), (b"b", &verifier)]);
        assert_eq!(check_canonical_body(&dsse, true), Ok(EntryKind::Dsse));
    }

    #[test]
    fn dsse_needs_legacy_dsse_on() {
        let verifier = p256_verifier();
        let dsse = dsse_body(&[1; 32], &[(b"a", &verifier)]);
        assert_eq!(
            check_canonical_body(&dsse, false),
            Err(CanonicalBodyError::KindNotAccepted("dsse".into()))
        );
    }

    #[test]
    fn anything_but_the_exact_canonical_bytes_is_refused() {
        let body = hashedrekord();
        let text = String::from_utf8(body.clone()).unwrap();
        // Whitespace, a trailing byte, and another member order all parse to the same entry.
        let spaced = text.replacen(':', ": ", 1).into_bytes();
        let mut trailing = body.clone();
        trailing.push(b'\n');
        let without_version = text.replacen("{\"apiVersion\":\"0.0.2\",", "{", 1);
        let reordered = format!(
            "{},\"apiVersion\":\"0.0.2\"}}",
            &without_version[..without_version.len() - 1]
        )
        .into_bytes();
        for bad in [spaced, trailing, reordered] {
            assert_eq!(
                check_canonical_body(&bad, false),
                Err(CanonicalBodyError::NotCanonical),
                "{}",
                String::from_utf8_lossy(&bad)
            );
        }
        let unknown_member = text.replacen('{', "{\"extra\":\"x\",", 1).into_bytes();
        assert_eq!(
            check_canonical_body(&unknown_member, false),
            Err(CanonicalBodyError::NotCanonical)
        );
    }

    proptest::proptest! {
        /// The fast path accepts a body only if the general path does, and accepts every
        /// canonical hashedrekord body the general path accepts: on bodies written from arbitrary
        /// members (valid or not) and on those bodies with one byte changed.
        #[test]
        fn the_fast_path_agrees_with_the_general_one(
            hash in proptest::sample::select(vec![
                HashAlgorithm::Sha256,
                HashAlgorithm::Sha384,
                HashAlgorithm::Sha512,
            ]),
            digest_len in proptest::sample::select(vec![0usize, 31, 32, 48, 64]),
            content in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            certificate in proptest::prelude::any::<bool>(),
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            key_details in proptest::prelude::prop_oneof![0i32..=30, 1000i32..1002],
            flip in proptest::prelude::any::<(usize, u8)>(),
        ) {
            let verifier = Verifier {
                material: Some(if certificate {
                    VerifierMaterial::X509Certificate { raw_bytes: raw }
                } else {
                    VerifierMaterial::PublicKey { raw_bytes: raw }
                }),
                key_details,
            };
            let body = hashedrekord_body(hash, &vec![7; digest_len], &content, &verifier);
            let mut changed = body.clone();
            let at = flip.0 % changed.len();
            changed[at] ^= flip.1.max(1);
            for candidate in [body, changed] {
                let general = check_by_value(&candidate, false);
                match typed_hashedrekord(&candidate) {
                    Some(kind) => proptest::prop_assert_eq!(general, Ok(kind)),
                    None => proptest::prop_assert!(
                        general.is_err() || candidate.contains(&b'\\'),
                        "the general path accepted what the fast one missed: {}",
                        String::from_utf8_lossy(&candidate)
                    ),
                }
            }
        }
    }

    #[test]
    fn size_shape_and_json_are_checked() {
        assert_eq!(
            check_canonical_body(b"", false),
            Err(CanonicalBodyError::Empty)
        );
        assert_eq!(
            check_canonical_body(&vec![b' '; MAX_ENTRY_SIZE + 1], false),
            Err(CanonicalBodyError::TooLarge {
                size: MAX_ENTRY_SIZE + 1
            })
        );
        assert!(matches!(
            check_canonical_body(b"not json", false),
            Err(CanonicalBodyError::NotJson(_))
        ));
        assert!(matches!(
            check_canonical_body(b"{\"kind\":\"intoto\"}", false),
            Err(CanonicalBodyError::KindNotAccepted(_))
        ));
        // A digest of the wrong length for its algorithm.
        let short = hashedrekord_body(HashAlgorithm::Sha256, &[7; 31], b"sig", &p256_verifier());
        assert!(matches!(
            check_canonical_body(&short, false),
            Err(CanonicalBodyError::Malformed { .. })
        ));
        // An algorithm other than the key details' hash.
        let mismatched =
            hashedrekord_body(HashAlgorithm::Sha384, &[7; 48], b"sig", &p256_verifier());
        assert!(matches!(
            check_canonical_body(&mismatched, false),
            Err(CanonicalBodyError::Malformed { .. })
        ));
    }
}
