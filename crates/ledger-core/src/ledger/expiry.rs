//! Holds expire through the log: this thread submits an `ExpireHolds` transaction
//! whenever the readers' state shows an open hold past its timeout, so that expiries are
//! recorded (and replayed, and replicated) like every other change, on an idle ledger too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use ledger_pipeline::Producer;

use super::slot::Slot;
use super::visible::Visible;
use super::{fill, now_ns};
use crate::transaction::{Operation, TxId};

/// How often the thread looks for expired holds: an expired hold is released within
/// about this long (posts and voids of it are refused from its expiry on, whatever the
/// thread does).
pub(crate) const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The thread and its stop signal.
pub(crate) struct ExpiryTimer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ExpiryTimer {
    /// Starts the thread, if `enabled`. It submits only while `writable` (a cluster's
    /// followers leave expiries to the leader, whose log they replay).
    pub fn start(
        enabled: bool,
        producer: Producer<Slot>,
        visible: Arc<RwLock<Visible>>,
        writable: Arc<AtomicBool>,
    ) -> std::io::Result<ExpiryTimer> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = enabled
            .then(|| {
                std::thread::Builder::new()
                    .name("ledger-expiry".to_owned())
                    .spawn(move || run(&producer, &visible, &writable, &signal))
            })
            .transpose()?;
        Ok(ExpiryTimer {
            stop,
            thread: Mutex::new(thread),
        })
    }

    /// Stops the thread (idempotent).
    pub fn finish(&self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

fn run(
    producer: &Producer<Slot>,
    visible: &RwLock<Visible>,
    writable: &AtomicBool,
    stop: &(Mutex<bool>, Condvar),
) {
    let (stopped, wake) = stop;
    // The last ExpireHolds submitted: no other until reads show it applied.
    let mut in_flight: Option<TxId> = None;
    loop {
        {
            let guard = stopped.lock().unwrap_or_else(|e| e.into_inner());
            let (guard, _) = wake
                .wait_timeout_while(guard, EXPIRY_CHECK_INTERVAL, |stopped| !*stopped)
                .unwrap_or_else(|e| e.into_inner());
            if *guard {
                return;
            }
        }
        let (applied, next_expiry) = {
            let visible = visible.read().unwrap_or_else(|e| e.into_inner());
            (
                visible.state.last_tx_id(),
                visible.state.holds().next_expiry(),
            )
        };
        if in_flight.is_some_and(|id| id > applied) || !writable.load(Ordering::Acquire) {
            continue;
        }
        let now = now_ns();
        if next_expiry.is_some_and(|at| at <= now) {
            // A full ring or a stopped pipeline: try again next time.
            in_flight = producer
                .try_publish(|_, slot| fill(slot, Operation::ExpireHolds, now))
                .ok();
        }
    }
}
