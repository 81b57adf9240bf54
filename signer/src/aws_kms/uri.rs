//! `awskms:` key URIs, in sigstore's forms: `awskms:///<key>` (the endpoint comes from the
//! environment or the key's region) and `awskms://<host:port>/<key>` (an explicit endpoint).
//!
//! `<key>` is anything KMS accepts as a `KeyId`: a key ID (`1234abcd-...`, `mrk-...`), a key
//! ARN, an alias name (`alias/NAME`) or an alias ARN. Only the shape is checked here; KMS
//! itself says whether the key exists.

use url::Url;

use crate::http::check_endpoint;
use crate::SignerError;

/// What an `awskms:` URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// The endpoint the URI's authority names, if it names one: https, or http on loopback.
    pub endpoint: Option<Url>,
    /// The `KeyId` to send to KMS, exactly as written in the URI.
    pub key_id: String,
    /// The region of a key or alias ARN.
    pub region: Option<String>,
}

impl KeyRef {
    /// Reads an `awskms:` URI.
    pub fn parse(uri: &str) -> Result<Self, SignerError> {
        let invalid = |reason: String| SignerError::InvalidUri {
            uri: uri.to_owned(),
            reason,
        };
        let rest = uri.strip_prefix("awskms://").ok_or_else(|| {
            invalid("expected awskms:///<key> or awskms://<host:port>/<key>".into())
        })?;
        let (authority, key) = rest
            .split_once('/')
            .ok_or_else(|| invalid("no key after the endpoint".into()))?;
        if key.is_empty() {
            return Err(invalid("no key after the endpoint".into()));
        }
        let endpoint = if authority.is_empty() {
            None
        } else {
            Some(endpoint_of(authority).map_err(invalid)?)
        };
        let region = check_key(key).map_err(invalid)?;
        Ok(Self {
            endpoint,
            key_id: key.to_owned(),
            region,
        })
    }
}

/// The endpoint URL of a URI's `host[:port]`: http on a loopback host (a local stand-in or a
/// proxy), https everywhere else.
fn endpoint_of(authority: &str) -> Result<Url, String> {
    if authority.contains(['@', '?', '#', '\\']) {
        return Err(format!(
            "the endpoint {authority:?} must be a plain host[:port]"
        ));
    }
    let https = Url::parse(&format!("https://{authority}/"))
        .map_err(|error| format!("the endpoint {authority:?} is not a host[:port]: {error}"))?;
    let mut plain = https.clone();
    // Both schemes are "special" in the URL standard, so switching between them cannot fail.
    let _ = plain.set_scheme("http");
    if check_endpoint(&plain).is_ok() {
        // `set_scheme` keeps an explicit :443 but drops an explicit :80; neither matters on
        // loopback, where a port is always given in practice.
        Ok(plain)
    } else {
        Ok(https)
    }
}

/// Checks the shape of a `KeyId`; gives the region of an ARN.
fn check_key(key: &str) -> Result<Option<String>, String> {
    if let Some(arn) = key.strip_prefix("arn:") {
        return check_arn(arn).map(Some);
    }
    if let Some(alias) = key.strip_prefix("alias/") {
        check_alias_name(alias)?;
        return Ok(None);
    }
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Ok(None);
    }
    Err(format!(
        "{key:?} is not a key ID, key ARN, alias/NAME or alias ARN"
    ))
}

/// `arn:<partition>:kms:<region>:<account>:key/<id>` or `...:alias/<name>` (the part after
/// `arn:`); gives the region.
fn check_arn(arn: &str) -> Result<String, String> {
    let bad = |why: &str| format!("arn:{arn} is not a KMS key or alias ARN: {why}");
    let fields: Vec<&str> = arn.splitn(5, ':').collect();
    let [partition, service, region, account, resource] = fields[..] else {
        return Err(bad("too few fields"));
    };
    if !partition.starts_with("aws") {
        return Err(bad("the partition is not aws, aws-cn, aws-us-gov, ..."));
    }
    if service != "kms" {
        return Err(bad("the service is not kms"));
    }
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("no region"));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the account is not 12 digits"));
    }
    if let Some(id) = resource.strip_prefix("key/") {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(bad("no key ID after key/"));
        }
    } else if let Some(alias) = resource.strip_prefix("alias/") {
        check_alias_name(alias).map_err(|why| bad(&why))?;
    } else {
        return Err(bad("the resource is neither key/<id> nor alias/<name>"));
    }
    Ok(region.to_owned())
}

