//! Client commands: talk to a running `ledger-server` over its gRPC API.
//!
//! Exit codes: 0 the call succeeded (a submitted operation committed); 1 the ledger
//! rejected the operation (its fail reason is printed); 2 a usage error, an unreachable
//! server or an error status from it (`exit.rs`).

mod connect;
mod steps;
mod tail;

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use ledger_client::pb;
use ledger_core::transaction::FailReason;
use serde_json::{Value, json};

use self::connect::{Connect, connect};
use self::steps::{parse_step, steps_file};
use crate::exit::{CliError, CliResult};

/// The client commands, flattened into `ledger-cli`'s top level.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Deposit AMOUNT into ACCOUNT (funds come from the system account 0).
    Deposit(Deposit),
    /// Withdraw AMOUNT from ACCOUNT (funds go to the system account 0).
    Withdraw(Withdraw),
    /// Move AMOUNT from one account to another.
    Transfer(Transfer),
    /// Several credit/debit steps applied atomically (from flags or a JSON file).
    Composite(Composite),
    /// Set an account's currency and rules (overdraft limit, maximum balance, frozen).
    Configure(Configure),
    /// An account's currency, rules and balance.
    Account(Account),
    /// The system account's balance in one currency.
    SystemBalance(SystemBalance),
    /// Reserve AMOUNT of FROM's funds for TO (a two-phase transfer's first phase).
    Hold(HoldArgs),
    /// Move (part of) a hold's funds to its recipient; the rest is released.
    Post(PostArgs),
    /// Release a hold.
    Void(VoidArgs),
    /// Undo a committed transaction: its entries moved back, as a new linked transaction.
    Reverse(ReverseArgs),
    /// One hold: accounts, amount, expiry, state.
    HoldShow(HoldShow),
    /// An account's open holds, one page at a time.
    Holds(HoldsArgs),
    /// Balances as of the server's snapshot index (or right after a past transaction).
    Balance(Balance),
    /// Where transactions are in the pipeline, and how they ended.
    Status(Status),
    /// One durable transaction: entries, links, user_ref, outcome.
    Tx(Tx),
    /// An account's entries, newest first, one page at a time.
    History(History),
    /// Committed transactions as they commit (the change stream), from an id or live.
    Tail(tail::Tail),
    /// The pipeline's computed, committed and snapshot indexes.
    Index(Index),
    /// A cluster's nodes: role, term, leader and indexes of each.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// Cluster commands.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Asks every node named in --server for its own view (role, term, leader,
    /// computed / durable / replicated / applied indexes) and prints one line per node.
    Status(ClusterStatus),
    /// Adds a node (started with --join) to the cluster: it catches up (from the log, or
    /// from a Raft snapshot), then votes. Sent to the leader.
    Add(ClusterAdd),
    /// Removes a node from the cluster. Sent to the leader.
    Remove(ClusterRemove),
}

#[derive(Args, Debug)]
pub struct ClusterAdd {
    /// The new node's id.
    #[arg(long)]
    node_id: u64,
    /// Where the new node serves gRPC, as its peers dial it (host:port).
    #[arg(long)]
    address: String,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Args, Debug)]
pub struct ClusterRemove {
    /// The id of the node to remove.
    #[arg(long)]
    node_id: u64,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Args, Debug)]
pub struct ClusterStatus {
    #[command(flatten)]
    connect: Connect,
}

/// How long a submission waits before the command answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Wait {
    /// Do not wait: print the transaction id as soon as it is sequenced.
    None,
    /// Executed (not yet durable).
    Processed,
    /// Durable in the write-ahead log.
    Committed,
    /// Visible to balance reads.
    Snapshot,
}

/// Options every submission takes.
#[derive(Args, Debug)]
struct Submit {
    /// Idempotency reference: a repeat within the server's window is a duplicate.
    #[arg(long, default_value_t = 0)]
    user_ref: u64,
    /// What to wait for before answering.
    #[arg(long, value_enum, default_value_t = Wait::Committed)]
    wait: Wait,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Args, Debug)]
pub struct Deposit {
    /// The account that receives the funds.
    account: u64,
    /// In the ledger's smallest unit (an integer).
    amount: u64,
    #[command(flatten)]
    submit: Submit,
}

