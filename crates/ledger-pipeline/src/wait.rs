//! Wait strategies and the notifier that parks and wakes threads and tasks.
//!
//! Every index in the pipeline (the published sequences, each stage's progress) has a
//! [`Notifier`]. Whoever advances the index calls [`Notifier::advance`] right after the
//! `Release` store; that costs one `SeqCst` fence and one relaxed load of `min_target` while
//! nobody sleeps on the index: no lock, no syscall. A waiter that runs out of spins and
//! yields registers itself (target, thread or task waker) under the notifier's mutex,
//! lowers `min_target`, issues a `SeqCst` fence and re-checks its condition before parking.
//! The two fences make the classic lost wake-up impossible: either the advancer sees the
//! lowered `min_target` (and then takes the mutex, after the registration, and wakes the
//! entry), or the waiter's re-check sees the advanced index and does not park.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::sync::{self, AtomicU64, Mutex, MutexGuard, Thread, fence};

/// How a thread waits for an index to move: chosen per pipeline by configuration.
///
/// The same strategy is used by the stage threads, by producers waiting for a free slot,
/// and by [`Progress::wait`](crate::Progress::wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Spin forever (with the CPU's spin hint). Lowest latency, one full core per waiting
    /// thread: only for stage threads pinned to dedicated cores. With fewer cores than
    /// threads it collapses throughput (see `MACHINE-LIMITS.md`: 0.1-0.2M items/s).
    BusySpin,
    /// Spin `spins` times, then `yield` `yields` times, then park until woken. The default:
    /// correct and fast when threads outnumber cores, ~0% CPU when idle.
    SpinYieldPark {
        /// Checks with a spin hint between them before yielding.
        spins: u32,
        /// Checks with `thread::yield_now` between them before parking.
        yields: u32,
    },
    /// Park almost at once: a few spins, no yields. Lowest CPU, highest wake-up latency.
    LowCpu,
}

impl WaitStrategy {
    /// The default spin-then-yield-then-park parameters.
    pub const DEFAULT: Self = Self::SpinYieldPark {
        spins: SPINS_DEFAULT,
        yields: YIELDS_DEFAULT,
    };

    fn phases(self) -> (u32, u32, bool) {
        match self {
            Self::BusySpin => (u32::MAX, 0, false),
            Self::SpinYieldPark { spins, yields } => (spins, yields, true),
            Self::LowCpu => (SPINS_LOW_CPU, 0, true),
        }
    }
}

impl Default for WaitStrategy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Spin-loop iterations of the default strategy before it starts yielding.
pub const SPINS_DEFAULT: u32 = 30;
/// `yield_now` calls of the default strategy before it parks.
///
/// Few on purpose: a yielding thread looks busy to the scheduler. With more threads than
/// cores and other load on the machine, a consumer that yields for long keeps a core to
/// itself while its producer, starved on the other core, trickles items to it one at a
/// time (measured on the 2-core VM: 100 spins + 10 yields gave 2-7M items/s in that
/// regime, 30 + 2 gave 30M; parking lets the producer run and the consumer then takes
/// the whole backlog as one batch).
pub const YIELDS_DEFAULT: u32 = 2;
/// Spin-loop iterations of [`WaitStrategy::LowCpu`] before it parks.
pub const SPINS_LOW_CPU: u32 = 10;
/// A parked thread re-checks its condition at least this often even if nobody wakes it.
/// The protocol does not need it (wake-ups are not lost); it bounds the damage of a bug.
pub const PARK_SAFETY_NET: Duration = Duration::from_millis(100);

/// Waiters registered on one notifier at a time, in the common case, without the list
/// reallocating (it keeps its capacity afterwards).
const WAITERS_PREALLOCATED: usize = 16;

#[derive(Debug)]
enum Handle {
    Thread(Thread),
    Task(Waker),
}

impl Handle {
    /// Called with no lock held: a task's waker is foreign code that may poll inline (and
    /// re-register) or panic. Its panic is contained here: it would otherwise unwind the
    /// thread advancing the index (a stage) and stall the pipeline without a failure.
    fn wake(self) {
        match self {
            Self::Thread(t) => t.unpark(),
            Self::Task(w) => {
                let _ = catch_unwind(AssertUnwindSafe(|| w.wake()));
            }
        }
    }
}

#[derive(Debug)]
struct Entry {
    id: u64,
    target: u64,
    handle: Handle,
}

#[derive(Debug)]
struct Waiters {
    entries: Vec<Entry>,
    next_id: u64,
}

/// The sleepers of one index, woken in a group when the index reaches their targets.
#[derive(Debug)]
pub(crate) struct Notifier {
    /// The smallest target among registered entries; `u64::MAX` when none. Only written
    /// under `waiters`' lock; read without it by advancers.
    min_target: AtomicU64,
    waiters: Mutex<Waiters>,
}

