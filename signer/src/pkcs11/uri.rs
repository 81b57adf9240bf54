//! RFC 7512 `pkcs11:` URIs: which token, which key, which module and where the PIN is.
//!
//! Only the attributes a log's signing key needs are accepted; anything else (a typo, a vendor
//! extension, an attribute given twice) is refused rather than ignored, because an ignored
//! selector could silently pick a different key than the operator meant.
//!
//! ```text
//! pkcs11:token=rekor;object=checkpoint;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/etc/rekor/pin
//! ```

use std::path::PathBuf;

use crate::SignerError;

/// Where the user PIN comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Pin {
    /// `pin-value`: in the URI itself (never shown in `describe()` or logs).
    Value(Vec<u8>),
    /// `pin-source`: a file whose first line is the PIN, read when a session logs in.
    File(PathBuf),
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value(<redacted>)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// A parsed `pkcs11:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token`: the token label.
    pub token: Option<String>,
    /// `slot-id`: the slot number.
    pub slot_id: Option<u64>,
    /// `object`: the key's label (`CKA_LABEL`), shared by its private and public halves.
    pub object: Option<String>,
    /// `id`: the key's `CKA_ID`, shared by its private and public halves.
    pub id: Option<Vec<u8>>,
    /// `module-path`: the PKCS#11 module (a shared library) to load.
    pub module_path: Option<PathBuf>,
    /// `pin-value` or `pin-source`.
    pub pin: Option<Pin>,
    /// The URI as given, without `pin-value`: what `describe()` shows.
    pub redacted: String,
}

/// The attributes of the path part (before `?`).
const PATH_ATTRIBUTES: &[&str] = &["token", "object", "id", "slot-id", "type"];
/// The attributes of the query part (after `?`).
const QUERY_ATTRIBUTES: &[&str] = &["module-path", "pin-value", "pin-source"];

impl Pkcs11Uri {
    /// Parses `uri`. It must name the key by `object` or `id` (or both); `type`, if given, must
    /// be `private` or `public` (either way the key pair is used: the private key signs, the
    /// public key is what the log publishes).
    pub fn parse(uri: &str) -> Result<Self, SignerError> {
        let invalid = |reason: String| SignerError::InvalidUri {
            uri: redact(uri),
            reason,
        };
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| invalid("not a pkcs11: URI".into()))?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let mut parsed = Self {
            token: None,
            slot_id: None,
            object: None,
            id: None,
            module_path: None,
            pin: None,
            redacted: redact(uri),
        };
        let mut seen: Vec<&str> = Vec::new();
        let components = split_nonempty(path, ';')
            .map(|c| (c, PATH_ATTRIBUTES, "path"))
            .chain(query.into_iter().flat_map(|query| {
                split_nonempty(query, '&').map(|c| (c, QUERY_ATTRIBUTES, "query"))
            }));
        for (component, allowed, part) in components {
            let component = component.map_err(|()| invalid(format!("empty {part} attribute")))?;
            let (name, raw) = component
                .split_once('=')
                .ok_or_else(|| invalid(format!("{part} attribute {component:?} has no '='")))?;
            if !allowed.contains(&name) {
                return Err(invalid(unknown_attribute(name, part)));
            }
            if seen.contains(&name) {
                return Err(invalid(format!("attribute {name:?} is given twice")));
            }
            seen.push(name);
            let value =
                percent_decode(raw).map_err(|reason| invalid(format!("{name}: {reason}")))?;
            let text = || {
                String::from_utf8(value.clone())
                    .map_err(|_| invalid(format!("{name} is not UTF-8 after percent-decoding")))
            };
            match name {
                "token" => parsed.token = Some(text()?),
                "object" => parsed.object = Some(text()?),
                "id" => parsed.id = Some(value.clone()),
                "slot-id" => {
                    let digits = text()?;
                    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(invalid(format!(
                            "slot-id {digits:?} is not a decimal number"
                        )));
                    }
                    parsed.slot_id = Some(
                        digits
                            .parse()
                            .map_err(|_| invalid(format!("slot-id {digits:?} is out of range")))?,
                    );
                }
                "type" => {
                    let kind = text()?;
                    if kind != "private" && kind != "public" {
                        return Err(invalid(format!(
                            "type={kind:?}: a signing key is a key pair (type=private or type=public)"
                        )));
                    }
                }
                "module-path" => {
                    parsed.module_path = Some(PathBuf::from(non_empty(text()?, name, &invalid)?))
                }
                "pin-value" => parsed.pin = Some(Pin::Value(value.clone())),
                "pin-source" => {
                    let source = non_empty(text()?, name, &invalid)?;
                    parsed.pin = Some(Pin::File(pin_source_path(&source).map_err(invalid)?));
                }
                _ => return Err(invalid(unknown_attribute(name, part))),
            }
        }
        if seen.contains(&"pin-value") && seen.contains(&"pin-source") {
            return Err(invalid("give pin-value or pin-source, not both".into()));
        }
        if parsed.object.is_none() && parsed.id.is_none() {
            return Err(invalid(
                "name the key with object=<label> and/or id=<CKA_ID>".into(),
            ));
        }
        Ok(parsed)
    }
}

