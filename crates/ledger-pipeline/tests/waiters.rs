//! Waiters (threads and tasks) wake when their level is reached, and not before.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::task::{Context, Poll, Wake, Waker};

use common::{MUST_HAPPEN, gate, noop};
use ledger_pipeline::{Pipeline, PipelineError, StageOptions, WaitStrategy};

/// A waker that reports each wake on a channel.
struct ChannelWaker(std::sync::Mutex<std::sync::mpsc::Sender<()>>);
impl Wake for ChannelWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.0.lock().expect("lock").send(());
    }
}
fn channel_waker() -> (Waker, Receiver<()>) {
    let (tx, rx) = channel();
    (
        Waker::from(Arc::new(ChannelWaker(std::sync::Mutex::new(tx)))),
        rx,
    )
}

/// A pipeline whose progress the test steps slot by slot: gate stage, then `last`.
fn stepped(
    strategy: WaitStrategy,
) -> (
    Pipeline<u64>,
    std::sync::mpsc::Sender<()>,
    ledger_pipeline::StageId,
) {
    let mut b = Pipeline::builder(64, || 0_u64).wait_strategy(strategy);
    let (permits, g) = gate();
    b.add_stage_with("gate", g, StageOptions::default().batch_size_max(1));
    let last = b.add_stage("last", noop());
    (b.start().expect("start"), permits, last)
}

#[test]
fn thread_waiters_return_once_their_level_is_reached_and_never_before() {
    // Under Miri, 160 threads take long enough for its virtual clock to pass MUST_HAPPEN.
    let levels: u64 = if cfg!(miri) { 6 } else { 40 };
    for strategy in [WaitStrategy::DEFAULT, WaitStrategy::LowCpu] {
        let (pipeline, permits, last) = stepped(strategy);
        let producer = pipeline.producer();
        let progress = pipeline.progress();
        producer
            .publish_batch(levels as usize, |s, v| *v = s)
            .expect("publish");
        // Four waiters per level (sync and timed).
        let (done_tx, done_rx) = channel();
        let waiters: Vec<_> = (1..=levels)
            .flat_map(|target| (0..4).map(move |i| (target, i)))
            .map(|(target, i)| {
                let progress = progress.clone();
                let done = done_tx.clone();
                std::thread::spawn(move || {
                    let r = if i % 2 == 0 {
                        progress.wait(last, target)
                    } else {
                        progress.wait_timeout(last, target, MUST_HAPPEN)
                    };
                    // Never woken early: the index is there when wait returns Ok.
                    let index = progress.index(last);
                    done.send((target, r, index)).expect("report");
                })
            })
            .collect();
        drop(done_tx);
        let mut returned = 0;
        for level in 1..=levels {
            permits.send(()).expect("gate");
            // The four waiters of this level return; nobody of a higher level does.
            for _ in 0..4 {
                let (target, r, index) = done_rx.recv_timeout(MUST_HAPPEN).expect("woken");
                assert_eq!(r, Ok(()));
                assert!(index >= target, "returned at index {index} for {target}");
                assert!(
                    target <= level,
                    "waiter for {target} returned at level {level}"
                );
                returned += 1;
            }
        }
        assert_eq!(returned, 4 * levels);
        for w in waiters {
            w.join().expect("waiter");
        }
        assert_eq!(done_rx.try_recv(), Err(TryRecvError::Disconnected));
        pipeline.shutdown().expect("shutdown");
    }
}

#[test]
fn a_task_is_woken_when_its_level_is_reached_and_not_by_lower_levels() {
    let (pipeline, permits, last) = stepped(WaitStrategy::DEFAULT);
    let producer = pipeline.producer();
    let progress = pipeline.progress();
    producer.publish_batch(10, |s, v| *v = s).expect("publish");

    let (waker_a, woken_a) = channel_waker();
    let (waker_b, woken_b) = channel_waker();
    let mut a = progress.wait_async(last, 5);
    let mut b = progress.wait_async(last, 4);
    assert_eq!(
        Pin::new(&mut a).poll(&mut Context::from_waker(&waker_a)),
        Poll::Pending
    );
    assert_eq!(
        Pin::new(&mut b).poll(&mut Context::from_waker(&waker_b)),
        Poll::Pending
    );

    for _ in 0..4 {
        permits.send(()).expect("gate");
    }
    // B (level 4) is woken by the advance to 4; the same wake-up pass looked at A and
    // left it registered: A's level is not reached.
    woken_b.recv_timeout(MUST_HAPPEN).expect("b woken");
    assert_eq!(
        Pin::new(&mut b).poll(&mut Context::from_waker(&waker_b)),
        Poll::Ready(Ok(()))
    );
    assert_eq!(
        woken_a.try_recv(),
        Err(TryRecvError::Empty),
        "a woken below its level"
    );

    permits.send(()).expect("gate");
    woken_a.recv_timeout(MUST_HAPPEN).expect("a woken");
    assert_eq!(
        Pin::new(&mut a).poll(&mut Context::from_waker(&waker_a)),
        Poll::Ready(Ok(()))
    );
    assert!(progress.index(last) >= 5);

    // Already reached: ready at the first poll, no registration.
    let mut c = progress.wait_async(last, 2);
    assert_eq!(
        Pin::new(&mut c).poll(&mut Context::from_waker(&waker_a)),
        Poll::Ready(Ok(()))
    );

    // A dropped future deregisters: the later advance must not wake it.
    let mut d = progress.wait_async(last, 7);
    assert_eq!(
        Pin::new(&mut d).poll(&mut Context::from_waker(&waker_b)),
        Poll::Pending
    );
    drop(d);
    // A re-polled future with a new waker is woken through the new one only.
    let (waker_e1, woken_e1) = channel_waker();
    let (waker_e2, woken_e2) = channel_waker();
    let mut e = progress.wait_async(last, 8);
    assert_eq!(
        Pin::new(&mut e).poll(&mut Context::from_waker(&waker_e1)),
        Poll::Pending
    );
    assert_eq!(
        Pin::new(&mut e).poll(&mut Context::from_waker(&waker_e2)),
        Poll::Pending
    );
    for _ in 0..5 {
        permits.send(()).expect("gate");
    }
    woken_e2.recv_timeout(MUST_HAPPEN).expect("e woken");
    assert_eq!(
        Pin::new(&mut e).poll(&mut Context::from_waker(&waker_e2)),
        Poll::Ready(Ok(()))
    );
    assert_eq!(woken_e1.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        woken_b.try_recv(),
        Err(TryRecvError::Empty),
        "dropped future woken"
    );
    pipeline.shutdown().expect("shutdown");
}

