//! Canonical log-entry bodies: `dev.sigstore.rekor.v2.Entry` as protojson, canonicalised with
//! RFC 8785 (JCS), plus the leaf and identity hashes (rekor-v2-api.md §6, §12.3).
//!
//! The writer here is our own instead of serde_json's map ordering: serde_json's `preserve_order`
//! feature can be switched on by any crate in the build, which would silently change key order.

use sha2::{Digest as _, Sha256};

use crate::key_details::HashAlgorithm;
use crate::proto_json::encode_bytes;
use crate::request::{Verifier, VerifierMaterial};

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
/// control characters, everything else verbatim.
fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
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
pub fn hashedrekord_body(
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
}
