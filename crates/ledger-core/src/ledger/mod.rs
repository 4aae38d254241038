//! The durable engine: the state machine run on the pipeline, with the WAL and snapshots
//! underneath.
//!
//! ```text
//! submit ─▶ [sequencer: claim id + time] ─▶ transactor ─▶ WAL (group commit) ─▶ snapshotter
//!                                          computed       committed             snapshot
//! ```
//!
//! - **Sequencer**: the pipeline's claim hands out the id; the producer stamps the time.
//! - **Transactor** (one thread, the only writer of the live balances): executes each
//!   operation, prefetching balances a few slots ahead; advances the *computed* index.
//! - **WAL**: encodes each batch's results as records (`docs/record-format.md`), writes
//!   them as frames and `fdatasync`s once per batch; advances the *committed* index.
//! - **Snapshotter**: applies the committed results to the balances readers see, checking
//!   every recorded balance; advances the *snapshot* index; now and then hands a copy to
//!   the snapshot writer thread, which writes it while commits go on.
//!
//! `start()` recovers: newest valid snapshot, then the WAL after it, applied (never
//! re-executed). Any write or sync failure stops the ledger (fail-stop): every waiter gets
//! the error, and nothing that is not durable is ever reported committed.
//! `docs/consistency.md` states what each wait level and read guarantees.
//!
//! ```no_run
//! use ledger_core::ledger::{Ledger, LedgerConfig};
//! use ledger_core::transaction::{Operation, WaitLevel};
//!
//! let mut ledger = Ledger::new(LedgerConfig::in_dir("/var/lib/ledger"));
//! ledger.start().expect("recovered");
//! let result = ledger.submit_and_wait(
//!     Operation::Transfer { from: 1, to: 2, amount: 5, user_ref: 42 },
//!     WaitLevel::Committed,
//! );
//! println!("{} -> {:?}", result.tx_id, result.fail_reason);
//! ```

mod account_reads;
mod checkpoint;
mod config;
mod error;
mod expiry;
mod history;
mod links;
mod metrics;
mod offline;
mod outcomes;
mod queries;
mod reads;
pub(crate) mod recovery;
#[cfg(feature = "cluster")]
pub(crate) mod replica;
mod reversal;
mod saved;
mod slot;
mod stages;
mod visible;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ledger_pipeline::{Pipeline, PipelineError, Producer, Progress, StageId, StageOptions};

pub use account_reads::{AccountInfo, HOLDS_PAGE_MAX, HoldsPage, SystemBalance};
pub use config::{LedgerConfig, StagePinning, WaitStrategy};
pub use error::{FailureKind, LedgerError, SharedError};
pub use history::{
    AccountHistory, HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX, HistoryEntry, HistoryEvent, LinkKind,
    StreamFilter, Transaction, TransactionLink, TransactionPage,
};
pub use metrics::LedgerMetrics;
pub use offline::ReplayState;
pub use queries::{TransactionStatus, TransactionStatusInfo};
pub use recovery::RecoveryReport;
pub use saved::{
    ACCOUNTS_MAX, CurrencyBalance, DedupEntry, LoadedSnapshot, STATE_FORMAT, STATE_FORMAT_V1,
    STATE_FORMAT_V2, SavedAccount, SavedAccountV2, SavedHold, SavedHoldV2, SavedReversal,
    SnapshotState, SnapshotStateV1, SnapshotStateV2, open_snapshot,
};

use checkpoint::Checkpointer;
use metrics::Metrics;
use outcomes::OutcomeRing;
use reads::index::{FrameIndex, IndexWriter};
use reads::recent::{RecentFrames, RecentWriter};
use reads::source::{ReadPath, RecordSource};
use slot::Slot;
use stages::{SnapshotStage, TransactorStage, WalStage};
use visible::Visible;

use crate::transaction::{AccountId, Operation, Outcome, SubmitResult, TxId, WaitLevel};

/// The most slots the transactor takes per batch: its index (and so the WAL stage's
/// work) advances at least this often under load.
const TRANSACTOR_BATCH_MAX: usize = 2048;
/// The most slots the snapshotter applies under one hold of the readers' lock.
const SNAPSHOT_BATCH_MAX: usize = 4096;
/// The most outcome cells kept in memory (24 bytes each).
const OUTCOME_CELLS_MAX: usize = 1 << 22;

/// An account's balance as of one point of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Balance {
    /// In minor units; negative for the system account, and for an account whose
    /// rules allow it (an overdraft limit, or no lower bound).
    pub balance: i64,
    /// The balance includes exactly the transactions up to this id (the snapshot index
    /// when it was read).
    pub last_snapshot_tx_id: TxId,
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.balance, f)
    }
}