#[derive(Args, Debug)]
pub struct Withdraw {
    /// The account the funds leave.
    account: u64,
    /// In the ledger's smallest unit (an integer).
    amount: u64,
    #[command(flatten)]
    submit: Submit,
}

#[derive(Args, Debug)]
pub struct Transfer {
    /// The account the funds leave.
    from: u64,
    /// The account that receives them.
    to: u64,
    /// In the ledger's smallest unit (an integer).
    amount: u64,
    #[command(flatten)]
    submit: Submit,
}

#[derive(Args, Debug)]
pub struct Configure {
    /// The account to configure (not the system account 0).
    account: u64,
    /// Its currency code; fixed once money has moved.
    #[arg(long, default_value_t = 0)]
    currency: u32,
    /// How far below zero its balance may go.
    #[arg(long, default_value_t = 0, conflicts_with = "no_lower_bound")]
    overdraft_limit: u64,
    /// No lower bound at all (an account that issues money).
    #[arg(long)]
    no_lower_bound: bool,
    /// The highest balance it may reach.
    #[arg(long, allow_negative_numbers = true)]
    max_balance: Option<i64>,
    /// No money in or out; reads still work.
    #[arg(long)]
    frozen: bool,
    /// Make it a sub-account of this account (in the same currency): its balance counts
    /// in the parent's aggregate balance.
    #[arg(long, default_value_t = 0)]
    parent: u64,
    #[command(flatten)]
    submit: Submit,
}

#[derive(Args, Debug)]
pub struct HoldArgs {
    /// The account whose funds are reserved.
    from: u64,
    /// The account a post pays.
    to: u64,
    /// In the ledger's smallest unit (an integer).
    amount: u64,
    /// Expire the hold this many milliseconds after it is placed (0: never).
    #[arg(long, default_value_t = 0)]
    timeout_ms: u64,
    #[command(flatten)]
    submit: Submit,
}

#[derive(Args, Debug)]
pub struct PostArgs {
    /// The hold (the id of the transaction that placed it).
    hold_id: u64,
    /// How much to move (default: all of it).
    #[arg(long, default_value_t = 0)]
    amount: u64,
    #[command(flatten)]
    submit: Submit,
}

#[derive(Args, Debug)]
pub struct VoidArgs {
    /// The hold (the id of the transaction that placed it).
    hold_id: u64,
    #[command(flatten)]
    submit: Submit,
}

#[derive(Args, Debug)]
pub struct ReverseArgs {
    /// The committed transaction to reverse.
    tx_id: u64,
    #[command(flatten)]
    submit: Submit,
}

#[derive(Args, Debug)]
pub struct HoldShow {
    /// The hold (the id of the transaction that placed it).
    hold_id: u64,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Args, Debug)]
pub struct HoldsArgs {
    /// The account.
    account: u64,
    /// Holds after this id (the previous page's `next_after_hold_id`).
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// At most this many (0: 20; at most 1000).
    #[arg(long, default_value_t = 0)]
    limit: u32,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Args, Debug)]
pub struct Account {
    /// The account.
    account: u64,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Args, Debug)]
pub struct SystemBalance {
    /// The currency code.
    #[arg(long, default_value_t = 0)]
    currency: u32,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Args, Debug)]
pub struct Composite {
    /// A step, in order: `credit:ACCOUNT:AMOUNT` (funds leave) or `debit:ACCOUNT:AMOUNT`
    /// (funds arrive). Repeat it.
    #[arg(long = "step", value_parser = parse_step, required_unless_present = "file")]
    steps: Vec<pb::Step>,
    /// JSON file of steps instead: `[{"credit": {"account_id": 1, "amount": 5}}, ...]`,
    /// or an object `{"steps": [...], "flags": 0, "user_ref": 0}`.
    #[arg(long, conflicts_with = "steps")]
    file: Option<PathBuf>,
    /// Flags: 1 = the accounts may end negative.
    #[arg(long)]
    flags: Option<u32>,
    #[command(flatten)]
    submit: Submit,
}

#[derive(Args, Debug)]
pub struct Balance {
    /// Accounts to read (one consistent cut).
    #[arg(required = true)]
    accounts: Vec<u64>,
    /// The balance right after this past transaction instead (one account).
    #[arg(long)]
    at: Option<u64>,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Args, Debug)]
pub struct Status {
    /// Transaction ids (one request for all).
    #[arg(required = true)]
    tx_ids: Vec<u64>,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Args, Debug)]
