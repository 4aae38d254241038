//! [`SharedRules`]: the settings every node of a cluster must run with. A follower
//! applies the leader's results and never executes, so its own settings change nothing
//! while it follows; but the node that leads next executes with its own. A node with a
//! shorter idempotency window would, once leader, commit a retried payment that the
//! old leader would have refused as a duplicate. So every Raft message carries the
//! sender's rules, and a node refuses messages from a node whose rules differ.

use std::collections::BTreeMap;

use crate::ledger::LedgerConfig;
use crate::transactor::TransactorConfig;

/// The settings that decide, beyond the log, what the state machine does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedRules {
    config: TransactorConfig,
    /// [`to_wire`](Self::to_wire), made once: every Raft message is checked against it.
    wire: String,
}

impl SharedRules {
    pub fn of(config: &LedgerConfig) -> SharedRules {
        let config = config.transactor_config();
        let wire = pairs(&config)
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(",");
        SharedRules { config, wire }
    }

    /// One line of `name=value` pairs, comma-separated (what the server sends in a
    /// header of every Raft message).
    pub fn to_wire(&self) -> String {
        self.wire.clone()
    }

    /// `None` if `theirs` (another node's [`to_wire`](Self::to_wire)) names the same
    /// rules; otherwise what differs, for an operator: `"dedup_window_ns: the sender has
    /// 1000000000, this node 10000000000"`.
    pub fn difference(&self, theirs: &str) -> Option<String> {
        if theirs == self.wire {
            return None; // every message of a healthy cluster: no parsing
        }
        let mut theirs: BTreeMap<&str, &str> = theirs
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .collect();
        let mut differences = Vec::new();
        for (name, ours) in pairs(&self.config) {
            match theirs.remove(name) {
                Some(value) if value == ours.to_string() => {}
                Some(value) => {
                    differences.push(format!("{name}: the sender has {value}, this node {ours}"))
                }
                None => differences.push(format!("{name}: the sender has none, this node {ours}")),
            }
        }
        for (name, value) in theirs {
            differences.push(format!("{name}: the sender has {value}, this node none"));
        }
        (!differences.is_empty()).then(|| differences.join("; "))
    }
}

/// The rules by name.
fn pairs(c: &TransactorConfig) -> [(&'static str, u64); 4] {
    [
        ("max_accounts", c.max_accounts),
        ("dedup_window_ns", c.dedup_window_ns),
        ("closed_hold_retention_ns", c.closed_hold_retention_ns),
        ("closed_holds_max", c.closed_holds_max as u64),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_same_settings_agree_and_any_difference_is_named() {
        let ours = SharedRules::of(&LedgerConfig::default());
        assert_eq!(ours.difference(&ours.to_wire()), None);
        // The same rules in another order (past the fast path): the same.
        let wire = ours.to_wire();
        let reordered: Vec<&str> = wire.split(',').rev().collect();
        assert_eq!(ours.difference(&reordered.join(",")), None);
        assert!(
            ours.to_wire()
                .starts_with("max_accounts=1000000,dedup_window_ns=10000000000,")
        );

        let shorter = SharedRules::of(&LedgerConfig {
            dedup_window: Duration::from_secs(1),
            ..LedgerConfig::default()
        });
        assert_eq!(
            ours.difference(&shorter.to_wire()).as_deref(),
            Some("dedup_window_ns: the sender has 1000000000, this node 10000000000")
        );
        // A sender of another version, with a rule this one does not know or lacks.
        let wire = format!("{},weekend_rates=1", ours.to_wire());
        assert_eq!(
            ours.difference(&wire).as_deref(),
            Some("weekend_rates: the sender has 1, this node none")
        );
        let wire = "max_accounts=1000000";
        let difference = ours.difference(wire).unwrap();
        assert!(
            difference.starts_with("dedup_window_ns: the sender has none"),
            "{difference}"
        );
        assert!(ours.difference("garbage").is_some());
    }
}