/// KMS alias names: letters, digits, `/`, `_` and `-`.
fn check_alias_name(alias: &str) -> Result<(), String> {
    if alias.is_empty()
        || !alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-'))
    {
        return Err(format!(
            "alias/{alias} is not an alias name (letters, digits, /, _ and -)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &str) -> KeyRef {
        KeyRef::parse(uri).unwrap_or_else(|error| panic!("{uri}: {error}"))
    }

    #[test]
    fn sigstore_forms_without_an_endpoint() {
        let id = parse("awskms:///1234abcd-12ab-34cd-56ef-1234567890ab");
        assert_eq!(id.endpoint, None);
        assert_eq!(id.key_id, "1234abcd-12ab-34cd-56ef-1234567890ab");
        assert_eq!(id.region, None);

        let mrk = parse("awskms:///mrk-1234abcd12ab34cd56ef1234567890ab");
        assert_eq!(mrk.key_id, "mrk-1234abcd12ab34cd56ef1234567890ab");

        let alias = parse("awskms:///alias/rekor/checkpoint_key-1");
        assert_eq!(alias.key_id, "alias/rekor/checkpoint_key-1");
        assert_eq!(alias.region, None);

        let key_arn = parse(
            "awskms:///arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        );
        assert_eq!(
            key_arn.key_id,
            "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        );
        assert_eq!(key_arn.region.as_deref(), Some("us-east-2"));

        let alias_arn =
            parse("awskms:///arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/rekor");
        assert_eq!(alias_arn.region.as_deref(), Some("us-gov-west-1"));
        assert_eq!(
            alias_arn.key_id,
            "arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/rekor"
        );
    }

    #[test]
    fn an_authority_is_the_endpoint_http_only_on_loopback() {
        let local = parse("awskms://127.0.0.1:4566/alias/rekor");
        assert_eq!(
            local.endpoint.as_ref().map(Url::as_str),
            Some("http://127.0.0.1:4566/")
        );
        assert_eq!(local.key_id, "alias/rekor");

        let localhost = parse("awskms://localhost:5000/alias/rekor");
        assert_eq!(localhost.endpoint.unwrap().scheme(), "http");

        let v6 = parse("awskms://[::1]:5000/alias/rekor");
        assert_eq!(v6.endpoint.unwrap().as_str(), "http://[::1]:5000/");

        let remote = parse("awskms://kms.eu-west-1.amazonaws.com/alias/rekor");
        assert_eq!(
            remote.endpoint.unwrap().as_str(),
            "https://kms.eu-west-1.amazonaws.com/"
        );

        let vpce = parse("awskms://10.1.2.3:443/alias/rekor");
        assert_eq!(vpce.endpoint.unwrap().scheme(), "https");
    }

    #[test]
    fn malformed_uris_are_refused() {
        for uri in [
            "awskms:/alias/rekor",
            "awskms://",
            "awskms:///",
            "awskms://127.0.0.1:4566",
            "awskms://127.0.0.1:4566/",
            "awskms:///alias/",
            "awskms:///alias/has space",
            "awskms:///key id",
            "awskms:///arn:aws:s3:::bucket",
            "awskms:///arn:aws:kms:us-east-1:1234:key/abc",
            "awskms:///arn:aws:kms::111122223333:key/abc",
            "awskms:///arn:aws:kms:us-east-1:111122223333:grant/abc",
            "awskms:///arn:aws:kms:us-east-1:111122223333:key/",
            "awskms://user:secret@127.0.0.1:4566/alias/rekor",
            "awskms://127.0.0.1:4566?x=1/alias/rekor",
            "awskms://bad host/alias/rekor",
            "gcpkms:///alias/rekor",
        ] {
            match KeyRef::parse(uri) {
                Err(SignerError::InvalidUri { .. }) => {}
                other => panic!("{uri}: {other:?}"),
            }
        }
    }
}
