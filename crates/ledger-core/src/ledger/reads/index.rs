//! The sparse index of the WAL on disk: for every segment, the position of a frame at
//! least every [`INDEX_STRIDE_BYTES`], with the id its records start at. A lookup finds
//! the last indexed frame at or before a transaction and reads forward from there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use ledger_wal::FramePosition;

use crate::transaction::TxId;

/// WAL bytes between two index points (at most: a point is taken at the first frame
/// that starts this far past the previous one): 16 bytes of index per 32 KiB of log,
/// about one point per frame at the default frame size.
pub(crate) const INDEX_STRIDE_BYTES: u64 = 32 << 10;

/// The least distance between two points: a little under the stride, so that frames cut
/// just below the default 32 KiB are each indexed.
const INDEX_GAP_MIN: u64 = INDEX_STRIDE_BYTES - INDEX_STRIDE_BYTES / 8;

/// The points of one segment, appended by the WAL stage and read concurrently.
#[derive(Debug)]
pub(crate) struct SegmentPoints {
    pub number: u64,
    pub first_seq: TxId,
    len: AtomicUsize,
    seqs: Box<[AtomicU64]>,
    offsets: Box<[AtomicU64]>,
}

impl SegmentPoints {
    fn new(number: u64, first_seq: TxId, capacity: usize) -> SegmentPoints {
        SegmentPoints {
            number,
            first_seq,
            len: AtomicUsize::new(0),
            seqs: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            offsets: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Appends a point; `false` when full (the index just gets coarser).
    fn push(&self, first_seq: TxId, offset: u64) -> bool {
        let len = self.len.load(Ordering::Relaxed);
        let (Some(seq), Some(off)) = (self.seqs.get(len), self.offsets.get(len)) else {
            return false;
        };
        seq.store(first_seq, Ordering::Relaxed);
        off.store(offset, Ordering::Relaxed);
        self.len.store(len + 1, Ordering::Release);
        true
    }

    /// The last point whose frame starts at or before `tx_id`.
    fn find(&self, tx_id: TxId) -> Option<(TxId, u64)> {
        let len = self.len.load(Ordering::Acquire);
        let seqs = self.seqs.get(..len)?;
        let i = seqs
            .partition_point(|s| s.load(Ordering::Relaxed) <= tx_id)
            .checked_sub(1)?;
        Some((
            seqs.get(i)?.load(Ordering::Relaxed),
            self.offsets.get(i)?.load(Ordering::Relaxed),
        ))
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

/// Where to start reading for a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexPoint {
    pub position: FramePosition,
    pub first_seq: TxId,
}

/// The index shared by the WAL stage (the writer) and readers.
#[derive(Debug)]
pub(crate) struct FrameIndex {
    segments: ArcSwap<Vec<Arc<SegmentPoints>>>,
    points_per_segment: usize,
}

impl FrameIndex {
    pub fn new(segment_bytes: u64) -> Arc<FrameIndex> {
        let points = usize::try_from(segment_bytes / INDEX_GAP_MIN)
            .unwrap_or(usize::MAX / 2)
            .saturating_add(2);
        Arc::new(FrameIndex {
            segments: ArcSwap::from_pointee(Vec::new()),
            points_per_segment: points,
        })
    }

    /// The first transaction the index reaches (the oldest segment's first id).
    pub fn first_seq(&self) -> Option<TxId> {
        self.segments.load().first().map(|s| s.first_seq)
    }

    /// The last indexed frame that starts at or before `tx_id`.
    pub fn find(&self, tx_id: TxId) -> Option<IndexPoint> {
        let segments = self.segments.load();
        let i = segments
            .partition_point(|s| s.first_seq <= tx_id)
            .checked_sub(1)?;
        let segment = segments.get(i)?;
        let (first_seq, offset) = segment.find(tx_id)?;
        Some(IndexPoint {
            position: FramePosition {
                segment: segment.number,
                offset,
            },
            first_seq,
        })
    }

    /// Memory the index holds, in bytes.
    pub fn bytes(&self) -> usize {
        let segments = self.segments.load();
        segments.len() * (size_of::<SegmentPoints>() + 2 * 8 * self.points_per_segment)
    }

    /// Points in use, over all segments.
    pub fn points(&self) -> usize {
        self.segments.load().iter().map(|s| s.len()).sum()
    }
}

/// The WAL stage's (or the rebuild's) handle: notes each frame written.
#[derive(Debug)]
pub(crate) struct IndexWriter {
    shared: Arc<FrameIndex>,
    last: Option<FramePosition>,
}

impl IndexWriter {
    pub fn new(shared: Arc<FrameIndex>) -> IndexWriter {
        IndexWriter { shared, last: None }
    }

    /// Notes the records frame at `position` starting at `first_seq`.
    pub fn note(&mut self, position: FramePosition, first_seq: TxId) {
        let shared = &self.shared;
        match self.last {
            Some(last) if last.segment == position.segment => {
                if position.offset >= last.offset + INDEX_GAP_MIN {
                    let segments = shared.segments.load();
                    if let Some(points) = segments.last()
                        && points.number == position.segment
                        && points.push(first_seq, position.offset)
                    {
                        self.last = Some(position);
                    }
                }
            }
            _ => {
                let points =
                    SegmentPoints::new(position.segment, first_seq, shared.points_per_segment);
                points.push(first_seq, position.offset);
                let mut segments = Vec::clone(&shared.segments.load());
                segments.push(Arc::new(points));
                shared.segments.store(Arc::new(segments));
                self.last = Some(position);
            }
        }
    }

    /// Forgets the segments numbered below `segment` (deleted by retention).
    pub fn remove_below(&mut self, segment: u64) {
        let shared = &self.shared;
        let segments = shared.segments.load();
        if segments.first().is_some_and(|s| s.number < segment) {
            let kept: Vec<_> = segments
                .iter()
                .filter(|s| s.number >= segment)
                .cloned()
                .collect();
            shared.segments.store(Arc::new(kept));
        }
    }
}
