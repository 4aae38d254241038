//! `wal dump`: transactions as JSON lines, one per transaction, streamed frame by frame
//! (memory does not grow with the log).

use std::path::Path;

use clap::Args;
use ledger_core::record::{AccountLink, DecodedRecord};
use ledger_core::transaction::{Effect, Entry, EntryKind, FailReason, Outcome};
use ledger_wal::{FrameKind, SegmentEnd, WalReader};
use serde::Serialize;
use serde::ser::Serializer;

use crate::exit::{CliError, CliResult};
use crate::output::Sink;
use crate::progress::WalProgress;
use crate::wal::for_each_record;

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// First transaction id to print.
    #[arg(long, value_name = "TX_ID")]
    from: Option<u64>,
    /// Last transaction id to print (inclusive).
    #[arg(long, value_name = "TX_ID")]
    to: Option<u64>,
    /// Only transactions with an entry on this account (repeat for several: any of them).
    #[arg(long = "account", value_name = "ACCOUNT")]
    accounts: Vec<u64>,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

pub fn run(wal_dir: &Path, args: &DumpArgs) -> CliResult {
    let from = args.from.unwrap_or(0);
    let to = args.to.unwrap_or(u64::MAX);
    if from > to {
        return Err(CliError::usage(format!("--from {from} is after --to {to}")));
    }
    let reader = WalReader::open(wal_dir)?;
    let mut frames = match reader.first_seq() {
        // Below the oldest retained transaction: start at the oldest (nothing to skip).
        Some(first) if from < first => reader.frames(),
        _ => reader.frames_from(from)?,
    };
    let progress = WalProgress::new(wal_dir, !args.no_progress);
    let mut sink = Sink::stdout();
    while let Some(frame) = frames.next_frame()? {
        progress.at(frame.segment, frame.offset);
        if frame.kind != FrameKind::Records || frame.next_seq() <= from {
            continue;
        }
        if frame.first_seq > to {
            break;
        }
        let went_on = for_each_record(wal_dir, &frame, |record| {
            if record.tx_id > to {
                return Ok(false);
            }
            let wanted = record.tx_id >= from
                && (args.accounts.is_empty()
                    || record
                        .entries
                        .iter()
                        .any(|e| args.accounts.contains(&e.account_id))
                    || record
                        .effect_links
                        .iter()
                        .any(|l| args.accounts.contains(&l.account_id)));
            if wanted {
                sink.json(&TxRow::of(record))?;
            }
            Ok(true)
        })?;
        if !went_on {
            break;
        }
    }
    progress.finish();
    sink.finish()?;
    if let (Some(SegmentEnd::Torn { offset, .. }), Some(segment)) =
        (frames.end(), frames.current_segment())
    {
        eprintln!(
            "ledger-cli: note: {} offset {offset}: torn tail after the last complete frame \
             (not dumped; `wal verify` describes it)",
            segment.display()
        );
    }
    Ok(())
}

/// One transaction as a JSON object. Field names are part of the tool's interface.
#[derive(Debug, Serialize)]
pub struct TxRow<'a> {
    id: u64,
    timestamp_ns: u64,
    /// 0: none.
    user_ref: u64,
    /// `committed` or `rejected`.
    outcome: &'static str,
    /// For a rejection: the reason's name and wire code.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fail_code: Option<u8>,
    /// For a rejected duplicate: the transaction that committed the `user_ref`.
    #[serde(skip_serializing_if = "Option::is_none")]
    original_tx_id: Option<u64>,
    #[serde(serialize_with = "entries")]
    entries: &'a [Entry],
    /// One per entry: the previous transaction of the entry's account (0: none).
    links: &'a [u64],
    /// What else the transaction changed (an account's configuration); omitted if none.
    #[serde(
        serialize_with = "effects",
        skip_serializing_if = "<[Effect]>::is_empty"
    )]
    effects: &'a [Effect],
    /// The accounts the effects touched without an entry, each with its previous
    /// transaction: `[{"account", "link"}]`; omitted if none.
    #[serde(
        serialize_with = "effect_links",
        skip_serializing_if = "<[AccountLink]>::is_empty"
    )]
    effect_links: &'a [AccountLink],
}