/// Splits `text` at `separator`; an empty piece is an error (`a;;b`, a trailing `;`), and an
/// empty `text` has no pieces.
fn split_nonempty(text: &str, separator: char) -> impl Iterator<Item = Result<&str, ()>> {
    let pieces = if text.is_empty() {
        None
    } else {
        Some(text.split(separator))
    };
    pieces
        .into_iter()
        .flatten()
        .map(|piece| if piece.is_empty() { Err(()) } else { Ok(piece) })
}

fn unknown_attribute(name: &str, part: &str) -> String {
    let known = if part == "path" {
        PATH_ATTRIBUTES
    } else {
        QUERY_ATTRIBUTES
    };
    let hint = if name == "module-name" {
        " (give module-path instead)"
    } else if PATH_ATTRIBUTES.contains(&name) || QUERY_ATTRIBUTES.contains(&name) {
        " here (path attributes come before '?', query attributes after it)"
    } else {
        ""
    };
    format!(
        "unsupported {part} attribute {name:?}{hint}; supported: {}",
        known.join(", ")
    )
}

fn non_empty(
    value: String,
    name: &str,
    invalid: &impl Fn(String) -> SignerError,
) -> Result<String, SignerError> {
    if value.is_empty() {
        Err(invalid(format!("{name} is empty")))
    } else {
        Ok(value)
    }
}

/// `pin-source` is a file path or a `file:` URI (`file:/p`, `file:///p`); other schemes (a
/// command, `|program`) are refused: the node runs nothing to get its PIN.
fn pin_source_path(source: &str) -> Result<PathBuf, String> {
    if let Some(rest) = source.strip_prefix("file:") {
        let path = match rest.strip_prefix("//") {
            // `file://host/path` is only allowed with an empty host (`file:///path`).
            Some(after) if after.starts_with('/') => after,
            Some(_) => {
                return Err("pin-source: a file: URI must be file:/path or file:///path".into())
            }
            None => rest,
        };
        if path.is_empty() {
            return Err("pin-source: the file: URI has no path".into());
        }
        return Ok(PathBuf::from(path));
    }
    if source.starts_with('|') || source.contains("://") {
        return Err("pin-source must be a file path or a file: URI".into());
    }
    Ok(PathBuf::from(source))
}

/// Decodes `%XX` escapes (RFC 7512 section 2.3). Characters that separate attributes or parts,
/// whitespace and non-ASCII must be percent-encoded in a value.
fn percent_decode(raw: &str) -> Result<Vec<u8>, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|pair| std::str::from_utf8(pair).ok())
                    .filter(|pair| pair.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or_else(|| format!("bad percent escape at byte {i}"))?;
                out.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
                i += 3;
            }
            b';' | b'?' | b'&' | b'#' => {
                return Err(format!("{:?} must be percent-encoded", bytes[i] as char))
            }
            byte if byte.is_ascii_graphic() => {
                out.push(byte);
                i += 1;
            }
            byte => return Err(format!("byte 0x{byte:02x} must be percent-encoded")),
        }
    }
    Ok(out)
}

