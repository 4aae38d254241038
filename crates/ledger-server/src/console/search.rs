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
    match target(&search.q, search.kind.as_deref())? {
        (Some(path), id) => Ok(Redirect::to(&format!("/{path}/{id}")).into_response()),
        (None, id) => {
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

/// Where a search goes: the page's path prefix (`None`: either) and the id.
fn target(q: &str, kind: Option<&str>) -> Result<(Option<&'static str>, u64), PageError> {
    let q = q.trim();
    // "#12", "tx 12" and "account 12" as people type them.
    let (kind, text) = match q.split_once(' ') {
        Some(("tx" | "transaction", rest)) => (Some("tx"), rest.trim()),
        Some(("account" | "acct", rest)) => (Some("account"), rest.trim()),
        _ => (kind, q.trim_start_matches('#')),
    };
    if text.is_empty() {
        return Err(PageError::bad_request(
            "Type an account or transaction id in the search box.",
        ));
    }
    let id = layout::parse_id("The search", text)?;
    let path = match kind {
        Some("account") => Some("accounts"),
        Some("tx") => Some("tx"),
        None => None,
        Some(other) => {
            return Err(PageError::bad_request(format!(
                "Search for an account or a transaction, not {other:?}."
            )));
        }
    };
    Ok((path, id))
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn searches_go_to_their_page_or_say_what_is_wrong() {
        let ok = |q, kind| target(q, kind).unwrap();
        assert_eq!(ok(" 12 ", Some("account")), (Some("accounts"), 12));
        assert_eq!(ok("#12", Some("tx")), (Some("tx"), 12));
        assert_eq!(ok("tx 7", None), (Some("tx"), 7));
        assert_eq!(ok("account 7", Some("tx")), (Some("accounts"), 7));
        assert_eq!(ok("7", None), (None, 7));
        for (q, kind) in [
            ("", None),
            ("abc", Some("tx")),
            ("7", Some("hold")),
            ("tx ", None),
        ] {
            assert!(target(q, kind).is_err(), "{q:?} {kind:?}");
        }
    }
}
