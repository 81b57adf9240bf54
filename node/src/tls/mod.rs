//! Transport security: TLS on the public listener, mutual TLS between nodes and for operators.
//!
//! - The **public listener** serves TLS 1.2 and 1.3 with HTTP/2 by ALPN when
//!   `--http-tls-cert-file`/`--http-tls-key-file` are given (upstream's flag names), plain HTTP
//!   otherwise (loopback, or behind a terminating proxy).
//! - The **internal listener** runs mutual TLS when `--internal-tls-ca-file`,
//!   `--internal-tls-cert-file` and `--internal-tls-key-file` are given: every caller presents a
//!   certificate from the cluster CA that names a node or an operator ([`identity`]), the
//!   listener records who it is for each connection ([`on_connect`]), and `rekor_raft::auth`
//!   lets a node reach the peer routes only as itself and an operator reach only the admin
//!   routes. This node's outgoing calls to its peers present the same certificate and accept
//!   only the node they meant to reach ([`verify::PeerServerVerifier`]).
//! - Certificate files are reloaded without a restart ([`material::Reloader`]).
//!
//! rustls with the aws-lc-rs provider throughout (the provider reqwest and object_store use).

pub mod dev_certs;
pub mod identity;
pub mod material;
pub mod metrics;
pub mod verify;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Extensions;
use anyhow::{Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ServerConfig};

pub use material::{CertificateFiles, MutualTlsFiles};
use material::{Reloader, ReloadingIdentity, ReloadingRoots};
use metrics::TlsMetrics;
use verify::{ClusterClientVerifier, ExpectedPeer, PeerServerVerifier};

/// The crypto provider of every TLS configuration here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The accepted connection type of the rustls listeners, as `on_connect` sees it.
type AcceptedTls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;

/// The `on_connect` hook of a TLS listener (`crate::http_listener`): counts the handshake and, when
/// `identify`, records the caller its verified client certificate names (a
/// [`rekor_raft::Caller`] in the connection data, read by `rekor_raft::auth`). It runs once per
/// connection, so a request pays no certificate parsing.
pub fn on_connect(
    listener: &'static str,
    metrics: TlsMetrics,
    identify: bool,
) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |connection, data| {
        let Some(tls) = connection.downcast_ref::<AcceptedTls>() else {
            return;
        };
        metrics.handshakes.with_label_values(&[listener]).inc();
        if identify {
            let caller = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| identity::caller_of(leaf));
            if let Some(caller) = caller {
                data.insert(caller);
            }
        }
    }
}

/// The node's TLS, as `serve` wires it.
pub struct NodeTls {
    /// The public listener's server configuration, if it serves TLS.
    pub public: Option<ServerConfig>,
    /// The internal listener's mutual TLS, if on.
    pub internal: Option<InternalTls>,
    pub metrics: TlsMetrics,
    reloader: Reloader,
}

impl NodeTls {
    /// Loads every configured certificate (the node does not start if one does not load).
    pub fn load(
        public: Option<&CertificateFiles>,
        internal: Option<&MutualTlsFiles>,
        registry: &prometheus::Registry,
    ) -> Result<Self> {
        let provider = provider();
        let metrics = TlsMetrics::register(registry)?;
        let mut reloader = Reloader::new(Some(metrics.clone()));
        let public = match public {
            Some(files) => {
                let identity = ReloadingIdentity::load(
                    "public",
                    files.clone(),
                    provider.clone(),
                    Some(metrics.clone()),
                )
                .context("loading the public listener's TLS certificate")?;
                reloader.watch(identity.clone());
                Some(public_server_config(identity, &provider)?)
            }
            None => None,
        };
        let internal = match internal {
            Some(files) => {
                let tls = InternalTls::load(files, provider.clone(), Some(metrics.clone()))?;
                reloader.watch(tls.identity.clone());
                reloader.watch(tls.roots.clone());
                Some(tls)
            }
            None => None,
        };
        Ok(Self {
            public,
            internal,
            metrics,
            reloader,
        })
    }

    /// Starts reloading the certificate files on SIGHUP and every `interval`.
    pub fn start_reloading(self, interval: Option<Duration>) -> Result<()> {
        self.reloader.spawn(interval)
    }
}

/// The public listener's configuration: this node's certificate, no client certificates.
fn public_server_config(
    identity: Arc<ReloadingIdentity>,
    provider: &Arc<CryptoProvider>,
) -> Result<ServerConfig> {
    Ok(ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(identity))
}

/// Mutual TLS between the nodes: this node's certificate and the cluster CA.
#[derive(Clone)]
pub struct InternalTls {
    identity: Arc<ReloadingIdentity>,
    roots: Arc<ReloadingRoots>,
    provider: Arc<CryptoProvider>,
    metrics: Option<TlsMetrics>,
}

impl InternalTls {
    fn load(
        files: &MutualTlsFiles,
        provider: Arc<CryptoProvider>,
        metrics: Option<TlsMetrics>,
    ) -> Result<Self> {
        let identity = ReloadingIdentity::load(
            "internal",
            files.identity.clone(),
            provider.clone(),
            metrics.clone(),
        )
        .context("loading this node's internal TLS certificate")?;
        let roots = ReloadingRoots::load(
            "internal",
            files.ca.clone(),
            provider.clone(),
            metrics.clone(),
        )
        .context("loading the cluster CA bundle")?;
        Ok(Self {
            identity,
            roots,
            provider,
            metrics,
        })
    }

    /// The internal listener's configuration: client certificates from the cluster CA required.
    pub fn server_config(&self) -> Result<ServerConfig> {
        let verifier = ClusterClientVerifier::new(
            self.roots.clone(),
            &self.provider,
            self.metrics.clone().map(|metrics| (metrics, "internal")),
        );
        Ok(ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(self.identity.clone()))
    }

    /// A client configuration that presents this node's certificate and accepts only `expected`.
    pub fn client_config(&self, expected: ExpectedPeer) -> Result<ClientConfig> {
        let verifier = PeerServerVerifier::new(self.roots.clone(), expected, &self.provider);
        Ok(ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(self.identity.clone()))
    }

    /// This node's clients of its peers: HTTPS, one client (connection pool, TLS session cache)
    /// per peer, each accepting only that peer's certificate.
    pub fn peer_clients(
        &self,
        self_id: u64,
        secret: rekor_raft::ClusterSecret,
        source: Option<std::net::IpAddr>,
    ) -> rekor_raft::PeerClients {
        let tls = self.clone();
        rekor_raft::PeerClients::tls(
            self_id,
            secret,
            Box::new(move |target| {
                let config = tls
                    .client_config(ExpectedPeer::Node(target))
                    .map_err(|e| format!("{e:#}"))?;
                rekor_raft::PeerClients::client_builder(rekor_raft::PEER_CONNECT_TIMEOUT, source)
                    .tls_backend_preconfigured(config)
                    .build()
                    .map_err(|e| e.to_string())
            }),
        )
    }
}

/// The admin tool's configuration: an operator certificate, the cluster CA, any node.
pub fn operator_client_config(
    ca: &std::path::Path,
    operator: &CertificateFiles,
) -> Result<ClientConfig> {
    let provider = provider();
    let identity = ReloadingIdentity::load("operator", operator.clone(), provider.clone(), None)
        .context("loading the operator certificate")?;
    let roots = ReloadingRoots::load("operator", ca.to_path_buf(), provider.clone(), None)
        .context("loading the cluster CA bundle")?;
    let verifier = PeerServerVerifier::new(roots, ExpectedPeer::AnyNode, &provider);
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(identity))
}
