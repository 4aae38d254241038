//! The heads of the per-account history chains: for each account, the last transaction
//! that touched it. The Transactor stage writes each entry's back-link from its own copy
//! (while the account's balance is in cache anyway); the readers' copy (beside the visible
//! balances) starts an account's history; snapshots carry it, so a restart keeps every
//! chain intact.

use crate::record::AccountLink;
use crate::transaction::{AccountId, Entry, TxId};
use crate::transactor::{PREFETCH_STEPS_MAX, link_entries, prefetch_read};

/// `latest[account]`: the last transaction with an entry on `account` (0: none yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AccountLinks {
    latest: Vec<TxId>,
}

impl AccountLinks {
    /// Links for accounts `0..max_accounts`; zeroed pages cost nothing until touched.
    pub fn new(max_accounts: usize) -> AccountLinks {
        AccountLinks {
            latest: vec![0; max_accounts],
        }
    }

    /// Links restored from a snapshot; accounts beyond `saved` start with none.
    pub fn restore(max_accounts: usize, saved: impl Iterator<Item = TxId>) -> AccountLinks {
        let mut links = AccountLinks::new(max_accounts);
        for (slot, tx_id) in links.latest.iter_mut().zip(saved) {
            *slot = tx_id;
        }
        links
    }

    /// Makes room for accounts `0..max_accounts` (new ones with no history); an error if
    /// there is no memory for it.
    pub fn grow(&mut self, max_accounts: usize) -> Result<(), std::collections::TryReserveError> {
        if max_accounts > self.latest.len() {
            let mut latest = Vec::new();
            latest.try_reserve_exact(max_accounts)?;
            ledger_storage::advise_huge_pages(&latest);
            latest.extend_from_slice(&self.latest);
            latest.resize(max_accounts, 0);
            self.latest = latest;
        }
        Ok(())
    }

    pub fn as_slice(&self) -> &[TxId] {
        &self.latest
    }

    /// The last transaction of `account` (0: none, or beyond `max_accounts`).
    pub fn latest(&self, account: u64) -> TxId {
        usize::try_from(account)
            .ok()
            .and_then(|i| self.latest.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Records that `tx_id` touched the accounts of `entries`, writing each entry's
    /// back-link (the account's previous transaction) into `prev`. Two entries of one
    /// account in one transaction both link to the transaction before it.
    #[inline]
    pub fn link(&mut self, tx_id: TxId, entries: &[Entry], prev: &mut Vec<TxId>) {
        prev.clear();
        prev.extend(entries.iter().map(|e| self.latest(e.account_id)));
        self.apply(tx_id, entries, &[]);
    }

    /// [`link`](Self::link) for a transaction whose effects also touched `accounts`
    /// (without an entry): their back-links go to `effect_links`. Every link of one
    /// account in one transaction names the transaction before it.
    pub fn link_with_effects(
        &mut self,
        tx_id: TxId,
        entries: &[Entry],
        prev: &mut Vec<TxId>,
        accounts: &[AccountId],
        effect_links: &mut Vec<AccountLink>,
    ) {
        effect_links.clear();
        effect_links.extend(accounts.iter().map(|&account_id| AccountLink {
            account_id,
            prev_tx_id: self.latest(account_id),
        }));
        prev.clear();
        prev.extend(entries.iter().map(|e| self.latest(e.account_id)));
        self.apply(tx_id, entries, effect_links);
    }

    /// Records that `tx_id` touched the accounts of `entries` and `effect_links`.
    #[inline]
    pub fn apply(&mut self, tx_id: TxId, entries: &[Entry], effect_links: &[AccountLink]) {
        link_entries(&mut self.latest, tx_id, entries, effect_links);
    }

    /// A hint: the links of `entries` will be used soon.
    #[inline]
    pub fn prefetch(&self, entries: &[Entry]) {
        for entry in entries.iter().take(PREFETCH_STEPS_MAX) {
            self.prefetch_account(entry.account_id);
        }
    }

    /// A hint: `account` will be linked soon (the system account, touched by every
    /// deposit and withdrawal, stays in cache by itself).
    #[inline]
    pub fn prefetch_account(&self, account: u64) {
        if let Some(slot) = usize::try_from(account)
            .ok()
            .and_then(|i| self.latest.get(i))
        {
            prefetch_read(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::EntryKind;

    fn entry(account_id: u64) -> Entry {
        Entry {
            account_id,
            amount: 1,
            kind: EntryKind::Debit,
            balance_after: 1,
        }
    }

    #[test]
    fn links_chain_each_account_through_its_transactions() {
        let mut links = AccountLinks::new(10);
        let mut prev = Vec::new();
        links.link(3, &[entry(0), entry(1)], &mut prev);
        assert_eq!(prev, [0, 0]);
        links.link(5, &[entry(1), entry(2), entry(1)], &mut prev);
        assert_eq!(prev, [3, 0, 3]);
        links.link(9, &[entry(2), entry(99)], &mut prev);
        assert_eq!(prev, [5, 0]);
        assert_eq!(
            (
                links.latest(0),
                links.latest(1),
                links.latest(2),
                links.latest(99)
            ),
            (3, 5, 9, 0)
        );
        // A hold between 2 and 7: both link back, then both heads move to it.
        let mut effect_links = Vec::new();
        links.link_with_effects(11, &[], &mut prev, &[2, 7], &mut effect_links);
        assert!(prev.is_empty());
        let link = |account_id, prev_tx_id| AccountLink {
            account_id,
            prev_tx_id,
        };
        assert_eq!(effect_links, [link(2, 9), link(7, 0)]);
        // Entries and effect links of one account in one transaction all name the one
        // before it.
        links.link_with_effects(12, &[entry(7)], &mut prev, &[7, 1], &mut effect_links);
        assert_eq!(
            (prev.as_slice(), effect_links.as_slice()),
            (&[11][..], &[link(7, 11), link(1, 5)][..])
        );
        assert_eq!(
            (links.latest(7), links.latest(1), links.latest(2)),
            (12, 12, 11)
        );
        let restored = AccountLinks::restore(12, links.as_slice().iter().copied());
        assert_eq!(restored.latest(2), 11);
        assert_eq!(restored.as_slice().len(), 12);
    }
}
