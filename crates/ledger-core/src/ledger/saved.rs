//! What a snapshot holds (the payload types of each format) and reading it back: the
//! newest usable snapshot of either format, for recovery and the offline tools.

use std::path::{Path, PathBuf};

use ledger_snapshot::{Loaded, SnapshotError, SnapshotStore};
use ledger_storage::Storage;
use rkyv::rancor;
use rkyv::rend::{i64_le, u64_le};
use rkyv::vec::ArchivedVec;

use super::visible::Visible;
use crate::accounts::AccountState;
use crate::holds::{Hold, HoldState};
use crate::transaction::AccountConfig;
use crate::transactor::{RestoreError, SavedState, Transactor, TransactorConfig};

/// The payload format of a ledger snapshot (inside the snapshot file format): the
/// payload's `format` field and the file header's `payload_format`. Formats 2
/// ([`SnapshotStateV2`]) and 1 ([`SnapshotStateV1`], header `payload_format` 0) are
/// still read.
pub const STATE_FORMAT: u32 = 3;

/// The second payload format, before reversals and hierarchies.
pub const STATE_FORMAT_V2: u32 = 2;

/// The first payload format, before accounts could be configured.
pub const STATE_FORMAT_V1: u32 = 1;

/// The largest `max_accounts` a snapshot can hold: the payload is an rkyv archive with
/// 32-bit relative pointers (2 GiB), and each account takes 16 bytes (balance and the
/// head of its history chain); 256 MiB stay for the dedup window (about 11M live
/// `user_ref`s).
pub const ACCOUNTS_MAX: u64 = (1 << 27) - (1 << 24);

/// One live dedup entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DedupEntry {
    pub user_ref: u64,
    pub tx_id: u64,
    pub timestamp_ns: u64,
}

/// One configured account (see [`AccountConfig`](crate::transaction::AccountConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SavedAccount {
    pub account_id: u64,
    pub currency: u32,
    pub flags: u32,
    pub overdraft_limit: u64,
    pub max_balance: Option<i64>,
    /// Money moved since it was configured: its currency is fixed.
    pub moved: bool,
    /// Its parent account (0: none).
    pub parent: u64,
}

/// One configured account in format 2 (no parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SavedAccountV2 {
    pub account_id: u64,
    pub currency: u32,
    pub flags: u32,
    pub overdraft_limit: u64,
    pub max_balance: Option<i64>,
    pub moved: bool,
}

/// A reversed transaction and the transaction that reversed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SavedReversal {
    pub original: u64,
    pub reversal: u64,
}

impl SavedAccount {
    fn of(account_id: u64, state: &AccountState) -> SavedAccount {
        let c = &state.config;
        SavedAccount {
            account_id,
            currency: c.currency,
            flags: c.flags,
            overdraft_limit: c.overdraft_limit,
            max_balance: c.max_balance,
            moved: state.moved,
            parent: c.parent,
        }
    }

    /// The account's id and state.
    pub fn state(&self) -> (u64, AccountState) {
        let config = AccountConfig {
            currency: self.currency,
            flags: self.flags,
            overdraft_limit: self.overdraft_limit,
            max_balance: self.max_balance,
            parent: self.parent,
        };
        (
            self.account_id,
            AccountState {
                config,
                moved: self.moved,
            },
        )
    }
}

/// One hold, open or recently closed (see [`Hold`]); `state` is [`HoldState::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SavedHold {
    pub hold_id: u64,
    pub from: u64,
    pub to: u64,
    pub amount: u64,
    pub expires_at_ns: u64,
    pub state: u8,
    pub posted: u64,
    /// Sequencer time it closed (0 while open).
    pub closed_at_ns: u64,
}

/// One hold in format 2 (no closing time: every closed hold was kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SavedHoldV2 {
    pub hold_id: u64,
    pub from: u64,
    pub to: u64,
    pub amount: u64,
    pub expires_at_ns: u64,
    pub state: u8,
    pub posted: u64,
}

