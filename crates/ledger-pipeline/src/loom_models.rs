//! Loom models of the ring protocol, the shutdown protocol and the notifiers.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p ledger-pipeline --lib loom_models`
//! (`scripts/loom.sh` does it with its own target directory). Loom runs each model under
//! every interleaving of its threads, up to a bound on preemptions ([`PREEMPTIONS`],
//! `LOOM_MAX_PREEMPTIONS` overrides it), and lets every load return any value the C11
//! memory model allows for the orderings used: a missing `Release`/`Acquire` edge shows up
//! as a stale read here, whatever the machine running the models does.
//!
//! The models drive the real code: [`Control`], [`Ring`], [`Producer`]'s claim and
//! publish, the stage loop [`run_stage`], [`Progress::wait`], [`WaitFuture`] and the
//! [`Notifier`](crate::wait::Notifier) behind them, with loom's atomics, mutex and parking
//! swapped in by `crate::sync`. Only `PipelineBuilder::start` is not run: it spawns OS
//! threads, so the models spawn `run_stage` on loom threads themselves.
//!
//! What the models catch:
//! - a slot touched by two parties without a happens-before edge between them: the slot
//!   payload is a loom `UnsafeCell`, which fails the model on any such access (a producer
//!   overwriting a slot the last stage still reads, a stage reading a slot before its
//!   producer's writes are visible);
//! - a lost wake-up: parking has no timeout under loom (`crate::sync::park_timeout`), so a
//!   sleeper nobody wakes leaves every thread blocked, which loom reports as a deadlock;
//! - sequences handed to a stage out of order, twice or with gaps, and a drain that ends
//!   early or never (the stage handlers and the final checks assert them).
//!
//! Waits park at once ([`PARK_AT_ONCE`]): spinning only adds states, and a parked waiter is
//! where a lost wake-up would hang.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Wake, Waker};

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicBool;
use loom::thread;

use crate::batch::{Batch, Stage, stage_fn};
use crate::error::PipelineError;
use crate::pipeline::{Producer, Progress, WaitFuture, run_stage};
use crate::ring::{Control, Ring};
use crate::wait::WaitStrategy;

/// Preemptions explored per execution unless `LOOM_MAX_PREEMPTIONS` says otherwise: the
/// usual bound for models of this size (bugs needing more are rare; unbounded takes hours).
const PREEMPTIONS: usize = 2;

/// Straight to the register-recheck-park path of `wait_slow`.
const PARK_AT_ONCE: WaitStrategy = WaitStrategy::SpinYieldPark {
    spins: 0,
    yields: 0,
};

/// Runs `model` under loom and prints how many executions it explored (`--nocapture`).
fn check(model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(PREEMPTIONS);
    }
    let executions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&executions);
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        model();
    });
    println!(
        "loom: {} executions, preemption bound {:?}",
        executions.load(Ordering::Relaxed),
        builder.preemption_bound
    );
}

/// A slot whose payload loom tracks.
#[derive(Debug)]
struct Slot(UnsafeCell<u64>);

impl Slot {
    fn new() -> Self {
        Self(UnsafeCell::new(0))
    }

    fn read(&self) -> u64 {
        // SAFETY: the ring's protocol gives the holder exclusive access; loom checks that
        // every earlier access happens-before this one.
        self.0.with(|p| unsafe { *p })
    }

    fn write(&self, value: u64) {
        // SAFETY: as in `read`.
        self.0.with_mut(|p| unsafe { *p = value })
    }
}

/// What hop `hop` of sequence `seq` leaves in its slot: the producer is hop 0, stage `k`
/// hop `k + 1`.
fn stamp(seq: u64, hop: u64) -> u64 {
    seq * 10 + hop
}

/// A ring of `capacity` slots with `stages` stages, sequences from 1.
fn ring(capacity: usize, stages: usize) -> Arc<Ring<Slot>> {
    let names = (0..stages).map(|i| format!("stage{i}")).collect();
    let control = Arc::new(Control::new(capacity as u64, PARK_AT_ONCE, 1, names));
    Arc::new(Ring::new(control, capacity, &mut Slot::new))
}

/// Stage `index`: takes sequences 1, 2, ... in order, each slot holding what the hop
/// before it wrote, and writes its own stamp for the next hop.
fn checking_stage(index: usize) -> impl Stage<Slot> {
    let hop = index as u64 + 1;
    let mut expected = 1;
    stage_fn(move |batch: &mut Batch<'_, Slot>| {
        for (seq, slot) in batch.iter_mut() {
            assert_eq!(seq, expected, "stage {index}: sequences in order, no gaps");
            assert_eq!(slot.read(), stamp(seq, hop - 1), "stage {index}: seq {seq}");
            slot.write(stamp(seq, hop));
            expected += 1;
        }
        Ok(())
    })
}

