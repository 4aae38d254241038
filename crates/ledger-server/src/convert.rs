//! Wire messages to ledger operations and ledger results to wire messages. Shape is
//! checked here (INVALID_ARGUMENT before anything is sequenced); business rules
//! (funds, duplicates, zero sum) are the ledger's and come back as a `fail_reason`.

use ledger_core::holds::{Hold, HoldState};
use ledger_core::ledger::{
    AccountInfo, HistoryEntry, HistoryEvent, LinkKind, Transaction, TransactionStatus,
    TransactionStatusInfo,
};
use ledger_core::transaction::{
    AMOUNT_MAX, AccountConfig, COMPOSITE_STEPS_MAX, CompositeOperation, Effect, Entry, EntryKind,
    FailReason, Operation, Outcome, SYSTEM_ACCOUNT, Step, SubmitResult, WaitLevel,
};
use tonic::Status;

use crate::pb;

/// The operation oneof, whichever request carried it.
#[derive(Debug)]
pub enum WireOperation {
    Deposit(pb::Deposit),
    Withdrawal(pb::Withdrawal),
    Transfer(pb::Transfer),
    Composite(pb::Composite),
    Named(pb::Named),
    ConfigureAccount(pb::ConfigureAccount),
    Hold(pb::Hold),
    PostHold(pb::PostHold),
    VoidHold(pb::VoidHold),
    Reverse(pb::Reverse),
}

impl From<pb::submit_operation_request::Operation> for WireOperation {
    fn from(op: pb::submit_operation_request::Operation) -> Self {
        use pb::submit_operation_request::Operation as O;
        match op {
            O::Deposit(d) => WireOperation::Deposit(d),
            O::Withdrawal(w) => WireOperation::Withdrawal(w),
            O::Transfer(t) => WireOperation::Transfer(t),
            O::Composite(c) => WireOperation::Composite(c),
            O::Named(n) => WireOperation::Named(n),
            O::ConfigureAccount(c) => WireOperation::ConfigureAccount(c),
            O::Hold(h) => WireOperation::Hold(h),
            O::PostHold(p) => WireOperation::PostHold(p),
            O::VoidHold(v) => WireOperation::VoidHold(v),
            O::Reverse(r) => WireOperation::Reverse(r),
        }
    }
}

impl From<pb::submit_and_wait_request::Operation> for WireOperation {
    fn from(op: pb::submit_and_wait_request::Operation) -> Self {
        use pb::submit_and_wait_request::Operation as O;
        match op {
            O::Deposit(d) => WireOperation::Deposit(d),
            O::Withdrawal(w) => WireOperation::Withdrawal(w),
            O::Transfer(t) => WireOperation::Transfer(t),
            O::Composite(c) => WireOperation::Composite(c),
            O::Named(n) => WireOperation::Named(n),
            O::ConfigureAccount(c) => WireOperation::ConfigureAccount(c),
            O::Hold(h) => WireOperation::Hold(h),
            O::PostHold(p) => WireOperation::PostHold(p),
            O::VoidHold(v) => WireOperation::VoidHold(v),
            O::Reverse(r) => WireOperation::Reverse(r),
        }
    }
}

