//! The accounts with open holds, each with what its holds reserve and their ids: open
//! addressing with linear probing over slots of one cache line each, so that the
//! transactor can prefetch an account's slot a few operations ahead (a `HashMap` offers
//! no way to). Unlike the configured accounts' table, accounts leave it (when their last
//! open hold closes): removal shifts the following entries back, leaving no tombstones.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use smallvec::SmallVec;

use crate::holds::{HoldId, Reserved};
use crate::transaction::AccountId;

/// An account's open holds (either side), by id, and what they reserve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AccountHolds {
    pub reserved: Reserved,
    pub open: SmallVec<[HoldId; 2]>,
}

/// No account has this id (ids are below `max_accounts`, at most 2^32).
const EMPTY: AccountId = AccountId::MAX;

/// One slot, aligned to a cache line so a lookup that hits its first slot touches one.
#[derive(Clone, Debug, Default)]
#[repr(align(64))]
struct Slot {
    /// `EMPTY` when free (and then `holds` is empty).
    account: AccountId,
    holds: AccountHolds,
}

const _: () = assert!(size_of::<Slot>() == 64);

impl Slot {
    fn empty() -> Slot {
        Slot {
            account: EMPTY,
            holds: AccountHolds::default(),
        }
    }
}

/// Accounts with open holds, by id.
#[derive(Clone, Debug, Default)]
pub(crate) struct HoldAccounts {
    /// A power of two long (or empty), at most half full: runs stay short, so the
    /// removal's walk over the next slots (each a cache line) does too.
    slots: Vec<Slot>,
    len: usize,
    /// Seeded per process: ids come from clients, so their spread is not trusted.
    hasher: RandomState,
}

impl HoldAccounts {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first slot `account` may be in.
    #[inline]
    fn home(&self, account: AccountId) -> usize {
        debug_assert!(!self.slots.is_empty());
        (self.hasher.hash_one(account) as usize) & (self.slots.len() - 1)
    }

    /// The slot holding `account`, or the empty slot where it would go.
    #[inline]
    fn find(&self, account: AccountId) -> usize {
        assert_ne!(account, EMPTY, "no account has the empty slot's id");
        let mask = self.slots.len() - 1;
        let mut index = self.home(account);
        // Never full (at most half), so the walk meets the account or an empty slot.
        loop {
            let slot = &self.slots[index];
            if slot.account == account || slot.account == EMPTY {
                return index;
            }
            index = (index + 1) & mask;
        }
    }

    #[inline]
    pub fn get(&self, account: AccountId) -> Option<&AccountHolds> {
        if self.len == 0 {
            return None;
        }
        let slot = &self.slots[self.find(account)];
        (slot.account == account).then_some(&slot.holds)
    }

    /// `account`'s entry, added empty if it has none.
    pub fn get_or_default(&mut self, account: AccountId) -> &mut AccountHolds {
        self.reserve_one();
        let index = self.find(account);
        let slot = &mut self.slots[index];
        if slot.account != account {
            slot.account = account;
            self.len += 1;
        }
        &mut slot.holds
    }

    /// Applies `change` to `account`'s entry, then removes the entry if it lists no open
    /// hold any more (one lookup for both). Returns whether `account` had an entry.
    pub fn update(&mut self, account: AccountId, change: impl FnOnce(&mut AccountHolds)) -> bool {
        if self.len == 0 {
            return false;
        }
        let index = self.find(account);
        if self.slots[index].account != account {
            return false;
        }
        change(&mut self.slots[index].holds);
        if self.slots[index].holds.open.is_empty() {
            self.remove_at(index);
        }
        true
    }

    /// Removes `account`'s entry, if any.
    pub fn remove(&mut self, account: AccountId) {
        if self.len == 0 {
            return;
        }
        let index = self.find(account);
        if self.slots[index].account == account {
            self.remove_at(index);
        }
    }

    /// Empties slot `gap`: each later entry of its run that may live closer to its home
    /// moves back into the gap, so every walk still ends at an empty slot only past its
    /// account.
    fn remove_at(&mut self, mut gap: usize) {
        self.slots[gap] = Slot::empty();
        self.len -= 1;
        let mask = self.slots.len() - 1;
        let mut next = (gap + 1) & mask;
        while self.slots[next].account != EMPTY {
            let home = self.home(self.slots[next].account);
            // The entry may move to the gap unless its home lies after the gap, up to
            // it (cyclically): there it would be placed before its home.
            let stays = if gap <= next {
                gap < home && home <= next
            } else {
                gap < home || home <= next
            };
            if !stays {
                self.slots[gap] = std::mem::replace(&mut self.slots[next], Slot::empty());
                gap = next;
            }
            next = (next + 1) & mask;
        }
    }

    /// Room for one more account: doubles (and re-places every account) past half full.
    fn reserve_one(&mut self) {
        if (self.len + 1) * 2 <= self.slots.len() {
            return;
        }
        let capacity = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![Slot::empty(); capacity]);
        for slot in old.into_iter().filter(|s| s.account != EMPTY) {
            let index = self.find(slot.account);
            self.slots[index] = slot;
        }
    }

    /// A hint: `account` will be looked up soon.
    #[inline]
    pub fn prefetch(&self, account: AccountId) {
        if self.len != 0 {
            crate::transactor::prefetch_read(&self.slots[self.home(account)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn holds(id: HoldId) -> AccountHolds {
        AccountHolds {
            reserved: Reserved {
                outgoing: id,
                incoming: 0,
            },
            open: SmallVec::from_slice(&[id]),
        }
    }

    proptest! {
        /// Adds and removes agree with a map, through growth and the shifts of removal
        /// (a few dozen ids crowd a small table's runs).
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec((any::<bool>(), 0u64..48), 1..2000)) {
            let mut table = HoldAccounts::default();
            let mut model = HashMap::new();
            for (add, account) in ops {
                if add {
                    *table.get_or_default(account) = holds(account);
                    model.insert(account, holds(account));
                } else {
                    table.remove(account);
                    model.remove(&account);
                }
                prop_assert_eq!(table.len, model.len());
                for account in 0..48 {
                    prop_assert_eq!(table.get(account), model.get(&account));
                }
            }
            for (&account, expected) in &model {
                prop_assert_eq!(table.get(account), Some(expected));
            }
        }
    }

    #[test]
    fn an_update_that_leaves_no_open_hold_removes_the_account() {
        let mut table = HoldAccounts::default();
        *table.get_or_default(7) = holds(7);
        table.get_or_default(7).open.push(8);
        assert!(table.update(7, |h| {
            h.open.pop();
        }));
        assert_eq!(table.get(7), Some(&holds(7)));
        assert!(table.update(7, |h| h.open.clear()));
        assert_eq!(table.get(7), None);
        assert_eq!(table.len, 0);
        assert!(!table.update(7, |_| unreachable!("no entry to change")));
    }

    #[test]
    fn a_removed_account_leaves_no_trace() {
        let mut table = HoldAccounts::default();
        for account in 0..1000 {
            *table.get_or_default(account) = holds(account);
        }
        for account in (0..1000).step_by(2) {
            table.remove(account);
        }
        table.remove(5_000);
        assert_eq!(table.len, 500);
        for account in 0..1000 {
            assert_eq!(table.get(account).is_some(), account % 2 == 1, "{account}");
        }
        assert!(
            table
                .slots
                .iter()
                .all(|s| s.account != EMPTY || s.holds == AccountHolds::default())
        );
    }
}
