//! The three stage handlers the pipeline runs: transactor -> WAL -> snapshotter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use ledger_pipeline::{Batch, Stage, StageError};
use ledger_wal::{FRAME_HEADER_BYTES, Wal};

use super::checkpoint::Checkpointer;
use super::links::AccountLinks;
use super::metrics::Metrics;
use super::outcomes::OutcomeRing;
use super::reads::frame::{IndexedFrame, MARK_STRIDE};
use super::reads::index::IndexWriter;
use super::reads::recent::RecentWriter;
use super::slot::Slot;
use super::visible::Visible;
use crate::record::{AccountLink, DecodeMark, FrameEncoder};
use crate::transaction::Effect;
use crate::transactor::{Transactor, check_links};

/// How many operations ahead the transactor asks the CPU to load balances (see
/// [`Transactor::prefetch`]; 8 was the best of 4/8/16 in the state-machine bench).
const PREFETCH_AHEAD: usize = 8;

/// A frame is cut when the next record might not fit in `wal_frame_bytes` (header
/// included): frames then end just below the size, so one at or above the WAL's padding
/// threshold pads a few bytes, not most of a block. A plain transfer takes at most ~30.
const FRAME_CUT_SLACK: usize = 64;

/// Whether a frame whose payload is `payload_bytes` long must end: the next record
/// might not fit in `frame_bytes` (the WAL stage's and the proposer's one rule).
pub(crate) fn frame_is_full(payload_bytes: usize, frame_bytes: usize) -> bool {
    payload_bytes + FRAME_HEADER_BYTES + FRAME_CUT_SLACK >= frame_bytes
}

/// The first transaction a ledger still needs in its WAL: none below `snapshot_floor`
/// (what its snapshots need, from the checkpointer) and the last `history_keep_tx` up to
/// `last_tx` (history reads). The single node's WAL stage and a cluster node's log store
/// remove segments below it.
pub(crate) fn wal_floor(snapshot_floor: u64, last_tx: u64, history_keep_tx: u64) -> u64 {
    snapshot_floor.min((last_tx + 1).saturating_sub(history_keep_tx))
}

/// How many slots ahead the snapshot stage prefetches what it touches (balances, links):
/// it does less work per slot than the transactor, so it runs further ahead.
const APPLY_PREFETCH_AHEAD: usize = 16;

/// Executes each slot's operation: the only writer of the live balances. It also writes
/// each entry's history back-link, while the account's cache lines are warm from the
/// prefetch (the WAL stage only encodes).
pub(crate) struct TransactorStage {
    pub transactor: Transactor,
    /// The heads of the history chains, as of the computed index.
    pub links: AccountLinks,
    pub outcomes: Arc<OutcomeRing>,
    /// Where `execute` writes effects, moved into the slot when there are any.
    pub effects: Vec<Effect>,
    /// Where their accounts' back-links are written, moved into the slot with them (the
    /// slot's own buffers are likely out of cache: a swap does not touch them).
    pub effect_links: Vec<AccountLink>,
}

impl Stage<Slot> for TransactorStage {
    fn on_batch(&mut self, batch: &mut Batch<'_, Slot>) -> Result<(), StageError> {
        let mut seq = batch.first_sequence();
        let plan = self.transactor.prefetch_plan();
        let (head, tail) = batch.as_mut_slices();
        for slots in [head, tail] {
            for i in 0..slots.len() {
                if let Some(further) = slots.get(i + 2 * PREFETCH_AHEAD) {
                    further.prefetch_boxes(true);
                }
                if let Some(ahead) = slots.get(i + PREFETCH_AHEAD) {
                    // A replayed slot's operation is a leftover: its entries name the
                    // accounts it touches.
                    if ahead.replayed() {
                        self.transactor.prefetch_entries(&ahead.entries);
                        self.links.prefetch(&ahead.entries);
                    } else {
                        let links = &self.links;
                        self.transactor
                            .prefetch_with(&ahead.op, plan, |a| links.prefetch_account(a));
                    }
                }
                let slot = &mut slots[i];
                if slot.replayed() {
                    self.replay(seq, slot)?;
                } else {
                    slot.entries.clear();
                    let outcome = self.transactor.execute(
                        seq,
                        slot.timestamp_ns,
                        &slot.op,
                        &mut slot.entries,
                        &mut self.effects,
                    );
                    slot.set_outcome(outcome);
                    if self.effects.is_empty() {
                        if outcome.is_committed() {
                            self.links.link(seq, &slot.entries, &mut slot.prev);
                        } else {
                            slot.prev.clear();
                        }
                    } else {
                        assert!(outcome.is_committed(), "effects of a rejection");
                        self.links.link_with_effects(
                            seq,
                            &slot.entries,
                            &mut slot.prev,
                            self.transactor.effect_accounts(),
                            &mut self.effect_links,
                        );
                        // The slot's own vectors (kept from earlier use) come back.
                        slot.swap_effects(&mut self.effects, &mut self.effect_links);
                        self.effects.clear();
                    }
                    slot.timestamp_ns = self.transactor.now_ns();
                }
                self.outcomes.record(seq, slot.outcome());
                seq += 1;
            }
        }
        Ok(())
    }
}

