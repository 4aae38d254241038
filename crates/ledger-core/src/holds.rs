//! Two-phase transfers: a hold reserves funds of one account for another; a post moves
//! (part of) them, a void or an expiry releases them. This is the table of the holds,
//! with the indexes the transactor and the reads need: open holds by expiry and by
//! account, and what each account has reserved.
//!
//! A hold's id is the id of the transaction that opened it. A closed hold stays in the
//! table for a retention window of sequencer time (its state answers "posted twice" and
//! reads of a hold by id), then is forgotten: memory holds the open holds and the recently
//! closed ones, never every hold ever placed.

use std::collections::{BTreeSet, VecDeque};

use smallvec::SmallVec;

use crate::account_map::AccountMap;
use crate::hold_table::HoldTable;
use crate::transaction::{AccountId, TxId};

/// How many closed holds ahead of the one being forgotten [`Holds`] asks the CPU to load.
const FORGET_PREFETCH_AHEAD: usize = 8;

/// A hold's id: the transaction that opened it.
pub type HoldId = TxId;

/// Where a hold stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldState {
    /// Its funds are reserved.
    Open,
    /// A post moved `posted` of it; the rest was released.
    Posted,
    /// Released by a void.
    Voided,
    /// Released because its timeout passed.
    Expired,
}

impl HoldState {
    /// The stable code snapshots and the wire use (0 open, 1 posted, 2 voided, 3 expired).
    pub fn code(self) -> u8 {
        match self {
            HoldState::Open => 0,
            HoldState::Posted => 1,
            HoldState::Voided => 2,
            HoldState::Expired => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<HoldState> {
        Some(match code {
            0 => HoldState::Open,
            1 => HoldState::Posted,
            2 => HoldState::Voided,
            3 => HoldState::Expired,
            _ => return None,
        })
    }
}

/// One hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hold {
    /// The account whose funds are reserved.
    pub from: AccountId,
    /// The account a post pays.
    pub to: AccountId,
    /// What was reserved.
    pub amount: u64,
    /// Sequencer time from which it can no longer be posted or voided; 0: never.
    pub expires_at_ns: u64,
    pub state: HoldState,
    /// What a post moved (0 unless posted).
    pub posted: u64,
    /// Sequencer time it was posted, voided or expired (0 while open).
    pub closed_at_ns: u64,
}

impl Hold {
    /// Open, and past its expiry at `now_ns`.
    pub fn is_expired(&self, now_ns: u64) -> bool {
        self.state == HoldState::Open && self.expires_at_ns != 0 && now_ns >= self.expires_at_ns
    }
}

/// What open holds reserve on one account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reserved {
    /// Held funds leaving the account: its available balance is its balance less this.
    pub outgoing: u64,
    /// Held funds arriving: its maximum balance counts them.
    pub incoming: u64,
}

/// An account's open holds (either side), by id, and what they reserve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AccountHolds {
    reserved: Reserved,
    open: SmallVec<[HoldId; 2]>,
}

/// A hold operation found the table in a state it cannot apply to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldFault {
    /// No hold has this id.
    Unknown,
    /// The hold is not open.
    Closed,
    /// A reserved sum would leave the `u64` range.
    Overflow,
    /// The id is not above every hold's before it (holds open in id order).
    OutOfOrder,
}

/// The open holds and those closed within the retention, and the indexes over them.
#[derive(Clone, Debug)]
pub struct Holds {
    all: HoldTable,
    /// Open holds that expire, by expiry then id.
    expiring: BTreeSet<(u64, HoldId)>,
    /// Accounts with open holds: what those reserve, and their ids (one lookup serves
    /// both when a hold opens or closes).
    accounts: AccountMap<AccountHolds>,
    /// Closed holds in the order they closed (sequencer time never runs backwards), to
    /// forget them when their retention ends.
    closed: VecDeque<(u64, HoldId)>,
    /// How long a closed hold is remembered (sequencer time).
    retention_ns: u64,
    /// How many closed holds are remembered at most.
    closed_max: usize,
    /// When the oldest closed hold is due to be forgotten (`u64::MAX`: none is): the one
    /// number every transaction compares its time with.
    forget_at_ns: u64,
}

impl Default for Holds {
    fn default() -> Self {
        Holds::new(u64::MAX, usize::MAX)
    }
}