impl SavedHold {
    fn of(hold_id: u64, h: &Hold) -> SavedHold {
        SavedHold {
            hold_id,
            from: h.from,
            to: h.to,
            amount: h.amount,
            expires_at_ns: h.expires_at_ns,
            state: h.state.code(),
            posted: h.posted,
            closed_at_ns: h.closed_at_ns,
        }
    }

    /// The hold's id and state; `None` for an unknown state code.
    pub fn hold(&self) -> Option<(u64, Hold)> {
        let hold = Hold {
            from: self.from,
            to: self.to,
            amount: self.amount,
            expires_at_ns: self.expires_at_ns,
            state: HoldState::from_code(self.state)?,
            posted: self.posted,
            closed_at_ns: self.closed_at_ns,
        };
        Some((self.hold_id, hold))
    }
}

/// The system account's balance in one currency other than 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CurrencyBalance {
    pub currency: u32,
    pub balance: i64,
}

/// What a snapshot file holds: the state right after transaction `last_tx_id`.
///
/// Public so that offline tools (`ledger-cli`) read snapshots with the engine's own type:
/// `ledger_snapshot::open_file::<SnapshotState>` validates the archive as this type.
/// Balances are indexed by account id (`balances[a]`), `max_accounts` long.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SnapshotState {
    pub format: u32,
    pub last_tx_id: u64,
    pub now_ns: u64,
    pub balances: Vec<i64>,
    /// In commit order.
    pub dedup: Vec<DedupEntry>,
    /// Per account, the last transaction that touched it (0: none).
    pub latest: Vec<u64>,
    /// The configured accounts, by id.
    pub accounts: Vec<SavedAccount>,
    /// The system account's non-zero balances in currencies other than 0, by currency.
    pub system_balances: Vec<CurrencyBalance>,
    /// Every hold open or closed within the retention, by id.
    pub holds: Vec<SavedHold>,
    /// Every reversal, by original. (The hierarchies' aggregates are not saved: restore
    /// rebuilds them from the parents and balances, so they cannot disagree.)
    pub reversals: Vec<SavedReversal>,
}

/// The payload of format 2: a ledger before reversals and hierarchies. Read, never
/// written.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SnapshotStateV2 {
    pub format: u32,
    pub last_tx_id: u64,
    pub now_ns: u64,
    pub balances: Vec<i64>,
    pub dedup: Vec<DedupEntry>,
    pub latest: Vec<u64>,
    pub accounts: Vec<SavedAccountV2>,
    pub system_balances: Vec<CurrencyBalance>,
    pub holds: Vec<SavedHoldV2>,
}

/// The payload of format 1 (files whose header says `payload_format` 0): a ledger before
/// accounts could be configured. Read, never written.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SnapshotStateV1 {
    pub format: u32,
    pub last_tx_id: u64,
    pub now_ns: u64,
    pub balances: Vec<i64>,
    /// In commit order.
    pub dedup: Vec<DedupEntry>,
    /// Per account, the last transaction that touched it (0: none).
    pub latest: Vec<u64>,
}

impl SnapshotState {
    /// A copy of `visible`, in order (ready to write).
    pub(crate) fn of(visible: &Visible) -> SnapshotState {
        let mut state = SnapshotState::empty();
        state.copy_from(visible);
        state.order();
        state
    }

    /// Puts the accounts, holds and reversals in id order: done by the snapshot writer,
    /// beside the pipeline, not in [`copy_from`](Self::copy_from) (sorting a million
    /// holds there stalled the snapshot stage). A snapshot's bytes are then the same
    /// whatever order the in-memory tables hold them in.
    pub(crate) fn order(&mut self) {
        self.accounts.sort_unstable_by_key(|a| a.account_id);
        self.holds.sort_unstable_by_key(|h| h.hold_id);
        self.reversals.sort_unstable_by_key(|r| r.original);
    }

    pub(crate) fn empty() -> SnapshotState {
        SnapshotState {
            format: STATE_FORMAT,
            last_tx_id: 0,
            now_ns: 0,
            balances: Vec::new(),
            dedup: Vec::new(),
            latest: Vec::new(),
            accounts: Vec::new(),
            system_balances: Vec::new(),
            holds: Vec::new(),
            reversals: Vec::new(),
        }
    }

