//! `replay` on a log the engine wrote: balances equal the engine's, point in time, from
//! a snapshot, and a snapshot that disagrees with the WAL.

mod common;

use std::collections::BTreeMap;

use common::{cli, copy, snapshots, written};
use ledger_core::ledger::{STATE_FORMAT, SnapshotState};
use ledger_snapshot::{SnapshotConfig, SnapshotStore, open_file};

/// Parses `account,balance` CSV (with its header) into a map.
fn csv(text: &str) -> BTreeMap<u64, i64> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("account,balance"));
    lines
        .map(|l| {
            let (a, b) = l.split_once(',').expect("two columns");
            (a.parse().expect("account"), b.parse().expect("balance"))
        })
        .collect()
}

/// The expected non-zero balances.
fn non_zero(balances: &[i64]) -> BTreeMap<u64, i64> {
    balances
        .iter()
        .enumerate()
        .filter(|(_, b)| **b != 0)
        .map(|(a, b)| (a as u64, *b))
        .collect()
}

#[test]
fn replay_from_scratch_equals_the_engines_balances_and_matches_every_snapshot() {
    let data = written().dir.path();
    let run = cli(data, &["replay", "--output", "-"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(csv(&run.stdout), non_zero(&written().final_balances));
    let snapshot_count = snapshots(data).len();
    assert!(snapshot_count >= 3, "{snapshot_count} snapshots");
    assert!(
        run.stderr
            .contains(&format!("{snapshot_count} snapshot(s) matched")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "replayed {} transactions (1..={})",
            written().last_tx_id(),
            written().last_tx_id()
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("tx/s"), "{}", run.stderr);
}

#[test]
fn replay_in_small_chunks_gives_the_same_balances() {
    // Chunks of a few records: both threads decode, and snapshots, --until and the start
    // fall inside and across chunk boundaries.
    let data = written().dir.path();
    let (first_snapshot, _) = snapshots(data)[0];
    for chunk in ["1", "2", "7", "64"] {
        let run = cli(data, &["replay", "--chunk-records", chunk, "-o", "-"]);
        assert_eq!(run.code, 0, "{chunk}: {}", run.stderr);
        assert_eq!(
            csv(&run.stdout),
            non_zero(&written().final_balances),
            "{chunk}"
        );
        let until = written().last_tx_id() - 5;
        let run = cli(
            data,
            &[
                "replay",
                "--chunk-records",
                chunk,
                "--from-snapshot",
                &first_snapshot.to_string(),
                "--until",
                &until.to_string(),
                "-o",
                "-",
            ],
        );
        assert_eq!(run.code, 0, "{chunk}: {}", run.stderr);
        assert_eq!(
            csv(&run.stdout),
            non_zero(&written().model_at(until)),
            "{chunk}"
        );
    }
}

#[test]
fn replay_writes_csv_and_json_files() {
    let data = written().dir.path();
    let out = tempfile::tempdir().unwrap();
    let csv_path = out.path().join("balances.csv");
    let json_path = out.path().join("balances.json");
    let a = cli(data, &["replay", "-o", csv_path.to_str().unwrap()]);
    let b = cli(
        data,
        &[
            "replay",
            "-o",
            json_path.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!((a.code, b.code), (0, 0), "{a:?} {b:?}");
    assert!(a.stdout.is_empty() && b.stdout.is_empty());
    let from_csv = csv(&std::fs::read_to_string(&csv_path).unwrap());
    let from_json: BTreeMap<u64, i64> = std::fs::read_to_string(&json_path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["account"].as_u64().unwrap(),
                v["balance"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(from_csv, non_zero(&written().final_balances));
    assert_eq!(from_json, from_csv);
}

#[test]
fn replay_until_gives_the_balances_of_get_balance_at_and_of_the_model() {
    let data = written().dir.path();
    let mut by_tx: BTreeMap<u64, Vec<(u64, i64)>> = BTreeMap::new();
    for &(account, tx, balance) in &written().balance_at {
        by_tx.entry(tx).or_default().push((account, balance));
    }
    for (tx, expected) in by_tx {
        let mut args = vec!["replay".to_owned(), "--until".to_owned(), tx.to_string()];
        for (account, _) in &expected {
            args.extend(["-a".to_owned(), account.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = cli(data, &args);
        assert_eq!(run.code, 0, "until {tx}: {}", run.stderr);
        let got = csv(&run.stdout);
        let model = written().model_at(tx);
        for (account, balance) in expected {
            assert_eq!(got[&account], balance, "account {account} at {tx}");
            assert_eq!(
                got[&account], model[account as usize],
                "model, {account} at {tx}"
            );
        }
    }
    // Every account at one point, against the model.
    let tx = written().last_tx_id() / 3;
    let run = cli(data, &["replay", "--until", &tx.to_string(), "-o", "-"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(csv(&run.stdout), non_zero(&written().model_at(tx)));
}

#[test]
fn replay_from_a_chosen_snapshot_reaches_the_same_balances() {
    let data = written().dir.path();
    let snaps = snapshots(data);
    let mut choices: Vec<String> = snaps.iter().map(|(seq, _)| seq.to_string()).collect();
    choices.push("latest".to_owned());
    for choice in choices {
        let run = cli(data, &["replay", "--from-snapshot", &choice, "-o", "-"]);
        assert_eq!(run.code, 0, "{choice}: {}", run.stderr);
        assert_eq!(
            csv(&run.stdout),
            non_zero(&written().final_balances),
            "{choice}"
        );
        assert!(run.stderr.contains("from snapshot"), "{}", run.stderr);
    }
    // Point in time from a snapshot.
    let (first, _) = snaps[0];
    let tx = first + 7;
    let run = cli(
        data,
        &[
            "replay",
            "--from-snapshot",
            &first.to_string(),
            "--until",
            &tx.to_string(),
            "-o",
            "-",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(csv(&run.stdout), non_zero(&written().model_at(tx)));

    let missing = cli(data, &["replay", "--from-snapshot", "3"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    let before = cli(
        data,
        &[
            "replay",
            "--from-snapshot",
            &first.to_string(),
            "--until",
            "2",
        ],
    );
    assert_eq!(before.code, 2, "{before:?}");
}

#[test]
fn a_snapshot_that_disagrees_with_the_wal_is_reported() {
    let data = copy();
    let snaps = snapshots(data.path());
    let (seq, path) = snaps[snaps.len() / 2].clone();
    // A well-formed snapshot (checksums, archive) whose balances are not the WAL's:
    // 7 moved from account 2 to account 3, so it still sums to zero.
    let mut state = open_file::<SnapshotState>(&path)
        .unwrap()
        .deserialize()
        .unwrap();
    state.balances[2] -= 7;
    state.balances[3] += 7;
    let store = SnapshotStore::open(
        common::snapshot_dir(data.path()),
        SnapshotConfig::default().with_keep(std::num::NonZeroUsize::new(100).unwrap()),
    )
    .unwrap();
    store.write_format(seq, STATE_FORMAT, &state).unwrap();
    drop(store);

    let run = cli(data.path(), &["replay"]);
    assert_eq!(run.code, 1, "{run:?}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(run.stderr.contains(name), "{}", run.stderr);
    assert!(run.stderr.contains("account 2"), "{}", run.stderr);
    // snapshot verify checks the file alone: it is intact.
    assert_eq!(cli(data.path(), &["snapshot", "verify"]).code, 0);
    // Skipping the comparison gives the WAL's balances.
    let skip = cli(data.path(), &["replay", "--no-snapshot-check", "-o", "-"]);
    assert_eq!(skip.code, 0, "{}", skip.stderr);
    assert_eq!(csv(&skip.stdout), non_zero(&written().final_balances));
    // Starting from it, the next snapshot disagrees.
    if snaps.len() / 2 + 1 < snaps.len() {
        let from = cli(
            data.path(),
            &["replay", "--from-snapshot", &seq.to_string()],
        );
        assert_eq!(from.code, 1, "{from:?}");
    }
}

#[test]
fn replay_past_the_end_of_the_log_is_a_usage_error() {
    let data = written().dir.path();
    let beyond = (written().last_tx_id() + 1).to_string();
    let run = cli(data, &["replay", "--until", &beyond]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("the WAL ends at transaction"),
        "{}",
        run.stderr
    );
}