impl Holds {
    /// An empty table whose closed holds are remembered `retention_ns` of sequencer time,
    /// at most `closed_max` of them (the first closed is forgotten first).
    pub fn new(retention_ns: u64, closed_max: usize) -> Holds {
        Holds {
            all: HoldTable::default(),
            expiring: BTreeSet::new(),
            // Few entries (accounts with open holds), added and removed all the time.
            accounts: AccountMap::half_full(),
            closed: VecDeque::new(),
            retention_ns,
            closed_max,
            forget_at_ns: u64::MAX,
        }
    }

    /// No hold is open: nothing is reserved anywhere.
    #[inline]
    pub fn none_open(&self) -> bool {
        self.accounts.is_empty()
    }

    /// What open holds reserve on `account`.
    #[inline]
    pub fn reserved(&self, account: AccountId) -> Reserved {
        if self.accounts.is_empty() {
            return Reserved::default();
        }
        self.accounts
            .get(account)
            .map_or(Reserved::default(), |a| a.reserved)
    }

    /// A hint: `account`'s reserved sums will be looked up soon.
    #[inline]
    pub fn prefetch_account(&self, account: AccountId) {
        self.accounts.prefetch(account);
    }

    /// Whether `account` has open holds.
    #[inline]
    pub fn has_open(&self, account: AccountId) -> bool {
        self.accounts.get(account).is_some()
    }

    pub fn get(&self, id: HoldId) -> Option<&Hold> {
        self.all.get(id)
    }

