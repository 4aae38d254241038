//! The replicated log's state machine: the ledger engine. A committed normal entry the
//! node proposed itself (it leads in that entry's term) only raises the replicated
//! watermark, letting its own batches through the gate; any other is decoded and fed to
//! the pipeline as replayed transactions. The leader's blank entry, once applied, means
//! its whole log is applied: the node then takes submissions.
//!
//! Raft snapshots ([`raft_snapshot`](super::raft_snapshot)) are built from a snapshot the
//! engine writes on the spot; installing one (a node that lags behind the purged log, or
//! joins) makes the log continue it and restarts the node from it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ledger_storage::Storage;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, RaftSnapshotBuilder, ServerState, Snapshot, SnapshotMeta,
    StorageIOError,
};

use super::entry_format::SnapshotHead;
use super::log_store::{FrameRef, LogStore};
use super::raft_snapshot::{RaftSnapshot, SnapshotFileError};
use super::types::{
    Entry, Frames, LogId, NodeId, Raft, StorageError, StoredMembership, TypeConfig,
};
use crate::ledger::Ledger;
use crate::ledger::replica::Watermark;
use crate::ledger::{LedgerError, recovery::Decoded};

/// What the state machine, the node and the proposer share.
pub(crate) struct Shared {
    pub id: NodeId,
    pub ledger: Arc<Ledger>,
    pub replicated: Arc<Watermark>,
    /// The term this node leads in and takes submissions for, once its blank entry of
    /// that term is applied.
    pub leading_term: Mutex<Option<u64>>,
    pub raft: Arc<OnceLock<Raft>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.id)
            .field("leading_term", &self.leading_term())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn leading_term(&self) -> Option<u64> {
        *self.leading_term.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes submissions once this node leads the current term and has applied its
    /// whole log: the last entry applied is the last in the log (after an election, the
    /// new term's blank entry, which commits everything before it; after a restart that
    /// kept the leadership, the entries it applies again). A leader that does not take
    /// submissions appends nothing that carries transactions, so the ids it issues next
    /// follow the last one in its log. Called on every change of Raft's metrics (and when
    /// this node's blank entry is applied).
    pub fn try_lead(&self, metrics: &openraft::RaftMetrics<NodeId, openraft::BasicNode>) {
        let term = metrics.current_term;
        let applied = metrics.last_applied.map(|l| l.index);
        if metrics.current_leader != Some(self.id)
            || metrics.state != ServerState::Leader
            || applied.is_none()
            || applied != metrics.last_log_index
        {
            return;
        }
        let mut leading = self.leading_term.lock().unwrap_or_else(|e| e.into_inner());
        if leading.is_some() || self.replicated.is_closed() {
            return;
        }
        *leading = Some(term);
        if let Ok(engine) = self.ledger.started() {
            engine.set_writable(true);
        }
        tracing::info!(node = self.id, term, "leading: taking submissions");
    }

    /// Stops taking submissions and fails every batch not yet replicated. The gate is
    /// closed first: whoever sees `leading_term` cleared also sees it closed.
    pub fn step_down(&self) {
        self.replicated.close();
        if let Ok(engine) = self.ledger.started() {
            engine.set_writable(false);
        }
        *self.leading_term.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

pub(crate) struct StateMachine {
    shared: Arc<Shared>,
    log: LogStore,
    applied: Option<LogId>,
    membership: StoredMembership,
    decoded: Decoded,
    snapshots: Snapshots,
}

/// Where a node keeps its Raft snapshot, and the head of the newest one. Only the head
/// stays in memory: the file (the engine's snapshot inside, 16 bytes per account) is read
/// when a peer needs it.
#[derive(Clone, Debug)]
pub(crate) struct Snapshots {
    pub storage: Arc<dyn Storage>,
    /// The data directory, where `raft-snapshot` is.
    pub dir: PathBuf,
    pub current: Arc<Mutex<Option<SnapshotHead>>>,
}

impl Snapshots {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SnapshotHead>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> Option<SnapshotHead> {
        self.lock().clone()
    }

    /// Makes `snapshot` the node's, durably, unless one as new already is. Returns whether
    /// it did.
    fn replace(&self, snapshot: &RaftSnapshot) -> Result<bool, std::io::Error> {
        let mut current = self.lock();
        if current
            .as_ref()
            .is_some_and(|c| c.meta.last_log_id >= snapshot.head.meta.last_log_id)
        {
            return Ok(false);
        }
        snapshot.write(self.storage.as_ref(), &self.dir)?;
        *current = Some(snapshot.head.clone());
        Ok(true)
    }

    /// The node's snapshot, read from its file.
    fn read(&self) -> Result<Option<RaftSnapshot>, SnapshotFileError> {
        let current = self.lock();
        if current.is_none() {
            return Ok(None);
        }
        let snapshot = RaftSnapshot::read(self.storage.as_ref(), &self.dir)?;
        if snapshot.as_ref().map(|s| &s.head) != current.as_ref() {
            // Only a write whose commit failed after its rename leaves this: the node
            // stops its log and restarts, taking the file as its snapshot.
            return Err(SnapshotFileError::Layout(
                "the raft-snapshot file is not the snapshot this node last made its own",
            ));
        }
        Ok(snapshot)
    }
}

/// Why a Raft snapshot could not be built or installed.
#[derive(Debug, thiserror::Error)]
enum SnapshotError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    File(#[from] SnapshotFileError),
    #[error("raft snapshot: {0}")]
    Io(#[from] std::io::Error),
    #[error("raft snapshot: the log: {0}")]
    Log(#[from] ledger_wal::WalError),
    #[error("raft snapshot: {0}")]
    Refused(String),
}

/// Why an entry could not be applied (the node stops its replicated log and restarts).
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Record(#[from] crate::record::RecordError),
}

/// Runs `f`, which may wait for the pipeline, without stalling the other tasks on this
/// async worker (openraft runs the state machine as a task). A current-thread runtime
/// has no other worker to hand them to: there `f` runs as is.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn apply_error(log_id: LogId, e: &ApplyError) -> StorageError {
    StorageIOError::apply(log_id, AnyError::new(e)).into()
}

impl StateMachine {
    /// The state machine of a ledger recovered from its snapshot up to `last_tx_id`: the
    /// entries wholly at or below it count as applied (a partly covered entry is applied
    /// again; the records the snapshot has are skipped), and so does the node's Raft
    /// snapshot, which the engine's snapshot covers (the node installed its image).
    pub fn new(
        shared: Arc<Shared>,
        log: LogStore,
        last_tx_id: u64,
        snapshots: Snapshots,
    ) -> StateMachine {
        let (mut applied, mut membership) = match snapshots.current() {
            Some(head) => {
                assert!(
                    last_tx_id >= head.covered_tx,
                    "the engine recovered to {last_tx_id}, before its Raft snapshot's {}",
                    head.covered_tx
                );
                (head.meta.last_log_id, head.meta.last_membership)
            }
            None => (None, StoredMembership::default()),
        };
        let mut pending_membership = None;
        for (log_id, last_tx, m) in log.tx_marks() {
            if let Some(m) = m {
                pending_membership = Some((log_id, m));
            }
            match last_tx {
                Some(last) if last <= last_tx_id => {
                    applied = applied.max(Some(log_id));
                    if let Some((id, m)) = pending_membership.take() {
                        membership = StoredMembership::new(Some(id), m);
                    }
                }
                Some(_) => break,
                None => {}
            }
        }
        let machine = StateMachine {
            shared,
            log,
            applied,
            membership,
            decoded: Decoded::default(),
            snapshots,
        };
        if let Some(applied) = applied {
            // The entries the snapshot covers are not applied again: their frames go
            // into the read index here, the rest as they are applied.
            machine.index(machine.log.frame_refs_through(applied.index));
        }
        machine
    }

    /// Notes frames in the read index of reads (`get_transaction`, history).
    fn index(&self, refs: Vec<FrameRef>) {
        let Ok(engine) = self.shared.ledger.started() else {
            return;
        };
        if let Some(hooks) = &engine.replica {
            let mut index = hooks.index.lock().unwrap_or_else(|e| e.into_inner());
            for r in refs {
                index.note(r.position, r.first_tx_id);
            }
        }
    }

    fn apply_frames(&mut self, log_id: LogId, frames: &Frames) -> Result<(), ApplyError> {
        let Some((_, last_tx)) = frames.tx_range() else {
            return Ok(());
        };
        let shared = &self.shared;
        let ours = log_id.leader_id.node_id == shared.id
            && shared.leading_term() == Some(log_id.leader_id.term);
        let engine = shared.ledger.started()?;
        if ours {
            shared.replicated.advance(last_tx);
        } else {
            if shared.leading_term().is_some() || shared.replicated.is_closed() {
                // A newer leader's entry while this node still runs (or ran) its own
                // term's pipeline, which holds executions that may never be replicated:
                // its ids may mean other transactions there. Nothing of it is published;
                // the node restarts from its log.
                shared.step_down();
                return Err(LedgerError::NotLeader.into());
            }
            self.decoded.clear();
            for f in frames.0.iter() {
                self.decoded
                    .decode_frame(&f.payload, f.first_tx_id, f.count, 0)?;
            }
            // The ring may be full until the stages catch up: wait off the async worker.
            let decoded = &self.decoded;
            blocking(|| engine.publish_replayed(&shared.replicated, decoded))?;
        }
        if let Some(refs) = self.log.frame_refs(log_id.index) {
            self.index(refs);
        }
        Ok(())
    }

    /// This node's blank entry is applied: so is everything before it. Lead, if Raft's
    /// metrics already say so (else the node's watcher does it when they do).
    fn maybe_lead(&self) {
        if let Some(raft) = self.shared.raft.get() {
            self.shared.try_lead(&raft.metrics().borrow());
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut replies = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            match entry.payload {
                EntryPayload::Blank if log_id.leader_id.node_id == self.shared.id => {
                    self.maybe_lead();
                }
                EntryPayload::Blank => {}
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m);
                }
                EntryPayload::Normal(frames) => self
                    .apply_frames(log_id, &frames)
                    .map_err(|e| apply_error(log_id, &e))?,
            }
            self.applied = Some(log_id);
            replies.push(());
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder {
            shared: Arc::clone(&self.shared),
            log: self.log.clone(),
            applied: self.applied,
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<std::io::Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(std::io::Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<std::io::Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        self.install(meta, snapshot.into_inner()).map_err(|e| {
            tracing::error!(node = self.shared.id, error = %e, "a Raft snapshot was not installed");
            StorageError::from(StorageIOError::write_snapshot(
                Some(meta.signature()),
                AnyError::new(&e),
            ))
        })?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let snapshot = self.snapshots.read().map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(None, AnyError::new(&e)))
        })?;
        Ok(snapshot.map(|s| s.into_openraft()))
    }
}

impl StateMachine {
    /// Installs a snapshot from the leader: kept as the node's (durably, first), the log
    /// made to continue it, then the node restarts from it (its engine still holds the
    /// state before it): the watermark closes, which the node's watcher acts on. A crash
    /// anywhere in between finishes the same at the next start.
    fn install(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        bytes: Vec<u8>,
    ) -> Result<(), SnapshotError> {
        let snapshot = RaftSnapshot::decode(bytes)?;
        if snapshot.head.meta.last_log_id != meta.last_log_id
            || snapshot.head.meta.last_membership != meta.last_membership
        {
            return Err(SnapshotError::Refused(format!(
                "its head names {:?}, the leader's meta {:?}",
                snapshot.head.meta.last_log_id, meta.last_log_id
            )));
        }
        self.snapshots.replace(&snapshot)?;
        self.log.install(&snapshot.head)?;
        tracing::info!(
            node = self.shared.id,
            last_log_id = ?meta.last_log_id,
            image_tx = snapshot.image_tx,
            "installed a Raft snapshot: restarting from it"
        );
        self.shared.step_down();
        Ok(())
    }
}

/// Builds Raft snapshots on a blocking thread: has the engine write a snapshot of what it
/// shows now (all of it replicated), then names the log prefix it covers, up to what was
/// applied when the build began.
pub(crate) struct Builder {
    shared: Arc<Shared>,
    log: LogStore,
    applied: Option<LogId>,
    snapshots: Snapshots,
}

/// How long a build waits for the engine to show a transaction of the applied log (its
/// pipeline trails the log by a batch or so) before it gives up.
const BUILD_ATTEMPTS: u32 = 200;
const BUILD_RETRY: Duration = Duration::from_millis(50);

impl Builder {
    /// The snapshot built, or the head of the current one when nothing newer could be
    /// built.
    fn build(&self) -> Result<Built, SnapshotError> {
        let current = self.snapshots.current();
        let Some(applied) = self.applied else {
            return current
                .map(Built::Unchanged)
                .ok_or_else(|| SnapshotError::Refused("nothing applied yet".into()));
        };
        for _ in 0..BUILD_ATTEMPTS {
            let engine = self.shared.ledger.started()?;
            let written = engine.write_snapshot_now()?;
            let head = written
                .as_ref()
                .and_then(|(tx, _)| self.log.covered(applied, *tx));
            if let (Some(head), Some((_, path))) = (head, written) {
                if let Some(c) = &current
                    && c.meta.last_log_id >= head.meta.last_log_id
                {
                    return Ok(Built::Unchanged(c.clone()));
                }
                let image = match ledger_storage::read_whole(self.snapshots.storage.as_ref(), &path)
                {
                    Ok(image) => image,
                    // Retention removed it already: a newer one is there.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                let snapshot = RaftSnapshot::new(head, &image)?;
                return Ok(match self.snapshots.replace(&snapshot)? {
                    true => Built::New(snapshot),
                    false => Built::Unchanged(snapshot.head),
                });
            }
            if let Some(c) = current {
                return Ok(Built::Unchanged(c));
            }
            std::thread::sleep(BUILD_RETRY);
        }
        Err(SnapshotError::Refused(
            "the engine never showed a transaction of the applied log".into(),
        ))
    }
}

/// What a build gave.
enum Built {
    New(RaftSnapshot),
    Unchanged(SnapshotHead),
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let builder = Builder {
            shared: Arc::clone(&self.shared),
            log: self.log.clone(),
            applied: self.applied,
            snapshots: self.snapshots.clone(),
        };
        let built = tokio::task::spawn_blocking(move || builder.build())
            .await
            .map_err(|e| SnapshotError::Refused(e.to_string()))
            .and_then(|r| r);
        match built {
            Ok(Built::New(snapshot)) => Ok(snapshot.into_openraft()),
            // openraft 0.9 takes only the meta of a built snapshot (and asks for the
            // current one, data and all, when it sends it): no need to read the file.
            Ok(Built::Unchanged(head)) => Ok(Snapshot {
                meta: head.meta,
                snapshot: Box::new(std::io::Cursor::new(Vec::new())),
            }),
            Err(e) => {
                tracing::error!(node = self.shared.id, error = %e, "a Raft snapshot was not built");
                Err(StorageIOError::read_state_machine(AnyError::new(&e)).into())
            }
        }
    }
}
