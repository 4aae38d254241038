//! A real process killed with SIGKILL in the middle of a snapshot write.
//!
//! The test binary re-executes itself as the child (environment variable
//! `LEDGER_SNAPSHOT_CRASH_CHILD` names the directory). The child writes a payload whose
//! serialization, after 8 MB of balances have gone to the temporary file, tells the
//! parent "STALLED" and blocks; the parent checks the half-written temporary file is on
//! disk and kills the child. No timing is involved: the kill happens at a point the child
//! has announced. Then: the lock is free, the temporary file is deleted on open, the
//! previous snapshot loads, and a new write works.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use ledger_snapshot::{SnapshotConfig, SnapshotStore, file_name};

const CHILD_ENV: &str = "LEDGER_SNAPSHOT_CRASH_CHILD";
const STALLED: &str = "STALLED";
const BALANCES: usize = 1_000_000;

/// Serializing this tells the parent it is mid-write, then blocks until killed.
struct Gate;

impl rkyv::Archive for Gate {
    type Archived = ();
    type Resolver = ();
    fn resolve(&self, (): (), _: rkyv::Place<()>) {}
}

impl<S: rkyv::rancor::Fallible + ?Sized> rkyv::Serialize<S> for Gate {
    fn serialize(&self, _: &mut S) -> Result<(), S::Error> {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{STALLED}");
        let _ = stdout.flush();
        // Blocks until the parent kills this process. Should the parent vanish instead
        // (stdin closes), die the same way rather than finish the write.
        let _ = std::io::stdin().read(&mut [0_u8; 1]);
        std::process::abort();
    }
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Stalling {
    balances: Vec<i64>,
    gate: Gate,
}

fn child(dir: &Path) {
    let store = SnapshotStore::open(dir, SnapshotConfig::default()).expect("child: open");
    let value = Stalling {
        balances: vec![-2; BALANCES],
        gate: Gate,
    };
    let _ = store.write(2, &value);
    unreachable!("the gate never returns");
}

fn parent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before: Vec<i64> = (0..1000).collect();
    {
        let store = SnapshotStore::open(dir.path(), SnapshotConfig::default()).expect("open");
        store.write(1, &before).expect("write 1");
    }

    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .env(CHILD_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read child");
    assert_eq!(line.trim(), STALLED, "child did not reach the gate");

    // The child is mid-write: its temporary file holds the zeroed header and the balances.
    let temp = dir.path().join(format!("{}.tmp", file_name(2)));
    let temp_len = std::fs::metadata(&temp).expect("temp file exists").len();
    assert!(
        temp_len >= 64 + 8 * BALANCES as u64,
        "temp file is {temp_len} bytes"
    );
    assert!(!dir.path().join(file_name(2)).exists());

    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "child exited normally: {status}");

    let store = SnapshotStore::open(dir.path(), SnapshotConfig::default())
        .expect("reopen: the dead child's lock is released");
    assert_eq!(store.removed_temp_files(), std::slice::from_ref(&temp));
    assert!(!temp.exists());
    let outcome = store.load_latest::<Vec<i64>>().expect("load");
    assert!(outcome.skipped.is_empty(), "{:?}", outcome.skipped);
    let loaded = outcome.loaded.expect("the previous snapshot");
    assert_eq!(loaded.sequence(), 1);
    assert_eq!(loaded.deserialize().expect("deserialize"), before);

    let after: Vec<i64> = vec![3; 10];
    store.write(2, &after).expect("write 2 after the crash");
    let loaded = store
        .load_latest::<Vec<i64>>()
        .expect("load")
        .loaded
        .expect("snapshot 2");
    assert_eq!(loaded.sequence(), 2);
    assert_eq!(loaded.deserialize().expect("deserialize"), after);
}

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
    } else {
        parent();
        println!("crash_process: killed mid-write, recovered: ok");
    }
}
