//! The replicated log's store: the WAL itself. Each entry is a header frame
//! ([`entry_format`](super::entry_format)) followed, for a normal entry, by its records
//! frames, byte for byte what a single node writes. One `fdatasync` per append call
//! (openraft hands over every entry it has queued at once: the group commit).
//!
//! In memory: every present entry's id and frame positions, and the payloads of the most
//! recent ones up to a byte budget (older ones are read back from the WAL when a lagging
//! follower needs them). The vote is a small file written atomically beside the WAL.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ledger_storage::{OpenMode, Storage, read_full_at};
use ledger_wal::{
    FrameCursor, FrameKind, FramePosition, SegmentInfo, Wal, WalConfig, WalError, WalReader,
};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, EntryPayload, LogState, RaftLogReader, StorageIOError};

use super::entry_format::{ENTRY_HEADER_KIND, EntryHeader, HeaderBody, SnapshotHead};
use super::types::{
    Entry, Frames, LogId, Membership, NodeId, StorageError, StoredMembership, TypeConfig, Vote,
};
use crate::ledger::replica::EncodedFrame;

/// Where one records frame of an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameRef {
    pub position: FramePosition,
    pub first_tx_id: u64,
    pub count: u32,
}

#[derive(Clone, Debug)]
enum Body {
    Blank,
    Membership(Membership),
    Normal {
        frames: Vec<FrameRef>,
        /// The payload, while within the cache budget.
        cached: Option<Frames>,
    },
}

#[derive(Clone, Debug)]
struct Stored {
    log_id: LogId,
    header: FramePosition,
    body: Body,
}

/// An entry Raft purged whose header frame may still be in the WAL: what the log start
/// must name once the segments up to it are removed.
#[derive(Clone, Debug)]
struct Forgotten {
    log_id: LogId,
    header: FramePosition,
    /// The membership and the last transaction as of this entry.
    membership: Arc<StoredMembership>,
    last_tx: u64,
}

#[derive(Debug)]
struct Inner {
    storage: Arc<dyn Storage>,
    wal_dir: PathBuf,
    vote_dir: PathBuf,
    wal: Wal,
    /// Present entries, consecutive indexes.
    entries: VecDeque<Stored>,
    last_purged: Option<LogId>,
    /// The membership and the last transaction as of `last_purged` (or of the Raft
    /// snapshot the log continues).
    purged_membership: StoredMembership,
    purged_tx: u64,
    vote: Option<Vote>,
    cached_bytes: usize,
    cache_budget: usize,
    /// Entries before this position of `entries` hold no cached payload.
    uncached_below: usize,
    header_buf: Vec<u8>,
    /// The last transaction durable in this node's WAL (internal: not an
    /// acknowledgement in a cluster).
    durable_tx: u64,
    /// Purged entries, oldest first, until the segments holding their headers go.
    forgotten: VecDeque<Forgotten>,
}

/// The log store; clones share it (openraft's log reader is a clone).
#[derive(Clone, Debug)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

const VOTE_FILE: &str = "raft-vote";
/// After the WAL was reset to continue a Raft snapshot: that snapshot's head, naming the
/// entry before the WAL's first one (which openraft must know as the last purged).
const LOG_START_FILE: &str = "raft-log-start";
const VOTE_BYTES: usize = 8 + 8 + 1 + 4;

fn io_error(e: impl std::error::Error + 'static, write: bool) -> StorageError {
    let any = AnyError::new(&e);
    if write {
        StorageIOError::write_logs(any).into()
    } else {
        StorageIOError::read_logs(any).into()
    }
}

