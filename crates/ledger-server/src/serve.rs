//! Starting, serving and stopping: recover the ledger, serve gRPC (with health and
//! reflection) until SIGINT/SIGTERM, finish in-flight requests, make everything durable.

use std::sync::Arc;

use ledger_core::cluster::{ClusterConfig, ClusterNode, SharedRules};
use ledger_core::ledger::Ledger;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::auth::Tokens;
use crate::backend::Backend;
use crate::cdc::{self, CdcProgress};
use crate::cluster::{GrpcNetwork, RaftService};
use crate::console;
use crate::health::LedgerHealth;
use crate::metrics::{self, ServerMetrics};
use crate::pb;
use crate::service::LedgerService;
use crate::settings::Settings;

/// Runs the server until a shutdown signal; returns once the ledger is stopped cleanly.
///
/// # Errors
/// A message for anything that stops the server from starting or stopping cleanly.
pub async fn run(settings: Settings) -> Result<(), String> {
    // Bound before the ledger starts: a taken port fails fast, without touching the data.
    // Connections made during recovery wait in the backlog.
    let listen = settings.listen();
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listen on {listen}: {e}"))?;
    serve(listener, settings, shutdown_signal()).await
}

/// Serves on `listener` (already bound: `settings.listen()` is not used) until `shutdown`
/// resolves, then finishes in-flight requests and stops the ledger durably. Embedders
/// and tests bind port 0 themselves and know the port before the ledger starts.
///
/// # Errors
/// A message for anything that stops the server from starting or stopping cleanly.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), String> {
    let tokens = match &settings.token_file {
        Some(path) => Tokens::load(path)?,
        None => Tokens::open(),
    };
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => {
            let read =
                |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
            Some(ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?)))
        }
        _ => None,
    };
    let listen = listener
        .local_addr()
        .map_err(|e| format!("listening socket: {e}"))?;
    if !listen.ip().is_loopback() && (tls.is_none() || tokens.is_open()) {
        tracing::warn!(
            %listen,
            tls = tls.is_some(),
            auth = !tokens.is_open(),
            "listening on a non-loopback address without TLS and tokens: anyone who can reach it can move money"
        );
    }

    // Every other socket too, before the ledger starts.
    let metrics_listener = match settings.metrics_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("metrics on {addr}: {e}"))?,
        ),
        None => None,
    };
    let console_tls = settings
        .tls_cert
        .as_deref()
        .zip(settings.tls_key.as_deref());
    let console_bound = match settings.console_listen {
        Some(addr) => Some(console::bind(addr, console_tls).await?),
        None => None,
    };

    let bound = listen;
    let config = settings.ledger_config();
    let rules = Arc::new(SharedRules::of(&config));
    let backend = match settings.cluster()? {
        None => Backend::Single(start_single(&config)?),
        Some(cluster) => {
            let mut network =
                GrpcNetwork::new(tokens.peer_token(), &rules, RAFT_MESSAGE_BYTES_MAX, listen)?;
            if let Some(cert) = &settings.tls_cert {
                // Peers are dialled over TLS too, trusting the given CA (or this node's
                // own certificate: nodes sharing one certificate or one CA's).
                let ca = settings.peer_tls_ca.as_ref().unwrap_or(cert);
                let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
                network = network.with_tls(pem);
            }
            tracing::info!(node_id = cluster.node_id, peers = ?cluster.peers, "starting as a cluster node");
            let mut cluster_config = ClusterConfig::new(cluster.node_id, cluster.peers);
            cluster_config.join = cluster.join;
            if let Some(every) = cluster.snapshot_every_entries {
                cluster_config.snapshot_every_entries = every;
            }
            if let Some(keep) = cluster.keep_entries_after_snapshot {
                cluster_config.keep_entries_after_snapshot = keep;
            }
            let node = ClusterNode::start(
                config.clone(),
                ledger_core::storage::real(),
                cluster_config,
                network,
            )
            .await
            .map_err(|e| format!("start: {e}"))?;
            Backend::Cluster(node)
        }
    };
    // The change-stream sink, beside the service, on the same engine.
    let (server_metrics, cdc_task) = match settings.cdc() {
        Some(cdc) => {
            let progress = Arc::new(CdcProgress::default());
            tracing::info!(url = %cdc.url, stream = %cdc.stream, subject = %cdc.subject, "change stream sink into NATS JetStream");
            let task = tokio::spawn(cdc::run(backend.clone(), cdc, Arc::clone(&progress)));
            (Arc::new(ServerMetrics::with_cdc(progress)), Some(task))
        }
        None => (Arc::new(ServerMetrics::default()), None),
    };

    let metrics_task = match metrics_listener {
        Some(l) => {
            let addr = l.local_addr().map_err(|e| e.to_string())?;
            println!("metrics on http://{addr}/metrics");
            Some(tokio::spawn(metrics::serve(
                l,
                backend.clone(),
                Arc::clone(&server_metrics),
            )))
        }
        None => None,
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let health = Arc::new(LedgerHealth::new(health_reporter, backend.clone()).await);
    // Stopping: the drain and the final sync take a moment, and nothing new should be
    // routed here meanwhile.
    let shutdown = {
        let health = Arc::clone(&health);
        async move {
            shutdown.await;
            health.stopping().await;
        }
    };
    // Both reflection versions: grpcurl and other tools ask for either.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| format!("reflection: {e}"))?;
    let service = LedgerService::new(
        backend.clone(),
        config.max_accounts,
        Arc::clone(&server_metrics),
        Arc::clone(&health),
    );
    let console = match console_bound {
        Some(bound) => Some(start_console(
            bound,
            console_tls.is_some(),
            &service,
            &tokens,
            &server_metrics,
            &health,
        )?),
        None => None,
    };
    let max_message = settings.max_message_bytes();
    // Node-to-node traffic, on this same port, behind the same tokens.
    let raft_api = backend.node().map(|node| {
        let tokens = tokens.clone();
        tonic::service::interceptor::InterceptedService::new(
            pb::cluster::raft_server::RaftServer::new(RaftService {
                node: Arc::clone(node),
                needed: tokens.peer_role(),
                rules: Arc::clone(&rules),
                refused: Arc::default(),
            })
            .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX),
            move |r| tokens.check(r),
        )
    });
    let ledger_api = tonic::service::interceptor::InterceptedService::new(
        pb::ledger_server::LedgerServer::new(service).max_decoding_message_size(max_message),
        move |r| tokens.check(r),
    );

    // Bounded work per connection: at most this many requests (HTTP/2 streams) at once.
    let mut builder = Server::builder().max_concurrent_streams(Some(1024));
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| format!("TLS configuration: {e}"))?;
    }
    let health_task = tokio::spawn({
        let health = Arc::clone(&health);
        async move { health.watch().await }
    });
    // Tests and scripts read this line to find the port.
    println!("listening on {bound}");
    tracing::info!(%bound, "serving roda.ledger.v1.Ledger");
    let served = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ledger_api)
        .add_optional_service(raft_api)
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await;
    if let Some(task) = metrics_task {
        task.abort();
    }
    health_task.abort();
    if let Some(mut console) = console {
        // Its graceful stop began with the server's; a client that holds on is cut off.
        if tokio::time::timeout(CONSOLE_STOP_WAIT, &mut console.task)
            .await
            .is_err()
        {
            console.task.abort();
        }
    }
    if let Some(task) = cdc_task {
        // Whatever it had not published yet, the next start publishes.
        task.abort();
    }
    // In-flight requests are done; make everything durable and stop.
    let stopped = match &backend {
        Backend::Single(ledger) => tokio::task::block_in_place(|| ledger.stop()),
        Backend::Cluster(node) => {
            node.shutdown().await;
            Ok(())
        }
    };
    served.map_err(|e| format!("serve: {e}"))?;
    stopped.map_err(|e| format!("stop: {e}"))?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The largest Raft message between nodes: an entry holds up to a ring of transactions
