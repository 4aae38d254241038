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
    /// What few transactions have: effects, or being replayed. Boxed and kept once
    /// allocated (reused by every later transaction of the slot, so a workload of holds
    /// allocates nothing after warm-up), so that a slot stays 128 bytes, two cache lines.
    pub extra: Option<Box<SlotExtra>>,
    /// The sequencer's time at submission; the transactor replaces it with the time it
    /// executed under (never earlier than the previous transaction's), which is what the
    /// WAL stores.
    pub timestamp_ns: u64,
    pub outcome: Outcome,
    pub entries: Vec<Entry>,
    /// Per entry, the account's previous transaction (the history back-link; empty for a
    /// rejected transaction), written by the transactor stage.
    pub prev: Vec<TxId>,
}

/// The rarely used part of a slot.
#[derive(Debug, Default)]
pub(crate) struct SlotExtra {
    /// A transaction another node executed (a follower applying the leader's log): its
    /// outcome, entries, effects, time and back-links are already filled in, and the
    /// transactor replays them instead of executing `op`.
    pub replayed: bool,
    /// What the transaction changed besides balances (a configuration, a hold).
    pub effects: Vec<Effect>,
}

// Two cache lines per slot: the stages touch most of each slot they pass.
const _: () = assert!(size_of::<Slot>() == 128);

impl Slot {
    /// The transaction's result as the WAL stores it.
    pub fn record(&self) -> RecordRef<'_> {
        RecordRef {
            timestamp_ns: self.timestamp_ns,
            user_ref: self.user_ref,
            outcome: self.outcome,
            entries: &self.entries,
            prev_tx_ids: &self.prev,
            effects: self.effects(),
        }
    }

    /// A transaction another node executed: replay it instead of executing `op`.
    #[inline]
    pub fn replayed(&self) -> bool {
        self.extra.as_ref().is_some_and(|x| x.replayed)
    }

    /// The transaction's effects (none for almost every transaction).
    #[inline]
    pub fn effects(&self) -> &[Effect] {
        self.extra.as_ref().map_or(&[], |x| &x.effects)
    }

    /// Clears what a previous transaction of this slot left in its extra part.
    #[inline]
    pub fn reset_extra(&mut self) {
        if let Some(extra) = &mut self.extra {
            extra.replayed = false;
            extra.effects.clear();
        }
    }

    /// The extra part, allocated on first use.
    pub fn extra_mut(&mut self) -> &mut SlotExtra {
        self.extra.get_or_insert_with(Box::default)
    }

    pub fn new() -> Slot {
        Slot {
            op: Operation::Deposit {
                account: 0,
                amount: 0,
                user_ref: 0,
            },
            user_ref: 0,
            extra: None,
            timestamp_ns: 0,
            outcome: Outcome::Committed,
            entries: Vec::with_capacity(ENTRIES_PREALLOCATED),
            prev: Vec::with_capacity(ENTRIES_PREALLOCATED),
        }
    }
}
