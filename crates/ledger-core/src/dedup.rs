//! Idempotency by `user_ref` within a time window.
//!
//! Time is an input (the timestamp the sequencer stamped on each transaction), so the window
//! is deterministic and can be rebuilt on recovery from the committed records.
//!
//! Memory: one live entry costs about 48 bytes: 24 in the hash map (key, transaction id,
//! timestamp) plus its control byte and load-factor slack, and 16 in the expiry queue. At a
//! sustained `R` committed transactions per second that carry a `user_ref`, the window holds
//! `R * window` entries: 100,000 tx/s with the default 10 s window is 1,000,000 entries,
//! about 48 MB; 1,000,000 tx/s is about 480 MB.

use std::collections::{HashMap, VecDeque};

use foldhash::fast::RandomState;

use crate::transaction::TxId;

/// Remembers the `user_ref`s committed within the last `window_ns` of sequencer time.
#[derive(Debug, Clone)]
pub struct DedupWindow {
    window_ns: u64,
    /// user_ref -> (transaction that committed it, its timestamp).
    /// Seeded per process: user_refs come from clients and must not be able to pick
    /// colliding keys. Iteration order is never observed, so the seed cannot leak into
    /// results.
    seen: HashMap<u64, (TxId, u64), RandomState>,
    /// (timestamp, user_ref) in commit order, for expiry from the front.
    expiry: VecDeque<(u64, u64)>,
}

impl DedupWindow {
    pub fn new(window_ns: u64) -> DedupWindow {
        DedupWindow {
            window_ns,
            seen: HashMap::default(),
            expiry: VecDeque::new(),
        }
    }

    /// Forgets every reference committed at or before `now_ns - window_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        let Some(horizon) = now_ns.checked_sub(self.window_ns) else {
            return;
        };
        while let Some(&(timestamp_ns, user_ref)) = self.expiry.front() {
            if timestamp_ns > horizon {
                break;
            }
            self.expiry.pop_front();
            self.seen.remove(&user_ref);
        }
    }

    /// The transaction that committed `user_ref` within the window, if any.
    /// Call [`expire`](Self::expire) with the current time first.
    pub fn find(&self, user_ref: u64) -> Option<TxId> {
        self.seen.get(&user_ref).map(|&(tx_id, _)| tx_id)
    }

    /// Records that `tx_id` committed `user_ref` at `timestamp_ns` (non-decreasing).
    pub fn insert(&mut self, user_ref: u64, tx_id: TxId, timestamp_ns: u64) {
        debug_assert_ne!(user_ref, 0);
        debug_assert!(self.expiry.back().is_none_or(|&(t, _)| t <= timestamp_ns));
        let previous = self.seen.insert(user_ref, (tx_id, timestamp_ns));
        debug_assert!(previous.is_none(), "a live user_ref is never re-inserted");
        self.expiry.push_back((timestamp_ns, user_ref));
    }

    /// How many references the window holds now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The live entries in commit order: `(user_ref, tx_id, timestamp_ns)`. A snapshot stores
    /// these so the window survives a restart.
    pub fn entries(&self) -> impl Iterator<Item = (u64, TxId, u64)> + '_ {
        self.expiry.iter().filter_map(|&(_, user_ref)| {
            self.seen
                .get(&user_ref)
                .map(|&(tx_id, timestamp_ns)| (user_ref, tx_id, timestamp_ns))
        })
    }
}
