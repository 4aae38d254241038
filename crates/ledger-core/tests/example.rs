//! The product's library example (`examples/quickstart.rs`, compiled into this test too),
//! run as a real process in an empty directory, where it must print the balance. The test
//! binary re-runs itself as that process.

use std::process::Command;

#[path = "../examples/quickstart.rs"]
mod quickstart;

const CHILD: &str = "LEDGER_QUICKSTART_CHILD";

#[test]
fn quickstart_child() {
    // Only does something when run as the child of the test below.
    if std::env::var_os(CHILD).is_some() {
        quickstart::main();
    }
}

#[test]
fn quickstart_prints_the_deposited_balance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = || {
        let output = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "quickstart_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .current_dir(dir.path())
            .output()
            .expect("run the example");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(run().contains("Account 1 balance: 1000\n"));
    assert!(dir.path().join("data").join("wal").is_dir());
    // A second run recovers the first one's deposit and adds another.
    assert!(run().contains("Account 1 balance: 2000\n"));
}
