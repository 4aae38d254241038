//! Reading durable records by transaction id: from the recent frames in memory, else
//! from the WAL on disk through the sparse index. One decode path for both.

use std::io;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ledger_wal::{FrameCursor, FrameKind, WalError, segment_file_name};

use super::frame::IndexedFrame;
use super::index::FrameIndex;
use super::recent::RecentFrames;
use crate::ledger::error::LedgerError;
use crate::ledger::metrics::Metrics;
use crate::record::{DecodedRecord, RecordError};
use crate::transaction::TxId;

/// What the engine shares with readers.
#[derive(Clone, Debug)]
pub(crate) struct ReadPath {
    pub storage: Arc<dyn ledger_storage::Storage>,
    pub wal_dir: PathBuf,
    pub recent: Arc<RecentFrames>,
    pub index: Arc<FrameIndex>,
}

/// Where a record came from (tests and benchmarks tell the two apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    Memory,
    Disk,
}

/// One reader's session: keeps the last frame it read, so a history page whose entries
/// share a frame decodes it once.
#[derive(Debug)]
pub(crate) struct RecordSource<'a> {
    path: &'a ReadPath,
    metrics: &'a Metrics,
    /// Read every record from disk (tests compare both tiers).
    pub disk_only: bool,
    current: Option<(Arc<dyn FrameHolder>, Tier)>,
    buf: Vec<u8>,
}

/// An `IndexedFrame` behind an `Arc`, whether the ring's or the reader's own.
trait FrameHolder: std::fmt::Debug + Send + Sync {
    fn frame(&self) -> &IndexedFrame;
}

impl FrameHolder for super::recent::Numbered {
    fn frame(&self) -> &IndexedFrame {
        &self.frame
    }
}

impl FrameHolder for IndexedFrame {
    fn frame(&self) -> &IndexedFrame {
        self
    }
}

impl<'a> RecordSource<'a> {
    pub fn new(path: &'a ReadPath, metrics: &'a Metrics) -> RecordSource<'a> {
        RecordSource {
            path,
            metrics,
            disk_only: false,
            current: None,
            buf: Vec::new(),
        }
    }

    /// Decodes durable transaction `tx_id` (the caller checked it is committed) and
    /// hands it to `f`.
    pub fn with_record<T>(
        &mut self,
        tx_id: TxId,
        f: impl FnOnce(DecodedRecord<'_>, Tier) -> T,
    ) -> Result<T, LedgerError> {
        let (path, metrics) = (self.path, self.metrics);
        let (frame, tier) = self.frame_for(tx_id)?;
        let counter = match tier {
            Tier::Memory => &metrics.records_read_memory,
            Tier::Disk => &metrics.records_read_disk,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match frame.record(tx_id, |record| f(record, tier)) {
            Ok(Some(out)) => Ok(out),
            Ok(None) => Err(corrupt(
                path,
                frame,
                RecordError::Truncated { tx_id, offset: 0 },
            )),
            Err(e) => Err(corrupt(path, frame, e)),
        }
    }

    /// Decodes the records of the frame holding `tx_id`, from `tx_id` to the frame's end
    /// or `last`, handing each to `f` until it breaks; returns the id after the last one.
    pub fn scan_frame(
        &mut self,
        tx_id: TxId,
        last: TxId,
        f: impl FnMut(DecodedRecord<'_>) -> ControlFlow<()>,
    ) -> Result<TxId, LedgerError> {
        let path = self.path;
        let (frame, _) = self.frame_for(tx_id)?;
        match frame.scan(tx_id, last, f) {
            Ok(next) if next > tx_id => Ok(next),
            Ok(_) => Err(corrupt(
                path,
                frame,
                RecordError::Truncated { tx_id, offset: 0 },
            )),
            Err(e) => Err(corrupt(path, frame, e)),
        }
    }

    /// The frame holding `tx_id`: the one this session holds, else loaded.
    fn frame_for(&mut self, tx_id: TxId) -> Result<(&IndexedFrame, Tier), LedgerError> {
        let hit = self
            .current
            .as_ref()
            .is_some_and(|(held, _)| held.frame().contains(tx_id));
        if !hit {
            self.current = Some(self.load(tx_id)?);
        }
        match &self.current {
            Some((held, tier)) => Ok((held.frame(), *tier)),
            None => Err(self.not_retained(tx_id)),
        }
    }

    fn load(&mut self, tx_id: TxId) -> Result<(Arc<dyn FrameHolder>, Tier), LedgerError> {
        if !self.disk_only
            && let Some(numbered) = self.path.recent.find(tx_id)
        {
            return Ok((numbered, Tier::Memory));
        }
        let Some(point) = self.path.index.find(tx_id) else {
            return Err(self.not_retained(tx_id));
        };
        let buf = std::mem::take(&mut self.buf);
        let dir = &self.path.wal_dir;
        let mut cursor = match FrameCursor::open_on(
            self.path.storage.as_ref(),
            dir,
            point.position.segment,
            point.position.offset,
            point.first_seq,
            buf,
        ) {
            Ok(cursor) => cursor,
            // Deleted by retention after the index was read.
            Err(WalError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(self.not_retained(tx_id));
            }
            Err(e) => return Err(LedgerError::Wal(Arc::new(e))),
        };
        let found = loop {
            let frame = match cursor.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break None,
                Err(e) => return Err(LedgerError::Wal(Arc::new(e))),
            };
            if frame.kind != FrameKind::Records || frame.next_seq() <= tx_id {
                continue;
            }
            if frame.first_seq > tx_id {
                break None;
            }
            let position = ledger_wal::FramePosition {
                segment: frame.segment,
                offset: frame.offset,
            };
            let decoded = IndexedFrame::decode(
                frame.first_seq,
                frame.record_count,
                position,
                frame.payload,
                tx_id,
            )
            .map_err(|e| LedgerError::CorruptRecord {
                segment: dir.join(segment_file_name(frame.segment)),
                offset: frame.offset,
                source: Arc::new(e),
            })?;
            break Some(decoded);
        };
        self.buf = cursor.into_buf();
        match found {
            Some(frame) => Ok((Arc::new(frame), Tier::Disk)),
            // The index pointed at a segment that does not hold the id: the log changed
            // under us (a restart's truncation) or is damaged.
            None => Err(self.not_retained(tx_id)),
        }
    }

    fn not_retained(&self, tx_id: TxId) -> LedgerError {
        LedgerError::NotRetained {
            tx_id,
            // Nothing indexed yet (a node restarted from an installed Raft snapshot):
            // nothing up to this id is retained here.
            first_retained: self
                .path
                .index
                .first_seq()
                .unwrap_or(tx_id.saturating_add(1)),
        }
    }
}

fn corrupt(path: &ReadPath, frame: &IndexedFrame, e: RecordError) -> LedgerError {
    LedgerError::CorruptRecord {
        segment: path.wal_dir.join(segment_file_name(frame.position.segment)),
        offset: frame.position.offset,
        source: Arc::new(e),
    }
}
