//! The durability simulator extended to a cluster: three nodes, each on its own simulated
//! disk, over the in-memory network. Seeded cycles of writes (every one acknowledged at
//! `Replicated` is recorded) and faults: a node's power pulled (only what it synced
//! survives), a node killed (its page cache survives), several nodes' power pulled at
//! once, a node cut off and healed. After each cycle and at the end: every acknowledged
//! transaction is on every node with the same outcome and `user_ref`, and every node
//! holds the same balances, summing to zero, the same holds, configurations and
//! aggregates (the writes include holds, some expiring, posts, voids, reversals and
//! account configurations with limits and parents).
//!
//! `CLUSTER_SIM_SEEDS=N` runs more seeds (the default keeps CI short); a failure names
//! its seed: `CLUSTER_SIM_SEED=S` replays just that one.

mod net;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_core::cluster::{ClusterConfig, ClusterNode, NodeId};
use ledger_core::ledger::{Ledger, LedgerConfig, LedgerError};
use ledger_core::transaction::{AccountConfig, Operation};
use ledger_storage::sim::{Restart, Rng, SimDisk};

use net::{Node, Router};

const IDS: [NodeId; 3] = [1, 2, 3];
const ACCOUNTS: u64 = 16;
const CYCLES: usize = 6;

fn peers() -> BTreeMap<NodeId, String> {
    IDS.iter().map(|&id| (id, format!("node-{id}"))).collect()
}

fn ledger_config(id: NodeId) -> LedgerConfig {
    let mut config = LedgerConfig::in_dir(format!("/sim/node-{id}"));
    config.max_accounts = ACCOUNTS + 1;
    config.ring_size = 1 << 10;
    config.read_cache_bytes = 0;
    // Segments of 4 KiB, engine snapshots every 40 transactions and history kept for 40:
    // the log's retention removes segments as the simulation runs, under its faults.
    config.wal_segment_bytes = 4 << 10;
    config.snapshot_interval_tx = 40;
    config.history_retention_tx = 40;
    config
}

/// An acknowledged write: what every node must show at its id.
#[derive(Clone, Copy, Debug)]
struct Acked {
    user_ref: u64,
    committed: bool,
}

struct Sim {
    seed: u64,
    rng: Rng,
    router: Router,
    disks: BTreeMap<NodeId, SimDisk>,
    acked: BTreeMap<u64, Acked>,
    next_ref: u64,
    /// Acknowledged holds placed, and posts or voids that closed one: the run must have
    /// some of each for its check of the holds to mean something.
    /// Committed operations by [`Kind`].
    committed: [u64; Kind::COUNT],
}

impl Sim {
    async fn new(seed: u64) -> Sim {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let mut sim = Sim {
            seed,
            rng: Rng::new(seed),
            router: Router::default(),
            disks: IDS
                .iter()
                .map(|&id| (id, SimDisk::new(seed.wrapping_mul(31).wrapping_add(id))))
                .collect(),
            acked: BTreeMap::new(),
            next_ref: 1,
            committed: [0; Kind::COUNT],
        };
        for id in IDS {
            sim.start(id).await;
        }
        sim
    }

    async fn start(&mut self, id: NodeId) {
        let storage = self.disks[&id].storage();
        let mut config = ClusterConfig::new(id, peers());
        // Raft snapshots every few entries: a node behind the purged log catches up from
        // one, and faults land while snapshots are built and installed.
        config.snapshot_every_entries = 10;
        config.keep_entries_after_snapshot = 3;
        let node = ClusterNode::start(ledger_config(id), storage, config, self.router.for_node(id))
            .await
            .unwrap_or_else(|e| panic!("seed {}: node {id} does not start: {e}", self.seed));
        self.router.nodes.lock().unwrap().insert(id, node);
    }

    fn node(&self, id: NodeId) -> Arc<Node> {
        self.router.nodes.lock().unwrap()[&id].clone()
    }

    /// Ends node `id`'s process: `how` says what its disk keeps.
    async fn end(&mut self, id: NodeId, how: Restart) {
        let node = self.router.nodes.lock().unwrap().remove(&id).unwrap();
        // The process is gone: nothing more of it reaches the disk.
        self.disks[&id].halt();
        node.shutdown().await;
        drop(node);
        self.disks[&id].restart(how);
    }

    async fn leader(&self) -> NodeId {
        let live: Vec<NodeId> = self.router.nodes.lock().unwrap().keys().copied().collect();
        self.leader_among(&live).await
    }

