//! The engine of a cluster node. The leader runs the same pipeline as a single node, but
//! its WAL stage *proposes* each batch's frames to the replicated log (which writes them
//! to this node's WAL and to the followers') instead of writing them itself, and a gate
//! stage holds each batch until the log has it durable on a majority. A follower feeds
//! the leader's results into the same pipeline as *replayed* slots: its transactor checks
//! and applies them, never executes them, so the two cannot disagree silently.
//!
//! ```text
//! leader:   submit -> transactor -> propose -> [replicated log] ... gate -> snapshotter
//! follower: [replicated log] -> replayed slots -> transactor -> gate -> snapshotter
//! ```

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ledger_pipeline::{Batch, Stage, StageError};

use super::Engine;
use super::error::LedgerError;
use super::recovery::Decoded;
use super::slot::Slot;
use super::stages::frame_is_full;
use crate::record::FrameEncoder;
use crate::transaction::TxId;

/// One WAL frame's worth of records, encoded by the leader: what the replicated log
/// stores and ships (results, never intents).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The id of the first record.
    pub first_tx_id: TxId,
    /// How many records (`>= 1`).
    pub count: u32,
    /// The records, as `docs/record-format.md` specifies.
    pub payload: bytes::Bytes,
}

impl EncodedFrame {
    /// The id of the last record.
    pub fn last_tx_id(&self) -> TxId {
        self.first_tx_id + u64::from(self.count) - 1
    }
}

/// Where the leader's WAL stage sends each batch's frames, in id order.
pub(crate) trait Propose: Send + 'static {
    /// Hands `frames` (contiguous ids) to the replicated log. Returns once they are
    /// queued, not once they are durable: the gate waits for that.
    fn propose(&mut self, frames: Vec<EncodedFrame>) -> Result<(), StageError>;
}

/// The highest transaction id the replicated log has applied (durable on a majority, in
/// order), and whether the node is still serving under it.
#[derive(Debug, Default)]
pub(crate) struct Watermark {
    state: Mutex<WatermarkState>,
    moved: Condvar,
}

#[derive(Debug, Default)]
struct WatermarkState {
    applied: TxId,
    closed: bool,
}

/// The watermark was closed: the node stopped, or lost its leadership with batches in
/// flight that may never be replicated.
#[derive(Debug, thiserror::Error)]
#[error("the replicated log stopped before transaction {tx_id} was replicated")]
pub(crate) struct NotReplicated {
    tx_id: TxId,
}

