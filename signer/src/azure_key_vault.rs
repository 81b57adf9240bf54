//! Azure Key Vault through its REST API (api-version 7.4): one `GET /keys/{name}/{version}` when
//! opened, one `POST /keys/{name}/{version}/sign` (`ES256`) per checkpoint.
//!
//! The key URI: `azurekms://<vault host>/<key name>[/<version>]`, e.g.
//! `azurekms://myvault.vault.azure.net/rekor-log`. The vault is reached over https; plain http
//! only when the host is a loopback address (a local stand-in). Without a version the key's
//! current version is read once, from the `kid` of the key, and every signature names that
//! version: a rotation in the vault cannot make the node sign with a key other than the one it
//! publishes (restart the nodes to move to a new version).
//!
//! Key Vault's EC keys only: P-256 (`kty` `EC` or `EC-HSM`, `crv` `P-256`). Key Vault has no
//! Ed25519 keys. The signature comes back as JOSE `r ‖ s` and is converted to DER.
//!
//! Tokens are Microsoft Entra ID tokens for the resource `https://vault.azure.net`, renewed
//! ahead of expiry:
//! - client credentials when `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET` are
//!   set, from `AZURE_AUTHORITY_HOST` (default `https://login.microsoftonline.com`);
//! - otherwise the managed identity of the VM or container, from the instance metadata service
//!   (`REKOR_AZURE_IMDS_ENDPOINT`, default `http://169.254.169.254`; `AZURE_CLIENT_ID`, when
//!   set, picks a user-assigned identity).

use std::sync::Arc;

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use p256::pkcs8::EncodePublicKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::backend::{ecdsa_p256_fixed_to_der, KeyBackend, SignFuture};
use crate::http::{check_endpoint, HttpClient};
use crate::token::{expires_in_seconds, Token, TokenCache, TokenFuture, TokenSource};
use crate::{OpenOptions, SignerError};

/// The Key Vault REST API version spoken here.
pub const API_VERSION: &str = "7.4";
/// The resource (audience) of Key Vault tokens.
pub const VAULT_RESOURCE: &str = "https://vault.azure.net";
/// The public Entra ID authority.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The instance metadata service's link-local address on Azure VMs.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// JOSE's base64url; Key Vault omits the padding, but a padded value is read too.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How to get tokens, usually from the environment.
#[derive(Clone)]
pub enum AzureCredentials {
    /// An app registration's client secret (the client-credentials grant).
    ClientSecret {
        authority: url::Url,
        tenant: String,
        client_id: String,
        secret: String,
    },
    /// The managed identity of the VM or container, from the instance metadata service.
    ManagedIdentity {
        endpoint: url::Url,
        client_id: Option<String>,
    },
}

impl std::fmt::Debug for AzureCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClientSecret {
                authority,
                tenant,
                client_id,
                ..
            } => write!(
                f,
                "ClientSecret(authority {authority}, tenant {tenant}, client {client_id}, secret <redacted>)"
            ),
            Self::ManagedIdentity {
                endpoint,
                client_id,
            } => write!(f, "ManagedIdentity({endpoint}, client {client_id:?})"),
        }
    }
}

