//! Three cluster nodes in one process over an in-memory network that can cut links:
//! replication, reads on every node, a refused write on a follower, failover with ids
//! continuing gap-free, a deposed leader restarting from its log, a minority that never
//! acknowledges. Bounded waits only (polls with generous limits), no sleeps as asserts.

mod net;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_core::cluster::{ClusterConfig, ClusterNode, NodeId, Role};
use ledger_core::ledger::{Ledger, LedgerConfig, LedgerError};
use ledger_core::transaction::{Operation, WaitLevel};

use net::{Node, Router};

const IDS: [NodeId; 3] = [1, 2, 3];

fn peers() -> BTreeMap<NodeId, String> {
    IDS.iter().map(|&id| (id, format!("node-{id}"))).collect()
}

fn ledger_config(dir: &std::path::Path) -> LedgerConfig {
    ledger_config_sized(dir, 1_000)
}

fn ledger_config_sized(dir: &std::path::Path, max_accounts: u64) -> LedgerConfig {
    let mut config = LedgerConfig::in_dir(dir);
    config.max_accounts = max_accounts;
    config.ring_size = 1 << 10;
    config.read_cache_bytes = 0;
    config
}

struct Cluster {
    router: Router,
    dirs: Vec<tempfile::TempDir>,
    /// Raft snapshots every this many entries, keeping this many behind (None: the
    /// defaults, which these short tests never reach).
    snapshots: Option<(u64, u64)>,
    max_accounts: u64,
    /// WAL segments of 8 KiB and engine snapshots every 20 transactions, keeping the
    /// last 20 for history: the log's retention has something to remove.
    small_wal: bool,
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_with(IDS.len()).await
    }

    /// Starts nodes 1..=3 as the cluster; `dirs` more directories for nodes that join.
    async fn start_with(dirs: usize) -> Cluster {
        Cluster::start_configured(dirs, None).await
    }

    async fn start_configured(dirs: usize, snapshots: Option<(u64, u64)>) -> Cluster {
        Cluster::start_full(dirs, snapshots, false).await
    }

    async fn start_full(dirs: usize, snapshots: Option<(u64, u64)>, small_wal: bool) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let cluster = Cluster {
            router: Router::default(),
            dirs: (0..dirs).map(|_| tempfile::tempdir().unwrap()).collect(),
            snapshots,
            // Snapshots of 250,000 accounts (4 MB) travel in two chunks.
            max_accounts: if snapshots.is_some() { 250_000 } else { 1_000 },
            small_wal,
        };
        for id in IDS {
            cluster.start_node(id).await;
        }
        cluster
    }

    async fn start_node(&self, id: NodeId) -> Arc<Node> {
        self.start_node_with(id, false).await
    }

    async fn start_node_with(&self, id: NodeId, join: bool) -> Arc<Node> {
        let dir = self.dirs[(id - 1) as usize].path();
        let mut config = ClusterConfig::new(id, peers());
        config.join = join;
        if let Some((every, keep)) = self.snapshots {
            config.snapshot_every_entries = every;
            config.keep_entries_after_snapshot = keep;
        }
        let mut ledger_config = ledger_config_sized(dir, self.max_accounts);
        if self.small_wal {
            ledger_config.wal_segment_bytes = 8 << 10;
            ledger_config.wal_frame_bytes = 4096;
            ledger_config.snapshot_interval_tx = 20;
            ledger_config.history_retention_tx = 20;
        }
        let node = ClusterNode::start(
            ledger_config,
            ledger_core::storage::real(),
            config,
            self.router.for_node(id),
        )
        .await
        .unwrap();
        self.router
            .nodes
            .lock()
            .unwrap()
            .insert(id, Arc::clone(&node));
        node
    }

    /// Rounds `rounds` of three deposits each on `leader`, each replicated; the id of
    /// the last transaction.
    async fn deposit_rounds(&self, leader: NodeId, rounds: std::ops::Range<u64>) -> u64 {
        let mut last = 0;
        for round in rounds {
            let ops = (0..3)
                .map(|i| deposit((round + i) % 20, 10 + i, 100 * round + i + 1))
                .collect();
            last = self
                .on(leader, |l| net::replicate(l, ops).unwrap())
                .await
                .last()
                .unwrap()
                .tx_id;
        }
        last
    }

    async fn kill(&self, id: NodeId) {
        let node = self.router.nodes.lock().unwrap().remove(&id).unwrap();
        node.shutdown().await;
    }

    fn node(&self, id: NodeId) -> Arc<Node> {
        self.router.nodes.lock().unwrap()[&id].clone()
    }

    fn live(&self) -> Vec<NodeId> {
        self.router.nodes.lock().unwrap().keys().copied().collect()
    }

    /// Waits (bounded) for a writable leader among `among` that every node of `among`
    /// follows (so no election from the start-up is still in flight).
    async fn leader(&self, among: &[NodeId]) -> NodeId {
        eventually("a writable leader that every node follows", || {
            let leader = among
                .iter()
                .copied()
                .find(|&id| self.node(id).status().writable)?;
            among
                .iter()
                .all(|&id| self.node(id).leader().map(|l| l.0) == Some(leader))
                .then_some(leader)
        })
        .await
    }

    /// Runs a blocking call on node `id`'s ledger off the runtime's workers. The node's
    /// ledger is taken per call: a node replaces it when it restarts after a lost
    /// leadership, and a held one would keep its directory locked.
    async fn on<T: Send + 'static>(
        &self,
        id: NodeId,
        f: impl FnOnce(&Ledger) -> T + Send + 'static,
    ) -> T {
        let ledger = self.node(id).ledger().unwrap();
        tokio::task::spawn_blocking(move || f(&ledger))
            .await
            .unwrap()
    }
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn deposit(account: u64, amount: u64, user_ref: u64) -> Operation {
    Operation::Deposit {
        account,
        amount,
        user_ref,
    }
}