/// `uri` without its `pin-value` attribute (wherever it was put), for messages and `describe()`.
pub(crate) fn redact(uri: &str) -> String {
    let keep = |attributes: &str, separator: char| {
        attributes
            .split(separator)
            .filter(|attribute| !attribute.starts_with("pin-value="))
            .collect::<Vec<_>>()
            .join(&separator.to_string())
    };
    match uri.split_once('?') {
        None => keep(uri, ';'),
        Some((path, query)) => match keep(query, '&') {
            query if query.is_empty() => keep(path, ';'),
            query => format!("{}?{query}", keep(path, ';')),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(uri: &str) -> String {
        match Pkcs11Uri::parse(uri) {
            Err(SignerError::InvalidUri { reason, .. }) => reason,
            other => panic!("{uri}: expected InvalidUri, got {other:?}"),
        }
    }

    #[test]
    fn all_supported_attributes() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=My%20Token;object=log%3Bkey;id=%01%a0;slot-id=7;type=private\
             ?module-path=/usr/lib/x.so&pin-source=file:///run/pin",
        )
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("My Token"));
        assert_eq!(uri.object.as_deref(), Some("log;key"));
        assert_eq!(uri.id.as_deref(), Some(&[0x01, 0xa0][..]));
        assert_eq!(uri.slot_id, Some(7));
        assert_eq!(uri.module_path, Some(PathBuf::from("/usr/lib/x.so")));
        assert_eq!(uri.pin, Some(Pin::File("/run/pin".into())));
    }

    #[test]
    fn percent_decoding_is_per_rfc_7512() {
        let uri = Pkcs11Uri::parse("pkcs11:object=a%2Fb%3F%26%25%C3%A9=x+y:z").unwrap();
        assert_eq!(uri.object.as_deref(), Some("a/b?&%é=x+y:z"));
        let uri = Pkcs11Uri::parse("pkcs11:id=%00%FF%7f").unwrap();
        assert_eq!(uri.id.as_deref(), Some(&[0x00, 0xff, 0x7f][..]));
        assert!(reason("pkcs11:object=%zz").contains("percent escape"));
        assert!(reason("pkcs11:object=%4").contains("percent escape"));
        assert!(reason("pkcs11:object=a b").contains("percent-encoded"));
        assert!(reason("pkcs11:object=%ff%fe").contains("UTF-8"));
    }

    #[test]
    fn pin_sources() {
        for (source, path) in [
            ("file:/etc/pin", "/etc/pin"),
            ("file:///etc/pin", "/etc/pin"),
            ("/etc/pin", "/etc/pin"),
            ("relative/pin", "relative/pin"),
        ] {
            let uri = Pkcs11Uri::parse(&format!("pkcs11:object=k?pin-source={source}")).unwrap();
            assert_eq!(uri.pin, Some(Pin::File(path.into())), "{source}");
        }
        assert!(reason("pkcs11:object=k?pin-source=%7Ccat%20pin").contains("file path"));
        assert!(reason("pkcs11:object=k?pin-source=https://x/pin").contains("file path"));
        assert!(reason("pkcs11:object=k?pin-source=file://host/pin").contains("file:///path"));
        let uri = Pkcs11Uri::parse("pkcs11:object=k?pin-value=12%2634").unwrap();
        assert_eq!(uri.pin, Some(Pin::Value(b"12&34".to_vec())));
    }

    #[test]
    fn the_pin_value_never_shows() {
        let uri =
            Pkcs11Uri::parse("pkcs11:object=k?module-path=/m.so&pin-value=secret&x").unwrap_err();
        assert!(!uri.to_string().contains("secret"), "{uri}");
        let uri = Pkcs11Uri::parse("pkcs11:object=k?pin-value=secret&module-path=/m.so").unwrap();
        assert_eq!(uri.redacted, "pkcs11:object=k?module-path=/m.so");
        assert!(!format!("{uri:?}").contains("secret"));
        let uri = Pkcs11Uri::parse("pkcs11:object=k?pin-value=secret").unwrap();
        assert_eq!(uri.redacted, "pkcs11:object=k");
        let misplaced = Pkcs11Uri::parse("pkcs11:object=k;pin-value=secret").unwrap_err();
        assert!(!misplaced.to_string().contains("secret"), "{misplaced}");
    }

    #[test]
    fn refusals() {
        assert!(reason("pkcs11:token=t").contains("object=<label>"));
        assert!(reason("pkcs11:").contains("object=<label>"));
        assert!(reason("pkcs11:object=a;object=b").contains("twice"));
        assert!(reason("pkcs11:object=a?pin-value=1&pin-value=2").contains("twice"));
        assert!(reason("pkcs11:object=a?pin-value=1&pin-source=/p").contains("not both"));
        assert!(reason("pkcs11:object=a;serial=1").contains("unsupported path attribute"));
        assert!(reason("pkcs11:object=a;x-vendor=1").contains("unsupported"));
        assert!(reason("pkcs11:object=a?module-name=softhsm2").contains("module-path instead"));
        assert!(reason("pkcs11:object=a;module-path=/m.so").contains("before '?'"));
        assert!(reason("pkcs11:object=a?token=t").contains("before '?'"));
        assert!(reason("pkcs11:object=a;").contains("empty path attribute"));
        assert!(reason("pkcs11:object=a?&pin-value=1").contains("empty query attribute"));
        assert!(reason("pkcs11:object").contains("no '='"));
        assert!(reason("pkcs11:object=a;slot-id=x1").contains("decimal"));
        assert!(reason("pkcs11:object=a;slot-id=99999999999999999999").contains("range"));
        assert!(reason("pkcs11:object=a;type=secret-key").contains("key pair"));
        assert!(reason("pkcs11:object=a?module-path=").contains("empty"));
        assert!(reason("pkcs12:object=a").contains("not a pkcs11"));
    }
}
