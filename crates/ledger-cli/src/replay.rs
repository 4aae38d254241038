//! `replay`: rebuilds the ledger's state from the WAL (from scratch or from a snapshot)
//! with the engine's own replay, checking as it goes what the engine's recovery checks —
//! contiguous ids, every back-link, every balance-after, every transaction netting to
//! zero, every effect (configurations, holds, reversals) possible — and that the result
//! equals each snapshot it passes, in every part. Stops at `--until` for the state at a
//! point in time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use clap::{Args, ValueEnum};
use ledger_core::ledger::ACCOUNTS_MAX;
use ledger_core::record::RecordRef;
use ledger_core::transaction::{Outcome, TxId};
use ledger_core::transactor::{CLOSED_HOLD_RETENTION_NS, TransactorConfig};
use ledger_snapshot::list_dir;
use ledger_wal::{WalError, WalReader};

use crate::compare::first_difference;
use crate::data_dir::DataDir;
use crate::decode::{self, Batch, Chunk, Decoder, Spare};
use crate::exit::{CliError, CliResult};
use crate::output::Sink;
use crate::progress::WalProgress;
use crate::snapshot::{self, SnapshotChoice};
use crate::state::{ApplyError, State};
use crate::state_rows::{BalanceRow, StateRows, Summary};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Stop after this transaction: balances as of that point.
    #[arg(long, value_name = "TX_ID")]
    until: Option<u64>,
    /// Start from the snapshot at this sequence (or the newest that loads) instead of
    /// from scratch.
    #[arg(long, value_name = "SEQ|latest")]
    from_snapshot: Option<SnapshotChoice>,
    /// Print this account's balance (repeat for several).
    #[arg(long = "account", short = 'a', value_name = "ACCOUNT")]
    accounts: Vec<u64>,
    /// Write balances to FILE (`-`: standard output): the --account ones, or else every
    /// non-zero balance.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Format of the balances written.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    format: Format,
    /// The most accounts the balance table may grow to (a bound on memory, 16 bytes each).
    #[arg(long, default_value_t = ACCOUNTS_MAX)]
    max_accounts: u64,
    /// The server's idempotency window, in seconds: the replayed window then equals the
    /// snapshots'.
    #[arg(long, value_name = "SECS", default_value_t = TransactorConfig::default().dedup_window_ns / NS)]
    dedup_window_secs: u64,
    /// The server's retention of closed holds, in seconds: the replayed holds then equal
    /// the snapshots'.
    #[arg(long, value_name = "SECS", default_value_t = CLOSED_HOLD_RETENTION_NS / NS)]
    closed_hold_retention_secs: u64,
    /// Do not compare with the snapshots the replay passes.
    #[arg(long)]
    no_snapshot_check: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
    /// Records per hand-over between the two threads (tests use small ones to cross many
    /// chunk boundaries).
    #[arg(long, hide = true, default_value_t = decode::CHUNK_RECORDS)]
    chunk_records: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `account,balance` with a header line.
    Csv,
    /// One `{"account": A, "balance": B}` object per line.
    Json,
    /// The whole state as JSON lines, in `snapshot dump`'s shape: a summary, configured
    /// accounts, system balances per currency, balances (the --account ones, or every
    /// non-zero one), holds, reversals.
    State,
}

/// Nanoseconds in a second (the windows are given in seconds, as the server takes them).
const NS: u64 = 1_000_000_000;
/// How many transactions ahead of applying their balances are prefetched.
const PREFETCH_AHEAD: usize = 16;
/// Chunks queued between the two threads.
const CHUNKS_IN_FLIGHT: usize = 2;

