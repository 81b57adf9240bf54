//! `rekor-node serve`: start-up, the two listeners, and shutdown.
//!
//! Runtime shape (rust-stack.md §4.3): one actix `System` on a multi-thread tokio runtime, so that
//! openraft's core, replication and state-machine tasks land on the work-stealing pool; the
//! integrator on its own arbiter thread; one shared backend built outside the listeners'
//! factories; reqwest for node-to-node calls.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use actix::{Actor, Arbiter};
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use anyhow::{Context, Result};
use rekor_api::limits::{guard_body, BodyGuard};
use rekor_raft::types::{NodeAddress, Raft};
use tracing::{info, warn};

use crate::backend::NodeBackend;
use crate::config::ServeConfig;
use crate::http_listener::{self, ListenerSettings};
use crate::integrator::Integrator;
use crate::internal::InternalState;
use crate::metrics::NodeMetrics;
use crate::publisher::Publisher;
use crate::sequencer::Sequencer;

pub fn run(config: ServeConfig) -> Result<()> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2);
    let system = actix_rt::System::with_tokio_rt(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .thread_name("rekor-worker")
            .build()
            .unwrap_or_else(|error| panic!("cannot build the tokio runtime: {error}"))
    });
    system.block_on(serve(config))
}

async fn serve(config: ServeConfig) -> Result<()> {
    // Ports first: a port in use fails here, before any store is opened or actor started.
    let public_listener = bind_listener(config.listen)
        .with_context(|| format!("binding the public listener {}", config.listen))?;
    let internal_listener = bind_listener(config.listen_internal)
        .with_context(|| format!("binding the internal listener {}", config.listen_internal))?;
    let metrics_listener = config
        .metrics_listen
        .map(|address| {
            bind_listener(address)
                .with_context(|| format!("binding the metrics listener {address}"))
        })
        .transpose()?;
    let grpc_listener = config
        .grpc_listen
        .map(|address| {
            bind_listener(address).with_context(|| format!("binding the gRPC listener {address}"))
        })
        .transpose()?;
    let read_listener = config
        .read_listen
        .map(|address| {
            bind_listener(address).with_context(|| format!("binding the read listener {address}"))
        })
        .transpose()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let secret = rekor_raft::ClusterSecret::new(crate::secrets::load_cluster_secret(
        &config.cluster_secret,
    )?);
    let signer = crate::keys::load_or_generate(&config).await?;
    info!(
        node_id = config.node_id,
        origin = %config.origin,
        key_name = signer.name(),
        signer = %signer.describe(),
        log_id = %base64_std(&signer.log_id()),
        public_key = %base64_std(signer.public_key_der()),
        "checkpoint signer ready"
    );
    if config.signing_key_is_default {
        crate::keys::warn_development_key(Path::new(&config.signing_key.to_string()));
    }

    let store = Arc::new(
        rekor_storage::tile_store::TileStore::from_url(&config.tile_store, &Default::default())
            .with_context(|| format!("opening tile store {}", config.tile_store))?
            .with_cache_capacity(usize::try_from(config.tile_cache_bytes).unwrap_or(usize::MAX)),
    );
    if config.shared_tile_store {
        info!(
            tile_store = %config.tile_store,
            "shared tile store: every node of the cluster must use this same store with \
             --shared-tile-store; only the leader writes to it, followers serve what it wrote"
        );
    } else {
        info!(tile_store = %config.tile_store, "per-node tile store: this node writes its own");
    }
    // Create-once is what keeps two different tiles from ever sharing a path: refuse a backend
    // that silently overwrites instead. The probe's object has a random name, so nodes sharing
    // one store can probe it at the same time.
    store
        .probe_create_once()
        .await
        .with_context(|| format!("checking tile store {}", config.tile_store))?;

    let mut engine_config = rekor_raft::EngineConfig::new(config.data_dir.join("raft"));
    engine_config.cache_capacity = config.cache_bytes;
    let engine =
        rekor_raft::SledEngine::open(&engine_config).context("opening the Raft database (sled)")?;
    let (log_store, state_machine_store) = rekor_raft::open_stores(&engine, &config.data_dir)?;
    let log_size = log_store.size_probe();
    let registry = prometheus::Registry::new();
    let tls = crate::tls::NodeTls::load(
        config.public_tls.as_ref(),
        config.internal_tls.as_ref(),
        &registry,
    )?;
    warn_if_internal_traffic_is_plain(&config);
    warn_if_peers_outlast_keep_alive(&config);
    // Raft, forwarding and catch-up share one client per peer (and its TLS sessions).
    let peers = Arc::new(match &tls.internal {
        Some(internal) => {
            internal.peer_clients(config.node_id, secret.clone(), config.peer_source_address)
        }
        None => rekor_raft::PeerClients::plain(
            config.node_id,
            secret.clone(),
            rekor_raft::PEER_CONNECT_TIMEOUT,
            config.peer_source_address,
        )?,
    });
    // Snapshots carry only the small state; installing one pulls the bodies below it from peers.
    let snapshot_peers = crate::catch_up::SnapshotPeers::new(config.node_id, peers.clone())?;
    let state_machine_store = state_machine_store.with_backfill(snapshot_peers.clone());
    let state_machine = state_machine_store.reader();
    let network = rekor_raft::HttpNetwork::new(
        rekor_raft::NetworkConfig::new(config.node_id),
        peers.clone(),
    );
    let mut tuning = config.raft_timing.apply(rekor_raft::RaftTuning::default());
    if let Some(every) = config.raft_snapshot_every {
        tuning.snapshot_logs_since_last = every;
        tuning.max_in_snapshot_log_to_keep = (every / 4).max(1);
    }
    let raft_config = Arc::new(rekor_raft::build_config(&tuning)?);
    let raft: Raft = openraft::Raft::new(
        config.node_id,
        raft_config,
        network,
        log_store,
        state_machine_store,
    )
    .await
    .context("starting Raft")?;
    snapshot_peers.set_raft(raft.clone());

    let self_address = NodeAddress {
        internal_addr: config.advertise_internal.clone(),
        public_addr: config.advertise.clone(),
    };
    if !raft.is_initialized().await? {
        if config.bootstrap_single {
            refuse_new_tree_over_an_old_one(&store, &config).await?;
            info!("no cluster yet: forming a single-node cluster (pass --bootstrap-single=false for nodes that will join one)");
            raft.initialize(BTreeMap::from([(config.node_id, self_address.clone())]))
                .await
                .context("initialising the single-node cluster")?;
        } else {
            info!("not initialised: waiting for `rekor-node init` or to be added to a cluster (pass --bootstrap-single to form a new one-node log)");
        }
    }

    let metrics = NodeMetrics::register(&registry)?;
    crate::metrics::register_build_info(&registry)?;
    let signer = Arc::new(signer.with_metrics(rekor_signer::SignerMetrics::register(&registry)?));
    crate::metrics::register_signing_key_info(
        &registry,
        &base64_std(&signer.log_id()),
        config.signing_key_is_default,
    )?;
    let publication_halt = crate::witness::PublicationHalt::register(&registry)?;
    snapshot_peers.register(&registry)?;

    let store_mode = crate::integrator::StoreMode::from_flag(config.shared_tile_store);
    metrics
        .shared_tile_store
        .set(i64::from(config.shared_tile_store));
    let integrator_peers = crate::catch_up::Peers::new(config.node_id, raft.clone(), peers.clone());
    let (integrator, served) = Integrator::resume(
        state_machine.clone(),
        store.clone(),
        metrics.clone(),
        integrator_peers.clone(),
        store_mode,
    )
    .await?;
    tokio::spawn(crate::integrator::write_checkpoint_file(
        store.clone(),
        served.clone(),
        metrics.clone(),
        store_mode,
        integrator_peers,
    ));
    let integrator_arbiter = Arbiter::new();
    let integrator = Integrator::start_in_arbiter(&integrator_arbiter.handle(), |_| integrator);

    let pushback = crate::pushback::Pushback::new(
        config.pushback_max_outstanding,
        state_machine.clone(),
        served.clone(),
    );
    let stepping_down = crate::handover::SteppingDown::default();
    let sequencer = Sequencer::new(
        raft.clone(),
        crate::sequencer::BatchLimits {
            max_entries: config.batch_max_size,
            max_bytes: config.batch_max_bytes,
            max_age: config.batch_max_age,
        },
        metrics.clone(),
    )
    .with_stepping_down(stepping_down.clone())
    .start();
    let publisher = Publisher::new(
        config.node_id,
        raft.clone(),
        state_machine.clone(),
        config.origin.clone(),
        signer.clone(),
        served.clone(),
        config.checkpoint_interval,
        config.republish_interval,
        metrics.clone(),
    )
    .with_witnessing(witnessing(
        &config,
        crate::partials::LocalTiles::new(store.clone(), served.clone()),
        &registry,
        publication_halt.clone(),
        committed_leaves(raft.clone(), state_machine.clone()),
    )?)
    .with_stepping_down(stepping_down.clone())
    .with_shared_tile_store(config.shared_tile_store)
    .start();

    tokio::spawn(exit_when_raft_fails(raft.clone()));
    tokio::spawn(crate::metrics::sample_raft(
        raft.clone(),
        engine.clone(),
        log_size,
        state_machine.clone(),
        metrics.clone(),
    ));

    let leader_contact = rekor_raft::LeaderContact::default();
    let backend = Arc::new(NodeBackend {
        node_id: config.node_id,
        raft: raft.clone(),
        state_machine: state_machine.clone(),
        store: store.clone(),
        served: served.clone(),
        coverage: crate::served::CoverageWaiters::spawn(served.clone()),
        sequencer: sequencer.clone(),
        pushback: pushback.clone(),
        forwarder: crate::forwarder::Forwarder::start(crate::forwarder::ForwardClient {
            peers: peers.clone(),
            timeout: config.submit_timeout,
            metrics: metrics.clone(),
        }),
        submit_timeout: config.submit_timeout,
        read_only: config.read_only,
        metrics: metrics.clone(),
        hashed_tiles: Arc::new(rekor_storage::proof::HashedTileCache::new(
            crate::backend::HASHED_TILE_CACHE_TILES,
        )),
        readiness: crate::readiness::ReadinessProbe::new(
            config.node_id,
            raft.clone(),
            leader_contact.clone(),
            store.clone(),
            std::time::Duration::from_millis(config.raft_timing.election_timeout_max_ms),
        ),
    });
    if let Some(listener) = read_listener {
        if store.local_file("tile/0/000").is_none() {
            info!(
                tile_store = %config.tile_store,
                "read listener: the tile store is not a local directory, so it reads objects \
                 through the store like the public listener instead of sending their files"
            );
        }
        crate::read_listener::start(
            listener,
            backend.clone(),
            config.public_limits,
            crate::read_listener::ReadListenerMetrics::register(&registry)?,
        )?;
    }
    let instance = rekor_api::Instance {
        node_id: config.node_id,
        start_token: start_token(),
    };
    let start_token = instance.start_token.clone();
    let api_config = rekor_api::ApiConfig {
        log_id: signer.log_id(),
        read_only: config.read_only,
        enable_dsse: config.enable_dsse,
        entry_lookup: config.enable_entry_lookup,
        metrics_route: config.metrics_listen.is_none(),
        algorithms: config.client_signing_algorithms.clone(),
        max_request_body_size: config.max_request_body_size,
        instance: Some(instance),
        log_requests: config.log_requests,
        ..rekor_api::ApiConfig::default()
    };
    let api_state = rekor_api::ApiState::new(api_config, backend.clone(), &registry)?;
    let api_state = api_state.clone();
    let status_page = crate::status_page::StatusPage::start(
        config.node_id,
        &crate::status_page::LogIdentity {
            origin: config.origin.clone(),
            log_id: signer.log_id(),
            development_key: config.signing_key_is_default,
        },
        config.read_only,
        store_mode,
        raft.clone(),
        served.clone(),
        state_machine.clone(),
        publication_halt,
    );
    // actix-web's own default, made explicit: its connection cap is per worker.
    let http_workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let body_metrics = rekor_api::limits::BodyMetrics::register(&registry)?;
    let public_bodies =
        BodyGuard::new("public", &config.public_limits).with_metrics(body_metrics.clone());
    let tls_metrics = tls.metrics.clone();
    let public_tls = tls.public.clone();
    let internal_tls = match &tls.internal {
        Some(internal) => Some(internal.server_config()?),
        None => None,
    };
    let refusals = tls_metrics.requests_refused.clone();
    let internal_auth = if internal_tls.is_some() {
        rekor_raft::InternalAuth::with_certificates(secret.clone())
    } else {
        rekor_raft::InternalAuth::secret_only(secret.clone())
    }
    .counting_refusals(Arc::new(move |refusal: rekor_raft::Refusal| {
        refusals.with_label_values(&[refusal.label()]).inc();
    }));
    let grpc = match grpc_listener {
        Some(listener) => Some(start_grpc(
            &config,
            listener,
            api_state.clone(),
            public_tls.clone(),
            &registry,
        )?),
        None => None,
    };
    tls.start_reloading(config.tls_reload_interval)?;
    let deadline_metrics = rekor_api::deadlines::DeadlineMetrics::register(&registry)?;
    let public_settings = ListenerSettings {
        name: "public",
        limits: config.public_limits,
        workers: http_workers,
        max_connections_per_worker: config
            .public_limits
            .max_connections_per_worker(http_workers),
        shutdown_timeout_s: 10,
        tls: public_tls,
        on_connect: Some(Arc::new(crate::tls::on_connect(
            "public",
            tls_metrics.clone(),
            false,
        ))),
        metrics: Some(deadline_metrics.clone()),
    };
    // The status page first: the API's catch-all scope answers every path it sees.
    let public = http_listener::serve(public_listener, public_settings, move || {
        let bodies = public_bodies.clone();
        App::new()
            .wrap(from_fn(move |request, next| {
                guard_body(bodies.clone(), request, next)
            }))
            .configure(|cfg| status_page.configure(cfg))
            .configure(|cfg| api_state.configure(cfg))
    })
    .with_context(|| format!("serving the public listener {}", config.listen))?;

    let internal_state = web::Data::new(InternalState {
        node_id: config.node_id,
        raft: raft.clone(),
        sequencer,
        publisher,
        served,
        state_machine,
        pushback,
        legacy_dsse: config.enable_dsse,
        membership_lock: tokio::sync::Mutex::new(()),
        backend: backend.clone(),
    });
    let raft_server_config = rekor_raft::RaftServerConfig {
        leader_contact,
        ..rekor_raft::RaftServerConfig::with_auth(config.node_id, internal_auth.clone())
    };
    let raft_for_rpc = raft.clone();
    let internal_bodies =
        BodyGuard::new("internal", &config.internal_limits).with_metrics(body_metrics);
    let internal_settings = ListenerSettings {
        name: "internal",
        limits: config.internal_limits,
        workers: http_workers,
        max_connections_per_worker: config
            .internal_limits
            .max_connections_per_worker(http_workers),
        shutdown_timeout_s: 5,
        tls: internal_tls,
        on_connect: Some(Arc::new(crate::tls::on_connect(
            "internal",
            tls_metrics,
            true,
        ))),
        metrics: Some(deadline_metrics.clone()),
    };
    let internal = http_listener::serve(internal_listener, internal_settings, move || {
        let bodies = internal_bodies.clone();
        // Every scope authenticates its caller before any body byte is read.
        App::new()
            .wrap(from_fn(move |request, next| {
                guard_body(bodies.clone(), request, next)
            }))
            .app_data(internal_state.clone())
            .service(rekor_raft::raft_scope(
                raft_for_rpc.clone(),
                raft_server_config.clone(),
            ))
            .configure(crate::internal::configure(internal_auth.clone()))
    })
    .with_context(|| format!("serving the internal listener {}", config.listen_internal))?;

    let internal_handle = internal.handle();
    let mut handles = vec![public.handle()];
    if let Some(listener) = metrics_listener {
        // One worker, GET /metrics only; it stops on SIGINT/SIGTERM like the others.
        let registry = registry.clone();
        let metrics_settings = ListenerSettings {
            name: "metrics",
            limits: config.public_limits,
            workers: 1,
            max_connections_per_worker: 64,
            shutdown_timeout_s: 1,
            tls: None,
            on_connect: None,
            metrics: Some(deadline_metrics),
        };
        let metrics_server = http_listener::serve(listener, metrics_settings, move || {
            let registry = registry.clone();
            App::new()
                .wrap(from_fn(rekor_api::deadlines::busy_while_handled))
                .route(
                    "/metrics",
                    web::get().to(move || {
                        let registry = registry.clone();
                        async move { rekor_api::metrics_response(&registry) }
                    }),
                )
        })
        .context("serving the metrics listener")?;
        handles.push(metrics_server.handle());
        actix_rt::spawn(metrics_server);
    }
    info!(
        metrics = ?config.metrics_listen,
        grpc = ?config.grpc_listen,
        read = ?config.read_listen,
        public = %config.listen,
        public_tls = config.public_tls.is_some(),
        internal = %config.listen_internal,
        internal_mtls = config.internal_tls.is_some(),
        data_dir = %config.data_dir.display(),
        start_token,
        malloc_arena_max = std::env::var(crate::malloc_arenas::VARIABLE).as_deref().unwrap_or("glibc default"),
        "rekor-node serving"
    );
    // On SIGINT/SIGTERM a leader first hands its leadership over (every listener still up, so
    // the successor's vote request reaches it), then the servers drain and stop.
    actix_rt::spawn(stop_on_signal(
        config.node_id,
        raft.clone(),
        peers.clone(),
        stepping_down,
        (internal_handle, handles, grpc),
    ));
    let (public_result, internal_result) = futures::join!(public, internal);
    // The right edge held in memory, made durable: a planned restart resumes where it stopped.
    let persisted = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        integrator.send(crate::integrator::PersistRightEdge::Now),
    )
    .await;
    if !matches!(persisted, Ok(Ok(()))) {
        warn!("the integrator did not persist its right edge in time; it resumes from an earlier size");
    }
    info!("listeners stopped; shutting Raft down");
    if let Err(error) = raft.shutdown().await {
        warn!(%error, "raft shutdown");
    }
    integrator_arbiter.stop();
    drop(engine);
    public_result?;
    internal_result?;
    info!("stopped");
    Ok(())
}

