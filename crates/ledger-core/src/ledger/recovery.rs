//! `start()`'s recovery: newest valid snapshot, then the WAL after it, applied (never
//! re-executed).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_snapshot::{SnapshotConfig, SnapshotStore};
use ledger_storage::Storage;
use ledger_wal::{
    FrameKind, FramePosition, TruncatedTail, Wal, WalConfig, WalReader, segment_file_name,
};

use super::config::LedgerConfig;
use super::error::LedgerError;
use super::links::AccountLinks;
use super::reads::index::IndexWriter;
use super::saved::load_newest;
use super::visible::Visible;
use crate::record::{AccountLink, FrameDecoder, RecordRef};
use crate::transaction::{Effect, Entry, Outcome, TxId};
use crate::transactor::{Transactor, TransactorConfig};

/// What [`Ledger::start`](super::Ledger::start) found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The snapshot the state was loaded from, and the transaction it is consistent at.
    pub snapshot: Option<(PathBuf, TxId)>,
    /// Newer snapshots that failed verification and were passed over, with the reason.
    pub skipped_snapshots: Vec<(PathBuf, String)>,
    /// A torn tail (an interrupted, never acknowledged write) cut off the WAL.
    pub wal_truncated: Option<TruncatedTail>,
    /// Transactions applied from the WAL after the snapshot.
    pub replayed: u64,
    /// The last transaction of the recovered state; new ids continue after it.
    pub last_tx_id: TxId,
    /// Time spent recovering.
    pub elapsed: Duration,
}

pub(crate) struct Recovered {
    pub transactor: Transactor,
    pub links: AccountLinks,
    /// `None` on a cluster node, whose log belongs to the replicated log's store.
    pub wal: Option<Wal>,
    pub store: Arc<SnapshotStore>,
    pub report: RecoveryReport,
}

pub(crate) fn wal_config(config: &LedgerConfig) -> WalConfig {
    WalConfig::default().with_segment_bytes_max(config.wal_segment_bytes)
}

/// Recovers the state; `index` notes the position of every retained records frame on
/// the way (the same single read of the log that replays it). With `own_wal` false (a
/// cluster node) only the snapshot is loaded: the replicated log's store owns the WAL and
/// the log after the snapshot is applied as the cluster commits it.
pub(crate) fn recover(
    config: &LedgerConfig,
    storage: &Arc<dyn Storage>,
    transactor_config: TransactorConfig,
    index: &mut IndexWriter,
    own_wal: bool,
) -> Result<Recovered, LedgerError> {
    let started = Instant::now();
    let store = SnapshotStore::open_on(
        Arc::clone(storage),
        config.snapshot_dir(),
        SnapshotConfig::default().with_keep(config.snapshots_kept),
    )?;
    let wal_dir = config.wal_dir();
    let (wal, wal_report) = if own_wal {
        let (wal, report) = Wal::open_on(Arc::clone(storage), &wal_dir, wal_config(config))?;
        (Some(wal), Some(report))
    } else {
        (None, None)
    };
    if let Some(torn) = wal_report.as_ref().and_then(|r| r.truncated.as_ref()) {
        tracing::warn!(
            segment = %torn.segment.display(),
            offset = torn.offset,
            bytes = torn.bytes_dropped,
            "cut a torn tail off the WAL (an interrupted write that was never acknowledged)"
        );
    }

    let (loaded, skipped_snapshots) = load_newest(&store)?;
    for (path, error) in &skipped_snapshots {
        tracing::warn!(snapshot = %path.display(), %error, "passed over a damaged snapshot");
    }
    let max_accounts = usize::try_from(transactor_config.max_accounts).unwrap_or(usize::MAX);
    let (mut visible, snapshot) = match &loaded {
        None => (
            Visible {
                state: Transactor::new(transactor_config)?,
                links: AccountLinks::new(max_accounts),
            },
            None,
        ),
        Some(loaded) => {
            let path = loaded.path().to_path_buf();
            let transactor =
                loaded
                    .restore(transactor_config)
                    .map_err(|source| LedgerError::Restore {
                        snapshot: path.clone(),
                        source: Arc::new(source),
                    })?;
            let links =
                AccountLinks::restore(max_accounts, loaded.latest().iter().map(|l| l.to_native()));
            (
                Visible {
                    state: transactor,
                    links,
                },
                Some((path, loaded.sequence())),
            )
        }
    };
    drop(loaded);

    let snapshot_tx_id = visible.state.last_tx_id();
    let replayed = match &wal {
        Some(wal) => replay_wal(storage, &wal_dir, wal, &mut visible, index)?,
        None => 0,
    };
    let Visible {
        state: transactor,
        links,
    } = visible;
    let report = RecoveryReport {
        snapshot,
        skipped_snapshots,
        wal_truncated: wal_report.and_then(|r| r.truncated),
        replayed,
        last_tx_id: transactor.last_tx_id(),
        elapsed: started.elapsed(),
    };
    debug_assert_eq!(report.last_tx_id, snapshot_tx_id + replayed);
    Ok(Recovered {
        transactor,
        links,
        wal,
        store: Arc::new(store),
        report,
    })
}

/// How many records ahead replay prefetches balances. Replay does less work per record
/// than execution, so it runs further ahead than the transactor stage: 16 and 32 gave
/// 15M tx/s against 5M without prefetch and 10-12M at 8 (1M accounts, 31M transfers).
const REPLAY_PREFETCH_AHEAD: usize = 16;

