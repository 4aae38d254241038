//! Logs whose frames pass every checksum but whose records do not add up, as only a
//! broken writer could produce them: replay must refuse them (exit 1, naming file and
//! offset), never panic or wrap.

mod common;

use common::cli;
use ledger_core::record::{FrameEncoder, RecordRef};
use ledger_core::transaction::{Entry, EntryKind, Outcome};
use ledger_wal::{Wal, WalConfig};

fn entry(account_id: u64, amount: u64, kind: EntryKind, balance_after: i64) -> Entry {
    Entry {
        account_id,
        amount,
        kind,
        balance_after,
    }
}

/// Writes one frame per transaction (ids from 1) into `DIR/wal`; returns the data dir.
fn forge(transactions: &[Vec<Entry>]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path().join("wal"), WalConfig::default()).unwrap();
    for (i, entries) in transactions.iter().enumerate() {
        let id = i as u64 + 1;
        let mut buf = Vec::new();
        let mut encoder = FrameEncoder::new(&mut buf, id, 1_000);
        let links = vec![0; entries.len()];
        encoder.push(
            &mut buf,
            RecordRef {
                timestamp_ns: 1_000,
                user_ref: 0,
                outcome: Outcome::Committed,
                entries,
                prev_tx_ids: &links,
            },
        );
        wal.append(id, id, &buf).unwrap();
    }
    wal.sync().unwrap();
    dir
}

fn assert_refused(dir: &tempfile::TempDir, what: &str) {
    let run = cli(dir.path(), &["replay", "-a", "1"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("wal-00000000000000000001.seg offset "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(what), "{}", run.stderr);
    // The frames themselves are intact: `wal verify` checks framing and decoding only.
    assert_eq!(cli(dir.path(), &["wal", "verify"]).code, 0);
}

#[test]
fn a_wrong_balance_after_is_refused() {
    let dir = forge(&[
        vec![
            entry(0, 100, EntryKind::Credit, -100),
            entry(1, 100, EntryKind::Debit, 100),
        ],
        vec![
            entry(1, 30, EntryKind::Credit, 71), // 100 - 30 is 70
            entry(2, 30, EntryKind::Debit, 30),
        ],
    ]);
    assert_refused(
        &dir,
        "transaction 2: account 1 would be 70, the entry says 71",
    );
}

#[test]
fn entries_that_do_not_net_to_zero_are_refused() {
    let dir = forge(&[vec![
        entry(0, 100, EntryKind::Credit, -100),
        entry(1, 99, EntryKind::Debit, 99),
    ]]);
    assert_refused(&dir, "transaction 1: entries do not sum to zero");
}

#[test]
fn a_balance_beyond_i64_is_refused_not_wrapped() {
    let max = i64::MAX as u64;
    let dir = forge(&[
        vec![
            entry(0, max, EntryKind::Credit, -i64::MAX),
            entry(1, max, EntryKind::Debit, i64::MAX),
        ],
        // Account 1 would reach i64::MAX + 1: the record holds the wrapped value.
        vec![
            entry(0, 1, EntryKind::Credit, i64::MIN),
            entry(1, 1, EntryKind::Debit, i64::MIN),
        ],
    ]);
    assert_refused(
        &dir,
        "transaction 2: account 1 would be 9223372036854775808",
    );
}

#[test]
fn an_account_beyond_max_accounts_is_a_usage_error() {
    let dir = forge(&[vec![
        entry(0, 5, EntryKind::Credit, -5),
        entry(5_000, 5, EntryKind::Debit, 5),
    ]]);
    let run = cli(dir.path(), &["replay", "--max-accounts", "1000"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("account 5000"), "{}", run.stderr);
    let ok = cli(dir.path(), &["replay", "-a", "5000"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert_eq!(ok.stdout, "account,balance\n5000,5\n");
}
