//! Replay's check against the snapshots it passes: the replayed state must equal the
//! stored one in every part a snapshot holds.

use std::fmt::Debug;

use ledger_core::holds::HoldState;
use ledger_core::ledger::{LoadedSnapshot, ReplayState, STATE_FORMAT};

/// Why `replayed` differs from `snapshot` (taken at the same transaction), naming the
/// first difference found; `None` when they are equal. A snapshot's table may be longer
/// or shorter than the replayed one: the accounts beyond either end are zero (and have
/// no history).
pub fn first_difference(replayed: &ReplayState, snapshot: &LoadedSnapshot) -> Option<String> {
    let transactor = replayed.transactor();
    let balances = snapshot.balances().iter().map(|b| b.to_native());
    let latest = snapshot.latest().iter().map(|l| l.to_native());
    if let Some(d) = first_in_table(transactor.balances(), balances) {
        return Some(format!("balance of account {d}"));
    }
    if let Some(d) = first_in_table(replayed.latest(), latest) {
        return Some(format!("last transaction of account {d}"));
    }
    if transactor.now_ns() != snapshot.now_ns() {
        return Some(format!(
            "sequencer time: the WAL gives {}, the snapshot holds {}",
            transactor.now_ns(),
            snapshot.now_ns()
        ));
    }
    let accounts = transactor.accounts();
    let system: Vec<_> = accounts.system_balances().collect();
    let mut ours_holds = transactor.holds().sorted();
    let mut theirs_holds = match snapshot.holds() {
        Ok(holds) => holds,
        Err(e) => return Some(format!("its holds: {e}")),
    };
    if snapshot.format() != STATE_FORMAT {
        // Older formats saved no closing times: compare the open holds only.
        ours_holds.retain(|(_, h)| h.state == HoldState::Open);
        theirs_holds.retain(|(_, h)| h.state == HoldState::Open);
    }
    let dedup: Vec<_> = transactor
        .dedup()
        .entries()
        .map(|(user_ref, tx_id, ts)| (tx_id, (user_ref, ts)))
        .collect();
    let stored_dedup: Vec<_> = snapshot
        .dedup()
        .iter()
        .map(|e| {
            let tx_id = e.tx_id.to_native();
            (tx_id, (e.user_ref.to_native(), e.timestamp_ns.to_native()))
        })
        .collect();
    first_in_list(
        "configured account",
        &accounts.sorted(),
        &snapshot.accounts(),
    )
    .or_else(|| {
        first_in_list(
            "system balance in currency",
            &system,
            &snapshot.system_balances(),
        )
    })
    .or_else(|| {
        first_in_list(
            "reversal of transaction",
            &transactor.reversals(),
            &snapshot.reversals(),
        )
    })
    .or_else(|| {
        first_in_list("hold", &ours_holds, &theirs_holds).map(|d| {
            format!("{d} (closed holds are kept --closed-hold-retention-secs: the server's?)")
        })
    })
    .or_else(|| {
        first_in_list("dedup entry of transaction", &dedup, &stored_dedup)
            .map(|d| format!("{d} (is --dedup-window-secs the server's?)"))
    })
}

/// The first account whose value differs between two tables indexed by account id (a
/// missing value is zero): `"A: the WAL gives X, the snapshot holds Y"`.
fn first_in_table<T>(ours: &[T], theirs: impl Iterator<Item = T>) -> Option<String>
where
    T: Copy + Default + PartialEq + Debug,
{
    let mut theirs = theirs.fuse();
    let mut account = 0usize;
    loop {
        let (a, b) = (ours.get(account).copied(), theirs.next());
        if a.is_none() && b.is_none() {
            return None;
        }
        let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
        if a != b {
            return Some(format!(
                "{account}: the WAL gives {a:?}, the snapshot holds {b:?}"
            ));
        }
        account += 1;
    }
}

/// The first difference between two lists sorted by key.
fn first_in_list<K, V>(what: &str, ours: &[(K, V)], theirs: &[(K, V)]) -> Option<String>
where
    K: Ord + Copy + Debug,
    V: PartialEq + Debug,
{
    let (mut i, mut j) = (0, 0);
    loop {
        match (ours.get(i), theirs.get(j)) {
            (None, None) => return None,
            (Some((k, _)), None) => return Some(format!("{what} {k:?}: only in the WAL's state")),
            (None, Some((k, _))) => return Some(format!("{what} {k:?}: only in the snapshot")),
            (Some((k, v)), Some((l, w))) => match k.cmp(l) {
                std::cmp::Ordering::Less => {
                    return Some(format!("{what} {k:?}: only in the WAL's state"));
                }
                std::cmp::Ordering::Greater => {
                    return Some(format!("{what} {l:?}: only in the snapshot"));
                }
                std::cmp::Ordering::Equal if v != w => {
                    return Some(format!(
                        "{what} {k:?}: the WAL gives {v:?}, the snapshot holds {w:?}"
                    ));
                }
                std::cmp::Ordering::Equal => (i, j) = (i + 1, j + 1),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_differ_at_the_first_account_whose_values_differ_missing_ones_zero() {
        assert_eq!(
            first_in_table(&[1i64, 2], [1i64, 2, 0, 0].into_iter()),
            None
        );
        assert_eq!(first_in_table(&[1i64, 2, 0], [1i64, 2].into_iter()), None);
        assert_eq!(
            first_in_table(&[1i64, 2], [1i64, 2, 0, 7].into_iter()).as_deref(),
            Some("3: the WAL gives 0, the snapshot holds 7")
        );
        assert_eq!(
            first_in_table(&[1i64, 5], [1i64, 2].into_iter()).as_deref(),
            Some("1: the WAL gives 5, the snapshot holds 2")
        );
    }

    #[test]
    fn lists_differ_at_a_missing_key_or_a_different_value() {
        let a = [(1u64, 'a'), (3, 'c')];
        assert_eq!(first_in_list("hold", &a, &a), None);
        assert_eq!(
            first_in_list("hold", &a, &[(1, 'a')]).as_deref(),
            Some("hold 3: only in the WAL's state")
        );
        assert_eq!(
            first_in_list("hold", &a, &[(1, 'a'), (2, 'b'), (3, 'c')]).as_deref(),
            Some("hold 2: only in the snapshot")
        );
        assert_eq!(
            first_in_list("hold", &a, &[(1, 'a'), (3, 'd')]).as_deref(),
            Some("hold 3: the WAL gives 'c', the snapshot holds 'd'")
        );
    }
}