    /// Overwrites this state with `visible`, reusing the vectors' memory: a reused copy
    /// costs a `memcpy`, a fresh one also a page fault per 4 KiB. The accounts, holds and
    /// reversals come in table order: [`order`](Self::order) them before writing.
    pub(crate) fn copy_from(&mut self, visible: &Visible) {
        let transactor = &visible.state;
        self.latest.clear();
        self.latest.extend_from_slice(visible.links.as_slice());
        self.format = STATE_FORMAT;
        self.last_tx_id = transactor.last_tx_id();
        self.now_ns = transactor.now_ns();
        self.balances.clear();
        self.balances.extend_from_slice(transactor.balances());
        self.dedup.clear();
        self.dedup.extend(
            transactor
                .dedup()
                .entries()
                .map(|(user_ref, tx_id, timestamp_ns)| DedupEntry {
                    user_ref,
                    tx_id,
                    timestamp_ns,
                }),
        );
        let accounts = transactor.accounts();
        self.accounts.clear();
        self.accounts.extend(
            accounts
                .iter()
                .map(|(id, state)| SavedAccount::of(id, state)),
        );
        self.system_balances.clear();
        self.system_balances.extend(
            accounts
                .system_balances()
                .map(|(currency, balance)| CurrencyBalance { currency, balance }),
        );
        self.holds.clear();
        self.holds.extend(
            transactor
                .holds()
                .iter()
                .map(|(id, hold)| SavedHold::of(id, hold)),
        );
        self.reversals.clear();
        self.reversals.extend(
            transactor
                .reversals_iter()
                .map(|(original, reversal)| SavedReversal { original, reversal }),
        );
    }
}

/// A snapshot file, verified and validated as the payload type its header names, read in
/// place (memory-mapped).
#[derive(Debug)]
pub enum LoadedSnapshot {
    Current(Loaded<SnapshotState>),
    V2(Loaded<SnapshotStateV2>),
    V1(Loaded<SnapshotStateV1>),
}

/// `$body` with `$l` bound to the loaded file of whichever format `$snapshot` is (the
/// fields every format has).
macro_rules! any_format {
    ($snapshot:expr, $l:ident => $body:expr) => {
        match $snapshot {
            LoadedSnapshot::Current($l) => $body,
            LoadedSnapshot::V2($l) => $body,
            LoadedSnapshot::V1($l) => $body,
        }
    };
}

/// A damaged snapshot recovery passed over: its file and why.
pub(crate) type PassedOver = (PathBuf, String);

/// Finds the newest snapshot that verifies, whichever payload format it has (a ledger
/// upgraded from format 1 has both kinds until the old ones are retired).
pub(crate) fn load_newest(
    store: &SnapshotStore,
) -> Result<(Option<LoadedSnapshot>, Vec<PassedOver>), SnapshotError> {
    let current = store.load_latest_format::<SnapshotState>(STATE_FORMAT)?;
    let v2 = store.load_latest_format::<SnapshotStateV2>(STATE_FORMAT_V2)?;
    let v1 = store.load_latest_format::<SnapshotStateV1>(0)?;
    let mut skipped: Vec<PassedOver> = Vec::new();
    for s in current.skipped.iter().chain(&v2.skipped).chain(&v1.skipped) {
        if !skipped.iter().any(|(p, _)| *p == s.path) {
            skipped.push((s.path.clone(), s.error.to_string()));
        }
    }
    let candidates = [
        current.loaded.map(LoadedSnapshot::Current),
        v2.loaded.map(LoadedSnapshot::V2),
        v1.loaded.map(LoadedSnapshot::V1),
    ];
    // The newest wins; of equal sequences, the newest format (listed first).
    let mut newest: Option<LoadedSnapshot> = None;
    for candidate in candidates.into_iter().flatten() {
        if newest
            .as_ref()
            .is_none_or(|n| candidate.sequence() > n.sequence())
        {
            newest = Some(candidate);
        }
    }
    Ok((newest, skipped))
}