pub struct Tx {
    /// The transaction id.
    tx_id: u64,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Args, Debug)]
pub struct History {
    /// The account whose entries to list.
    account: u64,
    /// Start at this transaction and go back (0: the latest).
    // 0 is the wire's "unset": the server picks the latest id and its page size.
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    from: u64,
    /// Entries per page, at most 1000 (0: the server's default, 20).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    limit: u32,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Args, Debug)]
pub struct Index {
    #[command(flatten)]
    connect: Connect,
}

// Every failure of a call, an error status included, exits 2 with its message; a
// rejected operation is an answer, not an error (`submit`).
impl From<ledger_client::Error> for CliError {
    fn from(e: ledger_client::Error) -> CliError {
        CliError::usage(e)
    }
}

/// Runs one client command to completion.
pub fn run(command: ClientCommand) -> CliResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::usage(format!("cannot start the async runtime: {e}")))?
        .block_on(execute(command))
}

async fn execute(command: ClientCommand) -> CliResult {
    match command {
        ClientCommand::Deposit(c) => {
            let op = Operation::Deposit(pb::Deposit {
                account: c.account,
                amount: c.amount,
                user_ref: c.submit.user_ref,
            });
            submit(op, &c.submit).await
        }
        ClientCommand::Withdraw(c) => {
            let op = Operation::Withdrawal(pb::Withdrawal {
                account: c.account,
                amount: c.amount,
                user_ref: c.submit.user_ref,
            });
            submit(op, &c.submit).await
        }
        ClientCommand::Transfer(c) => {
            let op = Operation::Transfer(pb::Transfer {
                from: c.from,
                to: c.to,
                amount: c.amount,
                user_ref: c.submit.user_ref,
            });
            submit(op, &c.submit).await
        }
        ClientCommand::Composite(c) => {
            let mut composite = match &c.file {
                Some(path) => steps_file(path).map_err(CliError::Usage)?,
                None => pb::Composite {
                    steps: c.steps.clone(),
                    ..pb::Composite::default()
                },
            };
            if let Some(flags) = c.flags {
                composite.flags = flags;
            }
            if c.submit.user_ref != 0 {
                composite.user_ref = c.submit.user_ref;
            }
            submit(Operation::Composite(composite), &c.submit).await
        }
        ClientCommand::Configure(c) => {
            let mut flags = 0;
            if c.frozen {
                flags |= FLAG_FROZEN;
            }
            if !c.no_lower_bound {
                flags |= FLAG_CREDITS_MUST_NOT_EXCEED_DEBITS;
            }
            let op = Operation::ConfigureAccount(pb::ConfigureAccount {
                account: c.account,
                currency: c.currency,
                flags,
                overdraft_limit: c.overdraft_limit,
                max_balance: c.max_balance,
                user_ref: c.submit.user_ref,
                parent: c.parent,
            });
            submit(op, &c.submit).await
        }
        ClientCommand::Account(c) => account(c).await,
        ClientCommand::Hold(c) => {
            let op = Operation::Hold(pb::Hold {
                from: c.from,
                to: c.to,
                amount: c.amount,
                timeout_ns: c.timeout_ms.saturating_mul(1_000_000),
                user_ref: c.submit.user_ref,
            });
            submit(op, &c.submit).await
        }
        ClientCommand::Post(c) => {
            let op = Operation::PostHold(pb::PostHold {
                hold_id: c.hold_id,
                amount: c.amount,
                user_ref: c.submit.user_ref,
            });
            submit(op, &c.submit).await
        }
        ClientCommand::Void(c) => {
            let op = Operation::VoidHold(pb::VoidHold {
                hold_id: c.hold_id,
                user_ref: c.submit.user_ref,
            });
            submit(op, &c.submit).await
        }
        ClientCommand::Reverse(c) => {
            let op = Operation::Reverse(pb::Reverse {
                tx_id: c.tx_id,
                user_ref: c.submit.user_ref,
            });
            submit(op, &c.submit).await
        }
        ClientCommand::HoldShow(c) => {
            let client = connect(&c.connect)?;
            let r = client
                .get_hold(pb::GetHoldRequest {
                    hold_id: c.hold_id,
                    ..Default::default()
                })
                .await?;
            let hold = r.hold.unwrap_or_default();
            print_holds(&c.connect, &[hold], None, r.last_snapshot_tx_id);
            Ok(())
        }
        ClientCommand::Holds(c) => {
            let client = connect(&c.connect)?;
            let r = client
                .get_open_holds(pb::GetOpenHoldsRequest {
                    account_id: c.account,
                    after_hold_id: c.after,
                    limit: c.limit,
                    ..Default::default()
                })
                .await?;
            print_holds(
                &c.connect,
                &r.holds,
                Some(r.next_after_hold_id),
                r.last_snapshot_tx_id,
            );
            Ok(())
        }
        ClientCommand::SystemBalance(c) => {
            let client = connect(&c.connect)?;
            let b = client
                .get_system_balance(pb::GetSystemBalanceRequest {
                    currency: c.currency,
                    ..Default::default()
                })
                .await?;
            if c.connect.json {
                println!(
                    "{}",
                    json!({ "currency": b.currency, "balance": b.balance,
                            "last_snapshot_tx_id": b.last_snapshot_tx_id })
                );
            } else {
                println!(
                    "system account, currency {}  {}  (as of transaction {})",
                    b.currency, b.balance, b.last_snapshot_tx_id
                );
            }
            Ok(())
        }
        ClientCommand::Balance(c) => balance(c).await,
        ClientCommand::Status(c) => {
            let client = connect(&c.connect)?;
            let r = client
                .get_transaction_statuses(pb::GetStatusesRequest {
                    transaction_ids: c.tx_ids.clone(),
                })
                .await?;
            let rows: Vec<Value> = c
                .tx_ids
                .iter()
                .zip(&r.results)
                .map(|(id, s)| {
                    let mut row = json!({
                        "transaction_id": id,
                        "status": s.status().as_str_name(),
                        "fail_reason": s.fail_reason,
                    });
                    if s.fail_reason != 0 {
                        row["reason"] = reason(s.fail_reason, 0).into();
                    }
                    row
                })
                .collect();
            if c.connect.json {
                println!("{}", json!({ "results": rows }));
            } else {
                for row in &rows {
                    let why = row
                        .get("reason")
                        .and_then(Value::as_str)
                        .map(|r| format!("  ({r})"))
                        .unwrap_or_default();
                    println!("{}  {}{why}", row["transaction_id"], text(&row["status"]));
                }
            }
            Ok(())
        }
        ClientCommand::Tx(c) => {
            let client = connect(&c.connect)?;
            let t = client
                .get_transaction(pb::GetTransactionRequest {
                    tx_id: c.tx_id,
                    ..Default::default()
                })
                .await?;
            print_transaction(&t, c.connect.json);
            Ok(())
        }
        ClientCommand::Tail(c) => tail::tail(&c).await,
        ClientCommand::History(c) => {
            let client = connect(&c.connect)?;
            let page = client
                .get_account_history(pb::GetAccountHistoryRequest {
                    account_id: c.account,
                    from_tx_id: c.from,
                    limit: c.limit,
                    ..Default::default()
                })
                .await?;
            if c.connect.json {
                println!(
                    "{}",
                    json!({
                        "entries": page.entries.iter().map(entry).collect::<Vec<_>>(),
                        "events": page.events.iter().map(history_event).collect::<Vec<_>>(),
                        "next_tx_id": page.next_tx_id,
                    })
                );
                return Ok(());
            }
            print_history(&page);
            if page.next_tx_id != 0 {
                println!("more: --from {}", page.next_tx_id);
            }
            Ok(())
        }
        ClientCommand::Cluster(ClusterCommand::Status(c)) => cluster_status(&c.connect).await,
        ClientCommand::Cluster(ClusterCommand::Add(c)) => {
            let members = connect(&c.connect)?
                .add_node(pb::AddNodeRequest {
                    node_id: c.node_id,
                    address: c.address.clone(),
                })
                .await?;
            print_members(&members, c.connect.json);
            Ok(())
        }
        ClientCommand::Cluster(ClusterCommand::Remove(c)) => {
            let members = connect(&c.connect)?
                .remove_node(pb::RemoveNodeRequest { node_id: c.node_id })
                .await?;
            print_members(&members, c.connect.json);
            Ok(())
        }
        ClientCommand::Index(c) => {
            let client = connect(&c.connect)?;
            let i = client
                .get_pipeline_index(pb::GetPipelineIndexRequest {})
                .await?;
            if c.connect.json {
                println!(
                    "{}",
                    json!({
                        "computed_index": i.computed_index,
                        "committed_index": i.committed_index,
                        "snapshot_index": i.snapshot_index,
                    })
                );
            } else {
                println!(
                    "computed {}  committed {}  snapshot {}",
                    i.computed_index, i.committed_index, i.snapshot_index
                );
            }
            Ok(())
        }
    }
}

