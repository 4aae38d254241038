//! Exit codes, help and completions: what scripts depend on.

mod common;

use std::process::{Command, Stdio};

use common::{cli, written};

fn bare(args: &[&str]) -> common::Run {
    let output = Command::new(env!("CARGO_BIN_EXE_ledger-cli"))
        .args(args)
        .stdin(Stdio::null())
        .env_remove("LEDGER_DATA_DIR")
        .output()
        .expect("run ledger-cli");
    common::Run {
        code: output.status.code().expect("exited"),
        stdout: String::from_utf8(output.stdout).expect("utf-8"),
        stderr: String::from_utf8(output.stderr).expect("utf-8"),
    }
}

#[test]
fn a_missing_data_directory_is_exit_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    for args in [
        &["wal", "ls"][..],
        &["wal", "verify"],
        &["wal", "dump"],
        &["wal", "truncate-torn", "--yes"],
        &["replay"],
        &["snapshot", "ls"],
    ] {
        let run = cli(&missing, args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains("nope"), "{args:?}: {}", run.stderr);
    }
    assert!(!missing.exists(), "nothing created");
    // A directory that is not a ledger's.
    let run = cli(dir.path(), &["wal", "verify"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("not a ledger data directory"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_usage_is_exit_2() {
    let data = written().dir.path();
    assert_eq!(cli(data, &["wal", "frobnicate"]).code, 2);
    assert_eq!(cli(data, &["replay", "--until", "abc"]).code, 2);
    assert_eq!(cli(data, &["replay", "--from-snapshot", "newest"]).code, 2);
    assert_eq!(bare(&[]).code, 2);
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["wal", "--help"],
        &["wal", "ls", "--help"],
        &["wal", "verify", "--help"],
        &["wal", "dump", "--help"],
        &["wal", "truncate-torn", "--help"],
        &["replay", "--help"],
        &["snapshot", "--help"],
        &["snapshot", "ls", "--help"],
        &["snapshot", "verify", "--help"],
        &["snapshot", "dump", "--help"],
        &["completions", "--help"],
    ] {
        let run = bare(args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        assert!(
            run.stdout.contains("Usage: ledger-cli"),
            "{args:?}: {}",
            run.stdout
        );
    }
}

#[test]
fn completions_are_generated_for_the_common_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let run = bare(&["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {run:?}");
        assert!(run.stdout.contains("truncate-torn"), "{shell}");
    }
}

#[test]
fn the_data_dir_defaults_to_the_environment_variable() {
    let data = written().dir.path();
    let output = Command::new(env!("CARGO_BIN_EXE_ledger-cli"))
        .args(["wal", "verify"])
        .env("LEDGER_DATA_DIR", data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
}
