//! Backpressure, shutdown, and failure propagation.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{MUST_HAPPEN, gate, noop};
use ledger_pipeline::{Batch, Pipeline, PipelineError, StageOptions, WaitStrategy, stage_fn};

fn one_by_one() -> StageOptions {
    StageOptions::default().batch_size_max(1)
}

#[test]
fn full_ring_refuses_try_and_blocks_publish_until_the_last_stage_releases() {
    let mut b = Pipeline::builder(4, || 0_u64);
    let (permits, g) = gate();
    b.add_stage_with("gate", g, one_by_one());
    let last = b.add_stage("last", noop());
    let pipeline = b.start().expect("start");
    let producer = pipeline.producer();
    let progress = pipeline.progress();

    for expected in 1..=4 {
        assert_eq!(producer.try_publish(|s, v| *v = s), Ok(expected));
    }
    assert_eq!(
        producer.try_publish(|s, v| *v = s),
        Err(PipelineError::Full { capacity: 4 })
    );
    assert_eq!(
        producer.try_publish_batch(1, |s, v| *v = s),
        Err(PipelineError::Full { capacity: 4 })
    );
    assert_eq!(progress.claimed(), 4, "a refused try_ claims nothing");

    // A blocking producer: it can only get sequence 5 once sequence 1 left the last stage.
    let blocked = {
        let producer = producer.clone();
        let progress = progress.clone();
        std::thread::spawn(move || {
            let seq = producer
                .publish(|s, v| *v = s)
                .expect("publish after release");
            (seq, progress.index(last))
        })
    };
    // And a blocking batch of three: needs 2..=4 released as well (after sequence 5).
    let blocked_batch = {
        let producer = producer.clone();
        let progress = progress.clone();
        std::thread::spawn(move || {
            let first = producer
                .publish_batch(3, |s, v| *v = s)
                .expect("batch after release");
            (first, progress.index(last))
        })
    };
    for _ in 0..4 {
        permits.send(()).expect("gate");
    }
    let (seq, index_at_return) = blocked.join().expect("producer");
    let (first, batch_index_at_return) = blocked_batch.join().expect("producer");
    let mut got = [
        (seq, 1_u64, index_at_return),
        (first, 3, batch_index_at_return),
    ];
    got.sort_unstable();
    assert_eq!(got[0].0, 5);
    assert_eq!(got[1].0, 5 + got[0].1);
    for (first, n, index) in got {
        // Claiming first..first+n-1 needs the last stage at first + n - 1 - capacity.
        assert!(
            index + 4 >= first + n - 1,
            "claimed {first}+{n} with last stage at {index}"
        );
    }
    for _ in 0..4 {
        permits.send(()).expect("gate");
    }
    progress
        .wait_timeout(last, 8, MUST_HAPPEN)
        .expect("drained");
    pipeline.shutdown().expect("shutdown");
}

#[test]
fn batch_sizes_outside_one_to_capacity_are_errors_not_deadlocks() {
    let mut b = Pipeline::builder(8, || 0_u64);
    b.add_stage("s", noop());
    let pipeline = b.start().expect("start");
    let p = pipeline.producer();
    let invalid = |n| PipelineError::InvalidBatchSize {
        requested: n,
        capacity: 8,
    };
    assert_eq!(p.publish_batch(9, |_, _| {}), Err(invalid(9)));
    assert_eq!(p.try_publish_batch(9, |_, _| {}), Err(invalid(9)));
    assert_eq!(p.publish_batch(0, |_, _| {}), Err(invalid(0)));
    assert_eq!(p.publish_batch(8, |_, _| {}), Ok(1));
    assert_eq!(p.publish(|_, _| {}), Ok(9));
    pipeline.shutdown().expect("shutdown");
}

#[test]
fn invalid_configurations_are_refused() {
    let expect_invalid = |r: Result<Pipeline<u64>, PipelineError>| {
        assert!(
            matches!(r, Err(PipelineError::InvalidConfig { .. })),
            "{r:?}"
        );
    };
    let mut b = Pipeline::builder(6, || 0_u64);
    b.add_stage("s", noop());
    expect_invalid(b.start());
    expect_invalid(Pipeline::builder(8, || 0_u64).start());
    let mut b = Pipeline::builder(8, || 0_u64).initial_sequence(0);
    b.add_stage("s", noop());
    expect_invalid(b.start());
    let mut b = Pipeline::builder(8, || 0_u64);
    b.add_stage_with("s", noop(), StageOptions::default().batch_size_max(0));
    expect_invalid(b.start());
}

