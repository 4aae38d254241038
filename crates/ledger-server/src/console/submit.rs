//! `/submit`: a form for a deposit, a withdrawal, a transfer, a hold, posting or voiding
//! one, or a reversal. It goes through the
//! service's `SubmitAndWait` (committed: durable before the answer), so it is checked,
//! authorised and counted as any client's; the browser then lands on the transaction's
//! page, committed or rejected. A read token sees the form but may not post it.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::access::{SameOrigin, Viewer};
use super::layout;
use super::{Shared, request};
use crate::pb;
use crate::pb::ledger_server::Ledger as _;
use crate::pb::submit_and_wait_request::Operation;

/// The form's fields, as typed.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Submission {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    amount: String,
    /// The hold to post or void, or the transaction to reverse.
    #[serde(default)]
    target: String,
    /// A hold's timeout in seconds (empty or 0: never).
    #[serde(default)]
    timeout_secs: String,
    #[serde(default)]
    user_ref: String,
}

/// The form, filled in from the query (the account page links a hold's post and void).
pub(crate) async fn form(viewer: Viewer, Query(prefill): Query<Submission>) -> Markup {
    page(viewer, &prefill, None)
}

pub(crate) async fn post(
    State(console): State<Shared>,
    viewer: Viewer,
    _: SameOrigin,
    Form(form): Form<Submission>,
) -> Response {
    let operation = match operation(&form) {
        Ok(op) => op,
        Err(message) => return refused(viewer, &form, StatusCode::BAD_REQUEST, &message),
    };
    let submitted = console
        .service
        .submit_and_wait(request(
            viewer.role,
            pb::SubmitAndWaitRequest {
                operation: Some(operation),
                wait_level: pb::WaitLevel::Committed.into(),
            },
        ))
        .await;
    match submitted {
        // Committed or rejected, the transaction's page says which and why.
        Ok(done) => {
            Redirect::to(&format!("/tx/{}", done.into_inner().transaction_id)).into_response()
        }
        Err(status) => refused(
            viewer,
            &form,
            layout::http_status(status.code()),
            status.message(),
        ),
    }
}

fn refused(viewer: Viewer, form: &Submission, status: StatusCode, message: &str) -> Response {
    (status, page(viewer, form, Some(message))).into_response()
}

/// The operation the form describes, or what is wrong with it.
fn operation(form: &Submission) -> Result<Operation, String> {
    let user_ref = optional("The user reference", &form.user_ref)?;
    let account = || number("The account", &form.account);
    let to = || number("The receiving account", &form.to);
    let amount = || number("The amount (in minor units)", &form.amount);
    let target = |what: &str| number(what, &form.target);
    Ok(match form.kind.as_str() {
        "deposit" => Operation::Deposit(pb::Deposit {
            account: account()?,
            amount: amount()?,
            user_ref,
        }),
        "withdrawal" => Operation::Withdrawal(pb::Withdrawal {
            account: account()?,
            amount: amount()?,
            user_ref,
        }),
        "transfer" => Operation::Transfer(pb::Transfer {
            from: account()?,
            to: to()?,
            amount: amount()?,
            user_ref,
        }),
        "hold" => Operation::Hold(pb::Hold {
            from: account()?,
            to: to()?,
            amount: amount()?,
            timeout_ns: optional("The timeout", &form.timeout_secs)?
                .checked_mul(1_000_000_000)
                .ok_or("The timeout is too long.")?,
            user_ref,
        }),
        "post" => Operation::PostHold(pb::PostHold {
            hold_id: target("The hold id")?,
            amount: optional("The amount (in minor units)", &form.amount)?,
            user_ref,
        }),
        "void" => Operation::VoidHold(pb::VoidHold {
            hold_id: target("The hold id")?,
            user_ref,
        }),
        "reverse" => Operation::Reverse(pb::Reverse {
            tx_id: target("The transaction id")?,
            user_ref,
        }),
        other => return Err(format!("Choose one of the operations, not {other:?}.")),
    })
}

/// A required whole number.
fn number(what: &str, text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{what} is required."));
    }
    text.parse().map_err(|_| {
        format!(
            "{what} must be a whole number from 0 to {}, not {text:?}.",
            u64::MAX
        )
    })
}

/// An optional whole number: empty is 0.
fn optional(what: &str, text: &str) -> Result<u64, String> {
    match text.trim() {
        "" => Ok(0),
        text => number(what, text),
    }
}