#[test]
fn many_async_waiters_on_executor_threads() {
    let (pipeline, permits, last) = stepped(WaitStrategy::DEFAULT);
    let producer = pipeline.producer();
    let progress = pipeline.progress();
    producer.publish_batch(32, |s, v| *v = s).expect("publish");
    let (done_tx, done_rx) = channel();
    let tasks: Vec<_> = (1..=32_u64)
        .map(|target| {
            let progress = progress.clone();
            let done = done_tx.clone();
            std::thread::spawn(move || {
                let r = pollster::block_on(progress.wait_async(last, target));
                done.send((target, r, progress.index(last)))
                    .expect("report");
            })
        })
        .collect();
    for level in 1..=32_u64 {
        permits.send(()).expect("gate");
        let (target, r, index) = done_rx.recv_timeout(MUST_HAPPEN).expect("woken");
        assert_eq!((target, r), (level, Ok(())));
        assert!(index >= target);
    }
    for t in tasks {
        t.join().expect("task thread");
    }
    pipeline.shutdown().expect("shutdown");
}

#[test]
fn wait_timeout_expires_when_the_level_is_not_reached() {
    let (pipeline, permits, last) = stepped(WaitStrategy::DEFAULT);
    let progress = pipeline.progress();
    pipeline.producer().publish(|_, _| {}).expect("publish");
    assert_eq!(
        progress.wait_timeout(last, 1, std::time::Duration::from_millis(5)),
        Err(PipelineError::Timeout { target: 1 })
    );
    permits.send(()).expect("gate");
    assert_eq!(progress.wait_timeout(last, 1, MUST_HAPPEN), Ok(()));
    // A timed-out waiter left nothing behind: the pipeline still runs and shuts down.
    pipeline.shutdown().expect("shutdown");
}

#[test]
fn waiters_for_levels_beyond_a_drained_shutdown_get_shut_down() {
    let (pipeline, permits, last) = stepped(WaitStrategy::DEFAULT);
    let progress = pipeline.progress();
    pipeline
        .producer()
        .publish_batch(2, |_, _| {})
        .expect("publish");
    let beyond = {
        let progress = progress.clone();
        std::thread::spawn(move || progress.wait(last, 3))
    };
    let reached = {
        let progress = progress.clone();
        std::thread::spawn(move || pollster::block_on(progress.wait_async(last, 2)))
    };
    pipeline.close();
    permits.send(()).expect("gate");
    permits.send(()).expect("gate");
    assert_eq!(reached.join().expect("thread"), Ok(()));
    assert_eq!(beyond.join().expect("thread"), Err(PipelineError::ShutDown));
    pipeline.shutdown().expect("shutdown");
}

/// A waker that panics when woken: foreign code the pipeline must survive.
struct PanickingWaker;

impl std::task::Wake for PanickingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        panic!("waker panicked");
    }
}

// Found in review: a task waker that panicked unwound the stage thread that woke it, so the
// pipeline stalled with no failure recorded and shutdown hung or lost published items.
#[test]
fn a_panicking_waker_does_not_stall_the_pipeline() {
    use std::future::Future;
    let mut builder = ledger_pipeline::Pipeline::builder(4, || 0u64);
    let first = builder.add_stage(
        "first",
        ledger_pipeline::stage_fn(|_: &mut ledger_pipeline::Batch<'_, u64>| Ok(())),
    );
    let last = builder.add_stage(
        "last",
        ledger_pipeline::stage_fn(|_: &mut ledger_pipeline::Batch<'_, u64>| Ok(())),
    );
    let pipeline = builder.start().unwrap();
    let producer = pipeline.producer();
    let progress = pipeline.progress();

    let waker = std::task::Waker::from(std::sync::Arc::new(PanickingWaker));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut armed = Box::pin(progress.wait_async(first, 1));
    assert!(armed.as_mut().poll(&mut cx).is_pending());

    // More items than the ring holds: they only all get through if both stages live on.
    let mut id = 0;
    for value in 0..16u64 {
        id = producer.publish(|_, slot| *slot = value).unwrap();
    }
    progress.wait(last, id).unwrap();
    assert_eq!(progress.failure(), None);
    drop(armed);
    pipeline.shutdown().unwrap();
}

#[test]
fn a_timeout_too_long_to_represent_means_no_deadline() {
    let mut builder = ledger_pipeline::Pipeline::builder(4, || 0u64);
    let stage = builder.add_stage(
        "only",
        ledger_pipeline::stage_fn(|_: &mut ledger_pipeline::Batch<'_, u64>| Ok(())),
    );
    let pipeline = builder.start().unwrap();
    let id = pipeline.producer().publish(|_, slot| *slot = 1).unwrap();
    let progress = pipeline.progress();
    progress
        .wait_timeout(stage, id, std::time::Duration::MAX)
        .unwrap();
    pipeline.shutdown().unwrap();
}
