//! Every stage sees every sequence exactly once, in order, whatever the producers do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ledger_pipeline::{
    Batch, Pipeline, PipelineError, StageError, StageOptions, WaitStrategy, stage_fn,
};

#[derive(Debug, Default, Clone)]
struct Slot {
    /// Stamped by the producer with the sequence it was handed.
    sequence: u64,
    /// Which producer filled it, and its running item number there.
    producer: u64,
    item: u64,
    /// How many stages have seen it: stage k expects k and writes k + 1.
    stages_seen: u64,
    /// A value each stage transforms, so the last stage can check the chain ran in order.
    value: u64,
}

/// A tiny deterministic generator (xorshift64*), seeded per producer.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the checking stage found; the first problem is kept.
#[derive(Default)]
struct Seen {
    count: AtomicU64,
    /// Sum over items of `producer * 2^32 + item`, to compare with what producers sent.
    checksum: AtomicU64,
}

fn checking_stage(
    k: u64,
    stages: u64,
    initial: u64,
    seen: Arc<Seen>,
) -> impl FnMut(&mut Batch<'_, Slot>) -> Result<(), StageError> + Send + 'static {
    let mut expected_next = initial;
    move |batch: &mut Batch<'_, Slot>| {
        if batch.first_sequence() != expected_next {
            return Err(format!(
                "stage {k}: batch starts at {}, expected {expected_next}",
                batch.first_sequence()
            )
            .into());
        }
        if batch.is_empty() || batch.len() as u64 != batch.last_sequence() - expected_next + 1 {
            return Err(format!("stage {k}: bad batch bounds").into());
        }
        let mut count = 0_u64;
        let mut sum = 0_u64;
        let mut ends = 0;
        batch.for_each(|seq, slot, end| {
            if end {
                ends += 1;
            }
            assert_eq!(
                slot.sequence, seq,
                "stage {k}: slot stamped with another sequence"
            );
            assert_eq!(
                slot.stages_seen, k,
                "stage {k}: seq {seq} seen by {} stages",
                slot.stages_seen
            );
            assert_eq!(
                slot.value,
                seq.wrapping_mul(31).wrapping_add(k),
                "stage {k}: value"
            );
            slot.stages_seen = k + 1;
            slot.value = slot.value.wrapping_add(1);
            count += 1;
            sum = sum.wrapping_add((slot.producer << 32) + slot.item);
        });
        if ends != 1 {
            return Err(format!("stage {k}: {ends} end_of_batch flags").into());
        }
        expected_next = batch.last_sequence() + 1;
        if k + 1 == stages {
            seen.count.fetch_add(count, Ordering::Relaxed);
            seen.checksum.fetch_add(sum, Ordering::Relaxed);
        }
        Ok(())
    }
}

struct Run {
    producers: u64,
    items_per_producer: u64,
    capacity: usize,
    stages: u64,
    initial: u64,
    strategy: WaitStrategy,
    batch_max: u64,
    stage_batch_max: usize,
}

/// Miri runs this code some 10^4 times slower: there, a thousandth of the items (at
/// least 64 per producer, still several trips round the small rings).
fn scaled(items: u64) -> u64 {
    if cfg!(miri) {
        (items / 1000).max(64)
    } else {
        items
    }
}

fn run(cfg: Run) {
    let cfg = Run {
        items_per_producer: scaled(cfg.items_per_producer),
        ..cfg
    };
    let mut builder = Pipeline::builder(cfg.capacity, Slot::default)
        .wait_strategy(cfg.strategy)
        .initial_sequence(cfg.initial);
    let seen = Arc::new(Seen::default());
    let mut ids = Vec::new();
    for k in 0..cfg.stages {
        let handler = stage_fn(checking_stage(
            k,
            cfg.stages,
            cfg.initial,
            Arc::clone(&seen),
        ));
        // Alternate unbounded and bounded batches.
        let options = if k % 2 == 1 {
            StageOptions::default().batch_size_max(cfg.stage_batch_max)
        } else {
            StageOptions::default()
        };
        ids.push(builder.add_stage_with(format!("stage-{k}"), handler, options));
    }
    let pipeline = builder.start().expect("start");
    let claimed = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..cfg.producers)
        .map(|p| {
            let producer = pipeline.producer();
            let claimed = Arc::clone(&claimed);
            let items = cfg.items_per_producer;
            let batch_max = cfg.batch_max;
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (p + 1));
                let mut mine = Vec::new();
                let mut item = 0;
                while item < items {
                    let n = (1 + rng.below(batch_max)).min(items - item);
                    let fill = |base: u64| {
                        let mut i = base;
                        move |seq: u64, slot: &mut Slot| {
                            slot.sequence = seq;
                            slot.producer = p;
                            slot.item = i;
                            slot.stages_seen = 0;
                            slot.value = seq.wrapping_mul(31);
                            i += 1;
                        }
                    };
                    let first = match (n, rng.below(3)) {
                        (1, 0) => producer.publish(fill(item)).expect("publish"),
                        (_, 1) => loop {
                            match producer.try_publish_batch(n as usize, fill(item)) {
                                Ok(first) => break first,
                                Err(PipelineError::Full { .. }) => std::thread::yield_now(),
                                Err(e) => panic!("try_publish_batch: {e}"),
                            }
                        },
                        _ => producer
                            .publish_batch(n as usize, fill(item))
                            .expect("publish_batch"),
                    };
                    mine.push((first, n));
                    item += n;
                }
                claimed.lock().expect("lock").extend(mine);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("producer thread");
    }
    let total = cfg.producers * cfg.items_per_producer;
    let last = cfg.initial + total - 1;
    let progress = pipeline.progress();
    for &id in &ids {
        progress
            .wait(id, last)
            .expect("every stage reaches the last sequence");
    }
    pipeline.shutdown().expect("clean shutdown");

    // The claims tile initial..=last exactly: gap-free, no duplicates.
    let mut claims = claimed.lock().expect("lock").clone();
    claims.sort_unstable();
    let mut next = cfg.initial;
    for (first, n) in claims {
        assert_eq!(first, next, "claims are contiguous and disjoint");
        next += n;
    }
    assert_eq!(next, last + 1);
    for &id in &ids {
        assert_eq!(
            progress.index(id),
            last,
            "no stage went past what was published"
        );
    }
    assert_eq!(seen.count.load(Ordering::Relaxed), total);
    let expected: u64 = (0..cfg.producers)
        .flat_map(|p| (0..cfg.items_per_producer).map(move |i| (p << 32) + i))
        .fold(0, u64::wrapping_add);
    assert_eq!(seen.checksum.load(Ordering::Relaxed), expected);
}

