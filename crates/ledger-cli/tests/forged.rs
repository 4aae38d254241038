//! Logs written frame by frame here, to shapes the engine rarely makes: records whose
//! frames pass every checksum but do not add up (balances or back-links), as only a
//! broken writer could produce them (replay must refuse them, exit 1, naming file and
//! offset, never panic or wrap), and snapshots that fall inside a frame.

use std::collections::HashMap;

mod common;

use common::{cli, entry};
use ledger_core::ledger::{Ledger, LedgerConfig, STATE_FORMAT, SnapshotState};
use ledger_core::record::{FrameEncoder, RecordRef};
use ledger_core::transaction::{Entry, EntryKind, Outcome};
use ledger_snapshot::{SnapshotConfig, SnapshotStore};
use ledger_wal::{Wal, WalConfig, WalReader};

/// Writes one frame per transaction (ids from 1) into `DIR/wal`, each entry linking to
/// its account's previous transaction; returns the data dir.
fn forge(transactions: &[Vec<Entry>]) -> tempfile::TempDir {
    forge_with(transactions, |_, _| {})
}

/// [`forge`], with `tamper(tx_id, links)` free to change each record's back-links.
fn forge_with(
    transactions: &[Vec<Entry>],
    mut tamper: impl FnMut(u64, &mut Vec<u64>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path().join("wal"), WalConfig::default()).unwrap();
    let mut latest: HashMap<u64, u64> = HashMap::new();
    for (i, entries) in transactions.iter().enumerate() {
        let id = i as u64 + 1;
        let mut buf = Vec::new();
        let mut encoder = FrameEncoder::new(&mut buf, id, 1_000);
        let mut links: Vec<u64> = entries
            .iter()
            .map(|e| latest.get(&e.account_id).copied().unwrap_or(0))
            .collect();
        for e in entries {
            latest.insert(e.account_id, id);
        }
        tamper(id, &mut links);
        encoder.push(
            &mut buf,
            RecordRef {
                timestamp_ns: 1_000,
                user_ref: 0,
                outcome: Outcome::Committed,
                entries,
                prev_tx_ids: &links,
                effects: &[],
                effect_links: &[],
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
fn a_wrong_back_link_is_refused() {
    let transactions = [
        vec![
            entry(0, 100, EntryKind::Credit, -100),
            entry(1, 100, EntryKind::Debit, 100),
        ],
        vec![
            entry(1, 30, EntryKind::Credit, 70),
            entry(2, 30, EntryKind::Debit, 30),
        ],
    ];
    // Balances right, links [1, 0] right: the log replays.
    let good = forge(&transactions);
    let run = cli(good.path(), &["replay", "-a", "1", "-a", "2"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "account,balance\n1,70\n2,30\n");
    // A link that skips the account's previous transaction, and one on an account that
    // had none.
    for (links, what) in [
        (
            [0, 0],
            "transaction 2: account 1's back-link says 0, but its previous transaction is 1",
        ),
        (
            [1, 1],
            "transaction 2: account 2's back-link says 1, but its previous transaction is 0",
        ),
    ] {
        let dir = forge_with(&transactions, |id, l| {
            if id == 2 {
                l.copy_from_slice(&links);
            }
        });
        assert_refused(&dir, what);
        // The engine's recovery refuses the same record in the same words.
        let mut ledger = Ledger::new(LedgerConfig {
            max_accounts: 16,
            ..LedgerConfig::in_dir(dir.path())
        });
        let error = ledger.start().expect_err("recovery accepted a broken link");
        assert!(error.to_string().contains(what), "{error}");
    }
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

/// Deposits of 10 into accounts 1, 2, 3, ... as frames of `per_frame` transactions.
fn deposits(dir: &std::path::Path, count: u64, per_frame: u64) {
    let (mut wal, _) = Wal::open(dir.join("wal"), WalConfig::default()).unwrap();
    let mut id = 1;
    while id <= count {
        let last = (id + per_frame - 1).min(count);
        let mut buf = Vec::new();
        let mut encoder = FrameEncoder::new(&mut buf, id, 1_000);
        for tx in id..=last {
            let entries = [
                entry(0, 10, EntryKind::Credit, -10 * tx as i64),
                entry(tx, 10, EntryKind::Debit, 10),
            ];
            let links = [tx.saturating_sub(1), 0];
            encoder.push(
                &mut buf,
                RecordRef {
                    timestamp_ns: 1_000,
                    user_ref: 0,
                    outcome: Outcome::Committed,
                    entries: &entries,
                    prev_tx_ids: &links,
                    effects: &[],
                    effect_links: &[],
                },
            );
        }
        wal.append(id, last, &buf).unwrap();
        id = last + 1;
    }
    wal.sync().unwrap();
}

/// Snapshots of the state after each deposit of `seqs` (as the engine would write them).
fn snapshots_after(dir: &std::path::Path, seqs: &[u64]) {
    let states = seqs.iter().map(|&seq| {
        // Account 0's last transaction is `seq`, account `a`'s is `a`.
        let mut latest: Vec<u64> = (0..16).map(|a| if a <= seq { a } else { 0 }).collect();
        latest[0] = seq;
        state_after(seq, latest)
    });
    write_snapshots(dir, states);
}

/// Writes `states` through one store: a store opened and dropped per snapshot could find
/// its lock still held by a child process another test thread forked at that moment (a
/// `flock` is shared with a forked child until it execs).
fn write_snapshots(dir: &std::path::Path, states: impl IntoIterator<Item = SnapshotState>) {
    let store = SnapshotStore::open(dir.join("snapshots"), SnapshotConfig::default()).unwrap();
    for state in states {
        store
            .write_format(state.last_tx_id, STATE_FORMAT, &state)
            .unwrap();
    }
}

/// The state after deposit `seq`, with the chain heads `latest`.
fn state_after(seq: u64, latest: Vec<u64>) -> SnapshotState {
    let mut balances = vec![0i64; 16];
    balances[0] = -10 * seq as i64;
    for balance in balances.iter_mut().skip(1).take(seq as usize) {
        *balance = 10;
    }
    SnapshotState {
        format: STATE_FORMAT,
        last_tx_id: seq,
        now_ns: 1_000,
        balances,
        dedup: Vec::new(),
        latest,
        accounts: Vec::new(),
        system_balances: Vec::new(),
        holds: Vec::new(),
        reversals: Vec::new(),
    }
}

#[test]
fn a_snapshot_inside_a_frame_is_a_valid_start_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // Frames of four: 1-4, 5-8, 9-12; snapshots at 6 and 10, inside frames.
    deposits(dir.path(), 12, 4);
    snapshots_after(dir.path(), &[6, 10]);
    let all = |run: &common::Run| {
        assert_eq!(run.code, 0, "{run:?}");
        run.stdout.clone()
    };
    let expected = |upto: u64| {
        let mut text = format!("account,balance\n0,{}\n", -10 * upto as i64);
        for account in 1..=upto {
            text.push_str(&format!("{account},10\n"));
        }
        text
    };
    let scratch = cli(dir.path(), &["replay", "-o", "-"]);
    assert_eq!(all(&scratch), expected(12));
    assert!(
        scratch.stderr.contains("2 snapshot(s) matched"),
        "{}",
        scratch.stderr
    );
    for chunk in ["1", "3", "100"] {
        let from = cli(
            dir.path(),
            &[
                "replay",
                "--from-snapshot",
                "6",
                "--chunk-records",
                chunk,
                "-o",
                "-",
            ],
        );
        assert_eq!(all(&from), expected(12), "chunk {chunk}");
        assert!(
            from.stderr.contains("replayed 6 transactions (7..=12)"),
            "{}",
            from.stderr
        );
        assert!(
            from.stderr.contains("1 snapshot(s) matched"),
            "{}",
            from.stderr
        );
        let until = cli(
            dir.path(),
            &[
                "replay",
                "--from-snapshot",
                "6",
                "--until",
                "9",
                "--chunk-records",
                chunk,
                "-o",
                "-",
            ],
        );
        assert_eq!(all(&until), expected(9), "chunk {chunk}");
    }
    let latest = cli(
        dir.path(),
        &["replay", "--from-snapshot", "latest", "-o", "-"],
    );
    assert_eq!(all(&latest), expected(12));
    assert!(
        latest.stderr.contains("replayed 2 transactions (11..=12)"),
        "{}",
        latest.stderr
    );
}

#[test]
fn a_replay_from_a_snapshot_follows_the_snapshots_chain_heads() {
    let dir = tempfile::tempdir().unwrap();
    deposits(dir.path(), 12, 4);
    // Right balances, but account 0's last transaction given as 5, not 6.
    let mut latest: Vec<u64> = (0..16).map(|a| if a <= 6 { a } else { 0 }).collect();
    latest[0] = 5;
    write_snapshots(dir.path(), [state_after(6, latest)]);
    // The frame holding transactions 5-8.
    let mut frames = WalReader::open(dir.path().join("wal")).unwrap().frames();
    let offset = loop {
        let frame = frames.next_frame().unwrap().unwrap();
        if frame.first_seq == 5 {
            break frame.offset;
        }
    };
    let run = cli(dir.path(), &["replay", "--from-snapshot", "6", "-a", "1"]);
    assert_eq!(run.code, 1, "{run:?}");
    let expected = format!(
        "wal-00000000000000000001.seg offset {offset}: transaction 7: account 0's back-link \
         says 6, but its previous transaction is 5"
    );
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    // From scratch the log itself is sound, and the snapshot check (every part of the
    // state, chain heads included) finds the snapshot's wrong head.
    let scratch = cli(dir.path(), &["replay", "-a", "1"]);
    assert_eq!(scratch.code, 1, "{scratch:?}");
    assert!(
        scratch.stderr.contains(
            "snapshot-00000000000000000006.snap disagrees with the WAL at transaction 6: \
             last transaction of account 0: the WAL gives 6, the snapshot holds 5"
        ),
        "{}",
        scratch.stderr
    );
    let unchecked = cli(dir.path(), &["replay", "-a", "1", "--no-snapshot-check"]);
    assert_eq!(unchecked.code, 0, "{unchecked:?}");
}

/// A snapshot that differs from the log in any part of the state, not only balances and
/// chain heads, fails replay naming that part.
#[test]
fn a_snapshot_that_differs_in_any_part_is_named() {
    use ledger_core::ledger::{SavedAccount, SavedReversal};
    let configured = SavedAccount {
        account_id: 9,
        currency: 0,
        flags: 0x2,
        overdraft_limit: 0,
        max_balance: None,
        moved: false,
        parent: 0,
    };
    type Change = Box<dyn Fn(&mut SnapshotState)>;
    let cases: [(&str, Change); 3] = [
        (
            "configured account 9: only in the snapshot",
            Box::new(move |s| s.accounts.push(configured)),
        ),
        (
            "sequencer time: the WAL gives 1000, the snapshot holds 2000",
            Box::new(|s| s.now_ns = 2_000),
        ),
        (
            "reversal of transaction 3: only in the snapshot",
            Box::new(|s| {
                let reversal = SavedReversal {
                    original: 3,
                    reversal: 5,
                };
                s.reversals.push(reversal);
            }),
        ),
    ];
    for (expected, change) in cases {
        let dir = tempfile::tempdir().unwrap();
        deposits(dir.path(), 12, 4);
        let mut latest: Vec<u64> = (0..16).map(|a| if a <= 6 { a } else { 0 }).collect();
        latest[0] = 6;
        let mut state = state_after(6, latest);
        change(&mut state);
        write_snapshots(dir.path(), [state]);
        let run = cli(dir.path(), &["replay"]);
        assert_eq!(run.code, 1, "{run:?}");
        let named = format!("disagrees with the WAL at transaction 6: {expected}");
        assert!(run.stderr.contains(&named), "{expected}: {}", run.stderr);
    }
}