/// Checks the shape of `op` against `max_accounts` and builds the ledger operation.
///
/// # Errors
/// INVALID_ARGUMENT for a missing operation, a zero or oversized amount, an account at or
/// above `max_accounts`, a deposit to or withdrawal from the system account, an empty or
/// oversized composite, unknown flags; UNIMPLEMENTED for `Named`.
pub fn operation(op: Option<WireOperation>, max_accounts: u64) -> Result<Operation, Status> {
    let Some(op) = op else {
        return Err(Status::invalid_argument(
            "missing operation: set one of deposit, withdrawal, transfer, composite",
        ));
    };
    let account = |what: &str, id: u64| {
        if id >= max_accounts {
            Err(Status::invalid_argument(format!(
                "{what} {id} is outside 0..{max_accounts}"
            )))
        } else {
            Ok(id)
        }
    };
    let amount = |a: u64| {
        if a == 0 || a > AMOUNT_MAX {
            Err(Status::invalid_argument(format!(
                "amount {a} must be in 1..={AMOUNT_MAX}"
            )))
        } else {
            Ok(a)
        }
    };
    let not_system = |what: &str, id: u64| {
        if id == SYSTEM_ACCOUNT {
            Err(Status::invalid_argument(format!(
                "{what} cannot be the system account 0"
            )))
        } else {
            Ok(id)
        }
    };
    Ok(match op {
        WireOperation::Deposit(d) => Operation::Deposit {
            account: not_system("account", account("account", d.account)?)?,
            amount: amount(d.amount)?,
            user_ref: d.user_ref,
        },
        WireOperation::Withdrawal(w) => Operation::Withdrawal {
            account: not_system("account", account("account", w.account)?)?,
            amount: amount(w.amount)?,
            user_ref: w.user_ref,
        },
        WireOperation::Transfer(t) => Operation::Transfer {
            from: account("from", t.from)?,
            to: account("to", t.to)?,
            amount: amount(t.amount)?,
            user_ref: t.user_ref,
        },
        WireOperation::Composite(c) => {
            if c.steps.is_empty() {
                return Err(Status::invalid_argument(
                    "a composite needs at least one step",
                ));
            }
            if c.steps.len() > COMPOSITE_STEPS_MAX {
                return Err(Status::invalid_argument(format!(
                    "a composite has at most {COMPOSITE_STEPS_MAX} steps, got {}",
                    c.steps.len()
                )));
            }
            if c.flags & !CompositeOperation::FLAGS_KNOWN != 0 {
                return Err(Status::invalid_argument(format!(
                    "unknown composite flags {:#x}",
                    c.flags & !CompositeOperation::FLAGS_KNOWN
                )));
            }
            let steps = c
                .steps
                .into_iter()
                .enumerate()
                .map(|(i, s)| match s.step {
                    Some(pb::step::Step::Credit(c)) => Ok(Step::Credit {
                        account_id: account("account_id", c.account_id)?,
                        amount: amount(c.amount)?,
                    }),
                    Some(pb::step::Step::Debit(d)) => Ok(Step::Debit {
                        account_id: account("account_id", d.account_id)?,
                        amount: amount(d.amount)?,
                    }),
                    None => Err(Status::invalid_argument(format!(
                        "step {i} has neither credit nor debit"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Operation::Composite(Box::new(CompositeOperation {
                steps,
                flags: c.flags,
                user_ref: c.user_ref,
            }))
        }
        WireOperation::ConfigureAccount(c) => Operation::configure(
            not_system("account", account("account", c.account)?)?,
            account_config(&c)?,
            c.user_ref,
        ),
        WireOperation::Hold(h) => {
            if h.from == h.to {
                return Err(Status::invalid_argument(
                    "a hold's from and to must be different accounts",
                ));
            }
            Operation::hold(
                account("from", h.from)?,
                account("to", h.to)?,
                amount(h.amount)?,
                h.timeout_ns,
                h.user_ref,
            )
        }
        WireOperation::PostHold(p) => Operation::PostHold {
            hold_id: p.hold_id,
            amount: p.amount,
            user_ref: p.user_ref,
        },
        WireOperation::VoidHold(v) => Operation::VoidHold {
            hold_id: v.hold_id,
            user_ref: v.user_ref,
        },
        WireOperation::Reverse(r) => Operation::reverse(r.tx_id, r.user_ref),
        WireOperation::Named(n) => {
            return Err(Status::unimplemented(format!(
                "named operations have no registry yet (asked for {:?})",
                n.name
            )));
        }
    })
}

/// The rules of a `ConfigureAccount`, their shape checked: known flags, an overdraft limit
/// within an amount's range and only with the rule it loosens, a maximum not below the
/// minimum. (The ledger checks the same and rejects with InvalidOperation; here the
/// caller learns which field is wrong.)
fn account_config(c: &pb::ConfigureAccount) -> Result<AccountConfig, Status> {
    let config = AccountConfig {
        currency: c.currency,
        flags: c.flags,
        overdraft_limit: c.overdraft_limit,
        max_balance: c.max_balance,
        parent: c.parent,
    };
    if c.parent == c.account && c.parent != 0 {
        return Err(Status::invalid_argument(
            "an account cannot be its own parent",
        ));
    }
    if c.flags & !AccountConfig::FLAGS_KNOWN != 0 {
        return Err(Status::invalid_argument(format!(
            "unknown account flags {:#x}",
            c.flags & !AccountConfig::FLAGS_KNOWN
        )));
    }
    if c.overdraft_limit > AMOUNT_MAX {
        return Err(Status::invalid_argument(format!(
            "overdraft_limit {} is above {AMOUNT_MAX}",
            c.overdraft_limit
        )));
    }
    if c.overdraft_limit != 0 && !config.has(AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS) {
        return Err(Status::invalid_argument(
            "an overdraft_limit needs flag 0x2 (CREDITS_MUST_NOT_EXCEED_DEBITS)",
        ));
    }
    if let (Some(min), Some(max)) = (config.min_balance(), config.max_balance)
        && max < min
    {
        return Err(Status::invalid_argument(format!(
            "max_balance {max} is below the lowest balance the rules allow ({min})"
        )));
    }
    Ok(config)
}

/// An account's configuration and balance on the wire; OUT_OF_RANGE if its aggregate
/// balance leaves the int64 range.
pub fn account(info: &AccountInfo) -> Result<pb::GetAccountResponse, Status> {
    let aggregate_balance = i64::try_from(info.aggregate_balance).map_err(|_| {
        Status::out_of_range(format!(
            "account {}'s aggregate balance is {}, beyond an int64",
            info.account, info.aggregate_balance
        ))
    })?;
    Ok(pb::GetAccountResponse {
        account_id: info.account,
        configured: info.configured,
        currency: info.config.currency,
        flags: info.config.flags,
        overdraft_limit: info.config.overdraft_limit,
        max_balance: info.config.max_balance,
        moved: info.moved,
        balance: info.balance,
        last_snapshot_tx_id: info.last_snapshot_tx_id,
        held_outgoing: info.held_outgoing,
        held_incoming: info.held_incoming,
        aggregate_balance,
        parent: info.config.parent,
        children: info.children,
    })
}

/// A hold on the wire.
pub fn hold(hold_id: u64, h: &Hold) -> pb::HoldInfo {
    let state = match h.state {
        HoldState::Open => pb::HoldState::HoldOpen,
        HoldState::Posted => pb::HoldState::HoldPosted,
        HoldState::Voided => pb::HoldState::HoldVoided,
        HoldState::Expired => pb::HoldState::HoldExpired,
    };
    pb::HoldInfo {
        hold_id,
        from: h.from,
        to: h.to,
        amount: h.amount,
        expires_at_ns: h.expires_at_ns,
        state: state.into(),
        posted: h.posted,
    }
}

/// The wire wait level; an unknown number is INVALID_ARGUMENT.
pub fn wait_level(level: i32) -> Result<WaitLevel, Status> {
    match pb::WaitLevel::try_from(level) {
        Ok(pb::WaitLevel::Processed) => Ok(WaitLevel::Processed),
        Ok(pb::WaitLevel::Committed) => Ok(WaitLevel::Committed),
        Ok(pb::WaitLevel::Snapshot) => Ok(WaitLevel::Snapshotted),
        Ok(pb::WaitLevel::Replicated) => Ok(WaitLevel::Replicated),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown wait_level {level}"
        ))),
    }
}

/// The wire code of a fail reason (0: success).
pub fn fail_code(reason: Option<FailReason>) -> u32 {
    reason.map_or(0, |r| u32::from(r.code()))
}

pub fn submit_result(result: SubmitResult) -> pb::SubmitAndWaitResponse {
    let original = match result.fail_reason {
        Some(FailReason::Duplicate { original_tx_id }) => original_tx_id,
        _ => 0,
    };
    pb::SubmitAndWaitResponse {
        transaction_id: result.tx_id,
        fail_reason: fail_code(result.fail_reason),
        original_transaction_id: original,
    }
}

pub fn status(info: TransactionStatusInfo) -> pb::GetStatusResponse {
    let status = match info.status {
        TransactionStatus::Pending => pb::TransactionStatus::Pending,
        TransactionStatus::Computed => pb::TransactionStatus::Computed,
        TransactionStatus::Committed => pb::TransactionStatus::Committed,
        TransactionStatus::OnSnapshot => pb::TransactionStatus::OnSnapshot,
        TransactionStatus::Error => pb::TransactionStatus::Error,
    };
    pb::GetStatusResponse {
        status: status.into(),
        fail_reason: fail_code(info.fail_reason),
    }
}

pub fn entry(entry: &Entry, tx_id: u64) -> pb::TxEntryRecord {
    pb::TxEntryRecord {
        account_id: entry.account_id,
        amount: entry.amount,
        kind: entry_kind(entry.kind).into(),
        computed_balance: entry.balance_after,
        tx_id,
    }
}

pub(crate) fn entry_kind(kind: EntryKind) -> pb::EntryKind {
    match kind {
        EntryKind::Credit => pb::EntryKind::Credit,
        EntryKind::Debit => pb::EntryKind::Debit,
    }
}

pub(crate) fn link_kind(kind: LinkKind) -> pb::LinkKind {
    match kind {
        LinkKind::Duplicate => pb::LinkKind::Duplicate,
        LinkKind::Reversal => pb::LinkKind::Reversal,
        LinkKind::ReversedBy => pb::LinkKind::ReversedBy,
        // A kind newer than this server's wire API: the closest it has.
        _ => pb::LinkKind::Duplicate,
    }
}

pub(crate) fn outcome_code(outcome: Outcome) -> u32 {
    match outcome {
        Outcome::Committed => 0,
        Outcome::Rejected(r) => u32::from(r.code()),
    }
}

/// An effect on the wire.
pub(crate) fn effect(e: &Effect) -> pb::TxEffect {
    use pb::tx_effect::Effect as E;
    let closed = |hold_id, amount| pb::HoldClosed { hold_id, amount };
    let effect = match *e {
        Effect::Configured { account, config } => E::Configured(pb::ConfigureAccount {
            account,
            currency: config.currency,
            flags: config.flags,
            overdraft_limit: config.overdraft_limit,
            max_balance: config.max_balance,
            user_ref: 0,
            parent: config.parent,
        }),
        Effect::HoldOpened {
            from,
            to,
            amount,
            expires_at_ns,
        } => E::HoldOpened(pb::HoldPlaced {
            from,
            to,
            amount,
            expires_at_ns,
        }),
        Effect::HoldPosted { hold_id, amount } => E::HoldPosted(closed(hold_id, amount)),
        Effect::HoldVoided { hold_id } => E::HoldVoided(closed(hold_id, 0)),
        Effect::HoldExpired { hold_id } => E::HoldExpired(closed(hold_id, 0)),
        Effect::Reversed { tx_id } => E::Reversed(tx_id),
    };
    pb::TxEffect {
        effect: Some(effect),
    }
}

pub fn transaction(tx: &Transaction) -> pb::GetTransactionResponse {
    pb::GetTransactionResponse {
        tx_id: tx.tx_id,
        entries: tx.entries.iter().map(|e| entry(e, tx.tx_id)).collect(),
        links: tx
            .links
            .iter()
            .map(|l| pb::TxLinkRecord {
                to_tx_id: l.to_tx_id,
                kind: link_kind(l.kind).into(),
            })
            .collect(),
        timestamp_ns: tx.timestamp_ns,
        user_ref: tx.user_ref,
        effects: tx.effects.iter().map(effect).collect(),
        fail_reason: outcome_code(tx.outcome),
        // Set by the service, which knows the node's applied index.
        applied_tx_id: 0,
    }
}

pub fn history_entry(e: &HistoryEntry) -> pb::TxEntryRecord {
    entry(&e.entry, e.tx_id)
}

pub fn history_event(e: &HistoryEvent) -> pb::HistoryEvent {
    pb::HistoryEvent {
        tx_id: e.tx_id,
        timestamp_ns: e.timestamp_ns,
        effect: Some(effect(&e.effect)),
    }
}

/// A cluster node's status on the wire.
pub fn cluster_status(s: &ledger_core::cluster::NodeStatus) -> pb::GetClusterStatusResponse {
    use ledger_core::cluster::Role;
    let role = match s.role {
        Role::Leader => pb::NodeRole::Leader,
        Role::Follower => pb::NodeRole::Follower,
        Role::Candidate => pb::NodeRole::Candidate,
        Role::Learner => pb::NodeRole::Learner,
        Role::Down => pb::NodeRole::Down,
    };
    pb::GetClusterStatusResponse {
        node_id: s.node_id,
        role: role.into(),
        term: s.term,
        leader_id: s.leader.as_ref().map(|l| l.0),
        leader_address: s.leader.as_ref().map(|l| l.1.clone()).unwrap_or_default(),
        writable: s.writable,
        computed_index: s.computed,
        durable_index: s.durable,
        replicated_index: s.replicated,
        applied_index: s.applied,
        last_log_index: s.last_log_index,
        last_applied_log_index: s.last_applied_index,
        members: s
            .members
            .iter()
            .map(|(&id, addr)| pb::ClusterMember {
                node_id: id,
                address: addr.clone(),
                matched_log_index: s.matched.get(&id).copied().flatten(),
            })
            .collect(),
        clustered: true,
    }
}

/// A single node: a one-node cluster that always leads.
pub fn single_node_status(
    index: ledger_core::ledger::PipelineIndex,
) -> pb::GetClusterStatusResponse {
    pb::GetClusterStatusResponse {
        role: pb::NodeRole::Leader.into(),
        writable: true,
        computed_index: index.computed,
        durable_index: index.committed,
        replicated_index: index.committed,
        applied_index: index.snapshot,
        clustered: false,
        ..Default::default()
    }
}

/// The voters after a membership change.
pub fn members(members: &std::collections::BTreeMap<u64, String>) -> pb::MembershipResponse {
    pb::MembershipResponse {
        members: members
            .iter()
            .map(|(&node_id, address)| pb::ClusterMember {
                node_id,
                address: address.clone(),
                matched_log_index: None,
            })
            .collect(),
    }
}