#[test]
fn shutdown_drains_everything_published_then_refuses() {
    // Several trips round the 64-slot ring either way; Miri is ~10^4 times slower.
    let items: u64 = if cfg!(miri) { 300 } else { 10_000 };
    let mut b = Pipeline::builder(64, || 0_u64);
    let counts: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut ids = Vec::new();
    for (k, count) in counts.iter().enumerate() {
        let count = Arc::clone(count);
        ids.push(b.add_stage(
            format!("s{k}"),
            stage_fn(move |batch: &mut Batch<'_, u64>| {
                count.fetch_add(batch.len() as u64, Ordering::Relaxed);
                Ok(())
            }),
        ));
    }
    let pipeline = b.start().expect("start");
    let producer = pipeline.producer();
    let progress = pipeline.progress();
    for i in 0..items {
        producer.publish(|_, v| *v = i).expect("publish");
    }
    // No waiting: shutdown itself must drain.
    pipeline.shutdown().expect("shutdown");
    for (k, count) in counts.iter().enumerate() {
        assert_eq!(count.load(Ordering::Relaxed), items, "stage {k}");
        assert_eq!(progress.index(ids[k]), items);
    }
    assert!(progress.is_closed());
    assert_eq!(producer.publish(|_, _| {}), Err(PipelineError::ShutDown));
    assert_eq!(
        producer.try_publish(|_, _| {}),
        Err(PipelineError::ShutDown)
    );
    assert_eq!(progress.wait(ids[2], items), Ok(()));
    assert_eq!(
        progress.wait(ids[2], items + 1),
        Err(PipelineError::ShutDown)
    );
    assert_eq!(
        pollster::block_on(progress.wait_async(ids[0], items + 1)),
        Err(PipelineError::ShutDown)
    );
    assert_eq!(progress.failure(), None);
}

#[test]
fn close_releases_producers_blocked_on_a_full_ring_and_still_drains() {
    let mut b = Pipeline::builder(2, || 0_u64);
    let (permits, g) = gate();
    let s = b.add_stage_with("gate", g, one_by_one());
    let pipeline = b.start().expect("start");
    let producer = pipeline.producer();
    producer.publish_batch(2, |_, _| {}).expect("fill the ring");
    let blocked: Vec<_> = (0..3)
        .map(|_| {
            let producer = producer.clone();
            std::thread::spawn(move || producer.publish(|_, _| {}))
        })
        .collect();
    pipeline.close();
    for t in blocked {
        assert_eq!(t.join().expect("thread"), Err(PipelineError::ShutDown));
    }
    // The two claimed before the close still go through.
    permits.send(()).expect("gate");
    permits.send(()).expect("gate");
    let progress = pipeline.progress();
    pipeline.shutdown().expect("shutdown");
    assert_eq!(progress.index(s), 2);
}

fn failing_pipeline(
    panics: bool,
) -> (
    Pipeline<u64>,
    std::sync::mpsc::Sender<()>,
    ledger_pipeline::StageId,
) {
    let mut b = Pipeline::builder(4, || 0_u64).wait_strategy(WaitStrategy::LowCpu);
    let (permits, g) = gate();
    b.add_stage_with("gate", g, one_by_one());
    b.add_stage_with(
        "breaks-at-3",
        stage_fn(move |batch: &mut Batch<'_, u64>| {
            for (seq, _) in batch.iter_mut() {
                if seq == 3 {
                    if panics {
                        panic!("boom at {seq}");
                    }
                    return Err(format!("refused {seq}").into());
                }
            }
            Ok(())
        }),
        one_by_one(),
    );
    let last = b.add_stage("last", noop());
    (b.start().expect("start"), permits, last)
}

fn failure_reaches_producers_and_waiters(panics: bool) {
    let (pipeline, permits, last) = failing_pipeline(panics);
    let producer = pipeline.producer();
    let progress = pipeline.progress();
    producer
        .publish_batch(4, |s, v| *v = s)
        .expect("fill the ring");
    // Blocked producers (the ring is full, and a claim of three more needs sequence 3
    // released, which never happens) and blocked waiters (sync, timed, async).
    let producers: Vec<_> = (0..2)
        .map(|_| {
            let producer = producer.clone();
            std::thread::spawn(move || producer.publish_batch(3, |_, _| {}))
        })
        .collect();
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let progress = progress.clone();
            std::thread::spawn(move || match i {
                0 => progress.wait(last, 3),
                1 => progress.wait_timeout(last, 4, MUST_HAPPEN),
                _ => pollster::block_on(progress.wait_async(last, 3)),
            })
        })
        .collect();
    // Let sequences 1..=4 through the gate; the second stage fails on 3.
    for _ in 0..4 {
        permits.send(()).expect("gate");
    }
    let expected = PipelineError::StageFailed {
        stage: "breaks-at-3".into(),
        message: if panics {
            "boom at 3".into()
        } else {
            "refused 3".into()
        },
        panicked: panics,
        source: None,
    };
    for t in producers {
        assert_eq!(t.join().expect("producer thread"), Err(expected.clone()));
    }
    for t in waiters {
        assert_eq!(t.join().expect("waiter thread"), Err(expected.clone()));
    }
    // The last stage stopped somewhere before 3; levels reached before the failure still
    // report success.
    let reached = progress.index(last);
    assert!(
        reached <= 2,
        "the last stage never gets past the failure: {reached}"
    );
    assert_eq!(progress.wait(last, reached), Ok(()));
    assert_eq!(progress.wait(last, reached + 1), Err(expected.clone()));
    assert_eq!(producer.publish(|_, _| {}), Err(expected.clone()));
    assert_eq!(progress.failure(), Some(expected.clone()));
    assert_eq!(pipeline.shutdown(), Err(expected));
}