impl LogStore {
    /// Opens (recovering a torn tail) the WAL in `wal_dir` and reads back its entries.
    /// With `snapshot`, the node's Raft snapshot, the log continues it: entries it
    /// replaced (a log that does not reach it, or disagrees with it) are dropped, as
    /// [`install`](Self::install) does; this also finishes an installation a crash cut.
    pub fn open(
        storage: Arc<dyn Storage>,
        wal_dir: &Path,
        vote_dir: &Path,
        wal_config: WalConfig,
        cache_budget: usize,
        snapshot: Option<&SnapshotHead>,
    ) -> Result<LogStore, OpenError> {
        let (mut wal, _report) = Wal::open_on(Arc::clone(&storage), wal_dir, wal_config)?;
        let ReadEntries {
            entries,
            cut_short,
            leading_orphans,
        } = if wal.next_seq().is_some() {
            read_entries(&storage, wal_dir)?
        } else {
            ReadEntries::default()
        };
        if let Some(header) = cut_short {
            // The last entry lost frames to a crash: it was never durable, so never
            // acknowledged. Its leftovers go too, or the entry written again (the leader
            // sends it again) would follow them and the next open refuse the log.
            wal.truncate(header)?;
        }
        let vote = read_vote(storage.as_ref(), vote_dir)?;
        let mut inner = Inner {
            storage,
            wal_dir: wal_dir.to_path_buf(),
            vote_dir: vote_dir.to_path_buf(),
            wal,
            uncached_below: entries.len(),
            entries,
            last_purged: None,
            purged_membership: StoredMembership::default(),
            purged_tx: 0,
            vote,
            cached_bytes: 0,
            cache_budget,
            header_buf: Vec::new(),
            durable_tx: 0,
            forgotten: VecDeque::new(),
        };
        let start = read_log_start(inner.storage.as_ref(), vote_dir)?
            .filter(|start| inner.starts_within(start));
        if let Some(at) = leading_orphans
            && start.is_none()
        {
            return Err(EntryReadError::Layout {
                at,
                why: "the log starts inside an entry and no raft-log-start names the entry before",
            }
            .into());
        }
        if let Some(start) = &start {
            inner.drop_through(start);
            inner.purged_to(start);
        }
        if let Some(head) = snapshot {
            inner.continue_snapshot(head)?;
        }
        if inner.wal.next_seq().is_none() {
            // A new log: its first entries (the initial membership, a blank) are header
            // frames only, which need a sequence to stand at.
            inner.wal.start_at(inner.purged_tx + 1)?;
        }
        inner.refresh_durable();
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// Makes the log continue an installed Raft snapshot (see [`Inner::continue_snapshot`]).
    pub fn install(&self, head: &SnapshotHead) -> Result<(), WalError> {
        let mut inner = self.lock();
        inner.continue_snapshot(head)?;
        inner.refresh_durable();
        Ok(())
    }

    /// What a Raft snapshot of the state after transaction `tx` stands for: the longest
    /// prefix of the log up to `applied` whose transactions are all at or below `tx`.
    /// `None` when that prefix is no longer than what is purged.
    pub fn covered(&self, applied: LogId, tx: u64) -> Option<SnapshotHead> {
        let inner = self.lock();
        let mut last = None;
        let mut membership = inner.purged_membership.clone();
        let mut covered_tx = inner.purged_tx;
        for e in inner
            .entries
            .iter()
            .take_while(|e| e.log_id.index <= applied.index)
        {
            match &e.body {
                Body::Normal { frames, .. } => {
                    let Some(f) = frames.last() else { break };
                    let last_tx = f.first_tx_id + u64::from(f.count) - 1;
                    if last_tx > tx {
                        break;
                    }
                    covered_tx = last_tx;
                }
                Body::Membership(m) => {
                    membership = StoredMembership::new(Some(e.log_id), m.clone());
                }
                Body::Blank => {}
            }
            last = Some(e.log_id);
        }
        let last = last?;
        Some(SnapshotHead {
            meta: openraft::SnapshotMeta {
                last_log_id: Some(last),
                last_membership: membership,
                snapshot_id: format!(
                    "{}-{}-{}-{tx}",
                    last.leader_id.term, last.leader_id.node_id, last.index
                ),
            },
            covered_tx,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The records frames of the entry at `index`, if it is present and normal.
    pub fn frame_refs(&self, index: u64) -> Option<Vec<FrameRef>> {
        let inner = self.lock();
        match &inner.get(index)?.body {
            Body::Normal { frames, .. } => Some(frames.clone()),
            _ => None,
        }
    }

    /// The records frames of every present entry up to index `last`, in log order.
    pub fn frame_refs_through(&self, last: u64) -> Vec<FrameRef> {
        let inner = self.lock();
        inner
            .entries
            .iter()
            .take_while(|e| e.log_id.index <= last)
            .flat_map(|e| match &e.body {
                Body::Normal { frames, .. } => frames.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// Makes a vote this node won in the past (committed, for itself) read back as not
    /// won, so the node starts as a follower and campaigns for a new term. openraft would
    /// otherwise restore the leadership at once, in the old term, with no new blank entry;
    /// the node takes submissions only once its blank entry of the term it leads is applied,
    /// and recovery may already count that entry as applied (a snapshot past it): the
    /// cluster would keep a leader that never takes writes. Only the copy in memory
    /// changes; the next vote saved replaces the file.
    pub fn forget_own_leadership(&self, own: NodeId) {
        let mut inner = self.lock();
        if let Some(vote) = &mut inner.vote
            && vote.leader_id.node_id == own
            && vote.committed
        {
            vote.committed = false;
        }
    }

    /// Waits (at most `limit`) until no one else holds this store (openraft's tasks
    /// end a little after its shutdown): dropping it then frees the WAL directory.
    pub async fn released(&self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while Arc::strong_count(&self.inner) > 1 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        true
    }

    /// Removes the WAL segments that hold only what Raft purged and nothing at or above
    /// `floor_tx` (what the engine's newest snapshot and its history retention still
    /// need), oldest first; returns them. Before any goes, `raft-log-start` names the
    /// last entry whose header they hold, so the next open knows where the log starts:
    /// the first segment kept may begin with the tail of that entry's frames. A crash
    /// before the removal leaves a log-start the log does not begin after, which the
    /// next open ignores (the log still holds every entry).
    pub fn remove_segments_below(&self, floor_tx: u64) -> Result<Vec<SegmentInfo>, WalError> {
        let mut inner = self.lock();
        let limit = inner.entries.front().map_or(u64::MAX, |e| e.header.segment);
        let segments = inner.wal.segments();
        // The active segment (the last) always stays.
        let removable = segments
            .iter()
            .take(segments.len().saturating_sub(1))
            .take_while(|s| s.number < limit && s.next_seq <= floor_tx)
            .count();
        let Some(keep_from) = segments.get(removable).map(|s| s.number) else {
            return Ok(Vec::new());
        };
        if removable == 0 {
            return Ok(Vec::new());
        }
        if let Some(last) = inner
            .forgotten
            .iter()
            .rposition(|f| f.header.segment < keep_from)
        {
            let f = &inner.forgotten[last];
            let head = SnapshotHead {
                meta: openraft::SnapshotMeta {
                    last_log_id: Some(f.log_id),
                    last_membership: (*f.membership).clone(),
                    snapshot_id: format!("log-start-{}", f.log_id.index),
                },
                covered_tx: f.last_tx,
            };
            write_log_start(inner.storage.as_ref(), &inner.vote_dir, &head).map_err(|e| {
                WalError::Io {
                    path: inner.vote_dir.join(LOG_START_FILE),
                    source: e,
                }
            })?;
            inner.forgotten.drain(..=last);
        }
        inner.wal.remove_segments_before(keep_from)
    }

    /// The last transaction durable in this node's WAL.
    pub fn durable_tx(&self) -> u64 {
        self.lock().durable_tx
    }

    /// Every present entry's id with the last transaction id it holds or follows (0
    /// before any), for mapping a snapshot's transaction id back to a log id.
    pub fn tx_marks(&self) -> Vec<(LogId, Option<u64>, Option<Membership>)> {
        let inner = self.lock();
        inner
            .entries
            .iter()
            .map(|e| match &e.body {
                Body::Normal { frames, .. } => (
                    e.log_id,
                    frames
                        .last()
                        .map(|f| f.first_tx_id + u64::from(f.count) - 1),
                    None,
                ),
                Body::Membership(m) => (e.log_id, None, Some(m.clone())),
                Body::Blank => (e.log_id, None, None),
            })
            .collect()
    }
}

impl Inner {
    /// Makes the log continue the Raft snapshot `head` names: kept when it holds the
    /// snapshot's last entry or starts right after it; otherwise every entry goes (they
    /// end before the snapshot, or disagree with it: uncommitted) and the WAL starts over
    /// at the transaction after the snapshot's entries, where the next entry begins.
    fn continue_snapshot(&mut self, head: &SnapshotHead) -> Result<(), WalError> {
        let last = head
            .meta
            .last_log_id
            .expect("a Raft snapshot names its last entry");
        let holds_last = self.get(last.index).is_some_and(|e| e.log_id == last);
        let follows = self.first_index() == Some(last.index + 1);
        if !holds_last && !follows {
            // Where the WAL will start, durably first: a crash before the reset leaves
            // a log that does not start there, and the next open resets it again.
            write_log_start(self.storage.as_ref(), &self.vote_dir, head).map_err(|e| {
                WalError::Io {
                    path: self.vote_dir.join(LOG_START_FILE),
                    source: e,
                }
            })?;
            let removed = self.wal.reset(head.covered_tx + 1)?;
            tracing::info!(
                snapshot = %last,
                covered_tx = head.covered_tx,
                segments = removed.len(),
                "the log continues a Raft snapshot: its entries before it are dropped"
            );
            self.entries.clear();
            self.forgotten.clear();
            self.cached_bytes = 0;
            self.uncached_below = 0;
        }
        if !holds_last && self.last_purged.is_none_or(|p| p.index <= last.index) {
            self.purged_to(head);
        }
        Ok(())
    }

    /// Whether the log continues the entry `start` names: it holds that entry or
    /// begins at or before the one after it (entries up to it being purged ones whose
    /// segments outlived them).
    fn starts_within(&self, start: &SnapshotHead) -> bool {
        let Some(last) = start.meta.last_log_id else {
            return false;
        };
        self.first_index()
            .is_none_or(|first| first <= last.index + 1)
            && self.get(last.index).is_none_or(|e| e.log_id == last)
    }

    /// Forgets the entries up to the one `start` names (at open: Raft purged them).
    fn drop_through(&mut self, start: &SnapshotHead) {
        let Some(last) = start.meta.last_log_id else {
            return;
        };
        while self
            .entries
            .front()
            .is_some_and(|e| e.log_id.index <= last.index)
        {
            self.entries.pop_front();
            self.uncached_below = self.uncached_below.saturating_sub(1);
        }
    }

    /// The log is known to continue the snapshot `head` names.
    fn purged_to(&mut self, head: &SnapshotHead) {
        self.last_purged = head.meta.last_log_id;
        self.purged_membership = head.meta.last_membership.clone();
        self.purged_tx = head.covered_tx;
    }

    fn refresh_durable(&mut self) {
        self.durable_tx = last_tx(&self.entries).max(self.purged_tx);
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    fn get(&self, index: u64) -> Option<&Stored> {
        let first = self.first_index()?;
        let at = usize::try_from(index.checked_sub(first)?).ok()?;
        self.entries.get(at)
    }

    fn append_one(&mut self, entry: Entry) -> Result<(), WalError> {
        if let Some(last) = self.entries.back() {
            assert_eq!(
                entry.log_id.index,
                last.log_id.index + 1,
                "openraft appends consecutive entries"
            );
        }
        let body = match &entry.payload {
            EntryPayload::Blank => HeaderBody::Blank,
            EntryPayload::Membership(m) => HeaderBody::Membership(m.clone()),
            EntryPayload::Normal(frames) => HeaderBody::Normal {
                frames: u32::try_from(frames.0.len()).expect("< 2^32 frames per entry"),
            },
        };
        let header = EntryHeader {
            log_id: entry.log_id,
            body,
        };
        let mut buf = std::mem::take(&mut self.header_buf);
        header.encode(&mut buf);
        let position = self.wal.append_optional(ENTRY_HEADER_KIND, &buf);
        self.header_buf = buf;
        let header_position = position?;
        let body = match entry.payload {
            EntryPayload::Blank => Body::Blank,
            EntryPayload::Membership(m) => Body::Membership(m),
            EntryPayload::Normal(frames) => {
                let mut refs = Vec::with_capacity(frames.0.len());
                for f in frames.0.iter() {
                    let appended = self.wal.append(f.first_tx_id, f.last_tx_id(), &f.payload);
                    let position = match appended {
                        Ok(position) => position,
                        Err(e) => {
                            // Never leave a header without its frames: the entry is not in
                            // the log, so nothing of it may stay in the WAL either (a later
                            // entry written after the leftovers would make the log unreadable).
                            tracing::error!(
                                index = entry.log_id.index,
                                first_tx_id = f.first_tx_id,
                                wal_next = ?self.wal.next_seq(),
                                error = %e,
                                "a replicated-log entry could not be written: cutting its header"
                            );
                            self.wal.truncate(header_position)?;
                            return Err(e);
                        }
                    };
                    refs.push(FrameRef {
                        position,
                        first_tx_id: f.first_tx_id,
                        count: f.count,
                    });
                }
                self.cached_bytes += frames.bytes();
                Body::Normal {
                    frames: refs,
                    cached: Some(frames),
                }
            }
        };
        self.entries.push_back(Stored {
            log_id: entry.log_id,
            header: header_position,
            body,
        });
        self.evict();
        Ok(())
    }

    /// Drops the oldest cached payloads until the cache is within its budget.
    fn evict(&mut self) {
        while self.cached_bytes > self.cache_budget && self.uncached_below < self.entries.len() {
            if let Some(Stored {
                body: Body::Normal { cached, .. },
                ..
            }) = self.entries.get_mut(self.uncached_below)
                && let Some(frames) = cached.take()
            {
                self.cached_bytes -= frames.bytes();
            }
            self.uncached_below += 1;
        }
    }

    fn entry(&self, stored: &Stored) -> Result<Entry, WalError> {
        let payload = match &stored.body {
            Body::Blank => EntryPayload::Blank,
            Body::Membership(m) => EntryPayload::Membership(m.clone()),
            Body::Normal {
                cached: Some(frames),
                ..
            } => EntryPayload::Normal(frames.clone()),
            Body::Normal {
                frames,
                cached: None,
            } => EntryPayload::Normal(self.load(frames)?),
        };
        Ok(Entry {
            log_id: stored.log_id,
            payload,
        })
    }

    /// Reads an evicted entry's frames back from the WAL.
    fn load(&self, refs: &[FrameRef]) -> Result<Frames, WalError> {
        let mut frames = Vec::with_capacity(refs.len());
        for r in refs {
            let mut cursor = FrameCursor::open_on(
                self.storage.as_ref(),
                &self.wal_dir,
                r.position.segment,
                r.position.offset,
                r.first_tx_id,
                Vec::new(),
            )?;
            let frame = cursor.next_frame()?.ok_or(WalError::Poisoned)?;
            if frame.kind != FrameKind::Records
                || frame.first_seq != r.first_tx_id
                || frame.record_count != r.count
            {
                return Err(WalError::Poisoned);
            }
            frames.push(EncodedFrame {
                first_tx_id: r.first_tx_id,
                count: r.count,
                payload: bytes::Bytes::copy_from_slice(frame.payload),
            });
        }
        Ok(Frames(frames.into()))
    }
}

/// The last transaction id the entries hold (0 for none).
fn last_tx(entries: &VecDeque<Stored>) -> u64 {
    entries
        .iter()
        .rev()
        .find_map(|e| match &e.body {
            Body::Normal { frames, .. } => frames
                .last()
                .map(|f| f.first_tx_id + u64::from(f.count) - 1),
            _ => None,
        })
        .unwrap_or(0)
}

/// What [`read_entries`] found.
#[derive(Default)]
struct ReadEntries {
    entries: VecDeque<Stored>,
    /// Where the header of a last entry a crash cut short is (its frames are not all
    /// there).
    cut_short: Option<FramePosition>,
    /// Where records frames before the first entry header start: the tail of an entry
    /// whose header was in a segment retention removed.
    leading_orphans: Option<FramePosition>,
}

/// Reads every entry of the WAL in `dir`, in order.
fn read_entries(storage: &Arc<dyn Storage>, dir: &Path) -> Result<ReadEntries, EntryReadError> {
    let reader = WalReader::open_on(Arc::clone(storage), dir)?;
    let mut frames = reader.frames();
    let mut entries: VecDeque<Stored> = VecDeque::new();
    let mut leading_orphans = None;
    // How many records frames the last normal entry still expects.
    let mut expecting = 0u32;
    while let Some(frame) = frames.next_frame()? {
        let position = FramePosition {
            segment: frame.segment,
            offset: frame.offset,
        };
        match frame.kind {
            FrameKind::Optional(ENTRY_HEADER_KIND) => {
                if expecting != 0 {
                    return Err(EntryReadError::Layout {
                        at: position,
                        why: "an entry misses frames",
                    });
                }
                let header =
                    EntryHeader::decode(frame.payload).map_err(|_| EntryReadError::Layout {
                        at: position,
                        why: "undecodable entry header",
                    })?;
                let body = match header.body {
                    HeaderBody::Blank => Body::Blank,
                    HeaderBody::Membership(m) => Body::Membership(m),
                    HeaderBody::Normal { frames } => {
                        expecting = frames;
                        Body::Normal {
                            frames: Vec::with_capacity(frames as usize),
                            cached: None,
                        }
                    }
                };
                if let Some(last) = entries.back()
                    && header.log_id.index != last.log_id.index + 1
                {
                    return Err(EntryReadError::Layout {
                        at: position,
                        why: "entry indexes not consecutive",
                    });
                }
                entries.push_back(Stored {
                    log_id: header.log_id,
                    header: position,
                    body,
                });
            }
            FrameKind::Records if entries.is_empty() => {
                leading_orphans.get_or_insert(position);
            }
            FrameKind::Records => {
                let Some(Stored {
                    body: Body::Normal { frames: refs, .. },
                    ..
                }) = entries.back_mut()
                else {
                    return Err(EntryReadError::Layout {
                        at: position,
                        why: "records outside an entry",
                    });
                };
                if expecting == 0 {
                    return Err(EntryReadError::Layout {
                        at: position,
                        why: "records outside an entry",
                    });
                }
                expecting -= 1;
                refs.push(FrameRef {
                    position,
                    first_tx_id: frame.first_seq,
                    count: frame.record_count,
                });
            }
            FrameKind::Optional(_) => {} // durable marks
        }
    }
    let mut cut_short = None;
    if expecting != 0 {
        // The entry's frames were cut off by a crash: the entry was never durable, so it
        // was never acknowledged. Forget it (the leader sends it again).
        cut_short = entries.pop_back().map(|e| e.header);
    }
    Ok(ReadEntries {
        entries,
        cut_short,
        leading_orphans,
    })
}

/// Why the log store could not open.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Entries(#[from] EntryReadError),
    #[error("the vote file: {0}")]
    Vote(#[from] std::io::Error),
}

/// The WAL does not hold a replicated log where one was expected.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntryReadError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("the WAL is not a replicated log at segment {} offset {}: {why}", .at.segment, .at.offset)]
    Layout {
        at: FramePosition,
        why: &'static str,
    },
}

fn read_vote(storage: &dyn Storage, dir: &Path) -> Result<Option<Vote>, std::io::Error> {
    let path = dir.join(VOTE_FILE);
    let file = match storage.open(&path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = [0u8; VOTE_BYTES];
    if read_full_at(file.as_ref(), &mut bytes, 0)? != VOTE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: shorter than a vote", path.display()),
        ));
    }
    let (body, crc) = bytes.split_at(VOTE_BYTES - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: checksum mismatch", path.display()),
        ));
    }
    let term = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
    let node = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
    let mut vote = Vote::new(term, node);
    vote.committed = body[16] != 0;
    Ok(Some(vote))
}

fn write_vote(storage: &dyn Storage, dir: &Path, vote: &Vote) -> Result<(), std::io::Error> {
    let mut bytes = Vec::with_capacity(VOTE_BYTES);
    bytes.extend_from_slice(&vote.leader_id.term.to_le_bytes());
    bytes.extend_from_slice(&vote.leader_id.node_id.to_le_bytes());
    bytes.push(u8::from(vote.committed));
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    ledger_storage::write_whole(storage, dir, VOTE_FILE, &bytes)
}

fn read_log_start(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Option<SnapshotHead>, std::io::Error> {
    let path = dir.join(LOG_START_FILE);
    let bytes = match ledger_storage::read_whole(storage, &path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let invalid = |why: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {why}", path.display()),
        )
    };
    let (body, crc) = bytes
        .split_last_chunk::<4>()
        .ok_or_else(|| invalid("truncated"))?;
    if crc32c::crc32c(body).to_le_bytes() != *crc {
        return Err(invalid("checksum mismatch"));
    }
    SnapshotHead::decode(body)
        .map(Some)
        .map_err(|e| invalid(&e.to_string()))
}

fn write_log_start(storage: &dyn Storage, dir: &Path, head: &SnapshotHead) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    head.encode(&mut bytes);
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    ledger_storage::write_whole(storage, dir, LOG_START_FILE, &bytes)
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some(e + 1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.lock();
        let (start, end) = bounds(&range);
        // Indexes are consecutive: the range is a slice of `entries`, found by arithmetic.
        let Some(first) = inner.first_index() else {
            return Ok(Vec::new());
        };
        let from = usize::try_from(start.saturating_sub(first)).unwrap_or(usize::MAX);
        let to = end.map_or(inner.entries.len(), |e| {
            usize::try_from(e.saturating_sub(first)).unwrap_or(usize::MAX)
        });
        let to = to.min(inner.entries.len());
        if from >= to {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(to - from);
        for stored in inner.entries.range(from..to) {
            out.push(inner.entry(stored).map_err(|e| io_error(e, false))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        let last_log_id = inner.entries.back().map(|e| e.log_id).or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut inner = self.lock();
        write_vote(inner.storage.as_ref(), &inner.vote_dir, vote)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(AnyError::new(&e))))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let written = entries
            .into_iter()
            .try_for_each(|entry| inner.append_one(entry))
            .and_then(|()| inner.wal.sync().map(|_| ()));
        match written {
            Ok(()) => {
                inner.refresh_durable();
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_error(e, true))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        let Some(first) = inner.first_index() else {
            return Ok(());
        };
        let Some(at) = log_id
            .index
            .checked_sub(first)
            .and_then(|a| usize::try_from(a).ok())
        else {
            return Ok(());
        };
        let Some(stored) = inner.entries.get(at) else {
            return Ok(());
        };
        let header = stored.header;
        inner.wal.truncate(header).map_err(|e| io_error(e, true))?;
        let removed: usize = inner
            .entries
            .drain(at..)
            .map(|e| match e.body {
                Body::Normal {
                    cached: Some(frames),
                    ..
                } => frames.bytes(),
                _ => 0,
            })
            .sum();
        inner.cached_bytes -= removed;
        inner.refresh_durable();
        inner.uncached_below = inner.uncached_below.min(inner.entries.len());
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Forgets the entries; their WAL segments stay (the records are also the
        // read path's history, kept by the ledger's own retention).
        let mut inner = self.lock();
        let mut membership = Arc::new(inner.purged_membership.clone());
        while inner
            .entries
            .front()
            .is_some_and(|e| e.log_id.index <= log_id.index)
        {
            let Some(stored) = inner.entries.pop_front() else {
                break;
            };
            match stored.body {
                Body::Normal { frames, cached } => {
                    if let Some(f) = frames.last() {
                        inner.purged_tx = f.first_tx_id + u64::from(f.count) - 1;
                    }
                    if let Some(cached) = cached {
                        inner.cached_bytes -= cached.bytes();
                    }
                }
                Body::Membership(m) => {
                    inner.purged_membership = StoredMembership::new(Some(stored.log_id), m);
                    membership = Arc::new(inner.purged_membership.clone());
                }
                Body::Blank => {}
            }
            let last_tx = inner.purged_tx;
            inner.forgotten.push_back(Forgotten {
                log_id: stored.log_id,
                header: stored.header,
                membership: Arc::clone(&membership),
                last_tx,
            });
            inner.uncached_below = inner.uncached_below.saturating_sub(1);
        }
        if inner.last_purged.is_none_or(|p| p.index < log_id.index) {
            inner.last_purged = Some(log_id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn entry(index: u64, first_tx: u64, frames: &[u32]) -> Entry {
        let mut next = first_tx;
        let frames: Vec<EncodedFrame> = frames
            .iter()
            .map(|&count| {
                let f = EncodedFrame {
                    first_tx_id: next,
                    count,
                    // The log store keeps records frames as bytes: any payload will do.
                    payload: bytes::Bytes::from(vec![index as u8; 16]),
                };
                next += u64::from(count);
                f
            })
            .collect();
        Entry {
            log_id: id(index),
            payload: EntryPayload::Normal(Frames(frames.into())),
        }
    }

    fn open(dir: &Path) -> Result<LogStore, OpenError> {
        open_continuing(dir, None)
    }

    fn open_continuing(dir: &Path, snapshot: Option<&SnapshotHead>) -> Result<LogStore, OpenError> {
        open_with(dir, WalConfig::default(), 1 << 20, snapshot)
    }

    fn open_with(
        dir: &Path,
        wal: WalConfig,
        cache_budget: usize,
        snapshot: Option<&SnapshotHead>,
    ) -> Result<LogStore, OpenError> {
        LogStore::open(
            ledger_storage::real(),
            &dir.join("wal"),
            dir,
            wal,
            cache_budget,
            snapshot,
        )
    }

    fn id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// What a crash leaves when it comes while an entry is being written: the frames
    /// written before it, not those after (and no sync covered any of them).
    fn crash_while_writing(store: &LogStore, entry: &Entry, frames_written: usize) {
        let mut inner = store.lock();
        let mut header = Vec::new();
        crate::cluster::wire::entry_header(entry, &mut header);
        inner
            .wal
            .append_optional(ENTRY_HEADER_KIND, &header)
            .unwrap();
        if let EntryPayload::Normal(frames) = &entry.payload {
            for f in frames.0.iter().take(frames_written) {
                inner
                    .wal
                    .append(f.first_tx_id, f.last_tx_id(), &f.payload)
                    .unwrap();
            }
        }
        inner.wal.sync().unwrap();
    }

    fn entry_ids(store: &LogStore) -> Vec<(u64, Option<u64>)> {
        store
            .tx_marks()
            .into_iter()
            .map(|(id, last_tx, _)| (id.index, last_tx))
            .collect()
    }

    /// An entry cut short by a crash is forgotten at the next open, and the leader sends
    /// it again: written again, it must land as if the cut one had never been, and the
    /// log must open after that too.
    #[test]
    fn an_entry_cut_short_by_a_crash_can_be_written_again() {
        for frames_written in [0, 1] {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path()).unwrap();
            store.lock().append_one(entry(1, 1, &[3])).unwrap();
            store.lock().wal.sync().unwrap();
            let second = entry(2, 4, &[2, 2]);
            crash_while_writing(&store, &second, frames_written);
            drop(store);

            let store = open(dir.path()).unwrap();
            assert_eq!(
                entry_ids(&store),
                [(1, Some(3))],
                "cut after {frames_written}"
            );
            store
                .lock()
                .append_one(second.clone())
                .unwrap_or_else(|e| panic!("cut after {frames_written}: written again: {e}"));
            store.lock().wal.sync().unwrap();
            drop(store);

            let store = open(dir.path())
                .unwrap_or_else(|e| panic!("cut after {frames_written}: reopened: {e}"));
            assert_eq!(entry_ids(&store), [(1, Some(3)), (2, Some(7))]);
        }
    }
    fn head(index: u64, covered_tx: u64) -> SnapshotHead {
        SnapshotHead {
            meta: openraft::SnapshotMeta {
                last_log_id: Some(id(index)),
                last_membership: StoredMembership::default(),
                snapshot_id: format!("{index}"),
            },
            covered_tx,
        }
    }

    fn open_after(dir: &Path, snapshot: &SnapshotHead) -> LogStore {
        open_continuing(dir, Some(snapshot)).unwrap()
    }

    fn last_purged(store: &LogStore) -> Option<u64> {
        store.lock().last_purged.map(|l| l.index)
    }

    /// A log that holds a snapshot's last entry is kept; one that does not reach it (or
    /// disagrees with it) starts over after it, at the transaction after its entries,
    /// and the next open keeps that.
    #[test]
    fn a_log_continues_its_raft_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        for e in [entry(1, 1, &[3]), entry(2, 4, &[4]), entry(3, 8, &[3])] {
            store.lock().append_one(e).unwrap();
        }
        store.lock().wal.sync().unwrap();
        drop(store);

        let store = open_after(dir.path(), &head(2, 7));
        assert_eq!(
            entry_ids(&store),
            [(1, Some(3)), (2, Some(7)), (3, Some(10))]
        );
        assert_eq!(last_purged(&store), None);
        let covered = store.covered(id(3), 9).unwrap();
        assert_eq!(
            (
                covered.meta.last_log_id.map(|l| l.index),
                covered.covered_tx
            ),
            (Some(2), 7)
        );
        drop(store);

        // A snapshot beyond the log: it goes, the WAL continues at transaction 31.
        let store = open_after(dir.path(), &head(9, 30));
        assert!(entry_ids(&store).is_empty());
        assert_eq!((last_purged(&store), store.durable_tx()), (Some(9), 30));
        assert!(store.lock().append_one(entry(10, 20, &[2])).is_err());
        store.lock().append_one(entry(10, 31, &[2])).unwrap();
        store.lock().wal.sync().unwrap();
        drop(store);

        let store = open_after(dir.path(), &head(9, 30));
        assert_eq!(entry_ids(&store), [(10, Some(32))]);
        assert_eq!((last_purged(&store), store.durable_tx()), (Some(9), 32));
        assert!(store.covered(id(10), 31).is_none());
    }

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: id(index),
            payload: EntryPayload::Blank,
        }
    }

    /// Ranges are answered by position (indexes are consecutive): every bound kind, a
    /// range reaching before the first present entry or past the last, an empty one.
    #[test]
    fn a_range_of_entries_is_exactly_the_present_ones_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path()).unwrap();
        for index in 1..=6 {
            store.lock().append_one(blank(index)).unwrap();
        }
        runtime().block_on(async {
            store.purge(id(2)).await.unwrap();
            let mut get = async |range: (Bound<u64>, Bound<u64>)| -> Vec<u64> {
                store
                    .try_get_log_entries(range)
                    .await
                    .unwrap()
                    .iter()
                    .map(|e| e.log_id.index)
                    .collect()
            };
            use Bound::{Excluded, Included, Unbounded};
            assert_eq!(get((Unbounded, Unbounded)).await, [3, 4, 5, 6]);
            assert_eq!(get((Included(0), Excluded(100))).await, [3, 4, 5, 6]);
            assert_eq!(get((Included(4), Included(4))).await, [4]);
            assert_eq!(get((Excluded(3), Included(5))).await, [4, 5]);
            assert_eq!(get((Included(5), Unbounded)).await, [5, 6]);
            assert!(get((Unbounded, Excluded(3))).await.is_empty());
            assert!(get((Included(7), Unbounded)).await.is_empty());
            assert!(get((Included(5), Excluded(5))).await.is_empty());
            assert!(get((Included(6), Excluded(4))).await.is_empty());
        });
    }

    /// With no cache, entries are read back from the WAL: every frame's bytes as they
    /// were appended, for any range, across segment boundaries, with the entry headers
    /// and a blank entry between them skipped. (A segment is opened per frame; reading
    /// on with one cursor was tried and made a follower's catch-up no faster.)
    #[test]
    fn evicted_entries_read_back_from_the_wal_as_they_were_appended() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_with(
            dir.path(),
            WalConfig::default().with_segment_bytes_max(64 << 10),
            0,
            None,
        )
        .unwrap();
        let mut appended = Vec::new();
        let mut next_tx = 1;
        for index in 1..=40u64 {
            let entry = if index % 7 == 0 {
                blank(index)
            } else {
                let frames: Vec<EncodedFrame> = (0..(index % 3 + 1))
                    .map(|f| {
                        let count = 3;
                        let payload: Vec<u8> = (0..5000 + 37 * index + f)
                            .map(|i| (i * 31 + index * 7 + f) as u8)
                            .collect();
                        let frame = EncodedFrame {
                            first_tx_id: next_tx,
                            count,
                            payload: payload.into(),
                        };
                        next_tx += u64::from(count);
                        frame
                    })
                    .collect();
                Entry {
                    log_id: id(index),
                    payload: EntryPayload::Normal(Frames(frames.into())),
                }
            };
            store.lock().append_one(entry.clone()).unwrap();
            appended.push(entry);
        }
        store.lock().wal.sync().unwrap();
        assert!(store.lock().wal.segments().len() > 3, "spans segments");
        runtime().block_on(async {
            for (from, to) in [(1, 41), (5, 6), (13, 29), (39, 41)] {
                let got = store.try_get_log_entries(from..to).await.unwrap();
                assert_eq!(
                    got,
                    appended[from as usize - 1..to as usize - 1],
                    "{from}..{to}"
                );
            }
        });
    }

    fn frames_entry(index: u64, first_tx: u64, bytes: usize) -> Entry {
        let payload: Vec<u8> = (0..bytes).map(|i| (i as u64 * 7 + index) as u8).collect();
        Entry {
            log_id: id(index),
            payload: EntryPayload::Normal(Frames(
                vec![EncodedFrame {
                    first_tx_id: first_tx,
                    count: 2,
                    payload: payload.into(),
                }]
                .into(),
            )),
        }
    }

    fn small_segments(dir: &Path) -> Result<LogStore, OpenError> {
        open_with(
            dir,
            WalConfig::default().with_segment_bytes_max(16 << 10),
            1 << 20,
            None,
        )
    }

    /// 30 entries of 5 KB (two transactions each) over segments of 16 KB.
    fn thirty_entries(dir: &Path) -> LogStore {
        let store = small_segments(dir).unwrap();
        for index in 1..=30u64 {
            store
                .lock()
                .append_one(frames_entry(index, 2 * index - 1, 5000))
                .unwrap();
        }
        store.lock().wal.sync().unwrap();
        store
    }

    fn first_and_purged(store: &LogStore) -> (Option<u64>, Option<u64>, u64) {
        let inner = store.lock();
        (
            inner.first_index(),
            inner.last_purged.map(|l| l.index),
            inner.purged_tx,
        )
    }

    /// Segments behind what Raft purged go, but none holding a transaction at or above
    /// the floor, and never the one holding the first kept entry's header. The log
    /// reopens where it was: the first kept segment starts inside a purged entry, which
    /// the log start names, and appending goes on.
    #[test]
    fn segments_behind_the_purged_log_and_the_floor_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = thirty_entries(dir.path());
        let segments = store.lock().wal.segments().len();
        assert!(segments >= 8, "{segments} segments");
        runtime().block_on(store.purge(id(20))).unwrap();
        // A floor at transaction 11 (entry 6) keeps the segments from the one holding it.
        let removed = store.remove_segments_below(11).unwrap();
        assert!(!removed.is_empty());
        assert!(removed.iter().all(|s| s.next_seq <= 11));
        // No floor: up to the segment holding entry 21's header.
        let removed = store.remove_segments_below(u64::MAX).unwrap();
        assert!(!removed.is_empty());
        let first = store.lock().wal.segments()[0].first_seq;
        assert!(
            first <= 41,
            "entry 21 (transactions 41-42) is kept: {first}"
        );
        assert_eq!(first_and_purged(&store), (Some(21), Some(20), 40));
        drop(store);

        let store = small_segments(dir.path()).unwrap();
        let (first, purged, _) = first_and_purged(&store);
        let purged = purged.expect("the log start is known");
        assert_eq!(first, Some(purged + 1));
        assert!(purged <= 20);
        store.lock().append_one(frames_entry(31, 61, 5000)).unwrap();
        store.lock().wal.sync().unwrap();
        drop(store);
        let store = small_segments(dir.path()).unwrap();
        assert_eq!(
            store.lock().entries.back().map(|e| e.log_id.index),
            Some(31)
        );
    }

