//! The one mapping from ledger errors to gRPC statuses. Callers get a code and a message
//! they can act on; storage and internal details go to the log, not over the wire.

use ledger_core::ledger::{FailureKind, LedgerError};
use tonic::{Code, Status};

/// The status for `error`, logging what the client is not told.
pub fn status(error: &LedgerError) -> Status {
    let (code, client_message) = classify(error);
    if is_server_fault(code) {
        tracing::error!(%error, ?code, "request failed");
    } else {
        tracing::debug!(%error, ?code, "request refused");
    }
    Status::new(code, client_message.unwrap_or_else(|| error.to_string()))
}

/// Whether `code` (as [`status`] gives it) puts the blame on the server, not the caller:
/// the ledger's storage or the ledger itself failed, or it is stopped.
pub fn is_server_fault(code: Code) -> bool {
    matches!(code, Code::Internal | Code::DataLoss | Code::Unavailable)
}

/// The code for `error`, and a message to send instead of the error's own text when that
/// would expose internals (file paths, offsets).
fn classify(error: &LedgerError) -> (Code, Option<String>) {
    let storage = || Some("the ledger's storage failed; see the server log".to_owned());
    match error {
        LedgerError::NotStarted | LedgerError::Stopped => (Code::Unavailable, None),
        LedgerError::Busy { .. } => (Code::ResourceExhausted, None),
        // The cluster layer adds the leader's address when it knows it.
        LedgerError::NotLeader => (Code::Unavailable, None),
        LedgerError::Failed { kind, .. } => match kind {
            FailureKind::DataLoss => (Code::DataLoss, storage()),
            FailureKind::Storage => (Code::Unavailable, storage()),
            _ => (
                Code::Internal,
                Some("the ledger stopped after an internal failure".into()),
            ),
        },
        LedgerError::UnknownTransaction { .. } => (Code::NotFound, None),
        LedgerError::NotRetained { .. } => (Code::OutOfRange, None),
        LedgerError::NotCommitted { .. } => (Code::FailedPrecondition, None),
        LedgerError::Timeout { .. } => (Code::DeadlineExceeded, None),
        LedgerError::InvalidBatch { .. } | LedgerError::AccountOutOfRange { .. } => {
            (Code::InvalidArgument, None)
        }
        LedgerError::Wal(e) if e.is_corruption() => (Code::DataLoss, storage()),
        LedgerError::Snapshot(e) if e.is_corruption() => (Code::DataLoss, storage()),
        LedgerError::Wal(_) | LedgerError::Snapshot(_) => (Code::Unavailable, storage()),
        LedgerError::CorruptRecord { .. }
        | LedgerError::ReplayMismatch { .. }
        | LedgerError::BrokenChain { .. }
        | LedgerError::Restore { .. }
        | LedgerError::WalGap { .. } => (Code::DataLoss, storage()),
        LedgerError::AlreadyStarted | LedgerError::Config { .. } => (
            Code::Internal,
            Some("internal error; see the server log".into()),
        ),
        // A variant newer than this mapping: refuse without guessing.
        _ => (
            Code::Internal,
            Some("internal error; see the server log".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_keep_their_message_and_storage_errors_do_not() {
        let s = status(&LedgerError::AccountOutOfRange {
            account: 9,
            max_accounts: 5,
        });
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("account 9"), "{}", s.message());
        let s = status(&LedgerError::CorruptRecord {
            segment: "/secret/path/00000001.wal".into(),
            offset: 7,
            source: std::sync::Arc::new(ledger_core::record::RecordError::UnknownVersion {
                version: 9,
            }),
        });
        assert_eq!(s.code(), Code::DataLoss);
        assert!(!s.message().contains("/secret"), "{}", s.message());
        assert_eq!(
            status(&LedgerError::Busy { capacity: 4 }).code(),
            Code::ResourceExhausted
        );
        assert_eq!(status(&LedgerError::Stopped).code(), Code::Unavailable);
        assert_eq!(
            status(&LedgerError::NotRetained {
                tx_id: 1,
                first_retained: 5
            })
            .code(),
            Code::OutOfRange
        );
    }
}
