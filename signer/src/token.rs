//! Bearer tokens of the cloud signers (GCP Cloud KMS, Azure Key Vault): fetched when the backend
//! opens, cached, and renewed ahead of expiry.
//!
//! A checkpoint signature should cost one round trip, so the signing path never waits for a
//! token while the cached one is fresh: a background task renews it at 80% of its lifetime. The
//! signing path fetches a token itself only when the cache holds nothing usable (renewals kept
//! failing until the token was nearly expired, or the service refused it).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::SignerError;

/// Renewal starts at this fraction of a token's lifetime…
const RENEW_AT: f64 = 0.8;
/// …and past this fraction the token is not used any more (a fetch on the signing path).
const USABLE_UNTIL: f64 = 0.95;
/// The shortest wait between two renewals, whatever the lifetimes the service hands out.
const MIN_RENEW_INTERVAL: Duration = Duration::from_millis(500);
/// The longest wait before a failed renewal is tried again.
const MAX_RENEW_BACKOFF: Duration = Duration::from_secs(30);

/// A token as a token service handed it out.
pub(crate) struct Token {
    pub value: String,
    /// `None`: a token given by the operator, used as it is until the service refuses it.
    pub expires_in: Option<Duration>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// The future a [`TokenSource`] returns.
pub(crate) type TokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Token, SignerError>> + Send + 'a>>;

/// Where tokens come from: a static value, a metadata server, an OAuth token endpoint.
pub(crate) trait TokenSource: Send + Sync + 'static {
    /// For logs (never the secret).
    fn describe(&self) -> String;
    /// Gets a new token.
    fn fetch(&self) -> TokenFuture<'_>;
}

struct Cached {
    value: String,
    obtained: Instant,
    lifetime: Option<Duration>,
}

impl Cached {
    fn renew_at(&self) -> Option<Instant> {
        self.lifetime
            .map(|lifetime| self.obtained + lifetime.mul_f64(RENEW_AT))
    }

    fn usable(&self, now: Instant) -> bool {
        self.lifetime
            .is_none_or(|lifetime| now < self.obtained + lifetime.mul_f64(USABLE_UNTIL))
    }
}

struct Shared {
    source: Box<dyn TokenSource>,
    current: RwLock<Option<Cached>>,
    /// One fetch at a time: the renewer and signers that found the cache empty wait for it.
    fetching: tokio::sync::Mutex<()>,
}

impl Shared {
    fn usable(&self) -> Option<String> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|cached| cached.usable(Instant::now()))
            .map(|cached| cached.value.clone())
    }

    fn renew_at(&self) -> Option<Option<Instant>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().map(Cached::renew_at)
    }

    async fn fetch(&self) -> Result<String, SignerError> {
        let obtained = Instant::now();
        let token = self.source.fetch().await?;
        debug!(source = %self.source.describe(), expires_in = ?token.expires_in, "token fetched");
        let value = token.value.clone();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Cached {
            value: token.value,
            obtained,
            lifetime: token.expires_in,
        });
        Ok(value)
    }
}

/// A cached token from one source, renewed in the background. Dropping it stops the renewal.
pub(crate) struct TokenCache {
    shared: Arc<Shared>,
    renewer: JoinHandle<()>,
}

impl TokenCache {
    /// Fetches the first token (so that opening a backend fails early on bad credentials) and
    /// starts renewing it.
    pub async fn start(source: impl TokenSource) -> Result<Self, SignerError> {
        let shared = Arc::new(Shared {
            source: Box::new(source),
            current: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        });
        shared.fetch().await?;
        let renewer = tokio::spawn(renew(Arc::clone(&shared)));
        Ok(Self { shared, renewer })
    }

    /// A token to send now: the cached one while it is fresh, else a new one.
    pub async fn bearer(&self) -> Result<String, SignerError> {
        if let Some(value) = self.shared.usable() {
            return Ok(value);
        }
        let _fetching = self.shared.fetching.lock().await;
        // Someone else may have fetched one while this call waited.
        if let Some(value) = self.shared.usable() {
            return Ok(value);
        }
        self.shared.fetch().await
    }