impl LoadedSnapshot {
    pub fn sequence(&self) -> u64 {
        any_format!(self, l => l.sequence())
    }

    pub fn path(&self) -> &Path {
        any_format!(self, l => l.path())
    }

    /// The payload format ([`STATE_FORMAT`], [`STATE_FORMAT_V2`] or [`STATE_FORMAT_V1`]).
    pub fn format(&self) -> u32 {
        match self {
            LoadedSnapshot::Current(_) => STATE_FORMAT,
            LoadedSnapshot::V2(_) => STATE_FORMAT_V2,
            LoadedSnapshot::V1(_) => STATE_FORMAT_V1,
        }
    }

    /// The last transaction the state includes, as the payload says.
    pub fn last_tx_id(&self) -> u64 {
        any_format!(self, l => l.archived().last_tx_id.to_native())
    }

    /// The latest sequencer time the state saw.
    pub fn now_ns(&self) -> u64 {
        any_format!(self, l => l.archived().now_ns.to_native())
    }

    /// Balances by account id, in place.
    pub fn balances(&self) -> &ArchivedVec<i64_le> {
        any_format!(self, l => &l.archived().balances)
    }

    /// Each account's last transaction (0: none), in place.
    pub fn latest(&self) -> &ArchivedVec<u64_le> {
        any_format!(self, l => &l.archived().latest)
    }

    /// The live dedup entries in commit order, in place.
    pub fn dedup(&self) -> &ArchivedVec<ArchivedDedupEntry> {
        any_format!(self, l => &l.archived().dedup)
    }

    /// The configured accounts, by id (none in format 1; no parents in format 2).
    pub fn accounts(&self) -> Vec<(u64, AccountState)> {
        match self {
            LoadedSnapshot::Current(l) => l
                .archived()
                .accounts
                .iter()
                .map(|a| archived_account(a).state())
                .collect(),
            LoadedSnapshot::V2(l) => l
                .archived()
                .accounts
                .iter()
                .map(|a| archived_account_v2(a).state())
                .collect(),
            LoadedSnapshot::V1(_) => Vec::new(),
        }
    }

    /// The system account's balance per currency other than 0 (none in format 1).
    pub fn system_balances(&self) -> Vec<(u32, i64)> {
        let archived = match self {
            LoadedSnapshot::Current(l) => &l.archived().system_balances,
            LoadedSnapshot::V2(l) => &l.archived().system_balances,
            LoadedSnapshot::V1(_) => return Vec::new(),
        };
        archived
            .iter()
            .map(|b| (b.currency.to_native(), b.balance.to_native()))
            .collect()
    }

    /// Every hold, by id (none in format 1; format 2's closed holds closed as of the
    /// snapshot, so that their retention starts at the restore); `Err` names a hold whose
    /// state code is unknown.
    pub fn holds(&self) -> Result<Vec<(u64, Hold)>, RestoreError> {
        // Plain integers: deserializing a validated archive cannot fail (`Panic` has no
        // value, so the `Ok` patterns below are irrefutable).
        let saved: Vec<SavedHold> = match self {
            LoadedSnapshot::Current(l) => l
                .archived()
                .holds
                .iter()
                .map(|h| {
                    let Ok(hold) = rkyv::deserialize::<SavedHold, rancor::Panic>(h);
                    hold
                })
                .collect(),
            LoadedSnapshot::V2(l) => l
                .archived()
                .holds
                .iter()
                .map(|h| {
                    let Ok(v2) = rkyv::deserialize::<SavedHoldV2, rancor::Panic>(h);
                    SavedHold {
                        hold_id: v2.hold_id,
                        from: v2.from,
                        to: v2.to,
                        amount: v2.amount,
                        expires_at_ns: v2.expires_at_ns,
                        state: v2.state,
                        posted: v2.posted,
                        closed_at_ns: if v2.state == 0 { 0 } else { self.now_ns() },
                    }
                })
                .collect(),
            LoadedSnapshot::V1(_) => return Ok(Vec::new()),
        };
        saved
            .iter()
            .map(|saved| {
                saved.hold().ok_or(RestoreError::BadHold {
                    hold_id: saved.hold_id,
                    reason: "its state code is unknown",
                })
            })
            .collect()
    }

