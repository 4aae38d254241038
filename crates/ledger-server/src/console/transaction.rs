//! `/tx/{id}`: a transaction's outcome, time and reference, its entries with each
//! account's balance after, what else it changed, and links to the transactions it names
//! (a duplicate's original, a reversal) and to its accounts.

use axum::extract::{Path, State};
use maud::{Markup, html};

use super::access::Viewer;
use super::layout::{self, PageError};
use super::{Shared, request};
use crate::pb;
use crate::pb::ledger_server::Ledger as _;
use crate::pb::tx_effect::Effect;

pub(crate) async fn page(
    State(console): State<Shared>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Markup, PageError> {
    let id = layout::parse_id("A transaction id", &id)?;
    let tx = console
        .service
        .get_transaction(request(
            viewer.role,
            pb::GetTransactionRequest {
                tx_id: id,
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let committed = tx.fail_reason == 0;
    let body = html! {
        h1 { "Transaction " (tx.tx_id) }
        div.card {
            dl {
                dt { "Outcome" } dd #outcome .(if committed { "ok" } else { "rejected" }) { (layout::tx_outcome(&tx)) }
                dt { "Time" } dd { (layout::utc(tx.timestamp_ns)) }
                dt { "User reference" } dd { (if tx.user_ref == 0 { "none".to_owned() } else { tx.user_ref.to_string() }) }
            }
        }
        @if !tx.entries.is_empty() {
            h2 { "Entries" }
            div.scroll {
                table #entries {
                    thead { tr { th { "Account" } th { "Kind" } th.num { "Amount" } th.num { "Balance after" } } }
                    tbody {
                        @for e in &tx.entries {
                            tr {
                                td { a href={ "/accounts/" (e.account_id) } { (e.account_id) } }
                                td { (entry_kind(e)) }
                                td.num { (e.amount) }
                                td.num { (e.computed_balance) }
                            }
                        }
                    }
                }
            }
        }
        @if !tx.effects.is_empty() {
            h2 { "Effects" }
            ul #effects { @for e in &tx.effects { li { (effect(e)) } } }
        }
        @if !tx.links.is_empty() {
            h2 { "Linked transactions" }
            ul #links {
                @for l in &tx.links {
                    li {
                        (link_kind(l.kind())) " "
                        a href={ "/tx/" (l.to_tx_id) } { "transaction " (l.to_tx_id) }
                    }
                }
            }
        }
        nav.pager {
            @if id > 1 { a href={ "/tx/" (id - 1) } { "← Transaction " (id - 1) } }
            a href={ "/tx/" (id + 1) } { "Transaction " (id + 1) " →" }
        }
    };
    Ok(layout::page(
        &format!("Transaction {id}"),
        Some(viewer),
        body,
    ))
}

pub(crate) fn entry_kind(e: &pb::TxEntryRecord) -> &'static str {
    match e.kind() {
        pb::EntryKind::Credit => "credit",
        pb::EntryKind::Debit => "debit",
    }
}

fn link_kind(kind: pb::LinkKind) -> &'static str {
    match kind {
        pb::LinkKind::Duplicate => "Duplicate of",
        pb::LinkKind::Reversal => "Reverses",
        pb::LinkKind::ReversedBy => "Reversed by",
    }
}

/// One change a transaction made besides balances, in words, with links.
pub(crate) fn effect(e: &pb::TxEffect) -> Markup {
    let account = |id: u64| html! { a href={ "/accounts/" (id) } { "account " (id) } };
    let hold = |id: u64| html! { a href={ "/tx/" (id) } { "hold " (id) } };
    match &e.effect {
        Some(Effect::Configured(c)) => html! {
            (account(c.account)) " configured: currency " (c.currency) ", flags " (c.flags)
            ", overdraft limit " (c.overdraft_limit)
            @if let Some(max) = c.max_balance { ", maximum balance " (max) }
            @if c.parent != 0 { ", parent " (account(c.parent)) }
        },
        Some(Effect::HoldOpened(h)) => html! {
            "Hold of " (h.amount) " from " (account(h.from)) " to " (account(h.to))
            @if h.expires_at_ns != 0 { ", expires " (layout::utc(h.expires_at_ns)) }
        },
        Some(Effect::HoldPosted(h)) => html! { (hold(h.hold_id)) " posted: " (h.amount) " moved" },
        Some(Effect::HoldVoided(h)) => html! { (hold(h.hold_id)) " voided" },
        Some(Effect::HoldExpired(h)) => html! { (hold(h.hold_id)) " expired" },
        Some(Effect::Reversed(id)) => {
            html! { "Reverses " a href={ "/tx/" (id) } { "transaction " (id) } }
        }
        None => html! { "An effect this console does not know" },
    }
}
