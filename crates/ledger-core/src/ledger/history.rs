//! Reads of durable transactions: one transaction, an account's history, an account's
//! balance at a past transaction. Served from the recent frames in memory or from the WAL
//! on disk (the same decode path), on the caller's thread, without any lock a pipeline
//! stage waits on (the readers' state lock is held only to read a chain head).
//!
//! History follows each account's chain of back-links through the log
//! (`docs/record-format.md`): a page of `n` entries reads `n` records, never a scan.

use std::ops::ControlFlow;

use super::error::LedgerError;
use super::reads::source::RecordSource;
use super::{Balance, Engine, Ledger};
use crate::record::{DecodedRecord, effect_accounts};
use crate::transaction::{AccountId, Effect, Entry, FailReason, Outcome, TxId};

/// Entries a history page holds when the caller asks for 0.
pub const HISTORY_LIMIT_DEFAULT: usize = 20;
/// The most entries one history page holds (a larger limit is clamped to this).
pub const HISTORY_LIMIT_MAX: usize = 1000;

/// A durable transaction as the WAL recorded it: its result, not its intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub tx_id: TxId,
    /// Sequencer time, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    pub user_ref: u64,
    pub outcome: Outcome,
    /// Each with the account's balance right after it; empty for a rejection.
    pub entries: Vec<Entry>,
    /// Other transactions this one refers to.
    pub links: Vec<TransactionLink>,
    /// What it changed besides balances (a configuration, a hold placed or closed, a
    /// reversal); empty for a rejection.
    pub effects: Vec<Effect>,
}

/// A reference from one transaction to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransactionLink {
    pub to_tx_id: TxId,
    pub kind: LinkKind,
}

/// What a [`TransactionLink`] means (wire codes: Duplicate 0, Reversal 1, ReversedBy 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkKind {
    /// This transaction was rejected as a duplicate of `to_tx_id` (same `user_ref`).
    Duplicate,
    /// This transaction reverses `to_tx_id`.
    Reversal,
    /// This transaction was reversed by `to_tx_id`.
    ReversedBy,
}

/// One entry of an account's history, naming its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HistoryEntry {
    pub tx_id: TxId,
    pub timestamp_ns: u64,
    pub entry: Entry,
}

/// Which transactions [`Ledger::read_transactions`] keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamFilter {
    /// Only transactions with an entry on one of these accounts, or an effect that names
    /// one (a configuration; a hold placed, voided or expired); empty: every account.
    pub accounts: Vec<AccountId>,
    /// Rejected transactions too (they name no account: with `accounts`, none is kept).
    pub include_rejected: bool,
}

impl StreamFilter {
    fn keeps(&self, record: &DecodedRecord<'_>) -> bool {
        if !self.include_rejected && !record.outcome.is_committed() {
            return false;
        }
        self.accounts.is_empty() || self.accounts.iter().any(|&a| names(record, a))
    }
}

/// A run of transactions in id order, and where the next run starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransactionPage {
    pub transactions: Vec<Transaction>,
    /// The id after the last one read (kept or filtered out): resume from here.
    pub next_tx_id: TxId,
}

/// One change of an account's history besides its balance: a configuration, a hold
/// placed (on both its accounts), posted, voided or expired, a reversal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryEvent {
    pub tx_id: TxId,
    pub timestamp_ns: u64,
    pub effect: Effect,
}

/// A page of an account's history, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AccountHistory {
    /// The balance changes.
    pub entries: Vec<HistoryEntry>,
    /// What else the page's transactions did to the account, newest first: a post's or
    /// a reversal's event comes with its entries (same `tx_id`); a hold placed, voided
    /// or expired, and a configuration, have no entry.
    pub events: Vec<HistoryEvent>,
    /// Pass as `from_tx_id` for the next page; 0 when there is no more.
    pub next_tx_id: TxId,
}

