//! The Roda ledger core: a deterministic double-entry state machine.
//!
//! - [`transaction`]: operations, steps, entries, outcomes and fail reasons.
//! - [`transactor`]: the pure executor that owns the live balances.
//! - [`accounts`]: configured accounts (currency, rules) beside the balances.
//! - [`dedup`]: idempotency by `user_ref` within a time window.
//! - [`holds`]: two-phase transfers' holds and what they reserve.
//!
//! ```
//! use ledger_core::transaction::{Operation, Outcome};
//! use ledger_core::transactor::{Transactor, TransactorConfig};
//!
//! let mut transactor = Transactor::new(TransactorConfig::default()).unwrap();
//! let (mut entries, mut effects) = (Vec::new(), Vec::new());
//! let deposit = Operation::Deposit { account: 1, amount: 1000, user_ref: 0 };
//! assert_eq!(
//!     transactor.execute(1, 0, &deposit, &mut entries, &mut effects),
//!     Outcome::Committed
//! );
//! assert_eq!(transactor.balance(1), Some(1000));
//! assert_eq!(transactor.balance_sum(), 0);
//! ```

mod account_map;
pub mod accounts;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod dedup;
mod hold_table;
pub mod holds;
pub mod ledger;
pub mod record;
pub mod transaction;
pub mod transactor;

/// The storage interface the engine does its file operations through (see
/// [`Ledger::with_storage`](ledger::Ledger::with_storage)).
pub use ledger_storage as storage;

/// The README's Rust examples run as doctests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