/// One line (or JSON object) per node: each answers for itself, so the command asks
/// each address alone, without following the leader.
async fn cluster_status(connect: &Connect) -> CliResult {
    let mut rows = Vec::new();
    let mut unreachable = 0;
    for server in &connect.server {
        let one = Connect {
            server: vec![server.clone()],
            retry: 0,
            ..connect.clone()
        };
        match connect_one(&one).await {
            Ok(s) => rows.push((server.clone(), Ok(s))),
            Err(e) => {
                unreachable += 1;
                let message = match e {
                    CliError::Usage(m) | CliError::Verification(m) | CliError::Rejected(m) => m,
                    CliError::OutputClosed => String::new(),
                };
                rows.push((server.clone(), Err(message)));
            }
        }
    }
    for (server, row) in &rows {
        match row {
            Ok(s) if connect.json => println!("{}", cluster_json(server, s)),
            Ok(s) => println!("{}", cluster_line(server, s)),
            Err(e) if connect.json => println!("{}", json!({ "server": server, "error": e })),
            Err(e) => println!("{server}  unreachable: {e}"),
        }
    }
    if unreachable == rows.len() {
        return Err(CliError::usage("no node answered"));
    }
    Ok(())
}

fn print_members(m: &pb::MembershipResponse, as_json: bool) {
    if as_json {
        let members: Vec<Value> = m
            .members
            .iter()
            .map(|m| json!({ "node_id": m.node_id, "address": m.address }))
            .collect();
        println!("{}", json!({ "members": members }));
    } else {
        for member in &m.members {
            println!("node {}  {}", member.node_id, member.address);
        }
    }
}

