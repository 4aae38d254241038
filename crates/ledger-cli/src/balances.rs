//! The balance table replay rebuilds, and beside it the head of each account's history
//! chain (to check back-links): dense, indexed by account id like the engine's, but grown
//! on demand (the engine's `max_accounts` is not in the log).

use ledger_core::record::AccountLink;
use ledger_core::transaction::{Entry, TxId};
use ledger_core::transactor::{
    ReplayError, apply_entries, check_links, link_entries, prefetch_read,
};

/// Why an entry could not be applied.
#[derive(Debug)]
pub enum ApplyError {
    /// The stored result disagrees with the balances (the engine's own replay check).
    Mismatch(ReplayError),
    /// An account id at or above `--max-accounts`.
    TooManyAccounts { tx_id: TxId, account_id: u64 },
}

#[derive(Debug)]
pub struct Balances {
    table: Vec<i64>,
    /// `latest[account]`: the last transaction on `account` (0: none); as long as `table`.
    latest: Vec<TxId>,
    limit: usize,
}

impl Balances {
    /// An empty table (every balance 0) that may grow to `limit` accounts.
    pub fn new(limit: usize) -> Balances {
        Balances {
            table: Vec::new(),
            latest: Vec::new(),
            limit,
        }
    }

    /// A table starting from a snapshot's balances and chain heads (`latest`).
    pub fn from_snapshot(
        balances: impl ExactSizeIterator<Item = i64>,
        latest: impl ExactSizeIterator<Item = TxId>,
        limit: usize,
    ) -> Balances {
        let len = balances.len().max(latest.len());
        let mut table = table_with_capacity(len);
        table.extend(balances);
        table.resize(len, 0);
        let mut heads = table_with_capacity(len);
        heads.extend(latest);
        heads.resize(len, 0);
        Balances {
            table,
            latest: heads,
            limit: limit.max(len),
        }
    }

    pub fn as_slice(&self) -> &[i64] {
        &self.table
    }

    /// The balance of `account` (0 for one never touched).
    pub fn get(&self, account: u64) -> i64 {
        usize::try_from(account)
            .ok()
            .and_then(|a| self.table.get(a))
            .copied()
            .unwrap_or(0)
    }

    /// Applies one committed transaction's entries with the checks of the engine's
    /// recovery, in its order (`ledger_core::transactor::check_links`, then
    /// `apply_entries`): every back-link must name the account's previous transaction,
    /// every balance-after must equal the balance before plus the entry (exact, no
    /// wrapping: an `i64` overflow cannot match), and the entries must net to zero.
    #[inline]
    pub fn apply(
        &mut self,
        tx_id: TxId,
        entries: &[Entry],
        prev_tx_ids: &[TxId],
        effect_links: &[(usize, AccountLink)],
    ) -> Result<(), ApplyError> {
        let mut needed = entries.iter().map(|e| e.account_id).max().unwrap_or(0);
        if !effect_links.is_empty() {
            let linked = effect_links.iter().map(|(_, l)| l.account_id).max();
            needed = needed.max(linked.unwrap_or(0));
        }
        if usize::try_from(needed).map_or(true, |n| n >= self.table.len()) {
            self.grow(tx_id, needed)?;
        }
        if effect_links.is_empty() {
            return self.check_and_apply(tx_id, entries, prev_tx_ids, &[]);
        }
        // A hold or a configuration: rare, so a small copy of its links is fine.
        let links: Vec<AccountLink> = effect_links.iter().map(|&(_, l)| l).collect();
        self.check_and_apply(tx_id, entries, prev_tx_ids, &links)
    }

    #[inline]
    fn check_and_apply(
        &mut self,
        tx_id: TxId,
        entries: &[Entry],
        prev_tx_ids: &[TxId],
        effect_links: &[AccountLink],
    ) -> Result<(), ApplyError> {
        check_links(&self.latest, tx_id, entries, prev_tx_ids, effect_links)
            .map_err(ApplyError::Mismatch)?;
        apply_entries(&mut self.table, tx_id, entries).map_err(ApplyError::Mismatch)?;
        link_entries(&mut self.latest, tx_id, entries, effect_links);
        Ok(())
    }

    /// A hint that `entries` will be applied soon: start loading their balances and
    /// chain heads.
    #[inline]
    pub fn prefetch(&self, entries: &[Entry]) {
        for entry in entries {
            if let Ok(a) = usize::try_from(entry.account_id)
                && let (Some(balance), Some(head)) = (self.table.get(a), self.latest.get(a))
            {
                prefetch_read(balance);
                prefetch_read(head);
            }
        }
    }

    #[cold]
    fn grow(&mut self, tx_id: TxId, account_id: u64) -> Result<(), ApplyError> {
        let needed = usize::try_from(account_id)
            .ok()
            .and_then(|a| a.checked_add(1))
            .filter(|&n| n <= self.limit)
            .ok_or(ApplyError::TooManyAccounts { tx_id, account_id })?;
        // Doubling keeps growth amortised; the limit caps what a bad id can allocate.
        let len = needed
            .max(self.table.len().saturating_mul(2))
            .min(self.limit);
        self.table = grown(&self.table, len);
        self.latest = grown(&self.latest, len);
        Ok(())
    }
}

/// `old` copied into a table of `len` (the rest zero).
fn grown<T: Copy + Default>(old: &[T], len: usize) -> Vec<T> {
    let mut table = table_with_capacity(len);
    table.extend_from_slice(old);
    table.resize(len, T::default());
    table
}

/// An empty table with room for `len` values, backed by transparent huge pages where
/// the kernel offers them (`madvise` mode): replay reads balances at random, and with
/// 4 KiB pages a miss in the TLB came with most cache misses (a 1M-account table is
/// 2048 pages; 2 MiB pages make it 4).
fn table_with_capacity<T>(len: usize) -> Vec<T> {
    let table: Vec<T> = Vec::with_capacity(len);
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = table.as_ptr() as usize;
        let end = start + table.capacity() * std::mem::size_of::<T>();
        let aligned = start.next_multiple_of(HUGE);
        if end > aligned + HUGE {
            // SAFETY: the range lies inside the allocation this Vec owns; MADV_HUGEPAGE
            // only changes how its not yet touched pages are backed, never their contents.
            // A failure (THP disabled) leaves 4 KiB pages: nothing to handle.
            unsafe {
                libc::madvise(
                    aligned as *mut libc::c_void,
                    (end - aligned) / HUGE * HUGE,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    table
}