impl Watermark {
    pub fn new(applied: TxId) -> Arc<Watermark> {
        Arc::new(Watermark {
            state: Mutex::new(WatermarkState {
                applied,
                closed: false,
            }),
            moved: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WatermarkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self) -> TxId {
        self.lock().applied
    }

    /// Raises the watermark to `tx_id` (never lowers it). Closed, it stays where it was:
    /// a deposed leader's batches still waiting are never let through by the entries
    /// of the leader after it.
    pub fn advance(&self, tx_id: TxId) {
        let mut state = self.lock();
        if !state.closed && tx_id > state.applied {
            state.applied = tx_id;
            self.moved.notify_all();
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Wakes every waiter with [`NotReplicated`] for ids above the watermark.
    pub fn close(&self) {
        self.lock().closed = true;
        self.moved.notify_all();
    }

    /// Blocks until `tx_id` is at or below the watermark.
    pub fn wait(&self, tx_id: TxId) -> Result<(), NotReplicated> {
        let mut state = self.lock();
        loop {
            if state.applied >= tx_id {
                return Ok(());
            }
            if state.closed {
                return Err(NotReplicated { tx_id });
            }
            // The timeout only bounds a lost wake-up; `advance` notifies every change.
            state = self
                .moved
                .wait_timeout(state, Duration::from_millis(100))
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

/// The leader's WAL stage: encodes each batch's own (not replayed) transactions as frames
/// and proposes them. Replayed slots are already in the log.
pub(crate) struct ProposeStage {
    pub proposer: Box<dyn Propose>,
    pub buf: Vec<u8>,
    pub frame_bytes: usize,
}

impl Stage<Slot> for ProposeStage {
    fn on_batch(&mut self, batch: &mut Batch<'_, Slot>) -> Result<(), StageError> {
        let mut frames = Vec::new();
        let mut encoder: Option<(FrameEncoder, TxId)> = None;
        let first = batch.first_sequence();
        let last = batch.last_sequence();
        let (head, tail) = batch.as_mut_slices();
        for (seq, slot) in (first..).zip(head.iter().chain(tail.iter())) {
            if slot.replayed() {
                assert!(
                    encoder.is_none(),
                    "replayed slot {seq} after a proposed one"
                );
                continue;
            }
            let (enc, frame_first) = encoder.get_or_insert_with(|| {
                self.buf.clear();
                (
                    FrameEncoder::new(&mut self.buf, seq, slot.timestamp_ns),
                    seq,
                )
            });
            enc.push(&mut self.buf, slot.record());
            if frame_is_full(self.buf.len(), self.frame_bytes) || seq == last {
                let count = u32::try_from(seq - *frame_first + 1).expect("frame of < 2^32 records");
                frames.push(EncodedFrame {
                    first_tx_id: *frame_first,
                    count,
                    payload: bytes::Bytes::copy_from_slice(&self.buf),
                });
                encoder = None;
            }
        }
        if frames.is_empty() {
            return Ok(());
        }
        self.proposer.propose(frames)
    }
}

/// Holds each batch until the replicated log has applied it: past this stage a
/// transaction is durable on a majority (the `Committed` and `Replicated` wait levels).
pub(crate) struct GateStage {
    pub replicated: Arc<Watermark>,
}

impl Stage<Slot> for GateStage {
    fn on_batch(&mut self, batch: &mut Batch<'_, Slot>) -> Result<(), StageError> {
        self.replicated.wait(batch.last_sequence())?;
        Ok(())
    }
}

/// What a cluster node's engine shares with the replicated log.
#[derive(Debug)]
pub(crate) struct ReplicaHooks {
    /// The read path's index, fed as entries are applied (positions come from the
    /// replicated log's store). The cache of recent frames stays empty: reads of a
    /// cluster node's transactions go through the index to the WAL.
    pub index: Mutex<super::reads::index::IndexWriter>,
    /// WAL below this transaction is needed by none of the engine's snapshots (set by
    /// its checkpointer): with `history_keep_tx` and `keep_all`, what the replicated
    /// log's store may remove.
    pub retention_floor: Arc<std::sync::atomic::AtomicU64>,
    pub history_keep_tx: u64,
    pub keep_all: bool,
}

impl ReplicaHooks {
    /// The first transaction the engine still needs in the WAL, for a log whose last
    /// durable one is `last_tx`; `None` to keep everything (`wal_keep_all`).
    pub fn wal_floor(&self, last_tx: TxId) -> Option<TxId> {
        if self.keep_all {
            return None;
        }
        Some(super::stages::wal_floor(
            self.retention_floor.load(Ordering::Acquire),
            last_tx,
            self.history_keep_tx,
        ))
    }

    /// Segments below `segment` are gone: reads no longer look for frames there.
    pub fn removed_below(&self, segment: u64) {
        self.index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove_below(segment);
    }
}

impl Engine {
    /// Writes a snapshot of the visible state now (everything in it is replicated) and
    /// returns its sequence and file; `None` before the first transaction. The image of
    /// a Raft snapshot.
    pub(crate) fn write_snapshot_now(
        &self,
    ) -> Result<Option<(TxId, std::path::PathBuf)>, LedgerError> {
        Ok(self.checkpointer.write_copy_now(&self.visible)?)
    }

    /// Lets clients submit (`true`: this node leads and has applied its whole log) or
    /// refuses them with [`LedgerError::NotLeader`].
    pub(crate) fn set_writable(&self, writable: bool) {
        self.writable.store(writable, Ordering::Release);
    }

    /// Feeds records the leader executed into the pipeline as replayed slots, after
    /// raising the watermark over them (they are applied by the replicated log, so the gate
    /// lets them through). Records at or below the last id issued are already in the
    /// pipeline (a snapshot covered part of a log entry) and are skipped.
    pub(crate) fn publish_replayed(
        &self,
        replicated: &Watermark,
        decoded: &Decoded,
    ) -> Result<(), LedgerError> {
        let claimed = self.progress.claimed();
        let fresh = decoded.records.partition_point(|r| r.tx_id <= claimed);
        let records = &decoded.records[fresh..];
        let Some(last) = records.last() else {
            return Ok(());
        };
        if records[0].tx_id != claimed + 1 {
            return Err(LedgerError::Config {
                reason: format!(
                    "the replicated log continues at transaction {} but this node issued up to {claimed}",
                    records[0].tx_id
                ),
            });
        }
        replicated.advance(last.tx_id);
        for chunk in records.chunks(self.producer.capacity()) {
            let mut next = chunk.iter();
            self.producer
                .publish_batch(chunk.len(), |seq, slot| {
                    let record = next.next().expect("one record per claimed slot");
                    assert_eq!(seq, record.tx_id, "replayed slot out of order");
                    fill_replayed(slot, decoded, record);
                })
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }
}

fn fill_replayed(slot: &mut Slot, decoded: &Decoded, record: &super::recovery::Stored) {
    slot.user_ref = record.user_ref;
    slot.timestamp_ns = record.timestamp_ns;
    slot.set_outcome(record.outcome);
    slot.entries.clear();
    slot.entries
        .extend_from_slice(&decoded.entries[record.entries.clone()]);
    slot.prev.clear();
    slot.prev
        .extend_from_slice(&decoded.prev_tx_ids[record.entries.clone()]);
    slot.set_replayed(
        &decoded.effects[record.effects.clone()],
        &decoded.effect_links[record.effect_links.clone()],
    );
}