/// Several balances read as of one single point of the log (a consistent cut).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Balances {
    /// In the order the accounts were asked for.
    pub balances: Vec<i64>,
    /// Every balance includes exactly the transactions up to this id.
    pub last_snapshot_tx_id: TxId,
}

/// The three stage indexes: every id up to each is done at that stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PipelineIndex {
    /// Executed by the transactor.
    pub computed: TxId,
    /// Durable in the WAL.
    pub committed: TxId,
    /// Visible to balance reads.
    pub snapshot: TxId,
}

/// The ledger: submit operations, wait for them, read balances. `Send + Sync`: share it
/// (`Arc<Ledger>`) between any number of threads.
///
/// Calls that return a plain value (`submit`, `wait_for`, `get_balance`...) panic when the
/// ledger cannot serve them (not started, stopped, failed), with a message naming the
/// cause; each has a `try_` twin that returns the [`LedgerError`] instead.
pub struct Ledger {
    config: LedgerConfig,
    storage: Arc<dyn ledger_storage::Storage>,
    engine: Option<Engine>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("data_dir", &self.config.data_dir)
            .field("started", &self.engine.is_some())
            .field("index", &self.engine.as_ref().map(Engine::index))
            .finish_non_exhaustive()
    }
}

pub(crate) struct Engine {
    producer: Producer<Slot>,
    progress: Progress,
    computed: StageId,
    committed: StageId,
    snapshotted: StageId,
    /// `None` once stopped.
    pipeline: Mutex<Option<Pipeline<Slot>>>,
    stop_result: Mutex<Option<Result<(), LedgerError>>>,
    visible: Arc<RwLock<Visible>>,
    outcomes: Arc<OutcomeRing>,
    checkpointer: Arc<Checkpointer>,
    metrics: Arc<Metrics>,
    recovery: RecoveryReport,
    max_accounts: u64,
    snapshot_on_stop: bool,
    reads: ReadPath,
    /// Whether clients may submit: always on a single node; on a cluster node only while
    /// it leads and has applied its whole log.
    writable: Arc<AtomicBool>,
    /// Submits the expiries of holds.
    expiry: expiry::ExpiryTimer,
    /// What a cluster node shares with its replicated log.
    #[cfg(feature = "cluster")]
    pub(crate) replica: Option<replica::ReplicaHooks>,
}

/// How an engine writes its log.
pub(crate) enum Mode {
    /// A single node: the WAL stage writes and syncs the WAL itself.
    Single,
    /// A cluster node: the replicated log owns the WAL; the WAL stage proposes.
    #[cfg(feature = "cluster")]
    Replica {
        proposer: Box<dyn replica::Propose>,
        replicated: Arc<replica::Watermark>,
    },
}

impl Ledger {
    /// A ledger that will keep its files as `config` says. Does no I/O: [`start`](Self::start)
    /// opens and recovers.
    pub fn new(config: LedgerConfig) -> Ledger {
        Ledger::with_storage(config, ledger_storage::real())
    }

