//! The fault simulator: the real engine on a simulated disk, a seeded random workload,
//! and crashes, power losses and I/O faults, checked against a model after every restart.
//!
//! One seed is one simulated life of a ledger: a random configuration (segment and frame
//! sizes, snapshot interval and retention, read cache), then cycles of "start (maybe
//! crashing during recovery, several times), check, run a workload while a fault is
//! armed, end the process". The faults: a process crash or a power loss at a point of the
//! WAL's or the snapshots' sequence of operations (so inside a group commit, a segment
//! rotation, a snapshot write), random `EIO` / `ENOSPC` / short writes on writes, syncs and
//! directory operations, one failing call, a disk that fills up, a clean stop.
//!
//! The model is what the simulator was told: every acknowledged transaction with its
//! outcome and entries, every balance read with the index it was read at. After every
//! restart it checks:
//!
//! - every transaction acknowledged `Committed` is there, with the same id, outcome and
//!   entries; transactions that were not acknowledged may be there or not;
//! - nothing reported is taken away by a power loss right after recovery, and nothing a
//!   read showed (its index) is above what recovery finds;
//! - balances (all of them, as one cut), `get_balance_at`, account history and the
//!   idempotency window agree with the model; every entry's balance-after is its
//!   account's previous balance plus the entry; the balances sum to zero;
//! - recovery succeeds whenever the disk honoured every acknowledged sync: any refusal is
//!   a failure of the run;
//! - a failed write or sync stops the ledger: no later operation is acknowledged by it.
//!
//! A seed fixes the configuration, the workload and the fault schedule. The engine's
//! threads still interleave as the OS schedules them (whether a snapshot comes due while
//! the previous one is still being written, the order of WAL and snapshot I/O): the disk's
//! random draws are keyed by file and count, not by that order, so a seed replays the
//! same run unless a failure depends on such timing.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ledger_core::ledger::{Ledger, LedgerConfig, LedgerError, Transaction};
use ledger_core::storage::sim::{Fault, FaultRates, Restart, Rng, SimDisk};
use ledger_core::transaction::{
    CompositeOperation, Entry, FailReason, Operation, Outcome, Step, SubmitResult, WaitLevel,
};

/// Accounts the workload uses (1..=ACCOUNTS; 0 is the system account).
const ACCOUNTS: u64 = 12;
/// `max_accounts` of the simulated ledger: ids at or above it are rejected.
const MAX_ACCOUNTS: u64 = 16;
const DATA: &str = "/data";

/// What one or more seeds covered.
#[derive(Debug, Default, Clone, Copy)]
pub struct Coverage {
    pub seeds: u64,
    /// Processes ended (each followed by a restart and the checks).
    pub cycles: u64,
    pub crashes: u64,
    pub power_losses: u64,
    /// Crashes or power losses during recovery itself.
    pub recovery_crashes: u64,
    /// Calls the disk failed by injection (chosen, random, disk full).
    pub injected_faults: u64,
    /// Transactions acknowledged `Committed` (outcome committed or rejected).
    pub acknowledged: u64,
    /// Transactions read back and compared with the model.
    pub checked: u64,
}

impl Coverage {
    pub fn add(&mut self, other: &Coverage) {
        self.seeds += other.seeds;
        self.cycles += other.cycles;
        self.crashes += other.crashes;
        self.power_losses += other.power_losses;
        self.recovery_crashes += other.recovery_crashes;
        self.injected_faults += other.injected_faults;
        self.acknowledged += other.acknowledged;
        self.checked += other.checked;
    }
}

/// The command that replays `seed`.
pub fn reproduce(seed: u64, cycles: u32) -> String {
    format!(
        "cargo run --release -p ledger-core --example simulate -- --seed {seed} --cycles {cycles}"
    )
}

/// Runs one seed for `cycles` process lifetimes. `Err` says what broke, with the command
/// that replays it.
pub fn run_seed(seed: u64, cycles: u32) -> Result<Coverage, String> {
    Sim::new(seed).run(cycles).map_err(|e| {
        format!(
            "seed {seed} failed: {e}\n  reproduce: {}",
            reproduce(seed, cycles)
        )
    })
}

