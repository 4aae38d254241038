//! Decoding for `replay`, split over two threads. Decoding records is most of replay's
//! work and applying them is bound by cache misses on the balance table, so the reading
//! thread reads and verifies frames (`ledger_wal::Frames`) and copies their payloads into
//! chunks; it decodes a chunk itself (`FrameDecoder`) while the applying thread has work
//! queued, and otherwise hands it over raw for the applying thread to decode. The
//! decoding work so settles wherever there is a core free for it; the applying thread
//! applies every chunk in order.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

use ledger_core::record::{AccountLink, FrameDecoder};
use ledger_core::transaction::{Effect, Entry, Outcome, TxId};
use ledger_wal::{FrameKind, Frames, SegmentEnd, segment_file_name};

use crate::exit::CliError;
use crate::progress::WalProgress;
use crate::wal::record_error;

/// Records per chunk: large enough that a hand-over costs nothing per record, small
/// enough that a chunk's decoded entries (~64 bytes per transfer) stay in cache.
pub const CHUNK_RECORDS: u64 = 1 << 14;

/// Verified frame payloads copied out of the reader, back to back.
#[derive(Debug, Default)]
pub struct RawChunk {
    payloads: Vec<u8>,
    /// `(first_seq, record_count, segment, frame offset, payload end in payloads)`.
    frames: Vec<(TxId, u32, u64, u64, usize)>,
    records: u64,
}

/// Consecutive decoded records: record `first_tx + i` was stamped `timestamps[i]`, its
/// entries are `entries[ends[i - 1]..ends[i]]`, the first one's start at `base` (a
/// rejected record has none); `prev_tx_ids` holds their back-links at the same indices.
/// The few records that are more than a committed transaction without a `user_ref` or
/// effects are listed in `extras`, in record order: most records cost 8 bytes beside
/// their entries.
#[derive(Debug, Default)]
pub struct Batch {
    pub first_tx: TxId,
    pub timestamps: Vec<u64>,
    pub entries: Vec<Entry>,
    pub prev_tx_ids: Vec<TxId>,
    pub effects: Vec<Effect>,
    pub effect_links: Vec<AccountLink>,
    pub extras: Vec<Extra>,
    pub base: usize,
    pub ends: Vec<usize>,
    /// For error messages: `(index of the frame's first record here, segment, offset)`.
    frames: Vec<(usize, u64, u64)>,
}

/// A record's head beyond its time, for a record that has more than entries: its
/// effects are `effects[..effects_end]` and its effect links `effect_links[..links_end]`
/// after the previous extra's.
#[derive(Debug, Clone, Copy)]
pub struct Extra {
    pub index: usize,
    pub user_ref: u64,
    pub outcome: Outcome,
    pub effects_end: usize,
    pub links_end: usize,
}

/// What the reading thread sends, in log order.
#[derive(Debug)]
pub enum Chunk {
    /// Decoded by the reading thread.
    Decoded(Batch),
    /// For the applying thread to decode ([`Decoder::decode`]).
    Raw(RawChunk),
}

impl Batch {
    /// The segment file and frame offset record `index` was read from.
    pub fn origin(&self, wal_dir: &Path, index: usize) -> (PathBuf, u64) {
        let at = self.frames.partition_point(|&(start, _, _)| start <= index);
        let (_, segment, offset) = self
            .frames
            .get(at.saturating_sub(1))
            .copied()
            .unwrap_or_default();
        (wal_dir.join(segment_file_name(segment)), offset)
    }
}

/// Decodes chunks: records `after + 1 ..= until`.
#[derive(Debug, Clone, Copy)]
pub struct Decoder<'a> {
    pub wal_dir: &'a Path,
    pub after: TxId,
    pub until: TxId,
    /// Records per chunk (at least; whole frames).
    pub chunk_records: u64,
}

