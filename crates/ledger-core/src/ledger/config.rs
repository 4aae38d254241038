//! Every knob of the engine, with a default that works embedded.

use crate::transactor::TransactorConfig;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

pub use ledger_pipeline::WaitStrategy;

/// How a [`Ledger`](super::Ledger) is sized and where it keeps its files.
///
/// `LedgerConfig::default()` is a working embedded setup: data in `./data`, one million
/// accounts, snapshots every 10M transactions or 60 s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Directory of the ledger's files: `wal/` (write-ahead log segments) and
    /// `snapshots/` below it. Created if missing. Default `./data`.
    pub data_dir: PathBuf,
    /// Account ids `0..max_accounts` are valid; balances take 8 bytes each, twice (the
    /// executor's and the readers'). Default 1,000,000. At most
    /// [`ACCOUNTS_MAX`](super::ACCOUNTS_MAX) (what one snapshot payload can address).
    pub max_accounts: u64,
    /// Slots in the pipeline's ring (a power of two): how many transactions can be in
    /// flight between submission and the last stage. A full ring makes `submit` wait.
    /// Default 65,536 (about 6 MB of slots).
    pub ring_size: usize,
    /// A WAL segment file is closed and the next started past this size. Default 64 MiB.
    pub wal_segment_bytes: u64,
    /// The WAL stage cuts a group commit into frames of at most about this many bytes,
    /// header included (one `fdatasync` still covers the whole group). A read of one
    /// transaction from disk reads, verifies and decodes up to its whole frame, so this
    /// bounds its cost. Default 32 KiB (~1,250 transfers).
    pub wal_frame_bytes: usize,
    /// A snapshot is taken after this many transactions since the last one. Default 10M.
    pub snapshot_interval_tx: u64,
    /// ...or after this much time, if at least one transaction happened. Default 60 s.
    pub snapshot_interval: Duration,
    /// Snapshots kept on disk (the newest and `snapshots_kept - 1` older ones, so a
    /// damaged newest one falls back to an older one). WAL segments needed by none of them
    /// are deleted. Default 2.
    pub snapshots_kept: NonZeroUsize,
    /// Keep every WAL segment, even those no kept snapshot needs: an audit trail of every
    /// transaction. Default off: segments wholly below the oldest kept snapshot are
    /// deleted once a newer snapshot is durable.
    pub wal_keep_all: bool,
    /// WAL segments holding any of the last this-many transactions are kept for
    /// `get_transaction` and account history, even when no snapshot needs them (older
    /// ones read as `NotRetained`). Recovery's own needs are kept regardless. Default 10M
    /// (about 260 MB of log at 26 bytes per transfer).
    pub history_retention_tx: u64,
    /// Memory for the most recent durable WAL frames, so reads of recent transactions
    /// do not touch the disk (older ones are read from the WAL through a sparse index).
    /// 0 reads everything from disk. Default 64 MiB (about 2.5M transfers).
    pub read_cache_bytes: usize,
    /// Write a snapshot at a clean `stop()` so the next start replays nothing. Default on.
    pub snapshot_on_stop: bool,
    /// How stage threads, producers and waiters wait. The default (spin, yield, park) is
    /// right whenever threads may outnumber cores; `BusySpin` only with pinned,
    /// dedicated cores.
    pub wait_strategy: WaitStrategy,
    /// A non-zero `user_ref` committed within this much sequencer time makes a later one
    /// a `Duplicate`. Default 10 s.
    pub dedup_window: Duration,
    /// A posted, voided or expired hold is remembered this much sequencer time (a second
    /// post is `HoldClosed`; `get_hold` finds it), then forgotten (`HoldNotFound`): the
    /// memory of holds is the open ones plus what closes in this window, and at most
    /// [`CLOSED_HOLDS_MAX`](crate::transactor::CLOSED_HOLDS_MAX) closed ones whatever the
    /// window (the first closed is forgotten early). Every node of a cluster must use
    /// the same value, as for `dedup_window`. Default 60 s.
    pub closed_hold_retention: Duration,
    /// Pin the stage threads to cores. Default: not pinned.
    pub pinning: StagePinning,
    /// The stage threads' nice value (default 0: the process's). A cluster node raises
    /// it: on a busy machine, the threads that carry its replication round trips then
    /// preempt the stages when they wake up, instead of queueing behind them.
    pub stage_nice: i32,
    /// Release holds whose timeout has passed by submitting `ExpireHolds` transactions
    /// (a thread checks every 50 ms, and submits while this node takes writes). Default
    /// on; off, expired holds stay reserved (though never postable) until someone
    /// submits `Operation::ExpireHolds`.
    pub expire_holds: bool,
}

/// Optional core for each stage thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StagePinning {
    pub transactor: Option<usize>,
    pub wal: Option<usize>,
    pub snapshotter: Option<usize>,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            data_dir: PathBuf::from("./data"),
            max_accounts: 1_000_000,
            ring_size: 1 << 16,
            wal_segment_bytes: 64 << 20,
            wal_frame_bytes: 32 << 10,
            snapshot_interval_tx: 10_000_000,
            snapshot_interval: Duration::from_secs(60),
            snapshots_kept: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
            wal_keep_all: false,
            history_retention_tx: 10_000_000,
            read_cache_bytes: 64 << 20,
            snapshot_on_stop: true,
            wait_strategy: WaitStrategy::DEFAULT,
            dedup_window: Duration::from_secs(10),
            closed_hold_retention: Duration::from_nanos(
                crate::transactor::CLOSED_HOLD_RETENTION_NS,
            ),
            pinning: StagePinning::default(),
            stage_nice: 0,
            expire_holds: true,
        }
    }
}

impl LedgerConfig {
    /// The default configuration with its files in `data_dir`.
    pub fn in_dir(data_dir: impl Into<PathBuf>) -> LedgerConfig {
        LedgerConfig {
            data_dir: data_dir.into(),
            ..LedgerConfig::default()
        }
    }

    /// The WAL directory.
    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }

    /// The snapshot directory.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }

    /// The state machine's sizing and windows, as these settings give them.
    pub fn transactor_config(&self) -> TransactorConfig {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        TransactorConfig {
            max_accounts: self.max_accounts,
            dedup_window_ns: nanos(self.dedup_window),
            closed_hold_retention_ns: nanos(self.closed_hold_retention),
            // A constant, not a setting: every node of a cluster agrees on it by itself.
            closed_holds_max: crate::transactor::CLOSED_HOLDS_MAX,
        }
    }
}