    /// A ledger that does its file operations through `storage` instead of the file
    /// system: a simulated disk for fault and power-loss tests
    /// (`ledger_storage::sim::SimDisk`), or an embedder's own layer.
    pub fn with_storage(config: LedgerConfig, storage: Arc<dyn ledger_storage::Storage>) -> Ledger {
        Ledger {
            config,
            storage,
            engine: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// Opens the data directory, recovers (newest valid snapshot, then the WAL after it)
    /// and starts the stage threads. A stopped ledger can be started again.
    ///
    /// # Errors
    /// [`LedgerError::AlreadyStarted`]; a bad configuration; a locked directory; any damage
    /// other than a torn WAL tail (the error names the file and offset); I/O errors.
    pub fn start(&mut self) -> Result<(), LedgerError> {
        if let Some(engine) = &self.engine {
            if !engine.is_stopped() {
                return Err(LedgerError::AlreadyStarted);
            }
            // Release the old engine's files (locks) before reopening them.
            self.engine = None;
        }
        self.engine = Some(Engine::start(&self.config, &self.storage, Mode::Single)?);
        Ok(())
    }

    /// Starts as a cluster node (see [`replica`]): recovers the newest snapshot only and
    /// refuses submissions until [`Engine::set_writable`].
    #[cfg(feature = "cluster")]
    pub(crate) fn start_replica(
        &mut self,
        proposer: Box<dyn replica::Propose>,
        replicated: Arc<replica::Watermark>,
    ) -> Result<(), LedgerError> {
        if self.engine.is_some() {
            return Err(LedgerError::AlreadyStarted);
        }
        let mode = Mode::Replica {
            proposer,
            replicated,
        };
        self.engine = Some(Engine::start(&self.config, &self.storage, mode)?);
        Ok(())
    }

    #[cfg(feature = "cluster")]
    pub(crate) fn started(&self) -> Result<&Engine, LedgerError> {
        self.engine()
    }

    /// Stops accepting operations, lets everything submitted so far reach every stage
    /// (durable and visible), joins the threads and, if configured, writes a snapshot.
    /// Idempotent; also done on drop.
    ///
    /// # Errors
    /// The failure that stopped the ledger earlier, if one did; a failed final snapshot.
    pub fn stop(&self) -> Result<(), LedgerError> {
        match &self.engine {
            None => Ok(()),
            Some(engine) => engine.stop(),
        }
    }

    /// What recovery found at the last `start()`.
    pub fn recovery_report(&self) -> Option<&RecoveryReport> {
        self.engine.as_ref().map(|e| &e.recovery)
    }

    /// The failure that stopped the ledger, if any.
    pub fn failure(&self) -> Option<LedgerError> {
        let engine = self.engine.as_ref()?;
        engine.progress.failure().map(LedgerError::from_pipeline)
    }

    /// Why the last background snapshot failed, if it did (cleared by the next success).
    /// Not fatal: the WAL still holds everything since the last good snapshot.
    pub fn snapshot_error(&self) -> Option<Arc<ledger_snapshot::SnapshotError>> {
        let engine = self.engine.as_ref()?;
        engine
            .checkpointer
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    // ---- submitting ----

    /// Submits one operation; returns its id once it is in the pipeline (waiting while the
    /// ring is full). The outcome comes later: see [`wait_for`](Self::wait_for).
    ///
    /// # Panics
    /// If the ledger is not started, stopped or failed; [`try_submit`](Self::try_submit)
    /// returns that as an error.
    pub fn submit(&self, operation: Operation) -> TxId {
        self.try_submit(operation)
            .unwrap_or_else(|e| fail("submit", "try_submit", &e))
    }

    /// [`submit`](Self::submit) returning the reason instead of panicking. Waits while the
    /// ring is full.
    pub fn try_submit(&self, mut operation: Operation) -> Result<TxId, LedgerError> {
        let engine = self.writer()?;
        self.resolve(&mut operation)?;
        let timestamp_ns = now_ns();
        engine
            .producer
            .publish(|_, slot| fill(slot, operation, timestamp_ns))
            .map_err(|e| engine.error(e))
    }

    /// [`try_submit`](Self::try_submit) that does not wait for a free slot:
    /// [`LedgerError::Busy`] when the ring is full (backpressure for servers).
    pub fn try_submit_nowait(&self, operation: Operation) -> Result<TxId, LedgerError> {
        match self.try_submit_if_room(operation)? {
            Ok(tx_id) => Ok(tx_id),
            Err(_) => Err(LedgerError::Busy {
                capacity: self.engine()?.producer.capacity(),
            }),
        }
    }

    /// [`try_submit_nowait`](Self::try_submit_nowait) that hands the operation back when
    /// the ring is full (`Ok(Err(operation))`), so the caller can wait somewhere else (off
    /// an async runtime, say) and submit the same operation again without copying it.
    pub fn try_submit_if_room(
        &self,
        operation: Operation,
    ) -> Result<Result<TxId, Operation>, LedgerError> {
        let engine = self.writer()?;
        let mut operation = operation;
        self.resolve(&mut operation)?;
        let timestamp_ns = now_ns();
        let mut pending = Some(operation);
        let published = engine.producer.try_publish(|_, slot| {
            if let Some(operation) = pending.take() {
                fill(slot, operation, timestamp_ns);
            }
        });
        match (published, pending) {
            (Ok(tx_id), _) => Ok(Ok(tx_id)),
            (Err(PipelineError::Full { .. }), Some(operation)) => Ok(Err(operation)),
            (Err(e), _) => Err(engine.error(e)),
        }
    }

    /// Submits and waits until the transaction reaches `level`; returns its id and, if it
    /// was rejected, why.
    ///
    /// # Panics
    /// As [`submit`](Self::submit); see [`try_submit_and_wait`](Self::try_submit_and_wait).
    pub fn submit_and_wait(&self, operation: Operation, level: WaitLevel) -> SubmitResult {
        self.try_submit_and_wait(operation, level)
            .unwrap_or_else(|e| fail("submit_and_wait", "try_submit_and_wait", &e))
    }

    /// [`submit_and_wait`](Self::submit_and_wait) returning errors.
    pub fn try_submit_and_wait(
        &self,
        operation: Operation,
        level: WaitLevel,
    ) -> Result<SubmitResult, LedgerError> {
        let tx_id = self.try_submit(operation)?;
        self.try_wait_for(tx_id, level)?;
        Ok(SubmitResult::new(tx_id, self.try_outcome(tx_id)?))
    }

    /// Submits every operation as its own transaction, with one contiguous run of ids
    /// (one claim of the ring). At most `ring_size` operations.
    ///
    /// # Panics
    /// As [`submit`](Self::submit), and for an empty or too large batch; see
    /// [`try_submit_batch`](Self::try_submit_batch).
    pub fn submit_batch(&self, operations: Vec<Operation>) -> Vec<TxId> {
        self.try_submit_batch(operations)
            .unwrap_or_else(|e| fail("submit_batch", "try_submit_batch", &e))
    }

    /// [`submit_batch`](Self::submit_batch) returning errors.
    pub fn try_submit_batch(&self, operations: Vec<Operation>) -> Result<Vec<TxId>, LedgerError> {
        let len = operations.len() as u64;
        let first = self.publish_batch(operations)?;
        Ok((first..first + len).collect())
    }

    /// Submits a batch (as [`submit_batch`](Self::submit_batch)) and waits until all of it
    /// reaches `level`.
    ///
    /// # Panics
    /// As [`submit_batch`](Self::submit_batch); see
    /// [`try_submit_batch_and_wait`](Self::try_submit_batch_and_wait).
    pub fn submit_batch_and_wait(
        &self,
        operations: Vec<Operation>,
        level: WaitLevel,
    ) -> Vec<SubmitResult> {
        self.try_submit_batch_and_wait(operations, level)
            .unwrap_or_else(|e| fail("submit_batch_and_wait", "try_submit_batch_and_wait", &e))
    }

    /// [`submit_batch_and_wait`](Self::submit_batch_and_wait) returning errors.
    pub fn try_submit_batch_and_wait(
        &self,
        operations: Vec<Operation>,
        level: WaitLevel,
    ) -> Result<Vec<SubmitResult>, LedgerError> {
        let len = operations.len() as u64;
        let first = self.publish_batch(operations)?;
        let last = first + len - 1;
        self.try_wait_for(last, level)?;
        (first..=last)
            .map(|tx_id| Ok(SubmitResult::new(tx_id, self.try_outcome(tx_id)?)))
            .collect()
    }

    fn publish_batch(&self, operations: Vec<Operation>) -> Result<TxId, LedgerError> {
        let engine = self.writer()?;
        let len = operations.len();
        let max = engine.producer.capacity();
        if len == 0 || len > max {
            return Err(LedgerError::InvalidBatch { len, max });
        }
        let mut operations = operations;
        // Reversals are rare: one read-only pass finds whether a batch has any.
        if operations
            .iter()
            .any(|o| matches!(o, Operation::Reverse(_)))
        {
            for operation in &mut operations {
                self.resolve(operation)?;
            }
        }
        let timestamp_ns = now_ns();
        let mut operations = operations.into_iter();
        engine
            .producer
            .publish_batch(len, |_, slot| {
                if let Some(operation) = operations.next() {
                    fill(slot, operation, timestamp_ns);
                }
            })
            .map_err(|e| engine.error(e))
    }

    // ---- waiting ----

    /// Blocks until transaction `tx_id` reaches `level`.
    ///
    /// # Panics
    /// If the ledger fails or stops first, or `tx_id` was never issued; see
    /// [`try_wait_for`](Self::try_wait_for).
    pub fn wait_for(&self, tx_id: TxId, level: WaitLevel) {
        self.try_wait_for(tx_id, level)
            .unwrap_or_else(|e| fail("wait_for", "try_wait_for", &e))
    }

    /// Blocks until `tx_id` is durable in the WAL ([`WaitLevel::Committed`]).
    ///
    /// # Panics
    /// As [`wait_for`](Self::wait_for); see
    /// [`try_wait_for_transaction`](Self::try_wait_for_transaction).
    pub fn wait_for_transaction(&self, tx_id: TxId) {
        self.try_wait_for_transaction(tx_id)
            .unwrap_or_else(|e| fail("wait_for_transaction", "try_wait_for_transaction", &e))
    }

    /// [`wait_for_transaction`](Self::wait_for_transaction) returning errors.
    pub fn try_wait_for_transaction(&self, tx_id: TxId) -> Result<(), LedgerError> {
        self.try_wait_for(tx_id, WaitLevel::Committed)
    }

    /// [`wait_for`](Self::wait_for) returning errors: [`LedgerError::UnknownTransaction`]
    /// for an id never issued, the ledger's failure, [`LedgerError::Stopped`] if it was
    /// stopped before `tx_id` got there.
    pub fn try_wait_for(&self, tx_id: TxId, level: WaitLevel) -> Result<(), LedgerError> {
        let engine = self.engine()?;
        engine.check_issued(tx_id)?;
        engine
            .progress
            .wait(engine.stage(level), tx_id)
            .map_err(|e| engine.error(e))
    }

    /// [`try_wait_for`](Self::try_wait_for) for at most `timeout`
    /// ([`LedgerError::Timeout`] then).
    pub fn try_wait_for_timeout(
        &self,
        tx_id: TxId,
        level: WaitLevel,
        timeout: Duration,
    ) -> Result<(), LedgerError> {
        let engine = self.engine()?;
        engine.check_issued(tx_id)?;
        engine
            .progress
            .wait_timeout(engine.stage(level), tx_id, timeout)
            .map_err(|e| match e {
                PipelineError::Timeout { .. } => LedgerError::Timeout { tx_id, level },
                other => engine.error(other),
            })
    }

    /// A future that resolves once `tx_id` reaches `level`: for async callers, on any
    /// executor (it registers the task's waker; no thread blocks).
    pub fn wait_for_async(&self, tx_id: TxId, level: WaitLevel) -> WaitForTransaction {
        let inner = self.engine().and_then(|engine| {
            engine.check_issued(tx_id)?;
            Ok((
                engine.progress.wait_async(engine.stage(level), tx_id),
                engine.progress.clone(),
            ))
        });
        WaitForTransaction { inner: Some(inner) }
    }

    /// A future that resolves once reads show transaction `tx_id` (the snapshot index
    /// reached it), whether or not this ledger issued it yet: how a cluster follower
    /// serves read-your-writes for an id the leader acknowledged. Bound it with a
    /// timeout: on a node that never gets `tx_id` it waits until the ledger stops.
    pub fn wait_visible_async(&self, tx_id: TxId) -> WaitForTransaction {
        let inner = self.engine().map(|engine| {
            (
                engine.progress.wait_async(engine.snapshotted, tx_id),
                engine.progress.clone(),
            )
        });
        WaitForTransaction { inner: Some(inner) }
    }

    /// A future that resolves once transaction `tx_id` is committed (durable), whether
    /// or not this ledger issued it yet: how a change stream waits for the next
    /// transaction. Bound it with a timeout: on an idle ledger it waits until the next
    /// commit, or until the ledger stops.
    pub fn wait_committed_async(&self, tx_id: TxId) -> WaitForTransaction {
        let inner = self.engine().map(|engine| {
            (
                engine.progress.wait_async(engine.committed, tx_id),
                engine.progress.clone(),
            )
        });
        WaitForTransaction { inner: Some(inner) }
    }

    /// The outcome of an executed transaction ([`WaitLevel::Processed`] reached), from
    /// memory for recent ones and from the WAL for older ones.
    ///
    /// # Errors
    /// [`LedgerError::UnknownTransaction`] if it has not been executed yet; a WAL read error.
    pub fn try_outcome(&self, tx_id: TxId) -> Result<Outcome, LedgerError> {
        let engine = self.engine()?;
        if tx_id == 0 || tx_id > engine.progress.index(engine.computed) {
            return Err(LedgerError::UnknownTransaction {
                tx_id,
                last_issued: engine.progress.index(engine.computed),
            });
        }
        if let Some(outcome) = engine.outcomes.get(tx_id) {
            return Ok(outcome);
        }
        // Overwritten in memory: far behind the transactor, so durable (the ring holds
        // fewer transactions than the outcome cells); read it back from the WAL.
        engine
            .progress
            .wait(engine.committed, tx_id)
            .map_err(|e| engine.error(e))?;
        RecordSource::new(&engine.reads, &engine.metrics).with_record(tx_id, |r, _| r.outcome)
    }

    // ---- reading ----

    /// The balance of `account` as of the snapshot index: only durable transactions, and
    /// every transaction committed before the call (the read first waits, typically
    /// microseconds, for the snapshot stage to catch up with the committed index).
    /// An account id at or above `max_accounts` holds nothing: 0.
    ///
    /// # Panics
    /// If the ledger was never started; see [`try_get_balance`](Self::try_get_balance).
    pub fn get_balance(&self, account: AccountId) -> Balance {
        match self.try_get_balance(account) {
            Ok(balance) => balance,
            Err(LedgerError::AccountOutOfRange { .. }) => Balance {
                balance: 0,
                last_snapshot_tx_id: self.pipeline_index().snapshot,
            },
            Err(e) => fail("get_balance", "try_get_balance", &e),
        }
    }

    /// [`get_balance`](Self::get_balance) returning errors
    /// ([`LedgerError::AccountOutOfRange`] among them). Works after `stop()` too.
    pub fn try_get_balance(&self, account: AccountId) -> Result<Balance, LedgerError> {
        let engine = self.engine()?;
        engine.catch_up();
        let visible = engine.visible.read().unwrap_or_else(|e| e.into_inner());
        let balance = visible
            .state
            .balance(account)
            .ok_or(LedgerError::AccountOutOfRange {
                account,
                max_accounts: engine.max_accounts,
            })?;
        Ok(Balance {
            balance,
            last_snapshot_tx_id: visible.state.last_tx_id(),
        })
    }

    /// The balances of `accounts`, all as of one single snapshot index: a consistent cut,
    /// never a mix of two points in time. Accounts at or above `max_accounts` read 0.
    /// The snapshot stage waits at most for this read to finish; commits go on.
    ///
    /// # Panics
    /// If the ledger was never started; see [`try_get_balances`](Self::try_get_balances).
    pub fn get_balances(&self, accounts: &[AccountId]) -> Balances {
        self.read_balances(accounts, false)
            .unwrap_or_else(|e| fail("get_balances", "try_get_balances", &e))
    }

    /// [`get_balances`](Self::get_balances) returning errors (an out-of-range account
    /// among them).
    pub fn try_get_balances(&self, accounts: &[AccountId]) -> Result<Balances, LedgerError> {
        self.read_balances(accounts, true)
    }

    fn read_balances(&self, accounts: &[AccountId], strict: bool) -> Result<Balances, LedgerError> {
        let engine = self.engine()?;
        engine.catch_up();
        let mut balances = Vec::with_capacity(accounts.len());
        let visible = engine.visible.read().unwrap_or_else(|e| e.into_inner());
        for &account in accounts {
            match visible.state.balance(account) {
                Some(balance) => balances.push(balance),
                None if strict => {
                    return Err(LedgerError::AccountOutOfRange {
                        account,
                        max_accounts: engine.max_accounts,
                    });
                }
                None => balances.push(0),
            }
        }
        Ok(Balances {
            balances,
            last_snapshot_tx_id: visible.state.last_tx_id(),
        })
    }

    /// The three stage indexes (all 0 before `start()`).
    pub fn pipeline_index(&self) -> PipelineIndex {
        self.engine.as_ref().map(Engine::index).unwrap_or_default()
    }

    /// Counters since `start()` (all 0 before).
    pub fn metrics(&self) -> LedgerMetrics {
        self.engine
            .as_ref()
            .map(|e| {
                let mut m = e.metrics.read();
                m.read_index_bytes = e.reads.index.bytes() as u64;
                m.read_index_points = e.reads.index.points() as u64;
                m.read_cache_bytes = e.reads.recent.bytes() as u64;
                m
            })
            .unwrap_or_default()
    }

    fn engine(&self) -> Result<&Engine, LedgerError> {
        self.engine.as_ref().ok_or(LedgerError::NotStarted)
    }

    /// The engine, if it takes new operations.
    fn writer(&self) -> Result<&Engine, LedgerError> {
        let engine = self.engine()?;
        if !engine.writable.load(Ordering::Acquire) {
            return Err(LedgerError::NotLeader);
        }
        Ok(engine)
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::error!(%error, "the ledger stopped with an error");
        }
    }
}

/// The future of [`Ledger::wait_for_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct WaitForTransaction {
    inner: Option<Result<(ledger_pipeline::WaitFuture, Progress), LedgerError>>,
}

impl fmt::Debug for WaitForTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForTransaction").finish_non_exhaustive()
    }
}