#[test]
fn many_producers_random_batches_default_strategy() {
    run(Run {
        producers: 4,
        items_per_producer: 250_000,
        capacity: 256,
        stages: 3,
        initial: 1,
        strategy: WaitStrategy::DEFAULT,
        batch_max: 40,
        stage_batch_max: 7,
    });
}

#[test]
fn tiny_ring_forces_wraparound_and_backpressure() {
    run(Run {
        producers: 3,
        items_per_producer: 5_000,
        capacity: 4,
        stages: 4,
        initial: 1,
        strategy: WaitStrategy::DEFAULT,
        batch_max: 4,
        stage_batch_max: 3,
    });
}

#[test]
fn resumes_at_a_configured_initial_sequence() {
    run(Run {
        producers: 2,
        items_per_producer: 5_000,
        capacity: 64,
        stages: 2,
        initial: 1_000_001,
        strategy: WaitStrategy::DEFAULT,
        batch_max: 64,
        stage_batch_max: 16,
    });
}

#[test]
fn low_cpu_strategy() {
    run(Run {
        producers: 2,
        items_per_producer: 10_000,
        capacity: 128,
        stages: 3,
        initial: 1,
        strategy: WaitStrategy::LowCpu,
        batch_max: 16,
        stage_batch_max: 5,
    });
}

#[test]
fn busy_spin_strategy() {
    // Busy-spinning threads outnumber the cores here: keep the run small.
    run(Run {
        producers: 1,
        items_per_producer: 2_000,
        capacity: 64,
        stages: 2,
        initial: 7,
        strategy: WaitStrategy::BusySpin,
        batch_max: 8,
        stage_batch_max: 3,
    });
}

#[test]
fn single_stage_single_producer_one_at_a_time() {
    run(Run {
        producers: 1,
        items_per_producer: 20_000,
        capacity: 16,
        stages: 1,
        initial: 1,
        strategy: WaitStrategy::DEFAULT,
        batch_max: 1,
        stage_batch_max: 1,
    });
}

#[test]
fn initial_indices_and_first_sequence() {
    let mut b = Pipeline::builder(8, Slot::default).initial_sequence(42);
    let a = b.add_stage("a", stage_fn(|_: &mut Batch<'_, Slot>| Ok(())));
    let z = b.add_stage("z", stage_fn(|_: &mut Batch<'_, Slot>| Ok(())));
    let pipeline = b.start().expect("start");
    let progress = pipeline.progress();
    assert_eq!(progress.index(a), 41);
    assert_eq!(progress.index(z), 41);
    assert_eq!(progress.claimed(), 41);
    assert_eq!(progress.stage_count(), 2);
    assert_eq!(progress.stage(1), Some(z));
    assert_eq!(progress.stage(2), None);
    assert_eq!(progress.last_stage(), z);
    assert_eq!(progress.stage_name(a), "a");
    let producer = pipeline.producer();
    assert_eq!(producer.publish(|s, slot| slot.sequence = s), Ok(42));
    assert_eq!(
        producer.publish_batch(3, |s, slot| slot.sequence = s),
        Ok(43)
    );
    assert_eq!(producer.publish(|s, slot| slot.sequence = s), Ok(46));
    progress.wait(z, 46).expect("wait");
    assert_eq!(progress.index(z), 46);
    assert_eq!(progress.claimed(), 46);
    pipeline.shutdown().expect("shutdown");
}

#[test]
fn stages_see_whole_batches_as_slices() {
    // A stage that reads its batch through `as_mut_slices` sees the same order as
    // `iter_mut`, including when the run wraps around the ring.
    let mut b = Pipeline::builder(8, Slot::default);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    let s = b.add_stage(
        "slices",
        stage_fn(move |batch: &mut Batch<'_, Slot>| {
            let first = batch.first_sequence();
            let (head, tail) = batch.as_mut_slices();
            let seqs: Vec<u64> = head.iter().chain(tail.iter()).map(|s| s.sequence).collect();
            let expected: Vec<u64> = (first..first + seqs.len() as u64).collect();
            assert_eq!(seqs, expected);
            seen2.lock().expect("lock").extend(seqs);
            Ok(())
        }),
    );
    let pipeline = b.start().expect("start");
    let producer = pipeline.producer();
    for _ in 0..20 {
        producer
            .publish_batch(6, |seq, slot| slot.sequence = seq)
            .expect("publish");
    }
    pipeline.progress().wait(s, 120).expect("wait");
    pipeline.shutdown().expect("shutdown");
    assert_eq!(*seen.lock().expect("lock"), (1..=120).collect::<Vec<_>>());
}
