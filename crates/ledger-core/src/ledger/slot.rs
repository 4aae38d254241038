//! What one ring slot carries from the sequencer to the last stage.

use crate::record::{AccountLink, RecordRef};
use crate::transaction::{Effect, Entry, FailReason, Operation, Outcome, TxId};
use crate::transactor::{prefetch_ptr, prefetch_read};

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
    /// The effects of the few transactions that have any. Boxed and kept once allocated
    /// (reused by every later transaction of the slot, so a workload of holds allocates
    /// nothing after warm-up), so that a slot stays 128 bytes, two cache lines. Valid only
    /// while `status.has_effects` is set: the flags live in the slot itself, so a stage
    /// reads the box only for a transaction that has effects.
    extra: Option<Box<SlotExtra>>,
    /// The sequencer's time at submission; the transactor replaces it with the time it
    /// executed under (never earlier than the previous transaction's), which is what the
    /// WAL stores.
    pub timestamp_ns: u64,
    /// The outcome (written by the transactor) and the flags.
    status: Status,
    pub entries: Vec<Entry>,
    /// Per entry, the account's previous transaction (the history back-link; empty for a
    /// rejected transaction), written by the transactor stage.
    pub prev: Vec<TxId>,
}

/// A slot's outcome and flags, in the 16 bytes an [`Outcome`] alone takes (a slot is two
/// full cache lines): the flags are read without touching the slot's extra part.
#[derive(Clone, Copy, Debug)]
struct Status {
    /// The outcome's fail code, 0 for committed.
    fail_code: u8,
    /// The transaction's effects are the extra part's.
    has_effects: bool,
    /// A transaction another node executed (a follower applying the leader's log): its
    /// outcome, entries, effects, time and back-links are already filled in, and the
    /// transactor replays them instead of executing `op`.
    replayed: bool,
    /// For a duplicate, the original's id.
    duplicate_of: TxId,
}

/// The rarely used part of a slot.
#[derive(Debug, Default)]
struct SlotExtra {
    /// What the transaction changed besides balances (a configuration, a hold).
    effects: Vec<Effect>,
    /// The accounts the effects touched, with their history back-links.
    effect_links: Vec<AccountLink>,
}

// Two cache lines per slot: the stages touch most of each slot they pass.
const _: () = assert!(size_of::<Slot>() == 128);

impl Slot {
    /// The transaction's result as the WAL stores it.
    pub fn record(&self) -> RecordRef<'_> {
        RecordRef {
            timestamp_ns: self.timestamp_ns,
            user_ref: self.user_ref,
            outcome: self.outcome(),
            entries: &self.entries,
            prev_tx_ids: &self.prev,
            effects: self.effects(),
            effect_links: self.effect_links(),
        }
    }

    /// What the transaction did.
    #[inline]
    pub fn outcome(&self) -> Outcome {
        match self.status.fail_code {
            0 => Outcome::Committed,
            code => Outcome::Rejected(
                FailReason::from_code(code, self.status.duplicate_of)
                    .expect("a slot holds the code of a fail reason"),
            ),
        }
    }

    #[inline]
    pub fn set_outcome(&mut self, outcome: Outcome) {
        (self.status.fail_code, self.status.duplicate_of) = match outcome {
            Outcome::Committed => (0, 0),
            Outcome::Rejected(reason) => (
                reason.code(),
                match reason {
                    FailReason::Duplicate { original_tx_id } => original_tx_id,
                    _ => 0,
                },
            ),
        };
    }

    /// A transaction another node executed: replay it instead of executing `op`.
    #[inline]
    pub fn replayed(&self) -> bool {
        self.status.replayed
    }

    /// The transaction's effects (none for almost every transaction).
    #[inline]
    pub fn effects(&self) -> &[Effect] {
        match &self.extra {
            Some(extra) if self.status.has_effects => &extra.effects,
            _ => &[],
        }
    }

    /// The accounts the effects touched, with their back-links.
    #[inline]
    pub fn effect_links(&self) -> &[AccountLink] {
        match &self.extra {
            Some(extra) if self.status.has_effects => &extra.effect_links,
            _ => &[],
        }
    }

    /// Forgets what a previous transaction of this slot left (without touching its
    /// extra part, likely out of cache).
    #[inline]
    pub fn reset_extra(&mut self) {
        self.status.has_effects = false;
        self.status.replayed = false;
    }

    /// Gives the transaction `effects` (non-empty) and their `effect_links`, taking the
    /// vectors; they come back holding the slot's previous ones, to be cleared and reused.
    #[inline]
    pub fn swap_effects(&mut self, effects: &mut Vec<Effect>, effect_links: &mut Vec<AccountLink>) {
        let extra = self.extra.get_or_insert_with(Box::default);
        std::mem::swap(&mut extra.effects, effects);
        std::mem::swap(&mut extra.effect_links, effect_links);
        self.status.has_effects = true;
    }

    /// A hint, for a stage that reaches this slot in a few steps: loads what it keeps
    /// behind pointers (`operation`: a hold's, composite's or reversal's request; the
    /// extra part; the entries and back-links).
    #[inline]
    pub fn prefetch_boxes(&self, operation: bool) {
        if operation {
            match &self.op {
                Operation::Hold(hold) => prefetch_read(&**hold),
                Operation::Composite(composite) => prefetch_read(&**composite),
                Operation::Reverse(reversal) => prefetch_read(&**reversal),
                _ => {}
            }
        }
        if let Some(extra) = &self.extra {
            prefetch_read(&**extra);
        }
        prefetch_ptr(self.entries.as_ptr());
        prefetch_ptr(self.prev.as_ptr());
    }

    /// A hint: loads the effects and their links, reading the extra part (best loaded by
    /// [`prefetch_boxes`](Self::prefetch_boxes) a few steps earlier).
    #[inline]
    pub fn prefetch_effects(&self) {
        if self.status.has_effects
            && let Some(extra) = &self.extra
        {
            prefetch_ptr(extra.effects.as_ptr());
            prefetch_ptr(extra.effect_links.as_ptr());
        }
    }

    /// Marks the slot as a transaction another node executed, with `effects` (a
    /// cluster's follower).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub fn set_replayed(&mut self, effects: &[Effect], effect_links: &[AccountLink]) {
        self.status.replayed = true;
        let extra = self.extra.get_or_insert_with(Box::default);
        extra.effects.clear();
        extra.effects.extend_from_slice(effects);
        extra.effect_links.clear();
        extra.effect_links.extend_from_slice(effect_links);
        self.status.has_effects = true;
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
            status: Status {
                fail_code: 0,
                has_effects: false,
                replayed: false,
                duplicate_of: 0,
            },
            entries: Vec::with_capacity(ENTRIES_PREALLOCATED),
            prev: Vec::with_capacity(ENTRIES_PREALLOCATED),
        }
    }
}
