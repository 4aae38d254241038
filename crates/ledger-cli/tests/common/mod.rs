//! A real data directory written by the engine (small segments, frequent snapshots), the
//! engine's own answers about it, and a way to run the `ledger-cli` binary on it.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use ledger_core::ledger::{Ledger, LedgerConfig, Transaction};
use ledger_core::transaction::{CompositeOperation, Entry, EntryKind, Operation, Step, WaitLevel};

/// Accounts the workload uses (0 is the system account).
pub const ACCOUNTS: u64 = 12;

/// What the engine wrote and said.
#[derive(Debug)]
pub struct Written {
    /// The pristine data directory; tests that damage it work on a [`copy`].
    pub dir: tempfile::TempDir,
    /// Every transaction as the engine's `get_transaction` returned it, ids 1..
    pub transactions: Vec<Transaction>,
    /// `get_balance_at(account, tx)` for a few `(account, tx)` pairs.
    pub balance_at: Vec<(u64, u64, i64)>,
    /// Final balances of accounts `0..ACCOUNTS` (`get_balance`).
    pub final_balances: Vec<i64>,
}

impl Written {
    pub fn last_tx_id(&self) -> u64 {
        self.transactions.len() as u64
    }

    /// Balances after transaction `tx` from the engine's own entries (a model: the last
    /// balance-after of each account at or before `tx`).
    pub fn model_at(&self, tx: u64) -> Vec<i64> {
        let mut balances = vec![0i64; ACCOUNTS as usize];
        for t in self.transactions.iter().take_while(|t| t.tx_id <= tx) {
            for e in &t.entries {
                balances[e.account_id as usize] = e.balance_after;
            }
        }
        balances
    }
}

/// The data directory every test reads, written once per test binary.
pub fn written() -> &'static Written {
    static WRITTEN: OnceLock<Written> = OnceLock::new();
    WRITTEN.get_or_init(write)
}

fn write() -> Written {
    // A static is never dropped, so this directory outlives the test process: it goes
    // under cargo's own scratch directory (`target/tmp`, removed by `cargo clean`), not
    // the system's.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let config = LedgerConfig {
        max_accounts: ACCOUNTS,
        // A frame per transaction (each waited for) and ~1 KiB segments: many segments.
        wal_segment_bytes: 1024,
        snapshot_interval_tx: 60,
        snapshots_kept: NonZeroUsize::new(100).expect("non-zero"),
        wal_keep_all: true,
        ..LedgerConfig::in_dir(dir.path())
    };
    let mut ledger = Ledger::new(config);
    ledger.start().expect("start");
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut ops = Vec::new();
    for account in 1..=8 {
        ops.push(Operation::Deposit {
            account,
            amount: 1000 * account,
            user_ref: 0,
        });
    }
    for i in 0..230u64 {
        let op = match i % 23 {
            // A composite: a transfer plus a fee.
            0 => Operation::Composite(Box::new(CompositeOperation {
                steps: vec![
                    Step::Credit {
                        account_id: 1 + next(8),
                        amount: 30,
                    },
                    Step::Debit {
                        account_id: 1 + next(10),
                        amount: 29,
                    },
                    Step::Debit {
                        account_id: ACCOUNTS - 1,
                        amount: 1,
                    },
                ],
                flags: CompositeOperation::CHECK_NEGATIVE_BALANCE,
                user_ref: 0,
            })),
            // A retried request: rejected as a duplicate of the first.
            7 | 8 => Operation::Transfer {
                from: 2,
                to: 3,
                amount: 5,
                user_ref: 1_000 + i / 23,
            },
            11 => Operation::Withdrawal {
                account: 1 + next(8),
                amount: 1 + next(50),
                user_ref: 0,
            },
            // Two-phase transfers (ids are positions: a fresh ledger, one at a time):
            // a hold, then its post or its void; some holds are refused.
            3 | 13 => Operation::hold(1 + next(8), 1 + next(10), 1 + next(300), 0, 0),
            4 => Operation::PostHold {
                hold_id: ops.len() as u64,
                amount: 0,
                user_ref: 0,
            },
            14 => Operation::VoidHold {
                hold_id: ops.len() as u64,
                user_ref: 0,
            },
            // Accounts 9 and 10 start empty: some of these are rejected.
            _ => Operation::Transfer {
                from: 1 + next(10),
                to: 1 + next(10),
                amount: 1 + next(400),
                user_ref: if i % 5 == 0 { 5_000 + i } else { 0 },
            },
        };
        ops.push(op);
    }
    for op in ops {
        ledger.submit_and_wait(op, WaitLevel::Committed);
    }
    let last = ledger.pipeline_index().committed;
    let transactions: Vec<Transaction> = (1..=last)
        .map(|id| ledger.get_transaction(id).expect("committed"))
        .collect();
    let mut balance_at = Vec::new();
    for tx in [1, 9, 57, 120, last / 2, last - 1] {
        for account in [0, 2, 3, 9, ACCOUNTS - 1] {
            let b = ledger.get_balance_at(account, tx).expect("balance at");
            balance_at.push((account, tx, b.balance));
        }
    }
    let final_balances = (0..ACCOUNTS)
        .map(|a| ledger.get_balance(a).balance)
        .collect();
    ledger.stop().expect("stop");
    drop(ledger);
    Written {
        dir,
        transactions,
        balance_at,
        final_balances,
    }
}

/// A copy of the pristine data directory, to damage.
pub fn copy() -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(written().dir.path(), copy.path());
    copy
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

pub fn wal_dir(data: &Path) -> PathBuf {
    data.join("wal")
}

pub fn snapshot_dir(data: &Path) -> PathBuf {
    data.join("snapshots")
}

/// Segment files, ascending.
pub fn segments(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(wal_dir(data))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

/// Snapshot files, ascending by sequence, with their sequence.
pub fn snapshots(data: &Path) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(snapshot_dir(data))
        .expect("snapshot dir")
        .map(|e| e.expect("entry").path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let seq = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
            Some((seq.parse().ok()?, p.clone()))
        })
        .collect();
    files.sort();
    files
}

/// The result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn of(output: Output) -> Run {
        Run {
            code: output.status.code().expect("exited"),
            stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
        }
    }

    /// Parses every line of standard output as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// Runs `ledger-cli --data-dir DATA ARGS...` with no standard input (as in CI).
pub fn cli(data: &Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_ledger-cli"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .env_remove("LEDGER_DATA_DIR")
        .output()
        .expect("run ledger-cli");
    Run::of(output)
}

/// Reads a file's bytes.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read")
}

/// An entry as a record stores it (for logs forged frame by frame).
pub fn entry(account_id: u64, amount: u64, kind: EntryKind, balance_after: i64) -> Entry {
    Entry {
        account_id,
        amount,
        kind,
        balance_after,
    }
}
