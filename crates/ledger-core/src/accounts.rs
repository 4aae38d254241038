//! Configured accounts: what an account has beyond its balance (currency, rules), kept
//! beside the dense balance table, and the system account's balance per currency.
//!
//! An account never configured has no entry here and costs nothing: a ledger whose
//! accounts are all unconfigured keeps this table empty, and the transactor's plain path
//! asks only `is_empty()`.

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::RandomState;

use crate::transaction::{AccountConfig, AccountId, Entry, SYSTEM_ACCOUNT};

/// One configured account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountState {
    pub config: AccountConfig,
    /// Money has moved in or out since it was configured: its currency is fixed.
    pub moved: bool,
}

// What a configured account costs in the map (docs/money-model.md, "Memory").
const _: () = assert!(size_of::<(AccountId, AccountState)>() == 48);

/// A per-currency system balance would leave the `i64` range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemOverflow {
    pub currency: u32,
}

/// The configured accounts and the system account's balance per currency.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    /// Seeded like the dedup map (ids come from clients); iteration order is never
    /// observed but through [`sorted`](Self::sorted).
    configured: HashMap<AccountId, AccountState, RandomState>,
    /// The system account's balance in each currency but 0, non-zero ones only.
    /// Currency 0's is the rest of the system account's balance.
    system: BTreeMap<u32, i64>,
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
        self.configured.get(&account)
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

    /// Makes `config` the account's configuration. A change of currency starts the
    /// account afresh (nothing moved yet); the caller checked it may change.
    pub fn configure(&mut self, account: AccountId, config: AccountConfig) {
        let state = self.configured.entry(account).or_insert(AccountState {
            config,
            moved: false,
        });
        if state.config.currency != config.currency {
            state.moved = false;
        }
        state.config = config;
    }

    /// Money moved on `account` (a hold was opened on it): its currency is now fixed.
    pub fn note_moved(&mut self, account: AccountId) {
        if let Some(state) = self.configured.get_mut(&account) {
            state.moved = true;
        }
    }

    /// Restores one account as a snapshot saved it.
    pub fn restore(&mut self, account: AccountId, state: AccountState) {
        self.configured.insert(account, state);
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

    /// Every configured account, by id.
    pub fn sorted(&self) -> Vec<(AccountId, AccountState)> {
        let mut all: Vec<_> = self.configured.iter().map(|(&a, &s)| (a, s)).collect();
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
    /// system account's share moves its balance in that currency, and every configured
    /// account touched has moved money. Checked first, then applied: on `Err` nothing
    /// changed.
    pub fn settle(&mut self, entries: &[Entry]) -> Result<(), SystemOverflow> {
        if self.configured.is_empty() {
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
            let state = self.configured.get_mut(&entry.account_id);
            currency.get_or_insert(state.as_ref().map_or(0, |s| s.config.currency));
            if let Some(state) = state.filter(|s| !s.moved) {
                state.moved = true;
                match marked.iter_mut().find(|m| **m == 0) {
                    Some(slot) => *slot = entry.account_id,
                    None => marked_more.push(entry.account_id),
                }
            }
        }
        let currency = currency.unwrap_or(0);
        if currency == 0 || net == 0 {
            return Ok(());
        }
        let before = self.system.get(&currency).copied().unwrap_or(0);
        let Ok(after) = i64::try_from(before as i128 + net) else {
            for account in marked.into_iter().filter(|&a| a != 0).chain(marked_more) {
                if let Some(state) = self.configured.get_mut(&account) {
                    state.moved = false;
                }
            }
            return Err(SystemOverflow { currency });
        };
        if after == 0 {
            self.system.remove(&currency);
        } else {
            self.system.insert(currency, after);
        }
        Ok(())
    }

    /// Checks the zero sum per currency: each currency's accounts and the system
    /// account's share of it add up to zero. `balances` indexed by account id.
    /// Returns the first currency that does not, with its sum. O(configured accounts).
    pub fn unbalanced_currency(&self, balances: &[i64]) -> Option<(u32, i128)> {
        let mut sums: BTreeMap<u32, i128> =
            self.system.iter().map(|(&c, &b)| (c, b as i128)).collect();
        for (&account, state) in &self.configured {
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
