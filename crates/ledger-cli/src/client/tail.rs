//! `ledger-cli tail`: the change stream (`SubscribeTransactions`), printed as it arrives.
//! A stream the server drops (a restart) is opened again from the last batch's
//! `next_tx_id`, so nothing is printed twice or skipped.

use clap::Args;
use ledger_client::Code;
use ledger_client::pb;

use super::connect::{Connect, connect};
use super::print_transaction;
use crate::exit::{CliError, CliResult};

#[derive(Args, Debug)]
pub struct Tail {
    /// The first transaction to print (0: the next one to commit).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    from: u64,
    /// Only transactions naming this account (an entry, a hold, a configuration);
    /// repeatable.
    #[arg(long = "account")]
    accounts: Vec<u64>,
    /// Rejected transactions too.
    #[arg(long)]
    rejected: bool,
    /// Stop after printing this many transactions (default: never).
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    connect: Connect,
}

pub async fn tail(c: &Tail) -> CliResult {
    let client = connect(&c.connect)?;
    let mut from = c.from;
    let mut printed = 0u64;
    if c.count == Some(0) {
        return Ok(());
    }
    loop {
        let mut stream = client
            .subscribe_transactions(pb::SubscribeTransactionsRequest {
                from_tx_id: from,
                accounts: c.accounts.clone(),
                include_rejected: c.rejected,
            })
            .await?;
        loop {
            let batch = match stream.message().await {
                Ok(Some(batch)) => batch,
                // The server went away: open the stream again where it stopped.
                Ok(None) => break,
                Err(status) if reopen(status.code()) => break,
                Err(status) => {
                    return Err(CliError::usage(format!(
                        "{}: {}",
                        describe(status.code()),
                        status.message()
                    )));
                }
            };
            for t in &batch.transactions {
                print_transaction(t, c.connect.json);
                printed += 1;
                if c.count.is_some_and(|n| printed >= n) {
                    return Ok(());
                }
            }
            from = batch.next_tx_id;
        }
    }
}

/// Whether a stream that ended with `code` is worth opening again (the server or the
/// network went away), rather than an answer (a bad id, no permission).
fn reopen(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted | Code::Internal
    )
}

fn describe(code: Code) -> String {
    format!("{code:?}")
}
