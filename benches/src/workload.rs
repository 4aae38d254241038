//! Deterministic operation streams: the same seed gives the same operations, so two runs
//! (or two builds) execute the same work.

use ledger_core::transaction::{AccountConfig, CompositeOperation, Operation, Step};

/// What each operation of a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// A transfer of 1-100 between two random accounts (both funded: never rejected).
    Transfer,
    /// A deposit of 1-100 into a random account.
    Deposit,
    /// A three-leg composite: a transfer plus a fee of 1 to a fee account.
    Composite,
    /// Transfers between configured accounts: every account has currency 1, a credit
    /// limit and a maximum balance (LIMITED_ACCOUNT), so each transfer runs the ruled
    /// path (currency, bounds, the system account's share).
    Limited,
    /// Two-phase transfers: a hold of 1-100 between two random accounts, then its post
    /// (of all of it) in a later batch; each counts as one operation.
    HoldPost,
}

/// How every account of the [`Workload::Limited`] run is configured.
pub const LIMITED_ACCOUNT: AccountConfig = AccountConfig {
    currency: 1,
    flags: AccountConfig::CREDITS_MUST_NOT_EXCEED_DEBITS,
    overdraft_limit: 1_000,
    max_balance: Some(i64::MAX - 1),
    parent: 0,
};

/// The account every composite's fee goes to.
pub const FEE_ACCOUNT: u64 = 1;

/// What each of `accounts` accounts is funded with before a run, so that no transfer is
/// rejected: at most 101 leaves per operation, and runs stay far below 10^9 operations per
/// account. The system account pays for all of it, so the total stays within an `i64`.
pub fn funding_per_account(accounts: u64) -> u64 {
    (i64::MAX as u64 / accounts.max(1)).min(1 << 40)
}

/// A small, fast, seedable generator (xorshift64*): good enough to spread accounts, and
/// cheap next to the work it feeds.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // A zero state would stay zero.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift (no division, negligible bias).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Generates the operations of one producer.
#[derive(Clone, Debug)]
pub struct Generator {
    workload: Workload,
    accounts: u64,
    rng: Rng,
    /// Holds placed and not yet posted ([`Workload::HoldPost`]), oldest first.
    unposted: std::collections::VecDeque<u64>,
    /// Indexes of the holds in the last [`fill`](Generator::fill), whose ids
    /// [`placed`](Generator::placed) learns.
    last_holds: Vec<usize>,
}

impl Generator {
    /// Operations on accounts `1..=accounts` (account 0 is the system account).
    pub fn new(workload: Workload, accounts: u64, seed: u64) -> Generator {
        assert!(accounts >= 2, "a workload needs at least two accounts");
        Generator {
            workload,
            accounts,
            rng: Rng::new(seed),
            unposted: std::collections::VecDeque::new(),
            last_holds: Vec::new(),
        }
    }

    /// The ids the ledger gave the last [`fill`](Generator::fill)'s operations, in order:
    /// its holds are posted by later operations.
    pub fn placed(&mut self, ids: &[u64]) {
        for &i in &self.last_holds {
            self.unposted.push_back(ids[i]);
        }
        self.last_holds.clear();
    }

    /// Whether the ids of each batch must be handed back ([`placed`](Generator::placed)).
    pub fn needs_ids(&self) -> bool {
        self.workload == Workload::HoldPost
    }

    fn transfer_pair(&mut self) -> (u64, u64) {
        let from = self.account();
        let mut to = self.account();
        if to == from {
            to = if from == self.accounts { 1 } else { from + 1 };
        }
        (from, to)
    }

