//! `/`: health, the pipeline's indexes and their gaps, WAL and snapshots, charts of the
//! last minutes and the newest transactions. The page shows the ledger as it is when
//! served; `console.js` then keeps every figure, chart and row current from `/api/live`.

use axum::extract::State;
use axum::http::StatusCode;
use maud::{Markup, html};

use super::access::Viewer;
use super::layout::{self, PageError};
use super::{Shared, live};

pub(crate) async fn page(
    State(console): State<Shared>,
    viewer: Viewer,
) -> Result<Markup, PageError> {
    let ledger = console.service.backend().ledger().map_err(|e| {
        PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The ledger is not running: {e}"),
        )
    })?;
    let now = live::now(&ledger, &console.metrics);
    let visible = now.snapshot;
    let recent = {
        let ledger = std::sync::Arc::clone(&ledger);
        tokio::task::spawn_blocking(move || live::recent(&ledger, visible))
            .await
            .unwrap_or_default()
    };
    let node = console.service.backend().node().map(|node| {
        let leader = node
            .leader()
            .map(|(id, addr)| format!("node {id} at {addr}"));
        (node.id(), leader.unwrap_or_else(|| "none known".into()))
    });
    let body = html! {
        h1 { "Overview" }
        section.cards {
            div.card {
                h2 { "Health" }
                p.big #status { (now.status) }
                @match &node {
                    Some((id, leader)) => p { "Cluster node " (id) "; leader: " (leader) },
                    None => p { "Single node" },
                }
            }
            div.card {
                h2 { "Pipeline" }
                dl {
                    dt { "Computed" } dd #computed { (now.computed) }
                    dt { "Committed" } dd #committed { (now.committed) }
                    dt { "Visible to reads" } dd #snapshot { (now.snapshot) }
                    dt { "Awaiting commit" } dd #gap-commit { (now.computed - now.committed.min(now.computed)) }
                    dt { "Awaiting reads" } dd #gap-snapshot { (now.committed - now.snapshot.min(now.committed)) }
                }
            }
            div.card {
                h2 { "WAL" }
                dl {
                    dt { "Bytes written" } dd #wal-bytes { (now.wal_bytes) }
                    dt { "fsyncs" } dd #wal-fsyncs { (now.wal_fsyncs) }
                    dt { "Committed tx/s" } dd #tx-per-s { "…" }
                }
            }
            div.card {
                h2 { "Snapshots" }
                dl {
                    dt { "Newest at transaction" } dd #last-snapshot { (now.last_snapshot_tx_id) }
                    dt { "Written since start" } dd #snapshots-written { (now.snapshots_written) }
                }
            }
        }
        section.charts {
            (chart("chart-tps", "Committed transactions per second"))
            (chart("chart-latency", "Submit-to-commit latency, ms (p50, p99)"))
            (chart("chart-fsyncs", "fsyncs per second"))
            (chart("chart-gaps", "Pipeline gaps, transactions"))
        }
        section {
            h2 { "Newest transactions" }
            div.scroll {
                table #recent {
                    thead { tr { th { "Id" } th { "Time" } th { "Outcome" } th.num { "Entries" } th.num { "Amount moved" } } }
                    tbody {
                        @for tx in &recent {
                            tr {
                                td { a href={ "/tx/" (tx.id) } { (tx.id) } }
                                td { (tx.time) }
                                td { (tx.outcome) }
                                td.num { (tx.entries) }
                                td.num { (tx.amount) }
                            }
                        }
                    }
                }
            }
        }
        script src="/assets/dygraph.min.js" {}
        script src="/assets/console.js" {}
    };
    Ok(layout::page("Overview", Some(viewer), body))
}

fn chart(id: &str, caption: &str) -> Markup {
    html! {
        figure.chart {
            figcaption { (caption) }
            div.plot id=(id) data-chart=(id) {}
        }
    }
}