/// (about 1.7 MB of transfers at the default ring), and openraft sends at most 32 entries
/// per AppendEntries (`ClusterConfig`); clients keep `--max-message-bytes`.
const RAFT_MESSAGE_BYTES_MAX: usize = 256 << 20;

/// How long a stopping server waits for the console's open connections.
const CONSOLE_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts the web console on its bound socket (`tls`: it serves HTTPS).
fn start_console(
    bound: console::Bound,
    tls: bool,
    service: &LedgerService,
    tokens: &Tokens,
    metrics: &Arc<ServerMetrics>,
    health: &Arc<LedgerHealth>,
) -> Result<console::Running, String> {
    let parts = console::Parts {
        service: service.clone(),
        tokens: tokens.clone(),
        metrics: Arc::clone(metrics),
        health: Arc::clone(health),
    };
    let running = console::start(bound, parts)?;
    let scheme = if tls { "https" } else { "http" };
    // Tests and scripts read this line to find the console.
    println!("console on {scheme}://{}/", running.addr);
    if !running.addr.ip().is_loopback() && (!tls || tokens.is_open()) {
        tracing::warn!(addr = %running.addr, "the console listens on a non-loopback address without TLS and tokens");
    }
    Ok(running)
}

/// Recovers the single-node ledger in the configured directory.
fn start_single(config: &ledger_core::ledger::LedgerConfig) -> Result<Arc<Ledger>, String> {
    let mut ledger = Ledger::new(config.clone());
    tokio::task::block_in_place(|| ledger.start()).map_err(|e| format!("start: {e}"))?;
    if let Some(report) = ledger.recovery_report() {
        tracing::info!(
            data_dir = %config.data_dir.display(),
            last_tx_id = report.last_tx_id,
            replayed = report.replayed,
            "ledger recovered"
        );
    }
    Ok(Arc::new(ledger))
}

/// Accepted connections with Nagle's algorithm off: small responses (a unary commit
/// acknowledgement) must not wait for the peer's delayed ACK (~40 ms).
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal: finishing in-flight requests");
}

/// `--probe`: asks the health service at `settings.listen()` whether the ledger serves.
///
/// # Errors
/// Not serving, unreachable, or no answer within 3 s.
pub async fn probe(settings: &Settings) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut addr = settings.listen();
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let scheme = if settings.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let check = async {
        let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| e.to_string())?;
        if let Some(cert) = &settings.tls_cert {
            // Trust the server's own certificate (self-signed, or its issuing CA first).
            let pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
            endpoint = endpoint
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(pem))
                        .domain_name("localhost"),
                )
                .map_err(|e| format!("TLS: {e}"))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let response = client
            .check(tonic_health::pb::HealthCheckRequest {
                service: "roda.ledger.v1.Ledger".into(),
            })
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        match response.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(format!("{addr}: {other:?}")),
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), check)
        .await
        .map_err(|_| format!("{addr}: no answer within 3 s"))?
}
