//! The frame of every page (header, navigation, search box), error pages, the security
//! headers of every response, and how ids, outcomes and times are written.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ledger_core::transaction::FailReason;
use maud::{DOCTYPE, Markup, html};

use super::access::Viewer;
use crate::pb;

/// A whole page: `body` in the console's frame.
pub(crate) fn page(title: &str, viewer: Option<Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Roda ledger" }
                link rel="stylesheet" href="/assets/console.css";
                link rel="stylesheet" href="/assets/dygraph.min.css";
            }
            body {
                header.top {
                    a.brand href="/" { "Roda ledger" }
                    nav {
                        a href="/" { "Overview" }
                        a href="/submit" { "Submit" }
                    }
                    form.search method="get" action="/search" role="search" {
                        input name="q" type="search" inputmode="numeric"
                            placeholder="account or transaction id" aria-label="Account or transaction id";
                        button name="kind" value="account" { "Account" }
                        button name="kind" value="tx" { "Transaction" }
                    }
                    @if let Some(viewer) = viewer.filter(|v| v.signed_in) {
                        form.signout method="post" action="/logout" {
                            span.role { (if viewer.may_submit() { "write" } else { "read" }) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page that could not be shown: its HTTP status and a message saying why, in words
/// the operator can act on.
#[derive(Debug)]
pub(crate) struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<tonic::Status> for PageError {
    fn from(status: tonic::Status) -> PageError {
        PageError::new(http_status(status.code()), status.message())
    }
}

/// The HTTP status closest to a gRPC one.
pub(crate) fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::Unavailable | Code::ResourceExhausted => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = html! {
            h1 { (title) }
            p.error role="alert" { (self.message) }
            p { a href="/" { "Back to the overview" } }
        };
        (self.status, page(title, None, body)).into_response()
    }
}

pub(crate) async fn not_found() -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "No such page.")
}

/// Headers every response carries: nothing from elsewhere runs or loads (the console's
/// assets are its own), no framing, no sniffing, no referrer to other sites (only
/// `same-origin`: with `no-referrer` a browser posts forms with `Origin: null`, which
/// the same-origin check must refuse).
pub(crate) async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// An id from a URL or a form: a clear message when it is not one.
pub(crate) fn parse_id(what: &str, text: &str) -> Result<u64, PageError> {
    text.trim().parse().map_err(|_| {
        PageError::bad_request(format!(
            "{what} must be a whole number from 0 to {}, not {text:?}.",
            u64::MAX
        ))
    })
}

/// A transaction's outcome in words: "committed", or why it was rejected.
pub(crate) fn outcome(fail_code: u32, duplicate_of: u64) -> String {
    if fail_code == 0 {
        return "committed".into();
    }
    match u8::try_from(fail_code)
        .ok()
        .and_then(|c| FailReason::from_code(c, duplicate_of))
    {
        Some(reason) => format!("rejected: {reason}"),
        None => format!("rejected (code {fail_code})"),
    }
}

/// A transaction's outcome in words, the original named for a duplicate.
pub(crate) fn tx_outcome(tx: &pb::GetTransactionResponse) -> String {
    let duplicate_of = tx
        .links
        .iter()
        .find(|l| l.kind() == pb::LinkKind::Duplicate)
        .map_or(0, |l| l.to_tx_id);
    outcome(tx.fail_reason, duplicate_of)
}

/// Nanoseconds since the Unix epoch as a UTC time, to the millisecond.
pub(crate) fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let millis = (ns / 1_000_000) % 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{millis:03} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The calendar date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
        // 2026-12-06 17:02:03.456 UTC
        assert_eq!(
            utc(1_796_576_523_456_000_000),
            "2026-12-06 17:02:03.456 UTC"
        );
        // A leap day.
        assert_eq!(
            utc(951_782_400 * 1_000_000_000),
            "2000-02-29 00:00:00.000 UTC"
        );
    }

    #[test]
    fn outcomes_are_words() {
        assert_eq!(outcome(0, 0), "committed");
        assert_eq!(outcome(1, 0), "rejected: insufficient funds");
        assert_eq!(outcome(7, 12), "rejected: duplicate of transaction 12");
        assert_eq!(outcome(99, 0), "rejected (code 99)");
        assert!(parse_id("An account", "12x").is_err());
        assert_eq!(parse_id("An account", " 12 ").unwrap(), 12);
    }
}
