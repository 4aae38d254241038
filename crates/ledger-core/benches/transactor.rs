//! Cost of executing one operation in the state machine, beside its floor: a bare
//! two-element read-modify-write on an `i64` array of the same size at the same indices.
//!
//! `cargo bench -p ledger-core --bench transactor`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ledger_core::transaction::{AccountConfig, Effect, Entry, Operation};
use ledger_core::transactor::{Transactor, TransactorConfig};

/// Operations per measured iteration.
const BATCH: usize = 1024;
/// Pre-generated operations, cycled through (larger than any cache level at 10M accounts).
const OPS: usize = 1 << 20;
/// How many operations ahead `Transactor::prefetch` is called.
const PREFETCH_DISTANCE: usize = 8;
const ACCOUNT_COUNTS: [u64; 3] = [1_000, 1_000_000, 10_000_000];

/// SplitMix64: a tiny deterministic generator, so every run measures the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A non-system account in `1..accounts`.
    fn account(&mut self, accounts: u64) -> u64 {
        1 + self.next() % (accounts - 1)
    }
}

#[derive(Clone, Copy)]
enum Shape {
    /// Both accounts uniformly random.
    Uniform,
    /// Every transfer leaves account 1 (a merchant payout or house account).
    HotSource,
}

fn transfers(accounts: u64, shape: Shape) -> Vec<(u64, u64, u64)> {
    let mut rng = Rng(accounts);
    (0..OPS)
        .map(|_| {
            let from = match shape {
                Shape::Uniform => rng.account(accounts),
                Shape::HotSource => 1,
            };
            let mut to = rng.account(accounts);
            while to == from {
                to = rng.account(accounts);
            }
            (from, to, 1 + rng.next() % 100)
        })
        .collect()
}

/// Transfers of `moves` (from, to, amount), without `user_ref`.
fn transfer_ops(moves: &[(u64, u64, u64)]) -> Vec<Operation> {
    moves
        .iter()
        .map(|&(from, to, amount)| Operation::Transfer {
            from,
            to,
            amount,
            user_ref: 0,
        })
        .collect()
}

/// A transactor whose every account holds enough to never be rejected during the bench;
/// each first configured with `config`, if any (a currency must be set before money
/// moves). Closed holds are remembered 1 s of sequencer time (see [`bench_holds`]).
fn funded(accounts: u64, config: Option<AccountConfig>) -> (Transactor, u64) {
    let mut transactor = Transactor::new(TransactorConfig {
        max_accounts: accounts,
        closed_hold_retention_ns: 1_000_000_000,
        ..TransactorConfig::default()
    })
    .unwrap();
    let mut entries = Vec::new();
    let mut tx_id = 0;
    for account in (1..accounts).filter(|_| config.is_some()) {
        tx_id += 1;
        let configure = Operation::configure(account, config.unwrap_or_default(), 0);
        let outcome = transactor.execute(tx_id, 0, &configure, &mut entries, &mut Vec::new());
        assert!(outcome.is_committed());
    }
    for account in 1..accounts {
        tx_id += 1;
        // 2^32 each keeps the system account (-accounts * 2^32) far from i64::MIN.
        let amount = if account == 1 { 1 << 60 } else { 1 << 32 };
        let deposit = Operation::Deposit {
            account,
            amount,
            user_ref: 0,
        };
        transactor.execute(tx_id, 0, &deposit, &mut entries, &mut Vec::new());
        entries.clear();
    }
    (transactor, tx_id)
}

/// The next `BATCH` operations of `ops`, cycling.
fn next_batch<'a>(ops: &'a [Operation], at: &mut usize) -> &'a [Operation] {
    let batch = &ops[*at..*at + BATCH];
    *at = (*at + BATCH) % OPS;
    batch
}