/// The operations the form offers: value and label.
const KINDS: [(&str, &str); 7] = [
    ("deposit", "Deposit"),
    ("withdrawal", "Withdrawal"),
    ("transfer", "Transfer"),
    ("hold", "Hold"),
    ("post", "Post a hold"),
    ("void", "Void a hold"),
    ("reverse", "Reverse"),
];

fn page(viewer: Viewer, form: &Submission, error: Option<&str>) -> Markup {
    let kind = if form.kind.is_empty() {
        "transfer"
    } else {
        form.kind.as_str()
    };
    let body = html! {
        h1 { "Submit an operation" }
        @if let Some(error) = error { p.error #submit-error role="alert" { (error) } }
        @if !viewer.may_submit() {
            p.error role="note" { "This token is read-only: it cannot submit operations." }
        }
        form.card #submit method="post" action="/submit" {
            fieldset {
                legend { "Operation" }
                @for (value, label) in KINDS {
                    label.choice {
                        input type="radio" name="kind" value=(value) checked[kind == value];
                        " " (label)
                    }
                }
            }
            label for="account" { "Account (the payer of a transfer or a hold)" }
            input #account name="account" inputmode="numeric" value=(form.account);
            label for="to" { "Receiving account (transfers and holds)" }
            input #to name="to" inputmode="numeric" value=(form.to);
            label for="amount" { "Amount, in minor units (a post: empty moves all it holds)" }
            input #amount name="amount" inputmode="numeric" value=(form.amount);
            label for="target" { "Hold id (post, void) or transaction id (reverse)" }
            input #target name="target" inputmode="numeric" value=(form.target);
            label for="timeout_secs" { "Hold timeout, in seconds (empty: never expires)" }
            input #timeout_secs name="timeout_secs" inputmode="numeric" value=(form.timeout_secs);
            label for="user_ref" { "User reference (idempotency key; optional)" }
            input #user_ref name="user_ref" inputmode="numeric" value=(form.user_ref);
            button #submit-button type="submit" disabled[!viewer.may_submit()] { "Submit and wait for commit" }
        }
    };
    layout::page("Submit", Some(viewer), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(kind: &str, account: &str, to: &str, amount: &str) -> Submission {
        Submission {
            kind: kind.into(),
            account: account.into(),
            to: to.into(),
            amount: amount.into(),
            ..Submission::default()
        }
    }

    #[test]
    fn forms_become_operations_or_say_what_is_wrong() {
        assert!(matches!(
            operation(&form("transfer", "1", "2", "30")),
            Ok(Operation::Transfer(pb::Transfer {
                from: 1,
                to: 2,
                amount: 30,
                ..
            }))
        ));
        assert!(matches!(
            operation(&form("deposit", "1", "", "5")),
            Ok(Operation::Deposit(_))
        ));
        let err = operation(&form("transfer", "1", "", "30")).unwrap_err();
        assert!(err.contains("receiving account is required"), "{err}");
        let err = operation(&form("deposit", "1", "", "-5")).unwrap_err();
        assert!(err.contains("whole number"), "{err}");
        let err = operation(&form("mint", "1", "", "5")).unwrap_err();
        assert!(err.contains("not \"mint\""), "{err}");
        let hold = Submission {
            timeout_secs: "30".into(),
            ..form("hold", "1", "2", "40")
        };
        assert!(matches!(
            operation(&hold),
            Ok(Operation::Hold(pb::Hold {
                from: 1,
                to: 2,
                amount: 40,
                timeout_ns: 30_000_000_000,
                ..
            }))
        ));
        let post = Submission {
            target: "7".into(),
            ..form("post", "", "", "")
        };
        assert!(matches!(
            operation(&post),
            Ok(Operation::PostHold(pb::PostHold {
                hold_id: 7,
                amount: 0,
                ..
            }))
        ));
        let err = operation(&form("void", "", "", "")).unwrap_err();
        assert!(err.contains("hold id is required"), "{err}");
        let reverse = Submission {
            target: "9".into(),
            ..form("reverse", "", "", "")
        };
        assert!(matches!(
            operation(&reverse),
            Ok(Operation::Reverse(pb::Reverse { tx_id: 9, .. }))
        ));
        let too_long = Submission {
            timeout_secs: u64::MAX.to_string(),
            ..form("hold", "1", "2", "40")
        };
        assert!(operation(&too_long).unwrap_err().contains("too long"));
    }
}
