//! One node of a cluster: the engine in replica mode, the WAL as openraft's log store,
//! and the role changes. A node that leads takes submissions once its whole log is
//! applied; a node deposed with batches in flight (executed ahead, perhaps never to be
//! replicated) fails them, then restarts from its log in place, exactly as after a crash:
//! the log store, the engine (snapshot, then the committed log applied again) and Raft.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ledger_pipeline::StageError;
use ledger_storage::Storage;
use openraft::{BasicNode, ChangeMembers, RaftNetworkFactory, ServerState, SnapshotPolicy};

use super::log_store::LogStore;
use super::raft_snapshot::RaftSnapshot;
use super::state_machine::{Shared, Snapshots, StateMachine};
use super::types::{Frames, NodeId, Raft};
use crate::ledger::replica::{EncodedFrame, Propose, Watermark};
use crate::ledger::{Ledger, LedgerConfig, LedgerError};

/// How often a node's watcher looks at Raft's metrics when nothing changed.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// A cluster node's settings beside the engine's [`LedgerConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's id: a key of `peers`.
    pub node_id: NodeId,
    /// Every voting node, this one included, by the address its gRPC service listens on.
    /// A fresh cluster forms from this list alone (each node proposes the same initial
    /// membership); later changes go through membership operations.
    pub peers: BTreeMap<NodeId, String>,
    /// How often the leader sends heartbeats.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time in this range starts an election.
    pub election_timeout: (Duration, Duration),
    /// Memory for recent entries' payloads, so replication reads no disk.
    pub log_cache_bytes: usize,
    /// This node joins an existing cluster (the leader adds it): it never proposes an
    /// initial membership of its own.
    pub join: bool,
    /// Build a Raft snapshot (of the engine as it is then) after this many log
    /// entries, then forget the entries it covers but the last `keep_entries_after_snapshot`:
    /// a node that lags further, or joins, catches up from the snapshot. 0: never (the
    /// whole log is kept and replayed to a lagging node).
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a Raft snapshot, for followers a little behind.
    pub keep_entries_after_snapshot: u64,
    /// The nice value of the engine's stage threads on this node (replaces
    /// [`LedgerConfig::stage_nice`]). A replication round trip is several thread
    /// wake-ups on each node; on a machine whose cores the stages keep busy, each one
    /// would otherwise wait for a stage's time slice to end.
    pub stage_nice: i32,
}

impl ClusterConfig {
    /// A node of `peers` with default timings: heartbeats every 50 ms, elections after
    /// 200-400 ms of silence. openraft makes a follower that knew a leader wait out that
    /// leader's lease (the longest election timeout) too, so a leader's death is noticed
    /// after 0.6-0.8 s. (At 250-500 ms, 200 kills under load took up to 3.1 s to the
    /// first write acknowledged by the new leader; at 200-400 ms, up to 2.6 s, with no
    /// election under full load on two cores shared by three nodes.)
    pub fn new(node_id: NodeId, peers: BTreeMap<NodeId, String>) -> ClusterConfig {
        ClusterConfig {
            node_id,
            peers,
            heartbeat: Duration::from_millis(50),
            election_timeout: (Duration::from_millis(200), Duration::from_millis(400)),
            log_cache_bytes: 64 << 20,
            join: false,
            snapshot_every_entries: 65_536,
            keep_entries_after_snapshot: 1024,
            stage_nice: 10,
        }
    }

    fn raft_config(&self) -> Result<openraft::Config, ClusterError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        openraft::Config {
            cluster_name: "roda-ledger".into(),
            heartbeat_interval: ms(self.heartbeat),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            snapshot_policy: match self.snapshot_every_entries {
                0 => SnapshotPolicy::Never,
                n => SnapshotPolicy::LogsSinceLast(n),
            },
            max_in_snapshot_log_to_keep: self.keep_entries_after_snapshot,
            // Sending a chunk of a snapshot (3 MiB) and installing the last one (a file
            // written and synced, the log reset) on a loaded machine.
            install_snapshot_timeout: 10_000,
            // An entry holds up to a ring of transactions (~1.7 MB of transfers at the
            // default 65,536): few per message keeps AppendEntries within the peers'
            // message limit (RAFT_MESSAGE_BYTES_MAX in the server).
            max_payload_entries: 32,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Config(e.to_string()))
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the replicated log: {0}")]
    Raft(String),
    /// The data directory is still locked (by this process's previous engine, which a
    /// read in flight holds for a moment): trying again succeeds.
    #[error("the data directory is still in use: {0}")]
    Busy(String),
}

