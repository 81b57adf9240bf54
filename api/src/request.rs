//! `dev.sigstore.rekor.v2.CreateEntryRequest` and the messages under it, decoded from
//! proto3 JSON with protojson's rules (rekor-v2-api.md §3, §4, §12.1).
//!
//! Both the lowerCamelCase JSON name and the proto field name are accepted for every field,
//! and a field given twice (under either name) is an error, as are unknown fields, values of
//! the wrong JSON type, bad base64, unknown enum names and two members of one oneof. Each
//! message says here which fields it has and how to read each one; the streaming machinery
//! that drives them over the body is in [`crate::proto_json`].

use crate::key_details::PublicKeyDetails;
use serde::de::MapAccess;

use crate::proto_json::{
    BytesSeed, Decoder, EnumSeed, Field, Message, MessageSeed, Oneof, ProtoJsonError, RepeatedSeed,
    StringSeed,
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
        Decoder::decode_root(body)
    }
}

/// A field with the same JSON and proto name.
const fn one_name(names: &'static [&'static str]) -> Field {
    Field {
        names,
        proto_name: names[0],
    }
}

impl Message for CreateEntryRequest {
    const NAME: &'static str = "CreateEntryRequest";
    const FIELDS: &'static [Field] = &[
        Field {
            names: &["hashedRekordRequestV002", "hashed_rekord_request_v002"],
            proto_name: "hashed_rekord_request_v002",
        },
        Field {
            names: &["dsseRequestV002", "dsse_request_v002"],
            proto_name: "dsse_request_v002",
        },
    ];

    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        key: &'static str,
        map: &mut A,
        decoder: &Decoder,
    ) -> Result<(), A::Error> {
        let oneof = Oneof {
            name: "spec",
            already_set: self.spec.is_some(),
        };
        if index == 0 {
            let seed = MessageSeed::oneof_member(decoder, key, oneof);
            if let Some(m) = map.next_value_seed(seed)? {
                self.spec = Some(RequestSpec::HashedRekord(m));
            }
        } else {
            let seed = MessageSeed::oneof_member(decoder, key, oneof);
            if let Some(m) = map.next_value_seed(seed)? {
                self.spec = Some(RequestSpec::Dsse(m));
            }
        }
        Ok(())
    }
}

impl Message for HashedRekordRequestV002 {
    const NAME: &'static str = "HashedRekordRequestV002";
    const FIELDS: &'static [Field] = &[one_name(&["digest"]), one_name(&["signature"])];

    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        key: &'static str,
        map: &mut A,
        decoder: &Decoder,
    ) -> Result<(), A::Error> {
        if index == 0 {
            self.digest = map.next_value_seed(BytesSeed { decoder, key })?;
        } else {
            self.signature = map.next_value_seed(MessageSeed::field(decoder, key))?;
        }
        Ok(())
    }
}

impl Message for Signature {
    const NAME: &'static str = "Signature";
    const FIELDS: &'static [Field] = &[one_name(&["content"]), one_name(&["verifier"])];

    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        key: &'static str,
        map: &mut A,
        decoder: &Decoder,
    ) -> Result<(), A::Error> {
        if index == 0 {
            self.content = map.next_value_seed(BytesSeed { decoder, key })?;
        } else {
            self.verifier = map.next_value_seed(MessageSeed::field(decoder, key))?;
        }
        Ok(())
    }
}

impl Message for Verifier {
    const NAME: &'static str = "Verifier";
    const FIELDS: &'static [Field] = &[
        Field {
            names: &["publicKey", "public_key"],
            proto_name: "public_key",
        },
        Field {
            names: &["x509Certificate", "x509_certificate"],
            proto_name: "x509_certificate",
        },
        Field {
            names: &["keyDetails", "key_details"],
            proto_name: "key_details",
        },
    ];

    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        key: &'static str,
        map: &mut A,
        decoder: &Decoder,
    ) -> Result<(), A::Error> {
        let oneof = Oneof {
            name: "verifier",
            already_set: self.material.is_some(),
        };
        match index {
            0 => {
                let seed = MessageSeed::<RawBytes>::oneof_member(decoder, key, oneof);
                if let Some(RawBytes(raw_bytes)) = map.next_value_seed(seed)? {
                    self.material = Some(VerifierMaterial::PublicKey { raw_bytes });
                }
            }
            1 => {
                let seed = MessageSeed::<RawBytes>::oneof_member(decoder, key, oneof);
                if let Some(RawBytes(raw_bytes)) = map.next_value_seed(seed)? {
                    self.material = Some(VerifierMaterial::X509Certificate { raw_bytes });
                }
            }
            _ => {
                self.key_details = map.next_value_seed(EnumSeed {
                    decoder,
                    key,
                    from_name: |name| {
                        PublicKeyDetails::from_name(name).map(PublicKeyDetails::number)
                    },
                })?;
            }
        }
        Ok(())
    }
}

