//! `wal ls`, `wal verify` and `wal dump` on a log the engine wrote, intact and damaged.

mod common;

use std::fs::OpenOptions;
use std::io::Write;

use common::{cli, copy, segments, written};
use ledger_core::transaction::{EntryKind, Outcome};
use serde_json::Value;

/// File offset of the first frame in a segment, and of its payload.
const FIRST_FRAME: u64 = 64;
const FIRST_PAYLOAD: u64 = FIRST_FRAME + 40;

#[test]
fn wal_ls_lists_segments_with_contiguous_ranges_sizes_and_state() {
    let data = written().dir.path();
    let files = segments(data);
    assert!(
        files.len() >= 4,
        "small segments make several: {}",
        files.len()
    );
    let run = cli(data, &["wal", "ls", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = run.json_lines();
    assert_eq!(rows.len(), files.len());
    let mut expected_first = 1;
    for (i, (row, file)) in rows.iter().zip(&files).enumerate() {
        assert_eq!(row["file"], file.file_name().unwrap().to_str().unwrap());
        assert_eq!(row["bytes"], std::fs::metadata(file).unwrap().len());
        assert_eq!(row["first_tx"], expected_first);
        expected_first = row["last_tx"].as_u64().unwrap() + 1;
        let state = row["state"].as_str().unwrap();
        if i + 1 < rows.len() {
            assert_eq!(state, "sealed");
        } else {
            assert!(state.starts_with("open, clean"), "{state}");
        }
    }
    assert_eq!(expected_first, written().last_tx_id() + 1);

    let table = cli(data, &["wal", "ls"]);
    assert_eq!(table.code, 0);
    assert!(table.stdout.starts_with("SEGMENT"), "{}", table.stdout);
    assert_eq!(table.stdout.lines().count(), files.len() + 1);
}

#[test]
fn wal_verify_passes_on_the_engines_log() {
    let data = written().dir.path();
    let run = cli(data, &["wal", "verify", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = &run.json_lines()[0];
    assert_eq!(summary["records"], written().last_tx_id());
    assert_eq!(summary["first_tx"], 1);
    assert_eq!(summary["last_tx"], written().last_tx_id());
    assert_eq!(summary["segments"], segments(data).len());
    assert_eq!(summary["ok"], true);

    let text = cli(data, &["wal", "verify"]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.trim_end().ends_with("ok"), "{}", text.stdout);
}

#[test]
fn a_flipped_payload_byte_fails_verify_naming_file_and_offset() {
    let data = copy();
    let files = segments(data.path());
    let victim = &files[files.len() / 2];
    let mut bytes = common::read(victim);
    bytes[FIRST_PAYLOAD as usize + 3] ^= 0x10;
    std::fs::write(victim, &bytes).unwrap();

    let run = cli(data.path(), &["wal", "verify"]);
    assert_eq!(run.code, 1, "{run:?}");
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(run.stderr.contains(name), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("offset {FIRST_FRAME}")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("payload checksum"), "{}", run.stderr);

    // Every reader refuses the damaged frame the same way.
    for args in [&["replay"][..], &["wal", "dump"][..], &["wal", "ls"][..]] {
        let run = cli(data.path(), args);
        if args == ["wal", "ls"] && files.len() / 2 + 1 != files.len() {
            // `ls` reads only the last segment's frames.
            assert_eq!(run.code, 0, "{args:?}: {run:?}");
        } else {
            assert_eq!(run.code, 1, "{args:?}: {run:?}");
            assert!(run.stderr.contains(name), "{args:?}: {}", run.stderr);
        }
    }
}

/// Appends the start of a frame (header and part of its payload) to the last segment, as
/// a crash in the middle of a write leaves it; returns the segment and its old length.
pub fn tear(data: &std::path::Path) -> (std::path::PathBuf, u64) {
    let files = segments(data);
    let last = files.last().unwrap().clone();
    let bytes = common::read(&last);
    let len = bytes.len() as u64;
    let partial = &bytes[FIRST_FRAME as usize..FIRST_PAYLOAD as usize + 5];
    let mut file = OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(partial).unwrap();
    (last, len)
}

#[test]
fn a_torn_tail_is_reported_by_verify_and_left_out_by_readers() {
    let data = copy();
    let (last, len) = tear(data.path());
    let run = cli(data.path(), &["wal", "verify"]);
    assert_eq!(run.code, 1, "{run:?}");
    let name = last.file_name().unwrap().to_str().unwrap();
    assert!(run.stderr.contains(name), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("offset {len}: torn tail")),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .contains(&format!("records        {}", written().last_tx_id()))
    );

    let ls = cli(data.path(), &["wal", "ls", "--json"]);
    assert_eq!(ls.code, 0);
    let state = ls.json_lines().last().unwrap()["state"].clone();
    assert!(
        state
            .as_str()
            .unwrap()
            .starts_with(&format!("torn tail at offset {len}")),
        "{state}"
    );

    // The complete frames are still read: replay gives the same balances, with a note.
    let replay = cli(data.path(), &["replay", "-a", "2"]);
    assert_eq!(replay.code, 0, "{replay:?}");
    assert!(replay.stderr.contains("torn tail"), "{}", replay.stderr);
    assert_eq!(
        replay.stdout,
        format!("account,balance\n2,{}\n", written().final_balances[2])
    );
    // Nothing was written.
    assert_eq!(std::fs::metadata(&last).unwrap().len(), len + 45);
}

/// The engine's transaction as the JSON `wal dump` must print.
fn expected_json(t: &ledger_core::ledger::Transaction) -> Value {
    let entries: Vec<Value> = t
        .entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "account": e.account_id,
                "amount": e.amount,
                "kind": match e.kind { EntryKind::Credit => "credit", EntryKind::Debit => "debit" },
                "balance_after": e.balance_after,
            })
        })
        .collect();
    let mut v = serde_json::json!({
        "id": t.tx_id,
        "timestamp_ns": t.timestamp_ns,
        "user_ref": t.user_ref,
        "entries": entries,
    });
    match t.outcome {
        Outcome::Committed => v["outcome"] = "committed".into(),
        Outcome::Rejected(reason) => {
            v["outcome"] = "rejected".into();
            v["fail_code"] = reason.code().into();
        }
    }
    v
}

