//! Counters the stages keep (relaxed atomics: a few per batch, never per transaction).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub wal_bytes: AtomicU64,
    pub wal_frames: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub wal_segments_removed: AtomicU64,
    pub snapshots_written: AtomicU64,
    pub snapshot_failures: AtomicU64,
    pub last_snapshot_tx_id: AtomicU64,
    pub last_snapshot_write_us: AtomicU64,
    pub last_snapshot_copy_us: AtomicU64,
    pub records_read_memory: AtomicU64,
    pub records_read_disk: AtomicU64,
}

impl Metrics {
    pub fn record_snapshot(&self, tx_id: u64, took: Duration) {
        self.snapshots_written.fetch_add(1, Ordering::Relaxed);
        self.last_snapshot_tx_id.store(tx_id, Ordering::Relaxed);
        self.last_snapshot_write_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn read(&self) -> LedgerMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LedgerMetrics {
            wal_bytes: get(&self.wal_bytes),
            wal_frames: get(&self.wal_frames),
            wal_syncs: get(&self.wal_syncs),
            wal_segments_removed: get(&self.wal_segments_removed),
            snapshots_written: get(&self.snapshots_written),
            snapshot_failures: get(&self.snapshot_failures),
            last_snapshot_tx_id: get(&self.last_snapshot_tx_id),
            last_snapshot_write_us: get(&self.last_snapshot_write_us),
            last_snapshot_copy_us: get(&self.last_snapshot_copy_us),
            records_read_memory: get(&self.records_read_memory),
            records_read_disk: get(&self.records_read_disk),
            read_index_bytes: 0,
            read_index_points: 0,
            read_cache_bytes: 0,
        }
    }
}

/// Counters since [`Ledger::start`](super::Ledger::start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LedgerMetrics {
    /// Bytes written to WAL segments: frame headers, payloads and padding.
    pub wal_bytes: u64,
    /// WAL frames written.
    pub wal_frames: u64,
    /// Group commits (`fdatasync` calls).
    pub wal_syncs: u64,
    /// WAL segments deleted by retention.
    pub wal_segments_removed: u64,
    /// Snapshots written by the background writer.
    pub snapshots_written: u64,
    /// Snapshot writes that failed (the WAL still holds everything; see the log).
    pub snapshot_failures: u64,
    /// The transaction the newest snapshot written since start is consistent at.
    pub last_snapshot_tx_id: u64,
    /// How long the newest snapshot took to write, in microseconds.
    pub last_snapshot_write_us: u64,
    /// How long the snapshot stage spent copying the state for the newest snapshot, in
    /// microseconds: the only part of a snapshot that holds up the pipeline.
    pub last_snapshot_copy_us: u64,
    /// Records that transaction and history reads found in the recent frames in memory.
    pub records_read_memory: u64,
    /// Records they read from WAL segments on disk.
    pub records_read_disk: u64,
    /// Memory of the sparse index of the WAL on disk (now, not a counter).
    pub read_index_bytes: u64,
    /// Frames that index points at (now).
    pub read_index_points: u64,
    /// Memory the recent frames kept for reads hold (now).
    pub read_cache_bytes: u64,
}