impl Future for WaitForTransaction {
    type Output = Result<(), LedgerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.inner {
            None => Poll::Ready(Err(LedgerError::Stopped)),
            Some(Err(_)) => match this.inner.take() {
                Some(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Ready(Err(LedgerError::Stopped)),
            },
            Some(Ok((future, progress))) => match Pin::new(future).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(pipeline_error(progress, e))),
            },
        }
    }
}

impl Engine {
    fn start(
        config: &LedgerConfig,
        storage: &Arc<dyn ledger_storage::Storage>,
        mode: Mode,
    ) -> Result<Engine, LedgerError> {
        validate(config)?;
        let transactor_config = config.transactor_config();
        let reads = ReadPath {
            storage: Arc::clone(storage),
            wal_dir: config.wal_dir(),
            recent: RecentFrames::new((config.read_cache_bytes / 1024).clamp(1024, 1 << 20)),
            index: FrameIndex::new(config.wal_segment_bytes),
        };
        // Recovery's one read of the log also builds the read index.
        let mut index_writer = IndexWriter::new(Arc::clone(&reads.index));
        let own_wal = matches!(mode, Mode::Single);
        let recovered = recovery::recover(
            config,
            storage,
            transactor_config,
            &mut index_writer,
            own_wal,
        )?;
        let report = recovered.report;
        let metrics = Arc::new(Metrics::default());
        let retention_floor = Arc::new(AtomicU64::new(0));
        let last_snapshot = report.snapshot.as_ref().map_or(0, |(_, seq)| *seq);
        let checkpointer = Arc::new(
            Checkpointer::start(
                Arc::clone(&recovered.store),
                config.snapshot_interval_tx,
                config.snapshot_interval,
                last_snapshot,
                Arc::clone(&retention_floor),
                Arc::clone(&metrics),
            )
            .map_err(|e| LedgerError::Config {
                reason: format!("cannot start the snapshot thread: {e}"),
            })?,
        );
        let visible = Arc::new(RwLock::new(Visible {
            state: recovered.transactor.clone(),
            links: recovered.links.clone(),
        }));
        let outcomes = Arc::new(OutcomeRing::new(
            (config.ring_size.saturating_mul(4))
                .clamp(1, OUTCOME_CELLS_MAX)
                .next_power_of_two(),
        ));
        let first_tx_id = report.last_tx_id + 1;

        let mut builder = Pipeline::builder(config.ring_size, Slot::new)
            .wait_strategy(config.wait_strategy)
            .initial_sequence(first_tx_id);
        let options = |core: Option<usize>, batch_max: usize| {
            let options = StageOptions::default()
                .batch_size_max(batch_max)
                .nice(config.stage_nice);
            match core {
                Some(core) => options.pinned(core),
                None => options,
            }
        };
        let computed = builder.add_stage_with(
            "transactor",
            TransactorStage {
                transactor: recovered.transactor,
                links: recovered.links,
                outcomes: Arc::clone(&outcomes),
                effects: Vec::new(),
                effect_links: Vec::new(),
            },
            options(config.pinning.transactor, TRANSACTOR_BATCH_MAX),
        );
        let recent = RecentWriter::new(Arc::clone(&reads.recent), config.read_cache_bytes);
        #[cfg(feature = "cluster")]
        let mut replica_hooks = None;
        let committed = match mode {
            Mode::Single => builder.add_stage_with(
                "wal",
                WalStage {
                    wal: recovered.wal.expect("a single node owns its WAL"),
                    buf: Vec::with_capacity(config.wal_frame_bytes + (64 << 10)),
                    frame_bytes: config.wal_frame_bytes,
                    retention_floor,
                    retained_from: 0,
                    keep_all: config.wal_keep_all,
                    history_keep_tx: config.history_retention_tx,
                    metrics: Arc::clone(&metrics),
                    index: index_writer,
                    recent,
                    pending: Vec::new(),
                    marks: Vec::new(),
                },
                options(config.pinning.wal, usize::MAX),
            ),
            #[cfg(feature = "cluster")]
            Mode::Replica {
                proposer,
                replicated,
            } => {
                replicated.advance(report.last_tx_id);
                builder.add_stage_with(
                    "propose",
                    replica::ProposeStage {
                        proposer,
                        buf: Vec::with_capacity(config.wal_frame_bytes + (64 << 10)),
                        frame_bytes: config.wal_frame_bytes,
                    },
                    options(config.pinning.wal, usize::MAX),
                );
                let gate = builder.add_stage(
                    "gate",
                    replica::GateStage {
                        replicated: Arc::clone(&replicated),
                    },
                );
                replica_hooks = Some(replica::ReplicaHooks {
                    index: Mutex::new(index_writer),
                    retention_floor: Arc::clone(&retention_floor),
                    history_keep_tx: config.history_retention_tx,
                    keep_all: config.wal_keep_all,
                });
                drop(recent);
                gate
            }
        };
        let snapshotted = builder.add_stage_with(
            "snapshotter",
            SnapshotStage {
                visible: Arc::clone(&visible),
                checkpointer: Arc::clone(&checkpointer),
                // Counted from the snapshot recovery loaded, not from the restart: a
                // process that crashes more often than it commits snapshot_interval_tx
                // transactions would otherwise never write one and replay ever more.
                last_checkpoint_tx: last_snapshot,
                last_checkpoint_at: Instant::now(),
            },
            options(config.pinning.snapshotter, SNAPSHOT_BATCH_MAX),
        );
        let pipeline = builder.start().map_err(LedgerError::from_pipeline)?;
        let writable = Arc::new(AtomicBool::new(own_wal));
        let expiry = expiry::ExpiryTimer::start(
            config.expire_holds,
            pipeline.producer(),
            Arc::clone(&visible),
            Arc::clone(&writable),
        )
        .map_err(|e| LedgerError::Config {
            reason: format!("cannot start the hold expiry thread: {e}"),
        })?;
        Ok(Engine {
            producer: pipeline.producer(),
            progress: pipeline.progress(),
            computed,
            committed,
            snapshotted,
            pipeline: Mutex::new(Some(pipeline)),
            stop_result: Mutex::new(None),
            visible,
            outcomes,
            checkpointer,
            metrics,
            recovery: report,
            max_accounts: config.max_accounts,
            snapshot_on_stop: config.snapshot_on_stop,
            reads,
            writable,
            expiry,
            #[cfg(feature = "cluster")]
            replica: replica_hooks,
        })
    }

