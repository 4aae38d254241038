//! Shared test payload types and helpers.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};

use ledger_snapshot::{SnapshotConfig, SnapshotStore};

/// One idempotency-window entry, as the engine will store it.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WindowEntry {
    pub user_ref: u64,
    pub tx_id: u64,
    pub timestamp: u64,
}

/// A payload shaped like the engine's: balances plus small metadata.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub balances: Vec<i64>,
    pub window: Vec<WindowEntry>,
    pub note: String,
}

pub fn small_state(seed: i64) -> State {
    State {
        balances: vec![seed, -seed, 7, i64::MIN, i64::MAX],
        window: vec![
            WindowEntry {
                user_ref: 1,
                tx_id: 2,
                timestamp: 3,
            },
            WindowEntry {
                user_ref: u64::MAX,
                tx_id: 5,
                timestamp: 6,
            },
        ],
        note: format!("state {seed}"),
    }
}

pub fn open(dir: &Path) -> SnapshotStore {
    SnapshotStore::open(dir, SnapshotConfig::default()).expect("open store")
}

pub fn open_keep(dir: &Path, keep: usize) -> SnapshotStore {
    let keep = std::num::NonZeroUsize::new(keep).expect("keep > 0");
    SnapshotStore::open(dir, SnapshotConfig::default().with_keep(keep)).expect("open store")
}

/// The sequence numbers of the snapshot files in `dir`, ascending.
pub fn sequences(dir: &Path) -> Vec<u64> {
    let mut seqs: Vec<u64> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| {
            let name = e.expect("entry").file_name();
            ledger_snapshot::parse_file_name(name.to_str()?)
        })
        .collect();
    seqs.sort_unstable();
    seqs
}

pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".snap.tmp")))
        .collect();
    files.sort();
    files
}

/// Loads the newest snapshot as `State` and deserializes it.
pub fn load_state(store: &SnapshotStore) -> Option<(u64, State)> {
    let outcome = store.load_latest::<State>().expect("load_latest");
    outcome
        .loaded
        .map(|l| (l.sequence(), l.deserialize().expect("deserialize")))
}