async fn connect_one(c: &Connect) -> Result<pb::GetClusterStatusResponse, CliError> {
    Ok(connect(c)?
        .get_cluster_status(pb::GetClusterStatusRequest {})
        .await?)
}

fn role_name(s: &pb::GetClusterStatusResponse) -> &'static str {
    match s.role() {
        pb::NodeRole::Leader => "leader",
        pb::NodeRole::Follower => "follower",
        pb::NodeRole::Candidate => "candidate",
        pb::NodeRole::Learner => "learner",
        pb::NodeRole::Down => "down",
        pb::NodeRole::Unspecified => "unknown",
    }
}

fn cluster_line(server: &str, s: &pb::GetClusterStatusResponse) -> String {
    let leader = match s.leader_id {
        Some(id) => format!("{id} ({})", s.leader_address),
        None => "none".into(),
    };
    let writable = if s.writable { "  writable" } else { "" };
    if !s.clustered {
        return format!(
            "{server}  single node{writable}  computed {}  committed {}  applied {}",
            s.computed_index, s.replicated_index, s.applied_index
        );
    }
    format!(
        "{server}  node {}  {}  term {}  leader {leader}{writable}  computed {}  durable {}  replicated {}  applied {}",
        s.node_id,
        role_name(s),
        s.term,
        s.computed_index,
        s.durable_index,
        s.replicated_index,
        s.applied_index
    )
}

fn cluster_json(server: &str, s: &pb::GetClusterStatusResponse) -> Value {
    json!({
        "server": server,
        "clustered": s.clustered,
        "node_id": s.node_id,
        "role": role_name(s),
        "term": s.term,
        "leader_id": s.leader_id,
        "leader_address": s.leader_address,
        "writable": s.writable,
        "computed_index": s.computed_index,
        "durable_index": s.durable_index,
        "replicated_index": s.replicated_index,
        "applied_index": s.applied_index,
        "last_log_index": s.last_log_index,
        "members": s.members.iter().map(|m| json!({
            "node_id": m.node_id,
            "address": m.address,
            "matched_log_index": m.matched_log_index,
        })).collect::<Vec<_>>(),
    })
}

type Operation = pb::submit_and_wait_request::Operation;