/// Waits for SIGINT or SIGTERM, hands leadership over if this node leads, then stops the
/// listeners gracefully (in-flight requests finish within each server's shutdown timeout).
async fn stop_on_signal(
    node_id: u64,
    raft: rekor_raft::Raft,
    peers: Arc<rekor_raft::PeerClients>,
    stepping_down: crate::handover::SteppingDown,
    servers: (
        actix_web::dev::ServerHandle,
        Vec<actix_web::dev::ServerHandle>,
        Option<RunningGrpc>,
    ),
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install the SIGTERM/SIGINT handlers; stop the node with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    info!(signal = name, "stopping");
    match crate::handover::hand_over(node_id, &raft, &peers, &stepping_down).await {
        crate::handover::Handover::Done { to, took } => info!(
            to,
            took_ms = took.as_millis() as u64,
            "leadership handed over"
        ),
        crate::handover::Handover::Failed(reason) => warn!(
            %reason,
            "leadership hand-over failed: the cluster fails over after the leader lease"
        ),
        crate::handover::Handover::NotLeader | crate::handover::Handover::Alone => {}
    }
    // The public listeners (HTTP and gRPC) first: their requests in flight wait for checkpoints
    // this node replicates, so the internal listener keeps taking the new leader's
    // AppendEntries until they are answered.
    let (internal, public, grpc) = servers;
    let grpc_stopped = async {
        if let Some(grpc) = grpc {
            grpc.stop().await;
        }
    };
    futures::join!(
        futures::future::join_all(public.iter().map(|server| server.stop(true))),
        grpc_stopped
    );
    internal.stop(true).await;
}

