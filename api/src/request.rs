//! `dev.sigstore.rekor.v2.CreateEntryRequest` and the messages under it, decoded from
//! proto3 JSON with protojson's rules (rekor-v2-api.md §3, §4, §12.1).
//!
//! Both the lowerCamelCase JSON name and the proto field name are accepted for every field,
//! and a field given twice (under either name) is an error, as are unknown fields, values of
//! the wrong JSON type, bad base64, unknown enum names and two members of one oneof.

use crate::key_details::PublicKeyDetails;
use crate::proto_json::{
    decode_bytes, enum_token, parse_first_value, EnumToken, JsonValue, ProtoJsonError,
};

/// The decoded request. `spec` is `None` for `{}` or an empty body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateEntryRequest {
    pub spec: Option<RequestSpec>,
}

/// `CreateEntryRequest.spec` (oneof).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestSpec {
    HashedRekord(HashedRekordRequestV002),
    /// Deprecated upstream; accepted only when legacy DSSE is enabled (§12).
    Dsse(DsseRequestV002),
}

/// `rekor.v2.HashedRekordRequestV002`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HashedRekordRequestV002 {
    pub digest: Vec<u8>,
    pub signature: Option<Signature>,
}

/// `rekor.v2.Signature`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Signature {
    pub content: Vec<u8>,
    pub verifier: Option<Verifier>,
}

/// `rekor.v2.Verifier`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verifier {
    /// The `verifier` oneof: `None` when neither member is set.
    pub material: Option<VerifierMaterial>,
    /// The raw enum number: proto3 enums are open, so an unknown number decodes and is rejected
    /// later by validation (step 3), exactly like upstream.
    pub key_details: i32,
}

impl Verifier {
    /// The key details, if the number is a known enum value.
    pub fn key_details(&self) -> Option<PublicKeyDetails> {
        PublicKeyDetails::from_number(self.key_details)
    }
}

/// `Verifier.verifier` oneof members. Both are `{rawBytes}` messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifierMaterial {
    /// `rekor.v2.PublicKey.raw_bytes`: DER SubjectPublicKeyInfo.
    PublicKey { raw_bytes: Vec<u8> },
    /// `common.v1.X509Certificate.raw_bytes`: DER certificate.
    X509Certificate { raw_bytes: Vec<u8> },
}

impl VerifierMaterial {
    pub fn raw_bytes(&self) -> &[u8] {
        match self {
            VerifierMaterial::PublicKey { raw_bytes }
            | VerifierMaterial::X509Certificate { raw_bytes } => raw_bytes,
        }
    }
}

/// `rekor.v2.DSSERequestV002`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DsseRequestV002 {
    pub envelope: Option<Envelope>,
    pub verifiers: Vec<Verifier>,
}

/// `io.intoto.Envelope`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    pub payload: Vec<u8>,
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

/// `io.intoto.Signature`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvelopeSignature {
    pub sig: Vec<u8>,
    pub keyid: String,
}

impl CreateEntryRequest {
    /// Decodes a request body. An empty (or all-whitespace) body is the empty message, as
    /// grpc-gateway treats end-of-input; anything after the first JSON value is ignored.
    pub fn from_json(body: &[u8]) -> Result<Self, ProtoJsonError> {
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(CreateEntryRequest::default());
        }
        let value = parse_first_value(body)?;
        let members = as_object("CreateEntryRequest", &value)?;
        let mut request = CreateEntryRequest::default();
        let mut seen = Seen::default();
        for (key, value) in members {
            match key.as_str() {
                "hashedRekordRequestV002" | "hashed_rekord_request_v002" => {
                    seen.field("hashed_rekord_request_v002")?;
                    if let Some(m) = optional_message(key, value)? {
                        seen.oneof("spec", key)?;
                        request.spec = Some(RequestSpec::HashedRekord(decode_hashed_rekord(m)?));
                    }
                }
                "dsseRequestV002" | "dsse_request_v002" => {
                    seen.field("dsse_request_v002")?;
                    if let Some(m) = optional_message(key, value)? {
                        seen.oneof("spec", key)?;
                        request.spec = Some(RequestSpec::Dsse(decode_dsse(m)?));
                    }
                }
                _ => return Err(unknown_field(key)),
            }
        }
        Ok(request)
    }
}

/// Tracks fields already seen in one object (under either name) and set oneofs.
#[derive(Default)]
struct Seen {
    fields: Vec<&'static str>,
    oneofs: Vec<&'static str>,
}