impl ClusterError {
    fn from_open(e: super::log_store::OpenError) -> ClusterError {
        match e {
            super::log_store::OpenError::Wal(ledger_wal::WalError::Locked { .. }) => {
                ClusterError::Busy(e.to_string())
            }
            e => ClusterError::Raft(e.to_string()),
        }
    }

    /// Installing a Raft snapshot's image failed: busy while the engine this process is
    /// letting go of still holds the snapshot directory (a restart retries), else an error.
    fn from_image(e: ledger_snapshot::SnapshotError) -> ClusterError {
        let message = format!("installing the Raft snapshot's image: {e}");
        match e {
            ledger_snapshot::SnapshotError::Locked { .. } => ClusterError::Busy(message),
            _ => ClusterError::Raft(message),
        }
    }

    fn is_busy(&self) -> bool {
        match self {
            ClusterError::Busy(_) => true,
            ClusterError::Ledger(LedgerError::Wal(e)) => {
                matches!(**e, ledger_wal::WalError::Locked { .. })
            }
            ClusterError::Ledger(LedgerError::Snapshot(e)) => {
                matches!(**e, ledger_snapshot::SnapshotError::Locked { .. })
            }
            _ => false,
        }
    }
}

/// How long a restarting node waits for its directory to be let go of before it gives up.
const REOPEN_PATIENCE: Duration = Duration::from_secs(60);

/// Why a membership change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("this node does not lead the cluster")]
    NotLeader,
    #[error("the membership change was refused: {0}")]
    Refused(String),
}

fn membership_error(
    e: openraft::error::RaftError<NodeId, openraft::error::ClientWriteError<NodeId, BasicNode>>,
) -> MembershipError {
    match e {
        openraft::error::RaftError::APIError(
            openraft::error::ClientWriteError::ForwardToLeader(_),
        ) => MembershipError::NotLeader,
        other => MembershipError::Refused(other.to_string()),
    }
}

/// A node's role and indexes, as [`ClusterNode::status`] reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader: Option<(NodeId, String)>,
    /// Whether it takes submissions (it leads and has applied its whole log).
    pub writable: bool,
    /// Executed by this node's transactor (on the leader: ahead of replication).
    pub computed: u64,
    /// Durable in this node's own WAL. Internal: in a cluster nothing is acknowledged
    /// before it is replicated.
    pub durable: u64,
    /// Durable on a majority and applied in order: what `Committed` and `Replicated`
    /// waits report.
    pub replicated: u64,
    /// Visible to reads on this node.
    pub applied: u64,
    /// The replicated log's last entry index, and the last applied entry index.
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// Every voter, by id and address.
    pub members: BTreeMap<NodeId, String>,
    /// On the leader: each node's last replicated entry index.
    pub matched: BTreeMap<NodeId, Option<u64>>,
    /// The last entry the node's Raft snapshot covers, and the last entry forgotten
    /// from its log (a node further behind catches up from the snapshot).
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// Why the replicated log stopped, if it did.
    pub failure: Option<String>,
}

/// A node's role in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    /// Restarting after losing its leadership, or stopped.
    Down,
}

/// The running parts of a node, replaced as a whole by a restart.
struct Running {
    raft: Raft,
    shared: Arc<Shared>,
    log: LogStore,
}

/// How often a node looks for WAL segments nothing needs any more.
const RETAIN_INTERVAL: Duration = Duration::from_secs(1);