/// Whether `effect` touches one of `accounts` without an entry (a void names its hold's).
fn names(
    effect: &ledger_core::transaction::Effect,
    accounts: &[u64],
    all: &[ledger_core::ledger::Transaction],
) -> bool {
    use ledger_core::transaction::Effect;
    let hold_accounts = |hold_id: u64| match all[hold_id as usize - 1].effects[0] {
        Effect::HoldOpened { from, to, .. } => [from, to],
        other => panic!("{other:?} is not a hold"),
    };
    match *effect {
        Effect::Configured { account, .. } => accounts.contains(&account),
        Effect::HoldOpened { from, to, .. } => accounts.contains(&from) || accounts.contains(&to),
        Effect::HoldVoided { hold_id } | Effect::HoldExpired { hold_id } => {
            hold_accounts(hold_id).iter().any(|a| accounts.contains(a))
        }
        _ => false,
    }
}

/// Compares a dumped line with the engine's transaction (the fields both have).
fn assert_same(line: &Value, t: &ledger_core::ledger::Transaction) {
    let expected = expected_json(t);
    for field in ["id", "timestamp_ns", "user_ref", "outcome", "entries"] {
        assert_eq!(line[field], expected[field], "tx {} field {field}", t.tx_id);
    }
    if expected["outcome"] == "rejected" {
        assert_eq!(line["fail_code"], expected["fail_code"], "tx {}", t.tx_id);
    }
    assert_eq!(
        line["links"].as_array().unwrap().len(),
        t.entries.len(),
        "one back-link per entry"
    );
}

#[test]
fn wal_dump_prints_every_transaction_as_the_engine_returned_it() {
    let data = written().dir.path();
    let run = cli(data, &["wal", "dump"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = run.json_lines();
    assert_eq!(lines.len(), written().transactions.len());
    for (line, t) in lines.iter().zip(&written().transactions) {
        assert_same(line, t);
    }
    // The workload has rejections, duplicates and composites: all of them show.
    assert!(lines.iter().any(|l| l["reason"] == "insufficient_funds"));
    let duplicate = lines.iter().find(|l| l["reason"] == "duplicate").unwrap();
    let original = duplicate["original_tx_id"].as_u64().unwrap();
    assert_eq!(
        lines[original as usize - 1]["user_ref"],
        duplicate["user_ref"]
    );
    assert!(
        lines
            .iter()
            .any(|l| l["entries"].as_array().unwrap().len() == 3)
    );
}

#[test]
fn wal_dump_filters_by_id_range_and_account() {
    let data = written().dir.path();
    let run = cli(data, &["wal", "dump", "--from", "20", "--to", "41"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ids: Vec<u64> = run
        .json_lines()
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (20..=41).collect::<Vec<_>>());
    for line in run.json_lines() {
        assert_same(
            &line,
            &written().transactions[line["id"].as_u64().unwrap() as usize - 1],
        );
    }

    let run = cli(
        data,
        &[
            "wal",
            "dump",
            "--account",
            "9",
            "--account",
            "10",
            "--to",
            "200",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ids: Vec<u64> = run
        .json_lines()
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = written()
        .transactions
        .iter()
        .filter(|t| t.tx_id <= 200)
        .filter(|t| {
            t.entries.iter().any(|e| [9, 10].contains(&e.account_id))
                || t.effects
                    .iter()
                    .any(|e| names(e, &[9, 10], &written().transactions))
        })
        .map(|t| t.tx_id)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(ids, expected);
    // Holds on those accounts show, with their effect links.
    let hold_lines: Vec<_> = run
        .json_lines()
        .into_iter()
        .filter(|l| l["effects"][0].get("hold_opened").is_some())
        .collect();
    assert!(!hold_lines.is_empty());
    for line in hold_lines {
        let links = line["effect_links"].as_array().unwrap();
        assert_eq!(links.len(), 2, "{line}");
        let hold = &line["effects"][0]["hold_opened"];
        assert_eq!(links[0]["account"], hold["from"]);
        assert_eq!(links[1]["account"], hold["to"]);
    }

    let reversed = cli(data, &["wal", "dump", "--from", "9", "--to", "3"]);
    assert_eq!(reversed.code, 2, "{reversed:?}");
}
