//! Certificate files on disk, loaded at start and reloaded while the node runs.
//!
//! Renewed certificates (cert-manager, ACME clients, `rekor-node certs`) replace files in place.
//! [`Reloader`] re-reads them on SIGHUP and every `--tls-reload-interval-s`; a file whose bytes
//! changed is parsed and checked (the key must match the certificate) before it replaces the one
//! in use, so a half-written or mismatched renewal is logged, counted and ignored, and the node
//! keeps serving with the certificate it had. New handshakes use the new material at once;
//! established connections keep theirs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use sha2::{Digest, Sha256};
use tracing::{error, info};

use super::metrics::TlsMetrics;

/// A certificate chain file and its private key file (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Mutual TLS: the CA bundle peers' certificates must chain to, and this node's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutualTlsFiles {
    pub ca: PathBuf,
    pub identity: CertificateFiles,
}

fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {what} {} (PEM)", path.display()))?;
    if certificates.is_empty() {
        bail!("{what} {} holds no PEM certificate", path.display());
    }
    Ok(certificates)
}

/// The certificate chain and key of `files`, checked to belong together.
pub fn load_certified_key(
    files: &CertificateFiles,
    provider: &CryptoProvider,
) -> Result<CertifiedKey> {
    let chain = read_certificates(&files.cert, "TLS certificate")?;
    let key_pem = crate::secrets::read_private_file(&files.key, "TLS private key")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).with_context(|| {
        format!(
            "parsing TLS private key {} (PEM: PKCS#8, SEC1 or PKCS#1)",
            files.key.display()
        )
    })?;
    CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "TLS key {} does not fit certificate {}",
            files.key.display(),
            files.cert.display()
        )
    })
}

/// The CA certificates of a bundle file.
pub fn load_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path, "CA bundle")? {
        roots
            .add(certificate)
            .with_context(|| format!("adding a CA certificate of {}", path.display()))?;
    }
    Ok(roots)
}

fn files_digest(paths: &[&Path]) -> Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    for path in paths {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(&bytes);
    }
    Ok(hasher.finalize().into())
}

/// Something [`Reloader`] keeps fresh.
pub trait Reload: Send + Sync {
    /// Re-reads the files if their bytes changed; `Ok(true)` if new material is now in use.
    fn reload_if_changed(&self) -> Result<bool>;
    /// What it is, for logs.
    fn describe(&self) -> String;
    /// The listener label of its metrics.
    fn listener(&self) -> &'static str;
}

/// This node's certificate and key, replaceable while it runs. It answers both as a server
/// (the listener's certificate) and as a client (the certificate sent to peers).
pub struct ReloadingIdentity {
    listener: &'static str,
    files: CertificateFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    loaded: Mutex<[u8; 32]>,
    metrics: Option<TlsMetrics>,
}

impl fmt::Debug for ReloadingIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingIdentity")
            .field("listener", &self.listener)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingIdentity {
    /// Loads `files` (an error if they do not load: a node does not start half-configured).
    pub fn load(
        listener: &'static str,
        files: CertificateFiles,
        provider: Arc<CryptoProvider>,
        metrics: Option<TlsMetrics>,
    ) -> Result<Arc<Self>> {
        let digest = files_digest(&[&files.cert, &files.key])?;
        let key = load_certified_key(&files, &provider)?;
        let identity = Self {
            listener,
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
            loaded: Mutex::new(digest),
            metrics,
        };
        identity.record_expiry();
        Ok(Arc::new(identity))
    }

    /// The certificate and key in use.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record_expiry(&self) {
        if let Some(metrics) = &self.metrics {
            let leaf = self.current();
            let not_after = leaf
                .cert
                .first()
                .and_then(|der| super::identity::not_after(der));
            metrics.set_expiry(self.listener, "certificate", not_after);
        }
    }
}

impl Reload for ReloadingIdentity {
    fn reload_if_changed(&self) -> Result<bool> {
        let digest = files_digest(&[&self.files.cert, &self.files.key])?;
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if *loaded == digest {
            return Ok(false);
        }
        let key = load_certified_key(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        *loaded = digest;
        drop(loaded);
        self.record_expiry();
        Ok(true)
    }

    fn describe(&self) -> String {
        format!(
            "{} certificate {} (key {})",
            self.listener,
            self.files.cert.display(),
            self.files.key.display()
        )
    }

    fn listener(&self) -> &'static str {
        self.listener
    }
}