fn transfer(from: u64, to: u64, amount: u64, user_ref: u64) -> Operation {
    Operation::Transfer {
        from,
        to,
        amount,
        user_ref,
    }
}

/// Every live node's balances of accounts 0..20 once it has applied `tx_id`.
async fn balances_everywhere(cluster: &Cluster, tx_id: u64) -> Vec<Vec<i64>> {
    let accounts: Vec<u64> = (0..20).collect();
    let mut out = Vec::new();
    for id in cluster.live() {
        let node = cluster.node(id);
        eventually("a node to apply the last write", || {
            (node.status().applied >= tx_id).then_some(())
        })
        .await;
        let balances = node.ledger().unwrap().get_balances(&accounts);
        assert!(balances.last_snapshot_tx_id >= tx_id);
        out.push(balances.balances);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_fail_over_and_converge() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader(&IDS).await;

    // Writes on the leader, acknowledged once on a majority.
    let results = cluster
        .on(leader, |l| {
            let mut ops: Vec<Operation> = (1..=10).map(|a| deposit(a, 1_000, 100 + a)).collect();
            ops.extend((1..=10).map(|a| transfer(a, a + 10, 10 * a, 200 + a)));
            net::replicate(l, ops).unwrap()
        })
        .await;
    assert!(results.iter().all(|r| r.is_committed()));
    let last = results.last().unwrap().tx_id;
    assert_eq!(results.first().unwrap().tx_id, 1);
    assert_eq!(last, 20);

    let everywhere = balances_everywhere(&cluster, last).await;
    assert!(
        everywhere.windows(2).all(|w| w[0] == w[1]),
        "{everywhere:?}"
    );
    assert_eq!(everywhere[0][3], 1_000 - 30);
    assert_eq!(everywhere[0][13], 30);
    assert_eq!(everywhere[0][0], -10_000);

    // The same transaction, with the same entries, on every node.
    let on_leader = cluster.on(leader, |l| l.get_transaction(15)).await.unwrap();
    for id in IDS {
        let tx = cluster
            .node(id)
            .ledger()
            .unwrap()
            .get_transaction(15)
            .unwrap();
        assert_eq!(tx, on_leader, "node {id}");
    }

    // A follower refuses writes.
    let follower = IDS.into_iter().find(|&id| id != leader).unwrap();
    let refused = cluster
        .node(follower)
        .ledger()
        .unwrap()
        .try_submit(deposit(1, 1, 0));
    assert!(
        matches!(refused, Err(LedgerError::NotLeader)),
        "{refused:?} leader {leader} follower {follower}: {:#?}",
        IDS.map(|id| cluster.node(id).status())
    );
    assert_eq!(cluster.node(follower).leader().map(|l| l.0), Some(leader));

    // The leader dies; a new one takes writes; ids continue with no gap.
    cluster.kill(leader).await;
    let survivors: Vec<NodeId> = cluster.live();
    let new_leader = cluster.leader(&survivors).await;
    assert_ne!(new_leader, leader);
    let next = cluster
        .on(new_leader, |l| {
            net::replicate(l, vec![deposit(5, 7, 300)]).unwrap()[0]
        })
        .await;
    assert!(next.is_committed());
    assert_eq!(next.tx_id, last + 1);
    // A retry of an acknowledged write is a duplicate on the new leader too.
    let again = cluster
        .on(new_leader, |l| {
            net::replicate(l, vec![transfer(3, 13, 30, 203)]).unwrap()[0]
        })
        .await;
    assert!(!again.is_committed(), "{again:?}");

    // The old leader comes back and catches up from the log.
    cluster.start_node(leader).await;
    let everywhere = balances_everywhere(&cluster, again.tx_id).await;
    assert_eq!(everywhere.len(), 3);
    assert!(
        everywhere.windows(2).all(|w| w[0] == w[1]),
        "{everywhere:?}"
    );
    assert_eq!(everywhere[0][5], 1_000 - 50 + 7);

    for id in cluster.live() {
        cluster.kill(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_never_acknowledges_and_rejoins_the_majority_log() {
    let cluster = Cluster::start().await;
    let old = cluster.leader(&IDS).await;
    let first = cluster
        .on(old, |l| {
            net::replicate(l, vec![deposit(1, 100, 1)]).unwrap()[0]
        })
        .await;
    assert!(first.is_committed());

    // Cut the leader off: what it executes now can never reach a majority.
    let others: Vec<NodeId> = IDS.into_iter().filter(|&id| id != old).collect();
    cluster.router.isolate(old, &others);
    let stranded = cluster.on(old, |l| l.try_submit(deposit(2, 555, 2))).await;
    let majority_leader = cluster.leader(&others).await;
    let on_majority = cluster
        .on(majority_leader, |l| {
            net::replicate(l, vec![deposit(3, 42, 3)]).unwrap()[0]
        })
        .await;
    assert!(on_majority.is_committed());

    // The stranded write was never acknowledged at Replicated.
    if let Ok(tx_id) = stranded {
        let waited = cluster
            .on(old, move |l| {
                l.try_wait_for_timeout(tx_id, WaitLevel::Replicated, Duration::from_millis(300))
            })
            .await;
        assert!(
            waited.is_err(),
            "a minority acknowledged transaction {tx_id}"
        );
    }

    // Healed, the old leader takes the majority's log: one history everywhere.
    cluster.router.heal();
    let everywhere = balances_everywhere(&cluster, on_majority.tx_id).await;
    assert!(
        everywhere.windows(2).all(|w| w[0] == w[1]),
        "{everywhere:?}"
    );
    assert_eq!(everywhere[0][2], 0, "the stranded deposit is nowhere");
    assert_eq!(everywhere[0][3], 42);
    assert_eq!(cluster.node(old).status().role, Role::Follower);

    for id in cluster.live() {
        cluster.kill(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_catches_up_from_the_log_and_a_removed_one_stops_counting() {
    let cluster = Cluster::start_with(4).await;
    let leader = cluster.leader(&IDS).await;
    let first = cluster
        .on(leader, |l| {
            let ops = (1..=50).map(|a| deposit(a % 20, a, 1_000 + a)).collect();
            net::replicate(l, ops).unwrap()
        })
        .await;
    let last = first.last().unwrap().tx_id;

    // Node 4 starts empty, without forming a cluster of its own, and is added.
    cluster.start_node_with(4, true).await;
    let members = cluster
        .node(leader)
        .add_node(4, "node-4".into())
        .await
        .unwrap();
    assert_eq!(members.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4]);
    let everywhere = balances_everywhere(&cluster, last).await;
    assert_eq!(everywhere.len(), 4);
    assert!(
        everywhere.windows(2).all(|w| w[0] == w[1]),
        "{everywhere:?}"
    );

    // A follower refuses membership changes as it refuses writes.
    let follower = IDS.into_iter().find(|&id| id != leader).unwrap();
    assert!(matches!(
        cluster.node(follower).remove_node(4).await,
        Err(ledger_core::cluster::MembershipError::NotLeader)
    ));

    // Remove a follower, then stop it: the three left are a majority of the new set.
    let removed = follower;
    let members = cluster.node(leader).remove_node(removed).await.unwrap();
    assert!(!members.contains_key(&removed));
    cluster.kill(removed).await;
    let after = cluster
        .on(leader, |l| {
            net::replicate(l, vec![deposit(7, 1, 2_000)]).unwrap()[0]
        })
        .await;
    assert!(after.is_committed());
    let everywhere = balances_everywhere(&cluster, after.tx_id).await;
    assert_eq!(everywhere.len(), 3);
    assert!(
        everywhere.windows(2).all(|w| w[0] == w[1]),
        "{everywhere:?}"
    );

    for id in cluster.live() {
        cluster.kill(id).await;
    }
}

/// A leader stopped and started again before anyone else was elected came back as the
/// leader of its old term (openraft restores a won vote) with its blank entry already
/// counted as applied (the stop's snapshot covers it): it never took writes again, and
/// the others kept following it. It now comes back as a follower and wins a new term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_restarted_as_a_whole_takes_writes_again() {
    let cluster = Cluster::start().await;
    let leader = cluster.leader(&IDS).await;
    let first = cluster
        .on(leader, |l| {
            net::replicate(l, vec![deposit(1, 100, 1)]).unwrap()[0]
        })
        .await;
    assert!(first.is_committed());
    balances_everywhere(&cluster, first.tx_id).await;

    // The leader first, so no other node is elected meanwhile.
    cluster.kill(leader).await;
    for id in cluster.live() {
        cluster.kill(id).await;
    }
    for id in IDS {
        cluster.start_node(id).await;
    }
    let leader = cluster.leader(&IDS).await;
    let next = cluster
        .on(leader, |l| {
            net::replicate(l, vec![deposit(2, 50, 2)]).unwrap()[0]
        })
        .await;
    assert!(next.is_committed());
    assert_eq!(next.tx_id, first.tx_id + 1);
    let everywhere = balances_everywhere(&cluster, next.tx_id).await;
    assert!(
        everywhere.windows(2).all(|w| w[0] == w[1]),
        "{everywhere:?}"
    );

    for id in cluster.live() {
        cluster.kill(id).await;
    }
}

/// Where node `id`'s WAL starts: a node that caught up from a Raft snapshot holds no
/// transaction before it.
fn wal_first_tx(cluster: &Cluster, id: NodeId) -> Option<u64> {
    let dir = ledger_config(cluster.dirs[(id - 1) as usize].path()).wal_dir();
    ledger_wal::WalReader::open(dir).unwrap().first_seq()
}

/// The leader snapshots every few entries and forgets the log behind: a follower
/// that was down meanwhile, and a node that joins, catch up from the snapshot (sent in
/// chunks, installed, the node restarted from it), then from the log; both still do
/// after a restart, and every node shows the same balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_and_joining_nodes_catch_up_from_a_raft_snapshot() {
    let cluster = Cluster::start_configured(4, Some((5, 2))).await;
    let leader = cluster.leader(&IDS).await;
    let lagging = IDS.into_iter().find(|&id| id != leader).unwrap();
    cluster.kill(lagging).await;

    let last = cluster.deposit_rounds(leader, 0..30).await;
    let purged = eventually("the leader to forget entries behind a snapshot", || {
        let status = cluster.node(leader).status();
        status.purged_index.filter(|&p| p > 10)
    })
    .await;
    assert!(cluster.node(leader).status().snapshot_index >= Some(purged));

    // The follower comes back behind the purged log; the new node starts empty.
    cluster.start_node(lagging).await;
    cluster.start_node_with(4, true).await;
    cluster
        .node(leader)
        .add_node(4, "node-4".into())
        .await
        .unwrap();
    let everywhere = balances_everywhere(&cluster, last).await;
    assert_eq!(everywhere.len(), 4);
    assert!(
        everywhere.windows(2).all(|w| w[0] == w[1]),
        "{everywhere:?}"
    );
    for id in [lagging, 4] {
        let first = wal_first_tx(&cluster, id);
        assert!(
            first.is_none_or(|f| f > 1),
            "node {id}'s WAL starts at {first:?}"
        );
    }

    // Both come back from their installed snapshot after a restart, and follow on.
    for id in [lagging, 4] {
        cluster.kill(id).await;
        cluster.start_node_with(id, id == 4).await;
    }
    let after = cluster
        .on(leader, |l| {
            net::replicate(l, vec![transfer(1, 2, 3, 9_000)]).unwrap()[0]
        })
        .await;
    assert!(after.is_committed());
    let everywhere = balances_everywhere(&cluster, after.tx_id).await;
    assert_eq!(everywhere.len(), 4);
    assert!(
        everywhere.windows(2).all(|w| w[0] == w[1]),
        "{everywhere:?}"
    );
    for id in [lagging, 4] {
        let ledger = cluster.node(id).ledger().unwrap();
        let outcome = ledger.try_outcome(after.tx_id);
        assert!(outcome.is_ok(), "node {id}: {outcome:?}");
    }

    for id in cluster.live() {
        cluster.kill(id).await;
    }
}

/// WAL segments behind the Raft snapshot and the engine's needs are removed on every
/// node as the cluster runs; a follower and then the leader restarted come back from
/// what is left (the log starting inside an entry its log start names), and every node
/// shows the same balances after more writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_wal_segments_go_and_nodes_restart_from_what_is_left() {
    let cluster = Cluster::start_full(3, Some((5, 2)), true).await;
    let leader = cluster.leader(&IDS).await;
    cluster.deposit_rounds(leader, 1..151).await;
    for id in IDS {
        eventually("every node to remove old WAL segments", || {
            wal_first_tx(&cluster, id).filter(|&first| first > 1)
        })
        .await;
    }

    let follower = IDS.into_iter().find(|&id| id != leader).unwrap();
    cluster.kill(follower).await;
    cluster.start_node(follower).await;
    let last = cluster.deposit_rounds(leader, 151..171).await;
    let everywhere = balances_everywhere(&cluster, last).await;
    assert_eq!(everywhere.len(), 3);
    assert!(
        everywhere.windows(2).all(|w| w[0] == w[1]),
        "{everywhere:?}"
    );

    cluster.kill(leader).await;
    cluster.start_node(leader).await;
    let leader = cluster.leader(&IDS).await;
    let last = cluster.deposit_rounds(leader, 171..191).await;
    let everywhere = balances_everywhere(&cluster, last).await;
    assert_eq!(everywhere.len(), 3);
    assert!(
        everywhere.windows(2).all(|w| w[0] == w[1]),
        "{everywhere:?}"
    );

    for id in cluster.live() {
        cluster.kill(id).await;
    }
}

/// The nice values of this process's threads named `name` (Linux: `/proc`).
#[cfg(target_os = "linux")]
fn nice_of_threads(name: &str) -> Vec<i64> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        // After the command's closing parenthesis: field 3 (state) onwards; nice is 19.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        nice.push(fields[16].parse().unwrap());
    }
    nice
}

/// A cluster node's stage threads run at its `stage_nice` (10 by default), so the
/// threads carrying its replication round trips preempt them on a busy machine.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_stage_threads_run_at_its_nice_value() {
    let cluster = Cluster::start().await;
    cluster.leader(&IDS).await;
    // Every test here runs cluster nodes only: each transactor thread in the process is
    // a node's, this cluster's three at least.
    let nice = nice_of_threads("pipeline-transa");
    assert!(nice.len() >= 3, "{nice:?}");
    assert!(nice.iter().all(|&n| n == 10), "{nice:?}");
    for id in cluster.live() {
        cluster.kill(id).await;
    }
}