impl Seen {
    fn field(&mut self, proto_name: &'static str) -> Result<(), ProtoJsonError> {
        if self.fields.contains(&proto_name) {
            return Err(ProtoJsonError::new(format!(
                "duplicate field {proto_name:?}"
            )));
        }
        self.fields.push(proto_name);
        Ok(())
    }

    fn oneof(&mut self, oneof: &'static str, key: &str) -> Result<(), ProtoJsonError> {
        if self.oneofs.contains(&oneof) {
            return Err(ProtoJsonError::new(format!(
                "error parsing {key:?}, oneof {oneof} is already set"
            )));
        }
        self.oneofs.push(oneof);
        Ok(())
    }
}

fn unknown_field(key: &str) -> ProtoJsonError {
    ProtoJsonError::new(format!("unknown field {key:?}"))
}

fn as_object<'a>(
    message: &str,
    value: &'a JsonValue,
) -> Result<&'a [(String, JsonValue)], ProtoJsonError> {
    match value {
        JsonValue::Object(members) => Ok(members),
        other => Err(ProtoJsonError::new(format!(
            "invalid value for message {message}: {}",
            other.kind()
        ))),
    }
}

/// A message-typed field: `null` means "not set".
fn optional_message<'a>(
    key: &str,
    value: &'a JsonValue,
) -> Result<Option<&'a [(String, JsonValue)]>, ProtoJsonError> {
    match value {
        JsonValue::Null => Ok(None),
        JsonValue::Object(members) => Ok(Some(members)),
        other => Err(ProtoJsonError::new(format!(
            "invalid value for message field {key}: {}",
            other.kind()
        ))),
    }
}

/// A `bytes` field: base64 string, `null` = empty.
fn bytes_field(key: &str, value: &JsonValue) -> Result<Vec<u8>, ProtoJsonError> {
    match value {
        JsonValue::Null => Ok(Vec::new()),
        JsonValue::String(text) => decode_bytes(text)
            .map_err(|e| ProtoJsonError::new(format!("invalid value for bytes field {key}: {e}"))),
        other => Err(ProtoJsonError::new(format!(
            "invalid value for bytes field {key}: {}",
            other.kind()
        ))),
    }
}

/// A `string` field: `null` = empty.
fn string_field(key: &str, value: &JsonValue) -> Result<String, ProtoJsonError> {
    match value {
        JsonValue::Null => Ok(String::new()),
        JsonValue::String(text) => Ok(text.clone()),
        other => Err(ProtoJsonError::new(format!(
            "invalid value for string field {key}: {}",
            other.kind()
        ))),
    }
}

/// A repeated field: an array, `null` = empty; elements may not be `null`.
fn repeated<'a>(key: &str, value: &'a JsonValue) -> Result<&'a [JsonValue], ProtoJsonError> {
    match value {
        JsonValue::Null => Ok(&[]),
        JsonValue::Array(items) => Ok(items),
        other => Err(ProtoJsonError::new(format!(
            "invalid value for repeated field {key}: {}",
            other.kind()
        ))),
    }
}

fn decode_hashed_rekord(
    members: &[(String, JsonValue)],
) -> Result<HashedRekordRequestV002, ProtoJsonError> {
    let mut out = HashedRekordRequestV002::default();
    let mut seen = Seen::default();
    for (key, value) in members {
        match key.as_str() {
            "digest" => {
                seen.field("digest")?;
                out.digest = bytes_field(key, value)?;
            }
            "signature" => {
                seen.field("signature")?;
                out.signature = optional_message(key, value)?
                    .map(decode_signature)
                    .transpose()?;
            }
            _ => return Err(unknown_field(key)),
        }
    }
    Ok(out)
}

fn decode_signature(members: &[(String, JsonValue)]) -> Result<Signature, ProtoJsonError> {
    let mut out = Signature::default();
    let mut seen = Seen::default();
    for (key, value) in members {
        match key.as_str() {
            "content" => {
                seen.field("content")?;
                out.content = bytes_field(key, value)?;
            }
            "verifier" => {
                seen.field("verifier")?;
                out.verifier = optional_message(key, value)?
                    .map(decode_verifier)
                    .transpose()?;
            }
            _ => return Err(unknown_field(key)),
        }
    }
    Ok(out)
}

