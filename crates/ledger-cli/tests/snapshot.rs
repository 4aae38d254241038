//! `snapshot ls | verify | dump` on the engine's snapshots, intact and damaged.

mod common;

use common::{cli, copy, snapshots, written};

#[test]
fn snapshot_ls_lists_every_file_with_its_status() {
    let data = written().dir.path();
    let files = snapshots(data);
    let run = cli(data, &["snapshot", "ls", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = run.json_lines();
    assert_eq!(rows.len(), files.len());
    for (row, (seq, path)) in rows.iter().zip(&files) {
        assert_eq!(row["sequence"], *seq);
        assert_eq!(row["status"], "ok");
        assert_eq!(row["bytes"], std::fs::metadata(path).unwrap().len());
    }
    // The engine snapshots on stop: the newest is at the last transaction.
    assert_eq!(files.last().unwrap().0, written().last_tx_id());
    let table = cli(data, &["snapshot", "ls"]);
    assert!(table.stdout.starts_with("SEQUENCE"), "{}", table.stdout);
}

#[test]
fn snapshot_verify_passes_then_fails_naming_a_damaged_file() {
    let data = copy();
    let ok = cli(data.path(), &["snapshot", "verify"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.trim_end().ends_with("ok"), "{}", ok.stdout);

    let files = snapshots(data.path());
    let (seq, victim) = &files[0];
    let mut bytes = common::read(victim);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(victim, &bytes).unwrap();

    let run = cli(data.path(), &["snapshot", "verify"]);
    assert_eq!(run.code, 1, "{run:?}");
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(run.stderr.contains(name), "{}", run.stderr);
    assert!(run.stderr.contains("checksum"), "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!("{seq}  FAILED")),
        "{}",
        run.stdout
    );
    // The others still verify one by one.
    let (other, _) = files.last().unwrap();
    assert_eq!(
        cli(data.path(), &["snapshot", "verify", &other.to_string()]).code,
        0
    );
    assert_eq!(cli(data.path(), &["snapshot", "ls"]).code, 0);
    // Replay passing it reports it.
    let replay = cli(data.path(), &["replay"]);
    assert_eq!(replay.code, 1, "{replay:?}");
    assert!(replay.stderr.contains(name), "{}", replay.stderr);
}

#[test]
fn snapshot_dump_prints_the_state() {
    let data = written().dir.path();
    let run = cli(data, &["snapshot", "dump"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = run.json_lines();
    let header = &lines[0];
    assert_eq!(header["last_tx_id"], written().last_tx_id());
    assert_eq!(header["accounts"], common::ACCOUNTS);
    let mut balances = vec![0i64; common::ACCOUNTS as usize];
    for line in lines[1..].iter().filter(|l| l.get("account").is_some()) {
        balances[line["account"].as_u64().unwrap() as usize] = line["balance"].as_i64().unwrap();
    }
    assert_eq!(balances, written().final_balances);
    // The workload's holds, each posted or voided (one per transaction, with its state).
    let holds: Vec<_> = lines.iter().filter(|l| l.get("hold").is_some()).collect();
    assert_eq!(holds.len() as u64, header["holds"].as_u64().unwrap());
    assert!(!holds.is_empty());
    for hold in &holds {
        let id = hold["hold"].as_u64().unwrap();
        let opened = &written().transactions[id as usize - 1];
        assert!(opened.outcome.is_committed(), "hold {id}");
        let state = hold["state"].as_str().unwrap();
        assert!(["posted", "voided"].contains(&state), "{hold}");
    }

    let (first, _) = snapshots(data)[0];
    let run = cli(
        data,
        &["snapshot", "dump", &first.to_string(), "--all", "--dedup"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = run.json_lines();
    assert_eq!(lines[0]["sequence"], first);
    let model = written().model_at(first);
    for (account, expected) in model.iter().enumerate() {
        assert_eq!(
            lines[1 + account]["balance"],
            *expected,
            "account {account}"
        );
    }
    let dedup = lines[0]["dedup_entries"].as_u64().unwrap() as usize;
    let holds = lines[0]["holds"].as_u64().unwrap() as usize;
    assert_eq!(lines.len(), 1 + model.len() + holds + dedup);
    assert!(dedup > 0, "the workload uses user_refs");

    assert_eq!(cli(data, &["snapshot", "dump", "4"]).code, 2);
}

#[test]
fn latest_passes_over_a_damaged_newest_snapshot_as_recovery_does() {
    let data = copy();
    let files = snapshots(data.path());
    let (newest, victim) = files.last().unwrap().clone();
    let (previous, _) = files[files.len() - 2];
    let mut bytes = common::read(&victim);
    bytes[70] ^= 0x40;
    std::fs::write(&victim, &bytes).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap();

    let dump = cli(data.path(), &["snapshot", "dump"]);
    assert_eq!(dump.code, 0, "{dump:?}");
    assert_eq!(dump.json_lines()[0]["sequence"], previous);
    assert!(dump.stderr.contains("passing over") && dump.stderr.contains(name));

    // Replaying from it reaches the newest snapshot's transaction, which does not verify.
    let replay = cli(data.path(), &["replay", "--from-snapshot", "latest"]);
    assert_eq!(replay.code, 1, "{replay:?}");
    assert!(replay.stderr.contains(name), "{}", replay.stderr);
    let skip = cli(
        data.path(),
        &[
            "replay",
            "--from-snapshot",
            "latest",
            "--no-snapshot-check",
            "-a",
            "2",
        ],
    );
    assert_eq!(skip.code, 0, "{skip:?}");
    assert_eq!(
        skip.stdout,
        format!("account,balance\n2,{}\n", written().final_balances[2])
    );
    assert!(newest > previous);
}
