//! What the HTTP-based signers (AWS KMS, GCP Cloud KMS, Azure Key Vault, Vault transit) share:
//! one kept-alive client with deadlines, endpoints that are https unless on loopback, answers
//! read with a size cap before they are parsed, and statuses sorted into retry or refuse.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::SignerError;

/// The most bytes of a signer's answer that are read (a signature, a public key, a token).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A client for one signing service.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    /// A client whose requests give up after `timeout` (connecting takes at most the same).
    pub fn new(timeout: Duration) -> Result<Self, SignerError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(|error| SignerError::Config(format!("building the HTTP client: {error}")))?;
        Ok(Self { client })
    }

    /// The underlying client, to build requests.
    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `request` and parses a 2xx answer as JSON; other statuses become errors that say
    /// what the service answered.
    pub async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, SignerError> {
        let body = self.bytes(request, what).await?;
        serde_json::from_slice(&body).map_err(|error| {
            SignerError::Unavailable(format!("{what}: unexpected answer: {error}"))
        })
    }

    /// Sends `request` and returns a 2xx answer's body, read up to [`MAX_RESPONSE_BYTES`].
    pub async fn bytes(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Vec<u8>, SignerError> {
        let (status, body) = self.send(request, what).await?;
        if status.is_success() {
            return Ok(body);
        }
        let message = format!("{what}: HTTP {status}: {}", error_detail(&body));
        Err(classify_status(status.as_u16(), message))
    }

    /// Sends `request` and returns the status and the body, read up to [`MAX_RESPONSE_BYTES`],
    /// whatever the status: for services whose error bodies say more than their statuses
    /// (AWS KMS answers throttling with 400 and the reason in the body).
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), SignerError> {
        let response = request
            .send()
            .await
            .map_err(|error| SignerError::Unavailable(format!("{what}: {error}")))?;
        let status = response.status();
        let body = read_capped(response, what).await?;
        Ok((status, body))
    }
}

/// The start of an error answer, for a message.
pub fn error_detail(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned()
}

/// 5xx, 408 and 429 are worth retrying; any other refusal is not.
pub fn classify_status(status: u16, message: String) -> SignerError {
    if status >= 500 || status == 408 || status == 429 {
        SignerError::Unavailable(message)
    } else {
        SignerError::Refused(message)
    }
}

async fn read_capped(mut response: reqwest::Response, what: &str) -> Result<Vec<u8>, SignerError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| SignerError::Unavailable(format!("{what}: reading the answer: {error}")))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(SignerError::Unavailable(format!(
                "{what}: answer larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Checks a service endpoint: `https://`, or `http://` on a loopback host (a local stand-in or
/// a sidecar proxy), never plain HTTP across a network.
pub fn check_endpoint(endpoint: &url::Url) -> Result<(), SignerError> {
    match endpoint.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(endpoint) => Ok(()),
        scheme => Err(SignerError::Config(format!(
            "signer endpoint {endpoint} uses {scheme}: only https, or http on a loopback address"
        ))),
    }
}

fn is_loopback(endpoint: &url::Url) -> bool {
    match endpoint.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        for ok in [
            "https://kms.example.com/",
            "http://127.0.0.1:8200/",
            "http://localhost:5000/",
            "http://[::1]:1/",
        ] {
            check_endpoint(&url::Url::parse(ok).unwrap()).unwrap();
        }
        for refused in [
            "http://kms.example.com/",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
        ] {
            assert!(
                check_endpoint(&url::Url::parse(refused).unwrap()).is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn statuses_sort_into_retry_or_refuse() {
        assert!(classify_status(503, String::new()).is_transient());
        assert!(classify_status(429, String::new()).is_transient());
        assert!(!classify_status(403, String::new()).is_transient());
        assert!(!classify_status(404, String::new()).is_transient());
    }
}
