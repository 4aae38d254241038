//! Snapshots: the background thread that writes them (the payload is in `saved`).
//!
//! The snapshot stage copies its state (balances, dedup window, last id and time) at a
//! batch boundary, which is a consistent point, and hands the copy to this thread; the
//! pipeline keeps committing while the copy is written. At most one copy is in flight: a
//! snapshot that comes due while the previous one is still being written waits for the
//! next batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ledger_snapshot::{SnapshotError, SnapshotStore, WriteReport};

use super::metrics::Metrics;
use super::saved::{STATE_FORMAT, SnapshotState};
use super::visible::Visible;

/// Takes copies from the snapshot stage and writes them on its own thread.
pub(crate) struct Checkpointer {
    pub interval_tx: u64,
    pub interval: Duration,
    store: Arc<SnapshotStore>,
    /// Set while a copy is queued or being written.
    busy: Arc<AtomicBool>,
    sender: Mutex<Option<SyncSender<SnapshotState>>>,
    /// The last copy, handed back by the writer once written, so the next copy reuses
    /// its memory (taken and returned under `busy`, so it is never contended).
    spare: Arc<Mutex<Option<SnapshotState>>>,
    metrics: Arc<Metrics>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The sequence of the newest snapshot on disk (0: none).
    pub last_written: Arc<AtomicU64>,
    pub last_error: Arc<Mutex<Option<Arc<SnapshotError>>>>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("interval_tx", &self.interval_tx)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// Starts the writer thread. `retention_floor` receives, after each snapshot, the
    /// first WAL sequence some kept snapshot still needs.
    pub fn start(
        store: Arc<SnapshotStore>,
        interval_tx: u64,
        interval: Duration,
        last_written: u64,
        retention_floor: Arc<AtomicU64>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Checkpointer> {
        let (sender, receiver) = sync_channel::<SnapshotState>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let last_written = Arc::new(AtomicU64::new(last_written));
        let last_error = Arc::new(Mutex::new(None));
        let spare = Arc::new(Mutex::new(None));
        let worker = Worker {
            spare: Arc::clone(&spare),
            store: Arc::clone(&store),
            busy: Arc::clone(&busy),
            last_written: Arc::clone(&last_written),
            last_error: Arc::clone(&last_error),
            retention_floor,
            metrics: Arc::clone(&metrics),
        };
        let thread = std::thread::Builder::new()
            .name("ledger-checkpoint".to_owned())
            .spawn(move || worker.run(receiver))?;
        Ok(Checkpointer {
            interval_tx,
            interval,
            store,
            busy,
            sender: Mutex::new(Some(sender)),
            spare,
            metrics,
            thread: Mutex::new(Some(thread)),
            last_written,
            last_error,
        })
    }

    /// Hands a copy of `state` to the writer unless one is still in flight. Returns
    /// whether it was taken.
    pub fn offer(&self, state: &Visible) -> bool {
        if self.busy.swap(true, Ordering::AcqRel) {
            return false;
        }
        let started = Instant::now();
        let mut copy = lock(&self.spare)
            .take()
            .unwrap_or_else(SnapshotState::empty);
        copy.copy_from(state);
        self.metrics
            .last_snapshot_copy_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let sender = lock(&self.sender);
        let sent = sender.as_ref().is_some_and(|s| s.try_send(copy).is_ok());
        if !sent {
            self.busy.store(false, Ordering::Release);
        }
        sent
    }

    /// Stops the writer thread after the copy in flight (if any) is written.
    pub fn finish(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }

    /// Writes a snapshot of `state` on the calling thread (used at stop, after
    /// [`finish`](Self::finish)), unless the newest one on disk is already at its id.
    pub fn write_now(&self, state: &Visible) -> Result<Option<WriteReport>, SnapshotError> {
        let last = state.state.last_tx_id();
        if last == 0 || last == self.last_written.load(Ordering::Acquire) {
            return Ok(None);
        }
        let report = self
            .store
            .write_format(last, STATE_FORMAT, &SnapshotState::of(state))?;
        self.last_written.store(report.sequence, Ordering::Release);
        Ok(Some(report))
    }
}

impl Checkpointer {
    /// Writes a snapshot of the state as it is now, on the calling thread, from a copy
    /// (readers and the pipeline go on meanwhile). Returns its sequence and file: the
    /// newest one already on disk when it is at the same id. `None` before the first
    /// transaction. For a cluster node's Raft snapshots.
    #[cfg(feature = "cluster")]
    pub fn write_copy_now(
        &self,
        visible: &std::sync::RwLock<Visible>,
    ) -> Result<Option<(u64, std::path::PathBuf)>, SnapshotError> {
        let copy = {
            let visible = visible.read().unwrap_or_else(|e| e.into_inner());
            SnapshotState::of(&visible)
        };
        let last = copy.last_tx_id;
        if last == 0 {
            return Ok(None);
        }
        let path = self.store.dir().join(ledger_snapshot::file_name(last));
        if last != self.last_written.load(Ordering::Acquire) {
            self.store.write_format(last, STATE_FORMAT, &copy)?;
            self.last_written.fetch_max(last, Ordering::AcqRel);
        }
        Ok(Some((last, path)))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

struct Worker {
    spare: Arc<Mutex<Option<SnapshotState>>>,
    store: Arc<SnapshotStore>,
    busy: Arc<AtomicBool>,
    last_written: Arc<AtomicU64>,
    last_error: Arc<Mutex<Option<Arc<SnapshotError>>>>,
    retention_floor: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl Worker {
    fn run(self, receiver: Receiver<SnapshotState>) {
        while let Ok(mut state) = receiver.recv() {
            let started = std::time::Instant::now();
            state.order();
            match self
                .store
                .write_format(state.last_tx_id, STATE_FORMAT, &state)
            {
                Ok(report) => {
                    self.last_written.store(report.sequence, Ordering::Release);
                    // Every kept snapshot can replay from its own sequence + 1.
                    self.retention_floor
                        .store(report.oldest_retained_sequence + 1, Ordering::Release);
                    self.metrics
                        .record_snapshot(report.sequence, started.elapsed());
                    *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                Err(error) => {
                    // Not fatal: the WAL still holds everything since the last snapshot.
                    tracing::warn!(%error, tx_id = state.last_tx_id, "snapshot write failed");
                    self.metrics
                        .snapshot_failures
                        .fetch_add(1, Ordering::Relaxed);
                    *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Arc::new(error));
                }
            }
            *lock(&self.spare) = Some(state);
            self.busy.store(false, Ordering::Release);
        }
    }
}
