//! Where a KMS key is reached and as whom: endpoint, region and credentials, from the key URI
//! and the environment variables every AWS SDK reads.
//!
//! Credentials come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, for temporary
//! credentials, `AWS_SESSION_TOKEN`, read once when the signer is opened. There is no SDK
//! credential chain here (no instance metadata, IRSA web identity or SSO): a node on EC2, ECS
//! or EKS runs under a credential helper that exports these variables and restarts the node
//! before temporary credentials expire. KMS refuses expired credentials
//! (`ExpiredTokenException`), which the publisher reports on every attempt until then.

use url::Url;

use super::uri::KeyRef;
use crate::http::check_endpoint;
use crate::SignerError;

/// The environment variables read, in the order they are looked for.
pub const ENDPOINT_VARS: [&str; 2] = ["AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL"];
pub const REGION_VARS: [&str; 2] = ["AWS_REGION", "AWS_DEFAULT_REGION"];

/// Long-term or temporary AWS credentials. `Debug` shows only the access key ID.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Everything a KMS request needs besides its body.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    /// The KMS endpoint (its root: requests go to `/`).
    pub endpoint: Url,
    /// The region requests are signed for.
    pub region: String,
    pub credentials: Credentials,
}

impl AwsConfig {
    /// The configuration of `key`, with the environment read through `env`: the URI's endpoint,
    /// else `AWS_ENDPOINT_URL_KMS`, else `AWS_ENDPOINT_URL`, else the region's public endpoint;
    /// the region of a key ARN, else `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub fn resolve(
        key: &KeyRef,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SignerError> {
        let var = |name: &str| env(name).filter(|value| !value.is_empty());
        let region = key
            .region
            .clone()
            .or_else(|| REGION_VARS.iter().find_map(|name| var(name)))
            .ok_or_else(|| {
                SignerError::Config(format!(
                    "AWS KMS key {}: no region (use a key ARN, or set AWS_REGION)",
                    key.key_id
                ))
            })?;
        let endpoint = match &key.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => match ENDPOINT_VARS
                .iter()
                .find_map(|name| var(name).map(|value| (*name, value)))
            {
                Some((name, value)) => {
                    let endpoint = Url::parse(&value).map_err(|error| {
                        SignerError::Config(format!("{name}={value:?} is not a URL: {error}"))
                    })?;
                    check_endpoint(&endpoint)?;
                    endpoint
                }
                None => public_endpoint(&region)?,
            },
        };
        let required = |name: &str| {
            var(name).ok_or_else(|| {
                SignerError::Config(format!(
                    "AWS KMS needs credentials: {name} is not set (AWS_ACCESS_KEY_ID, \
                     AWS_SECRET_ACCESS_KEY and, for temporary credentials, AWS_SESSION_TOKEN)"
                ))
            })
        };
        let credentials = Credentials {
            access_key_id: required("AWS_ACCESS_KEY_ID")?,
            secret_access_key: required("AWS_SECRET_ACCESS_KEY")?,
            session_token: var("AWS_SESSION_TOKEN"),
        };
        Ok(Self {
            endpoint,
            region,
            credentials,
        })
    }
}

/// `https://kms.<region>.amazonaws.com/` (`.amazonaws.com.cn` in the China regions). Other
/// partitions and FIPS endpoints are given with `AWS_ENDPOINT_URL_KMS` or in the URI.
fn public_endpoint(region: &str) -> Result<Url, SignerError> {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    Url::parse(&format!("https://kms.{region}.{suffix}/"))
        .map_err(|error| SignerError::Config(format!("AWS region {region:?}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    const CREDENTIALS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];

    fn with_credentials(
        more: &[(&'static str, &'static str)],
    ) -> Vec<(&'static str, &'static str)> {
        let mut vars = CREDENTIALS.to_vec();
        vars.extend_from_slice(more);
        vars
    }

    #[test]
    fn the_region_comes_from_the_arn_before_the_environment() {
        let key =
            KeyRef::parse("awskms:///arn:aws:kms:eu-central-1:111122223333:alias/rekor").unwrap();
        let config = AwsConfig::resolve(
            &key,
            &env_of(&with_credentials(&[("AWS_REGION", "us-east-1")])),
        )
        .unwrap();
        assert_eq!(config.region, "eu-central-1");
        assert_eq!(
            config.endpoint.as_str(),
            "https://kms.eu-central-1.amazonaws.com/"
        );
        assert_eq!(config.credentials.session_token, None);

        let key = KeyRef::parse("awskms:///alias/rekor").unwrap();
        let config = AwsConfig::resolve(
            &key,
            &env_of(&with_credentials(&[
                ("AWS_DEFAULT_REGION", "cn-north-1"),
                ("AWS_SESSION_TOKEN", "token"),
            ])),
        )
        .unwrap();
        assert_eq!(config.region, "cn-north-1");
        assert_eq!(
            config.endpoint.as_str(),
            "https://kms.cn-north-1.amazonaws.com.cn/"
        );
        assert_eq!(config.credentials.session_token.as_deref(), Some("token"));

        let error = AwsConfig::resolve(&key, &env_of(&CREDENTIALS)).unwrap_err();
        assert!(error.to_string().contains("AWS_REGION"), "{error}");
    }

    #[test]
    fn endpoints_from_the_uri_then_the_service_variable_then_the_general_one() {
        let plain = KeyRef::parse("awskms:///alias/rekor").unwrap();
        let vars = with_credentials(&[
            ("AWS_REGION", "us-west-2"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1111"),
            ("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:2222"),
        ]);
        let config = AwsConfig::resolve(&plain, &env_of(&vars)).unwrap();
        assert_eq!(config.endpoint.as_str(), "http://127.0.0.1:2222/");

        let config = AwsConfig::resolve(&plain, &env_of(&vars[..4])).unwrap();
        assert_eq!(config.endpoint.as_str(), "http://127.0.0.1:1111/");

        let explicit = KeyRef::parse("awskms://127.0.0.1:3333/alias/rekor").unwrap();
        let config = AwsConfig::resolve(&explicit, &env_of(&vars)).unwrap();
        assert_eq!(config.endpoint.as_str(), "http://127.0.0.1:3333/");

        let remote_http = with_credentials(&[
            ("AWS_REGION", "us-west-2"),
            ("AWS_ENDPOINT_URL_KMS", "http://kms.internal.example:80"),
        ]);
        assert!(matches!(
            AwsConfig::resolve(&plain, &env_of(&remote_http)),
            Err(SignerError::Config(_))
        ));
    }

    #[test]
    fn missing_credentials_are_named_and_secrets_never_shown() {
        let key = KeyRef::parse("awskms:///alias/rekor").unwrap();
        let error = AwsConfig::resolve(
            &key,
            &env_of(&[("AWS_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "AKID")]),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("AWS_SECRET_ACCESS_KEY"),
            "{error}"
        );

        let config = AwsConfig::resolve(
            &key,
            &env_of(&[
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "AKIDVISIBLE"),
                ("AWS_SECRET_ACCESS_KEY", "very-secret-key"),
                ("AWS_SESSION_TOKEN", "very-secret-token"),
            ]),
        )
        .unwrap();
        let shown = format!("{config:?}");
        assert!(shown.contains("AKIDVISIBLE"));
        assert!(!shown.contains("very-secret"), "{shown}");
    }
}