pub fn run(data: &DataDir, args: &ReplayArgs) -> CliResult {
    let wal_dir = data.wal_dir()?;
    let limit = args.max_accounts;
    let until = args.until.unwrap_or(u64::MAX);
    let config = args.transactor_config();

    // The starting state.
    let (mut state, start, origin) = match args.from_snapshot {
        None => (
            State::new(config, limit).map_err(CliError::usage)?,
            0,
            "scratch".to_owned(),
        ),
        Some(choice) => {
            let loaded = snapshot::choose(data.snapshot_dir()?, choice)?;
            let state = State::from_snapshot(&loaded, config, limit)
                .map_err(|e| CliError::verification(format!("{}: {e}", loaded.path().display())))?;
            (
                state,
                loaded.sequence(),
                format!("snapshot {}", loaded.path().display()),
            )
        }
    };
    if until < start {
        return Err(CliError::usage(format!(
            "--until {until} is before the starting snapshot at {start}"
        )));
    }

    // Snapshots to compare with on the way: those strictly after the start.
    let mut checks: Vec<(u64, PathBuf)> = match data.snapshot_dir_if_any() {
        Some(dir) if !args.no_snapshot_check => list_dir(dir)?
            .into_iter()
            .filter(|l| l.sequence > start && l.sequence <= until)
            .map(|l| (l.sequence, l.path))
            .collect(),
        _ => Vec::new(),
    };
    checks.reverse(); // popped in ascending order

    let reader = WalReader::open(wal_dir)?;
    let frames = match reader.first_seq() {
        None => reader.frames(),
        Some(first) if first > start + 1 => {
            return Err(CliError::usage(format!(
                "the WAL starts at transaction {first} (older segments were removed by \
                 retention); replay from a snapshot at or after {} (--from-snapshot)",
                first - 1
            )));
        }
        Some(_) => reader.frames_from(start + 1).map_err(|e| match e {
            WalError::NotRetained { .. } => CliError::usage(e),
            e => CliError::from(e),
        })?,
    };

    let progress = WalProgress::new(wal_dir, !args.no_progress);
    let started = Instant::now();
    let (chunk_tx, chunk_rx) = sync_channel(CHUNKS_IN_FLIGHT);
    let queued = AtomicUsize::new(0);
    let (spare_tx, spare_rx) = sync_channel(2 * CHUNKS_IN_FLIGHT + 2);
    let decoder = Decoder {
        wal_dir,
        after: start,
        until,
        chunk_records: args.chunk_records.max(1),
    };
    let mut applier = Applier {
        wal_dir,
        state: &mut state,
        limit,
        last: start,
        checks,
        checked: 0,
    };
    let (applied, ending) = std::thread::scope(|scope| {
        let progress = &progress;
        let queued = &queued;
        // The reader owns its ends of the channels: when it is done, the applier's loop
        // ends.
        let reader = scope
            .spawn(move || decode::read(decoder, frames, progress, &chunk_tx, &spare_rx, queued));
        // The receiver is dropped when `apply_all` returns, so a reader blocked on a
        // full channel wakes up and stops.
        let applied = applier.apply_all(decoder, chunk_rx, &spare_tx, queued);
        (applied, reader.join())
    });
    applied?;
    let ending = ending.map_err(|_| CliError::usage("the decoding thread panicked"))?;
    let elapsed = started.elapsed();
    let (last, checked) = (applier.last, applier.checked);

    if args.until.is_some() && last < until {
        return Err(CliError::usage(format!(
            "the WAL ends at transaction {last}, before --until {until}"
        )));
    }
    if let Some((seq, path)) = applier.checks.pop().filter(|c| c.0 > last) {
        return Err(CliError::verification(format!(
            "{} is at transaction {seq}, but the WAL ends at {last}",
            path.display()
        )));
    }
    let replayed = last - start;
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "replayed {replayed} transactions ({}..={last}) from {origin} in {secs:.3} s: \
         {:.0} tx/s; {checked} snapshot(s) matched",
        start + 1,
        if secs > 0.0 {
            replayed as f64 / secs
        } else {
            0.0
        }
    );
    if let Some((segment, offset)) = ending.torn {
        eprintln!(
            "ledger-cli: note: {} offset {offset}: torn tail after the last complete frame \
             (not replayed, as the engine's recovery would cut it)",
            segment.display()
        );
    }
    write_balances(args, &state)
}

impl ReplayArgs {
    /// The engine's configuration as far as replay depends on it: the windows.
    fn transactor_config(&self) -> TransactorConfig {
        TransactorConfig {
            dedup_window_ns: self.dedup_window_secs.saturating_mul(NS),
            closed_hold_retention_ns: self.closed_hold_retention_secs.saturating_mul(NS),
            ..TransactorConfig::default()
        }
    }
}

/// The applying half of replay (the calling thread).
struct Applier<'a> {
    wal_dir: &'a Path,
    state: &'a mut State,
    limit: u64,
    /// The last transaction applied.
    last: TxId,
    /// Snapshots still to compare with, the next one last.
    checks: Vec<(u64, PathBuf)>,
    checked: usize,
}

