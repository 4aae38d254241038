//! Configured accounts: what an account has beyond its balance (currency, rules, parent),
//! kept beside the dense balance table; the system account's balance per currency; and
//! the hierarchies' aggregates.
//!
//! An account never configured has no entry here and costs nothing: a ledger whose
//! accounts are all unconfigured keeps this table empty, and the transactor's plain path
//! asks only `is_empty()`.

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::RandomState;

use crate::account_map::AccountMap;
use crate::transaction::{AccountConfig, AccountId, Entry, HIERARCHY_DEPTH_MAX, SYSTEM_ACCOUNT};

/// One configured account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountState {
    pub config: AccountConfig,
    /// Money has moved in or out since it was configured: its currency is fixed.
    pub moved: bool,
}

impl AccountState {
    /// What an account never configured has (and an empty table slot holds).
    pub const UNCONFIGURED: AccountState = AccountState {
        config: AccountConfig::DEFAULT,
        moved: false,
    };
}

impl Default for AccountState {
    fn default() -> Self {
        AccountState::UNCONFIGURED
    }
}

// What a configured account costs: with its id, one table slot of 64 bytes
// (docs/money-model.md, "Memory").
const _: () = assert!(size_of::<(AccountId, AccountState)>() == 56);

/// A per-currency system balance would leave the `i64` range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemOverflow {
    pub currency: u32,
}

/// The configured accounts and the system account's balance per currency.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    /// Iteration order is never observed but through [`sorted`](Self::sorted).
    configured: AccountMap<AccountState>,
    /// The system account's balance in each currency but 0, non-zero ones only.
    /// Currency 0's is the rest of the system account's balance.
    system: BTreeMap<u32, i64>,
    /// Accounts with sub-accounts: how many, and the sum of their descendants' balances.
    subtrees: HashMap<AccountId, Subtree, RandomState>,
    /// How many configured accounts have not moved money yet: while none has, settling a
    /// transfer between configured accounts needs no lookup at all.
    unmoved: usize,
}

/// What an account with sub-accounts keeps for its aggregate balance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Subtree {
    /// Direct sub-accounts.
    children: u32,
    /// The sum of every descendant's balance (at most 2^32 balances of 2^63: fits).
    descendants: i128,
}

/// Why a parent cannot be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HierarchyFault {
    /// The parent is the account itself or one of its descendants.
    Cycle,
    /// The path from a root down to the account would exceed
    /// [`HIERARCHY_DEPTH_MAX`](crate::transaction::HIERARCHY_DEPTH_MAX).
    TooDeep,
    /// The account has sub-accounts: its parent and currency stay.
    HasChildren,
    /// The parent is in another currency.
    Currency,
}