#[test]
fn a_panicking_stage_fails_producers_waiters_and_shutdown() {
    failure_reaches_producers_and_waiters(true);
}

#[test]
fn a_stage_error_fails_producers_waiters_and_shutdown() {
    failure_reaches_producers_and_waiters(false);
}

#[test]
fn join_returns_the_failure_without_closing() {
    let (pipeline, permits, _) = failing_pipeline(false);
    pipeline
        .producer()
        .publish_batch(3, |_, _| {})
        .expect("publish");
    for _ in 0..3 {
        permits.send(()).expect("gate");
    }
    assert!(matches!(
        pipeline.join(),
        Err(PipelineError::StageFailed {
            panicked: false,
            ..
        })
    ));
}

#[test]
fn a_producer_panicking_between_claim_and_publish_stops_the_pipeline() {
    let mut b = Pipeline::builder(8, || 0_u64);
    let s = b.add_stage("s", noop());
    let pipeline = b.start().expect("start");
    let producer = pipeline.producer();
    let progress = pipeline.progress();
    assert_eq!(producer.publish(|_, _| {}), Ok(1));
    let waiter = {
        let progress = progress.clone();
        std::thread::spawn(move || progress.wait(s, 3))
    };
    let p2 = producer.clone();
    let unwound = std::thread::spawn(move || p2.publish(|_, _| panic!("fill failed"))).join();
    assert!(unwound.is_err(), "the panic reaches the producer's caller");
    let expected = PipelineError::ProducerPanicked { sequence: 2 };
    assert_eq!(waiter.join().expect("waiter"), Err(expected.clone()));
    assert_eq!(producer.publish(|_, _| {}), Err(expected.clone()));
    progress
        .wait(s, 1)
        .expect("sequence 1 was processed before");
    assert_eq!(pipeline.shutdown(), Err(expected));
}

#[test]
fn dropping_a_running_pipeline_drains_and_joins() {
    let count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&count);
    let mut b = Pipeline::builder(16, || 0_u64);
    b.add_stage(
        "count",
        stage_fn(move |batch: &mut Batch<'_, u64>| {
            c.fetch_add(batch.len() as u64, Ordering::Relaxed);
            Ok(())
        }),
    );
    let pipeline = b.start().expect("start");
    let producer = pipeline.producer();
    for _ in 0..100 {
        producer.publish(|_, _| {}).expect("publish");
    }
    drop(pipeline);
    assert_eq!(count.load(Ordering::Relaxed), 100);
    assert_eq!(producer.publish(|_, _| {}), Err(PipelineError::ShutDown));
}

#[test]
fn pinning_is_applied_or_skipped_with_a_reason() {
    let mut b = Pipeline::builder(8, || 0_u64);
    b.add_stage_with("on-core-0", noop(), StageOptions::default().pinned(0));
    b.add_stage_with(
        "on-a-core-that-does-not-exist",
        noop(),
        StageOptions::default().pinned(100_000),
    );
    b.add_stage("unpinned", noop());
    let pipeline = b.start().expect("start");
    let pins = pipeline.pinning().to_vec();
    assert!(
        matches!(
            pins[0],
            ledger_pipeline::Pinning::Pinned { core: 0 }
                | ledger_pipeline::Pinning::Skipped { core: 0, .. }
        ),
        "{pins:?}"
    );
    assert!(
        matches!(
            pins[1],
            ledger_pipeline::Pinning::Skipped { core: 100_000, .. }
        ),
        "{pins:?}"
    );
    assert_eq!(pins[2], ledger_pipeline::Pinning::NotRequested);
    let seq = pipeline.producer().publish(|_, _| {}).expect("publish");
    pipeline
        .progress()
        .wait(pipeline.progress().last_stage(), seq)
        .expect("runs pinned");
    pipeline.shutdown().expect("shutdown");
}