impl TransactorStage {
    /// Applies a transaction the leader executed: the same checks as recovery (every
    /// recorded balance and back-link), so a follower never disagrees silently.
    fn replay(&mut self, seq: u64, slot: &Slot) -> Result<(), StageError> {
        let record = slot.record();
        check_links(
            self.links.as_slice(),
            seq,
            record.entries,
            record.prev_tx_ids,
            record.effect_links,
        )?;
        self.transactor.replay(
            seq,
            record.timestamp_ns,
            record.user_ref,
            record.outcome,
            record.entries,
            record.effects,
        )?;
        self.transactor
            .check_effect_links(seq, record.effect_links)?;
        self.links.apply(seq, record.entries, record.effect_links);
        Ok(())
    }
}

/// Writes each batch as WAL frames and makes it durable with one `fdatasync`: the group
/// commit. When it returns, the committed index covers the batch. It also feeds the read
/// path: each frame's position goes into the sparse index, and once durable, the frame
/// itself (with decode marks) into the recent-frames ring.
pub(crate) struct WalStage {
    pub wal: Wal,
    pub buf: Vec<u8>,
    pub frame_bytes: usize,
    /// WAL below this sequence is needed by no snapshot (set by the checkpointer).
    pub retention_floor: Arc<AtomicU64>,
    pub retained_from: u64,
    pub keep_all: bool,
    /// Segments holding any of the last this-many transactions stay for reads.
    pub history_keep_tx: u64,
    pub metrics: Arc<Metrics>,
    pub index: IndexWriter,
    pub recent: RecentWriter,
    /// Frames of the batch being committed, published once durable.
    pub pending: Vec<IndexedFrame>,
    pub marks: Vec<DecodeMark>,
}

