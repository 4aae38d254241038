//! The state as JSON lines, in one shape for `snapshot dump` and `replay --format state`:
//! a summary object, the configured accounts, the system account's balances per
//! currency, the balances, the holds, the reversals, and (on request) the idempotency
//! window. Each row is told apart by its first key.

use ledger_core::accounts::AccountState;
use ledger_core::holds::{Hold, HoldState};
use serde::Serialize;

use crate::exit::CliResult;
use crate::output::Sink;

#[derive(Debug, Serialize)]
pub struct Summary {
    /// The snapshot file, for a dump of one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    pub last_tx_id: u64,
    pub now_ns: u64,
    /// The snapshot's payload format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<u32>,
    /// The balance table's length.
    pub accounts: usize,
    pub configured_accounts: usize,
    pub dedup_entries: usize,
    pub holds: usize,
    pub reversals: usize,
}

/// A state read from a snapshot or rebuilt by replay.
#[derive(Debug)]
pub struct StateRows {
    pub summary: Summary,
    pub accounts: Vec<(u64, AccountState)>,
    pub system_balances: Vec<(u32, i64)>,
    /// `(account, balance)`, the ones to print.
    pub balances: Vec<(u64, i64)>,
    pub holds: Vec<(u64, Hold)>,
    pub reversals: Vec<(u64, u64)>,
    /// `(user_ref, tx_id, timestamp_ns)` in commit order, if asked for.
    pub dedup: Vec<(u64, u64, u64)>,
}

#[derive(Debug, Serialize)]
pub struct BalanceRow {
    pub account: u64,
    pub balance: i64,
}

#[derive(Debug, Serialize)]
struct AccountRow {
    configured: u64,
    currency: u32,
    flags: u32,
    overdraft_limit: u64,
    max_balance: Option<i64>,
    /// 0: none.
    parent: u64,
    moved: bool,
}

#[derive(Debug, Serialize)]
struct SystemBalanceRow {
    currency: u32,
    system_balance: i64,
}

#[derive(Debug, Serialize)]
struct HoldRow {
    hold: u64,
    from: u64,
    to: u64,
    amount: u64,
    /// 0: never.
    expires_at_ns: u64,
    state: &'static str,
    posted: u64,
    /// 0 while open.
    closed_at_ns: u64,
}

#[derive(Debug, Serialize)]
struct ReversalRow {
    reversed: u64,
    by: u64,
}

#[derive(Debug, Serialize)]
struct DedupRow {
    user_ref: u64,
    tx_id: u64,
    timestamp_ns: u64,
}

/// A hold's state as the rows (and the gRPC API) name it.
fn hold_state_name(state: HoldState) -> &'static str {
    match state {
        HoldState::Open => "open",
        HoldState::Posted => "posted",
        HoldState::Voided => "voided",
        HoldState::Expired => "expired",
    }
}

impl StateRows {
    pub fn write(&self, sink: &mut Sink) -> CliResult {
        sink.json(&self.summary)?;
        for (account, state) in &self.accounts {
            let c = &state.config;
            sink.json(&AccountRow {
                configured: *account,
                currency: c.currency,
                flags: c.flags,
                overdraft_limit: c.overdraft_limit,
                max_balance: c.max_balance,
                parent: c.parent,
                moved: state.moved,
            })?;
        }
        for &(currency, system_balance) in &self.system_balances {
            sink.json(&SystemBalanceRow {
                currency,
                system_balance,
            })?;
        }
        for &(account, balance) in &self.balances {
            sink.json(&BalanceRow { account, balance })?;
        }
        for (hold, h) in &self.holds {
            sink.json(&HoldRow {
                hold: *hold,
                from: h.from,
                to: h.to,
                amount: h.amount,
                expires_at_ns: h.expires_at_ns,
                state: hold_state_name(h.state),
                posted: h.posted,
                closed_at_ns: h.closed_at_ns,
            })?;
        }
        for &(reversed, by) in &self.reversals {
            sink.json(&ReversalRow { reversed, by })?;
        }
        for &(user_ref, tx_id, timestamp_ns) in &self.dedup {
            sink.json(&DedupRow {
                user_ref,
                tx_id,
                timestamp_ns,
            })?;
        }
        Ok(())
    }
}