fn decode_verifier(members: &[(String, JsonValue)]) -> Result<Verifier, ProtoJsonError> {
    let mut out = Verifier::default();
    let mut seen = Seen::default();
    for (key, value) in members {
        match key.as_str() {
            "publicKey" | "public_key" => {
                seen.field("public_key")?;
                if let Some(m) = optional_message(key, value)? {
                    seen.oneof("verifier", key)?;
                    out.material = Some(VerifierMaterial::PublicKey {
                        raw_bytes: decode_raw_bytes(m)?,
                    });
                }
            }
            "x509Certificate" | "x509_certificate" => {
                seen.field("x509_certificate")?;
                if let Some(m) = optional_message(key, value)? {
                    seen.oneof("verifier", key)?;
                    out.material = Some(VerifierMaterial::X509Certificate {
                        raw_bytes: decode_raw_bytes(m)?,
                    });
                }
            }
            "keyDetails" | "key_details" => {
                seen.field("key_details")?;
                out.key_details = match value {
                    JsonValue::Null => 0,
                    value => match enum_token(key, value)? {
                        EnumToken::Number(number) => number,
                        EnumToken::Name(name) => PublicKeyDetails::from_name(name)
                            .map(PublicKeyDetails::number)
                            .ok_or_else(|| {
                                ProtoJsonError::new(format!(
                                    "invalid value for enum field {key}: {name:?}"
                                ))
                            })?,
                    },
                };
            }
            _ => return Err(unknown_field(key)),
        }
    }
    Ok(out)
}

/// `rekor.v2.PublicKey` and `common.v1.X509Certificate`: one `bytes raw_bytes = 1` field.
fn decode_raw_bytes(members: &[(String, JsonValue)]) -> Result<Vec<u8>, ProtoJsonError> {
    let mut raw = Vec::new();
    let mut seen = Seen::default();
    for (key, value) in members {
        match key.as_str() {
            "rawBytes" | "raw_bytes" => {
                seen.field("raw_bytes")?;
                raw = bytes_field(key, value)?;
            }
            _ => return Err(unknown_field(key)),
        }
    }
    Ok(raw)
}

fn decode_dsse(members: &[(String, JsonValue)]) -> Result<DsseRequestV002, ProtoJsonError> {
    let mut out = DsseRequestV002::default();
    let mut seen = Seen::default();
    for (key, value) in members {
        match key.as_str() {
            "envelope" => {
                seen.field("envelope")?;
                out.envelope = optional_message(key, value)?
                    .map(decode_envelope)
                    .transpose()?;
            }
            "verifiers" => {
                seen.field("verifiers")?;
                out.verifiers = repeated(key, value)?
                    .iter()
                    .map(|item| as_object("Verifier", item).and_then(decode_verifier))
                    .collect::<Result<_, _>>()?;
            }
            _ => return Err(unknown_field(key)),
        }
    }
    Ok(out)
}

fn decode_envelope(members: &[(String, JsonValue)]) -> Result<Envelope, ProtoJsonError> {
    let mut out = Envelope::default();
    let mut seen = Seen::default();
    for (key, value) in members {
        match key.as_str() {
            "payload" => {
                seen.field("payload")?;
                out.payload = bytes_field(key, value)?;
            }
            // The proto field is itself named `payloadType`, so it has a single name.
            "payloadType" => {
                seen.field("payloadType")?;
                out.payload_type = string_field(key, value)?;
            }
            "signatures" => {
                seen.field("signatures")?;
                out.signatures = repeated(key, value)?
                    .iter()
                    .map(|item| as_object("Signature", item).and_then(decode_envelope_signature))
                    .collect::<Result<_, _>>()?;
            }
            _ => return Err(unknown_field(key)),
        }
    }
    Ok(out)
}

