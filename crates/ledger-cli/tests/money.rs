//! `replay` and `snapshot dump` on a log of the money model: configured accounts with
//! currencies, limits and parents; holds posted, voided, expired and left open;
//! reversals. Replay rebuilds all of it with the engine's replay and must equal every
//! snapshot in every part; a log whose effects are impossible is refused.

mod common;

use std::num::NonZeroUsize;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{cli, entry};
use ledger_core::holds::HoldState;
use ledger_core::ledger::{Ledger, LedgerConfig};
use ledger_core::record::{AccountLink, FrameEncoder, RecordRef};
use ledger_core::transaction::{
    AccountConfig, Effect, Entry, EntryKind, Operation, Outcome, WaitLevel,
};
use ledger_wal::{Wal, WalConfig};
use serde_json::Value;

/// Currency of accounts 1-4.
const CURRENCY: u32 = 7;

#[derive(Debug)]
struct Written {
    dir: tempfile::TempDir,
    /// Hold ids by how they ended.
    posted: u64,
    voided: u64,
    expired: u64,
    open: u64,
    /// A transfer and its reversal.
    reversed: (u64, u64),
    snapshots: usize,
}

fn written() -> &'static Written {
    static WRITTEN: OnceLock<Written> = OnceLock::new();
    WRITTEN.get_or_init(write)
}

fn write() -> Written {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let config = LedgerConfig {
        max_accounts: 16,
        wal_segment_bytes: 2048,
        snapshot_interval_tx: 7,
        snapshots_kept: NonZeroUsize::new(100).expect("non-zero"),
        wal_keep_all: true,
        ..LedgerConfig::in_dir(dir.path())
    };
    let mut ledger = Ledger::new(config);
    ledger.start().expect("start");
    let submit = |op: Operation| {
        let result = ledger.submit_and_wait(op, WaitLevel::Committed);
        assert!(result.is_committed(), "{result:?}");
        result.tx_id
    };
    let limited = |overdraft_limit, parent| AccountConfig {
        currency: CURRENCY,
        flags: AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS,
        overdraft_limit,
        max_balance: None,
        parent,
    };
    submit(Operation::configure(1, limited(100, 0), 1));
    submit(Operation::configure(2, limited(0, 1), 2));
    submit(Operation::configure(3, limited(0, 2), 3));
    let capped = AccountConfig {
        max_balance: Some(100_000),
        ..limited(0, 0)
    };
    submit(Operation::configure(4, capped, 4));
    for account in 1..=6 {
        let amount = 1_000 * account;
        submit(Operation::Deposit {
            account,
            amount,
            user_ref: 100 + account,
        });
    }
    let posted = submit(Operation::hold(1, 4, 300, 0, 0));
    let voided = submit(Operation::hold(2, 3, 50, 0, 0));
    let open = submit(Operation::hold(3, 1, 20, 0, 0));
    submit(Operation::PostHold {
        hold_id: posted,
        amount: 100,
        user_ref: 0,
    });
    for i in 0..20u64 {
        let (from, to) = if i % 2 == 0 { (1, 2) } else { (5, 6) };
        submit(Operation::Transfer {
            from,
            to,
            amount: 1 + i,
            user_ref: 200 + i,
        });
    }
    submit(Operation::VoidHold {
        hold_id: voided,
        user_ref: 0,
    });
    let transfer = submit(Operation::Transfer {
        from: 3,
        to: 4,
        amount: 70,
        user_ref: 0,
    });
    let reversal = submit(Operation::reverse(transfer, 0));
    // A hold that expires 1 ms on: the ledger's own expiry transaction releases it, in the
    // log, with nothing else submitted.
    let expired = submit(Operation::hold(4, 1, 40, 1_000_000, 0));
    let deadline = Instant::now() + Duration::from_secs(30);
    while ledger
        .get_hold(expired)
        .expect("read")
        .0
        .expect("kept")
        .state
        != HoldState::Expired
    {
        assert!(Instant::now() < deadline, "hold {expired} never expired");
        std::thread::sleep(Duration::from_millis(1));
    }
    ledger.stop().expect("stop");
    drop(ledger);
    let snapshots = std::fs::read_dir(dir.path().join("snapshots"))
        .expect("snapshots")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "snap"))
        })
        .count();
    Written {
        dir,
        posted,
        voided,
        expired,
        open,
        reversed: (transfer, reversal),
        snapshots,
    }
}