/// A known durable transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    outcome: Outcome,
    user_ref: u64,
    entries: Vec<Entry>,
}

impl From<Transaction> for Known {
    fn from(read: Transaction) -> Known {
        Known {
            outcome: read.outcome,
            user_ref: read.user_ref,
            entries: read.entries,
        }
    }
}

/// What the simulator knows is durable.
#[derive(Debug, Default)]
struct Model {
    txs: BTreeMap<u64, Known>,
    /// Per account: balance after each transaction that touched it.
    balances: HashMap<u64, BTreeMap<u64, i64>>,
    /// Committed `user_ref` -> its transaction (ordered: the workload picks from it).
    refs: BTreeMap<u64, u64>,
    /// Every id up to this was acknowledged durable.
    acked: u64,
    /// The highest index a read has shown.
    seen: u64,
}

impl Model {
    fn balance_at(&self, account: u64, tx: u64) -> i64 {
        self.balances
            .get(&account)
            .and_then(|m| m.range(..=tx).next_back().map(|(_, b)| *b))
            .unwrap_or(0)
    }

    /// Adds a durable transaction, checking its entries continue the balances.
    fn insert(&mut self, tx: u64, known: Known) -> Result<(), String> {
        if let Some(last) = self.txs.keys().next_back()
            && *last >= tx
        {
            return Err(format!("transaction {tx} inserted after {last}"));
        }
        if known.outcome.is_committed() {
            for entry in &known.entries {
                let before = i128::from(self.balance_at(entry.account_id, tx - 1));
                let mut running = before;
                // Several entries of one transaction on one account chain through it.
                if let Some(b) = self
                    .balances
                    .get(&entry.account_id)
                    .and_then(|m| m.get(&tx))
                {
                    running = i128::from(*b);
                }
                if running + entry.delta() != i128::from(entry.balance_after) {
                    return Err(format!(
                        "transaction {tx}: account {} was {running}, entry {:?} says {}",
                        entry.account_id, entry.kind, entry.balance_after
                    ));
                }
                self.balances
                    .entry(entry.account_id)
                    .or_default()
                    .insert(tx, entry.balance_after);
            }
            if known.user_ref != 0 {
                self.refs.insert(known.user_ref, tx);
            }
        } else if !known.entries.is_empty() {
            return Err(format!("rejected transaction {tx} has entries"));
        }
        self.txs.insert(tx, known);
        Ok(())
    }

    /// Forgets every transaction above `last` (they were lost with the process: none was
    /// acknowledged, checked by the caller).
    fn truncate(&mut self, last: u64) {
        let lost = self.txs.split_off(&(last + 1));
        for (tx, known) in lost {
            if known.user_ref != 0 && self.refs.get(&known.user_ref) == Some(&tx) {
                self.refs.remove(&known.user_ref);
            }
        }
        for per in self.balances.values_mut() {
            per.split_off(&(last + 1));
        }
    }
}

/// Why a check stopped.
#[derive(Debug)]
enum Stop {
    /// A read failed with an I/O error while a fault was armed: the process is dying.
    Dying,
    /// The engine broke a promise.
    Broken(String),
}

impl From<String> for Stop {
    fn from(message: String) -> Stop {
        Stop::Broken(message)
    }
}

impl Stop {
    /// For checks that run with no fault armed, where no I/O error is expected.
    fn message(self) -> String {
        match self {
            Stop::Dying => "an I/O error with no fault armed".to_owned(),
            Stop::Broken(message) => message,
        }
    }
}

/// How the current process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// kill -9 at the n-th WAL operation.
    CrashInWal(u64),
    /// Power loss at the n-th WAL operation.
    PowerLossInWal(u64),
    /// kill -9 or power loss at the n-th snapshot-directory operation.
    CrashInSnapshot(u64, Restart),
    /// Random faults on writes, syncs and directory operations.
    RandomFaults(FaultRates, Restart),
    /// The disk fills up `room` bytes from now.
    DiskFull(u64, Restart),
    /// One chosen call fails.
    OneFault(u64, Fault, Restart),
    /// A clean stop, then the process exits.
    CleanStop,
}