impl AzureCredentials {
    /// The credentials from the process environment.
    pub fn from_env() -> Result<Self, SignerError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The credentials from `lookup` (an environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SignerError> {
        let set = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let client_id = set("AZURE_CLIENT_ID");
        match (
            set("AZURE_TENANT_ID"),
            client_id.clone(),
            set("AZURE_CLIENT_SECRET"),
        ) {
            (Some(tenant), Some(client_id), Some(secret)) => {
                if !tenant
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
                {
                    return Err(SignerError::Config(format!(
                        "AZURE_TENANT_ID {tenant:?} is not a tenant ID or domain"
                    )));
                }
                let authority = endpoint_setting(
                    "AZURE_AUTHORITY_HOST",
                    set("AZURE_AUTHORITY_HOST"),
                    DEFAULT_AUTHORITY_HOST,
                )?;
                check_endpoint(&authority)?;
                Ok(Self::ClientSecret {
                    authority,
                    tenant,
                    client_id,
                    secret,
                })
            }
            (_, _, Some(_)) => Err(SignerError::Config(
                "AZURE_CLIENT_SECRET is set: AZURE_TENANT_ID and AZURE_CLIENT_ID are needed too"
                    .into(),
            )),
            _ => {
                let endpoint = endpoint_setting(
                    "REKOR_AZURE_IMDS_ENDPOINT",
                    set("REKOR_AZURE_IMDS_ENDPOINT"),
                    DEFAULT_IMDS_ENDPOINT,
                )?;
                // The metadata service is plain http on its link-local address by design (it is
                // reached without leaving the host); anything else must be https or loopback.
                if endpoint.as_str().trim_end_matches('/') != DEFAULT_IMDS_ENDPOINT {
                    check_endpoint(&endpoint)?;
                }
                Ok(Self::ManagedIdentity {
                    endpoint,
                    client_id,
                })
            }
        }
    }
}

fn endpoint_setting(
    name: &str,
    value: Option<String>,
    default: &str,
) -> Result<url::Url, SignerError> {
    let value = value.unwrap_or_else(|| default.to_owned());
    let mut url = url::Url::parse(&value)
        .map_err(|error| SignerError::Config(format!("{name} {value:?}: {error}")))?;
    // Paths are joined below it: a base without the trailing slash would lose its last segment.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Opens the key `uri` names, with credentials from the environment.
pub async fn open(uri: &str, options: &OpenOptions) -> Result<Arc<dyn KeyBackend>, SignerError> {
    open_with(uri, options, AzureCredentials::from_env()?).await
}

/// Opens the key `uri` names with `credentials`: gets a token, reads the key and pins its
/// version.
pub async fn open_with(
    uri: &str,
    options: &OpenOptions,
    credentials: AzureCredentials,
) -> Result<Arc<dyn KeyBackend>, SignerError> {
    let key = KeyRef::parse(uri)?;
    let client = HttpClient::new(options.request_timeout)?;
    let tokens = TokenCache::start(AzureTokenSource {
        credentials,
        client: client.clone(),
    })
    .await?;

    let path = match &key.version {
        Some(version) => format!("keys/{}/{version}", key.name),
        None => format!("keys/{}", key.name),
    };
    let token = tokens.bearer().await?;
    let answer: KeyBundle = client
        .json(
            client.inner().get(key.url(&path)?).bearer_auth(&token),
            "Azure Key Vault get key",
        )
        .await?;
    if answer.attributes.as_ref().and_then(|a| a.enabled) == Some(false) {
        return Err(SignerError::Refused(format!(
            "{}: the key is disabled",
            key.describe()
        )));
    }
    let version = key.version_of(&answer.key.kid)?;
    let spki = answer
        .key
        .spki()
        .map_err(|reason| SignerError::UnsupportedKey(format!("{}: {reason}", key.describe())))?;
    let sign_url = key.url(&format!("keys/{}/{version}/sign", key.name))?;
    Ok(Arc::new(AzureKeyVaultBackend {
        describe: format!(
            "Azure Key Vault key {}/{version} ({})",
            key.describe(),
            tokens.describe()
        ),
        version,
        client,
        sign_url,
        tokens,
        spki,
    }))
}

/// A key in a vault, as the URI names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyRef {
    /// `https://<vault host>` (`http://` on loopback).
    base: url::Url,
    name: String,
    version: Option<String>,
}

impl KeyRef {
    fn parse(uri: &str) -> Result<Self, SignerError> {
        let invalid = |reason: &str| SignerError::InvalidUri {
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = uri
            .strip_prefix("azurekms://")
            .ok_or_else(|| invalid("an Azure Key Vault key URI starts with azurekms://"))?;
        let mut parts = rest.split('/');
        let host = parts.next().unwrap_or_default();
        let name = parts.next().unwrap_or_default();
        let version = parts.next().map(str::to_owned);
        if parts.next().is_some() {
            return Err(invalid(
                "expected azurekms://<vault host>/<key name>[/<version>]",
            ));
        }
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']'))
        {
            return Err(invalid("the vault host is missing or malformed"));
        }
        // Key Vault's rules: names of 1-127 letters, digits and dashes; versions alphanumeric.
        if name.is_empty()
            || name.len() > 127
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(invalid(
                "the key name must be 1-127 letters, digits or dashes",
            ));
        }
        if let Some(version) = &version {
            if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(invalid("the key version must be letters and digits"));
            }
        }
        let mut base = url::Url::parse(&format!("https://{host}"))
            .map_err(|error| invalid(&format!("the vault host: {error}")))?;
        let loopback = match base.host() {
            Some(url::Host::Domain(domain)) => domain == "localhost",
            Some(url::Host::Ipv4(address)) => address.is_loopback(),
            Some(url::Host::Ipv6(address)) => address.is_loopback(),
            None => false,
        };
        if loopback {
            // A local stand-in serves plain http; `check_endpoint` allows that on loopback only.
            base = url::Url::parse(&format!("http://{host}"))
                .map_err(|error| invalid(&format!("the vault host: {error}")))?;
        }
        check_endpoint(&base)?;
        Ok(Self {
            base,
            name: name.to_owned(),
            version,
        })
    }

    fn describe(&self) -> String {
        format!("{}/{}", self.base.host_str().unwrap_or_default(), self.name)
    }

    fn url(&self, path: &str) -> Result<url::Url, SignerError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|error| SignerError::Config(format!("{path}: {error}")))?;
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION);
        Ok(url)
    }

    /// The version a key's `kid` (`https://<vault>/keys/<name>/<version>`) names, checked against
    /// the URI's name and version.
    fn version_of(&self, kid: &str) -> Result<String, SignerError> {
        let unexpected = || {
            SignerError::Unavailable(format!(
                "Azure Key Vault get key {}: unexpected kid {kid:?}",
                self.describe()
            ))
        };
        let url = url::Url::parse(kid).map_err(|_| unexpected())?;
        let segments: Vec<&str> = url.path_segments().ok_or_else(unexpected)?.collect();
        let [keys, name, version] = segments[..] else {
            return Err(unexpected());
        };
        // Key Vault names are case-insensitive; the kid spells them as they were created.
        if keys != "keys"
            || !name.eq_ignore_ascii_case(&self.name)
            || version.is_empty()
            || !version.chars().all(|c| c.is_ascii_alphanumeric())
            || self
                .version
                .as_deref()
                .is_some_and(|asked| !asked.eq_ignore_ascii_case(version))
        {
            return Err(unexpected());
        }
        Ok(version.to_owned())
    }
}

