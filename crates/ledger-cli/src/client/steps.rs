//! Composite steps from the command line (`credit:ACCOUNT:AMOUNT`) or a JSON file.

use std::path::Path;

use ledger_client::pb;
use serde_json::Value;

/// `credit:ACCOUNT:AMOUNT` or `debit:ACCOUNT:AMOUNT`.
pub fn parse_step(s: &str) -> Result<pb::Step, String> {
    let mut parts = s.split(':');
    let (Some(kind), Some(account), Some(amount), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("expected credit:ACCOUNT:AMOUNT or debit:ACCOUNT:AMOUNT".into());
    };
    let account_id = account
        .parse()
        .map_err(|_| format!("account {account:?} is not a number"))?;
    let amount = amount
        .parse()
        .map_err(|_| format!("amount {amount:?} is not a non-negative integer"))?;
    step(kind, account_id, amount)
}

fn step(kind: &str, account_id: u64, amount: u64) -> Result<pb::Step, String> {
    use pb::step::Step as Kind;
    let step = match kind {
        "credit" => Kind::Credit(pb::CreditStep { account_id, amount }),
        "debit" => Kind::Debit(pb::DebitStep { account_id, amount }),
        other => return Err(format!("step kind {other:?}: expected credit or debit")),
    };
    Ok(pb::Step { step: Some(step) })
}

/// Reads a composite from a JSON file (the proto's JSON names; numbers or strings).
pub fn steps_file(path: &Path) -> Result<pb::Composite, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    composite_json(&value).map_err(|e| format!("{}: {e}", path.display()))
}

fn composite_json(value: &Value) -> Result<pb::Composite, String> {
    let (steps, flags, user_ref) = match value {
        Value::Array(steps) => (steps.as_slice(), 0, 0),
        Value::Object(o) => (
            o.get("steps")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .ok_or("expected \"steps\": [...]")?,
            o.get("flags").map_or(Ok(0), |v| {
                number(v).and_then(|n| u32::try_from(n).map_err(|_| "flags above 2^32".into()))
            })?,
            o.get("user_ref").map_or(Ok(0), number)?,
        ),
        _ => return Err("expected an array of steps or an object with \"steps\"".into()),
    };
    let steps = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let one = s
                .as_object()
                .filter(|o| o.len() == 1)
                .and_then(|o| o.iter().next())
                .ok_or_else(|| {
                    format!("step {i}: expected {{\"credit\": {{...}}}} or {{\"debit\": {{...}}}}")
                })?;
            let (kind, fields) = one;
            let field = |name: &str| {
                fields
                    .get(name)
                    .ok_or_else(|| format!("step {i}: missing {name}"))
                    .and_then(|v| number(v).map_err(|e| format!("step {i}: {name}: {e}")))
            };
            step(kind, field("account_id")?, field("amount")?).map_err(|e| format!("step {i}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(pb::Composite {
        steps,
        flags,
        user_ref,
    })
}

/// A JSON number or decimal string (the proto JSON mapping writes 64-bit ints as strings).
fn number(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("{n} is not a u64")),
        Value::String(s) => s.parse().map_err(|_| format!("{s:?} is not a u64")),
        other => Err(format!("{other} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn steps_parse_from_flags_and_json() {
        let credit = parse_step("credit:3:70").unwrap();
        assert!(matches!(
            credit.step,
            Some(pb::step::Step::Credit(pb::CreditStep {
                account_id: 3,
                amount: 70
            }))
        ));
        assert!(parse_step("debit:3").is_err());
        assert!(parse_step("loan:3:1").is_err());
        assert!(parse_step("debit:3:-1").is_err());
        let c = composite_json(&json!({
            "steps": [
                {"credit": {"account_id": 1, "amount": "5"}},
                {"debit": {"account_id": 2, "amount": 5}}
            ],
            "flags": 1,
            "user_ref": "9"
        }))
        .unwrap();
        assert_eq!((c.steps.len(), c.flags, c.user_ref), (2, 1, 9));
        let e = composite_json(&json!([{"debit": {"account_id": 2}}])).unwrap_err();
        assert!(e.contains("step 0: missing amount"), "{e}");
        assert!(composite_json(&json!({"flags": 1})).is_err());
    }
}