/// One decoded record of the frame being replayed; its entries (and back-links) are a
/// range of [`Decoded`]'s shared buffers.
#[derive(Debug)]
pub(crate) struct Stored {
    pub tx_id: TxId,
    pub timestamp_ns: u64,
    pub user_ref: u64,
    pub outcome: Outcome,
    pub entries: Range<usize>,
    /// A range of [`Decoded::effects`].
    pub effects: Range<usize>,
    /// A range of [`Decoded::effect_links`].
    pub effect_links: Range<usize>,
}

/// The records of one or more frames, decoded into buffers that are reused from frame to
/// frame (after the first frames, replay allocates nothing).
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub records: Vec<Stored>,
    pub entries: Vec<Entry>,
    pub prev_tx_ids: Vec<TxId>,
    pub effects: Vec<Effect>,
    pub effect_links: Vec<AccountLink>,
}

impl Decoded {
    pub fn clear(&mut self) {
        self.records.clear();
        self.entries.clear();
        self.prev_tx_ids.clear();
        self.effects.clear();
        self.effect_links.clear();
    }

    /// Record `record`'s entries, back-links and effects.
    pub fn record(&self, record: &Stored) -> RecordRef<'_> {
        RecordRef {
            timestamp_ns: record.timestamp_ns,
            user_ref: record.user_ref,
            outcome: record.outcome,
            entries: &self.entries[record.entries.clone()],
            prev_tx_ids: &self.prev_tx_ids[record.entries.clone()],
            effects: &self.effects[record.effects.clone()],
            effect_links: &self.effect_links[record.effect_links.clone()],
        }
    }

    /// Appends the records of one frame's payload whose ids are above `after`.
    pub fn decode_frame(
        &mut self,
        payload: &[u8],
        first_seq: TxId,
        record_count: u32,
        after: TxId,
    ) -> Result<(), crate::record::RecordError> {
        let mut decoder = FrameDecoder::new(payload, first_seq, record_count)?;
        while let Some(record) = decoder.next_record()? {
            if record.tx_id <= after {
                continue;
            }
            let start = self.entries.len();
            self.entries.extend_from_slice(record.entries);
            self.prev_tx_ids.extend_from_slice(record.prev_tx_ids);
            let effects_start = self.effects.len();
            self.effects.extend_from_slice(record.effects);
            let links_start = self.effect_links.len();
            self.effect_links.extend_from_slice(record.effect_links);
            self.records.push(Stored {
                tx_id: record.tx_id,
                timestamp_ns: record.timestamp_ns,
                user_ref: record.user_ref,
                outcome: record.outcome,
                entries: start..self.entries.len(),
                effects: effects_start..self.effects.len(),
                effect_links: links_start..self.effect_links.len(),
            });
        }
        Ok(())
    }
}

/// Reads every retained frame once, verified: notes each records frame's position in
/// `index` and applies every record after the transactor's last id; returns how many.
fn replay_wal(
    storage: &Arc<dyn Storage>,
    wal_dir: &Path,
    wal: &Wal,
    visible: &mut Visible,
    index: &mut IndexWriter,
) -> Result<u64, LedgerError> {
    let after = visible.state.last_tx_id();
    let reader = WalReader::open_on(Arc::clone(storage), wal_dir)?;
    let gap = || LedgerError::WalGap {
        snapshot_tx_id: after,
        wal_first_tx_id: reader.first_seq(),
        wal_next_tx_id: wal.next_seq(),
    };
    match (reader.first_seq(), wal.next_seq()) {
        // A fresh ledger.
        (None, _) if after == 0 => return Ok(0),
        (Some(first), Some(next)) if first <= after + 1 && next > after => {}
        _ => return Err(gap()),
    }
    // From the oldest retained frame: the read index covers all of them.
    let mut frames = reader.frames();
    let mut replayed = 0u64;
    let mut decoded = Decoded::default();
    while let Some(frame) = frames.next_frame()? {
        if frame.kind != FrameKind::Records {
            continue; // a durable mark, or an optional kind this version does not use
        }
        index.note(
            FramePosition {
                segment: frame.segment,
                offset: frame.offset,
            },
            frame.first_seq,
        );
        if frame.next_seq() <= after + 1 {
            continue; // wholly in the snapshot: verified (checksums), not decoded
        }
        let segment = wal_dir.join(segment_file_name(frame.segment));
        let offset = frame.offset;
        let corrupt = |source| LedgerError::CorruptRecord {
            segment: segment.clone(),
            offset,
            source: Arc::new(source),
        };
        // Decode the whole frame first, so that balances can be prefetched a few records
        // ahead of applying: replay is bound by cache misses on the balance table.
        decoded.clear();
        decoded
            .decode_frame(frame.payload, frame.first_seq, frame.record_count, after)
            .map_err(corrupt)?;
        let records = &decoded.records;
        for (i, record) in records.iter().enumerate() {
            if let Some(ahead) = records.get(i + REPLAY_PREFETCH_AHEAD) {
                visible.prefetch(&decoded.entries[ahead.entries.clone()]);
            }
            visible
                .apply_stored(record.tx_id, decoded.record(record))
                .map_err(|source| LedgerError::ReplayMismatch {
                    segment: segment.clone(),
                    offset,
                    source: Arc::new(source),
                })?;
        }
        replayed += records.len() as u64;
    }
    Ok(replayed)
}