/// Submits `op` and prints its id and outcome; a rejection is [`CliError::Rejected`].
async fn submit(op: Operation, options: &Submit) -> CliResult {
    let client = connect(&options.connect)?;
    let level = match options.wait {
        Wait::None => {
            let id = client
                .submit_operation(pb::SubmitOperationRequest {
                    operation: Some(unwaited(op)),
                })
                .await?
                .transaction_id;
            if options.connect.json {
                println!("{}", json!({ "transaction_id": id }));
            } else {
                println!("transaction {id} submitted");
            }
            return Ok(());
        }
        Wait::Processed => pb::WaitLevel::Processed,
        Wait::Committed => pb::WaitLevel::Committed,
        Wait::Snapshot => pb::WaitLevel::Snapshot,
    };
    let r = client
        .submit_and_wait(pb::SubmitAndWaitRequest {
            operation: Some(op),
            wait_level: level.into(),
        })
        .await?;
    let rejected = r.fail_reason != 0;
    let why = reason(r.fail_reason, r.original_transaction_id);
    if options.connect.json {
        let mut value = json!({
            "transaction_id": r.transaction_id,
            "fail_reason": r.fail_reason,
        });
        if rejected {
            value["reason"] = why.clone().into();
        }
        if r.original_transaction_id != 0 {
            value["original_transaction_id"] = r.original_transaction_id.into();
        }
        println!("{value}");
    } else if rejected {
        println!("transaction {} rejected: {why}", r.transaction_id);
    } else {
        let level = match options.wait {
            Wait::Processed => "processed",
            Wait::Snapshot => "committed and visible",
            _ => "committed",
        };
        println!("transaction {} {level}", r.transaction_id);
    }
    if rejected {
        Err(CliError::Rejected(format!(
            "transaction {} rejected: {why}",
            r.transaction_id
        )))
    } else {
        Ok(())
    }
}

async fn balance(c: Balance) -> CliResult {
    let client = connect(&c.connect)?;
    if let Some(tx_id) = c.at {
        let [account] = c.accounts[..] else {
            return Err(CliError::Usage("--at takes exactly one account".into()));
        };
        let b = client
            .get_balance_at(pb::GetBalanceAtRequest {
                account_id: account,
                tx_id,
                ..Default::default()
            })
            .await?;
        if c.connect.json {
            println!(
                "{}",
                json!({ "account_id": account, "balance": b.balance, "tx_id": b.tx_id })
            );
        } else {
            println!(
                "{account}  {}  (right after transaction {})",
                b.balance, b.tx_id
            );
        }
        return Ok(());
    }
    let b = client
        .get_balances(pb::GetBalancesRequest {
            account_ids: c.accounts.clone(),
            ..Default::default()
        })
        .await?;
    if c.connect.json {
        let balances: Vec<Value> = c
            .accounts
            .iter()
            .zip(&b.balances)
            .map(|(a, b)| json!({ "account_id": a, "balance": b }))
            .collect();
        println!(
            "{}",
            json!({ "balances": balances, "last_snapshot_tx_id": b.last_snapshot_tx_id })
        );
    } else {
        for (account, balance) in c.accounts.iter().zip(&b.balances) {
            println!("{account}  {balance}");
        }
        println!("(as of transaction {})", b.last_snapshot_tx_id);
    }
    Ok(())
}

/// Holds as JSON (one object; `next_after_hold_id` for a page) or one line each.
fn print_holds(connect: &Connect, holds: &[pb::HoldInfo], next: Option<u64>, as_of: u64) {
    let rows: Vec<Value> = holds
        .iter()
        .map(|h| {
            json!({
                "hold_id": h.hold_id,
                "from": h.from,
                "to": h.to,
                "amount": h.amount,
                "expires_at_ns": h.expires_at_ns,
                "state": h.state().as_str_name(),
                "posted": h.posted,
            })
        })
        .collect();
    if connect.json {
        let mut out = json!({ "holds": rows, "last_snapshot_tx_id": as_of });
        if let Some(next) = next {
            out["next_after_hold_id"] = next.into();
        }
        println!("{out}");
        return;
    }
    for h in holds {
        println!(
            "hold {}  {} -> {}  amount {}  {}{}",
            h.hold_id,
            h.from,
            h.to,
            h.amount,
            h.state().as_str_name().to_lowercase(),
            if h.posted != 0 {
                format!(" ({} posted)", h.posted)
            } else {
                String::new()
            }
        );
    }
    if let Some(next) = next.filter(|&n| n != 0) {
        println!("(more: --after {next})");
    }
    println!("(as of transaction {as_of})");
}

