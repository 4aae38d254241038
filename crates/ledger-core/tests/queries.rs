//! Transaction and history queries, through the public API, on real files.

use ledger_core::ledger::{
    Ledger, LedgerConfig, LedgerError, TransactionStatus, TransactionStatusInfo,
};
use ledger_core::transaction::{FailReason, Operation, WaitLevel};

fn started(dir: &tempfile::TempDir) -> Ledger {
    let mut config = LedgerConfig::in_dir(dir.path());
    config.max_accounts = 1_000;
    config.ring_size = 1024;
    let mut ledger = Ledger::new(config);
    ledger.start().expect("start");
    ledger
}

fn deposit(account: u64, amount: u64) -> Operation {
    Operation::Deposit {
        account,
        amount,
        user_ref: 0,
    }
}

fn withdrawal(account: u64, amount: u64) -> Operation {
    Operation::Withdrawal {
        account,
        amount,
        user_ref: 0,
    }
}

fn rank(status: TransactionStatus) -> u8 {
    match status {
        TransactionStatus::Pending => 0,
        TransactionStatus::Computed => 1,
        TransactionStatus::Committed => 2,
        TransactionStatus::OnSnapshot | TransactionStatus::Error => 3,
    }
}

#[test]
fn status_of_committed_rejected_and_unknown_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = started(&dir);
    let ok = ledger.submit_and_wait(deposit(1, 100), WaitLevel::Snapshotted);
    let refused = ledger.submit_and_wait(withdrawal(2, 5), WaitLevel::Committed);
    assert_eq!(
        ledger.get_transaction_status(ok.tx_id).unwrap(),
        TransactionStatusInfo {
            status: TransactionStatus::OnSnapshot,
            fail_reason: None
        }
    );
    assert_eq!(
        ledger.get_transaction_status(refused.tx_id).unwrap(),
        TransactionStatusInfo {
            status: TransactionStatus::Error,
            fail_reason: Some(FailReason::InsufficientFunds)
        }
    );
    for never_issued in [0, refused.tx_id + 1, u64::MAX] {
        match ledger.get_transaction_status(never_issued) {
            Err(LedgerError::UnknownTransaction { tx_id, last_issued }) => {
                assert_eq!((tx_id, last_issued), (never_issued, refused.tx_id));
            }
            other => panic!("{never_issued}: {other:?}"),
        }
    }
    let both = ledger
        .get_transaction_statuses(&[ok.tx_id, refused.tx_id])
        .unwrap();
    assert_eq!(both[0].status, TransactionStatus::OnSnapshot);
    assert_eq!(both[1].status, TransactionStatus::Error);
    assert!(ledger.get_transaction_statuses(&[ok.tx_id, 999]).is_err());
    assert!(matches!(
        Ledger::new(LedgerConfig::in_dir(dir.path().join("other"))).get_transaction_status(1),
        Err(LedgerError::NotStarted)
    ));
}

#[test]
fn statuses_only_move_forward_and_end_on_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = started(&dir);
    let ids = ledger.submit_batch((1..=1_000).map(|i| deposit(1 + i % 100, 1)).collect());
    let mut seen = vec![0u8; ids.len()];
    // Read every status while the pipeline works, then again after it finished.
    for round in 0..3 {
        if round == 2 {
            ledger.wait_for(*ids.last().unwrap(), WaitLevel::Snapshotted);
        }
        for (i, &id) in ids.iter().enumerate() {
            let status = ledger.get_transaction_status(id).unwrap();
            assert_eq!(status.fail_reason, None);
            let r = rank(status.status);
            assert!(r >= seen[i], "tx {id} went back to {:?}", status.status);
            seen[i] = r;
        }
    }
    assert!(seen.iter().all(|&r| r == 3));
}