impl Stage<Slot> for WalStage {
    fn on_batch(&mut self, batch: &mut Batch<'_, Slot>) -> Result<(), StageError> {
        let mut frame_first = batch.first_sequence();
        let last = batch.last_sequence();
        let mut encoder: Option<FrameEncoder> = None;
        let appended_before = self.wal.appended_bytes();
        let mut frames = 0u64;
        let keep_recent = self.recent.enabled();
        let (head, tail) = batch.as_mut_slices();
        let slots = || head.iter().chain(tail.iter());
        let mut further = slots().skip(2 * PREFETCH_AHEAD);
        let mut ahead = slots().skip(PREFETCH_AHEAD);
        for (seq, slot) in (frame_first..).zip(slots()) {
            if let Some(further) = further.next() {
                further.prefetch_boxes(false);
            }
            if let Some(ahead) = ahead.next() {
                ahead.prefetch_effects();
            }
            let enc = encoder.get_or_insert_with(|| {
                self.buf.clear();
                FrameEncoder::new(&mut self.buf, seq, slot.timestamp_ns)
            });
            if keep_recent && (seq - frame_first).is_multiple_of(MARK_STRIDE) {
                self.marks.push(enc.mark(&self.buf));
            }
            enc.push(&mut self.buf, slot.record());
            if frame_is_full(self.buf.len(), self.frame_bytes) || seq == last {
                let position = self.wal.append(frame_first, seq, &self.buf)?;
                self.index.note(position, frame_first);
                if keep_recent {
                    let count = u32::try_from(seq - frame_first + 1).unwrap_or(u32::MAX);
                    self.pending.push(IndexedFrame::with_marks(
                        frame_first,
                        count,
                        position,
                        self.buf.as_slice().into(),
                        std::mem::take(&mut self.marks),
                    ));
                }
                frames += 1;
                frame_first = seq + 1;
                encoder = None;
            }
        }
        self.wal.sync()?;
        for frame in self.pending.drain(..) {
            self.recent.publish(frame);
        }
        let m = &self.metrics;
        m.wal_bytes.fetch_add(
            self.wal.appended_bytes() - appended_before,
            Ordering::Relaxed,
        );
        m.wal_frames.fetch_add(frames, Ordering::Relaxed);
        m.wal_syncs.fetch_add(1, Ordering::Relaxed);
        let floor = wal_floor(
            self.retention_floor.load(Ordering::Acquire),
            last,
            self.history_keep_tx,
        );
        if floor > self.retained_from && !self.keep_all {
            let removed = self.wal.remove_segments_below(floor)?;
            if let Some(newest) = removed.iter().map(|s| s.number).max() {
                self.index.remove_below(newest + 1);
            }
            m.wal_segments_removed
                .fetch_add(removed.len() as u64, Ordering::Relaxed);
            self.retained_from = floor;
        }
        Ok(())
    }
}

/// Applies committed transactions to the balances readers see, and now and then hands a
/// consistent copy to the checkpointer.
pub(crate) struct SnapshotStage {
    /// The readers' state. Written here, a batch at a time, under the write lock; read by
    /// `get_balance(s)` under the read lock, so a read is always one consistent cut.
    pub visible: Arc<RwLock<Visible>>,
    pub checkpointer: Arc<Checkpointer>,
    pub last_checkpoint_tx: u64,
    pub last_checkpoint_at: Instant,
}

impl Stage<Slot> for SnapshotStage {
    fn on_batch(&mut self, batch: &mut Batch<'_, Slot>) -> Result<(), StageError> {
        let mut visible = self.visible.write().unwrap_or_else(|e| e.into_inner());
        let mut seq = batch.first_sequence();
        let plan = visible.state.prefetch_plan();
        let (head, tail) = batch.as_mut_slices();
        for slots in [&*head, &*tail] {
            for (i, slot) in slots.iter().enumerate() {
                if let Some(further) = slots.get(i + 2 * APPLY_PREFETCH_AHEAD) {
                    further.prefetch_boxes(false);
                }
                if plan.holds
                    && let Some(ahead) = slots.get(i + APPLY_PREFETCH_AHEAD / 2)
                {
                    // Its effects were loaded half the distance ago.
                    visible
                        .state
                        .prefetch_holds_stored(&ahead.entries, ahead.effects());
                    for link in ahead.effect_links() {
                        visible.links.prefetch_account(link.account_id);
                    }
                }
                if let Some(ahead) = slots.get(i + APPLY_PREFETCH_AHEAD) {
                    ahead.prefetch_effects();
                    visible.prefetch(&ahead.entries);
                    if plan.rules {
                        visible.state.prefetch_rules_entries(&ahead.entries);
                    }
                }
                // Re-applying the stored result checks every balance the transactor claims.
                visible.apply(seq, slot.record())?;
                seq += 1;
            }
        }
        let last = visible.state.last_tx_id();
        drop(visible);
        let due = last - self.last_checkpoint_tx >= self.checkpointer.interval_tx
            || (last > self.last_checkpoint_tx
                && self.last_checkpoint_at.elapsed() >= self.checkpointer.interval);
        // Only this stage writes the state: a read lock sees exactly what was applied,
        // and readers go on reading while the copy is made.
        if due
            && self
                .checkpointer
                .offer(&self.visible.read().unwrap_or_else(|e| e.into_inner()))
        {
            self.last_checkpoint_tx = last;
            self.last_checkpoint_at = Instant::now();
        }
        Ok(())
    }
}