/// `rekor.v2.PublicKey` and `common.v1.X509Certificate`: one `bytes raw_bytes = 1` field.
#[derive(Default)]
struct RawBytes(Vec<u8>);

impl Message for RawBytes {
    const NAME: &'static str = "PublicKey";
    const FIELDS: &'static [Field] = &[Field {
        names: &["rawBytes", "raw_bytes"],
        proto_name: "raw_bytes",
    }];

    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        _index: usize,
        key: &'static str,
        map: &mut A,
        decoder: &Decoder,
    ) -> Result<(), A::Error> {
        self.0 = map.next_value_seed(BytesSeed { decoder, key })?;
        Ok(())
    }
}

impl Message for DsseRequestV002 {
    const NAME: &'static str = "DSSERequestV002";
    const FIELDS: &'static [Field] = &[one_name(&["envelope"]), one_name(&["verifiers"])];

    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        key: &'static str,
        map: &mut A,
        decoder: &Decoder,
    ) -> Result<(), A::Error> {
        if index == 0 {
            self.envelope = map.next_value_seed(MessageSeed::field(decoder, key))?;
        } else {
            self.verifiers = map.next_value_seed(RepeatedSeed::new(decoder, key))?;
        }
        Ok(())
    }
}

impl Message for Envelope {
    const NAME: &'static str = "Envelope";
    // The proto field is itself named `payloadType`, so it has a single name.
    const FIELDS: &'static [Field] = &[
        one_name(&["payload"]),
        one_name(&["payloadType"]),
        one_name(&["signatures"]),
    ];

    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        key: &'static str,
        map: &mut A,
        decoder: &Decoder,
    ) -> Result<(), A::Error> {
        match index {
            0 => self.payload = map.next_value_seed(BytesSeed { decoder, key })?,
            1 => self.payload_type = map.next_value_seed(StringSeed { decoder, key })?,
            _ => self.signatures = map.next_value_seed(RepeatedSeed::new(decoder, key))?,
        }
        Ok(())
    }
}