#[derive(Deserialize)]
struct KeyBundle {
    key: JsonWebKey,
    #[serde(default)]
    attributes: Option<KeyAttributes>,
}

#[derive(Deserialize)]
struct KeyAttributes {
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Deserialize)]
struct JsonWebKey {
    kid: String,
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
}

impl JsonWebKey {
    /// The DER SubjectPublicKeyInfo of a P-256 signing key.
    fn spki(&self) -> Result<Vec<u8>, String> {
        if !matches!(self.kty.as_str(), "EC" | "EC-HSM") || self.crv.as_deref() != Some("P-256") {
            return Err(format!(
                "a {} {} key; a log signs with an EC P-256 key (Key Vault has no Ed25519)",
                self.kty,
                self.crv.as_deref().unwrap_or("")
            ));
        }
        if self
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|op| op == "sign"))
        {
            return Err("the key's key_ops do not allow sign".into());
        }
        let coordinate = |value: &Option<String>, which: &str| {
            let bytes = B64URL
                .decode(value.as_deref().unwrap_or_default())
                .map_err(|error| format!("{which}: {error}"))?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| format!("{which} is {} bytes, not 32", bytes.len()))
        };
        let x = coordinate(&self.x, "x")?;
        let y = coordinate(&self.y, "y")?;
        let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        let key = p256::PublicKey::from_sec1_bytes(point.as_bytes())
            .map_err(|_| "x and y are not a point of P-256".to_owned())?;
        key.to_public_key_der()
            .map(|der| der.into_vec())
            .map_err(|error| error.to_string())
    }
}