fn decode_envelope_signature(
    members: &[(String, JsonValue)],
) -> Result<EnvelopeSignature, ProtoJsonError> {
    let mut out = EnvelopeSignature::default();
    let mut seen = Seen::default();
    for (key, value) in members {
        match key.as_str() {
            "sig" => {
                seen.field("sig")?;
                out.sig = bytes_field(key, value)?;
            }
            "keyid" => {
                seen.field("keyid")?;
                out.keyid = string_field(key, value)?;
            }
            _ => return Err(unknown_field(key)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashed(request: &CreateEntryRequest) -> &HashedRekordRequestV002 {
        match &request.spec {
            Some(RequestSpec::HashedRekord(h)) => h,
            other => panic!("not a hashedrekord: {other:?}"),
        }
    }

    #[test]
    fn camel_case_and_proto_names_mix() {
        // CLIENTS.md's own curl example mixes the two forms.
        let body = br#"{"hashedRekordRequestV002":{"digest":"AAEC","signature":{"content":"AQ==",
            "verifier":{"key_details":"PKIX_ECDSA_P256_SHA_256","public_key":{"raw_bytes":"Ag=="}}}}}"#;
        let request = CreateEntryRequest::from_json(body).unwrap();
        let h = hashed(&request);
        assert_eq!(h.digest, vec![0, 1, 2]);
        let signature = h.signature.as_ref().unwrap();
        assert_eq!(signature.content, vec![1]);
        let verifier = signature.verifier.as_ref().unwrap();
        assert_eq!(
            verifier.key_details(),
            Some(PublicKeyDetails::PKIX_ECDSA_P256_SHA_256)
        );
        assert_eq!(
            verifier.material,
            Some(VerifierMaterial::PublicKey { raw_bytes: vec![2] })
        );
    }

    #[test]
    fn enum_by_number() {
        let body = br#"{"hashed_rekord_request_v002":{"signature":{"verifier":{"keyDetails":5}}}}"#;
        let request = CreateEntryRequest::from_json(body).unwrap();
        let verifier = hashed(&request)
            .signature
            .as_ref()
            .unwrap()
            .verifier
            .as_ref()
            .unwrap();
        assert_eq!(
            verifier.key_details(),
            Some(PublicKeyDetails::PKIX_ECDSA_P256_SHA_256)
        );
    }

    #[test]
    fn rejections() {
        let cases: &[(&str, &[u8])] = &[
            ("unknown top-level field", br#"{"foo":1}"#),
            ("unknown nested field", br#"{"hashedRekordRequestV002":{"digest":"AA==","extra":true}}"#),
            ("same field under both names", br#"{"hashedRekordRequestV002":{"signature":{"verifier":{"keyDetails":5,"key_details":5}}}}"#),
            ("duplicate key", br#"{"hashedRekordRequestV002":{"digest":"AA==","digest":"AA=="}}"#),
            ("two spec members", br#"{"hashedRekordRequestV002":{},"dsseRequestV002":{}}"#),
            ("two verifier members", br#"{"hashedRekordRequestV002":{"signature":{"verifier":{"publicKey":{},"x509Certificate":{}}}}}"#),
            ("bad base64", br#"{"hashedRekordRequestV002":{"digest":"!!!!"}}"#),
            ("wrong type for bytes", br#"{"hashedRekordRequestV002":{"digest":12}}"#),
            ("wrong type for message", br#"{"hashedRekordRequestV002":"x"}"#),
            ("unknown enum name", br#"{"hashedRekordRequestV002":{"signature":{"verifier":{"keyDetails":"P256"}}}}"#),
            ("enum out of int32", br#"{"hashedRekordRequestV002":{"signature":{"verifier":{"keyDetails":4294967296}}}}"#),
            ("case-sensitive names", br#"{"HashedRekordRequestV002":{}}"#),
            ("not an object", br#"[1]"#),
            ("syntax error", br#"{"hashedRekordRequestV002":"#),
        ];
        for (name, body) in cases {
            assert!(
                CreateEntryRequest::from_json(body).is_err(),
                "{name} was accepted"
            );
        }
    }

    #[test]
    fn null_means_not_set() {
        let request = CreateEntryRequest::from_json(
            br#"{"hashedRekordRequestV002":null,"dsseRequestV002":{}}"#,
        )
        .unwrap();
        assert!(matches!(request.spec, Some(RequestSpec::Dsse(_))));
        let request = CreateEntryRequest::from_json(
            br#"{"hashedRekordRequestV002":{"digest":null,"signature":null}}"#,
        )
        .unwrap();
        assert_eq!(hashed(&request), &HashedRekordRequestV002::default());
    }

    #[test]
    fn empty_body_and_empty_object_have_no_spec() {
        assert_eq!(CreateEntryRequest::from_json(b"").unwrap().spec, None);
        assert_eq!(CreateEntryRequest::from_json(b"{}").unwrap().spec, None);
    }

    #[test]
    fn dsse_request_decodes() {
        let body = br#"{"dsseRequestV002":{"envelope":{"payload":"e30=","payloadType":"t",
            "signatures":[{"sig":"AQ==","keyid":""}]},"verifiers":[{"publicKey":{"rawBytes":"Ag=="},"keyDetails":"PKIX_ED25519"}]}}"#;
        let request = CreateEntryRequest::from_json(body).unwrap();
        let Some(RequestSpec::Dsse(dsse)) = request.spec else {
            panic!("not dsse")
        };
        let envelope = dsse.envelope.unwrap();
        assert_eq!(envelope.payload, b"{}");
        assert_eq!(envelope.payload_type, "t");
        assert_eq!(
            envelope.signatures,
            vec![EnvelopeSignature {
                sig: vec![1],
                keyid: String::new()
            }]
        );
        assert_eq!(dsse.verifiers.len(), 1);
        // The v2.2.1 CLIENTS.md typo `verifier` is an unknown field.
        assert!(CreateEntryRequest::from_json(br#"{"dsseRequestV002":{"verifier":[]}}"#).is_err());
    }
}
