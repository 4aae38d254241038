//! The load generator, run as a real process on a small, counted workload.

use std::process::Command;

fn load(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_load"))
        .args(args)
        .output()
        .expect("run the load generator");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_counted_run_commits_everything_and_recovers_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (workload, sync) in [("transfer", false), ("composite", true), ("deposit", false)] {
        let data = data.join(workload);
        let mut args = vec![
            "--workload",
            workload,
            "--accounts",
            "1000",
            "--ops",
            "20000",
            "--batch",
            "100",
            "--producers",
            "2",
            "--recovery",
            "--data-dir",
            data.to_str().unwrap(),
        ];
        if sync {
            args.push("--sync");
        }
        let (ok, stdout, stderr) = load(&args);
        assert!(ok, "{stdout}\n{stderr}");
        assert!(stdout.contains("funded 1000 accounts"), "{stdout}");
        assert!(
            stdout.contains("committed: 20000 tx"),
            "{workload}: {stdout}"
        );
        assert!(stdout.contains("(n = 20000)"), "{workload}: {stdout}");
        // 1000 funding deposits, then the run: recovery ends at the last one.
        assert!(stdout.contains("last id 21000"), "{workload}: {stdout}");
        assert!(stdout.contains("bytes/tx on disk"), "{stdout}");
    }
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let (ok, _, stderr) = load(&["--batch", "0", "--ops", "1"]);
    assert!(!ok);
    assert!(stderr.contains("--batch"), "{stderr}");
    let (ok, _, stderr) = load(&["--workload", "nonsense"]);
    assert!(!ok);
    assert!(stderr.contains("nonsense"), "{stderr}");
}

#[test]
fn readers_run_beside_the_load_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, stdout, stderr) = load(&[
        "--accounts",
        "1000",
        "--ops",
        "50000",
        "--batch",
        "100",
        "--readers",
        "2",
        "--read-rate",
        "2000",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("committed: 50000 tx"), "{stdout}");
    assert!(stdout.contains(", 0 errors;"), "{stdout}");
}

#[test]
fn the_query_benchmark_runs_on_a_small_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_queries"))
        .args([
            "--transactions",
            "20000",
            "--accounts",
            "500",
            "--samples",
            "500",
        ])
        .args(["--pages", "50", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .expect("run the query benchmark");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("built 20500 transactions"), "{stdout}");
    assert!(
        stdout.contains("records read from memory 500, from disk 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("get_transaction, disk (any id)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("history page of 20, disk, from a cursor"),
        "{stdout}"
    );
}

#[test]
fn the_grpc_load_generator_drives_a_real_server() {
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_grpc-load"));
    let server = exe.with_file_name("ledger-server");
    assert!(
        server.exists(),
        "{} is missing: run the workspace's tests (cargo test --workspace) or build ledger-server",
        server.display()
    );
    let dir = tempfile::tempdir().unwrap();
    for mode in ["unary", "batch", "stream"] {
        let out = Command::new(&exe)
            .current_dir(dir.path())
            .args(["--mode", mode, "--accounts", "200", "--batch", "50"])
            .args(["--concurrency", "2", "--duration", "0.5"])
            .output()
            .expect("run grpc-load");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("funded 200 accounts"), "{stdout}");
        assert!(stdout.contains(" 0 errors)"), "{mode}: {stdout}");
        assert!(!stdout.contains("committed: 0 tx"), "{mode}: {stdout}");
    }
}