impl Running {
    /// Removes the WAL segments that hold only entries Raft purged and records the
    /// engine needs for neither its snapshots nor its history retention.
    fn retain(&self) {
        let Ok(engine) = self.shared.ledger.started() else {
            return;
        };
        let Some(hooks) = &engine.replica else {
            return;
        };
        let Some(floor) = hooks.wal_floor(self.log.durable_tx()) else {
            return;
        };
        match self.log.remove_segments_below(floor) {
            Ok(removed) => {
                if let Some(newest) = removed.iter().map(|s| s.number).max() {
                    hooks.removed_below(newest + 1);
                    tracing::debug!(
                        segments = removed.len(),
                        below_tx = floor,
                        "old WAL segments removed"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "old WAL segments could not be removed"),
        }
    }
}

/// Hands each batch's frames to Raft from the engine's propose stage (a plain thread).
struct RaftProposer {
    raft: Arc<OnceLock<Raft>>,
    runtime: tokio::runtime::Handle,
}

impl Propose for RaftProposer {
    fn propose(&mut self, frames: Vec<EncodedFrame>) -> Result<(), StageError> {
        let raft = self.raft.get().ok_or("the replicated log is not running")?;
        // Fire and forget: the state machine applies the entry once it is committed,
        // which lets the batch through the gate; a lost leadership closes the gate.
        let responder = self
            .runtime
            .block_on(raft.client_write_ff(Frames(frames.into())))?;
        drop(responder);
        Ok(())
    }
}

/// One node of a ledger cluster. Cheap to share (`Arc`); the ledger behind it changes
/// when the node restarts after a lost leadership, so take [`ClusterNode::ledger`] per use.
pub struct ClusterNode<N> {
    config: ClusterConfig,
    ledger_config: LedgerConfig,
    storage: Arc<dyn Storage>,
    network: N,
    /// `None` while restarting and after shutdown.
    running: Mutex<Option<Arc<Running>>>,
    /// Why the node stopped for good (a restart that failed), if it did.
    failure: Mutex<Option<String>>,
    shut_down: std::sync::atomic::AtomicBool,
    runtime: tokio::runtime::Handle,
}

impl<N> std::fmt::Debug for ClusterNode<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("node_id", &self.config.node_id)
            .finish_non_exhaustive()
    }
}

