//! The balance table replay rebuilds: dense, indexed by account id like the engine's, but
//! grown on demand (the engine's `max_accounts` is not in the log).

use ledger_core::transaction::{Entry, TxId};
use ledger_core::transactor::{ReplayError, apply_entries, prefetch_read};

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
    limit: usize,
}

impl Balances {
    /// An empty table (every balance 0) that may grow to `limit` accounts.
    pub fn new(limit: usize) -> Balances {
        Balances {
            table: Vec::new(),
            limit,
        }
    }

    /// A table starting from a snapshot's balances.
    pub fn from_slice(balances: impl ExactSizeIterator<Item = i64>, limit: usize) -> Balances {
        let mut table = table_with_capacity(balances.len());
        table.extend(balances);
        let limit = limit.max(table.len());
        Balances { table, limit }
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

    /// Applies one committed transaction's entries with the engine's check
    /// (`ledger_core::transactor::apply_entries`): every balance-after must equal the
    /// balance before plus the entry (exact, no wrapping: an `i64` overflow cannot match),
    /// and the entries must net to zero.
    #[inline]
    pub fn apply(&mut self, tx_id: TxId, entries: &[Entry]) -> Result<(), ApplyError> {
        let needed = entries.iter().map(|e| e.account_id).max().unwrap_or(0);
        if usize::try_from(needed).map_or(true, |n| n >= self.table.len()) {
            self.grow(tx_id, needed)?;
        }
        apply_entries(&mut self.table, tx_id, entries).map_err(ApplyError::Mismatch)
    }

    /// A hint that `entries` will be applied soon: start loading their balances.
    #[inline]
    pub fn prefetch(&self, entries: &[Entry]) {
        for entry in entries {
            if let Some(slot) = usize::try_from(entry.account_id)
                .ok()
                .and_then(|a| self.table.get(a))
            {
                prefetch_read(slot);
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
        let mut table = table_with_capacity(len);
        table.extend_from_slice(&self.table);
        table.resize(len, 0);
        self.table = table;
        Ok(())
    }
}

/// An empty table with room for `len` balances, backed by transparent huge pages where
/// the kernel offers them (`madvise` mode): replay reads balances at random, and with
/// 4 KiB pages a miss in the TLB came with most cache misses (a 1M-account table is
/// 2048 pages; 2 MiB pages make it 4).
fn table_with_capacity(len: usize) -> Vec<i64> {
    let table: Vec<i64> = Vec::with_capacity(len);
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = table.as_ptr() as usize;
        let end = start + table.capacity() * std::mem::size_of::<i64>();
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