impl Accounts {
    /// No account is configured: every rule is the default one.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.configured.is_empty()
    }

    /// The configured state of `account`, if it was ever configured.
    #[inline]
    pub fn get(&self, account: AccountId) -> Option<&AccountState> {
        if self.configured.is_empty() {
            return None;
        }
        self.configured.get(account)
    }

    /// A hint: `account` will be looked up soon (nothing when none is configured).
    #[inline]
    pub fn prefetch(&self, account: AccountId) {
        self.configured.prefetch(account);
    }

    /// `account`'s configuration (the default one if never configured).
    pub fn config(&self, account: AccountId) -> AccountConfig {
        self.get(account).map(|s| s.config).unwrap_or_default()
    }

    /// `account`'s currency (0 if never configured).
    #[inline]
    pub fn currency(&self, account: AccountId) -> u32 {
        self.get(account).map_or(0, |s| s.config.currency)
    }

    /// Makes `config` the account's configuration; `balance` is the account's. A change
    /// of currency starts the account afresh (nothing moved yet); a change of parent
    /// moves its balance from the old ancestors' aggregates to the new ones'. The caller
    /// checked both may change ([`check_parent`](Self::check_parent)).
    pub fn configure(&mut self, account: AccountId, config: AccountConfig, balance: i64) {
        let before = self.configured.len();
        let fresh = AccountState {
            config: AccountConfig {
                parent: 0,
                ..config
            },
            moved: false,
        };
        self.configured.get_or_insert_with(account, || fresh);
        let inserted = self.configured.len() > before;
        let state = self.configured.get_mut(account).expect("just inserted");
        let restarted = state.config.currency != config.currency && state.moved;
        if restarted {
            state.moved = false;
        }
        let old_parent = state.config.parent;
        state.config = config;
        self.unmoved += usize::from(inserted) + usize::from(restarted);
        if old_parent != config.parent {
            // Only an account without sub-accounts changes parent: its aggregate is its
            // balance.
            assert!(
                !self.subtrees.contains_key(&account),
                "a leaf changes parent"
            );
            if old_parent != 0 {
                self.add_to_ancestors(old_parent, -(balance as i128));
                let subtree = self.subtrees.get_mut(&old_parent).expect("a parent");
                subtree.children -= 1;
                if subtree.children == 0 {
                    assert_eq!(subtree.descendants, 0, "no descendant, no balance");
                    self.subtrees.remove(&old_parent);
                }
            }
            if config.parent != 0 {
                self.subtrees.entry(config.parent).or_default().children += 1;
                self.add_to_ancestors(config.parent, balance as i128);
            }
        }
    }

    /// Whether `account` (in `config.currency`) may take `config.parent` as its parent.
    pub fn check_parent(
        &self,
        account: AccountId,
        config: &AccountConfig,
    ) -> Result<(), HierarchyFault> {
        let current = self.get(account).map(|s| s.config).unwrap_or_default();
        let has_children = self.subtrees.contains_key(&account);
        if has_children && (current.parent != config.parent || current.currency != config.currency)
        {
            return Err(HierarchyFault::HasChildren);
        }
        if config.parent == 0 {
            return Ok(());
        }
        if config.parent == account {
            return Err(HierarchyFault::Cycle);
        }
        if self.currency(config.parent) != config.currency {
            return Err(HierarchyFault::Currency);
        }
        if config.parent == current.parent {
            return Ok(()); // The same place: the path was checked when it was set.
        }
        // A leaf (checked above) below the parent's path: no cycle can form.
        match self.depth(config.parent) {
            Some(depth) if depth < HIERARCHY_DEPTH_MAX => Ok(()),
            _ => Err(HierarchyFault::TooDeep),
        }
    }

    /// How many accounts from a root down to `account`, itself included; `None` past
    /// [`HIERARCHY_DEPTH_MAX`] (or a cycle, which restore refuses).
    fn depth(&self, account: AccountId) -> Option<usize> {
        let mut at = account;
        for depth in 1..=HIERARCHY_DEPTH_MAX {
            match self.parent(at) {
                0 => return Some(depth),
                parent => at = parent,
            }
        }
        None
    }

    /// `account`'s parent (0: none).
    #[inline]
    pub fn parent(&self, account: AccountId) -> AccountId {
        self.get(account).map_or(0, |s| s.config.parent)
    }

    /// The sum of `account`'s descendants' balances (0 without sub-accounts): its
    /// aggregate balance is its own plus this.
    pub fn descendants_balance(&self, account: AccountId) -> i128 {
        self.subtrees.get(&account).map_or(0, |s| s.descendants)
    }

    /// How many direct sub-accounts `account` has.
    pub fn children(&self, account: AccountId) -> u32 {
        self.subtrees.get(&account).map_or(0, |s| s.children)
    }

    /// Adds `delta` to the aggregate of `parent` and each of its ancestors.
    #[inline]
    fn add_to_ancestors(&mut self, parent: AccountId, delta: i128) {
        let mut at = parent;
        while at != 0 {
            let subtree = self.subtrees.get_mut(&at).expect("a parent has a subtree");
            subtree.descendants += delta;
            at = self.parent(at);
        }
    }

    /// A committed change of `delta` to `account`'s balance, for its ancestors'
    /// aggregates (nothing for an account without a parent).
    #[inline]
    pub fn note_balance_change(&mut self, account: AccountId, delta: i128) {
        let parent = self.parent(account);
        if parent != 0 {
            self.add_to_ancestors(parent, delta);
        }
    }

    /// Rebuilds the hierarchy's aggregates after a restore, checking every path: no
    /// cycle, no deeper than [`HIERARCHY_DEPTH_MAX`], one currency per parent and child.
    /// Returns the first account whose path is wrong.
    pub fn rebuild_subtrees(
        &mut self,
        balances: &[i64],
    ) -> Result<(), (AccountId, HierarchyFault)> {
        self.subtrees.clear();
        let children: Vec<(AccountId, AccountId)> = self
            .configured
            .iter()
            .filter(|(_, s)| s.config.parent != 0)
            .map(|(a, s)| (a, s.config.parent))
            .collect();
        for &(account, parent) in &children {
            if self.depth(account).is_none() {
                return Err((account, HierarchyFault::TooDeep));
            }
            if self.currency(parent) != self.currency(account) {
                return Err((account, HierarchyFault::Currency));
            }
            self.subtrees.entry(parent).or_default().children += 1;
        }
        for &(account, parent) in &children {
            let balance = usize::try_from(account)
                .ok()
                .and_then(|i| balances.get(i))
                .copied()
                .unwrap_or(0);
            self.add_to_ancestors(parent, balance as i128);
        }
        Ok(())
    }

    /// Money moved on `account` (a hold was opened on it): its currency is now fixed.
    pub fn note_moved(&mut self, account: AccountId) {
        if let Some(state) = self.configured.get_mut(account)
            && !state.moved
        {
            state.moved = true;
            self.unmoved -= 1;
        }
    }

    /// How many configured accounts have moved no money since they were configured.
    pub fn unmoved(&self) -> usize {
        self.unmoved
    }

    /// Restores one account as a snapshot saved it.
    pub fn restore(&mut self, account: AccountId, state: AccountState) {
        debug_assert!(self.configured.get(account).is_none(), "restored once");
        *self.configured.get_or_insert_with(account, || state) = state;
        self.unmoved += usize::from(!state.moved);
    }

    /// Restores the system account's balance in `currency` (not 0).
    pub fn restore_system(&mut self, currency: u32, balance: i64) {
        debug_assert_ne!(currency, 0);
        if balance != 0 {
            self.system.insert(currency, balance);
        }
    }

    /// The system account's balance in `currency`, given its balance in all of them.
    pub fn system_balance(&self, currency: u32, system_total: i64) -> i128 {
        match currency {
            0 => system_total as i128 - self.system.values().map(|&b| b as i128).sum::<i128>(),
            c => self.system.get(&c).copied().unwrap_or(0) as i128,
        }
    }

    /// The system account's non-zero balances in currencies other than 0.
    pub fn system_balances(&self) -> impl Iterator<Item = (u32, i64)> + '_ {
        self.system.iter().map(|(&c, &b)| (c, b))
    }

    /// Every configured account, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (AccountId, &AccountState)> + '_ {
        self.configured.iter()
    }

    /// Every configured account, by id.
    pub fn sorted(&self) -> Vec<(AccountId, AccountState)> {
        let mut all: Vec<_> = self.configured.iter().map(|(a, &s)| (a, s)).collect();
        all.sort_unstable_by_key(|&(a, _)| a);
        all
    }

    /// How many accounts are configured.
    pub fn len(&self) -> usize {
        self.configured.len()
    }

    /// Moves the system account's balance in `currency` (not 0) by `net`; on overflow
    /// nothing changes.
    pub fn add_system(&mut self, currency: u32, net: i64) -> Result<(), SystemOverflow> {
        debug_assert_ne!(currency, 0);
        let before = self.system.get(&currency).copied().unwrap_or(0);
        let after = before.checked_add(net).ok_or(SystemOverflow { currency })?;
        if after == 0 {
            self.system.remove(&currency);
        } else {
            self.system.insert(currency, after);
        }
        Ok(())
    }

    /// The bookkeeping of a committed transaction's entries, all in one currency: the
    /// system account's share moves its balance in that currency, every configured
    /// account touched has moved money, and sub-accounts' changes reach their ancestors'
    /// aggregates. Checked first, then applied: on `Err` nothing changed.
    pub fn settle(&mut self, entries: &[Entry]) -> Result<(), SystemOverflow> {
        if self.configured.is_empty() {
            return Ok(());
        }
        // Every configured account has moved money and none has a parent: only the
        // system account's share per currency is left to do, and only if it takes part.
        if self.unmoved == 0
            && self.subtrees.is_empty()
            && entries.iter().all(|e| e.account_id != SYSTEM_ACCOUNT)
        {
            return Ok(());
        }
        // One lookup per entry: each configured account is marked as it is met (and
        // unmarked again in the rare case that the system account's share overflows).
        let mut currency = None;
        let mut net: i128 = 0;
        let mut marked = [0; 2];
        let mut marked_more = Vec::new();
        for entry in entries {
            if entry.account_id == SYSTEM_ACCOUNT {
                net += entry.delta();
                continue;
            }
            let state = self.configured.get_mut(entry.account_id);
            currency.get_or_insert(state.as_ref().map_or(0, |s| s.config.currency));
            if let Some(state) = state.filter(|s| !s.moved) {
                state.moved = true;
                self.unmoved -= 1;
                match marked.iter_mut().find(|m| **m == 0) {
                    Some(slot) => *slot = entry.account_id,
                    None => marked_more.push(entry.account_id),
                }
            }
        }
        let currency = currency.unwrap_or(0);
        if currency != 0 && net != 0 {
            let before = self.system.get(&currency).copied().unwrap_or(0);
            let Ok(after) = i64::try_from(before as i128 + net) else {
                for account in marked.into_iter().filter(|&a| a != 0).chain(marked_more) {
                    if let Some(state) = self.configured.get_mut(account) {
                        state.moved = false;
                        self.unmoved += 1;
                    }
                }
                return Err(SystemOverflow { currency });
            };
            if after == 0 {
                self.system.remove(&currency);
            } else {
                self.system.insert(currency, after);
            }
        }
        if !self.subtrees.is_empty() {
            for entry in entries {
                self.note_balance_change(entry.account_id, entry.delta());
            }
        }
        Ok(())
    }

    /// Checks the zero sum per currency: each currency's accounts and the system
    /// account's share of it add up to zero. `balances` indexed by account id.
    /// Returns the first currency that does not, with its sum. O(configured accounts).
    pub fn unbalanced_currency(&self, balances: &[i64]) -> Option<(u32, i128)> {
        let mut sums: BTreeMap<u32, i128> =
            self.system.iter().map(|(&c, &b)| (c, b as i128)).collect();
        for (account, state) in self.configured.iter() {
            let currency = state.config.currency;
            if currency == 0 {
                continue;
            }
            let balance = usize::try_from(account)
                .ok()
                .and_then(|i| balances.get(i))
                .copied()
                .unwrap_or(0);
            *sums.entry(currency).or_insert(0) += balance as i128;
        }
        sums.into_iter().find(|&(_, sum)| sum != 0)
    }
}