/// `AccountConfig::FROZEN` and `CREDITS_MUST_NOT_EXCEED_DEBITS` on the wire.
const FLAG_FROZEN: u32 = 0x1;
const FLAG_CREDITS_MUST_NOT_EXCEED_DEBITS: u32 = 0x2;

async fn account(c: Account) -> CliResult {
    let client = connect(&c.connect)?;
    let a = client
        .get_account(pb::GetAccountRequest {
            account_id: c.account,
            ..Default::default()
        })
        .await?;
    let lower_bound = (a.flags & FLAG_CREDITS_MUST_NOT_EXCEED_DEBITS != 0)
        .then(|| -i128::from(a.overdraft_limit));
    if c.connect.json {
        println!(
            "{}",
            json!({
                "account_id": a.account_id,
                "configured": a.configured,
                "currency": a.currency,
                "flags": a.flags,
                "frozen": a.flags & FLAG_FROZEN != 0,
                "overdraft_limit": a.overdraft_limit,
                "min_balance": lower_bound.map(|m| m.to_string()),
                "max_balance": a.max_balance,
                "moved": a.moved,
                "balance": a.balance,
                "held_outgoing": a.held_outgoing,
                "held_incoming": a.held_incoming,
                "available": (i128::from(a.balance) - i128::from(a.held_outgoing)).to_string(),
                "parent": a.parent,
                "children": a.children,
                "aggregate_balance": a.aggregate_balance,
                "last_snapshot_tx_id": a.last_snapshot_tx_id,
            })
        );
    } else {
        let bound = |b: Option<String>| b.unwrap_or_else(|| "none".to_owned());
        println!(
            "account {}  balance {}  currency {}{}{}",
            a.account_id,
            a.balance,
            a.currency,
            if a.flags & FLAG_FROZEN != 0 {
                "  FROZEN"
            } else {
                ""
            },
            if a.configured {
                ""
            } else {
                "  (never configured: default rules)"
            },
        );
        println!(
            "lowest balance {}  highest balance {}",
            bound(lower_bound.map(|m| m.to_string())),
            bound(a.max_balance.map(|m| m.to_string()))
        );
        if a.held_outgoing != 0 || a.held_incoming != 0 {
            println!(
                "held out {}  held in {}  available {}",
                a.held_outgoing,
                a.held_incoming,
                i128::from(a.balance) - i128::from(a.held_outgoing)
            );
        }
        if a.parent != 0 || a.children != 0 {
            println!(
                "parent {}  sub-accounts {}  aggregate balance {}",
                a.parent, a.children, a.aggregate_balance
            );
        }
        println!("(as of transaction {})", a.last_snapshot_tx_id);
    }
    Ok(())
}

/// The same operation for `SubmitOperation` (its oneof is a separate generated type).
fn unwaited(op: Operation) -> pb::submit_operation_request::Operation {
    use pb::submit_operation_request::Operation as Unwaited;
    match op {
        Operation::Deposit(d) => Unwaited::Deposit(d),
        Operation::Withdrawal(w) => Unwaited::Withdrawal(w),
        Operation::Transfer(t) => Unwaited::Transfer(t),
        Operation::Composite(c) => Unwaited::Composite(c),
        Operation::Named(n) => Unwaited::Named(n),
        Operation::ConfigureAccount(c) => Unwaited::ConfigureAccount(c),
        Operation::Hold(h) => Unwaited::Hold(h),
        Operation::PostHold(p) => Unwaited::PostHold(p),
        Operation::VoidHold(v) => Unwaited::VoidHold(v),
        Operation::Reverse(r) => Unwaited::Reverse(r),
    }
}