impl Notifier {
    pub(crate) fn new() -> Self {
        Self {
            min_target: AtomicU64::new(u64::MAX),
            waiters: Mutex::new(Waiters {
                entries: Vec::with_capacity(WAITERS_PREALLOCATED),
                next_id: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiters> {
        // Nothing panics while holding the lock except a waker's `wake`; the list is
        // consistent at every point, so a poisoned lock is still usable.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Call right after storing `value` (with `Release`) into the index this notifier
    /// belongs to. Wakes every waiter whose target is `<= value`. Without sleepers: one
    /// fence and one relaxed load.
    #[inline]
    pub(crate) fn advance(&self, value: u64) {
        fence(Ordering::SeqCst);
        if self.min_target.load(Ordering::Relaxed) <= value {
            self.wake_up_to(value);
        }
    }

    /// Only reached when somebody sleeps on this index: the group of woken handles is
    /// collected under the lock and woken after it is released.
    #[cold]
    fn wake_up_to(&self, value: u64) {
        let mut woken = Vec::new();
        {
            let mut w = self.lock();
            let mut min = u64::MAX;
            let mut i = 0;
            while i < w.entries.len() {
                let target = w.entries[i].target;
                if target <= value {
                    woken.push(w.entries.swap_remove(i).handle);
                } else {
                    min = min.min(target);
                    i += 1;
                }
            }
            self.min_target.store(min, Ordering::Relaxed);
        }
        woken.into_iter().for_each(Handle::wake);
    }

    /// Wakes every registered waiter whatever its target (failure, shutdown).
    pub(crate) fn wake_all(&self) {
        fence(Ordering::SeqCst);
        let woken: Vec<Handle> = {
            let mut w = self.lock();
            self.min_target.store(u64::MAX, Ordering::Relaxed);
            w.entries.drain(..).map(|e| e.handle).collect()
        };
        woken.into_iter().for_each(Handle::wake);
    }

    /// Registers a sleeper for `target`. The caller must re-check its condition after this
    /// returns and before sleeping.
    pub(crate) fn register_thread(&self, target: u64) -> u64 {
        self.register(target, Handle::Thread(sync::current()))
    }

    /// Registers (or re-registers with a fresh waker) a task for `target`.
    pub(crate) fn register_task(&self, target: u64, previous: Option<u64>, waker: &Waker) -> u64 {
        if let Some(id) = previous {
            let mut w = self.lock();
            if let Some(e) = w.entries.iter_mut().find(|e| e.id == id) {
                if let Handle::Task(old) = &mut e.handle {
                    old.clone_from(waker);
                }
                drop(w);
                fence(Ordering::SeqCst);
                return id;
            }
        }
        self.register(target, Handle::Task(waker.clone()))
    }

    fn register(&self, target: u64, handle: Handle) -> u64 {
        let mut w = self.lock();
        let id = w.next_id;
        w.next_id = w.next_id.wrapping_add(1);
        w.entries.push(Entry { id, target, handle });
        if target < self.min_target.load(Ordering::Relaxed) {
            self.min_target.store(target, Ordering::Relaxed);
        }
        drop(w);
        fence(Ordering::SeqCst);
        id
    }

    /// Removes the entry `id` if it is still registered (it was not woken).
    pub(crate) fn deregister(&self, id: u64) {
        let mut w = self.lock();
        if let Some(pos) = w.entries.iter().position(|e| e.id == id) {
            w.entries.swap_remove(pos);
            let min = w.entries.iter().map(|e| e.target).min().unwrap_or(u64::MAX);
            self.min_target.store(min, Ordering::Relaxed);
        }
    }
}

/// Waits with `strategy` until `check` returns `Some`, sleeping on `notifier` for
/// `target` when parking. Returns `None` if `deadline` passed first.
///
/// `check` must also return `Some` when the pipeline failed or stopped (it reads the
/// state), and whoever changes the state wakes every notifier.
#[inline]
pub(crate) fn wait_until<R>(
    strategy: WaitStrategy,
    notifier: &Notifier,
    target: u64,
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Option<R>,
) -> Option<R> {
    if let Some(r) = check() {
        return Some(r);
    }
    wait_slow(strategy, notifier, target, deadline, &mut check)
}

#[cold]
fn wait_slow<R>(
    strategy: WaitStrategy,
    notifier: &Notifier,
    target: u64,
    deadline: Option<Instant>,
    check: &mut impl FnMut() -> Option<R>,
) -> Option<R> {
    let (spins, yields, park) = strategy.phases();
    let mut n: u32 = 0;
    while n < spins {
        sync::spin_loop();
        if let Some(r) = check() {
            return Some(r);
        }
        n = n.wrapping_add(1);
        // A busy-spinning waiter with a deadline still has to look at the clock.
        if n.is_multiple_of(1024) && deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        if !park && n == u32::MAX {
            n = 0;
        }
    }
    for _ in 0..yields {
        sync::yield_now();
        if let Some(r) = check() {
            return Some(r);
        }
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return None;
    }
    loop {
        let id = notifier.register_thread(target);
        if let Some(r) = check() {
            notifier.deregister(id);
            return Some(r);
        }
        let mut timeout = PARK_SAFETY_NET;
        if let Some(d) = deadline {
            let now = Instant::now();
            if now >= d {
                notifier.deregister(id);
                return None;
            }
            timeout = timeout.min(d - now);
        }
        sync::park_timeout(timeout);
        notifier.deregister(id);
        if let Some(r) = check() {
            return Some(r);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
    }
}