impl<'a> TxRow<'a> {
    pub fn of(record: &DecodedRecord<'a>) -> TxRow<'a> {
        let (outcome, reason) = match record.outcome {
            Outcome::Committed => ("committed", None),
            Outcome::Rejected(reason) => ("rejected", Some(reason)),
        };
        TxRow {
            id: record.tx_id,
            timestamp_ns: record.timestamp_ns,
            user_ref: record.user_ref,
            outcome,
            reason: reason.map(reason_name),
            fail_code: reason.map(|r| r.code()),
            original_tx_id: match reason {
                Some(FailReason::Duplicate { original_tx_id }) => Some(original_tx_id),
                _ => None,
            },
            entries: record.entries,
            links: record.prev_tx_ids,
            effects: record.effects,
            effect_links: record.effect_links,
        }
    }
}

/// One entry as `{"account", "amount", "kind", "balance_after"}`.
#[derive(Debug, Serialize)]
struct EntryRow {
    account: u64,
    amount: u64,
    kind: &'static str,
    balance_after: i64,
}

fn entries<S: Serializer>(entries: &&[Entry], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(entries.iter().map(|e| EntryRow {
        account: e.account_id,
        amount: e.amount,
        kind: match e.kind {
            EntryKind::Credit => "credit",
            EntryKind::Debit => "debit",
        },
        balance_after: e.balance_after,
    }))
}

/// One effect as a JSON object named by its kind: `{"configured": account, "currency",
/// "flags", "overdraft_limit", "max_balance", "parent"}`, `{"hold_opened": {"from", "to",
/// "amount", "expires_at_ns"}}` (the hold's id is the transaction's), `{"hold_posted":
/// hold_id, "amount"}`, `{"hold_voided": hold_id}`, `{"hold_expired": hold_id}`,
/// `{"reversed": tx_id}`.
fn effect_json(effect: &Effect) -> serde_json::Value {
    use serde_json::json;
    match *effect {
        Effect::Configured { account, config } => json!({
            "configured": account,
            "currency": config.currency,
            "flags": config.flags,
            "overdraft_limit": config.overdraft_limit,
            "max_balance": config.max_balance,
            "parent": config.parent,
        }),
        Effect::HoldOpened {
            from,
            to,
            amount,
            expires_at_ns,
        } => json!({
            "hold_opened": { "from": from, "to": to, "amount": amount, "expires_at_ns": expires_at_ns }
        }),
        Effect::HoldPosted { hold_id, amount } => {
            json!({ "hold_posted": hold_id, "amount": amount })
        }
        Effect::HoldVoided { hold_id } => json!({ "hold_voided": hold_id }),
        Effect::HoldExpired { hold_id } => json!({ "hold_expired": hold_id }),
        Effect::Reversed { tx_id } => json!({ "reversed": tx_id }),
    }
}

fn effects<S: Serializer>(effects: &&[Effect], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(effects.iter().map(effect_json))
}

fn effect_links<S: Serializer>(links: &&[AccountLink], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(
        links
            .iter()
            .map(|l| serde_json::json!({ "account": l.account_id, "link": l.prev_tx_id })),
    )
}

/// A stable, script-friendly name for each fail reason (its `Display` is prose).
fn reason_name(reason: FailReason) -> &'static str {
    match reason {
        FailReason::InsufficientFunds => "insufficient_funds",
        FailReason::AccountNotFound => "account_not_found",
        FailReason::ZeroSumViolation => "zero_sum_violation",
        FailReason::EntryLimitExceeded => "entry_limit_exceeded",
        FailReason::InvalidOperation => "invalid_operation",
        FailReason::AccountLimitExceeded => "account_limit_exceeded",
        FailReason::Duplicate { .. } => "duplicate",
        FailReason::BalanceOverflow => "balance_overflow",
        FailReason::AccountFrozen => "account_frozen",
        FailReason::CurrencyMismatch => "currency_mismatch",
        FailReason::MaxBalanceExceeded => "max_balance_exceeded",
        FailReason::CurrencyFixed => "currency_fixed",
        FailReason::HoldNotFound => "hold_not_found",
        FailReason::HoldClosed => "hold_closed",
        FailReason::HoldExceeded => "hold_exceeded",
        FailReason::HoldExpired => "hold_expired",
        FailReason::TransactionNotFound => "transaction_not_found",
        FailReason::NotReversible => "not_reversible",
        FailReason::AlreadyReversed => "already_reversed",
        FailReason::InvalidHierarchy => "invalid_hierarchy",
        FailReason::UserDefined(_) => "user_defined",
        // A reason added after this build: its wire code is still printed.
        _ => "other",
    }
}