    fn stage(&self, level: WaitLevel) -> StageId {
        match level {
            WaitLevel::Processed => self.computed,
            WaitLevel::Committed | WaitLevel::Replicated => self.committed,
            WaitLevel::Snapshotted => self.snapshotted,
        }
    }

    /// Read last stage first: each index only grows, so reading them in this order gives
    /// `snapshot <= committed <= computed` even while the stages advance.
    fn index(&self) -> PipelineIndex {
        let snapshot = self.progress.index(self.snapshotted);
        let committed = self.progress.index(self.committed);
        let computed = self.progress.index(self.computed);
        PipelineIndex {
            computed,
            committed,
            snapshot,
        }
    }

    /// Waits until reads show every transaction committed before this call: an
    /// acknowledged commit is then visible to the reader that follows it. The snapshot
    /// stage trails the WAL stage by at most a ring's worth of work. After a failure the
    /// visible state stays what it was (durable and consistent), so the read goes on.
    fn catch_up(&self) {
        let committed = self.progress.index(self.committed);
        let _ = self.progress.wait(self.snapshotted, committed);
    }

    fn check_issued(&self, tx_id: TxId) -> Result<(), LedgerError> {
        let last_issued = self.progress.claimed();
        if tx_id == 0 || tx_id > last_issued {
            return Err(LedgerError::UnknownTransaction { tx_id, last_issued });
        }
        Ok(())
    }

