//! Crash and fault tests with real processes and real files.
//!
//! The test binary re-runs itself as the child (`LEDGER_CHILD_DIR` set): the child runs a
//! load on a ledger and prints every transaction it saw reach `Committed`, one line each.
//! The parent SIGKILLs it at a chosen point (or the child hits a file-size limit, which
//! makes WAL writes fail like a full disk), then recovers the directory in-process and
//! checks: every reported transaction is there with the same outcome and entries, ids are
//! contiguous from 1, balances sum to zero and equal a from-scratch replay of the WAL, and
//! the ledger takes new work.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use ledger_core::ledger::{Ledger, LedgerConfig, LedgerError, LinkKind};
use ledger_core::record::FrameDecoder;
use ledger_core::transaction::{
    AccountConfig, CompositeOperation, Effect, Entry, EntryKind, Operation, Outcome, Step,
    WaitLevel,
};
use ledger_core::transactor::{Transactor, TransactorConfig};
use ledger_wal::{FrameKind, WalReader};

const ACCOUNTS: u64 = 1_000;
const CHILD_DIR: &str = "LEDGER_CHILD_DIR";
const CHILD_SEED: &str = "LEDGER_CHILD_SEED";
const CHILD_FSIZE: &str = "LEDGER_CHILD_FSIZE";

fn config(dir: &Path) -> LedgerConfig {
    let mut config = LedgerConfig::in_dir(dir);
    config.max_accounts = ACCOUNTS;
    config.ring_size = 4096;
    // Rotation and snapshots happen often, so kills land in the middle of them too.
    config.wal_segment_bytes = 256 << 10;
    config.snapshot_interval_tx = 4_000;
    config.snapshots_kept = std::num::NonZeroUsize::new(2).unwrap();
    // The WAL is kept whole so the parent can replay it from scratch.
    config.wal_keep_all = true;
    config
}

/// A small xorshift generator: the workload is a function of the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One operation of the children's workload; `holds` are ids of holds placed earlier.
fn random_op(rng: &mut Rng, holds: &[u64]) -> Operation {
    let account = |rng: &mut Rng| 1 + rng.below(ACCOUNTS - 1);
    // A small set of references so duplicates happen.
    let user_ref = |rng: &mut Rng| {
        if rng.below(4) == 0 {
            1 + rng.below(5_000)
        } else {
            0
        }
    };
    let some_hold = |rng: &mut Rng| match holds.len() as u64 {
        0 => 1,
        n => holds[rng.below(n) as usize],
    };
    match rng.below(15) {
        // Reversals of transactions near an earlier hold (any kind: some move money,
        // some do not, some are reversed already).
        14 => Operation::reverse(some_hold(rng) + rng.below(40), user_ref(rng)),
        // Two-phase transfers: holds (some expiring within milliseconds, so the ledger's
        // own expiries land among the kills), posts and voids of earlier ones.
        11 => Operation::hold(
            account(rng),
            account(rng),
            1 + rng.below(300),
            rng.below(3) * 2_000_000,
            user_ref(rng),
        ),
        12 => Operation::PostHold {
            hold_id: some_hold(rng),
            amount: rng.below(200),
            user_ref: user_ref(rng),
        },
        13 => Operation::VoidHold {
            hold_id: some_hold(rng),
            user_ref: user_ref(rng),
        },
        // Now and then an account takes a currency (0 or 1), an overdraft limit and a
        // maximum, so that crashes land among configured accounts too.
        10 => Operation::ConfigureAccount {
            account: account(rng),
            config: Box::new(AccountConfig {
                currency: rng.below(2) as u32,
                overdraft_limit: rng.below(3) * 100,
                max_balance: (rng.below(2) == 0).then_some(50_000),
                parent: if rng.below(3) == 0 { account(rng) } else { 0 },
                ..AccountConfig::default()
            }),
            user_ref: user_ref(rng),
        },
        0..=2 => Operation::Deposit {
            account: account(rng),
            amount: 1 + rng.below(1_000),
            user_ref: user_ref(rng),
        },
        3 => Operation::Withdrawal {
            account: account(rng),
            amount: 1 + rng.below(500),
            user_ref: user_ref(rng),
        },
        4 => Operation::Composite(Box::new(CompositeOperation {
            steps: vec![
                Step::Credit {
                    account_id: account(rng),
                    amount: 11,
                },
                Step::Debit {
                    account_id: account(rng),
                    amount: 10,
                },
                Step::Debit {
                    account_id: 0,
                    amount: 1,
                },
            ],
            flags: CompositeOperation::CHECK_NEGATIVE_BALANCE,
            user_ref: user_ref(rng),
        })),
        _ => Operation::Transfer {
            from: account(rng),
            to: account(rng),
            amount: 1 + rng.below(300),
            user_ref: user_ref(rng),
        },
    }
}