fn spawn_stage(
    ring: &Arc<Ring<Slot>>,
    index: usize,
    batch_max: usize,
    handler: impl Stage<Slot>,
) -> thread::JoinHandle<()> {
    let ring = Arc::clone(ring);
    thread::spawn(move || run_stage(&ring, index, Box::new(handler), batch_max))
}

fn producer(ring: &Arc<Ring<Slot>>) -> Producer<Slot> {
    Producer {
        ring: Arc::clone(ring),
    }
}

fn publish(producer: &Producer<Slot>) -> u64 {
    producer
        .publish(|seq, slot| slot.write(stamp(seq, 0)))
        .expect("the pipeline is open")
}

/// After close and join: no failure (a stage handler's assertion, or a loom causality
/// report caught by the stage's `catch_unwind`, would be one), every stage drained up to
/// `last` and exited.
fn assert_drained(ring: &Ring<Slot>, last: u64) {
    let control = &ring.control;
    if let Some(e) = control.failure.get() {
        panic!("the pipeline failed: {e}");
    }
    for stage in control.stages.iter() {
        assert_eq!(stage.cursor.load(Ordering::Acquire), last, "{}", stage.name);
        assert!(stage.exited.load(Ordering::Acquire), "{}", stage.name);
    }
}

/// Two producers publish three sequences into a ring of two slots; one stage drains them.
/// Checks: the claim CAS hands out 1, 2, 3 once each; stage 0 sees only fully published
/// slots (the `available` array, producers finishing out of order) and every producer's
/// writes; the third claim waits for the stage to release slot 1 (the gate, `gate_cache`,
/// the last stage's notifier) and is woken; close then drains exactly what was claimed.
#[test]
fn two_producers_wrap_a_ring_of_two() {
    check(|| {
        let ring = ring(2, 1);
        let stage = spawn_stage(&ring, 0, usize::MAX, checking_stage(0));
        let other = {
            let producer = producer(&ring);
            thread::spawn(move || publish(&producer))
        };
        let mine = producer(&ring);
        let a = publish(&mine);
        let b = publish(&mine);
        let c = other.join().expect("producer");
        let mut seqs = [a, b, c];
        seqs.sort_unstable();
        assert_eq!(seqs, [1, 2, 3], "each sequence claimed once");
        ring.control.close();
        stage.join().expect("stage");
        assert_drained(&ring, 3);
    });
}

/// One producer, two stages, a ring of two slots, three sequences (the second and third in
/// one `publish_batch` that wraps the ring). Checks the stage-to-stage hand-over (stage 1
/// reads what stage 0 wrote, after `cursor[0]`), the gate on the last stage (the producer
/// rewrites slot 1 only after stage 1 is done with sequence 1), and batches that wrap.
#[test]
fn two_stages_hand_over_and_gate_the_producer() {
    check(|| {
        let ring = ring(2, 2);
        let first = spawn_stage(&ring, 0, usize::MAX, checking_stage(0));
        let second = spawn_stage(&ring, 1, 1, checking_stage(1));
        let producer = producer(&ring);
        assert_eq!(publish(&producer), 1);
        let batch = producer
            .publish_batch(2, |seq, slot| slot.write(stamp(seq, 0)))
            .expect("the pipeline is open");
        assert_eq!(batch, 2);
        ring.control.close();
        first.join().expect("stage 0");
        second.join().expect("stage 1");
        assert_drained(&ring, 3);
    });
}

/// A stage handed a batch that wraps the end of the ring reads it through
/// `as_mut_slices`: the two slices are exactly the batch's slots, in order.
#[test]
fn a_wrapping_batch_as_two_slices() {
    check(|| {
        let ring = ring(2, 1);
        let mut expected = 1;
        let stage = spawn_stage(
            &ring,
            0,
            usize::MAX,
            stage_fn(move |batch: &mut Batch<'_, Slot>| {
                let first = batch.first_sequence();
                assert_eq!(first, expected);
                let (head, tail) = batch.as_mut_slices();
                for (i, slot) in head.iter().chain(tail.iter()).enumerate() {
                    assert_eq!(slot.read(), stamp(first + i as u64, 0));
                }
                expected = batch.last_sequence() + 1;
                Ok(())
            }),
        );
        let producer = producer(&ring);
        // Sequences 2 and 3 sit in slots 0 and 1: the batch wraps whenever the stage takes
        // both at once.
        assert_eq!(publish(&producer), 1);
        let batch = producer.publish_batch(2, |seq, slot| slot.write(stamp(seq, 0)));
        assert_eq!(batch.expect("the pipeline is open"), 2);
        ring.control.close();
        stage.join().expect("stage");
        assert_drained(&ring, 3);
    });
}

