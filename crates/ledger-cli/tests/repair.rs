//! `wal truncate-torn`: refuses without confirmation, cuts exactly the torn tail with it.

mod common;

use std::fs::OpenOptions;
use std::io::Write;

use common::{cli, copy, segments, written};

/// Appends the first 45 bytes of a frame (its header and 5 payload bytes) to the last
/// segment, as a crash in the middle of a write leaves it.
fn tear(data: &std::path::Path) -> (std::path::PathBuf, u64) {
    let last = segments(data).last().unwrap().clone();
    let bytes = common::read(&last);
    let len = bytes.len() as u64;
    let mut file = OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&bytes[64..64 + 45]).unwrap();
    (last, len)
}

#[test]
fn truncate_torn_refuses_without_yes_and_a_terminal() {
    let data = copy();
    let (last, _) = tear(data.path());
    let before = common::read(&last);
    let run = cli(data.path(), &["wal", "truncate-torn"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert!(run.stdout.contains("torn tail"), "{}", run.stdout);
    assert_eq!(common::read(&last), before, "nothing written");
}

#[test]
fn truncate_torn_with_yes_cuts_the_tail_and_says_what() {
    let data = copy();
    let (last, len) = tear(data.path());
    let run = cli(data.path(), &["wal", "truncate-torn", "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    let name = last.file_name().unwrap().to_str().unwrap();
    assert!(
        run.stdout.contains("cut 45 bytes from") && run.stdout.contains(name),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("at offset {len}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("ends at transaction {}", written().last_tx_id())),
        "{}",
        run.stdout
    );
    assert_eq!(std::fs::metadata(&last).unwrap().len(), len);
    assert_eq!(cli(data.path(), &["wal", "verify"]).code, 0);

    // Nothing left to cut: says so, changes nothing.
    let again = cli(data.path(), &["wal", "truncate-torn", "--yes"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("no torn tail"), "{}", again.stdout);
}

#[test]
fn truncate_torn_refuses_a_log_damaged_elsewhere() {
    let data = copy();
    let files = segments(data.path());
    let victim = &files[1];
    let mut bytes = common::read(victim);
    bytes[64 + 40] ^= 0xff;
    std::fs::write(victim, &bytes).unwrap();
    let (last, _) = tear(data.path());
    let before = common::read(&last);
    let run = cli(data.path(), &["wal", "truncate-torn", "--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(run.stderr.contains(name), "{}", run.stderr);
    assert_eq!(common::read(&last), before, "nothing written");
}