    /// A writable leader among `live` that all of them follow.
    async fn leader_among(&self, live: &[NodeId]) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leader = live
                .iter()
                .copied()
                .find(|&id| self.node(id).status().writable);
            if let Some(leader) = leader
                && live
                    .iter()
                    .all(|&id| self.node(id).leader().map(|l| l.0) == Some(leader))
            {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "seed {}: no leader: {:#?}",
                self.seed,
                live.iter()
                    .map(|&id| self.node(id).status())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes a batch on the leader; records what was acknowledged. A write whose leader
    /// lost its leadership meanwhile is not acknowledged: nothing is recorded for it.
    async fn write(&mut self) {
        let leader = self.leader().await;
        self.write_on(leader).await;
    }

    async fn write_on(&mut self, leader: NodeId) {
        let n = 1 + self.rng.below(40) as usize;
        let mut ops = Vec::with_capacity(n);
        // Posts and voids name one of the last acknowledged ids: a hold, or not (then
        // they are refused, the same way on every node).
        let recent = self.acked.keys().next_back().copied().unwrap_or(0);
        for _ in 0..n {
            let user_ref = self.next_ref;
            self.next_ref += 1;
            let a = 1 + self.rng.below(ACCOUNTS);
            let b = 1 + self.rng.below(ACCOUNTS);
            let amount = 1 + self.rng.below(50);
            let some_hold = recent.saturating_sub(self.rng.below(30));
            ops.push(match self.rng.below(9) {
                0 => Operation::Deposit {
                    account: a,
                    amount,
                    user_ref,
                },
                1 => Operation::Withdrawal {
                    account: a,
                    amount,
                    user_ref,
                },
                2 => Operation::Transfer {
                    from: a,
                    to: b,
                    amount,
                    user_ref,
                },
                3 => Operation::hold(a, b, amount, 0, user_ref),
                4 => Operation::PostHold {
                    hold_id: some_hold,
                    amount: 0,
                    user_ref,
                },
                5 => Operation::VoidHold {
                    hold_id: some_hold,
                    user_ref,
                },
                // A hold that expires in sequencer time a few milliseconds on: the
                // expiry is the leader's, in the log, and every node must agree on it.
                6 => Operation::hold(a, b, amount, 1_000_000 * (1 + self.rng.below(20)), user_ref),
                // Reversing one of the last acknowledged ids (refused when it is not
                // reversible or already reversed, the same way on every node).
                7 => Operation::reverse(some_hold.max(1), user_ref),
                _ => Operation::configure(a, self.config(a), user_ref),
            });
        }
        let refs: Vec<u64> = ops.iter().map(Operation::user_ref).collect();
        let kinds: Vec<Kind> = ops.iter().map(Kind::of).collect();
        let ledger = self.node(leader).ledger().unwrap();
        let results = tokio::task::spawn_blocking(move || net::replicate(&ledger, ops))
            .await
            .unwrap();
        if let Ok(results) = results {
            for ((r, user_ref), kind) in results.iter().zip(refs).zip(kinds) {
                if r.is_committed() {
                    self.committed[kind as usize] += 1;
                }
                self.acked.insert(
                    r.tx_id,
                    Acked {
                        user_ref,
                        committed: r.is_committed(),
                    },
                );
            }
        }
    }

    /// Rules for `account`: a currency (1 in a few: then its transfers are refused as a
    /// currency mismatch), an overdraft, a maximum, and a parent (refused when it would
    /// make a cycle or change a parent's currency).
    fn config(&mut self, account: u64) -> AccountConfig {
        let parent = 1 + self.rng.below(ACCOUNTS);
        AccountConfig {
            currency: u32::from(self.rng.below(8) == 0),
            flags: AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS,
            overdraft_limit: self.rng.below(60),
            max_balance: (self.rng.below(2) == 0).then(|| 200 + self.rng.below(400) as i64),
            parent: if parent == account || self.rng.below(2) == 0 {
                0
            } else {
                parent
            },
        }
    }

    async fn fault(&mut self) {
        let victim = IDS[self.rng.below(3) as usize];
        let kind = self.rng.below(5);
        eprintln!("seed {}: fault {kind} on node {victim}", self.seed);
        match kind {
            0 => {
                self.end(victim, Restart::PowerLoss).await;
                self.start(victim).await;
            }
            1 => {
                self.end(victim, Restart::Crash).await;
                self.start(victim).await;
            }
            2 => {
                // Every node loses power at once: what a majority synced still survives.
                for id in IDS {
                    self.end(id, Restart::PowerLoss).await;
                }
                for id in IDS {
                    self.start(id).await;
                }
            }
            3 => {
                // The majority goes on without the victim (the leader, perhaps).
                let others: Vec<NodeId> = IDS.into_iter().filter(|&id| id != victim).collect();
                self.router.isolate(victim, &others);
                let leader = self.leader_among(&others).await;
                // Enough entries that the victim falls behind the purged log, and
                // catches up from a Raft snapshot.
                for _ in 0..6 {
                    self.write_on(leader).await;
                }
                self.router.heal();
            }
            _ => {}
        }
    }

    /// Every acknowledged transaction on every node, as acknowledged; equal balances,
    /// holds and configurations. Holds expiring after the last write add transactions of
    /// the leader's own (the expiries) that the others apply a moment later: the nodes
    /// are compared once all three show the same last transaction.
    async fn check(&self) {
        let Some((&last, _)) = self.acked.last_key_value() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut views = Vec::new();
            for id in IDS {
                let node = self.node(id);
                while node.status().applied < last {
                    assert!(
                        Instant::now() < deadline,
                        "seed {}: node {id} never applied {last}: {:?}",
                        self.seed,
                        node.status()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let ledger = node.ledger().unwrap();
                let acked = self.acked.clone();
                let seed = self.seed;
                let view =
                    tokio::task::spawn_blocking(move || check_node(&ledger, &acked, seed, id))
                        .await
                        .unwrap();
                views.push(view);
            }
            let cuts: Vec<Option<u64>> = views.iter().map(|(cut, _)| *cut).collect();
            if cuts[0].is_some() && cuts.windows(2).all(|w| w[0] == w[1]) {
                assert!(
                    views.windows(2).all(|w| w[0].1 == w[1].1),
                    "seed {}: nodes disagree at transaction {:?}: {views:?}",
                    self.seed,
                    cuts[0]
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "seed {}: the nodes never showed one last transaction: {cuts:?}",
                self.seed
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        for id in IDS {
            self.node(id).shutdown().await;
        }
    }
}

/// One node's view: each acknowledged transaction as recorded; its accounts (balances,
/// which sum to zero, holds, configurations), and the last transaction they include
/// (`None` when one committed while they were read).
fn check_node(
    ledger: &Ledger,
    acked: &BTreeMap<u64, Acked>,
    seed: u64,
    id: NodeId,
) -> (Option<u64>, Vec<NodeAccount>) {
    for (&tx_id, want) in acked {
        let tx = match ledger.get_transaction(tx_id) {
            Ok(tx) => tx,
            // A node that caught up from a Raft snapshot keeps no history before it: the
            // snapshot's balances hold those transactions (checked below).
            Err(LedgerError::NotRetained { first_retained, .. }) if tx_id < first_retained => {
                continue;
            }
            Err(e) => panic!("seed {seed}: node {id} lost acknowledged {tx_id}: {e}"),
        };
        assert_eq!(
            tx.user_ref, want.user_ref,
            "seed {seed}: node {id} tx {tx_id}"
        );
        assert_eq!(
            tx.outcome.is_committed(),
            want.committed,
            "seed {seed}: node {id} tx {tx_id}"
        );
    }
    let before = ledger.pipeline_index().snapshot;
    let accounts: Vec<u64> = (0..=ACCOUNTS).collect();
    let b = ledger.get_balances(&accounts);
    assert_eq!(b.balances.iter().sum::<i64>(), 0, "seed {seed}: node {id}");
    let view = accounts
        .iter()
        .map(|&account| {
            let info = ledger.get_account(account).unwrap();
            assert_eq!(
                info.balance, b.balances[account as usize],
                "seed {seed}: node {id}"
            );
            NodeAccount {
                balance: info.balance,
                held_outgoing: info.held_outgoing,
                held_incoming: info.held_incoming,
                config: info.config,
                configured: info.configured,
                aggregate_balance: info.aggregate_balance,
                children: info.children,
            }
        })
        .collect();
    let after = ledger.pipeline_index().snapshot;
    ((before == after).then_some(after), view)
}

/// What every node must agree on for an account.
#[derive(Debug, PartialEq)]
struct NodeAccount {
    balance: i64,
    held_outgoing: u64,
    held_incoming: u64,
    config: AccountConfig,
    configured: bool,
    aggregate_balance: i128,
    children: u32,
}

/// The operations a run must have committed some of.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Money,
    HoldPlaced,
    HoldClosed,
    Configured,
    Reversal,
}

impl Kind {
    const COUNT: usize = 5;

    fn of(op: &Operation) -> Kind {
        match op {
            Operation::Hold(_) => Kind::HoldPlaced,
            Operation::PostHold { .. } | Operation::VoidHold { .. } => Kind::HoldClosed,
            Operation::ConfigureAccount { .. } => Kind::Configured,
            Operation::Reverse(_) => Kind::Reversal,
            _ => Kind::Money,
        }
    }
}

/// Runs one seed; returns how many operations of each [`Kind`] it committed.
async fn run(seed: u64) -> [u64; Kind::COUNT] {
    let mut sim = Sim::new(seed).await;
    for _ in 0..CYCLES {
        sim.write().await;
        sim.fault().await;
        sim.check().await;
    }
    sim.write().await;
    sim.check().await;
    let committed = sim.committed;
    sim.stop().await;
    committed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_crashes_power_losses_and_partitions_of_any_node() {
    let seeds: Vec<u64> = match std::env::var("CLUSTER_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("CLUSTER_SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("CLUSTER_SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(4);
            (0..n).collect()
        }
    };
    let mut committed = [0; Kind::COUNT];
    for seed in seeds {
        for (total, n) in committed.iter_mut().zip(run(seed).await) {
            *total += n;
        }
    }
    assert!(
        committed.iter().all(|&n| n > 0),
        "every kind of operation committed at least once: {committed:?} by {:?}",
        [
            Kind::Money,
            Kind::HoldPlaced,
            Kind::HoldClosed,
            Kind::Configured,
            Kind::Reversal
        ]
    );
}
