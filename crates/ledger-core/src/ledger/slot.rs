//! What one ring slot carries from the sequencer to the last stage.

use crate::record::RecordRef;
use crate::transaction::{Effect, Entry, Operation, Outcome, TxId};

/// Entries a slot holds without growing: a deposit, withdrawal or transfer has two.
/// Composites grow the slot's vector once; the capacity is kept for every later use of the
/// slot, so the hot path does not allocate after warm-up.
const ENTRIES_PREALLOCATED: usize = 2;

/// One transaction in flight. Filled in place by the producer (operation and time),
/// completed by the transactor (outcome, entries, normalised time), read by the WAL and
/// snapshot stages.
#[derive(Debug)]
pub(crate) struct Slot {
    pub op: Operation,
    /// The operation's `user_ref` (0: none), what the WAL and the readers' state keep.
    pub user_ref: u64,
    /// A transaction another node executed (a follower applying the leader's log): its
    /// outcome, entries, time and back-links are already filled in, and the transactor
    /// replays them instead of executing `op`.
    pub replayed: bool,
    /// The sequencer's time at submission; the transactor replaces it with the time it
    /// executed under (never earlier than the previous transaction's), which is what the
    /// WAL stores.
    pub timestamp_ns: u64,
    pub outcome: Outcome,
    pub entries: Vec<Entry>,
    /// Per entry, the account's previous transaction (the history back-link; empty for a
    /// rejected transaction), written by the transactor stage.
    pub prev: Vec<TxId>,
    /// What the transaction changed besides balances (an account's configuration);
    /// empty for almost every transaction, so it allocates only when used.
    pub effects: Vec<Effect>,
}

impl Slot {
    /// The transaction's result as the WAL stores it.
    pub fn record(&self) -> RecordRef<'_> {
        RecordRef {
            timestamp_ns: self.timestamp_ns,
            user_ref: self.user_ref,
            outcome: self.outcome,
            entries: &self.entries,
            prev_tx_ids: &self.prev,
            effects: &self.effects,
        }
    }

    pub fn new() -> Slot {
        Slot {
            op: Operation::Deposit {
                account: 0,
                amount: 0,
                user_ref: 0,
            },
            user_ref: 0,
            replayed: false,
            timestamp_ns: 0,
            outcome: Outcome::Committed,
            entries: Vec::with_capacity(ENTRIES_PREALLOCATED),
            prev: Vec::with_capacity(ENTRIES_PREALLOCATED),
            effects: Vec::new(),
        }
    }
}