/// A transaction's effect as a JSON object named by its kind (the same names as
/// `ledger-cli wal dump`).
fn effect_json(e: &pb::TxEffect) -> Value {
    use pb::tx_effect::Effect as E;
    match &e.effect {
        Some(E::Configured(c)) => json!({
            "configured": c.account,
            "currency": c.currency,
            "flags": c.flags,
            "overdraft_limit": c.overdraft_limit,
            "max_balance": c.max_balance,
            "parent": c.parent,
        }),
        Some(E::HoldOpened(h)) => json!({
            "hold_opened": { "from": h.from, "to": h.to, "amount": h.amount, "expires_at_ns": h.expires_at_ns }
        }),
        Some(E::HoldPosted(h)) => json!({ "hold_posted": h.hold_id, "amount": h.amount }),
        Some(E::HoldVoided(h)) => json!({ "hold_voided": h.hold_id }),
        Some(E::HoldExpired(h)) => json!({ "hold_expired": h.hold_id }),
        Some(E::Reversed(tx_id)) => json!({ "reversed": tx_id }),
        None => json!({ "unknown": null }),
    }
}

/// A fail code in words.
fn reason(code: u32, original: u64) -> String {
    u8::try_from(code)
        .ok()
        .and_then(|c| FailReason::from_code(c, original))
        .map_or_else(
            || format!("fail code {code}"),
            |r| format!("{r} (code {code})"),
        )
}

fn entry(e: &pb::TxEntryRecord) -> Value {
    json!({
        "tx_id": e.tx_id,
        "account_id": e.account_id,
        "kind": e.kind().as_str_name(),
        "amount": e.amount,
        "balance_after": e.computed_balance,
    })
}

/// A transaction as `ledger-cli tx` and `tail` print it: one JSON line, or text.
fn print_transaction(t: &pb::GetTransactionResponse, as_json: bool) {
    if as_json {
        let value = json!({
            "tx_id": t.tx_id,
            "timestamp_ns": t.timestamp_ns,
            "user_ref": t.user_ref,
            "fail_reason": t.fail_reason,
            "entries": t.entries.iter().map(entry).collect::<Vec<_>>(),
            "links": t.links.iter().map(|l| json!({
                "to_tx_id": l.to_tx_id,
                "kind": l.kind().as_str_name(),
            })).collect::<Vec<_>>(),
            "effects": t.effects.iter().map(effect_json).collect::<Vec<_>>(),
        });
        println!("{value}");
        return;
    }
    let outcome = if t.fail_reason == 0 {
        "committed".to_owned()
    } else {
        format!("rejected: {}", reason(t.fail_reason, 0))
    };
    println!(
        "transaction {}  {outcome}  user_ref {}  timestamp_ns {}",
        t.tx_id, t.user_ref, t.timestamp_ns
    );
    for e in &t.entries {
        println!("  {}", entry_line(e));
    }
    for l in &t.links {
        println!("  link {} -> {}", l.kind().as_str_name(), l.to_tx_id);
    }
    for e in &t.effects {
        println!("  effect {}", effect_json(e));
    }
}

fn history_event(e: &pb::HistoryEvent) -> Value {
    json!({
        "tx_id": e.tx_id,
        "timestamp_ns": e.timestamp_ns,
        "effect": e.effect.as_ref().map(effect_json),
    })
}

/// A history page as text, newest first: each transaction's entries, then its events.
fn print_history(page: &pb::GetAccountHistoryResponse) {
    let (mut entries, mut events) = (
        page.entries.iter().peekable(),
        page.events.iter().peekable(),
    );
    loop {
        let entry_tx = entries.peek().map(|e| e.tx_id);
        let event_tx = events.peek().map(|e| e.tx_id);
        match (entry_tx, event_tx) {
            (Some(a), b) if b.is_none_or(|b| a >= b) => {
                let e = entries.next().expect("peeked");
                println!("tx {}  {}", e.tx_id, entry_line(e));
            }
            (_, Some(_)) => {
                let e = events.next().expect("peeked");
                let effect = e.effect.as_ref().map_or(Value::Null, effect_json);
                println!("tx {}  event   {effect}", e.tx_id);
            }
            _ => break,
        }
    }
}

fn entry_line(e: &pb::TxEntryRecord) -> String {
    format!(
        "{:<6}  account {}  amount {}  balance after {}",
        e.kind().as_str_name().to_lowercase(),
        e.account_id,
        e.amount,
        e.computed_balance
    )
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_codes_read_as_words() {
        assert_eq!(reason(1, 0), "insufficient funds (code 1)");
        assert_eq!(reason(7, 12), "duplicate of transaction 12 (code 7)");
        assert_eq!(reason(300, 0), "fail code 300");
    }
}