    fn account(&mut self) -> u64 {
        1 + self.rng.below(self.accounts)
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Operation {
        let amount = 1 + self.rng.below(100);
        match self.workload {
            Workload::Deposit => Operation::Deposit {
                account: self.account(),
                amount,
                user_ref: 0,
            },
            Workload::Transfer | Workload::Limited => {
                let (from, to) = self.transfer_pair();
                Operation::Transfer {
                    from,
                    to,
                    amount,
                    user_ref: 0,
                }
            }
            Workload::HoldPost => match self.unposted.pop_front() {
                Some(hold_id) => Operation::PostHold {
                    hold_id,
                    amount: 0,
                    user_ref: 0,
                },
                None => {
                    let (from, to) = self.transfer_pair();
                    Operation::hold(from, to, amount, 0, 0)
                }
            },
            Workload::Composite => {
                let from = self.account();
                let to = self.account();
                Operation::Composite(Box::new(CompositeOperation {
                    steps: vec![
                        Step::Credit {
                            account_id: from,
                            amount: amount + 1,
                        },
                        Step::Debit {
                            account_id: to,
                            amount,
                        },
                        Step::Debit {
                            account_id: FEE_ACCOUNT,
                            amount: 1,
                        },
                    ],
                    flags: CompositeOperation::CHECK_NEGATIVE_BALANCE,
                    user_ref: 0,
                }))
            }
        }
    }

    /// Fills `ops` (cleared first) with the next `n` operations.
    pub fn fill(&mut self, ops: &mut Vec<Operation>, n: usize) {
        ops.clear();
        // One allocation: the caller hands each batch over, so `ops` is often new.
        ops.reserve(n);
        self.last_holds.clear();
        for i in 0..n {
            let op = self.next_op();
            if matches!(op, Operation::Hold(_)) {
                self.last_holds.push(i);
            }
            ops.push(op);
        }
    }
}

/// What runs before a `workload` run: the accounts' configuration (for
/// [`Workload::Limited`]), then [`funding`].
pub fn preparation(workload: Workload, accounts: u64) -> impl Iterator<Item = Operation> {
    let configured = if workload == Workload::Limited {
        accounts
    } else {
        0
    };
    (1..=configured)
        .map(|account| Operation::configure(account, LIMITED_ACCOUNT, 0))
        .chain(funding(accounts))
}

/// The deposits that fund accounts `1..=accounts` with [`funding_per_account`] each.
pub fn funding(accounts: u64) -> impl Iterator<Item = Operation> {
    let amount = funding_per_account(accounts);
    (1..=accounts).map(move |account| Operation::Deposit {
        account,
        amount,
        user_ref: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_post_posts_each_hold_once_in_a_later_batch() {
        let mut g = Generator::new(Workload::HoldPost, 100, 3);
        let mut ops = Vec::new();
        g.fill(&mut ops, 3);
        assert!(ops.iter().all(|op| matches!(op, Operation::Hold(_))));
        g.placed(&[10, 11, 12]);
        g.fill(&mut ops, 4);
        let posted: Vec<u64> = ops
            .iter()
            .filter_map(|op| match op {
                Operation::PostHold {
                    hold_id, amount: 0, ..
                } => Some(*hold_id),
                _ => None,
            })
            .collect();
        assert_eq!(posted, [10, 11, 12]);
        assert!(matches!(ops[3], Operation::Hold(_)));
        g.placed(&[20, 21, 22, 23]);
        g.fill(&mut ops, 2);
        assert!(matches!(ops[0], Operation::PostHold { hold_id: 23, .. }));
    }

    #[test]
    fn the_same_seed_gives_the_same_operations() {
        let mut a = Generator::new(Workload::Transfer, 1000, 7);
        let mut b = Generator::new(Workload::Transfer, 1000, 7);
        let mut c = Generator::new(Workload::Transfer, 1000, 8);
        let (xs, ys, zs): (Vec<_>, Vec<_>, Vec<_>) = (0..100)
            .map(|_| (a.next_op(), b.next_op(), c.next_op()))
            .collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn transfers_stay_in_range_and_never_to_self() {
        for accounts in [2, 3, 1000] {
            let mut g = Generator::new(Workload::Transfer, accounts, 1);
            for _ in 0..10_000 {
                let Operation::Transfer {
                    from, to, amount, ..
                } = g.next_op()
                else {
                    panic!("not a transfer")
                };
                assert!((1..=accounts).contains(&from) && (1..=accounts).contains(&to));
                assert_ne!(from, to);
                assert!((1..=100).contains(&amount));
            }
        }
    }

    #[test]
    fn funding_fits_the_system_account() {
        for accounts in [2, 1_000_000, 10_000_000, 100_000_000, 1 << 28] {
            let total = u128::from(funding_per_account(accounts)) * u128::from(accounts);
            assert!(total <= i64::MAX as u128, "{accounts}");
            assert!(funding_per_account(accounts) >= 1 << 30, "{accounts}");
        }
    }

    #[test]
    fn below_covers_the_range() {
        let mut rng = Rng::new(3);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[rng.below(10) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn composites_net_to_zero() {
        let mut g = Generator::new(Workload::Composite, 50, 2);
        for _ in 0..100 {
            let Operation::Composite(c) = g.next_op() else {
                panic!("not a composite")
            };
            let net: i128 = c
                .steps
                .iter()
                .map(|s| match *s {
                    Step::Credit { amount, .. } => -(amount as i128),
                    Step::Debit { amount, .. } => amount as i128,
                })
                .sum();
            assert_eq!(net, 0);
        }
    }
}
