//! Schema-directed, streaming proto3-JSON decoding with the rules Go's `protojson` applies to a
//! request (rekor-v2-api.md §3).
//!
//! A request body is hostile input of up to 4 MiB, so it is never parsed into a generic tree:
//! each message is a serde [`Visitor`] driven directly by serde_json's tokenizer, which knows the
//! message's fields. An unknown key, a field given twice (under either of its names), a second
//! member of a oneof and a value of the wrong JSON type are all rejected at the token that
//! reveals them, before anything after it is read. Decoding is therefore one pass over the body,
//! and what it allocates is bounded by the body plus [`MAX_JSON_VALUES`] small structs.
//!
//! serde_json appends " at line X column Y" to any error a visitor returns, so the visitors keep
//! the protojson message itself in [`Decoder`]'s side slot and the caller returns that one.
//! An error with no message in the slot is serde_json's own: a syntax error.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// The most JSON values (objects, arrays and scalars, not keys) one request may hold. A valid
/// request holds a few dozen (a legacy DSSE request at most ten verifiers and ten signatures of
/// four values each); the cap bounds what repeated fields can allocate.
pub const MAX_JSON_VALUES: usize = 1024;

/// Keys and enum names echoed in an error message are cut to this many bytes (before quoting,
/// which may make each byte up to six), so that a megabyte-long key does not become a
/// megabyte-long answer.
const MAX_ECHOED_BYTES: usize = 64;

/// Why a request body is not a valid proto3-JSON `CreateEntryRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proto: {0}")]
pub struct ProtoJsonError(pub String);

impl ProtoJsonError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ProtoJsonError(message.into())
    }
}

/// `text` quoted for an error message (Rust debug quoting, as protojson quotes), cut to
/// [`MAX_ECHOED_BYTES`].
pub(crate) fn quoted(text: &str) -> String {
    if text.len() <= MAX_ECHOED_BYTES {
        return format!("{text:?}");
    }
    let mut end = MAX_ECHOED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}...", &text[..end])
}

/// The state shared by every visitor of one decoding: the first protojson error and the number
/// of values read so far.
#[derive(Default)]
pub(crate) struct Decoder {
    error: RefCell<Option<ProtoJsonError>>,
    values: Cell<usize>,
}

impl Decoder {
    /// Records `error` (the first one wins) and returns the serde error that unwinds serde_json.
    pub(crate) fn fail<E: de::Error>(&self, error: ProtoJsonError) -> E {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(error);
        }
        E::custom("proto error")
    }

    /// Counts one more value, failing past [`MAX_JSON_VALUES`].
    fn count<E: de::Error>(&self) -> Result<(), E> {
        let values = self.values.get() + 1;
        if values > MAX_JSON_VALUES {
            return Err(self.fail(ProtoJsonError::new(format!(
                "too many JSON values: a request may hold at most {MAX_JSON_VALUES}"
            ))));
        }
        self.values.set(values);
        Ok(())
    }

    /// Decodes the first JSON value of `body` as `M`. Like protojson behind grpc-gateway, bytes
    /// after the first complete value are ignored (rekor-v2-api.md §3, "Trailing bytes").
    pub(crate) fn decode_root<M: Message>(body: &[u8]) -> Result<M, ProtoJsonError> {
        let decoder = Decoder::default();
        let mut json = serde_json::Deserializer::from_slice(body);
        let seed = MessageSeed::<M> {
            decoder: &decoder,
            context: Context::Root,
            oneof: None,
            message: PhantomData,
        };
        match seed.deserialize(&mut json) {
            Ok(Some(message)) => Ok(message),
            // A root visitor never returns `None` (null is an error there).
            Ok(None) => Err(ProtoJsonError::new(format!(
                "invalid value for message {}: null",
                M::NAME
            ))),
            Err(e) => Err(decoder
                .error
                .into_inner()
                .unwrap_or_else(|| ProtoJsonError::new(format!("syntax error: {e}")))),
        }
    }
}

/// One field of a message: the names it may be given (JSON name first) and its proto name,
/// which duplicate-field errors quote.
pub(crate) struct Field {
    pub names: &'static [&'static str],
    pub proto_name: &'static str,
}

/// A message decoded by [`MessageSeed`]: its fields, and how to read the value of each.
pub(crate) trait Message: Default {
    /// The name used in "invalid value for message X" errors.
    const NAME: &'static str;
    /// At most 32 fields.
    const FIELDS: &'static [Field];

    /// Reads the value of field `index` (given as `key`) with `map.next_value_seed`.
    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        index: usize,
        key: &'static str,
        map: &mut A,
        decoder: &Decoder,
    ) -> Result<(), A::Error>;
}

