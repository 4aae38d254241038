//! Reading one transaction's record back from the WAL on disk.

use std::path::Path;
use std::sync::Arc;

use ledger_wal::{FrameKind, WalReader, segment_file_name};

use super::error::LedgerError;
use crate::record::FrameDecoder;
use crate::transaction::{Outcome, TxId};

/// The outcome of durable transaction `tx_id`, read from its frame.
pub(crate) fn outcome(wal_dir: &Path, tx_id: TxId) -> Result<Outcome, LedgerError> {
    let reader = WalReader::open(wal_dir)?;
    let mut frames = reader.frames_from(tx_id)?;
    while let Some(frame) = frames.next_frame()? {
        if frame.kind != FrameKind::Records || frame.next_seq() <= tx_id {
            continue;
        }
        let corrupt = |source| LedgerError::CorruptRecord {
            segment: wal_dir.join(segment_file_name(frame.segment)),
            offset: frame.offset,
            source: Arc::new(source),
        };
        let mut decoder = FrameDecoder::new(frame.payload, frame.first_seq, frame.record_count)
            .map_err(corrupt)?;
        while let Some(record) = decoder.next_record().map_err(corrupt)? {
            if record.tx_id == tx_id {
                return Ok(record.outcome);
            }
        }
    }
    Err(LedgerError::UnknownTransaction {
        tx_id,
        last_issued: frames.next_seq().saturating_sub(1),
    })
}
