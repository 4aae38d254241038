//! `/submit`: a form for a deposit, a withdrawal or a transfer. It goes through the
//! service's `SubmitAndWait` (committed: durable before the answer), so it is checked,
//! authorised and counted as any client's; the browser then lands on the transaction's
//! page, committed or rejected. A read token sees the form but may not post it.

use axum::Form;
use axum::extract::State;
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
    #[serde(default)]
    user_ref: String,
}

pub(crate) async fn form(viewer: Viewer) -> Markup {
    page(viewer, &Submission::default(), None)
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
    let number = |what: &str, text: &str| -> Result<u64, String> {
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
    };
    let account = number("The account", &form.account)?;
    let amount = number("The amount (in minor units)", &form.amount)?;
    let user_ref = match form.user_ref.trim() {
        "" => 0,
        text => number("The user reference", text)?,
    };
    Ok(match form.kind.as_str() {
        "deposit" => Operation::Deposit(pb::Deposit {
            account,
            amount,
            user_ref,
        }),
        "withdrawal" => Operation::Withdrawal(pb::Withdrawal {
            account,
            amount,
            user_ref,
        }),
        "transfer" => Operation::Transfer(pb::Transfer {
            from: account,
            to: number("The receiving account", &form.to)?,
            amount,
            user_ref,
        }),
        other => {
            return Err(format!(
                "Choose a deposit, a withdrawal or a transfer, not {other:?}."
            ));
        }
    })
}

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
                @for (value, label) in [("deposit", "Deposit"), ("withdrawal", "Withdrawal"), ("transfer", "Transfer")] {
                    label.choice {
                        input type="radio" name="kind" value=(value) checked[kind == value];
                        " " (label)
                    }
                }
            }
            label for="account" { "Account (the payer of a transfer)" }
            input #account name="account" inputmode="numeric" required value=(form.account);
            label for="to" { "Receiving account (transfers)" }
            input #to name="to" inputmode="numeric" value=(form.to);
            label for="amount" { "Amount, in minor units" }
            input #amount name="amount" inputmode="numeric" required value=(form.amount);
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
            user_ref: String::new(),
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
    }
}