/// Where a message value sits, which decides what `null` means and how errors name it.
#[derive(Clone, Copy)]
pub(crate) enum Context {
    /// The whole body: `null` is an error.
    Root,
    /// An element of a repeated field: `null` is an error.
    Element,
    /// A singular field, given under this key: `null` means "not set".
    Field(&'static str),
}

/// A oneof member: the oneof's name, and whether another member was already set.
#[derive(Clone, Copy)]
pub(crate) struct Oneof {
    pub name: &'static str,
    pub already_set: bool,
}

/// Every `visit_*` serde_json's `deserialize_any` may call for the listed JSON kinds, rejecting
/// the value with `self.wrong(kind)` at its first token.
macro_rules! reject_kinds {
    ($de:lifetime; $($kind:ident),*) => { $(reject_kinds!(@ $de; $kind);)* };
    (@ $de:lifetime; null) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(self.wrong("null"))
        }
    };
    (@ $de:lifetime; bool) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(self.wrong("bool"))
        }
    };
    (@ $de:lifetime; number) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(self.wrong("number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(self.wrong("number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(self.wrong("number"))
        }
    };
    (@ $de:lifetime; string) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(self.wrong("string"))
        }
    };
    (@ $de:lifetime; array) => {
        fn visit_seq<A: SeqAccess<$de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong("array"))
        }
    };
    (@ $de:lifetime; object) => {
        fn visit_map<A: MapAccess<$de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong("object"))
        }
    };
}

/// Decodes a message value: `None` for a `null` field.
pub(crate) struct MessageSeed<'a, M> {
    pub decoder: &'a Decoder,
    pub context: Context,
    pub oneof: Option<Oneof>,
    pub message: PhantomData<M>,
}

impl<'a, M> MessageSeed<'a, M> {
    /// A singular message field given as `key`.
    pub(crate) fn field(decoder: &'a Decoder, key: &'static str) -> Self {
        MessageSeed {
            decoder,
            context: Context::Field(key),
            oneof: None,
            message: PhantomData,
        }
    }

    /// A message field that is a member of a oneof.
    pub(crate) fn oneof_member(decoder: &'a Decoder, key: &'static str, oneof: Oneof) -> Self {
        MessageSeed {
            oneof: Some(oneof),
            ..Self::field(decoder, key)
        }
    }
}

impl<'de, M: Message> DeserializeSeed<'de> for MessageSeed<'_, M> {
    type Value = Option<M>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        self.decoder.count()?;
        deserializer.deserialize_any(self)
    }
}

impl<'de, M: Message> Visitor<'de> for MessageSeed<'_, M> {
    type Value = Option<M>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} message", M::NAME)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        match self.context {
            Context::Field(_) => Ok(None),
            Context::Root | Context::Element => Err(self.wrong("null")),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if let (Some(oneof), Context::Field(key)) = (self.oneof, self.context) {
            if oneof.already_set {
                return Err(self.decoder.fail(ProtoJsonError::new(format!(
                    "error parsing {key:?}, oneof {} is already set",
                    oneof.name
                ))));
            }
        }
        let mut message = M::default();
        let mut seen: u32 = 0;
        let keys = KeySeed {
            decoder: self.decoder,
            fields: M::FIELDS,
        };
        while let Some((index, key)) = map.next_key_seed(keys)? {
            let bit = 1u32 << index;
            if seen & bit != 0 {
                return Err(self.decoder.fail(ProtoJsonError::new(format!(
                    "duplicate field {:?}",
                    M::FIELDS[index].proto_name
                ))));
            }
            seen |= bit;
            message.read_field(index, key, &mut map, self.decoder)?;
        }
        Ok(Some(message))
    }

    reject_kinds!('de; bool, number, string, array);
}

impl<M: Message> MessageSeed<'_, M> {
    fn wrong<E: de::Error>(&self, kind: &str) -> E {
        let error = match self.context {
            Context::Root | Context::Element => {
                format!("invalid value for message {}: {kind}", M::NAME)
            }
            Context::Field(key) => format!("invalid value for message field {key}: {kind}"),
        };
        self.decoder.fail(ProtoJsonError::new(error))
    }
}

/// Reads an object key and finds the field it names, failing on an unknown one.
#[derive(Clone, Copy)]
struct KeySeed<'a> {
    decoder: &'a Decoder,
    fields: &'static [Field],
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = (usize, &'static str);

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = (usize, &'static str);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        for (index, field) in self.fields.iter().enumerate() {
            if let Some(name) = field.names.iter().find(|name| **name == key) {
                return Ok((index, name));
            }
        }
        Err(self.decoder.fail(ProtoJsonError::new(format!(
            "unknown field {}",
            quoted(key)
        ))))
    }
}

/// A repeated message field given as `key`: an array, `null` = empty; elements may not be
/// `null`.
pub(crate) struct RepeatedSeed<'a, M> {
    pub decoder: &'a Decoder,
    pub key: &'static str,
    pub message: PhantomData<M>,
}

impl<'a, M> RepeatedSeed<'a, M> {
    pub(crate) fn new(decoder: &'a Decoder, key: &'static str) -> Self {
        RepeatedSeed {
            decoder,
            key,
            message: PhantomData,
        }
    }

