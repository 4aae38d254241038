//! `grpc.health.v1.Health` following the ledger: SERVING while it takes work, NOT_SERVING
//! (for "" and `roda.ledger.v1.Ledger`) once it failed or the server is stopping, so an
//! orchestrator stops routing traffic to a server that can only refuse it.

use std::sync::Arc;
use std::time::Duration;

use ledger_core::ledger::Ledger;
use tokio::sync::Notify;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::pb;

/// How often the watcher looks at the ledger when no request told it to: a failure
/// nobody's request saw (a background write) still shows within this.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The health the server reports, and the signal that makes it look again.
#[derive(Debug)]
pub(crate) struct LedgerHealth {
    reporter: HealthReporter,
    ledger: Arc<Ledger>,
    look: Notify,
}

impl LedgerHealth {
    /// SERVING for the ledger service (and "", the server as a whole).
    pub(crate) async fn new(reporter: HealthReporter, ledger: Arc<Ledger>) -> LedgerHealth {
        reporter
            .set_serving::<pb::ledger_server::LedgerServer<crate::service::LedgerService>>()
            .await;
        LedgerHealth {
            reporter,
            ledger,
            look: Notify::new(),
        }
    }

    /// A request was refused by the ledger (it may have failed): look now, not at the
    /// next interval. Cheap and synchronous: the watcher does the rest.
    pub(crate) fn ledger_refused(&self) {
        self.look.notify_one();
    }

    /// Reports NOT_SERVING once the ledger has failed; returns then.
    pub(crate) async fn watch(&self) {
        loop {
            if let Some(failure) = self.ledger.failure() {
                tracing::error!(%failure, "the ledger failed: health is NOT_SERVING");
                self.not_serving().await;
                return;
            }
            // A notification made while no one waits is kept: none is lost between
            // the check above and this wait.
            let _ = tokio::time::timeout(WATCH_INTERVAL, self.look.notified()).await;
        }
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