impl<N> ClusterNode<N>
where
    N: RaftNetworkFactory<super::types::TypeConfig> + Clone,
{
    /// Opens the node's data directory (WAL, snapshots, vote), recovers and joins the
    /// cluster: on a fresh directory it proposes `peers` as the initial membership.
    /// Call from within a tokio runtime.
    pub async fn start(
        ledger_config: LedgerConfig,
        storage: Arc<dyn Storage>,
        config: ClusterConfig,
        network: N,
    ) -> Result<Arc<ClusterNode<N>>, ClusterError> {
        if !config.join && !config.peers.contains_key(&config.node_id) {
            return Err(ClusterError::Config(format!(
                "node {} is not among the peers {:?}",
                config.node_id,
                config.peers.keys().collect::<Vec<_>>()
            )));
        }
        let node = Arc::new(ClusterNode {
            config,
            ledger_config,
            storage,
            network,
            running: Mutex::new(None),
            failure: Mutex::new(None),
            shut_down: std::sync::atomic::AtomicBool::new(false),
            runtime: tokio::runtime::Handle::current(),
        });
        let running = node.open().await?;
        node.initialize(&running.raft).await?;
        *node.lock() = Some(running);
        tokio::spawn(Arc::clone(&node).watch());
        Ok(node)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Running>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running(&self) -> Option<Arc<Running>> {
        self.lock().clone()
    }

    async fn open(&self) -> Result<Arc<Running>, ClusterError> {
        let storage = &self.storage;
        let data_dir = &self.ledger_config.data_dir;
        storage
            .create_dir_all(&self.ledger_config.wal_dir())
            .map_err(|e| ClusterError::Raft(format!("{}: {e}", data_dir.display())))?;
        let raft_snapshot = RaftSnapshot::read(storage.as_ref(), data_dir)
            .map_err(|e| ClusterError::Raft(format!("{}: {e}", data_dir.display())))?;
        if let Some(snapshot) = &raft_snapshot {
            self.install_image(snapshot)?;
        }
        let log = LogStore::open(
            Arc::clone(storage),
            &self.ledger_config.wal_dir(),
            data_dir,
            crate::ledger::recovery::wal_config(&self.ledger_config),
            self.config.log_cache_bytes,
            raft_snapshot.as_ref().map(|s| &s.head),
        )
        .map_err(ClusterError::from_open)?;
        // A node comes back from a (re)start as a follower, never as the leader it was:
        // it leads again only through a new term, whose blank entry makes it writable.
        log.forget_own_leadership(self.config.node_id);
        let raft_cell = Arc::new(OnceLock::new());
        let replicated = Watermark::new(0);
        let ledger_config = LedgerConfig {
            stage_nice: self.config.stage_nice,
            ..self.ledger_config.clone()
        };
        let mut ledger = Ledger::with_storage(ledger_config, Arc::clone(storage));
        ledger.start_replica(
            Box::new(RaftProposer {
                raft: Arc::clone(&raft_cell),
                runtime: self.runtime.clone(),
            }),
            Arc::clone(&replicated),
        )?;
        let last_tx_id = ledger.recovery_report().map_or(0, |r| r.last_tx_id);
        if let Some(snapshot) = &raft_snapshot
            && last_tx_id < snapshot.head.covered_tx
        {
            return Err(ClusterError::Raft(format!(
                "the engine recovered to transaction {last_tx_id}, before its Raft snapshot's {}",
                snapshot.head.covered_tx
            )));
        }
        let shared = Arc::new(Shared {
            id: self.config.node_id,
            ledger: Arc::new(ledger),
            replicated,
            leading_term: Mutex::new(None),
            raft: raft_cell,
        });
        let snapshots = Snapshots {
            storage: Arc::clone(storage),
            dir: data_dir.clone(),
            current: Arc::new(Mutex::new(raft_snapshot.map(|s| s.head))),
        };
        let state_machine =
            StateMachine::new(Arc::clone(&shared), log.clone(), last_tx_id, snapshots);
        let raft = Raft::new(
            self.config.node_id,
            Arc::new(self.config.raft_config()?),
            self.network.clone(),
            log.clone(),
            state_machine,
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let _ = shared.raft.set(raft.clone());
        Ok(Arc::new(Running { raft, shared, log }))
    }

    /// Puts the image of the node's Raft snapshot among the engine's snapshots, unless
    /// one as new is there (an installation a restart or crash interrupted ends here).
    fn install_image(&self, snapshot: &RaftSnapshot) -> Result<(), ClusterError> {
        let dir = self.ledger_config.snapshot_dir();
        let failed = ClusterError::from_image;
        let newest =
            ledger_snapshot::newest_sequence(self.storage.as_ref(), &dir).map_err(failed)?;
        if newest.is_some_and(|n| n >= snapshot.image_tx) {
            return Ok(());
        }
        let store = ledger_snapshot::SnapshotStore::open_on(
            Arc::clone(&self.storage),
            &dir,
            ledger_snapshot::SnapshotConfig::default().with_keep(self.ledger_config.snapshots_kept),
        )
        .map_err(failed)?;
        store.install(snapshot.image()).map_err(failed)?;
        Ok(())
    }

    /// A fresh node proposes `peers` as the first membership; every node of a new
    /// cluster does, with the same list, so whichever wins the first election agrees.
    async fn initialize(&self, raft: &Raft) -> Result<(), ClusterError> {
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        if initialized || self.config.join {
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> = self
            .config
            .peers
            .iter()
            .map(|(&id, addr)| (id, BasicNode::new(addr)))
            .collect();
        match raft.initialize(members).await {
            Ok(()) => Ok(()),
            // A peer's election reached this node first: it is part of the cluster.
            Err(openraft::error::RaftError::APIError(
                openraft::error::InitializeError::NotAllowed(_),
            )) => Ok(()),
            Err(e) => Err(ClusterError::Raft(e.to_string())),
        }
    }

    /// Follows the role: a node that led and no longer does (a newer term, another
    /// leader, or a newer leader's entry applied) restarts from its log.
    async fn watch(self: Arc<Self>) {
        while let Some(running) = self.running() {
            let mut metrics = running.raft.metrics();
            let mut last_retained = std::time::Instant::now();
            let mut purged_seen = None;
            // What happened before this subscription counts too.
            running.shared.try_lead(&metrics.borrow().clone());
            loop {
                // Also look every so often without a change: taking the leadership must
                // not depend on one notification arriving.
                let changed = match tokio::time::timeout(WATCH_INTERVAL, metrics.changed()).await {
                    Ok(changed) => changed,
                    Err(_) => Ok(()),
                };
                let m = metrics.borrow().clone();
                running.shared.try_lead(&m);
                // After Raft purges entries, and now and then for the engine's floors.
                if m.purged != purged_seen || last_retained.elapsed() >= RETAIN_INTERVAL {
                    running.retain();
                    purged_seen = m.purged;
                    last_retained = std::time::Instant::now();
                }
                // Deposed: a newer term, another leader, not leading any more, or the
                // replicated log stopped (a failed append): batches in flight could wait
                // forever otherwise.
                if let Some(term) = running.shared.leading_term()
                    && (m.current_term != term
                        || m.current_leader != Some(self.config.node_id)
                        || m.state != ServerState::Leader
                        || m.running_state.is_err()
                        || changed.is_err())
                {
                    running.shared.step_down();
                }
                if changed.is_err() || running.shared.replicated.is_closed() {
                    break;
                }
            }
            // Whatever ended the loop, nothing may wait on this engine's gate any more.
            running.shared.step_down();
            if self.is_shut_down() {
                return;
            }
            tracing::warn!(
                node = self.config.node_id,
                "restarting in place from the snapshot and the log (deposed with batches in \
                 flight, or a Raft snapshot installed)"
            );
            if let Err(e) = self.restart(running).await {
                tracing::error!(node = self.config.node_id, error = %e, "restart failed");
                return;
            }
        }
    }

    fn is_shut_down(&self) -> bool {
        self.shut_down.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn restart(&self, old: Arc<Running>) -> Result<(), ClusterError> {
        self.lock().take();
        let _ = old.raft.shutdown().await;
        // Stopping drains the pipeline (its gate is closed) and may write a snapshot:
        // off the async workers.
        let ledger = Arc::clone(&old.shared.ledger);
        let _ = tokio::task::spawn_blocking(move || ledger.stop()).await;
        drop(old);
        // In-flight reads may still hold the old ledger (and its directory locks) for a
        // while: retry until they let go, or until the node is shut down. Any other error
        // would come back every time (a damaged log): the node stays down and says why.
        let started = std::time::Instant::now();
        let running = loop {
            match self.open().await {
                Ok(running) => break running,
                Err(e)
                    if e.is_busy()
                        && !self.is_shut_down()
                        && started.elapsed() < REOPEN_PATIENCE =>
                {
                    tracing::debug!(error = %e, "reopening after a lost leadership");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    return Err(e);
                }
            }
        };
        if self.is_shut_down() {
            let _ = running.raft.shutdown().await;
            return Ok(());
        }
        *self.lock() = Some(running);
        tracing::info!(node = self.config.node_id, "restarted from the log");
        Ok(())
    }

    /// The ledger as of now: reads on any node, writes on the leader.
    ///
    /// # Errors
    /// [`LedgerError::Stopped`] while the node restarts or after shutdown.
    pub fn ledger(&self) -> Result<Arc<Ledger>, LedgerError> {
        self.running()
            .map(|r| Arc::clone(&r.shared.ledger))
            .ok_or(LedgerError::Stopped)
    }

    /// The Raft handle, for the network service to hand incoming RPCs to.
    pub fn raft(&self) -> Option<Raft> {
        self.running().map(|r| r.raft.clone())
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.node_id
    }

    /// The leader this node knows of, with its address.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let running = self.running()?;
        let m = running.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .or_else(|| self.config.peers.get(&id).cloned())?;
        Some((id, addr))
    }

    /// A linearizable read point: confirms with a majority that this node still leads
    /// (Raft's read index), waits for the log to be applied up to it, and returns the
    /// last replicated transaction id; a read that then waits until it is visible sees
    /// every write acknowledged anywhere before the call.
    ///
    /// # Errors
    /// [`LedgerError::NotLeader`] on a node that does not lead (or no longer does);
    /// [`LedgerError::Stopped`] while restarting.
    pub async fn read_index(&self) -> Result<u64, LedgerError> {
        let running = self.running().ok_or(LedgerError::Stopped)?;
        if running.shared.leading_term().is_none() {
            return Err(LedgerError::NotLeader);
        }
        running
            .raft
            .ensure_linearizable()
            .await
            .map_err(|_| LedgerError::NotLeader)?;
        Ok(running.shared.replicated.get())
    }

    /// Adds node `id`, serving at `address`: it catches up from the log as a learner,
    /// then becomes a voter. Returns the voters after the change. On the leader only.
    ///
    /// # Errors
    /// [`MembershipError::NotLeader`] on a node that does not lead; a refused change.
    pub async fn add_node(
        &self,
        id: NodeId,
        address: String,
    ) -> Result<BTreeMap<NodeId, String>, MembershipError> {
        let raft = self.leader_raft()?;
        raft.add_learner(id, BasicNode::new(address), true)
            .await
            .map_err(membership_error)?;
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(membership_error)?;
        Ok(self.status().members)
    }

    /// Removes node `id` from the voters (and the cluster). On the leader only.
    ///
    /// # Errors
    /// As [`add_node`](Self::add_node).
    pub async fn remove_node(
        &self,
        id: NodeId,
    ) -> Result<BTreeMap<NodeId, String>, MembershipError> {
        let raft = self.leader_raft()?;
        raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(membership_error)?;
        Ok(self.status().members)
    }

    fn leader_raft(&self) -> Result<Raft, MembershipError> {
        let running = self.running().ok_or(MembershipError::NotLeader)?;
        if running.shared.leading_term().is_none() {
            return Err(MembershipError::NotLeader);
        }
        Ok(running.raft.clone())
    }

    /// Role, term and indexes of this node.
    pub fn status(&self) -> NodeStatus {
        let Some(running) = self.running() else {
            return NodeStatus {
                node_id: self.config.node_id,
                role: Role::Down,
                term: 0,
                leader: None,
                writable: false,
                computed: 0,
                durable: 0,
                replicated: 0,
                applied: 0,
                last_log_index: None,
                last_applied_index: None,
                members: self.config.peers.clone(),
                matched: BTreeMap::new(),
                snapshot_index: None,
                purged_index: None,
                failure: self
                    .failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            };
        };
        let m = running.raft.metrics().borrow().clone();
        let index = running.shared.ledger.pipeline_index();
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Down,
        };
        NodeStatus {
            node_id: self.config.node_id,
            role,
            term: m.current_term,
            leader: self.leader(),
            writable: running.shared.leading_term().is_some(),
            computed: index.computed,
            durable: running.log.durable_tx(),
            replicated: running.shared.replicated.get(),
            applied: index.snapshot,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            members: m
                .membership_config
                .membership()
                .nodes()
                .map(|(&id, n)| (id, n.addr.clone()))
                .collect(),
            matched: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(&id, l)| (id, l.map(|l| l.index))).collect())
                .unwrap_or_default(),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            failure: m.running_state.as_ref().err().map(|e| e.to_string()),
        }
    }

    /// Stops Raft and the engine. Idempotent.
    pub async fn shutdown(&self) {
        self.shut_down
            .store(true, std::sync::atomic::Ordering::Release);
        let running = self.lock().take();
        if let Some(running) = running {
            running.shared.step_down();
            let _ = running.raft.shutdown().await;
            let ledger = Arc::clone(&running.shared.ledger);
            let _ = tokio::task::spawn_blocking(move || ledger.stop()).await;
            // Returns with the directory free for a new start in this process.
            if !running.log.released(Duration::from_secs(10)).await {
                tracing::warn!(
                    node = self.config.node_id,
                    "the log is still held after shutdown"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_log(dir: &std::path::Path) -> Result<LogStore, super::super::log_store::OpenError> {
        LogStore::open(
            ledger_storage::real(),
            &dir.join("wal"),
            dir,
            ledger_wal::WalConfig::default(),
            1 << 20,
            None,
        )
    }

    /// A restart retries only what goes away by itself: a directory still locked by the
    /// engine this process is letting go of. A damaged log stays an error.
    #[test]
    fn only_a_locked_directory_is_worth_retrying() {
        let dir = tempfile::tempdir().unwrap();
        let held = open_log(dir.path()).unwrap();
        let locked = ClusterError::from_open(open_log(dir.path()).unwrap_err());
        assert!(matches!(locked, ClusterError::Busy(_)), "{locked:?}");
        assert!(locked.is_busy());
        drop(held);

        let snapshots_locked = ClusterError::Ledger(LedgerError::Snapshot(Arc::new(
            ledger_snapshot::SnapshotError::Locked {
                path: dir.path().join("snapshots.lock"),
            },
        )));
        assert!(snapshots_locked.is_busy());

        // The snapshot directory still held while a restart installs a Raft snapshot's
        // image into it (the cluster simulator's seed 57 found it left the node down).
        let snapshots = dir.path().join("snapshots");
        let open_store = || {
            ledger_snapshot::SnapshotStore::open_on(
                ledger_storage::real(),
                &snapshots,
                ledger_snapshot::SnapshotConfig::default(),
            )
        };
        let held_store = open_store().unwrap();
        let image_locked = ClusterError::from_image(open_store().unwrap_err());
        assert!(image_locked.is_busy(), "{image_locked:?}");
        drop(held_store);

        // A WAL segment that is not one: refused at open, every time.
        let segment = dir
            .path()
            .join("wal")
            .join(ledger_wal::segment_file_name(1));
        std::fs::write(
            &segment,
            b"not a segment header, nothing like it at all........",
        )
        .unwrap();
        let damaged = ClusterError::from_open(open_log(dir.path()).unwrap_err());
        assert!(!damaged.is_busy(), "{damaged:?}");
        assert!(!ClusterError::Config("bad".into()).is_busy());
    }
}