    /// A crash after the log start is written and before (or while) the segments are
    /// removed: the entries it names as purged are dropped at open, and what is left
    /// reads as before.
    #[test]
    fn a_crash_between_naming_the_log_start_and_removing_segments_is_harmless() {
        for removed_before_crash in [0, 1] {
            let dir = tempfile::tempdir().unwrap();
            let store = thirty_entries(dir.path());
            {
                let inner = store.lock();
                write_log_start(inner.storage.as_ref(), &inner.vote_dir, &head(12, 24)).unwrap();
            }
            if removed_before_crash > 0 {
                let mut inner = store.lock();
                let second = inner.wal.segments()[1].number;
                inner.wal.remove_segments_before(second).unwrap();
            }
            drop(store);
            let store = small_segments(dir.path()).unwrap();
            assert_eq!(
                first_and_purged(&store),
                (Some(13), Some(12), 24),
                "{removed_before_crash} removed"
            );
        }
    }

    /// A log whose first segment starts inside an entry, with no log start naming the
    /// entry before the first header, is refused: its beginning is lost, not purged.
    #[test]
    fn a_log_starting_inside_an_entry_without_a_log_start_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = thirty_entries(dir.path());
        {
            let mut inner = store.lock();
            let second = inner.wal.segments()[1].number;
            inner.wal.remove_segments_before(second).unwrap();
        }
        drop(store);
        let error = small_segments(dir.path()).unwrap_err();
        assert!(
            error.to_string().contains("starts inside an entry"),
            "{error}"
        );
    }
}