    /// Forgets `value` after the service refused a request made with it, so that the next
    /// request fetches a new token (a revoked or rotated credential).
    pub fn forget(&self, value: &str) {
        let mut current = self
            .shared
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|cached| cached.value == value) {
            *current = None;
        }
    }

    /// Where the tokens come from, for `describe()`.
    pub fn describe(&self) -> String {
        self.shared.source.describe()
    }
}

impl Drop for TokenCache {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Renews the token at [`RENEW_AT`] of its lifetime, for as long as the cache exists.
async fn renew(shared: Arc<Shared>) {
    let mut backoff = Duration::from_secs(1);
    let mut last_renewal = Instant::now();
    loop {
        let wake = match shared.renew_at() {
            // An operator's token: nothing to renew, ever.
            Some(None) => return,
            Some(Some(at)) => at.max(last_renewal + MIN_RENEW_INTERVAL),
            // Forgotten after a refusal; the signing path fetches one, look again later.
            None => Instant::now() + MIN_RENEW_INTERVAL,
        };
        tokio::time::sleep_until(wake).await;
        let fetching = shared.fetching.lock().await;
        // A signer may have fetched a new token in the meantime.
        if matches!(shared.renew_at(), Some(Some(at)) if at > Instant::now()) {
            continue;
        }
        last_renewal = Instant::now();
        match shared.fetch().await {
            Ok(_) => backoff = Duration::from_secs(1),
            Err(error) => {
                warn!(source = %shared.source.describe(), %error, retry_in = ?backoff, "token renewal failed");
                drop(fetching);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_RENEW_BACKOFF);
            }
        }
    }
}

/// A token service's `expires_in`: seconds as a JSON number (OAuth 2.0, RFC 6749 §5.1) or as a
/// string (Azure's instance metadata service).
pub(crate) fn expires_in_seconds(value: &serde_json::Value) -> Option<Duration> {
    let seconds = match value {
        serde_json::Value::Number(number) => number.as_u64(),
        serde_json::Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Counting {
        fetched: Arc<AtomicU32>,
        lifetime: Option<Duration>,
    }

    impl TokenSource for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
        fn fetch(&self) -> TokenFuture<'_> {
            let n = self.fetched.fetch_add(1, Ordering::SeqCst) + 1;
            let lifetime = self.lifetime;
            Box::pin(async move {
                Ok(Token {
                    value: format!("token-{n}"),
                    expires_in: lifetime,
                })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renews_at_four_fifths_of_the_lifetime() {
        let fetched = Arc::new(AtomicU32::new(0));
        let cache = TokenCache::start(Counting {
            fetched: Arc::clone(&fetched),
            lifetime: Some(Duration::from_secs(100)),
        })
        .await
        .unwrap();
        assert_eq!(cache.bearer().await.unwrap(), "token-1");
        tokio::time::sleep(Duration::from_secs(79)).await;
        assert_eq!(fetched.load(Ordering::SeqCst), 1);
        assert_eq!(cache.bearer().await.unwrap(), "token-1");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(fetched.load(Ordering::SeqCst), 2);
        assert_eq!(cache.bearer().await.unwrap(), "token-2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_forgotten_token_is_fetched_again_and_a_static_one_never_renewed() {
        let fetched = Arc::new(AtomicU32::new(0));
        let cache = TokenCache::start(Counting {
            fetched: Arc::clone(&fetched),
            lifetime: None,
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(cache.bearer().await.unwrap(), "token-1");
        cache.forget("someone else's");
        assert_eq!(cache.bearer().await.unwrap(), "token-1");
        cache.forget("token-1");
        assert_eq!(cache.bearer().await.unwrap(), "token-2");
        assert_eq!(fetched.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn expires_in_as_number_or_string() {
        assert_eq!(
            expires_in_seconds(&serde_json::json!(3599)),
            Some(Duration::from_secs(3599))
        );
        assert_eq!(
            expires_in_seconds(&serde_json::json!("86399")),
            Some(Duration::from_secs(86399))
        );
        assert_eq!(expires_in_seconds(&serde_json::json!(null)), None);
    }
}
