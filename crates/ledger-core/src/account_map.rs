//! The state machine's per-account side tables (configured accounts, accounts with open
//! holds): open addressing with linear probing over slots of one cache line each, so that
//! the stages can prefetch an account's slot a few operations ahead, as they prefetch
//! balances (a `HashMap` offers no way to). Removal moves the later entries of the gap's
//! run back, leaving no tombstones.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use crate::transaction::AccountId;

/// No account has this id (ids are below `max_accounts`, at most 2^32).
const EMPTY: AccountId = AccountId::MAX;

/// One slot: a key (`EMPTY` when free, and then a default value) and its value, aligned
/// to a cache line so a lookup that hits its first slot touches one line.
#[derive(Clone, Debug, Default)]
#[repr(align(64))]
struct Slot<V> {
    account: AccountId,
    value: V,
}

impl<V: Default> Slot<V> {
    /// Every table's slot is exactly one cache line.
    const ONE_LINE: () = assert!(size_of::<Slot<V>>() == 64);

    fn empty() -> Slot<V> {
        Slot {
            account: EMPTY,
            value: V::default(),
        }
    }
}

/// Values by account id.
#[derive(Clone, Debug)]
pub(crate) struct AccountMap<V> {
    /// A power of two long (or empty), at most `max_quarters`/4 full.
    slots: Vec<Slot<V>>,
    len: usize,
    /// 3 by default; 2 for a table of few entries that come and go, where shorter runs
    /// (removal walks its entry's run) are worth the memory.
    max_quarters: usize,
    /// Seeded per process: ids come from clients, so their spread is not trusted.
    hasher: RandomState,
}

impl<V> Default for AccountMap<V> {
    fn default() -> Self {
        AccountMap {
            slots: Vec::new(),
            len: 0,
            max_quarters: 3,
            hasher: RandomState::default(),
        }
    }
}

impl<V> AccountMap<V> {
    /// A table kept at most half full.
    pub fn half_full() -> Self {
        AccountMap {
            max_quarters: 2,
            ..AccountMap::default()
        }
    }
}

impl<V: Clone + Default> AccountMap<V> {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
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
        // Never full (at most 3/4), so the walk meets the account or an empty slot.
        loop {
            let slot = &self.slots[index];
            if slot.account == account || slot.account == EMPTY {
                return index;
            }
            index = (index + 1) & mask;
        }
    }

    #[inline]
    pub fn get(&self, account: AccountId) -> Option<&V> {
        if self.len == 0 {
            return None;
        }
        let slot = &self.slots[self.find(account)];
        (slot.account == account).then_some(&slot.value)
    }

    #[inline]
    pub fn get_mut(&mut self, account: AccountId) -> Option<&mut V> {
        if self.len == 0 {
            return None;
        }
        let index = self.find(account);
        let slot = &mut self.slots[index];
        (slot.account == account).then_some(&mut slot.value)
    }

    /// `account`'s value, inserted as `value()` if it has none.
    pub fn get_or_insert_with(&mut self, account: AccountId, value: impl FnOnce() -> V) -> &mut V {
        let () = Slot::<V>::ONE_LINE;
        self.reserve_one();
        let index = self.find(account);
        let slot = &mut self.slots[index];
        if slot.account != account {
            *slot = Slot {
                account,
                value: value(),
            };
            self.len += 1;
        }
        &mut slot.value
    }

    /// Applies `change` to `account`'s value, then removes the entry unless `change`
    /// returned true (one lookup for both). Returns whether `account` had an entry.
    pub fn update(&mut self, account: AccountId, change: impl FnOnce(&mut V) -> bool) -> bool {
        if self.len == 0 {
            return false;
        }
        let index = self.find(account);
        if self.slots[index].account != account {
            return false;
        }
        if !change(&mut self.slots[index].value) {
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

    /// Room for one more account: doubles (and re-places every account) past the
    /// table's fill.
    fn reserve_one(&mut self) {
        if (self.len + 1) * 4 <= self.slots.len() * self.max_quarters {
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

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (AccountId, &V)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.account != EMPTY)
            .map(|s| (s.account, &s.value))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Inserts, updates and removes agree with a map, through growth and the shifts
        /// of removal (a few dozen ids crowd a small table's runs).
        #[test]
        fn behaves_as_a_map(
            half in any::<bool>(),
            ops in proptest::collection::vec((0u8..3, 0u64..48), 1..2000),
        ) {
            let mut table = if half { AccountMap::<u64>::half_full() } else { AccountMap::default() };
            let mut model = HashMap::new();
            for (op, account) in ops {
                match op {
                    0 => {
                        *table.get_or_insert_with(account, || 0) += account + 1;
                        *model.entry(account).or_insert(0) += account + 1;
                    }
                    1 => {
                        // Keeps it only while below a bound: removes some, keeps others.
                        let found = table.update(account, |v| {
                            *v += 1;
                            *v % 3 != 0
                        });
                        prop_assert_eq!(found, model.contains_key(&account));
                        if let Some(v) = model.get_mut(&account) {
                            *v += 1;
                            if *v % 3 == 0 {
                                model.remove(&account);
                            }
                        }
                    }
                    _ => {
                        table.remove(account);
                        model.remove(&account);
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                for account in 0..48 {
                    prop_assert_eq!(table.get(account), model.get(&account));
                }
            }
            let mut listed: Vec<_> = table.iter().map(|(a, &v)| (a, v)).collect();
            listed.sort_unstable();
            let mut expected: Vec<_> = model.into_iter().collect();
            expected.sort_unstable();
            prop_assert_eq!(listed, expected);
        }
    }

    #[test]
    fn finds_every_account_it_holds_through_growth() {
        let mut table = AccountMap::<u64>::default();
        assert!(table.get(7).is_none());
        for account in 0..5_000u64 {
            *table.get_or_insert_with(account * 3, || 0) = account;
            assert_eq!(table.len(), account as usize + 1);
        }
        for account in 0..5_000u64 {
            assert_eq!(table.get(account * 3), Some(&account));
            assert!(table.get(account * 3 + 1).is_none());
        }
        assert!(table.slots.len() * 3 >= table.len() * 4);
        // Removing every other account leaves the rest reachable and nothing behind.
        for account in (0..5_000u64).step_by(2) {
            table.remove(account * 3);
        }
        table.remove(1);
        assert_eq!(table.len(), 2_500);
        for account in 0..5_000u64 {
            assert_eq!(table.get(account * 3).is_some(), account % 2 == 1);
        }
        assert!(
            table
                .slots
                .iter()
                .all(|s| s.account != EMPTY || s.value == 0)
        );
        assert!(!table.update(1, |_| unreachable!("no entry to change")));
        *table.get_mut(3).expect("account 3") = 99;
        assert_eq!(table.get(3), Some(&99));
    }
}