impl Message for EnvelopeSignature {
    const NAME: &'static str = "Signature";
    const FIELDS: &'static [Field] = &[one_name(&["sig"]), one_name(&["keyid"])];

    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        key: &'static str,
        map: &mut A,
        decoder: &Decoder,
    ) -> Result<(), A::Error> {
        if index == 0 {
            self.sig = map.next_value_seed(BytesSeed { decoder, key })?;
        } else {
            self.keyid = map.next_value_seed(StringSeed { decoder, key })?;
        }
        Ok(())
    }
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

    fn error(body: &[u8]) -> String {
        CreateEntryRequest::from_json(body).unwrap_err().to_string()
    }

    #[test]
    fn error_texts() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"foo":1}"#, r#"unknown field "foo""#),
            (
                br#"{"hashedRekordRequestV002":{"digest":"AA==","digest":"AA=="}}"#,
                r#"duplicate field "digest""#,
            ),
            (
                br#"{"hashedRekordRequestV002":{"signature":{"verifier":{"keyDetails":5,"key_details":5}}}}"#,
                r#"duplicate field "key_details""#,
            ),
            (
                br#"{"hashedRekordRequestV002":{},"dsseRequestV002":{}}"#,
                r#"error parsing "dsseRequestV002", oneof spec is already set"#,
            ),
            (
                br#"{"hashedRekordRequestV002":{"signature":{"verifier":{"publicKey":{},"x509_certificate":{}}}}}"#,
                r#"error parsing "x509_certificate", oneof verifier is already set"#,
            ),
            (
                br#"{"hashedRekordRequestV002":{"digest":"!!!!"}}"#,
                "invalid value for bytes field digest: Invalid symbol 33, offset 0.",
            ),
            (
                br#"{"hashedRekordRequestV002":{"digest":12}}"#,
                "invalid value for bytes field digest: number",
            ),
            (
                br#"{"hashed_rekord_request_v002":"x"}"#,
                "invalid value for message field hashed_rekord_request_v002: string",
            ),
            (
                br#"{"hashedRekordRequestV002":{"signature":{"verifier":{"keyDetails":"P256"}}}}"#,
                r#"invalid value for enum field keyDetails: "P256""#,
            ),
            (
                br#"{"hashedRekordRequestV002":{"signature":{"verifier":{"keyDetails":4294967296}}}}"#,
                "invalid value for enum field keyDetails: 4294967296",
            ),
            (
                br#"{"hashedRekordRequestV002":{"signature":{"verifier":{"keyDetails":1.5}}}}"#,
                "invalid value for enum field keyDetails: 1.5",
            ),
            (
                br#"{"hashedRekordRequestV002":{"signature":{"verifier":{"keyDetails":true}}}}"#,
                "invalid value for enum field keyDetails: bool",
            ),
            (
                br#"{"dsseRequestV002":{"verifiers":{}}}"#,
                "invalid value for repeated field verifiers: object",
            ),
            (
                br#"{"dsseRequestV002":{"verifiers":[null]}}"#,
                "invalid value for message Verifier: null",
            ),
            (
                br#"{"dsseRequestV002":{"envelope":{"signatures":[1]}}}"#,
                "invalid value for message Signature: number",
            ),
            (
                br#"{"dsseRequestV002":{"envelope":{"payloadType":[]}}}"#,
                "invalid value for string field payloadType: array",
            ),
            (b"[1]", "invalid value for message CreateEntryRequest: array"),
            (b"null", "invalid value for message CreateEntryRequest: null"),
        ];
        for (body, message) in cases {
            assert_eq!(error(body), format!("proto: {message}"));
        }
        let syntax = error(br#"{"hashedRekordRequestV002":"#);
        assert!(syntax.starts_with("proto: syntax error: "), "{syntax}");
        assert!(
            error(b"{\"hashedRekordRequestV002\":{\"digest\":\"AA\nAA\"}}")
                .starts_with("proto: syntax error: ")
        );
    }

    #[test]
    fn trailing_bytes_after_the_first_value_are_ignored() {
        let request = CreateEntryRequest::from_json(br#"{"dsseRequestV002":{}} trailing {"#);
        assert!(matches!(request.unwrap().spec, Some(RequestSpec::Dsse(_))));
        assert_eq!(CreateEntryRequest::from_json(b" \n\t ").unwrap().spec, None);
    }

    // The tests below fail on a decoder that builds the whole JSON tree before looking at it:
    // each rejection must come from the token that reveals it, whatever follows.

    #[test]
    fn an_unknown_field_is_rejected_before_its_value_is_read() {
        assert_eq!(
            error(br#"{"foo":[[[[ not json"#),
            r#"proto: unknown field "foo""#
        );
        assert_eq!(
            error(br#"{"dsseRequestV002":{"envelope":{"payloadtype":}"#),
            r#"proto: unknown field "payloadtype""#
        );
    }

    #[test]
    fn a_duplicate_field_is_rejected_before_its_value_is_read() {
        assert_eq!(
            error(br#"{"hashedRekordRequestV002":{"digest":"","digest":garbage"#),
            r#"proto: duplicate field "digest""#
        );
        assert_eq!(
            error(br#"{"hashedRekordRequestV002":null,"hashed_rekord_request_v002":}}}"#),
            r#"proto: duplicate field "hashed_rekord_request_v002""#
        );
    }

    #[test]
    fn a_second_oneof_member_and_a_wrong_type_are_rejected_at_their_first_token() {
        assert_eq!(
            error(br#"{"hashedRekordRequestV002":{},"dsseRequestV002":{"foo" garbage"#),
            r#"proto: error parsing "dsseRequestV002", oneof spec is already set"#
        );
        assert_eq!(
            error(br#"{"hashedRekordRequestV002":[1,2,"unterminated"#),
            "proto: invalid value for message field hashedRekordRequestV002: array"
        );
        assert_eq!(
            error(br#"{"dsseRequestV002":{"verifiers":[[[[[[[ garbage"#),
            "proto: invalid value for message Verifier: array"
        );
    }

    #[test]
    fn a_request_may_hold_at_most_max_json_values() {
        use crate::proto_json::MAX_JSON_VALUES;
        // Root, dsseRequestV002 and the array are 3 values; each `{}` element is one more.
        let body = |elements: usize| {
            format!(
                r#"{{"dsseRequestV002":{{"verifiers":[{}]}}}}"#,
                vec!["{}"; elements].join(",")
            )
        };
        let at_cap = CreateEntryRequest::from_json(body(MAX_JSON_VALUES - 3).as_bytes()).unwrap();
        let Some(RequestSpec::Dsse(dsse)) = at_cap.spec else {
            panic!("not dsse")
        };
        assert_eq!(dsse.verifiers.len(), MAX_JSON_VALUES - 3);
        assert_eq!(
            error(body(MAX_JSON_VALUES - 2).as_bytes()),
            format!("proto: too many JSON values: a request may hold at most {MAX_JSON_VALUES}")
        );
        // Counted across fields: signatures and verifiers share the budget.
        let signatures = vec![r#"{"sig":"AQ==","keyid":"k"}"#; 200].join(",");
        let verifiers = vec![r#"{"publicKey":{"rawBytes":"Ag=="},"keyDetails":1}"#; 200].join(",");
        let mixed = format!(
            r#"{{"dsseRequestV002":{{"envelope":{{"signatures":[{signatures}]}},"verifiers":[{verifiers}]}}}}"#
        );
        assert!(error(mixed.as_bytes()).contains("too many JSON values"));
    }

    #[test]
    fn errors_do_not_carry_serde_json_positions_or_huge_keys() {
        let key = "k".repeat(100_000);
        let message = error(format!(r#"{{"{key}":0}}"#).as_bytes());
        assert!(
            message.starts_with(r#"proto: unknown field "kkk"#),
            "{message}"
        );
        assert!(message.len() < 200, "{} bytes", message.len());
        assert!(!error(b"{\n\n  \"foo\":1}").contains(" at line "));
    }
}