#[test]
fn repeated_start_publish_shutdown_cycles_drain_exactly() {
    // Shutdown racing with producers that are still publishing: every publish that
    // returned Ok is processed by every stage, nothing else is, nothing hangs.
    let cycles: u64 = if cfg!(miri) { 20 } else { 200 };
    for cycle in 0..cycles {
        let counts: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let mut b = Pipeline::builder(2, || 0_u64).initial_sequence(1 + cycle);
        for (k, count) in counts.iter().enumerate() {
            let count = Arc::clone(count);
            b.add_stage(
                format!("s{k}"),
                stage_fn(move |batch: &mut Batch<'_, u64>| {
                    count.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    Ok(())
                }),
            );
        }
        let pipeline = b.start().expect("start");
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let p = pipeline.producer();
                std::thread::spawn(move || {
                    let mut ok = 0_u64;
                    for _ in 0..100 {
                        match p.publish(|_, _| {}) {
                            Ok(_) => ok += 1,
                            Err(PipelineError::ShutDown) => break,
                            Err(e) => panic!("unexpected {e}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        let progress = pipeline.progress();
        // Close somewhere in the middle of the publishing (no waiting either way).
        if cycle % 2 == 0 {
            std::thread::yield_now();
        }
        pipeline.shutdown().expect("shutdown");
        let published: u64 = producers
            .into_iter()
            .map(|t| t.join().expect("producer"))
            .sum();
        for count in &counts {
            assert_eq!(count.load(Ordering::Relaxed), published, "cycle {cycle}");
        }
        assert_eq!(progress.claimed(), cycle + published);
    }
}

#[test]
fn a_failure_racing_with_busy_producers_never_hangs_them() {
    for fail_at in [1_u64, 2, 3, 17, 100, 1_000] {
        let mut b = Pipeline::builder(8, || 0_u64);
        b.add_stage("first", noop());
        b.add_stage(
            "fails",
            stage_fn(move |batch: &mut Batch<'_, u64>| {
                if batch.last_sequence() >= fail_at {
                    return Err("planned failure".into());
                }
                Ok(())
            }),
        );
        let last = b.add_stage("last", noop());
        let pipeline = b.start().expect("start");
        let producers: Vec<_> = (0..3)
            .map(|i| {
                let p = pipeline.producer();
                std::thread::spawn(move || {
                    loop {
                        let r = if i == 0 {
                            p.publish_batch(3, |_, _| {})
                        } else {
                            p.publish(|_, _| {})
                        };
                        if let Err(e) = r {
                            return e;
                        }
                    }
                })
            })
            .collect();
        let progress = pipeline.progress();
        let waiter = std::thread::spawn(move || progress.wait(last, u64::MAX >> 2));
        for t in producers {
            let e = t.join().expect("producer");
            assert!(
                matches!(
                    e,
                    PipelineError::StageFailed {
                        panicked: false,
                        ..
                    }
                ),
                "{e:?}"
            );
        }
        assert!(matches!(
            waiter.join().expect("waiter"),
            Err(PipelineError::StageFailed { .. })
        ));
        assert!(pipeline.shutdown().is_err());
    }
}

/// The nice value a stage asks for is its thread's own: the stage sees it, the producer
/// (another thread of the same process) keeps the process's.
#[cfg(target_os = "linux")]
#[test]
fn a_stage_runs_at_the_nice_value_it_asks_for() {
    fn own_nice() -> i32 {
        // SAFETY: gettid has no preconditions; getpriority reads the thread's value.
        unsafe {
            let tid = libc::id_t::try_from(libc::gettid()).expect("positive");
            libc::getpriority(libc::PRIO_PROCESS, tid)
        }
    }
    let before = own_nice();
    let seen = Arc::new(AtomicU64::new(u64::MAX));
    let mut b = Pipeline::builder(8, || 0_u64);
    b.add_stage_with(
        "nice",
        stage_fn({
            let seen = Arc::clone(&seen);
            move |_batch: &mut Batch<'_, u64>| {
                seen.store(u64::try_from(own_nice()).expect("0..=19"), Ordering::SeqCst);
                Ok(())
            }
        }),
        // 19, the highest: raising one's nice value needs no privilege.
        StageOptions::default().nice(19),
    );
    let pipeline = b.start().expect("start");
    let seq = pipeline.producer().publish(|_, _| {}).expect("publish");
    pipeline
        .progress()
        .wait(pipeline.progress().last_stage(), seq)
        .expect("runs");
    pipeline.shutdown().expect("shutdown");
    assert_eq!(seen.load(Ordering::SeqCst), 19);
    assert_eq!(own_nice(), before, "the caller's thread is untouched");
}