/// The rows of one kind (told apart by their first key), as JSON text in order.
fn rows(lines: &[Value], key: &str) -> Vec<String> {
    let of_kind = lines.iter().filter(|l| l.get(key).is_some());
    of_kind.map(Value::to_string).collect()
}

/// Each hold's state in the rows.
fn hold_states(lines: &[Value]) -> Vec<(u64, String)> {
    let holds = lines.iter().filter(|l| l.get("hold").is_some());
    holds
        .map(|h| {
            (
                h["hold"].as_u64().unwrap(),
                h["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn replay_rebuilds_the_whole_state_and_matches_every_snapshot_in_every_part() {
    let w = written();
    let data = w.dir.path();
    let run = cli(data, &["replay", "--format", "state", "-o", "-"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(w.snapshots >= 5, "{} snapshots", w.snapshots);
    let matched = format!("{} snapshot(s) matched", w.snapshots);
    assert!(run.stderr.contains(&matched), "{}", run.stderr);

    // The replayed state prints as the last snapshot (taken at the stop) does.
    let replayed = run.json_lines();
    let dump = cli(data, &["snapshot", "dump", "latest"]);
    assert_eq!(dump.code, 0, "{dump:?}");
    let stored = dump.json_lines();
    for key in [
        "configured",
        "system_balance",
        "account",
        "hold",
        "reversed",
    ] {
        assert_eq!(rows(&replayed, key), rows(&stored, key), "{key} rows");
    }
    for field in [
        "last_tx_id",
        "now_ns",
        "configured_accounts",
        "holds",
        "reversals",
    ] {
        assert_eq!(replayed[0][field], stored[0][field], "{field}");
    }

    // What the rows say.
    let open = |id| (id, "open".to_owned());
    let mut expected = vec![
        (w.posted, "posted".to_owned()),
        (w.voided, "voided".to_owned()),
        open(w.open),
        (w.expired, "expired".to_owned()),
    ];
    expected.sort();
    assert_eq!(hold_states(&replayed), expected);
    let (original, reversal) = w.reversed;
    let reversals: Vec<_> = replayed
        .iter()
        .filter(|l| l.get("reversed").is_some())
        .collect();
    assert_eq!(
        reversals,
        [&serde_json::json!({"reversed": original, "by": reversal})]
    );
    let configured = replayed.iter().filter(|l| l.get("configured").is_some());
    let parents: Vec<(u64, u64)> = configured
        .map(|c| {
            (
                c["configured"].as_u64().unwrap(),
                c["parent"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(parents, [(1, 0), (2, 1), (3, 2), (4, 0)]);
    let system = rows(&replayed, "system_balance");
    assert_eq!(system.len(), 1, "{system:?}");
    assert!(system[0].contains(&format!(r#""currency":{CURRENCY}"#)));
}

#[test]
fn replay_until_gives_the_holds_as_they_stood_then() {
    let w = written();
    let data = w.dir.path();
    // Right after the first hold opened: it alone, open.
    let until = w.posted.to_string();
    let run = cli(
        data,
        &["replay", "--until", &until, "--format", "state", "-o", "-"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let lines = run.json_lines();
    assert_eq!(hold_states(&lines), [(w.posted, "open".to_owned())]);
    assert!(rows(&lines, "reversed").is_empty());
    // From the first snapshot on, to the end: the same final state as from scratch.
    let from = cli(
        data,
        &[
            "replay",
            "--from-snapshot",
            "7",
            "--format",
            "state",
            "-o",
            "-",
        ],
    );
    assert_eq!(from.code, 0, "{from:?}");
    let scratch = cli(data, &["replay", "--format", "state", "-o", "-"]);
    assert_eq!(
        rows(&from.json_lines(), "hold"),
        rows(&scratch.json_lines(), "hold")
    );
    // Chunks of two records: the records with effects spread over many chunks, each
    // one's bookkeeping starting over.
    let small = [
        "replay",
        "--chunk-records",
        "2",
        "--format",
        "state",
        "-o",
        "-",
    ];
    let small = cli(data, &small);
    assert_eq!(small.code, 0, "{small:?}");
    assert_eq!(small.stdout, scratch.stdout);
}

#[test]
fn replay_with_other_windows_than_the_servers_names_the_setting() {
    let data = written().dir.path();
    // Closed holds forgotten at once: the snapshots still hold them.
    let run = cli(data, &["replay", "--closed-hold-retention-secs", "0"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains(": only in the snapshot (closed holds are kept")
            && run.stderr.contains("--closed-hold-retention-secs"),
        "{}",
        run.stderr
    );
    // No idempotency window: the snapshots' dedup entries are missing.
    let run = cli(data, &["replay", "--dedup-window-secs", "0"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("--dedup-window-secs"), "{}", run.stderr);
}

/// One frame per record, ids from 1.
fn forge(records: &[RecordRef<'_>]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path().join("wal"), WalConfig::default()).unwrap();
    for (i, &record) in records.iter().enumerate() {
        let id = i as u64 + 1;
        let mut buf = Vec::new();
        let mut encoder = FrameEncoder::new(&mut buf, id, 1_000);
        encoder.push(&mut buf, record);
        wal.append(id, id, &buf).unwrap();
    }
    wal.sync().unwrap();
    dir
}

/// A committed record of these entries (with their back-links), effects and effect links.
fn record<'a>(
    entries: &'a [Entry],
    prev_tx_ids: &'a [u64],
    effects: &'a [Effect],
    effect_links: &'a [AccountLink],
) -> RecordRef<'a> {
    RecordRef {
        timestamp_ns: 1_000,
        user_ref: 0,
        outcome: Outcome::Committed,
        entries,
        prev_tx_ids,
        effects,
        effect_links,
    }
}

#[test]
fn a_log_that_posts_a_hold_twice_is_refused() {
    use EntryKind::{Credit, Debit};
    let link = |account_id, prev_tx_id| AccountLink {
        account_id,
        prev_tx_id,
    };
    let deposit = [entry(0, 100, Credit, -100), entry(1, 100, Debit, 100)];
    let opened = [Effect::HoldOpened {
        from: 1,
        to: 2,
        amount: 80,
        expires_at_ns: 0,
    }];
    let post = [Effect::HoldPosted {
        hold_id: 2,
        amount: 40,
    }];
    let opened_links = [link(1, 1), link(2, 0)];
    let first = [entry(1, 40, Credit, 60), entry(2, 40, Debit, 40)];
    let second = [entry(1, 40, Credit, 20), entry(2, 40, Debit, 80)];
    let records = [
        record(&deposit[..], &[0, 0][..], &[][..], &[][..]),
        record(&[], &[], &opened, &opened_links),
        record(&first, &[2, 2], &post, &[]),
        record(&second, &[3, 3], &post, &[]),
    ];
    // Every balance and back-link adds up: only the hold's state says the second post
    // cannot be.
    let once = forge(&records[..3]);
    let run = cli(once.path(), &["replay", "--format", "state", "-o", "-"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(hold_states(&run.json_lines()), [(2, "posted".to_owned())]);
    let twice = forge(&records);
    let run = cli(twice.path(), &["replay", "-a", "1"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("wal-00000000000000000001.seg offset ")
            && run.stderr.contains("hold 2 is not open"),
        "{}",
        run.stderr
    );
}

/// A record written before effect links (still valid) names a hold's accounts only in
/// its effect: replay grows its table for them too.
#[test]
fn a_hold_on_a_high_account_without_effect_links_grows_the_table() {
    use EntryKind::{Credit, Debit};
    let deposit = [entry(0, 100, Credit, -100), entry(1, 100, Debit, 100)];
    let opened = [Effect::HoldOpened {
        from: 1,
        to: 5_000,
        amount: 80,
        expires_at_ns: 0,
    }];
    let dir = forge(&[
        record(&deposit, &[0, 0], &[], &[]),
        record(&[], &[], &opened, &[]),
    ]);
    let run = cli(dir.path(), &["replay", "--format", "state", "-o", "-"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines = run.json_lines();
    let hold = lines.iter().find(|l| l.get("hold").is_some()).unwrap();
    assert_eq!(
        (hold["to"].as_u64(), hold["state"].as_str()),
        (Some(5_000), Some("open"))
    );
}