/// The child: runs batches until killed, printing `C <tx> <outcome>` for every
/// transaction seen committed. On a failure prints `E <kind> <message>` and exits 3.
fn child(dir: &Path) {
    let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
    if let Ok(limit) = std::env::var(CHILD_FSIZE) {
        limit_file_size(limit.parse().unwrap());
    }
    let mut ledger = Ledger::new(config(dir));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Err(e) = ledger.start() {
        writeln!(out, "E start {e}").unwrap();
        std::process::exit(3);
    }
    writeln!(
        out,
        "READY {}",
        ledger.recovery_report().unwrap().last_tx_id
    )
    .unwrap();
    out.flush().unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut holds: Vec<u64> = Vec::new();
    loop {
        let ops: Vec<Operation> = (0..32).map(|_| random_op(&mut rng, &holds)).collect();
        let placed: Vec<bool> = ops
            .iter()
            .map(|op| matches!(op, Operation::Hold(_)))
            .collect();
        match ledger.try_submit_batch_and_wait(ops, WaitLevel::Committed) {
            Ok(results) => {
                for (r, hold) in results.iter().zip(placed) {
                    if hold && r.is_committed() {
                        holds.push(r.tx_id);
                    }
                }
                for r in results {
                    writeln!(out, "C {} {}", r.tx_id, outcome_text(&r.outcome())).unwrap();
                }
                out.flush().unwrap();
            }
            Err(e) => {
                let kind = match &e {
                    LedgerError::Failed { kind, .. } => format!("{kind:?}"),
                    other => format!("other:{other:?}"),
                };
                writeln!(out, "E {kind} {e}").unwrap();
                out.flush().unwrap();
                // Waiting again must fail the same way, never report the batch committed.
                let last = ledger.pipeline_index().committed;
                assert!(ledger.try_wait_for(last + 1, WaitLevel::Committed).is_err());
                std::process::exit(3);
            }
        }
    }
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Committed => "ok".to_owned(),
        Outcome::Rejected(reason) => format!("{reason:?}").replace(' ', ""),
    }
}