/// The money model replicates as results: configurations and holds executed on the
/// leader are applied on every follower from the log (effects replayed, never
/// re-executed), so every node shows the same accounts, holds and reservations, and a
/// follower that restarts rebuilds them from its own log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_accounts_and_holds_are_the_same_on_every_node() {
    use ledger_core::transaction::AccountConfig;
    let cluster = Cluster::start().await;
    let leader = cluster.leader(&IDS).await;
    let results = cluster
        .on(leader, |l| {
            let limited = AccountConfig {
                currency: 7,
                overdraft_limit: 50,
                max_balance: Some(10_000),
                ..AccountConfig::default()
            };
            let first = net::replicate(
                l,
                vec![
                    Operation::configure(1, limited, 0),
                    Operation::configure(2, limited, 0),
                    deposit(1, 1_000, 0),
                    Operation::hold(1, 2, 300, 0, 0),
                    Operation::hold(1, 2, 200, 0, 0),
                ],
            )
            .unwrap();
            let (kept, voided) = (first[3].tx_id, first[4].tx_id);
            let mut second = net::replicate(
                l,
                vec![
                    Operation::PostHold {
                        hold_id: kept,
                        amount: 120,
                        user_ref: 0,
                    },
                    Operation::VoidHold {
                        hold_id: voided,
                        user_ref: 0,
                    },
                    Operation::hold(1, 2, 100, 0, 0),
                    transfer(1, 3, 1, 0),
                ],
            )
            .unwrap();
            let mut all = first;
            all.append(&mut second);
            all
        })
        .await;
    let reasons: Vec<_> = results.iter().map(|r| r.fail_reason).collect();
    use ledger_core::transaction::FailReason;
    assert_eq!(
        reasons,
        [
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            Some(FailReason::CurrencyMismatch)
        ]
    );
    let last = results.last().unwrap().tx_id;
    let open = results[7].tx_id;

    let view = move |l: &Ledger| {
        let accounts: Vec<_> = (0..4).map(|a| l.get_account(a).unwrap()).collect();
        let holds: Vec<_> = (1..=last).map(|id| l.get_hold(id).unwrap().0).collect();
        (accounts, holds, l.get_system_balance(7).unwrap().balance)
    };
    let expect = cluster.on(leader, view).await;
    assert_eq!(expect.0[1].balance, 880);
    assert_eq!(expect.0[1].held_outgoing, 100);
    assert_eq!(expect.0[2].held_incoming, 100);
    assert!(expect.1[open as usize - 1].is_some());
    assert_eq!(expect.2, -1_000);
    balances_everywhere(&cluster, last).await;
    for id in IDS {
        let node = cluster.on(id, view).await;
        assert_eq!(node.0, expect.0, "node {id}: accounts");
        assert_eq!(node.1, expect.1, "node {id}: holds");
        assert_eq!(node.2, expect.2, "node {id}: system balance");
    }
    // A follower restarted rebuilds them from its log (and snapshot).
    let follower = IDS.into_iter().find(|&id| id != leader).unwrap();
    cluster.kill(follower).await;
    cluster.start_node(follower).await;
    balances_everywhere(&cluster, last).await;
    let node = cluster.on(follower, view).await;
    assert_eq!(node.0, expect.0);
    assert_eq!(node.1, expect.1);
    for id in cluster.live() {
        cluster.kill(id).await;
    }
}
