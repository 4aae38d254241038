//! `/accounts/{id}`: an account's balance, open holds (with links to post or void them)
//! and configuration, its history a page at
//! a time (the history's own cursor), and a chart of its balance over its recent
//! transactions drawn from `get_balance_at` (`/api/accounts/{id}/balances`).

use axum::Json;
use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::access::Viewer;
use super::layout::{self, PageError};
use super::transaction::{effect, entry_kind};
use super::{Shared, request};
use crate::pb;
use crate::pb::ledger_server::Ledger as _;

/// History rows (entries and events) per page.
const PAGE: u32 = 25;
/// Open holds listed.
const OPEN_HOLDS: u32 = 20;
/// The chart's window: the account's last this many history rows...
const CHART_WINDOW: u32 = 1000;
/// ...sampled at this many points.
const CHART_POINTS: u64 = 48;

#[derive(Deserialize)]
pub(crate) struct Cursor {
    /// Older than this transaction (the previous page's `next_tx_id`); absent: newest.
    from: Option<String>,
}

pub(crate) async fn page(
    State(console): State<Shared>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(cursor): Query<Cursor>,
) -> Result<Markup, PageError> {
    let id = layout::parse_id("An account id", &id)?;
    let from = match cursor.from.as_deref() {
        None | Some("") => 0,
        Some(text) => layout::parse_id("The history cursor", text)?,
    };
    let service = &console.service;
    let account = service
        .get_account(request(
            viewer.role,
            pb::GetAccountRequest {
                account_id: id,
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let history = service
        .get_account_history(request(
            viewer.role,
            pb::GetAccountHistoryRequest {
                account_id: id,
                from_tx_id: from,
                limit: PAGE,
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let holds = service
        .get_open_holds(request(
            viewer.role,
            pb::GetOpenHoldsRequest {
                account_id: id,
                limit: OPEN_HOLDS,
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let body = html! {
        h1 { "Account " (id) }
        section.cards {
            div.card {
                h2 { "Balance" }
                p.big #balance { (account.balance) }
                dl {
                    dt { "Held for others" } dd { (account.held_outgoing) }
                    dt { "Held for it" } dd { (account.held_incoming) }
                    dt { "As of transaction" } dd { (account.last_snapshot_tx_id) }
                }
            }
            div.card {
                h2 { "Configuration" }
                @if account.configured {
                    dl {
                        dt { "Currency" } dd { (account.currency) }
                        dt { "Flags" } dd { (account.flags) }
                        dt { "Overdraft limit" } dd { (account.overdraft_limit) }
                        dt { "Maximum balance" } dd { (account.max_balance.map_or_else(|| "none".to_owned(), |m| m.to_string())) }
                        dt { "Parent" } dd {
                            @if account.parent == 0 { "none" } @else { a href={ "/accounts/" (account.parent) } { (account.parent) } }
                        }
                        dt { "Sub-accounts" } dd { (account.children) }
                        dt { "With sub-accounts" } dd { (account.aggregate_balance) }
                    }
                } @else {
                    p { "Not configured: currency 0, no overdraft." }
                }
            }
        }
        @if !holds.holds.is_empty() {
            h2 { "Open holds" }
            div.scroll {
                table #holds {
                    thead { tr { th { "Hold" } th { "From" } th { "To" } th.num { "Amount" } th { "Expires" } th {} } }
                    tbody {
                        @for h in &holds.holds {
                            tr {
                                td { a href={ "/tx/" (h.hold_id) } { (h.hold_id) } }
                                td { a href={ "/accounts/" (h.from) } { (h.from) } }
                                td { a href={ "/accounts/" (h.to) } { (h.to) } }
                                td.num { (h.amount) }
                                td { (if h.expires_at_ns == 0 { "never".to_owned() } else { layout::utc(h.expires_at_ns) }) }
                                td {
                                    a href={ "/submit?kind=post&target=" (h.hold_id) } { "Post" } " · "
                                    a href={ "/submit?kind=void&target=" (h.hold_id) } { "Void" }
                                }
                            }
                        }
                    }
                }
            }
            @if holds.next_after_hold_id != 0 { p.hint { "The first " (OPEN_HOLDS) " open holds are shown." } }
        }
        figure.chart {
            figcaption { "Balance by transaction id (recent history)" }
            div.plot #balance-chart data-account=(id) {}
        }
        h2 { "History" }
        @if history.entries.is_empty() && history.events.is_empty() {
            p #no-history { "No transactions " (if from == 0 { "yet" } else { "older than this" }) "." }
        } @else {
            div.scroll {
                table #history {
                    thead { tr { th { "Transaction" } th { "Kind" } th.num { "Amount" } th.num { "Balance after" } } }
                    tbody {
                        @for e in &history.entries {
                            tr {
                                td { a href={ "/tx/" (e.tx_id) } { (e.tx_id) } }
                                td { (entry_kind(e)) }
                                td.num { (e.amount) }
                                td.num { (e.computed_balance) }
                            }
                        }
                    }
                }
            }
            @if !history.events.is_empty() {
                h3 { "Holds, configurations and reversals" }
                ul #events {
                    @for ev in &history.events {
                        li {
                            a href={ "/tx/" (ev.tx_id) } { (ev.tx_id) } ": "
                            @if let Some(e) = &ev.effect { (effect(e)) }
                        }
                    }
                }
            }
        }
        nav.pager {
            @if from != 0 { a href={ "/accounts/" (id) } { "Newest" } }
            @if history.next_tx_id != 0 {
                a #older href={ "/accounts/" (id) "?from=" (history.next_tx_id) } { "Older →" }
            }
        }
        script src="/assets/dygraph.min.js" {}
        script src="/assets/console.js" {}
    };
    Ok(layout::page(&format!("Account {id}"), Some(viewer), body))
}

/// `GET /api/accounts/{id}/balances`: `[[tx_id, balance], ...]`, oldest first: the
/// balance right after evenly spaced transactions from just before the account's
/// recent history window to the newest visible one.
pub(crate) async fn balances(
    State(console): State<Shared>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Json<Vec<(u64, i64)>>, PageError> {
    let id = layout::parse_id("An account id", &id)?;
    let service = &console.service;
    let window = service
        .get_account_history(request(
            viewer.role,
            pb::GetAccountHistoryRequest {
                account_id: id,
                limit: CHART_WINDOW,
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let newest = window.applied_tx_id;
    let oldest = window
        .entries
        .iter()
        .map(|e| e.tx_id)
        .chain(window.events.iter().map(|e| e.tx_id))
        .min();
    let Some(oldest) = oldest.filter(|_| newest > 0) else {
        return Ok(Json(Vec::new()));
    };
    let first = oldest.saturating_sub(1).max(1);
    let mut points = Vec::new();
    for at in sample_points(first, newest, CHART_POINTS) {
        let b = service
            .get_balance_at(request(
                viewer.role,
                pb::GetBalanceAtRequest {
                    account_id: id,
                    tx_id: at,
                    ..Default::default()
                },
            ))
            .await?
            .into_inner();
        points.push((at, b.balance));
    }
    Ok(Json(points))
}

/// Up to `n` ids evenly spread from `first` to `last`, both included, ascending.
fn sample_points(first: u64, last: u64, n: u64) -> Vec<u64> {
    if last <= first || n < 2 {
        return vec![last];
    }
    let span = last - first;
    let steps = (n - 1).min(span);
    let mut ids: Vec<u64> = (0..=steps)
        .map(|i| first + (u128::from(span) * u128::from(i) / u128::from(steps)) as u64)
        .collect();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::sample_points;

    #[test]
    fn sample_points_span_the_window() {
        assert_eq!(sample_points(5, 5, 48), [5]);
        assert_eq!(sample_points(1, 4, 48), [1, 2, 3, 4]);
        let ids = sample_points(1, 1_000_001, 48);
        assert_eq!((ids.len(), ids[0], ids[47]), (48, 1, 1_000_001));
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