    fn error(&self, error: PipelineError) -> LedgerError {
        pipeline_error(&self.progress, error)
    }

    fn is_stopped(&self) -> bool {
        self.pipeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    fn stop(&self) -> Result<(), LedgerError> {
        let mut result_slot = self.stop_result.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(result) = &*result_slot {
            return result.clone();
        }
        self.expiry.finish();
        let pipeline = self
            .pipeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let mut result = match pipeline {
            Some(pipeline) => pipeline.shutdown().map_err(LedgerError::from_pipeline),
            None => Ok(()),
        };
        self.checkpointer.finish();
        if result.is_ok() && self.snapshot_on_stop {
            let visible = self.visible.read().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = self.checkpointer.write_now(&visible) {
                result = Err(e.into());
            }
        }
        *result_slot = Some(result.clone());
        result
    }
}

/// A pipeline error as the ledger reports it: a shutdown after a failure is the failure.
fn pipeline_error(progress: &Progress, error: PipelineError) -> LedgerError {
    match (error, progress.failure()) {
        (PipelineError::ShutDown, Some(failure)) => LedgerError::from_pipeline(failure),
        (error, _) => LedgerError::from_pipeline(error),
    }
}

fn validate(config: &LedgerConfig) -> Result<(), LedgerError> {
    let invalid = |reason: String| Err(LedgerError::Config { reason });
    if config.max_accounts == 0 || config.max_accounts > ACCOUNTS_MAX {
        return invalid(format!(
            "max_accounts {} must be in 1..={ACCOUNTS_MAX} (a snapshot holds at most that many)",
            config.max_accounts
        ));
    }
    if !config.ring_size.is_power_of_two() || config.ring_size < 2 {
        return invalid(format!(
            "ring_size {} must be a power of two, at least 2",
            config.ring_size
        ));
    }
    if config.snapshot_interval_tx == 0 {
        return invalid("snapshot_interval_tx must be at least 1".to_owned());
    }
    let frame_max = ledger_wal::FRAME_PAYLOAD_BYTES_MAX / 2;
    if !(4096..=frame_max).contains(&config.wal_frame_bytes) {
        return invalid(format!(
            "wal_frame_bytes {} must be in 4096..={frame_max}",
            config.wal_frame_bytes
        ));
    }
    Ok(())
}

// Once per operation on the producer's path: kept in line.
#[inline(always)]
fn fill(slot: &mut Slot, operation: Operation, timestamp_ns: u64) {
    slot.user_ref = operation.user_ref();
    slot.reset_extra();
    slot.op = operation;
    slot.timestamp_ns = timestamp_ns;
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cold]
#[track_caller]
fn fail(call: &str, try_call: &str, error: &LedgerError) -> ! {
    panic!(
        "Ledger::{call} cannot proceed: {error} (use Ledger::{try_call} to handle this as an error)"
    )
}

#[cfg(test)]
mod send_sync {
    const fn assert_send_sync<T: Send + Sync>() {}
    const _: () = assert_send_sync::<super::Ledger>();
    const _: () = assert_send_sync::<super::WaitForTransaction>();
}