/// A funded transactor and the state the measured loop carries from batch to batch.
struct Run {
    transactor: Transactor,
    tx_id: u64,
    entries: Vec<Entry>,
    /// Where holds write their effects (cleared every batch).
    effects: Vec<Effect>,
    /// The bench measures committed work: a rejection would be a cheaper path.
    rejected: u64,
}

impl Run {
    fn new(accounts: u64) -> Run {
        Run::configured(accounts, None)
    }

    fn configured(accounts: u64, config: Option<AccountConfig>) -> Run {
        let (transactor, tx_id) = funded(accounts, config);
        Run {
            transactor,
            tx_id,
            entries: Vec::with_capacity(2 * BATCH),
            effects: Vec::new(),
            rejected: 0,
        }
    }

    /// The measured loop: `batch` as consecutive transactions, with `PREFETCH` calling
    /// `Transactor::prefetch` `PREFETCH_DISTANCE` operations ahead (a constant, so the
    /// loop without it carries no branch for it), at time 0 or, `TIMED`, 250 ns of
    /// sequencer time per operation. Effects are dropped batch by batch.
    #[inline(always)]
    fn execute<const PREFETCH: bool, const TIMED: bool>(&mut self, batch: &[Operation]) {
        self.entries.clear();
        self.effects.clear();
        for (i, op) in batch.iter().enumerate() {
            if PREFETCH && let Some(ahead) = batch.get(i + PREFETCH_DISTANCE) {
                self.transactor.prefetch(ahead);
            }
            self.tx_id += 1;
            let now = if TIMED { self.tx_id * 250 } else { 0 };
            let outcome =
                self.transactor
                    .execute(self.tx_id, now, op, &mut self.entries, &mut self.effects);
            self.rejected += u64::from(!outcome.is_committed());
        }
    }
}

fn bench_execute(c: &mut Criterion) {
    for accounts in ACCOUNT_COUNTS {
        let mut group = c.benchmark_group(format!("execute/{accounts}_accounts"));
        group.throughput(Throughput::Elements(BATCH as u64));
        for (name, shape) in [("uniform", Shape::Uniform), ("hot", Shape::HotSource)] {
            let moves = transfers(accounts, shape);

            let mut floor = vec![1i64 << 32; accounts as usize];
            let mut at = 0;
            group.bench_function(BenchmarkId::new("floor_rmw", name), |b| {
                b.iter(|| {
                    for &(from, to, amount) in &moves[at..at + BATCH] {
                        let amount = black_box(amount) as i64;
                        floor[from as usize] -= amount;
                        floor[to as usize] += amount;
                    }
                    at = (at + BATCH) % OPS;
                })
            });
            black_box(&floor);

            let ops = transfer_ops(&moves);
            let deposits: Vec<Operation> = moves
                .iter()
                .map(|&(_, to, amount)| Operation::Deposit {
                    account: to,
                    amount,
                    user_ref: 0,
                })
                .collect();

            let mut run = Run::new(accounts);
            let mut at = 0;
            group.bench_function(BenchmarkId::new("transfer", name), |b| {
                b.iter(|| run.execute::<false, false>(next_batch(&ops, &mut at)))
            });
            let mut at = 0;
            group.bench_function(BenchmarkId::new("transfer_prefetched", name), |b| {
                b.iter(|| run.execute::<true, false>(next_batch(&ops, &mut at)))
            });
            let mut at = 0;
            group.bench_function(BenchmarkId::new("deposit", name), |b| {
                b.iter(|| run.execute::<false, false>(next_batch(&deposits, &mut at)))
            });
            assert_eq!(run.rejected, 0, "every measured operation committed");
            assert_eq!(run.transactor.balance_sum(), 0);
        }
        group.finish();
    }
}