    /// The earliest expiry of an open hold, if any expires.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiring.first().map(|&(at, _)| at)
    }

    /// Open holds expired at `now_ns`, oldest expiry first, at most `max`.
    pub fn expired(&self, now_ns: u64, max: usize) -> impl Iterator<Item = HoldId> + '_ {
        self.expiring
            .iter()
            .take_while(move |&&(at, _)| at <= now_ns)
            .take(max)
            .map(|&(_, id)| id)
    }

    /// `account`'s open holds (either side), by id, from `after` (exclusive), at most
    /// `limit`.
    pub fn open_of(
        &self,
        account: AccountId,
        after: HoldId,
        limit: usize,
    ) -> impl Iterator<Item = (HoldId, &Hold)> + '_ {
        let open = self.accounts.get(account).map_or(&[][..], |a| &a.open[..]);
        let from = open.partition_point(|&id| id <= after);
        open[from..]
            .iter()
            .take(limit)
            .filter_map(|&id| self.all.get(id).map(|h| (id, h)))
    }

    /// Every hold (open, or closed within the retention), by id.
    pub fn iter(&self) -> impl Iterator<Item = (HoldId, &Hold)> + '_ {
        self.all.iter()
    }

    /// Every hold, by id, copied.
    pub fn sorted(&self) -> Vec<(HoldId, Hold)> {
        self.iter().map(|(id, &hold)| (id, hold)).collect()
    }

    /// How many closed holds are still remembered.
    pub fn closed_len(&self) -> usize {
        self.closed.len()
    }

    /// Forgets every closed hold whose retention has passed at `now_ns`. Called as time
    /// advances, by execution and replay alike, so both forget the same holds at the
    /// same transaction. One comparison unless one is due.
    #[inline(always)]
    pub fn forget_due(&mut self, now_ns: u64) {
        if now_ns >= self.forget_at_ns {
            self.forget_closed(now_ns);
        }
    }

    #[cold]
    #[inline(never)]
    fn forget_closed(&mut self, now_ns: u64) {
        while let Some(&(closed_at, id)) = self.closed.front() {
            if closed_at.saturating_add(self.retention_ns) > now_ns {
                break;
            }
            self.forget_first_closed(id);
        }
        self.update_forget_at();
    }

    /// Forgets `id`, the hold at the front of the closed queue.
    fn forget_first_closed(&mut self, id: HoldId) {
        // The holds forgotten next were closed long ago, likely out of cache.
        if let Some(&(_, soon)) = self.closed.get(FORGET_PREFETCH_AHEAD) {
            self.all.prefetch(soon);
        }
        let front = self.closed.pop_front();
        assert!(front.is_some_and(|(_, first)| first == id));
        let forgotten = self.all.remove(id);
        assert!(
            forgotten.is_some_and(|h| h.state != HoldState::Open),
            "a hold in the closed queue is closed"
        );
    }

    /// Forgets the first closed holds while more than `closed_max` are remembered.
    fn forget_beyond_max(&mut self) {
        while self.closed.len() > self.closed_max {
            let (_, id) = self.closed[0];
            self.forget_first_closed(id);
        }
        self.update_forget_at();
    }

    fn update_forget_at(&mut self) {
        self.forget_at_ns = self.closed.front().map_or(u64::MAX, |&(closed_at, _)| {
            closed_at.saturating_add(self.retention_ns)
        });
    }

    /// Puts the closed holds restored from a snapshot (inserted by id) in closing order,
    /// and forgets the first closed beyond the maximum (a snapshot may have been written
    /// under a larger one).
    pub fn order_closed(&mut self) {
        self.closed.make_contiguous().sort_unstable();
        self.forget_beyond_max();
    }

    /// Records hold `id` (open or, from a snapshot, closed), above every hold recorded
    /// before. An open one reserves its amount on both accounts.
    pub fn insert(&mut self, id: HoldId, hold: Hold) -> Result<(), HoldFault> {
        if !self.all.accepts(id) {
            return Err(HoldFault::OutOfOrder);
        }
        if hold.state == HoldState::Open {
            self.reserve(hold.from, id, |r| &mut r.outgoing, hold.amount)?;
            if let Err(fault) = self.reserve(hold.to, id, |r| &mut r.incoming, hold.amount) {
                self.release(hold.from, id, |r| &mut r.outgoing, hold.amount);
                return Err(fault);
            }
            if hold.expires_at_ns != 0 {
                self.expiring.insert((hold.expires_at_ns, id));
            }
        } else {
            self.closed.push_back((hold.closed_at_ns, id));
        }
        self.all.push(id, hold);
        Ok(())
    }

    /// Closes open hold `id` as `state` (posted `posted` of it) at sequencer time
    /// `now_ns`, releasing what it reserved.
    pub fn close(
        &mut self,
        id: HoldId,
        state: HoldState,
        posted: u64,
        now_ns: u64,
    ) -> Result<Hold, HoldFault> {
        debug_assert_ne!(state, HoldState::Open);
        let hold = self.all.get_mut(id).ok_or(HoldFault::Unknown)?;
        if hold.state != HoldState::Open {
            return Err(HoldFault::Closed);
        }
        hold.state = state;
        hold.posted = posted;
        hold.closed_at_ns = now_ns;
        let hold = *hold;
        debug_assert!(self.closed.back().is_none_or(|&(at, _)| at <= now_ns));
        self.closed.push_back((now_ns, id));
        if self.closed.len() > self.closed_max {
            self.forget_beyond_max();
        } else if self.closed.len() == 1 {
            self.update_forget_at();
        }
        self.release(hold.from, id, |r| &mut r.outgoing, hold.amount);
        self.release(hold.to, id, |r| &mut r.incoming, hold.amount);
        if hold.expires_at_ns != 0 {
            self.expiring.remove(&(hold.expires_at_ns, id));
        }
        Ok(hold)
    }

    /// Open hold `id` reserves `amount` on `account`, in the sum `sum` picks (one map
    /// entry for both the sum and the list).
    fn reserve(
        &mut self,
        account: AccountId,
        id: HoldId,
        sum: impl FnOnce(&mut Reserved) -> &mut u64,
        amount: u64,
    ) -> Result<(), HoldFault> {
        let holds = self
            .accounts
            .get_or_insert_with(account, AccountHolds::default);
        let sum = sum(&mut holds.reserved);
        let Some(reserved) = sum.checked_add(amount) else {
            if holds.open.is_empty() {
                self.accounts.remove(account);
            }
            return Err(HoldFault::Overflow);
        };
        *sum = reserved;
        // Holds open in id order (and are restored by id): almost always a push.
        let at = holds.open.partition_point(|&other| other < id);
        holds.open.insert(at, id);
        Ok(())
    }

    /// Open hold `id` closes on `account`: takes `amount` back from the sum `sum` picks.
    fn release(
        &mut self,
        account: AccountId,
        id: HoldId,
        sum: impl FnOnce(&mut Reserved) -> &mut u64,
        amount: u64,
    ) {
        let found = self.accounts.update(account, |holds| {
            let sum = sum(&mut holds.reserved);
            *sum = sum
                .checked_sub(amount)
                .expect("an open hold's amount is in its accounts' reserved sums");
            let at = holds.open.binary_search(&id);
            holds
                .open
                .remove(at.expect("an open hold is listed on its accounts"));
            if holds.open.is_empty() {
                assert_eq!(
                    holds.reserved,
                    Reserved::default(),
                    "no open hold, nothing held"
                );
            }
            // An account with no open hold leaves the table.
            !holds.open.is_empty()
        });
        assert!(found, "an open hold's accounts have reserved funds");
    }
}