    fn wrong<E: de::Error>(&self, kind: &str) -> E {
        self.decoder.fail(ProtoJsonError::new(format!(
            "invalid value for repeated field {}: {kind}",
            self.key
        )))
    }
}

impl<'de, M: Message> DeserializeSeed<'de> for RepeatedSeed<'_, M> {
    type Value = Vec<M>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        self.decoder.count()?;
        deserializer.deserialize_any(self)
    }
}

impl<'de, M: Message> Visitor<'de> for RepeatedSeed<'_, M> {
    type Value = Vec<M>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {} messages", M::NAME)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        let element = || MessageSeed::<M> {
            decoder: self.decoder,
            context: Context::Element,
            oneof: None,
            message: PhantomData,
        };
        while let Some(item) = seq.next_element_seed(element())? {
            // An element visitor never yields `None`: `null` is an error there.
            items.extend(item);
        }
        Ok(items)
    }

    reject_kinds!('de; bool, number, string, object);
}

/// A `bytes` field given as `key`: a base64 string, `null` = empty.
pub(crate) struct BytesSeed<'a> {
    pub decoder: &'a Decoder,
    pub key: &'static str,
}

impl BytesSeed<'_> {
    fn wrong<E: de::Error>(&self, kind: &str) -> E {
        self.decoder.fail(ProtoJsonError::new(format!(
            "invalid value for bytes field {}: {kind}",
            self.key
        )))
    }
}

impl<'de> DeserializeSeed<'de> for BytesSeed<'_> {
    type Value = Vec<u8>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        self.decoder.count()?;
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BytesSeed<'_> {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        decode_bytes(text).map_err(|e| {
            self.decoder.fail(ProtoJsonError::new(format!(
                "invalid value for bytes field {}: {e}",
                self.key
            )))
        })
    }

    reject_kinds!('de; bool, number, array, object);
}

/// A `string` field given as `key`: `null` = empty.
pub(crate) struct StringSeed<'a> {
    pub decoder: &'a Decoder,
    pub key: &'static str,
}

impl StringSeed<'_> {
    fn wrong<E: de::Error>(&self, kind: &str) -> E {
        self.decoder.fail(ProtoJsonError::new(format!(
            "invalid value for string field {}: {kind}",
            self.key
        )))
    }
}

impl<'de> DeserializeSeed<'de> for StringSeed<'_> {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        self.decoder.count()?;
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StringSeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(String::new())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(text.to_owned())
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(text)
    }

    reject_kinds!('de; bool, number, array, object);
}

/// An enum field given as `key`: its value name (looked up with `from_name`) or its number as a
/// JSON integer within int32; `null` = 0. Proto3 enums are open, so any int32 number decodes.
pub(crate) struct EnumSeed<'a> {
    pub decoder: &'a Decoder,
    pub key: &'static str,
    pub from_name: fn(&str) -> Option<i32>,
}

impl EnumSeed<'_> {
    fn invalid<E: de::Error>(&self, what: impl fmt::Display) -> E {
        self.decoder.fail(ProtoJsonError::new(format!(
            "invalid value for enum field {}: {what}",
            self.key
        )))
    }

    fn wrong<E: de::Error>(&self, kind: &str) -> E {
        self.invalid(kind)
    }

    fn number<E: de::Error>(
        &self,
        number: Option<i64>,
        shown: serde_json::Number,
    ) -> Result<i32, E> {
        number
            .and_then(|i| i32::try_from(i).ok())
            .ok_or_else(|| self.invalid(shown))
    }
}

impl<'de> DeserializeSeed<'de> for EnumSeed<'_> {
    type Value = i32;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        self.decoder.count()?;
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EnumSeed<'_> {
    type Value = i32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an enum name or number")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(0)
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        (self.from_name)(name).ok_or_else(|| self.invalid(quoted(name)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.number(Some(v), v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.number(i64::try_from(v).ok(), v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // protojson accepts integral numbers written with a fraction or exponent.
        let integral = (v.fract() == 0.0 && v.abs() <= i64::MAX as f64).then_some(v as i64);
        match serde_json::Number::from_f64(v) {
            Some(shown) => self.number(integral, shown),
            None => Err(self.invalid("number")),
        }
    }

    reject_kinds!('de; bool, array, object);
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
    let cleaned: Vec<u8>;
    let input = if text.contains(['\r', '\n']) {
        // Both are ASCII, so dropping their bytes leaves the rest of the text intact.
        cleaned = text
            .bytes()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect();
        cleaned.as_slice()
    } else {
        text.as_bytes()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_cut_in_messages() {
        assert_eq!(quoted("ab"), "\"ab\"");
        let long = "é".repeat(200);
        let shown = quoted(&long);
        assert!(shown.ends_with("\"..."));
        assert!(shown.len() < MAX_ECHOED_BYTES + 8);
        assert!(quoted(&"\u{1}".repeat(1000)).len() < 6 * MAX_ECHOED_BYTES);
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