impl Decoder<'_> {
    /// Decodes `raw` into `batch` (cleared first).
    pub fn decode(&self, raw: &RawChunk, batch: &mut Batch) -> Result<(), CliError> {
        batch.timestamps.clear();
        batch.entries.clear();
        batch.prev_tx_ids.clear();
        batch.effects.clear();
        batch.effect_links.clear();
        batch.extras.clear();
        batch.ends.clear();
        batch.frames.clear();
        batch.first_tx = 0;
        batch.base = 0;
        let mut start = 0;
        for &(first_seq, count, segment, offset, end) in &raw.frames {
            let payload = raw.payloads.get(start..end).unwrap_or_default();
            start = end;
            let corrupt =
                |e| record_error(&self.wal_dir.join(segment_file_name(segment)), offset, e);
            let mut decoder = FrameDecoder::new(payload, first_seq, count).map_err(corrupt)?;
            batch.frames.push((batch.ends.len(), segment, offset));
            // Each record's entries and links are appended straight to the batch (no copy).
            let mut begin = batch.entries.len();
            while let Some(record) = decoder
                .next_record_links_into(&mut batch.entries, &mut batch.prev_tx_ids)
                .map_err(corrupt)?
            {
                let end = batch.entries.len();
                // The first frame may straddle the starting snapshot, the last --until:
                // records outside the range leave their entries before `base` or after
                // the last end, where nothing reads them.
                if record.tx_id > self.after && record.tx_id <= self.until {
                    if batch.ends.is_empty() {
                        batch.first_tx = record.tx_id;
                        batch.base = begin;
                    }
                    batch.ends.push(end);
                    batch.timestamps.push(record.timestamp_ns);
                    let (effects, links) = (decoder.effects(), decoder.effect_links());
                    let plain = record.user_ref == 0 && record.outcome == Outcome::Committed;
                    if !plain || !effects.is_empty() || !links.is_empty() {
                        batch.effects.extend_from_slice(effects);
                        batch.effect_links.extend_from_slice(links);
                        batch.extras.push(Extra {
                            index: batch.ends.len() - 1,
                            user_ref: record.user_ref,
                            outcome: record.outcome,
                            effects_end: batch.effects.len(),
                            links_end: batch.effect_links.len(),
                        });
                    }
                }
                begin = end;
            }
        }
        Ok(())
    }
}

/// How the log ended, for the summary: a torn tail is noted, not replayed.
#[derive(Debug, Default)]
pub struct Ending {
    pub torn: Option<(PathBuf, u64)>,
}

/// Buffers handed back by the applying thread for reuse.
#[derive(Debug)]
pub enum Spare {
    Raw(RawChunk),
    Batch(Batch),
}

/// The reading thread: sends chunks in log order to `out` until the log (or `until`)
/// ends, the first error (sent as the last message), or the receiver hangs up. `queued`
/// counts chunks sent and not yet taken by the applying thread.
pub fn read(
    decoder: Decoder<'_>,
    mut frames: Frames,
    progress: &WalProgress,
    out: &SyncSender<Result<Chunk, CliError>>,
    spares: &Receiver<Spare>,
    queued: &AtomicUsize,
) -> Ending {
    let result = read_frames(decoder, &mut frames, progress, out, spares, queued);
    // Before the applier prints anything: the bar is cleared on every way out.
    progress.finish();
    if let Err(error) = result {
        let _ = out.send(Err(error));
        return Ending::default();
    }
    match (frames.end(), frames.current_segment()) {
        (Some(SegmentEnd::Torn { offset, .. }), Some(segment)) => Ending {
            torn: Some((segment.to_path_buf(), offset)),
        },
        _ => Ending::default(),
    }
}

fn read_frames(
    decoder: Decoder<'_>,
    frames: &mut Frames,
    progress: &WalProgress,
    out: &SyncSender<Result<Chunk, CliError>>,
    spares: &Receiver<Spare>,
    queued: &AtomicUsize,
) -> Result<(), CliError> {
    let mut raw = RawChunk::default();
    let mut spare_raw: Vec<RawChunk> = Vec::new();
    let mut spare_batch: Vec<Batch> = Vec::new();
    let mut more = true;
    while more {
        let frame = frames.next_frame()?;
        let flush = match frame {
            Some(frame) => {
                progress.at(frame.segment, frame.offset);
                if frame.kind != FrameKind::Records || frame.next_seq() <= decoder.after + 1 {
                    continue;
                }
                if frame.first_seq > decoder.until {
                    more = false;
                } else {
                    raw.payloads.extend_from_slice(frame.payload);
                    raw.frames.push((
                        frame.first_seq,
                        frame.record_count,
                        frame.segment,
                        frame.offset,
                        raw.payloads.len(),
                    ));
                    raw.records += u64::from(frame.record_count);
                    more = frame.last_seq().is_none_or(|last| last < decoder.until);
                }
                raw.records >= decoder.chunk_records || !more
            }
            None => {
                more = false;
                true
            }
        };
        if !flush || raw.frames.is_empty() {
            continue;
        }
        while let Ok(spare) = spares.try_recv() {
            match spare {
                Spare::Raw(r) => spare_raw.push(r),
                Spare::Batch(b) => spare_batch.push(b),
            }
        }
        let mut next = spare_raw.pop().unwrap_or_default();
        next.payloads.clear();
        next.frames.clear();
        next.records = 0;
        let full = std::mem::replace(&mut raw, next);
        // The applier still has work: decode here. It is idle: give it the decoding.
        let chunk = if queued.load(Ordering::Acquire) > 0 {
            let mut batch = spare_batch.pop().unwrap_or_default();
            decoder.decode(&full, &mut batch)?;
            spare_raw.push(full);
            Chunk::Decoded(batch)
        } else {
            Chunk::Raw(full)
        };
        queued.fetch_add(1, Ordering::AcqRel);
        if out.send(Ok(chunk)).is_err() {
            return Ok(()); // the applier stopped on an error of its own
        }
    }
    Ok(())
}
