//! One durable records frame held for reading, with a mark every few records so that any
//! one record decodes without the records before it.

use std::ops::ControlFlow;

use ledger_wal::FramePosition;

use crate::record::{DecodeMark, DecodedRecord, FrameDecoder, RecordError};
use crate::transaction::TxId;

/// Records between two marks: a lookup decodes at most this many records.
pub(crate) const MARK_STRIDE: u64 = 32;

/// A records frame's payload and where it came from.
#[derive(Debug)]
pub(crate) struct IndexedFrame {
    pub first_seq: TxId,
    pub record_count: u32,
    pub position: FramePosition,
    payload: Box<[u8]>,
    /// `marks[i]` stands before record `first_seq + i * MARK_STRIDE`.
    marks: Vec<DecodeMark>,
}

impl IndexedFrame {
    /// A frame whose marks the encoder took (the WAL stage, as it wrote it).
    pub fn with_marks(
        first_seq: TxId,
        record_count: u32,
        position: FramePosition,
        payload: Box<[u8]>,
        marks: Vec<DecodeMark>,
    ) -> IndexedFrame {
        IndexedFrame {
            first_seq,
            record_count,
            position,
            payload,
            marks,
        }
    }

    /// A frame read back from disk: decodes (and so checks) its records up to `until`,
    /// taking marks on the way. A reader walks back from `until` (history) or on from it
    /// (a forward scan decodes past the last mark), so nothing after it is decoded yet.
    pub fn decode(
        first_seq: TxId,
        record_count: u32,
        position: FramePosition,
        payload: &[u8],
        until: TxId,
    ) -> Result<IndexedFrame, RecordError> {
        let mut decoder = FrameDecoder::new(payload, first_seq, record_count)?;
        let mut marks = Vec::with_capacity(marks_for(record_count));
        loop {
            let mark = decoder.mark();
            if mark.tx_id > until || decoder.remaining() == 0 {
                break;
            }
            if (mark.tx_id - first_seq).is_multiple_of(MARK_STRIDE) {
                marks.push(mark);
            }
            if decoder.next_record()?.is_none() {
                break;
            }
        }
        Ok(IndexedFrame {
            first_seq,
            record_count,
            position,
            payload: payload.into(),
            marks,
        })
    }

    /// A decoder positioned at the last mark at or before `tx_id`.
    fn decoder_for(&self, tx_id: TxId) -> Result<FrameDecoder<'_>, RecordError> {
        let index = usize::try_from((tx_id - self.first_seq) / MARK_STRIDE).unwrap_or(usize::MAX);
        let mut decoder = FrameDecoder::new(&self.payload, self.first_seq, self.record_count)?;
        if let Some(&mark) = self.marks.get(index).or(self.marks.last()) {
            decoder.seek(mark)?;
        }
        Ok(decoder)
    }

    /// Whether transaction `tx_id` is in this frame.
    pub fn contains(&self, tx_id: TxId) -> bool {
        tx_id >= self.first_seq && tx_id - self.first_seq < u64::from(self.record_count)
    }

    /// Bytes of memory the frame holds.
    pub fn bytes(&self) -> usize {
        self.payload.len() + self.marks.len() * size_of::<DecodeMark>() + size_of::<Self>()
    }

    /// Decodes the record of `tx_id` (which the frame must contain) and hands it to `f`.
    pub fn record<T>(
        &self,
        tx_id: TxId,
        f: impl FnOnce(DecodedRecord<'_>) -> T,
    ) -> Result<Option<T>, RecordError> {
        if !self.contains(tx_id) {
            return Ok(None);
        }
        let mut decoder = self.decoder_for(tx_id)?;
        while let Some(record) = decoder.next_record()? {
            if record.tx_id == tx_id {
                return Ok(Some(f(record)));
            }
        }
        Ok(None)
    }
}

impl IndexedFrame {
    /// Decodes the records from `tx_id` (which the frame must contain) to the frame's end
    /// or to `last`, handing each to `f` until it breaks. Returns the id after the last
    /// record handed over.
    pub fn scan(
        &self,
        tx_id: TxId,
        last: TxId,
        mut f: impl FnMut(DecodedRecord<'_>) -> ControlFlow<()>,
    ) -> Result<TxId, RecordError> {
        let mut next = tx_id;
        if !self.contains(tx_id) {
            return Ok(next);
        }
        let mut decoder = self.decoder_for(tx_id)?;
        while let Some(record) = decoder.next_record()? {
            if record.tx_id < tx_id {
                continue;
            }
            if record.tx_id > last {
                break;
            }
            next = record.tx_id + 1;
            if f(record).is_break() {
                break;
            }
        }
        Ok(next)
    }
}

/// Marks a frame of `record_count` records holds.
pub(crate) fn marks_for(record_count: u32) -> usize {
    usize::try_from(u64::from(record_count).div_ceil(MARK_STRIDE)).unwrap_or(0)
}