struct Sim {
    seed: u64,
    rng: Rng,
    disk: SimDisk,
    config: LedgerConfig,
    model: Model,
    coverage: Coverage,
    /// A fresh user_ref counter.
    next_ref: u64,
    /// A fault is armed: reads may fail with I/O errors.
    armed: bool,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let pick =
            |rng: &mut Rng, options: &[u64]| options[rng.below(options.len() as u64) as usize];
        let config = LedgerConfig {
            data_dir: PathBuf::from(DATA),
            max_accounts: MAX_ACCOUNTS,
            ring_size: pick(&mut rng, &[16, 64, 256]) as usize,
            wal_segment_bytes: pick(&mut rng, &[1 << 10, 4 << 10, 64 << 10]),
            wal_frame_bytes: pick(&mut rng, &[4096, 8192]) as usize,
            snapshot_interval_tx: pick(&mut rng, &[5, 20, 100, 1000]),
            snapshot_interval: Duration::from_secs(3600),
            snapshots_kept: NonZeroUsize::new(pick(&mut rng, &[1, 2, 3]) as usize)
                .expect("not zero"),
            wal_keep_all: rng.below(4) == 0,
            history_retention_tx: pick(&mut rng, &[300, 100_000]),
            read_cache_bytes: pick(&mut rng, &[0, 64 << 10]) as usize,
            snapshot_on_stop: rng.below(2) == 0,
            dedup_window: Duration::from_secs(24 * 3600),
            ..LedgerConfig::default()
        };
        Sim {
            seed,
            disk: SimDisk::new(seed),
            rng,
            config,
            model: Model::default(),
            coverage: Coverage {
                seeds: 1,
                ..Coverage::default()
            },
            next_ref: 1,
            armed: false,
        }
    }

    fn run(mut self, cycles: u32) -> Result<Coverage, String> {
        for cycle in 0..cycles {
            self.cycle().map_err(|e| format!("cycle {cycle}: {e}"))?;
            self.coverage.cycles += 1;
        }
        self.coverage.injected_faults = self.disk.stats().faults;
        Ok(self.coverage)
    }

    /// One process lifetime: start, check, work under a fault, end.
    fn cycle(&mut self) -> Result<(), String> {
        let mut ledger = self.start()?;
        if self.rng.below(3) == 0 {
            // What recovery reported must be durable: pull the plug before anything else
            // (a later sync of the same file would make it durable and hide the fault).
            let reported = ledger.recovery_report().map_or(0, |r| r.last_tx_id);
            self.end(ledger, Restart::PowerLoss);
            ledger = self.start()?;
            let after = ledger.recovery_report().map_or(0, |r| r.last_tx_id);
            if after < reported {
                return Err(format!(
                    "recovery reported transactions up to {reported}, a power loss right \
                     after took them back to {after}"
                ));
            }
        }
        self.check_recovered(&ledger)?;
        let plan = self.plan();
        self.arm(plan);
        self.armed = plan != Plan::CleanStop;
        let failed = self.workload(&ledger, plan)?;
        self.armed = false;
        match plan {
            Plan::CleanStop => {
                let stopped = ledger.stop();
                if failed || stopped.is_err() {
                    return Err(format!("a clean stop failed: {stopped:?}"));
                }
                drop(ledger);
                self.disk.restart(Restart::Crash);
                self.coverage.crashes += 1;
            }
            _ => self.end(ledger, restart_of(plan)),
        }
        self.disk.clear_faults();
        Ok(())
    }

    /// Ends the process without letting it do anything more (kill -9, or the plug).
    fn end(&mut self, ledger: Ledger, how: Restart) {
        self.disk.halt();
        drop(ledger);
        self.disk.restart(how);
        match how {
            Restart::Crash => self.coverage.crashes += 1,
            Restart::PowerLoss => self.coverage.power_losses += 1,
        }
    }

    /// Starts a ledger, crashing it during recovery first, sometimes several times.
    fn start(&mut self) -> Result<Ledger, String> {
        while self.rng.below(5) == 0 {
            let steps = self.disk.stats().steps;
            self.disk.halt_at(steps + 1 + self.rng.below(40));
            let mut ledger = Ledger::with_storage(self.config.clone(), self.disk.storage());
            let started = ledger.start();
            let how = if self.rng.below(2) == 0 {
                Restart::Crash
            } else {
                Restart::PowerLoss
            };
            self.disk.halt();
            drop(ledger);
            self.disk.restart(how);
            self.coverage.recovery_crashes += 1;
            if let Err(e) = started
                && !is_injected(&e)
            {
                return Err(format!("recovery refused (while crashing it): {e}"));
            }
        }
        if self.rng.below(5) == 0 {
            // Reads that fail during recovery: an I/O error (retried by the next start),
            // never reported as damaged data.
            let read = 1 + self.rng.below(300_000) as u32;
            self.disk.set_fault_rates(FaultRates {
                read,
                ..FaultRates::default()
            });
            let mut ledger = Ledger::with_storage(self.config.clone(), self.disk.storage());
            let started = ledger.start();
            self.disk.clear_faults();
            match started {
                Ok(()) => return Ok(ledger),
                Err(e) if e.is_data_loss() => {
                    return Err(format!(
                        "a read error during recovery was reported as damage: {e}"
                    ));
                }
                Err(_) => {
                    self.disk.halt();
                    drop(ledger);
                    self.disk.restart(Restart::Crash);
                    self.coverage.recovery_crashes += 1;
                }
            }
        }
        let mut ledger = Ledger::with_storage(self.config.clone(), self.disk.storage());
        ledger
            .start()
            .map_err(|e| format!("recovery refused on a disk that honoured every sync: {e}"))?;
        Ok(ledger)
    }

    fn plan(&mut self) -> Plan {
        let how = |rng: &mut Rng| {
            if rng.below(2) == 0 {
                Restart::Crash
            } else {
                Restart::PowerLoss
            }
        };
        match self.rng.below(8) {
            0 | 1 => Plan::CrashInWal(1 + self.rng.below(60)),
            2 | 3 => Plan::PowerLossInWal(1 + self.rng.below(60)),
            4 => Plan::CrashInSnapshot(1 + self.rng.below(12), how(&mut self.rng)),
            5 => {
                let rate = |rng: &mut Rng| rng.below(40_000) as u32;
                let rates = FaultRates {
                    write: rate(&mut self.rng),
                    sync: rate(&mut self.rng),
                    dir: rate(&mut self.rng),
                    read: rate(&mut self.rng),
                };
                Plan::RandomFaults(rates, how(&mut self.rng))
            }
            6 => match self.rng.below(3) {
                0 => Plan::DiskFull(self.rng.below(20_000), how(&mut self.rng)),
                1 => {
                    let fault = [Fault::Io, Fault::NoSpace][self.rng.below(2) as usize];
                    let at = self.disk.stats().steps + 1 + self.rng.below(200);
                    Plan::OneFault(at, fault, how(&mut self.rng))
                }
                _ => Plan::CleanStop,
            },
            _ => Plan::CleanStop,
        }
    }

    fn arm(&mut self, plan: Plan) {
        let wal = Path::new(DATA).join("wal");
        let snapshots = Path::new(DATA).join("snapshots");
        match plan {
            Plan::CrashInWal(n) | Plan::PowerLossInWal(n) => self.disk.halt_under(&wal, n),
            Plan::CrashInSnapshot(n, _) => self.disk.halt_under(&snapshots, n),
            Plan::RandomFaults(rates, _) => self.disk.set_fault_rates(rates),
            Plan::DiskFull(room, _) => {
                let used = self.disk.used_bytes();
                self.disk.set_capacity(Some(used + room));
            }
            Plan::OneFault(at, fault, _) => self.disk.fail_at(at, fault),
            Plan::CleanStop => {}
        }
    }

    /// Submits batches until the plan's fault stops the ledger (or enough were done).
    /// Returns whether the ledger failed.
    fn workload(&mut self, ledger: &Ledger, plan: Plan) -> Result<bool, String> {
        let batches = 1 + self.rng.below(40);
        for _ in 0..batches {
            let ops: Vec<Operation> = (0..1 + self.rng.below(8))
                .map(|_| self.operation())
                .collect();
            match ledger.try_submit_batch_and_wait(ops, WaitLevel::Committed) {
                Ok(results) => match self.acknowledged(ledger, &results) {
                    Ok(()) => {}
                    Err(Stop::Dying) => return Ok(true),
                    Err(Stop::Broken(e)) => return Err(e),
                },
                Err(e) => {
                    if plan == Plan::CleanStop {
                        return Err(format!("an error with no fault armed: {e}"));
                    }
                    // Fail-stop: nothing more is acknowledged by this process.
                    let next = ledger.try_submit_and_wait(self.operation(), WaitLevel::Committed);
                    if let Ok(result) = next {
                        return Err(format!(
                            "after `{e}`, transaction {} was acknowledged",
                            result.tx_id
                        ));
                    }
                    return Ok(true);
                }
            }
            if self.rng.below(3) == 0 {
                match self.check_reads(ledger) {
                    Ok(()) => {}
                    Err(Stop::Dying) => return Ok(true),
                    Err(Stop::Broken(e)) => return Err(e),
                }
            }
        }
        Ok(false)
    }

    /// Records an acknowledged batch, checking outcomes against the idempotency window.
    fn acknowledged(&mut self, ledger: &Ledger, results: &[SubmitResult]) -> Result<(), Stop> {
        for result in results {
            let tx = result.tx_id;
            let read = match ledger.get_transaction(tx) {
                Ok(read) => read,
                Err(e) => {
                    let last = results.last().map_or(tx, |r| r.tx_id);
                    self.model.acked = self.model.acked.max(last);
                    self.coverage.acknowledged += last + 1 - tx;
                    // Its entries join the model when recovery reads them back.
                    self.read_failed(&e, format!("acknowledged transaction {tx}"))?;
                    return Err(Stop::Dying);
                }
            };
            if read.outcome != result.outcome() {
                return Err(format!(
                    "transaction {tx}: acknowledged {:?}, read {:?}",
                    result.outcome(),
                    read.outcome
                )
                .into());
            }
            let expected_dup = (read.user_ref != 0)
                .then(|| self.model.refs.get(&read.user_ref).copied())
                .flatten();
            match (read.outcome, expected_dup) {
                (Outcome::Rejected(FailReason::Duplicate { original_tx_id }), Some(original))
                    if original_tx_id == original => {}
                (Outcome::Rejected(FailReason::Duplicate { original_tx_id }), _) => {
                    return Err(format!(
                        "transaction {tx}: Duplicate of {original_tx_id}, the model has {expected_dup:?}"
                    ).into());
                }
                // Shape and account checks come before the idempotency check; funds and
                // overflow after it.
                (
                    Outcome::Committed
                    | Outcome::Rejected(FailReason::InsufficientFunds | FailReason::BalanceOverflow),
                    Some(original),
                ) => {
                    return Err(format!(
                        "transaction {tx}: user_ref {} committed by {original}, yet {:?}",
                        read.user_ref, read.outcome
                    )
                    .into());
                }
                _ => {}
            }
            self.model.insert(tx, Known::from(read))?;
            self.model.acked = self.model.acked.max(tx);
            self.coverage.acknowledged += 1;
        }
        Ok(())
    }

    /// A random operation: every kind, with duplicates and operations that are rejected.
    fn operation(&mut self) -> Operation {
        let rng = &mut self.rng;
        let account = |rng: &mut Rng| 1 + rng.below(ACCOUNTS);
        let amount = |rng: &mut Rng| match rng.below(20) {
            0 => 0,            // InvalidOperation
            1 => u64::MAX / 2, // overflow or insufficient funds
            _ => 1 + rng.below(500),
        };
        let user_ref = match rng.below(4) {
            0 => 0,
            1 if !self.model.refs.is_empty() => {
                // A duplicate of a committed one.
                let refs: Vec<u64> = self.model.refs.keys().copied().collect();
                refs[rng.below(refs.len() as u64) as usize]
            }
            _ => {
                self.next_ref += 1;
                (self.seed << 32) ^ self.next_ref
            }
        };
        match rng.below(9) {
            0..=2 => Operation::Deposit {
                account: if rng.below(30) == 0 {
                    MAX_ACCOUNTS
                } else {
                    account(rng)
                },
                amount: amount(rng),
                user_ref,
            },
            3 | 4 => Operation::Withdrawal {
                account: account(rng),
                amount: amount(rng),
                user_ref,
            },
            5..=7 => Operation::Transfer {
                from: account(rng),
                to: account(rng),
                amount: amount(rng),
                user_ref,
            },
            _ => {
                let legs = 1 + rng.below(3);
                let mut steps = Vec::new();
                for _ in 0..legs {
                    let a = amount(rng).min(1000);
                    steps.push(Step::Credit {
                        account_id: account(rng),
                        amount: a,
                    });
                    // Now and then unbalanced: a ZeroSumViolation.
                    let b = if rng.below(10) == 0 { a + 1 } else { a };
                    steps.push(Step::Debit {
                        account_id: account(rng),
                        amount: b,
                    });
                }
                Operation::Composite(Box::new(CompositeOperation {
                    steps,
                    flags: if rng.below(2) == 0 {
                        CompositeOperation::CHECK_NEGATIVE_BALANCE
                    } else {
                        0
                    },
                    user_ref,
                }))
            }
        }
    }

    /// Balances, balance-at and history reads against the model, on a running ledger.
    /// An I/O error is expected while a fault is armed; anything else breaks the run.
    fn read_failed(&self, error: &LedgerError, what: String) -> Result<(), Stop> {
        if self.armed && !error.is_data_loss() {
            Err(Stop::Dying)
        } else {
            Err(Stop::Broken(format!("{what}: {error}")))
        }
    }

    fn check_reads(&mut self, ledger: &Ledger) -> Result<(), Stop> {
        let accounts: Vec<u64> = (0..=ACCOUNTS).collect();
        let cut = match ledger.try_get_balances(&accounts) {
            Ok(cut) => cut,
            Err(e) => return self.read_failed(&e, "get_balances".to_owned()),
        };
        let at = cut.last_snapshot_tx_id;
        if at
            > self
                .model
                .acked
                .max(self.model.txs.keys().next_back().copied().unwrap_or(0))
        {
            // Visible but not yet read into the model (a batch in flight): not the case
            // here, every batch is waited for.
            return Err(format!("balances visible at {at}, beyond every acknowledged id").into());
        }
        self.model.seen = self.model.seen.max(at);
        for (account, balance) in accounts.iter().zip(&cut.balances) {
            let expected = self.model.balance_at(*account, at);
            if *balance != expected {
                return Err(format!(
                    "account {account} at {at}: read {balance}, the model has {expected}"
                )
                .into());
            }
        }
        if cut.balances.iter().map(|b| i128::from(*b)).sum::<i128>() != 0 {
            return Err(format!("balances at {at} do not sum to zero: {:?}", cut.balances).into());
        }
        let last = self.model.acked;
        if last > 0 {
            let account = self.rng.below(ACCOUNTS + 1);
            let tx = 1 + self.rng.below(last);
            match ledger.get_balance_at(account, tx) {
                Ok(b) if b.balance == self.model.balance_at(account, tx) => {}
                Ok(b) => {
                    return Err(format!(
                        "get_balance_at({account}, {tx}) = {}, the model has {}",
                        b.balance,
                        self.model.balance_at(account, tx)
                    )
                    .into());
                }
                Err(LedgerError::NotRetained { .. }) => {}
                Err(e) => return self.read_failed(&e, format!("get_balance_at({account}, {tx})")),
            }
            self.check_history(ledger, account)?;
        }
        Ok(())
    }

    /// The newest page of an account's history is the model's newest entries on it.
    fn check_history(&mut self, ledger: &Ledger, account: u64) -> Result<(), Stop> {
        let page = match ledger.get_account_history(account, 0, 20) {
            Ok(page) => page,
            Err(LedgerError::NotRetained { .. }) => return Ok(()),
            Err(e) => return self.read_failed(&e, format!("history of {account}")),
        };
        let Some(newest) = page.entries.first() else {
            return Ok(());
        };
        let expected: Vec<u64> = self
            .model
            .balances
            .get(&account)
            .map(|m| m.range(..=newest.tx_id).rev().map(|(tx, _)| *tx).collect())
            .unwrap_or_default();
        let mut seen_txs: Vec<u64> = page.entries.iter().map(|e| e.tx_id).collect();
        seen_txs.dedup();
        if expected.get(..seen_txs.len()) != Some(&seen_txs[..]) {
            return Err(format!(
                "history of {account}: {seen_txs:?}, the model's newest: {:?}",
                &expected[..expected.len().min(seen_txs.len())]
            )
            .into());
        }
        for e in &page.entries {
            let known = self.model.txs.get(&e.tx_id);
            if !known.is_some_and(|k| k.entries.contains(&e.entry)) {
                return Err(format!("history of {account}: entry {e:?} not in the model").into());
            }
        }
        Ok(())
    }

    /// After a start: nothing acknowledged or shown lost; what survived joins the model;
    /// every read agrees with it.
    fn check_recovered(&mut self, ledger: &Ledger) -> Result<(), String> {
        let report = ledger.recovery_report().ok_or("no recovery report")?;
        let last = report.last_tx_id;
        if last < self.model.acked {
            return Err(format!(
                "LOST: acknowledged up to {}, recovered up to {last}",
                self.model.acked
            ));
        }
        if last < self.model.seen {
            return Err(format!(
                "a read showed transaction {}, recovered up to {last}",
                self.model.seen
            ));
        }
        self.model.truncate(last);
        // Unacknowledged transactions that survived are durable now: into the model.
        let known_last = self.model.txs.keys().next_back().copied().unwrap_or(0);
        for tx in known_last + 1..=last {
            let read = ledger
                .get_transaction(tx)
                .map_err(|e| format!("recovered transaction {tx} cannot be read: {e}"))?;
            self.model.insert(tx, Known::from(read))?;
        }
        self.model.acked = last;
        self.model.seen = last;
        // The newest and a few random transactions read back as the model has them.
        let ids: Vec<u64> = self.model.txs.keys().rev().take(30).copied().collect();
        let mut sample = ids;
        for _ in 0..10 {
            if last > 0 {
                sample.push(1 + self.rng.below(last));
            }
        }
        for tx in sample {
            let Some(known) = self.model.txs.get(&tx) else {
                continue;
            };
            match ledger.get_transaction(tx) {
                Ok(read) => {
                    let got = Known::from(read);
                    if &got != known {
                        return Err(format!(
                            "transaction {tx}: read {got:?}, the model has {known:?}"
                        ));
                    }
                    self.coverage.checked += 1;
                }
                Err(LedgerError::NotRetained { .. }) => {}
                Err(e) => return Err(format!("transaction {tx}: {e}")),
            }
        }
        let cut = ledger
            .try_get_balances(&(0..=ACCOUNTS).collect::<Vec<_>>())
            .map_err(|e| format!("get_balances after recovery: {e}"))?;
        if cut.last_snapshot_tx_id != last {
            return Err(format!(
                "after recovery balances are at {}, recovery reached {last}",
                cut.last_snapshot_tx_id
            ));
        }
        self.check_reads(ledger).map_err(Stop::message)?;
        // The idempotency window survived: a committed user_ref is still a duplicate.
        if let Some((&user_ref, &original)) = self.model.refs.iter().next() {
            let op = Operation::Deposit {
                account: 1,
                amount: 1,
                user_ref,
            };
            let result = ledger
                .try_submit_and_wait(op, WaitLevel::Committed)
                .map_err(|e| format!("a duplicate after recovery: {e}"))?;
            self.acknowledged(ledger, &[result])
                .map_err(Stop::message)?;
            if result.outcome()
                != Outcome::Rejected(FailReason::Duplicate {
                    original_tx_id: original,
                })
            {
                return Err(format!("user_ref {user_ref} of {original} was forgotten"));
            }
        }
        Ok(())
    }
}

fn restart_of(plan: Plan) -> Restart {
    match plan {
        Plan::CrashInWal(_) => Restart::Crash,
        Plan::PowerLossInWal(_) => Restart::PowerLoss,
        Plan::CrashInSnapshot(_, how)
        | Plan::RandomFaults(_, how)
        | Plan::DiskFull(_, how)
        | Plan::OneFault(_, _, how) => how,
        Plan::CleanStop => Restart::Crash,
    }
}

/// Whether a failed start is the injected crash (an I/O error), not a refusal of the data.
fn is_injected(error: &LedgerError) -> bool {
    !error.is_data_loss()
}
