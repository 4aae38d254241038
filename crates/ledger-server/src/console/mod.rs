//! The operator's web console (`--console-listen`): an overview with live charts, account
//! and transaction pages, a search box and a form to submit an operation.
//!
//! Every page reads and writes through the gRPC service itself (in process, the caller's
//! role attached as the token interceptor would), so the console shows exactly what the
//! API answers and enforces the same rules; its own code only renders.
//!
//! - `access`: who is looking (the gRPC tokens, from a cookie or a bearer header), sign
//!   in and out, and the same-origin check on every form post.
//! - `layout`: the page frame, errors, and the formatting of ids, amounts and times.
//! - `overview`, `account`, `transaction`, `search`, `submit`: the pages.
//! - `live`: the overview's figures, sampled once a second, pushed as server-sent events.
//! - `assets`: the stylesheet, the script and the vendored chart library, in the binary.
//! - `tls`: HTTPS with the gRPC port's certificate.

mod access;
mod account;
mod assets;
mod layout;
mod live;
mod overview;
mod search;
mod submit;
mod tls;
mod transaction;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Role, Tokens};
use crate::health::LedgerHealth;
use crate::metrics::ServerMetrics;
use crate::service::LedgerService;

pub(crate) use live::Live;

/// What every page handler shares.
#[derive(Debug)]
pub(crate) struct Console {
    service: LedgerService,
    tokens: Tokens,
    metrics: Arc<ServerMetrics>,
    health: Arc<LedgerHealth>,
    live: Arc<Live>,
    /// Served over TLS: the sign-in cookie is marked `Secure`.
    secure: bool,
}

type Shared = Arc<Console>;

/// A running console: its address, and the task serving it.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

/// What the console serves with.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) service: LedgerService,
    pub(crate) tokens: Tokens,
    pub(crate) metrics: Arc<ServerMetrics>,
    pub(crate) health: Arc<LedgerHealth>,
}

/// The console's socket, bound (and its certificate read) before the ledger starts, so a
/// taken port or a bad certificate fails fast without touching the data.
pub(crate) struct Bound {
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("listener", &self.listener)
            .field("tls", &self.acceptor.is_some())
            .finish()
    }
}

/// Binds `addr` for the console, over TLS when `tls` names a certificate and key.
///
/// # Errors
/// The address cannot be bound, or the certificate or key cannot be read.
pub(crate) async fn bind(addr: SocketAddr, tls: Option<(&Path, &Path)>) -> Result<Bound, String> {
    let acceptor = tls
        .map(|(cert, key)| tls::acceptor(cert, key))
        .transpose()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("console on {addr}: {e}"))?;
    Ok(Bound { listener, acceptor })
}

/// Serves the console on `bound` until the server stops; the live sampler runs as long
/// as the console does.
///
/// # Errors
/// The bound socket has no address.
pub(crate) fn start(bound: Bound, parts: Parts) -> Result<Running, String> {
    let Bound { listener, acceptor } = bound;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let live = Arc::new(Live::default());
    let console = Arc::new(Console {
        service: parts.service,
        tokens: parts.tokens,
        metrics: parts.metrics,
        health: parts.health,
        live: Arc::clone(&live),
        secure: acceptor.is_some(),
    });
    let stopping = console.health.when_stopping();
    let sampler = tokio::spawn(live::sample(
        live,
        console.service.backend().clone(),
        Arc::clone(&console.metrics),
    ));
    let app = router(console);
    let task = tokio::spawn(async move {
        let served = match acceptor {
            Some(acceptor) => {
                axum::serve(tls::Listener::new(listener, acceptor), app)
                    .with_graceful_shutdown(stopping)
                    .await
            }
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopping)
                    .await
            }
        };
        sampler.abort();
        if let Err(error) = served {
            tracing::error!(%error, "console stopped");
        }
    });
    Ok(Running { addr, task })
}

fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(overview::page))
        .route("/accounts/{id}", get(account::page))
        .route("/tx/{id}", get(transaction::page))
        .route("/search", get(search::page))
        .route("/submit", get(submit::form).post(submit::post))
        .route("/login", get(access::login_form).post(access::login))
        .route("/logout", post(access::logout))
        .route("/assets/{name}", get(assets::get))
        .route("/api/live", get(live::events))
        .route("/api/accounts/{id}/balances", get(account::balances))
        .fallback(layout::not_found)
        .layer(axum::middleware::map_response(layout::secure_headers))
        .with_state(console)
}

/// A request to the service as the token interceptor would pass it on: marked with the
/// caller's role.
fn request<T>(role: Role, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(role);
    request
}