#[derive(Deserialize)]
struct SignAnswer {
    #[serde(default)]
    kid: Option<String>,
    value: String,
}

/// One version of a Key Vault EC P-256 key.
pub struct AzureKeyVaultBackend {
    describe: String,
    version: String,
    client: HttpClient,
    sign_url: url::Url,
    tokens: TokenCache,
    spki: Vec<u8>,
}

impl KeyBackend for AzureKeyVaultBackend {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign<'a>(&'a self, text: &'a [u8]) -> SignFuture<'a> {
        Box::pin(async move {
            let token = self.tokens.bearer().await?;
            let body = serde_json::json!({
                "alg": "ES256",
                "value": B64URL.encode(Sha256::digest(text)),
            });
            let request = self
                .client
                .inner()
                .post(self.sign_url.clone())
                .bearer_auth(&token)
                .json(&body);
            let answer: SignAnswer = match self.client.json(request, "Azure Key Vault sign").await {
                Ok(answer) => answer,
                Err(error) => {
                    if matches!(error, SignerError::Refused(_)) {
                        // A revoked token or a changed role assignment: fetch a new token next.
                        self.tokens.forget(&token);
                    }
                    return Err(error);
                }
            };
            if let Some(kid) = &answer.kid {
                let answered = kid.rsplit('/').next().unwrap_or_default();
                if !answered.eq_ignore_ascii_case(&self.version) {
                    return Err(SignerError::Unavailable(format!(
                        "Azure Key Vault sign: the answer names key version {answered:?}, not {}",
                        self.version
                    )));
                }
            }
            let fixed = B64URL.decode(answer.value.as_bytes()).map_err(|error| {
                SignerError::Unavailable(format!(
                    "Azure Key Vault sign: the signature is not base64url: {error}"
                ))
            })?;
            ecdsa_p256_fixed_to_der(&fixed)
        })
    }
}

/// Entra ID tokens for Key Vault.
struct AzureTokenSource {
    credentials: AzureCredentials,
    client: HttpClient,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: serde_json::Value,
}

impl TokenSource for AzureTokenSource {
    fn describe(&self) -> String {
        match &self.credentials {
            AzureCredentials::ClientSecret {
                tenant, client_id, ..
            } => format!("client credentials of {client_id} in tenant {tenant}"),
            AzureCredentials::ManagedIdentity { client_id, .. } => match client_id {
                Some(client_id) => format!("managed identity {client_id}"),
                None => "the managed identity".into(),
            },
        }
    }

