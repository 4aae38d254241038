//! The configured accounts' table: open addressing with linear probing over slots of one
//! cache line each, so that the transactor can prefetch an account's slot a few
//! operations ahead, as it prefetches balances (a `HashMap` offers no way to). Accounts
//! are configured, never unconfigured: the table only grows.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use crate::accounts::AccountState;
use crate::transaction::{AccountId, SYSTEM_ACCOUNT};

/// One slot: a key (the system account's id, never configured, marks it empty) and its
/// state, aligned to a cache line so a lookup that hits its first slot touches one line.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
struct Slot {
    account: AccountId,
    state: AccountState,
}

const _: () = assert!(size_of::<Slot>() == 64);

const EMPTY: Slot = Slot {
    account: SYSTEM_ACCOUNT,
    state: AccountState::UNCONFIGURED,
};

/// Configured accounts by id.
#[derive(Clone, Debug, Default)]
pub(crate) struct AccountTable {
    /// A power of two long (or empty), at most 3/4 full.
    slots: Vec<Slot>,
    len: usize,
    /// Seeded per process: ids come from clients, so their spread is not trusted.
    hasher: RandomState,
}

impl AccountTable {
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
        assert_ne!(
            account, SYSTEM_ACCOUNT,
            "the system account is never configured"
        );
        let mask = self.slots.len() - 1;
        let mut index = self.home(account);
        // Never full (at most 3/4), so the walk meets the account or an empty slot.
        loop {
            let slot = &self.slots[index];
            if slot.account == account || slot.account == SYSTEM_ACCOUNT {
                return index;
            }
            index = (index + 1) & mask;
        }
    }

    #[inline]
    pub fn get(&self, account: AccountId) -> Option<&AccountState> {
        if self.len == 0 || account == SYSTEM_ACCOUNT {
            return None;
        }
        let slot = &self.slots[self.find(account)];
        (slot.account == account).then_some(&slot.state)
    }

    #[inline]
    pub fn get_mut(&mut self, account: AccountId) -> Option<&mut AccountState> {
        if self.len == 0 || account == SYSTEM_ACCOUNT {
            return None;
        }
        let index = self.find(account);
        let slot = &mut self.slots[index];
        (slot.account == account).then_some(&mut slot.state)
    }

    /// `account`'s state, inserted as `state` if it has none.
    pub fn get_or_insert(&mut self, account: AccountId, state: AccountState) -> &mut AccountState {
        self.reserve_one();
        let index = self.find(account);
        let slot = &mut self.slots[index];
        if slot.account != account {
            *slot = Slot { account, state };
            self.len += 1;
        }
        &mut slot.state
    }

    /// Sets `account`'s state.
    pub fn insert(&mut self, account: AccountId, state: AccountState) {
        *self.get_or_insert(account, state) = state;
    }

    /// Room for one more account: doubles (and re-places every account) past 3/4 full.
    fn reserve_one(&mut self) {
        if (self.len + 1) * 4 <= self.slots.len() * 3 {
            return;
        }
        let capacity = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; capacity]);
        for slot in old.into_iter().filter(|s| s.account != SYSTEM_ACCOUNT) {
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

    /// Every configured account, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (AccountId, &AccountState)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.account != SYSTEM_ACCOUNT)
            .map(|s| (s.account, &s.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::AccountConfig;

    fn state(currency: u32) -> AccountState {
        AccountState {
            config: AccountConfig {
                currency,
                ..AccountConfig::default()
            },
            moved: false,
        }
    }

    #[test]
    fn finds_every_account_it_holds_through_growth() {
        let mut table = AccountTable::default();
        assert!(table.get(7).is_none());
        for account in 1..5_000u64 {
            table.insert(account * 3, state(account as u32));
            assert_eq!(table.len(), account as usize);
        }
        for account in 1..5_000u64 {
            assert_eq!(
                table.get(account * 3).map(|s| s.config.currency),
                Some(account as u32)
            );
            assert!(table.get(account * 3 + 1).is_none());
        }
        assert!(table.slots.len() * 3 >= table.len() * 4);
        assert_eq!(table.iter().count(), table.len());
        // Setting again replaces, never adds.
        table.insert(3, state(99));
        assert_eq!(table.len(), 4_999);
        assert_eq!(table.get(3).map(|s| s.config.currency), Some(99));
        table.get_mut(3).unwrap().moved = true;
        assert!(table.get(3).unwrap().moved);
        assert!(table.get(SYSTEM_ACCOUNT).is_none());
    }
}
