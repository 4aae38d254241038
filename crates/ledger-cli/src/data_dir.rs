//! The data directory the engine and `ledger-server` write: `DIR/wal`, `DIR/snapshots`
//! (the layout is `LedgerConfig`'s, not restated here).

use std::path::{Path, PathBuf};

use ledger_core::ledger::LedgerConfig;

use crate::exit::CliError;

/// A data directory given with `--data-dir`.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    wal: PathBuf,
    snapshots: PathBuf,
}

impl DataDir {
    pub fn new(root: PathBuf) -> DataDir {
        let config = LedgerConfig::in_dir(&root);
        DataDir {
            wal: config.wal_dir(),
            snapshots: config.snapshot_dir(),
            root,
        }
    }

    /// The WAL directory; an error (exit 2) when it or the data directory is missing, so
    /// that a mistyped path is not read as an empty log.
    pub fn wal_dir(&self) -> Result<&Path, CliError> {
        self.existing(&self.wal, "WAL")
    }

    /// The snapshot directory, checked like [`wal_dir`](Self::wal_dir).
    pub fn snapshot_dir(&self) -> Result<&Path, CliError> {
        self.existing(&self.snapshots, "snapshot")
    }

    /// The snapshot directory if there is one (replay works without snapshots).
    pub fn snapshot_dir_if_any(&self) -> Option<&Path> {
        self.snapshots.is_dir().then_some(self.snapshots.as_path())
    }

    fn existing<'a>(&self, dir: &'a Path, what: &str) -> Result<&'a Path, CliError> {
        if !self.root.is_dir() {
            return Err(CliError::usage(format!(
                "data directory {} does not exist (set it with --data-dir)",
                self.root.display()
            )));
        }
        if !dir.is_dir() {
            return Err(CliError::usage(format!(
                "{} has no {what} directory {}: not a ledger data directory?",
                self.root.display(),
                dir.display()
            )));
        }
        Ok(dir)
    }
}
