//! The durability simulator extended to a cluster: three nodes, each on its own simulated
//! disk, over the in-memory network. Seeded cycles of writes (every one acknowledged at
//! `Replicated` is recorded) and faults: a node's power pulled (only what it synced
//! survives), a node killed (its page cache survives), several nodes' power pulled at
//! once, a node cut off and healed. After each cycle and at the end: every acknowledged
//! transaction is on every node with the same outcome and `user_ref`, and every node
//! holds the same balances, summing to zero, and the same holds (the writes include
//! holds, posts and voids).
//!
//! `CLUSTER_SIM_SEEDS=N` runs more seeds (the default keeps CI short); a failure names
//! its seed: `CLUSTER_SIM_SEED=S` replays just that one.

mod net;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_core::cluster::{ClusterConfig, ClusterNode, NodeId};
use ledger_core::ledger::{Ledger, LedgerConfig, LedgerError};
use ledger_core::transaction::Operation;
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
    holds_placed: u64,
    holds_closed: u64,
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
            holds_placed: 0,
            holds_closed: 0,
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
            ops.push(match self.rng.below(6) {
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
                _ => Operation::VoidHold {
                    hold_id: some_hold,
                    user_ref,
                },
            });
        }
        let refs: Vec<u64> = ops.iter().map(Operation::user_ref).collect();
        let kinds: Vec<(bool, bool)> = ops
            .iter()
            .map(|op| {
                (
                    matches!(op, Operation::Hold(_)),
                    matches!(op, Operation::PostHold { .. } | Operation::VoidHold { .. }),
                )
            })
            .collect();
        let ledger = self.node(leader).ledger().unwrap();
        let results = tokio::task::spawn_blocking(move || net::replicate(&ledger, ops))
            .await
            .unwrap();
        if let Ok(results) = results {
            for ((r, user_ref), (hold, close)) in results.iter().zip(refs).zip(kinds) {
                if r.is_committed() {
                    self.holds_placed += u64::from(hold);
                    self.holds_closed += u64::from(close);
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

    /// Every acknowledged transaction on every node, as acknowledged; equal balances.
    async fn check(&self) {
        let Some((&last, _)) = self.acked.last_key_value() else {
            return;
        };
        let mut balances = Vec::new();
        for id in IDS {
            let node = self.node(id);
            let deadline = Instant::now() + Duration::from_secs(30);
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
            let cut = tokio::task::spawn_blocking(move || check_node(&ledger, &acked, seed, id))
                .await
                .unwrap();
            balances.push(cut);
        }
        assert!(
            balances.windows(2).all(|w| w[0] == w[1]),
            "seed {}: nodes disagree: {balances:?}",
            self.seed
        );
    }

    async fn stop(self) {
        for id in IDS {
            self.node(id).shutdown().await;
        }
    }
}

/// One node's view: each acknowledged transaction as recorded; its balances, which sum
/// to zero, and what open holds reserve on each account.
fn check_node(
    ledger: &Ledger,
    acked: &BTreeMap<u64, Acked>,
    seed: u64,
    id: NodeId,
) -> Vec<(i64, u64, u64)> {
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
    let accounts: Vec<u64> = (0..=ACCOUNTS).collect();
    let b = ledger.get_balances(&accounts);
    assert_eq!(b.balances.iter().sum::<i64>(), 0, "seed {seed}: node {id}");
    accounts
        .iter()
        .map(|&account| {
            let info = ledger.get_account(account).unwrap();
            assert_eq!(
                info.balance, b.balances[account as usize],
                "seed {seed}: node {id}"
            );
            (info.balance, info.held_outgoing, info.held_incoming)
        })
        .collect()
}

/// Runs one seed; returns how many holds it placed and closed.
async fn run(seed: u64) -> (u64, u64) {
    let mut sim = Sim::new(seed).await;
    for _ in 0..CYCLES {
        sim.write().await;
        sim.fault().await;
        sim.check().await;
    }
    sim.write().await;
    sim.check().await;
    let holds = (sim.holds_placed, sim.holds_closed);
    sim.stop().await;
    holds
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
    let (mut placed, mut closed) = (0, 0);
    for seed in seeds {
        let (p, c) = run(seed).await;
        placed += p;
        closed += c;
    }
    assert!(
        placed > 0 && closed > 0,
        "the runs placed {placed} holds and closed {closed}"
    );
}
