//! One KMS API call: a JSON 1.1 POST to the endpoint's root, named by `X-Amz-Target`, signed
//! with SigV4 (service `kms`), its answer read with the size cap and its errors sorted by the
//! `__type` KMS puts in the body (KMS answers throttling with 400, so the status alone would
//! call it a refusal).

use std::time::SystemTime;

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::config::AwsConfig;
use crate::http::{classify_status, error_detail, HttpClient};
use crate::SignerError;

/// The content type of the KMS JSON protocol.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// A client of one KMS endpoint, region and identity.
#[derive(Clone)]
pub struct KmsClient {
    http: HttpClient,
    config: AwsConfig,
}

impl KmsClient {
    pub fn new(http: HttpClient, config: AwsConfig) -> Self {
        Self { http, config }
    }

    /// The endpoint and region, for messages.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.config.endpoint, self.config.region)
    }

    /// Calls `TrentService.<operation>` with `body` and parses a successful answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        operation: &str,
        body: &serde_json::Value,
    ) -> Result<T, SignerError> {
        let what = format!("AWS KMS {operation} at {}", self.describe());
        let body = serde_json::to_vec(body)
            .map_err(|error| SignerError::Config(format!("{what}: {error}")))?;
        let target = format!("TrentService.{operation}");
        let headers = self.signed_headers(&target, &body, SystemTime::now())?;
        let mut request = self.http.inner().post(self.config.endpoint.clone());
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let (status, answer) = self.http.send(request.body(body), &what).await?;
        if !status.is_success() {
            return Err(classify_error(status.as_u16(), &answer, &what));
        }
        // Some operations (CreateAlias) answer with an empty body.
        let answer: &[u8] = if answer.is_empty() { b"null" } else { &answer };
        serde_json::from_slice(answer).map_err(|error| {
            SignerError::Unavailable(format!("{what}: unexpected answer: {error}"))
        })
    }

    /// The headers of a request with `target` and `body` signed at `time`: the content type,
    /// the target, and what SigV4 adds (`X-Amz-Date`, `Authorization`, `X-Amz-Security-Token`
    /// for temporary credentials). `Host` is signed as reqwest will send it, from the URL.
    pub fn signed_headers(
        &self,
        target: &str,
        body: &[u8],
        time: SystemTime,
    ) -> Result<Vec<(String, String)>, SignerError> {
        let credentials = &self.config.credentials;
        let identity = aws_credential_types::Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
            credentials.session_token.clone(),
            None,
            "environment",
        )
        .into();
        let failed = |error: &dyn std::fmt::Display| {
            SignerError::Config(format!("signing an AWS KMS request: {error}"))
        };
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.config.region)
            .name("kms")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|error| failed(&error))?
            .into();
        let mut headers = vec![
            ("content-type".to_owned(), CONTENT_TYPE.to_owned()),
            ("x-amz-target".to_owned(), target.to_owned()),
        ];
        let signable = SignableRequest::new(
            "POST",
            self.config.endpoint.as_str(),
            headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|error| failed(&error))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|error| failed(&error))?
            .into_parts();
        headers.extend(
            instructions
                .headers()
                .map(|(name, value)| (name.to_owned(), value.to_owned())),
        );
        Ok(headers)
    }
}

/// A KMS error body: `{"__type": "...Exception", "message": "..."}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type")]
    kind: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// Sorts a KMS error into retry or refuse: throttling and KMS's own trouble are retried, and
/// so is any 5xx/408/429 whatever it says; everything else (access denied, key not found,
/// disabled or pending deletion, wrong key usage, bad credentials) waits for an operator.
pub fn classify_error(status: u16, body: &[u8], what: &str) -> SignerError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let Some(kind) = parsed.as_ref().and_then(|error| error.kind.as_deref()) else {
        return classify_status(
            status,
            format!("{what}: HTTP {status}: {}", error_detail(body)),
        );
    };
    // The type may carry a namespace (`com.amazonaws.kms#`) or a suffix after `:`.
    let kind = kind.rsplit('#').next().unwrap_or(kind);
    let kind = kind.split(':').next().unwrap_or(kind);
    let detail = parsed
        .as_ref()
        .and_then(|error| error.message.as_deref())
        .unwrap_or("");
    let message = format!("{what}: {kind}: {detail}");
    let transient = matches!(
        kind,
        "ThrottlingException"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "KMSInternalException"
            | "DependencyTimeoutException"
            | "KeyUnavailableException"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "RequestTimeout"
            | "RequestTimeoutException"
    );
    if transient {
        SignerError::Unavailable(message)
    } else {
        classify_status(status, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_errors_sort_by_type_not_only_status() {
        let error = |status, body: &str| classify_error(status, body.as_bytes(), "Sign");
        assert!(matches!(
            error(
                400,
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#
            ),
            SignerError::Unavailable(_)
        ));
        assert!(matches!(
            error(500, r#"{"__type":"KMSInternalException"}"#),
            SignerError::Unavailable(_)
        ));
        assert!(matches!(
            error(
                400,
                r#"{"__type":"com.amazonaws.kms#KeyUnavailableException"}"#
            ),
            SignerError::Unavailable(_)
        ));
        for refused in [
            "AccessDeniedException",
            "NotFoundException",
            "DisabledException",
            "KMSInvalidStateException",
            "InvalidKeyUsageException",
            "UnrecognizedClientException",
            "ExpiredTokenException",
        ] {
            let body = format!(r#"{{"__type":"{refused}","message":"no"}}"#);
            match error(400, &body) {
                SignerError::Refused(message) => {
                    assert!(message.contains(refused), "{message}");
                    assert!(message.contains("no"), "{message}");
                }
                other => panic!("{refused}: {other:?}"),
            }
        }
        // Whatever the type, a 5xx may pass; a body that is not KMS's falls back on the status.
        assert!(error(503, r#"{"__type":"AccessDeniedException"}"#).is_transient());
        assert!(error(502, "<html>bad gateway</html>").is_transient());
        assert!(!error(403, "<html>forbidden</html>").is_transient());
    }
}