impl rustls::server::ResolvesServerCert for ReloadingIdentity {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for ReloadingIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The cluster CA bundle, replaceable while the node runs (CA rotation: publish a bundle with
/// the old and the new CA, move every node to a certificate of the new one, then drop the old).
pub struct ReloadingRoots {
    listener: &'static str,
    path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<RootCertStore>, Arc<dyn ClientCertVerifier>)>,
    loaded: Mutex<[u8; 32]>,
    metrics: Option<TlsMetrics>,
}

impl fmt::Debug for ReloadingRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingRoots")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ReloadingRoots {
    pub fn load(
        listener: &'static str,
        path: PathBuf,
        provider: Arc<CryptoProvider>,
        metrics: Option<TlsMetrics>,
    ) -> Result<Arc<Self>> {
        let digest = files_digest(&[&path])?;
        let current = Self::parse(&path, &provider)?;
        let roots = Self {
            listener,
            path,
            provider,
            current: RwLock::new(current),
            loaded: Mutex::new(digest),
            metrics,
        };
        roots.record_expiry()?;
        Ok(Arc::new(roots))
    }

    fn parse(
        path: &Path,
        provider: &Arc<CryptoProvider>,
    ) -> Result<(Arc<RootCertStore>, Arc<dyn ClientCertVerifier>)> {
        let roots = Arc::new(load_roots(path)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .with_context(|| format!("building a client verifier from {}", path.display()))?;
        Ok((roots, verifier))
    }

    /// The CA certificates in use.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    /// A verifier of client certificates against the CA certificates in use.
    pub fn client_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    /// The earliest notAfter of the bundle's certificates: when the cluster stops working
    /// unless a new CA is in place.
    fn record_expiry(&self) -> Result<()> {
        if let Some(metrics) = &self.metrics {
            let earliest = read_certificates(&self.path, "CA bundle")?
                .iter()
                .filter_map(|der| super::identity::not_after(der))
                .min();
            metrics.set_expiry(self.listener, "ca", earliest);
        }
        Ok(())
    }
}

impl Reload for ReloadingRoots {
    fn reload_if_changed(&self) -> Result<bool> {
        let digest = files_digest(&[&self.path])?;
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if *loaded == digest {
            return Ok(false);
        }
        let current = Self::parse(&self.path, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = current;
        *loaded = digest;
        drop(loaded);
        self.record_expiry()?;
        Ok(true)
    }

    fn describe(&self) -> String {
        format!("{} CA bundle {}", self.listener, self.path.display())
    }

    fn listener(&self) -> &'static str {
        self.listener
    }
}

/// Keeps a set of [`Reload`]s fresh: on SIGHUP and every `interval` (if any).
#[derive(Default)]
pub struct Reloader {
    items: Vec<Arc<dyn Reload>>,
    metrics: Option<TlsMetrics>,
}

impl Reloader {
    pub fn new(metrics: Option<TlsMetrics>) -> Self {
        Self {
            items: Vec::new(),
            metrics,
        }
    }

    pub fn watch(&mut self, item: Arc<dyn Reload>) {
        self.items.push(item);
    }

    /// Checks every file once; returns how many were replaced.
    pub fn reload_now(&self) -> usize {
        let mut replaced = 0;
        for item in &self.items {
            let result = item.reload_if_changed();
            let label = match &result {
                Ok(false) => continue,
                Ok(true) => {
                    replaced += 1;
                    info!(what = %item.describe(), "reloaded renewed TLS material");
                    "ok"
                }
                Err(err) => {
                    error!(
                        what = %item.describe(),
                        error = %format!("{err:#}"),
                        "renewed TLS material does not load; still using the previous one"
                    );
                    "error"
                }
            };
            if let Some(metrics) = &self.metrics {
                metrics
                    .reloads
                    .with_label_values(&[item.listener(), label])
                    .inc();
            }
        }
        replaced
    }

    /// Runs [`Reloader::reload_now`] on SIGHUP and every `interval`, for as long as the runtime.
    pub fn spawn(self, interval: Option<Duration>) -> Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("listening for SIGHUP")?;
        let reloader = Arc::new(self);
        tokio::spawn(async move {
            let mut ticks = interval.map(|every| {
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks
            });
            loop {
                let tick = async {
                    match ticks.as_mut() {
                        Some(ticks) => {
                            ticks.tick().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    signal = hangups.recv() => {
                        if signal.is_none() {
                            return;
                        }
                        info!("SIGHUP: checking TLS certificate files");
                    }
                    () = tick => {}
                }
                // File reads and parsing: off the async workers.
                let reloader = reloader.clone();
                let _ = tokio::task::spawn_blocking(move || reloader.reload_now()).await;
            }
        });
        Ok(())
    }
}