impl Applier<'_> {
    fn apply_all(
        &mut self,
        decoder: Decoder<'_>,
        chunks: Receiver<Result<Chunk, CliError>>,
        spares: &SyncSender<Spare>,
        queued: &AtomicUsize,
    ) -> CliResult {
        let mut next_check = self.checks.last().map_or(u64::MAX, |c| c.0);
        let mut own = Batch::default();
        for chunk in chunks {
            queued.fetch_sub(1, Ordering::AcqRel);
            let batch = match chunk? {
                Chunk::Decoded(batch) => batch,
                Chunk::Raw(raw) => {
                    decoder.decode(&raw, &mut own)?;
                    let _ = spares.try_send(Spare::Raw(raw));
                    std::mem::take(&mut own)
                }
            };
            if batch.ends.is_empty() {
                continue;
            }
            if batch.first_tx != self.last + 1 {
                let (segment, offset) = batch.origin(self.wal_dir, 0);
                return Err(CliError::verification(format!(
                    "{} offset {offset}: transaction {} follows {}",
                    segment.display(),
                    batch.first_tx,
                    self.last
                )));
            }
            let mut begin = batch.base;
            let mut extras = batch.extras.iter().peekable();
            let (mut effects_at, mut links_at) = (0, 0);
            for (i, (&end, &timestamp_ns)) in batch.ends.iter().zip(&batch.timestamps).enumerate() {
                if let Some(&ahead) = batch.ends.get(i + PREFETCH_AHEAD) {
                    let from = ahead.saturating_sub(2);
                    self.state
                        .prefetch(batch.entries.get(from..ahead).unwrap_or_default());
                }
                let tx_id = batch.first_tx + i as u64;
                let mut record = RecordRef {
                    timestamp_ns,
                    user_ref: 0,
                    outcome: Outcome::Committed,
                    entries: batch.entries.get(begin..end).unwrap_or_default(),
                    prev_tx_ids: batch.prev_tx_ids.get(begin..end).unwrap_or_default(),
                    effects: &[],
                    effect_links: &[],
                };
                begin = end;
                if let Some(extra) = extras.next_if(|e| e.index == i) {
                    record.user_ref = extra.user_ref;
                    record.outcome = extra.outcome;
                    record.effects = (batch.effects)
                        .get(effects_at..extra.effects_end)
                        .unwrap_or_default();
                    record.effect_links = (batch.effect_links)
                        .get(links_at..extra.links_end)
                        .unwrap_or_default();
                    (effects_at, links_at) = (extra.effects_end, extra.links_end);
                }
                self.state
                    .apply(tx_id, record)
                    .map_err(|e| self.apply_error(&batch, i, e))?;
                if tx_id == next_check {
                    if let Some((seq, path)) = self.checks.pop() {
                        compare(&path, seq, self.state)?;
                        self.checked += 1;
                    }
                    next_check = self.checks.last().map_or(u64::MAX, |c| c.0);
                }
            }
            self.last = batch.first_tx + batch.ends.len() as u64 - 1;
            // Keep one batch for decoding here; hand the rest back to the reader.
            if own.entries.capacity() == 0 {
                own = batch;
            } else {
                let _ = spares.try_send(Spare::Batch(batch));
            }
        }
        Ok(())
    }

    #[cold]
    fn apply_error(&self, batch: &Batch, index: usize, error: ApplyError) -> CliError {
        let (segment, offset) = batch.origin(self.wal_dir, index);
        match error {
            ApplyError::Mismatch(e) => {
                CliError::verification(format!("{} offset {offset}: {e}", segment.display()))
            }
            ApplyError::TooManyAccounts { tx_id, account_id } => CliError::usage(format!(
                "{} offset {offset}: transaction {tx_id} names account {account_id}, at or \
                 above --max-accounts {}",
                segment.display(),
                self.limit
            )),
            ApplyError::Grow { accounts, reason } => CliError::usage(format!(
                "{} offset {offset}: the balance table cannot grow to {accounts} accounts \
                 ({reason}); a lower --max-accounts bounds it",
                segment.display()
            )),
        }
    }
}

/// The replayed state must equal a snapshot taken at the same transaction.
fn compare(path: &Path, seq: u64, state: &State) -> CliResult {
    let loaded = snapshot::load(path)?;
    match first_difference(state.replay(), &loaded) {
        None => Ok(()),
        Some(difference) => Err(CliError::verification(format!(
            "{} disagrees with the WAL at transaction {seq}: {difference}",
            path.display()
        ))),
    }
}

fn write_balances(args: &ReplayArgs, state: &State) -> CliResult {
    let mut sink = match &args.output {
        Some(path) => Sink::create(path)?,
        None if !args.accounts.is_empty() => Sink::stdout(),
        None => return Ok(()),
    };
    let balances: Vec<(u64, i64)> = if args.accounts.is_empty() {
        let table = state.replay().transactor().balances();
        (0u64..)
            .zip(table.iter().copied())
            .filter(|&(_, balance)| balance != 0)
            .collect()
    } else {
        let balance = |&account: &u64| (account, state.balance(account));
        args.accounts.iter().map(balance).collect()
    };
    match args.format {
        Format::Csv => {
            sink.line("account,balance")?;
            for (account, balance) in balances {
                sink.line(format_args!("{account},{balance}"))?;
            }
        }
        Format::Json => {
            for (account, balance) in balances {
                sink.json(&BalanceRow { account, balance })?;
            }
        }
        Format::State => state_rows(state, balances).write(&mut sink)?,
    }
    sink.finish()
}

/// The replayed state in `snapshot dump`'s shape.
fn state_rows(state: &State, balances: Vec<(u64, i64)>) -> StateRows {
    let transactor = state.replay().transactor();
    let accounts = transactor.accounts();
    let holds = transactor.holds().sorted();
    let reversals = transactor.reversals();
    StateRows {
        summary: Summary {
            file: None,
            sequence: None,
            format: None,
            last_tx_id: transactor.last_tx_id(),
            now_ns: transactor.now_ns(),
            accounts: transactor.balances().len(),
            configured_accounts: accounts.len(),
            dedup_entries: transactor.dedup().len(),
            holds: holds.len(),
            reversals: reversals.len(),
        },
        accounts: accounts.sorted(),
        system_balances: accounts.system_balances().collect(),
        balances,
        holds,
        reversals,
        dedup: Vec::new(),
    }
}