/// Longer than the submit timeout, so that a slow submission answers with the backend's own
/// error before the gRPC deadline cuts it off.
const GRPC_DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The gRPC listener while it serves.
struct RunningGrpc {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), rekor_grpc::server::GrpcError>>,
}

impl RunningGrpc {
    /// Stops accepting, lets in-flight RPCs finish (up to the shutdown grace), and reports an
    /// error the server stopped on.
    async fn stop(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(std::time::Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => warn!(%error, "the gRPC listener stopped on an error"),
            Ok(Err(error)) => warn!(%error, "the gRPC listener task failed"),
            Err(_) => warn!("the gRPC listener did not stop within 10 s"),
        }
    }
}

/// Serves gRPC on `listener` over the HTTP API's state: the same submission path, body cap,
/// connection cap and TLS material (and reloading) as the public listener.
fn start_grpc(
    config: &ServeConfig,
    listener: std::net::TcpListener,
    api_state: rekor_api::ApiState,
    tls: Option<rustls::ServerConfig>,
    registry: &prometheus::Registry,
) -> Result<RunningGrpc> {
    let limits = rekor_grpc::GrpcLimits::like_http(
        &config.public_limits,
        config.max_request_body_size,
        config.submit_timeout + GRPC_DEADLINE_MARGIN,
    );
    let mut server = rekor_grpc::GrpcServer::new(api_state, limits, registry)?;
    if let Some(tls) = tls {
        server = server.with_tls(tls);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let address = config.grpc_listen;
    let task = tokio::spawn(async move {
        let result = server
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = &result {
            tracing::error!(%error, ?address, "the gRPC listener stopped");
        }
        result
    });
    Ok(RunningGrpc { stop, task })
}

/// Node-to-node traffic in clear text carries the cluster secret and every entry: fine on
/// loopback, a risk anywhere else.
fn warn_if_internal_traffic_is_plain(config: &ServeConfig) {
    if config.internal_tls.is_none() && !config.listen_internal.ip().is_loopback() {
        warn!(
            listen_internal = %config.listen_internal,
            "the internal listener is not on loopback and runs without TLS: the cluster secret, \
             Raft traffic and forwarded entries cross the network in clear text. Give it \
             --internal-tls-ca-file, --internal-tls-cert-file and --internal-tls-key-file \
             (`rekor-node certs` makes a development CA); see docs/operations.md, \
             \"Transport security\""
        );
    }
}

/// Peers keep idle connections to this node for `PEER_POOL_IDLE_TIMEOUT`; a keep-alive no longer
/// than that lets this node close a connection a peer is about to reuse (a failed RPC).
fn warn_if_peers_outlast_keep_alive(config: &ServeConfig) {
    let keep_alive = config.internal_limits.keep_alive;
    if keep_alive <= rekor_raft::PEER_POOL_IDLE_TIMEOUT {
        warn!(
            keep_alive_s = keep_alive.as_secs(),
            peer_idle_s = rekor_raft::PEER_POOL_IDLE_TIMEOUT.as_secs(),
            "--keep-alive-s is not above the time peers keep an idle connection to this node: \
             this node may close a connection just as a peer reuses it, and that RPC fails. \
             Keep it above the peers' idle time (docs/operations.md, \"Facing hostile clients \
             and peers\")"
        );
    }
}

/// A node about to form a new one-node cluster must not start a second tree where one exists:
/// a tile store that holds a checkpoint belongs to a log already (its data directory was
/// probably wiped or lost). Restore the data directory, or join the node to its cluster.
async fn refuse_new_tree_over_an_old_one(
    store: &rekor_storage::tile_store::TileStore,
    config: &ServeConfig,
) -> Result<()> {
    let existing = store
        .get_checkpoint()
        .await
        .context("reading the tile store's checkpoint before bootstrapping")?;
    if let Some(checkpoint) = existing {
        let first = String::from_utf8_lossy(&checkpoint)
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join(" at size ");
        anyhow::bail!(
            "refusing to form a new one-node log: this node has no Raft state, but its tile \
             store {} already holds a checkpoint ({first}). Starting a new tree there would sign \
             a second history under the log's key. Restore the data directory {}, or start the \
             node with --bootstrap-single=false and add it to its cluster (`rekor-node node add`)",
            config.tile_store,
            config.data_dir.display()
        );
    }
    Ok(())
}

/// Exits the process when openraft stops on an error of its own (a storage error such as a full
/// disk: openraft treats every log or state-machine IO error as fatal, and its core does not
/// restart). Left running, the node would be a zombie: it keeps its listeners and its last view of
/// the leader, every write waits out the submit timeout, and freeing the disk does not bring Raft
/// back. Exiting lets its peers elect a new leader at once and a supervisor restart it; on restart
/// it rejoins from its durable state (nothing was acknowledged without an fsync). A normal
/// shutdown (`Fatal::Stopped`) is not a failure.
async fn exit_when_raft_fails(raft: Raft) {
    use openraft::error::Fatal;
    let mut metrics = raft.metrics();
    loop {
        let failure = match &metrics.borrow().running_state {
            Ok(()) | Err(Fatal::Stopped) => None,
            Err(fatal) => Some((fatal.to_string(), matches!(fatal, Fatal::StorageError(_)))),
        };
        match failure {
            Some((error, true)) => {
                tracing::error!(
                    %error,
                    "Raft stopped on a storage error (is the disk full?); this node cannot take \
                     part in the cluster any more and exits now. Fix the storage and restart it: \
                     it rejoins from its durable state"
                );
                // EX_IOERR: a supervisor sees an IO failure, not a crash.
                std::process::exit(74);
            }
            Some((error, false)) => {
                tracing::error!(%error, "Raft stopped on an internal error; exiting");
                // EX_SOFTWARE.
                std::process::exit(70);
            }
            None => {}
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The witness client, when `--witness-policy` is set.
fn witnessing(
    config: &ServeConfig,
    tiles: crate::partials::LocalTiles,
    registry: &prometheus::Registry,
    halt: crate::witness::PublicationHalt,
    committed: crate::witness::CommittedLeaves,
) -> Result<Option<Arc<crate::witness::Witnessing>>> {
    let Some(path) = &config.witness_policy else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the witness policy {}", path.display()))?;
    let policy = crate::witness::WitnessPolicy::parse(&text)
        .with_context(|| format!("parsing the witness policy {}", path.display()))?;
    policy
        .require_https(config.witness_allow_http)
        .map_err(|refusal| anyhow::anyhow!(refusal))?;
    info!(
        witnesses = policy.witnesses().len(),
        require_quorum = config.require_witness_quorum,
        halt_override = config.witness_halt_override,
        "witness policy loaded"
    );
    let settings = crate::witness::WitnessSettings {
        timeout: config.witness_timeout,
        require_quorum: config.require_witness_quorum,
        halt_override: config.witness_halt_override,
    };
    Ok(Some(Arc::new(crate::witness::Witnessing::new(
        policy, tiles, settings, registry, halt, committed,
    )?)))
}

/// For judging a witness's larger-tree claim: after `ensure_linearizable` (this node leads, and
/// has applied everything committed), the number of applied leaves.
fn committed_leaves(
    raft: rekor_raft::types::Raft,
    state_machine: rekor_raft::StateReader,
) -> crate::witness::CommittedLeaves {
    Arc::new(move || {
        let (raft, state_machine) = (raft.clone(), state_machine.clone());
        Box::pin(async move {
            raft.ensure_linearizable().await.ok()?;
            Some(state_machine.applied().size)
        })
    })
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Connections waiting to be accepted, per listener (as actix-web's own `bind` uses): a burst of
/// new clients is queued, not refused or left to retry their SYN.
const LISTEN_BACKLOG: u32 = 2048;

/// A listening socket on `address` (`SO_REUSEADDR`, so a restart does not wait out TIME_WAIT).
fn bind_listener(address: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)?.into_std()
}

/// Environment variable a harness sets to choose this process's `/healthz` start token.
const START_TOKEN_VARIABLE: &str = "REKOR_INSTANCE_TOKEN";

/// This process's start token: the harness's choice, or 16 random bytes in hex.
fn start_token() -> String {
    use rand_core::RngCore;
    match std::env::var(START_TOKEN_VARIABLE) {
        Ok(token) if !token.is_empty() => token,
        _ => {
            let mut bytes = [0u8; 16];
            rand_core::OsRng.fill_bytes(&mut bytes);
            hex::encode(bytes)
        }
    }
}
