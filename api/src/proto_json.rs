//! A strict JSON tree and the proto3-JSON scalar rules Go's `protojson` applies when it decodes
//! a request (rekor-v2-api.md §3).
//!
//! serde_json keeps the last of two duplicate keys without complaint, and protojson rejects them,
//! so requests are first parsed into [`JsonValue`], whose map visitor refuses a repeated key.
//! The typed decoding in [`crate::request`] then walks this tree field by field.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A parsed JSON value that keeps object members in document order and has no duplicate keys.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<JsonValue>),
    Object(Vec<(String, JsonValue)>),
}

impl JsonValue {
    /// What protojson calls this kind of value in its error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            JsonValue::Null => "null",
            JsonValue::Bool(_) => "bool",
            JsonValue::Number(_) => "number",
            JsonValue::String(_) => "string",
            JsonValue::Array(_) => "array",
            JsonValue::Object(_) => "object",
        }
    }
}

/// Why a request body is not a valid proto3-JSON `CreateEntryRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proto: {0}")]
pub struct ProtoJsonError(pub String);

impl ProtoJsonError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ProtoJsonError(message.into())
    }
}

/// Parses the first JSON value of `body`. Like protojson behind grpc-gateway, bytes after the
/// first complete value are ignored (rekor-v2-api.md §3, "Trailing bytes").
pub fn parse_first_value(body: &[u8]) -> Result<JsonValue, ProtoJsonError> {
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<JsonValue>();
    match stream.next() {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(ProtoJsonError::new(format!("syntax error: {e}"))),
        None => Err(ProtoJsonError::new("syntax error: unexpected EOF")),
    }
}

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = JsonValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<JsonValue, E> {
        Ok(JsonValue::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<JsonValue, E> {
        Ok(JsonValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonValue, E> {
        serde_json::Number::from_f64(v)
            .map(JsonValue::Number)
            .ok_or_else(|| E::custom("invalid number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonValue, E> {
        Ok(JsonValue::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<JsonValue, E> {
        Ok(JsonValue::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<JsonValue>()? {
            items.push(item);
        }
        Ok(JsonValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonValue, A::Error> {
        let mut members: Vec<(String, JsonValue)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            // Objects in a request have a handful of members: a linear scan is cheapest.
            if members.iter().any(|(existing, _)| *existing == key) {
                return Err(de::Error::custom(format!("duplicate field {key:?}")));
            }
            let value = map.next_value::<JsonValue>()?;
            members.push((key, value));
        }
        Ok(JsonValue::Object(members))
    }
}

/// Standard alphabet, `=` padding required (protojson uses it when `len % 4 == 0`).
/// Non-zero trailing bits are accepted, as Go's non-strict decoder does.
const STANDARD_PADDED: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);
const STANDARD_RAW: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);
const URL_SAFE_PADDED: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);
const URL_SAFE_RAW: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Decodes a proto3-JSON `bytes` value the way protojson does: the URL-safe alphabet if the
/// string contains `-` or `_`, otherwise the standard one; padded when `len % 4 == 0`, unpadded
/// otherwise. Go's decoder skips `\r` and `\n`, so they are removed after choosing the variant.
pub fn decode_bytes(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let url_safe = text.contains(['-', '_']);
    let padded = text.len().is_multiple_of(4);
    let cleaned: String;
    let input = if text.contains(['\r', '\n']) {
        cleaned = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        cleaned.as_str()
    } else {
        text
    };
    match (url_safe, padded) {
        (false, true) => STANDARD_PADDED.decode(input),
        (false, false) => STANDARD_RAW.decode(input),
        (true, true) => URL_SAFE_PADDED.decode(input),
        (true, false) => URL_SAFE_RAW.decode(input),
    }
}

/// Standard padded base64: how the stored form and the responses write `bytes` (§3, §7).
pub fn encode_bytes(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads a proto3-JSON enum value: its name, or its number as a JSON integer within int32.
pub(crate) enum EnumToken<'a> {
    Name(&'a str),
    Number(i32),
}

pub(crate) fn enum_token<'a>(
    field: &str,
    value: &'a JsonValue,
) -> Result<EnumToken<'a>, ProtoJsonError> {
    match value {
        JsonValue::String(name) => Ok(EnumToken::Name(name)),
        JsonValue::Number(number) => {
            let as_int = if let Some(i) = number.as_i64() {
                Some(i)
            } else {
                // protojson accepts integral numbers written with a fraction or exponent.
                number
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() <= i64::MAX as f64)
                    .map(|f| f as i64)
            };
            as_int
                .and_then(|i| i32::try_from(i).ok())
                .map(EnumToken::Number)
                .ok_or_else(|| {
                    ProtoJsonError::new(format!("invalid value for enum field {field}: {number}"))
                })
        }
        other => Err(ProtoJsonError::new(format!(
            "invalid value for enum field {field}: {}",
            other.kind()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        assert!(parse_first_value(br#"{"a":1,"a":2}"#).is_err());
        assert!(parse_first_value(br#"{"a":{"b":1,"b":1}}"#).is_err());
        assert!(parse_first_value(br#"{"a":1,"b":2}"#).is_ok());
    }

    #[test]
    fn trailing_bytes_after_the_first_value_are_ignored() {
        let value = parse_first_value(br#"{"a":"x"} trailing garbage"#).unwrap();
        assert_eq!(
            value,
            JsonValue::Object(vec![("a".into(), JsonValue::String("x".into()))])
        );
    }

    #[test]
    fn empty_body_is_a_syntax_error() {
        assert!(parse_first_value(b"").is_err());
        assert!(parse_first_value(b"   ").is_err());
    }

    #[test]
    fn raw_newline_inside_a_string_is_invalid_json() {
        assert!(parse_first_value(b"{\"a\":\"AA\nAA\"}").is_err());
    }

    #[test]
    fn base64_variants_follow_protojson() {
        // "hi?" = 0x68 0x69 0x3f -> standard "aGk/", URL-safe "aGk_".
        assert_eq!(decode_bytes("aGk/").unwrap(), b"hi?");
        assert_eq!(decode_bytes("aGk_").unwrap(), b"hi?");
        // "hi" padded and unpadded, both alphabets.
        assert_eq!(decode_bytes("aGk=").unwrap(), b"hi");
        assert_eq!(decode_bytes("aGk").unwrap(), b"hi");
        // Padding on a length that is not a multiple of 4 is an error (raw decoder).
        assert!(decode_bytes("aGk==").is_err());
        // Mixed alphabets are invalid.
        assert!(decode_bytes("a+k_").is_err());
        // Escaped newlines are skipped like Go does.
        assert!(decode_bytes("aG\nk=").is_err());
        assert!(decode_bytes("aGk=\r\naGk=").is_err());
        // The variant is chosen on the length with newlines (8 → padded), as Go does.
        assert!(decode_bytes("aGk/\naGk").is_err());
        assert_eq!(decode_bytes("aGk/\n\n\n\naGk=").unwrap(), b"hi?hi");
        assert_eq!(decode_bytes("").unwrap(), b"");
        assert!(decode_bytes("a b=").is_err());
    }
}