/// Writes beyond `bytes` in any file fail with EFBIG: the WAL sees a full disk.
fn limit_file_size(bytes: u64) {
    // SAFETY: plain syscalls on this process's own limits and signal disposition.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

/// One record read back: id, outcome, entries, timestamp, user_ref, effects, and the
/// accounts the effects link.
type WalRecord = (u64, Outcome, Vec<Entry>, u64, u64, Vec<Effect>, Vec<u64>);

/// Every record in the WAL, in order, checked contiguous from 1.
fn read_wal(dir: &Path) -> Vec<WalRecord> {
    let reader = WalReader::open(dir.join("wal")).unwrap();
    let mut frames = reader.frames();
    let mut records = Vec::new();
    while let Some(frame) = frames.next_frame().unwrap() {
        if frame.kind != FrameKind::Records {
            continue;
        }
        let mut decoder =
            FrameDecoder::new(frame.payload, frame.first_seq, frame.record_count).unwrap();
        while let Some(r) = decoder.next_record().unwrap() {
            assert_eq!(
                r.tx_id,
                records.len() as u64 + 1,
                "ids are contiguous from 1"
            );
            records.push((
                r.tx_id,
                r.outcome,
                r.entries.to_vec(),
                r.timestamp_ns,
                r.user_ref,
                r.effects.to_vec(),
                r.effect_links.iter().map(|l| l.account_id).collect(),
            ));
        }
    }
    records
}

/// Recovers `dir` in-process and checks it against everything the children reported.
fn check_recovered(dir: &Path, reported: &BTreeMap<u64, String>) {
    // Nothing but this check writes: no hold expires behind its back.
    let mut ledger = Ledger::new(LedgerConfig {
        expire_holds: false,
        ..config(dir)
    });
    ledger.start().expect("recovery after the crash");
    let report = ledger.recovery_report().unwrap().clone();
    let records = read_wal(dir);
    assert_eq!(records.len() as u64, report.last_tx_id, "{report:?}");
    for (&tx, outcome) in reported {
        let record = records
            .get(tx as usize - 1)
            .unwrap_or_else(|| panic!("acknowledged transaction {tx} is lost ({report:?})"));
        assert_eq!(&outcome_text(&record.1), outcome, "transaction {tx}");
    }
    // A from-scratch replay of the WAL reproduces every balance (and checks each
    // recorded balance-after on the way).
    let mut replayed = Transactor::new(TransactorConfig {
        max_accounts: ACCOUNTS,
        ..TransactorConfig::default()
    })
    .unwrap();
    for (tx, outcome, entries, ts, user_ref, effects, _) in &records {
        if outcome.is_committed() {
            assert_eq!(entries.iter().map(Entry::delta).sum::<i128>(), 0, "tx {tx}");
            assert!(entries.iter().all(|e| e.amount > 0));
            assert!(entries.iter().any(|e| e.kind == EntryKind::Credit) || entries.is_empty());
        }
        replayed
            .replay(*tx, *ts, *user_ref, *outcome, entries, effects)
            .unwrap();
    }
    let accounts: Vec<u64> = (0..ACCOUNTS).collect();
    let balances = ledger.get_balances(&accounts);
    assert_eq!(balances.last_snapshot_tx_id, report.last_tx_id);
    assert_eq!(
        balances.balances.iter().map(|&b| b as i128).sum::<i128>(),
        0
    );
    assert_eq!(
        balances.balances,
        replayed.balances(),
        "balances equal a full replay"
    );
    // So do the holds, and the accounts' configurations, and the system account's share
    // per currency.
    for (id, hold) in replayed.holds().sorted() {
        assert_eq!(ledger.get_hold(id).unwrap().0, Some(hold), "hold {id}");
    }
    for account in 0..ACCOUNTS {
        let reserved = replayed.holds().reserved(account);
        let info = ledger.get_account(account).unwrap();
        assert_eq!(
            (info.held_outgoing, info.held_incoming),
            (reserved.outgoing, reserved.incoming),
            "account {account}"
        );
    }
    for account in 0..ACCOUNTS {
        let info = ledger.get_account(account).unwrap();
        let stored = replayed.accounts().get(account);
        assert_eq!(info.configured, stored.is_some(), "account {account}");
        assert_eq!(
            info.config,
            replayed.account_config(account).unwrap(),
            "account {account}"
        );
    }
    assert_eq!(
        ledger.get_system_balance(1).unwrap().balance,
        replayed.system_balance(1)
    );
    // The hierarchies' aggregates and the reversals, too.
    for account in 0..ACCOUNTS {
        let info = ledger.get_account(account).unwrap();
        assert_eq!(
            Some(info.aggregate_balance),
            replayed.aggregate_balance(account),
            "aggregate of {account}"
        );
    }
    for (original, reversal) in replayed.reversals() {
        let links = ledger.get_transaction(original).unwrap().links;
        assert!(
            links
                .iter()
                .any(|l| l.kind == LinkKind::ReversedBy && l.to_tx_id == reversal),
            "{original} reversed by {reversal}: {links:?}"
        );
    }
    assert_eq!(
        replayed.accounts().unbalanced_currency(replayed.balances()),
        None
    );
    check_histories(&ledger, &records);
    // And it takes new work.
    let result = ledger.submit_and_wait(
        Operation::Deposit {
            account: 1,
            amount: 1,
            user_ref: 0,
        },
        WaitLevel::Committed,
    );
    assert_eq!(result.tx_id, report.last_tx_id + 1);
    assert!(result.is_committed());
    ledger.stop().unwrap();
}

/// Each account's history, walked page by page after recovery, holds exactly the
/// records that name the account by an entry or an effect link: the chains through
/// holds and configurations survived the crash.
fn check_histories(ledger: &Ledger, records: &[WalRecord]) {
    for account in 0..ACCOUNTS {
        let mut expected: Vec<u64> = records
            .iter()
            .filter(|(_, _, entries, _, _, _, linked)| {
                entries.iter().any(|e| e.account_id == account) || linked.contains(&account)
            })
            .map(|r| r.0)
            .collect();
        expected.reverse();
        let mut walked = Vec::new();
        let mut from = 0;
        loop {
            let page = ledger.get_account_history(account, from, 7).unwrap();
            let ids = page.entries.iter().map(|e| e.tx_id);
            let mut ids: Vec<u64> = ids.chain(page.events.iter().map(|e| e.tx_id)).collect();
            ids.sort_unstable_by(|a, b| b.cmp(a));
            ids.dedup();
            walked.extend(ids);
            if page.next_tx_id == 0 {
                break;
            }
            from = page.next_tx_id;
        }
        assert_eq!(walked, expected, "account {account}'s history");
    }
}

/// Runs one child; `kill_after` complete `C` lines it is SIGKILLed (`None`: let it run
/// to its own end). Returns the lines it printed.
fn run_child(dir: &Path, seed: u64, kill_after: Option<usize>, fsize: Option<u64>) -> Vec<String> {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_entry_point",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_SEED, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(limit) = fsize {
        command.env(CHILD_FSIZE, limit.to_string());
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    let mut committed = 0;
    let mut killed = false;
    let mut reader = BufReader::new(stdout);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // A line cut short by the kill was never completely reported: not a claim.
        let Some(line) = line.strip_suffix('\n').map(str::to_owned) else {
            break;
        };
        if line.starts_with("C ") {
            committed += 1;
        }
        lines.push(line);
        if !killed && kill_after.is_some_and(|k| committed >= k) {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    child.wait().unwrap();
    lines
}

fn committed_lines(lines: &[String], reported: &mut BTreeMap<u64, String>) {
    for line in lines {
        let mut parts = line.split(' ');
        if parts.next() == Some("C")
            && let (Some(tx), Some(outcome)) = (parts.next(), parts.next())
        {
            reported.insert(tx.parse().unwrap(), outcome.to_owned());
        }
    }
}

#[test]
fn child_entry_point() {
    // Only does something when run as the child of the tests below.
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(Path::new(&dir));
    }
}

#[test]
fn sigkill_at_chosen_moments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut reported = BTreeMap::new();
    let mut rng = Rng(0xC0FFEE);
    for cycle in 0..20u64 {
        let kill_after = 100 + rng.below(12_000) as usize;
        let lines = run_child(dir.path(), cycle + 1, Some(kill_after), None);
        assert!(
            lines.iter().any(|l| l.contains("READY")),
            "the child started: {:?}",
            lines.first()
        );
        committed_lines(&lines, &mut reported);
        check_recovered(dir.path(), &reported);
    }
    assert!(reported.len() > 1_000);
}

#[test]
fn a_full_disk_stops_the_ledger_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut reported = BTreeMap::new();
    for (cycle, limit) in [150_000u64, 200_000, 230_000].into_iter().enumerate() {
        // The limit is per file: the WAL segment (256 KiB) hits it and its write fails.
        let lines = run_child(dir.path(), 100 + cycle as u64, None, Some(limit));
        let last = lines.last().cloned().unwrap_or_default();
        assert!(
            last.starts_with("E Storage") || last.starts_with("E start"),
            "the child reports a storage failure: {last}"
        );
        committed_lines(&lines, &mut reported);
        check_recovered(dir.path(), &reported);
    }
    assert!(!reported.is_empty());
}
