//! The one error type of the engine.

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;

use ledger_pipeline::PipelineError;
use ledger_snapshot::SnapshotError;
use ledger_wal::WalError;

use crate::record::RecordError;
use crate::transaction::{TxId, WaitLevel};
use crate::transactor::{ConfigError, ReplayError, RestoreError};

/// A shareable error source (every waiter of a failed ledger gets the same one).
pub type SharedError = Arc<dyn Error + Send + Sync + 'static>;

/// What a failed ledger reports: storage that cannot be written (retry after repair) is not
/// the same as bytes that no longer verify (data loss).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// Writing or syncing failed (I/O error, disk full): nothing acknowledged is lost, the
    /// ledger stopped so that nothing unsynced is ever reported committed.
    Storage,
    /// Stored bytes failed a checksum or did not decode.
    DataLoss,
    /// A bug: a stage panicked or an internal check failed.
    Internal,
}

/// Everything a caller of the [`Ledger`](super::Ledger) can be told. Business rejections
/// are not errors: they are a [`FailReason`](crate::transaction::FailReason) in the result.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error("the ledger is not started: call start() first")]
    NotStarted,
    #[error("the ledger is already started")]
    AlreadyStarted,
    #[error("the ledger is stopped")]
    Stopped,
    /// A cluster node that is not the leader (or a leader that has not yet applied its
    /// whole log) refuses new operations: send them to the leader.
    #[error("this node is not the cluster's leader: send writes to the leader")]
    NotLeader,
    /// A non-blocking submit found the ring full: backpressure, retry later.
    #[error("the ledger is busy: all {capacity} ring slots are in flight")]
    Busy { capacity: usize },
    /// The ledger stopped itself after a failure (fail-stop); restart it to recover.
    #[error("the ledger stopped after a failure in its {stage} stage: {message}")]
    Failed {
        stage: String,
        kind: FailureKind,
        message: String,
        #[source]
        source: Option<SharedError>,
    },
    #[error("transaction {tx_id} was never issued (the last issued is {last_issued})")]
    UnknownTransaction { tx_id: TxId, last_issued: TxId },
    /// A read of a transaction whose WAL segment retention has deleted (see
    /// `LedgerConfig::history_retention_tx`).
    #[error("transaction {tx_id} is no longer retained (the oldest retained is {first_retained})")]
    NotRetained { tx_id: TxId, first_retained: TxId },
    /// A read of a transaction that is issued but not durable yet.
    #[error("transaction {tx_id} is not durable yet (committed up to {committed})")]
    NotCommitted { tx_id: TxId, committed: TxId },
    /// An account's history chain leads to a transaction without an entry on it: the
    /// log is damaged (recovery checks every link, so this means damage since start).
    #[error(
        "the history chain of account {account} leads to transaction {tx_id}, which has no entry on it"
    )]
    BrokenChain { account: u64, tx_id: TxId },
    #[error("timed out waiting for transaction {tx_id} to be {level:?}")]
    Timeout { tx_id: TxId, level: WaitLevel },
    #[error("a batch of {len} operations cannot be submitted: must be 1..={max}")]
    InvalidBatch { len: usize, max: usize },
    #[error("account {account} is outside 0..{max_accounts}")]
    AccountOutOfRange { account: u64, max_accounts: u64 },
    #[error("invalid configuration: {reason}")]
    Config { reason: String },
    #[error(transparent)]
    Wal(Arc<WalError>),
    #[error(transparent)]
    Snapshot(Arc<SnapshotError>),
    /// A WAL record failed to decode during recovery or a read.
    #[error("{}: frame at offset {offset}: {source}", segment.display())]
    CorruptRecord {
        segment: PathBuf,
        offset: u64,
        #[source]
        source: Arc<RecordError>,
    },
    /// Stored entries do not reproduce the balances they claim.
    #[error("{}: frame at offset {offset}: {source}", segment.display())]
    ReplayMismatch {
        segment: PathBuf,
        offset: u64,
        #[source]
        source: Arc<ReplayError>,
    },
    /// The snapshot cannot be restored (its content contradicts itself or the config).
    #[error("{}: {source}", snapshot.display())]
    Restore {
        snapshot: PathBuf,
        #[source]
        source: Arc<RestoreError>,
    },
    /// The WAL does not reach back to the transaction after the snapshot.
    #[error(
        "the snapshot at transaction {snapshot_tx_id} needs the WAL from {}, but it starts at {wal_first_tx_id:?} and ends before {wal_next_tx_id:?}",
        snapshot_tx_id + 1
    )]
    WalGap {
        snapshot_tx_id: TxId,
        wal_first_tx_id: Option<TxId>,
        wal_next_tx_id: Option<TxId>,
    },
}

impl LedgerError {
    /// Whether stored data was found damaged (gRPC `DATA_LOSS`).
    pub fn is_data_loss(&self) -> bool {
        match self {
            LedgerError::Failed { kind, .. } => *kind == FailureKind::DataLoss,
            LedgerError::Wal(e) => e.is_corruption(),
            LedgerError::Snapshot(e) => e.is_corruption(),
            LedgerError::CorruptRecord { .. }
            | LedgerError::ReplayMismatch { .. }
            | LedgerError::Restore { .. }
            | LedgerError::WalGap { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn from_pipeline(error: PipelineError) -> LedgerError {
        match error {
            PipelineError::Full { capacity } => LedgerError::Busy { capacity },
            PipelineError::ShutDown => LedgerError::Stopped,
            PipelineError::InvalidConfig { reason } => LedgerError::Config {
                reason: reason.to_owned(),
            },
            failure => {
                let kind = classify(&failure);
                match failure {
                    // The stage's own error, shared: downcasts still work through it.
                    PipelineError::StageFailed {
                        stage,
                        message,
                        source,
                        ..
                    } => LedgerError::Failed {
                        stage,
                        kind,
                        message,
                        source,
                    },
                    other => LedgerError::Failed {
                        stage: "pipeline".to_owned(),
                        kind,
                        message: other.to_string(),
                        source: None,
                    },
                }
            }
        }
    }
}

fn classify(failure: &PipelineError) -> FailureKind {
    let Some(source) = failure.stage_source() else {
        return FailureKind::Internal;
    };
    if let Some(wal) = source.downcast_ref::<WalError>() {
        return if wal.is_corruption() {
            FailureKind::DataLoss
        } else {
            FailureKind::Storage
        };
    }
    if source.downcast_ref::<ReplayError>().is_some() {
        return FailureKind::Internal;
    }
    FailureKind::Storage
}

impl From<WalError> for LedgerError {
    fn from(e: WalError) -> Self {
        LedgerError::Wal(Arc::new(e))
    }
}

impl From<SnapshotError> for LedgerError {
    fn from(e: SnapshotError) -> Self {
        LedgerError::Snapshot(Arc::new(e))
    }
}

impl From<ConfigError> for LedgerError {
    fn from(e: ConfigError) -> Self {
        LedgerError::Config {
            reason: e.to_string(),
        }
    }
}