    /// Every reversal `(original, reversal)`, by original (none before format 3).
    pub fn reversals(&self) -> Vec<(u64, u64)> {
        match self {
            LoadedSnapshot::Current(l) => l
                .archived()
                .reversals
                .iter()
                .map(|r| (r.original.to_native(), r.reversal.to_native()))
                .collect(),
            LoadedSnapshot::V2(_) | LoadedSnapshot::V1(_) => Vec::new(),
        }
    }

    /// Checks the payload's own format and sequence against the file's.
    pub fn check(&self) -> Result<(), RestoreError> {
        let format = any_format!(self, l => l.archived().format.to_native());
        if format != self.format() {
            return Err(RestoreError::UnknownFormat { format });
        }
        if self.last_tx_id() != self.sequence() {
            return Err(RestoreError::SequenceMismatch {
                file_tx_id: self.sequence(),
                state_tx_id: self.last_tx_id(),
            });
        }
        Ok(())
    }

    /// A transactor continuing from this snapshot, its state checked.
    pub fn restore(&self, config: TransactorConfig) -> Result<Transactor, RestoreError> {
        self.check()?;
        let balances: Vec<i64> = self.balances().iter().map(|b| b.to_native()).collect();
        Transactor::restore(
            config,
            SavedState {
                balances: &balances,
                last_tx_id: self.last_tx_id(),
                now_ns: self.now_ns(),
                dedup: self.dedup().iter().map(|e| {
                    (
                        e.user_ref.to_native(),
                        e.tx_id.to_native(),
                        e.timestamp_ns.to_native(),
                    )
                }),
                accounts: &self.accounts(),
                system_balances: &self.system_balances(),
                holds: &self.holds()?,
                reversals: &self.reversals(),
            },
        )
    }
}

fn archived_account(a: &ArchivedSavedAccount) -> SavedAccount {
    SavedAccount {
        account_id: a.account_id.to_native(),
        currency: a.currency.to_native(),
        flags: a.flags.to_native(),
        overdraft_limit: a.overdraft_limit.to_native(),
        max_balance: a.max_balance.as_ref().map(|m| m.to_native()),
        moved: a.moved,
        parent: a.parent.to_native(),
    }
}

fn archived_account_v2(a: &ArchivedSavedAccountV2) -> SavedAccount {
    SavedAccount {
        account_id: a.account_id.to_native(),
        currency: a.currency.to_native(),
        flags: a.flags.to_native(),
        overdraft_limit: a.overdraft_limit.to_native(),
        max_balance: a.max_balance.as_ref().map(|m| m.to_native()),
        moved: a.moved,
        parent: 0,
    }
}

/// Opens one snapshot file as the payload type its header names (format 3, 2 from before
/// reversals and hierarchies, or 1 from before accounts could be configured), checked as
/// recovery checks it.
pub fn open_snapshot(path: &Path) -> Result<LoadedSnapshot, SnapshotError> {
    open_snapshot_on(&ledger_storage::OsStorage, path)
}

fn open_snapshot_on(storage: &dyn Storage, path: &Path) -> Result<LoadedSnapshot, SnapshotError> {
    if let Some(l) = ledger_snapshot::open_file_format_on(storage, path, STATE_FORMAT)? {
        return Ok(LoadedSnapshot::Current(l));
    }
    if let Some(l) = ledger_snapshot::open_file_format_on(storage, path, STATE_FORMAT_V2)? {
        return Ok(LoadedSnapshot::V2(l));
    }
    if let Some(l) = ledger_snapshot::open_file_format_on(storage, path, 0)? {
        return Ok(LoadedSnapshot::V1(l));
    }
    Err(SnapshotError::BadHeader {
        path: path.to_path_buf(),
        reason: "the header names a payload format this build does not read",
    })
}