/// A producer blocked on a full ring (no stage runs) is released by `close` with
/// `ShutDown`, whether close comes before it sleeps or after; `try_publish` on the full
/// ring says `Full` and claims nothing.
#[test]
fn close_releases_a_producer_blocked_on_a_full_ring() {
    check(|| {
        let ring = ring(1, 1);
        let producer = producer(&ring);
        assert_eq!(publish(&producer), 1);
        assert!(matches!(
            producer.try_publish(|_, _| unreachable!("nothing is claimed")),
            Err(PipelineError::Full { capacity: 1 })
        ));
        let closer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || ring.control.close())
        };
        let blocked = producer.publish(|_, _| unreachable!("the ring stays full"));
        assert!(
            matches!(blocked, Err(PipelineError::ShutDown)),
            "{blocked:?}"
        );
        closer.join().expect("closer");
        assert_eq!(ring.control.claim_state(), (true, 2));
    });
}

/// Two threads wait (`Progress::wait`, parking) for stage 0 to reach 1 and 2 while the
/// stage's cursor is released to 1, then 2: each must return once its level is reached,
/// never before (a lost wake-up is a deadlock here), and the group wake-up of one advance
/// must not drop the other sleeper's entry.
#[test]
fn thread_waiters_are_woken_once_their_level_is_reached() {
    check(|| {
        let ring = ring(2, 1);
        let waiters: Vec<_> = [1, 2]
            .into_iter()
            .map(|target| {
                let progress = Progress {
                    control: Arc::clone(&ring.control),
                };
                thread::spawn(move || {
                    let stage = progress.stage(0).expect("stage 0");
                    progress.wait(stage, target).expect("reached");
                    assert!(progress.index(stage) >= target, "woken early");
                })
            })
            .collect();
        let cell = ring.control.stage(0);
        cell.release(1);
        cell.release(2);
        for w in waiters {
            w.join().expect("waiter");
        }
    });
}

/// A waker that records that it was woken.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

fn flag() -> (Arc<Flag>, Waker) {
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(Arc::clone(&flag));
    (flag, waker)
}

/// A task polls `wait_async` twice (the second poll replaces the registered waker) while
/// another thread releases the stage's cursor. Whenever a poll returns `Pending`, the
/// waker of the latest poll must be woken: an executor that dropped the first waker would
/// otherwise never poll again.
#[test]
fn a_task_waiter_is_woken_through_its_latest_waker() {
    check(|| {
        let ring = ring(2, 1);
        let progress = Progress {
            control: Arc::clone(&ring.control),
        };
        let advancer = {
            let control = Arc::clone(&ring.control);
            thread::spawn(move || control.stage(0).release(1))
        };
        let mut future: WaitFuture = progress.wait_async(progress.stage(0).expect("stage 0"), 1);
        let mut last_pending = None;
        for _ in 0..2 {
            let (woken, waker) = flag();
            match Pin::new(&mut future).poll(&mut Context::from_waker(&waker)) {
                Poll::Ready(r) => {
                    r.expect("reached");
                    last_pending = None;
                    break;
                }
                Poll::Pending => last_pending = Some(woken),
            }
        }
        advancer.join().expect("advancer");
        if let Some(woken) = last_pending {
            assert!(
                woken.0.load(Ordering::Acquire),
                "the latest waker was not woken"
            );
            let (_, waker) = flag();
            let r = Pin::new(&mut future).poll(&mut Context::from_waker(&waker));
            assert!(matches!(r, Poll::Ready(Ok(()))), "{r:?}");
        }
    });
}

/// A thread waits for stage 0 to reach 1, then 2, while the stage drains the one
/// published sequence and exits on close: the first wait is `Ok` (even when it first
/// looks after the stage exited: the final cursor is re-read), the second `ShutDown` (the
/// level will never be reached), neither hangs.
#[test]
fn a_waiter_beyond_a_drained_shutdown_gets_shut_down() {
    check(|| {
        let ring = ring(2, 1);
        let stage = spawn_stage(&ring, 0, usize::MAX, checking_stage(0));
        let waiter = {
            let progress = Progress {
                control: Arc::clone(&ring.control),
            };
            thread::spawn(move || {
                let stage = progress.stage(0).expect("stage 0");
                progress.wait(stage, 1).expect("sequence 1 is drained");
                progress.wait(stage, 2)
            })
        };
        assert_eq!(publish(&producer(&ring)), 1);
        ring.control.close();
        let r = waiter.join().expect("waiter");
        assert!(matches!(r, Err(PipelineError::ShutDown)), "{r:?}");
        stage.join().expect("stage");
        assert_drained(&ring, 1);
    });
}
