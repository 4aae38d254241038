//! `/search?q=...&kind=account|tx`: the header's search box. An id goes to its page; a
//! bare id without a kind offers both; anything else is a clear error.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::Shared;
use super::access::Viewer;
use super::layout::{self, PageError};

#[derive(Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    q: String,
    kind: Option<String>,
}

pub(crate) async fn page(
    State(_): State<Shared>,
    viewer: Viewer,
    Query(search): Query<Search>,
) -> Result<Response, PageError> {
    let text = search.q.trim();
    // "#12", "tx 12" and "account 12" as people type them.
    let (kind, text) = match text.split_once(' ') {
        Some(("tx" | "transaction", rest)) => (Some("tx"), rest.trim()),
        Some(("account" | "acct", rest)) => (Some("account"), rest.trim()),
        _ => (search.kind.as_deref(), text.trim_start_matches('#')),
    };
    if text.is_empty() {
        return Err(PageError::bad_request(
            "Type an account or transaction id in the search box.",
        ));
    }
    let id = layout::parse_id("The search", text)?;
    match kind {
        Some("account") => Ok(Redirect::to(&format!("/accounts/{id}")).into_response()),
        Some("tx") => Ok(Redirect::to(&format!("/tx/{id}")).into_response()),
        Some(other) => Err(PageError::bad_request(format!(
            "Search for an account or a transaction, not {other:?}."
        ))),
        None => {
            let body = html! {
                h1 { "Search: " (id) }
                ul {
                    li { a href={ "/accounts/" (id) } { "Account " (id) } }
                    li { a href={ "/tx/" (id) } { "Transaction " (id) } }
                }
            };
            Ok(layout::page("Search", Some(viewer), body).into_response())
        }
    }
}
