//! `grpc.health.v1.Health` following the ledger: SERVING while it takes work, NOT_SERVING
//! (for "" and `roda.ledger.v1.Ledger`) once it failed or the server is stopping, so an
//! orchestrator stops routing traffic to a server that can only refuse it.

use std::time::Duration;

use ledger_core::cluster::Role;
use tokio::sync::{Notify, watch};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::backend::Backend;
use crate::pb;

/// How often the watcher looks at the ledger when no request told it to: a failure
/// nobody's request saw (a background write) still shows within this.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The health the server reports, and the signal that makes it look again.
#[derive(Debug)]
pub(crate) struct LedgerHealth {
    reporter: HealthReporter,
    backend: Backend,
    look: Notify,
    /// Turns true once at shutdown; long-lived streams end on it.
    stopping: watch::Sender<bool>,
}

impl LedgerHealth {
    /// SERVING for the ledger service (and "", the server as a whole).
    pub(crate) async fn new(reporter: HealthReporter, backend: Backend) -> LedgerHealth {
        reporter
            .set_serving::<pb::ledger_server::LedgerServer<crate::service::LedgerService>>()
            .await;
        LedgerHealth {
            reporter,
            backend,
            look: Notify::new(),
            stopping: watch::Sender::new(false),
        }
    }

    /// A request was refused by the ledger (it may have failed): look now, not at the
    /// next interval. Cheap and synchronous: the watcher does the rest.
    pub(crate) fn ledger_refused(&self) {
        self.look.notify_one();
    }

    /// Reports NOT_SERVING once the ledger has failed; returns then. A cluster node
    /// follows its state both ways: NOT_SERVING while it restarts after a lost
    /// leadership or its replicated log has stopped, SERVING again once it is back.
    pub(crate) async fn watch(&self) {
        let mut serving = true;
        loop {
            if *self.stopping.borrow() {
                return;
            }
            match &self.backend {
                Backend::Single(ledger) => {
                    if let Some(failure) = ledger.failure() {
                        tracing::error!(%failure, "the ledger failed: health is NOT_SERVING");
                        self.not_serving().await;
                        return;
                    }
                }
                Backend::Cluster(node) => {
                    let status = node.status();
                    let now = status.role != Role::Down && status.failure.is_none();
                    if now != serving {
                        serving = now;
                        if now {
                            self.serving().await;
                        } else {
                            tracing::warn!(failure = ?status.failure, "the node cannot serve: health is NOT_SERVING");
                            self.not_serving().await;
                        }
                    }
                }
            }
            // A notification made while no one waits is kept: none is lost between
            // the check above and this wait.
            let _ = tokio::time::timeout(WATCH_INTERVAL, self.look.notified()).await;
        }
    }

    /// NOT_SERVING for good: the server is stopping.
    pub(crate) async fn stopping(&self) {
        self.stopping.send_replace(true);
        self.not_serving().await;
    }

    /// Resolves once the server is stopping: a stream that would otherwise never end
    /// (a change-stream subscriber) ends on it, so the graceful stop does not wait for
    /// its client to leave.
    pub(crate) fn when_stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.subscribe();
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        }
    }

    /// SERVING for "" and the ledger service.
    async fn serving(&self) {
        self.reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
        self.reporter
            .set_serving::<pb::ledger_server::LedgerServer<crate::service::LedgerService>>()
            .await;
    }

    /// NOT_SERVING for "" and the ledger service.
    pub(crate) async fn not_serving(&self) {
        self.reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        self.reporter
            .set_not_serving::<pb::ledger_server::LedgerServer<crate::service::LedgerService>>()
            .await;
    }
}