/// Transfers that each carry a unique `user_ref`: the cost of the idempotency window.
fn bench_dedup(c: &mut Criterion) {
    let accounts = 1_000_000;
    let mut group = c.benchmark_group("execute/dedup_1000000_accounts");
    group.throughput(Throughput::Elements(BATCH as u64));
    let moves = transfers(accounts, Shape::Uniform);
    let Run {
        mut transactor,
        mut tx_id,
        mut entries,
        mut effects,
        mut rejected,
    } = Run::new(accounts);
    let mut at = 0;
    let mut now_ns = 0u64;
    group.bench_function("transfer_with_user_ref", |b| {
        b.iter(|| {
            entries.clear();
            for &(from, to, amount) in &moves[at..at + BATCH] {
                tx_id += 1;
                // 10 us apart (100K tx/s): the default 10 s window holds 1M references,
                // reached during warm-up, so this measures the steady state.
                now_ns += 10_000;
                let op = Operation::Transfer {
                    from,
                    to,
                    amount,
                    user_ref: tx_id,
                };
                rejected += u64::from(
                    !transactor
                        .execute(tx_id, now_ns, &op, &mut entries, &mut effects)
                        .is_committed(),
                );
            }
            at = (at + BATCH) % OPS;
        })
    });
    group.finish();
    assert_eq!(rejected, 0, "every measured operation committed");
}

/// Transfers between configured accounts (a currency, a credit limit, a maximum: the
/// ruled path) beside the same transfers between unconfigured ones.
fn bench_limited(c: &mut Criterion) {
    let accounts = 1_000_000;
    let mut group = c.benchmark_group("execute/limited_1000000_accounts");
    group.throughput(Throughput::Elements(BATCH as u64));
    let ops = transfer_ops(&transfers(accounts, Shape::Uniform));
    let limited = AccountConfig {
        currency: 1,
        overdraft_limit: 1_000,
        max_balance: Some(i64::MAX - 1),
        ..AccountConfig::default()
    };
    for (name, config) in [("plain", None), ("limited", Some(limited))] {
        let mut run = Run::configured(accounts, config);
        let mut at = 0;
        group.bench_function(BenchmarkId::new("transfer_prefetched", name), |b| {
            b.iter(|| run.execute::<true, false>(next_batch(&ops, &mut at)))
        });
        assert_eq!(run.rejected, 0, "every measured operation committed");
    }
    group.finish();
}

/// Two-phase transfers (the load generator's `hold-post`): a batch of holds, then a batch
/// posting each of them, beside the same number of plain transfers. Sequencer time
/// advances 250 ns per operation (4M a second) and closed holds are remembered 1 s, so
/// the hold table is in its steady state: as many forgotten as placed.
fn bench_holds(c: &mut Criterion) {
    let accounts = 1_000_000;
    let mut group = c.benchmark_group("execute/holds_1000000_accounts");
    group.throughput(Throughput::Elements(BATCH as u64));
    let pairs = transfers(accounts, Shape::Uniform);
    let transfers = transfer_ops(&pairs);
    let holds: Vec<Operation> = pairs
        .iter()
        .map(|&(from, to, amount)| Operation::hold(from, to, amount, 0, 0))
        .collect();
    let mut run = Run::new(accounts);
    let mut at = 0;
    group.bench_function("transfer_prefetched", |b| {
        b.iter(|| run.execute::<true, false>(next_batch(&transfers, &mut at)))
    });
    let mut run = Run::new(accounts);
    let mut posts = Vec::with_capacity(BATCH / 2);
    group.bench_function("hold_post_prefetched", |b| {
        b.iter(|| {
            let placed = next_batch(&holds, &mut at);
            let first_hold = run.tx_id + 1;
            run.execute::<true, true>(&placed[..BATCH / 2]);
            posts.clear();
            posts.extend((first_hold..first_hold + BATCH as u64 / 2).map(|hold_id| {
                Operation::PostHold {
                    hold_id,
                    amount: 0,
                    user_ref: 0,
                }
            }));
            run.execute::<true, true>(&posts);
        })
    });
    assert_eq!(run.rejected, 0, "every measured operation committed");
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench_execute, bench_dedup, bench_limited, bench_holds
}
criterion_main!(benches);