impl AccountHistory {
    /// How many items the page holds: entries and events.
    pub fn len(&self) -> usize {
        self.entries.len() + self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Ledger {
    /// Durable transaction `tx_id`: timestamp, user_ref, outcome, entries with balances
    /// after, effects, and links (the original of a Duplicate or of a reversal; the reversal of a
    /// reversed transaction, once the readers' state includes it).
    ///
    /// # Errors
    /// [`LedgerError::UnknownTransaction`] for an id never issued,
    /// [`LedgerError::NotCommitted`] for one not durable yet,
    /// [`LedgerError::NotRetained`] for one whose WAL segment retention deleted, and
    /// WAL read errors (damage names the file and offset).
    pub fn get_transaction(&self, tx_id: TxId) -> Result<Transaction, LedgerError> {
        let engine = self.engine()?;
        engine.check_issued(tx_id)?;
        let committed = engine.progress.index(engine.committed);
        if tx_id > committed {
            return Err(LedgerError::NotCommitted { tx_id, committed });
        }
        let mut transaction = engine
            .source()
            .with_record(tx_id, |record, _| transaction(&record))?;
        if let Some(reversal) = engine.reversed_by(tx_id) {
            transaction.links.push(TransactionLink {
                to_tx_id: reversal,
                kind: LinkKind::ReversedBy,
            });
        }
        Ok(transaction)
    }

    /// Committed transactions in id order from `from_tx_id` (0: from 1) that `filter`
    /// keeps, reading at most `max` of them (kept or not), up to the committed index: the
    /// change stream's read. Each is what [`get_transaction`](Self::get_transaction)
    /// returns but for the `ReversedBy` link (a later reversal comes later in the stream,
    /// linked to its original). Reads whole frames in order (memory, else disk) on the
    /// caller's thread: a reader far behind never slows the pipeline. The page's
    /// `next_tx_id` is where to go on (`from_tx_id` itself when it is beyond the
    /// committed index).
    ///
    /// # Errors
    /// [`LedgerError::NotRetained`] when `from_tx_id` is in a segment retention deleted;
    /// WAL read errors.
    pub fn read_transactions(
        &self,
        from_tx_id: TxId,
        max: usize,
        filter: &StreamFilter,
    ) -> Result<TransactionPage, LedgerError> {
        let mut transactions = Vec::new();
        let next_tx_id = self.visit_transactions(from_tx_id, max, filter, |t| {
            transactions.push(t.clone());
        })?;
        Ok(TransactionPage {
            transactions,
            next_tx_id,
        })
    }

    /// [`read_transactions`](Self::read_transactions) without the page: `visit` sees
    /// each kept transaction in turn, in one [`Transaction`] refilled each time (no
    /// allocation per transaction); returns the page's `next_tx_id`. For a reader that
    /// turns each into something else at once (the server encodes them for the wire).
    ///
    /// # Errors
    /// As [`read_transactions`](Self::read_transactions).
    pub fn visit_transactions(
        &self,
        from_tx_id: TxId,
        max: usize,
        filter: &StreamFilter,
        mut visit: impl FnMut(&Transaction),
    ) -> Result<TxId, LedgerError> {
        let engine = self.engine()?;
        let committed = engine.progress.index(engine.committed);
        let mut next = from_tx_id.max(1);
        let max = u64::try_from(max).unwrap_or(u64::MAX);
        let last = committed.min(next.saturating_add(max).saturating_sub(1));
        let mut source = engine.source();
        let mut current = Transaction::empty();
        while next <= last {
            next = source.scan_frame(next, last, |record| {
                if filter.keeps(&record) {
                    fill_transaction(&record, &mut current);
                    visit(&current);
                }
                ControlFlow::Continue(())
            })?;
        }
        Ok(next)
    }

    /// A page of `account`'s history, newest first: its entries, and the events of its
    /// configurations and holds (see [`AccountHistory`]); from its latest transaction
    /// when `from_tx_id` is 0, else from its latest transaction at or before
    /// `from_tx_id`; at most `limit` items, entries and events together (0:
    /// [`HISTORY_LIMIT_DEFAULT`]; clamped to [`HISTORY_LIMIT_MAX`]), never splitting
    /// one transaction across pages (a page holds more than `limit` only when one
    /// transaction alone does). Durable transactions only, as of the snapshot index.
    /// Events are in the history from the build that links them on: records written
    /// before have no links for their effects.
    ///
    /// # Errors
    /// [`LedgerError::AccountOutOfRange`]; [`LedgerError::NotRetained`] when the page
    /// reaches a transaction whose segment retention deleted; WAL read errors.
    pub fn get_account_history(
        &self,
        account: AccountId,
        from_tx_id: TxId,
        limit: usize,
    ) -> Result<AccountHistory, LedgerError> {
        let engine = self.engine()?;
        let limit = match limit {
            0 => HISTORY_LIMIT_DEFAULT,
            n => n.min(HISTORY_LIMIT_MAX),
        };
        let (head, cut) = engine.chain_head(account)?;
        let mut source = engine.source();
        let mut next = if from_tx_id == 0 || from_tx_id >= cut {
            head
        } else {
            locate(&mut source, account, head, from_tx_id, cut)?
        };
        let mut page = AccountHistory::default();
        while next != 0 {
            let mut step = AccountHistory::default();
            let prev = source.with_record(next, |record, _| {
                account_changes(&record, account, &mut step);
                link_of(&record, account)
            })?;
            let Some(prev) = prev else {
                return Err(LedgerError::BrokenChain {
                    account,
                    tx_id: next,
                });
            };
            if !page.is_empty() && page.len() + step.len() > limit {
                break;
            }
            page.entries.append(&mut step.entries);
            page.events.append(&mut step.events);
            next = prev;
            if page.len() >= limit {
                break;
            }
        }
        page.next_tx_id = next;
        Ok(page)
    }

    /// `account`'s balance right after transaction `tx_id` (a point in time), from the
    /// balance-after stored in the log: no replay. The result's `last_snapshot_tx_id`
    /// is `tx_id`.
    ///
    /// # Errors
    /// [`LedgerError::AccountOutOfRange`], [`LedgerError::UnknownTransaction`] (0 or
    /// never issued), [`LedgerError::NotCommitted`], [`LedgerError::NotRetained`] when
    /// the answer lies in a deleted segment; WAL read errors.
    pub fn get_balance_at(&self, account: AccountId, tx_id: TxId) -> Result<Balance, LedgerError> {
        let engine = self.engine()?;
        engine.check_issued(tx_id)?;
        let (head, cut) = engine.chain_head(account)?;
        if tx_id > cut {
            return Err(LedgerError::NotCommitted {
                tx_id,
                committed: cut,
            });
        }
        let mut source = engine.source();
        let mut at = locate(&mut source, account, head, tx_id, cut)?;
        // Back along the chain past the records without an entry (a hold, a
        // configuration) to the last balance change.
        while at != 0 {
            let found = source.with_record(at, |record, _| {
                let balance = record
                    .entries
                    .iter()
                    .rev()
                    .find(|e| e.account_id == account)
                    .map(|e| e.balance_after);
                (balance, link_of(&record, account))
            })?;
            match found {
                (Some(balance), _) => {
                    return Ok(Balance {
                        balance,
                        last_snapshot_tx_id: tx_id,
                    });
                }
                (None, Some(prev)) => at = prev,
                (None, None) => return Err(LedgerError::BrokenChain { account, tx_id: at }),
            }
        }
        Ok(Balance {
            balance: 0,
            last_snapshot_tx_id: tx_id,
        })
    }
}

impl Engine {
    fn source(&self) -> RecordSource<'_> {
        RecordSource::new(&self.reads, &self.metrics)
    }

    /// The transaction that reversed `tx_id`, as of the readers' state.
    fn reversed_by(&self, tx_id: TxId) -> Option<TxId> {
        self.catch_up();
        let visible = self.visible.read().unwrap_or_else(|e| e.into_inner());
        visible.state.reversed_by(tx_id)
    }

    /// `account`'s latest durable transaction and the snapshot index it is true at,
    /// after catching up with every commit made before the call.
    fn chain_head(&self, account: AccountId) -> Result<(TxId, TxId), LedgerError> {
        if account >= self.max_accounts {
            return Err(LedgerError::AccountOutOfRange {
                account,
                max_accounts: self.max_accounts,
            });
        }
        self.catch_up();
        let visible = self.visible.read().unwrap_or_else(|e| e.into_inner());
        Ok((visible.links.latest(account), visible.state.last_tx_id()))
    }
}

/// The record as a [`Transaction`].
fn transaction(record: &DecodedRecord<'_>) -> Transaction {
    let mut transaction = Transaction::empty();
    fill_transaction(record, &mut transaction);
    transaction
}

/// `transaction` made `record`'s, reusing its vectors.
fn fill_transaction(record: &DecodedRecord<'_>, transaction: &mut Transaction) {
    transaction.tx_id = record.tx_id;
    transaction.timestamp_ns = record.timestamp_ns;
    transaction.user_ref = record.user_ref;
    transaction.outcome = record.outcome;
    transaction.entries.clear();
    transaction.entries.extend_from_slice(record.entries);
    transaction.effects.clear();
    transaction.effects.extend_from_slice(record.effects);
    transaction.links.clear();
    if let Outcome::Rejected(FailReason::Duplicate { original_tx_id }) = record.outcome {
        transaction.links.push(TransactionLink {
            to_tx_id: original_tx_id,
            kind: LinkKind::Duplicate,
        });
    }
    for effect in record.effects {
        if let Effect::Reversed { tx_id } = *effect {
            transaction.links.push(TransactionLink {
                to_tx_id: tx_id,
                kind: LinkKind::Reversal,
            });
        }
    }
}

impl Transaction {
    /// No transaction yet: vectors to fill.
    fn empty() -> Transaction {
        Transaction {
            tx_id: 0,
            timestamp_ns: 0,
            user_ref: 0,
            outcome: Outcome::Committed,
            entries: Vec::new(),
            links: Vec::new(),
            effects: Vec::new(),
        }
    }
}

/// The back-link of `account` in `record` (an entry's or an effect's), if it is there.
fn link_of(record: &DecodedRecord<'_>, account: AccountId) -> Option<TxId> {
    record
        .entries
        .iter()
        .zip(record.prev_tx_ids)
        .find(|(e, _)| e.account_id == account)
        .map(|(_, &prev)| prev)
        .or_else(|| {
            record
                .effect_links
                .iter()
                .find(|l| l.account_id == account)
                .map(|l| l.prev_tx_id)
        })
}

/// Whether `record` names `account`: an entry, an effect link, or (a record written
/// before effect links) a configuration or a hold placed.
fn names(record: &DecodedRecord<'_>, account: AccountId) -> bool {
    link_of(record, account).is_some() || record.effects.iter().any(|e| legacy_names(e, account))
}

/// Appends what `record` did to `account`, newest first: its entries in reverse order,
/// and the events of the effects that name the account (by a link, or for a post or a
/// reversal, by an entry).
fn account_changes(record: &DecodedRecord<'_>, account: AccountId, out: &mut AccountHistory) {
    let tx = |effect| HistoryEvent {
        tx_id: record.tx_id,
        timestamp_ns: record.timestamp_ns,
        effect,
    };
    out.entries.extend(
        record
            .entries
            .iter()
            .rev()
            .filter(|e| e.account_id == account)
            .map(|&entry| HistoryEntry {
                tx_id: record.tx_id,
                timestamp_ns: record.timestamp_ns,
                entry,
            }),
    );
    let has_entry = out.entries.last().is_some_and(|e| e.tx_id == record.tx_id);
    let linked = !record.effect_links.is_empty();
    let mut links = record.effect_links;
    let start = out.events.len();
    for &effect in record.effects {
        let named = match effect {
            Effect::HoldPosted { .. } | Effect::Reversed { .. } => has_entry,
            _ if !linked => legacy_names(&effect, account),
            _ => {
                let (mine, rest) = links.split_at(effect_accounts(&effect).min(links.len()));
                links = rest;
                mine.iter().any(|l| l.account_id == account)
            }
        };
        if named {
            out.events.push(tx(effect));
        }
    }
    out.events[start..].reverse();
}

/// Whether an effect of a record written before effect links names `account`.
fn legacy_names(effect: &Effect, account: AccountId) -> bool {
    match *effect {
        Effect::Configured { account: a, .. } => a == account,
        Effect::HoldOpened { from, to, .. } => from == account || to == account,
        _ => false,
    }
}

/// `account`'s latest transaction at or before `at` (0: none), given its latest of all,
/// `head`, as of `cut`. Two searches run in turn and the first to finish answers: back
/// along the chain from `head` (one record per step: quick for an account that moved
/// little since `at`) and forward through the log from `at + 1` to the account's next
/// entry, whose back-link is the answer (a frame per step: quick for a busy account).
fn locate(
    source: &mut RecordSource<'_>,
    account: AccountId,
    head: TxId,
    at: TxId,
    cut: TxId,
) -> Result<TxId, LedgerError> {
    if head <= at {
        return Ok(head);
    }
    let mut back = head;
    let mut forward = at + 1;
    loop {
        // One step back along the chain.
        let prev = source.with_record(back, |record, _| link_of(&record, account))?;
        let Some(prev) = prev else {
            return Err(LedgerError::BrokenChain {
                account,
                tx_id: back,
            });
        };
        if prev <= at {
            return Ok(prev);
        }
        back = prev;
        // One frame forward.
        if forward <= cut {
            let mut found = None;
            let next =
                source.scan_frame(forward, cut, |record| match link_of(&record, account) {
                    Some(prev) => {
                        found = Some(prev);
                        ControlFlow::Break(())
                    }
                    None => ControlFlow::Continue(()),
                })?;
            if let Some(prev) = found {
                return Ok(prev);
            }
            forward = next;
        }
    }
}
