//! The product's library example, verbatim (with the crate named `ledger_core`).
//! Run from any directory: it keeps its files in `./data` there.
// The example ignores `start()`'s `Result` (a start failure then shows as `submit`'s panic,
// which names the cause); real code should handle it.
#![allow(unused_must_use)]
use ledger_core::ledger::{Ledger, LedgerConfig};
use ledger_core::transaction::Operation;
// `pub` only so that `tests/example.rs` can run it as a process of its own.
pub fn main() {
    // Initialize with default config
    let mut ledger = Ledger::new(LedgerConfig::default());
    ledger.start();
    // Submit a deposit
    let tx_id = ledger.submit(Operation::Deposit {
        account: 1,
        amount: 1000,
        user_ref: 0,
    });
    // Wait for the transaction to be persisted (WAL)
    ledger.wait_for_transaction(tx_id);
    // Retrieve balance
    let balance = ledger.get_balance(1);
    println!("Account 1 balance: {}", balance);
}