    fn fetch(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            let (request, what) = match &self.credentials {
                AzureCredentials::ClientSecret {
                    authority,
                    tenant,
                    client_id,
                    secret,
                } => {
                    let url = authority
                        .join(&format!("{tenant}/oauth2/v2.0/token"))
                        .map_err(|error| SignerError::Config(format!("token URL: {error}")))?;
                    let scope = format!("{VAULT_RESOURCE}/.default");
                    let form = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("grant_type", "client_credentials")
                        .append_pair("client_id", client_id)
                        .append_pair("client_secret", secret)
                        .append_pair("scope", &scope)
                        .finish();
                    let request = self
                        .client
                        .inner()
                        .post(url)
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .body(form);
                    (request, "Entra ID client-credentials token")
                }
                AzureCredentials::ManagedIdentity {
                    endpoint,
                    client_id,
                } => {
                    let mut url = endpoint
                        .join("metadata/identity/oauth2/token")
                        .map_err(|error| SignerError::Config(format!("IMDS URL: {error}")))?;
                    {
                        let mut query = url.query_pairs_mut();
                        query
                            .append_pair("api-version", "2018-02-01")
                            .append_pair("resource", VAULT_RESOURCE);
                        if let Some(client_id) = client_id {
                            query.append_pair("client_id", client_id);
                        }
                    }
                    let request = self.client.inner().get(url).header("Metadata", "true");
                    (request, "Azure managed identity token")
                }
            };
            let answer: TokenAnswer = self.client.json(request, what).await?;
            let expires_in = expires_in_seconds(&answer.expires_in).ok_or_else(|| {
                SignerError::Unavailable(format!("{what}: no expires_in in the answer"))
            })?;
            Ok(Token {
                value: answer.access_token,
                expires_in: Some(expires_in),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_names_a_vault_a_key_and_maybe_a_version() {
        let key = KeyRef::parse("azurekms://myvault.vault.azure.net/rekor-log").unwrap();
        assert_eq!(key.base.as_str(), "https://myvault.vault.azure.net/");
        assert_eq!(key.name, "rekor-log");
        assert_eq!(key.version, None);
        assert_eq!(
            key.url("keys/rekor-log").unwrap().as_str(),
            "https://myvault.vault.azure.net/keys/rekor-log?api-version=7.4"
        );
        let local = KeyRef::parse("azurekms://127.0.0.1:8443/k/0123abcd").unwrap();
        assert_eq!(local.base.as_str(), "http://127.0.0.1:8443/");
        assert_eq!(local.version.as_deref(), Some("0123abcd"));
        for bad in [
            "azurekms://myvault.vault.azure.net",
            "azurekms://myvault.vault.azure.net/",
            "azurekms://myvault.vault.azure.net/k/v/extra",
            "azurekms://myvault.vault.azure.net/k_1",
            "azurekms://myvault.vault.azure.net/k/..",
            "azurekms://user@vault/k",
            "gcpkms://x",
        ] {
            assert!(KeyRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_kid_gives_the_version_and_must_match_the_uri() {
        let key = KeyRef::parse("azurekms://v.vault.azure.net/Rekor").unwrap();
        assert_eq!(
            key.version_of("https://v.vault.azure.net/keys/rekor/78deebed173b48e48f55abf87ed4cf71")
                .unwrap(),
            "78deebed173b48e48f55abf87ed4cf71"
        );
        assert!(key
            .version_of("https://v.vault.azure.net/keys/other/1")
            .is_err());
        let pinned = KeyRef::parse("azurekms://v.vault.azure.net/rekor/abc").unwrap();
        assert!(pinned
            .version_of("https://v.vault.azure.net/keys/rekor/def")
            .is_err());
    }

    #[test]
    fn credentials_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        let secret = AzureCredentials::from_lookup(env(&[
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_CLIENT_SECRET", "hunter2"),
        ]))
        .unwrap();
        assert!(
            matches!(secret, AzureCredentials::ClientSecret { ref authority, .. }
            if authority.as_str() == "https://login.microsoftonline.com/")
        );
        assert!(!format!("{secret:?}").contains("hunter2"));
        let managed = AzureCredentials::from_lookup(env(&[("AZURE_CLIENT_ID", "uami")])).unwrap();
        assert!(
            matches!(managed, AzureCredentials::ManagedIdentity { ref endpoint, ref client_id }
            if endpoint.as_str() == "http://169.254.169.254/" && client_id.as_deref() == Some("uami"))
        );
        assert!(AzureCredentials::from_lookup(env(&[("AZURE_CLIENT_SECRET", "x")])).is_err());
        assert!(AzureCredentials::from_lookup(env(&[(
            "REKOR_AZURE_IMDS_ENDPOINT",
            "http://10.1.2.3"
        )]))
        .is_err());
        assert!(AzureCredentials::from_lookup(env(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_AUTHORITY_HOST", "http://login.example.com"),
        ]))
        .is_err());
    }
}
