//! A 3-stage pipeline of cheap stages over 64-byte slots, 1 and 4 producers, beside the
//! same chain built from `crossbeam_queue::ArrayQueue`s between threads (items moved one at
//! a time, waiting spin-then-yield-then-park like the ring's default strategy).
//!
//! ```text
//! flock /tmp/ledger-bench.lock cargo bench -p ledger-pipeline --bench pipeline -- \
//!     --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Criterion reports items/s (`throughput/{ring,arrayqueue}/{1,4}p`: one item per
//! publish or push; `throughput/ring_batch64/{1,4}p`: the ring with producers claiming 64
//! slots per `publish_batch`). `PIPELINE_BENCH_SPINS` / `PIPELINE_BENCH_YIELDS` override the
//! wait parameters of both chains. After it, unless a
//! filter excludes `latency`, the bench prints publish-to-last-stage latency percentiles
//! (hdrhistogram, ns) for both chains, idle (one item at a time, the threads parked between
//! items) and saturated (the throughput run with timestamps), and the CPU the idle pipeline
//! uses.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;
use ledger_pipeline::{
    Batch, Pipeline, Producer, Progress, SPINS_DEFAULT, StageId, WaitStrategy, YIELDS_DEFAULT,
    stage_fn,
};

/// Slots in the ring, and in each ArrayQueue of the comparison chain.
const CAPACITY: usize = 4096;
const PRODUCER_COUNTS: [usize; 2] = [1, 4];
const IDLE_SAMPLES: usize = 2_000;
const IDLE_GAP: Duration = Duration::from_micros(500);
const SATURATED_ITEMS: u64 = 2_000_000;
/// Slots claimed per `publish_batch` in the `ring_batch*` variant.
const PRODUCER_BATCH: u64 = 64;

#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Slot {
    sequence: u64,
    value: u64,
    /// Nanoseconds since `BASE` when the producer published it (0: not measured).
    published_ns: u64,
    a: u64,
    b: u64,
    c: u64,
    d: u64,
    e: u64,
}
const _: () = assert!(size_of::<Slot>() == 64);

static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The wait parameters both chains use: the ring's defaults, or
/// `PIPELINE_BENCH_SPINS` / `PIPELINE_BENCH_YIELDS` from the environment to try others.
static WAIT: LazyLock<(u32, u32)> = LazyLock::new(|| {
    let var = |name: &str, default: u32| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    (
        var("PIPELINE_BENCH_SPINS", SPINS_DEFAULT),
        var("PIPELINE_BENCH_YIELDS", YIELDS_DEFAULT),
    )
});

fn strategy() -> WaitStrategy {
    let (spins, yields) = *WAIT;
    if (spins, yields) == (SPINS_DEFAULT, YIELDS_DEFAULT) {
        WaitStrategy::DEFAULT
    } else {
        WaitStrategy::SpinYieldPark { spins, yields }
    }
}

fn now_ns() -> u64 {
    u64::try_from(BASE.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

// The three cheap stages, shared by both chains.
#[inline]
fn stage_a(s: &mut Slot) {
    s.a = s.value.wrapping_mul(3).wrapping_add(1);
}
#[inline]
fn stage_b(s: &mut Slot) {
    s.b = s.a ^ s.sequence;
}
#[inline]
fn stage_c(s: &mut Slot) -> u64 {
    s.c = s.b.wrapping_add(1);
    s.c
}

/// Latencies from publish, recorded when `published_ns != 0`: `[0]` by the first stage
/// (the wake-up of one hop), `[1]` by the last stage (the whole chain).
type Recorder = Arc<[Mutex<Histogram<u64>>; 2]>;

fn recorder() -> Recorder {
    let h = || Mutex::new(Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds"));
    Arc::new([h(), h()])
}

#[inline]
fn record(r: &Recorder, which: usize, published_ns: u64, now: u64) {
    if let Some(h) = r.get(which) {
        h.lock()
            .expect("histogram")
            .saturating_record(now.saturating_sub(published_ns).max(1));
    }
}

// ---------------------------------------------------------------------------------------
// The ring pipeline.

struct Ring {
    pipeline: Option<Pipeline<Slot>>,
    producer: Producer<Slot>,
    progress: Progress,
    last: StageId,
}

impl Ring {
    fn new(record_to: Recorder) -> Self {
        let mut b = Pipeline::builder(CAPACITY, Slot::default).wait_strategy(strategy());
        let first = Arc::clone(&record_to);
        b.add_stage(
            "a",
            stage_fn(move |batch: &mut Batch<'_, Slot>| {
                let mut now = 0;
                for (_, s) in batch.iter_mut() {
                    stage_a(s);
                    if s.published_ns != 0 {
                        if now == 0 {
                            now = now_ns();
                        }
                        record(&first, 0, s.published_ns, now);
                    }
                }
                Ok(())
            }),
        );
        b.add_stage(
            "b",
            stage_fn(|batch: &mut Batch<'_, Slot>| {
                for (_, s) in batch.iter_mut() {
                    stage_b(s);
                }
                Ok(())
            }),
        );
        let mut sum = 0_u64;
        let last = b.add_stage(
            "c",
            stage_fn(move |batch: &mut Batch<'_, Slot>| {
                let mut done_ns = 0;
                for (_, s) in batch.iter_mut() {
                    sum = sum.wrapping_add(stage_c(s));
                    if s.published_ns != 0 {
                        if done_ns == 0 {
                            done_ns = now_ns();
                        }
                        record(&record_to, 1, s.published_ns, done_ns);
                    }
                }
                black_box(sum);
                Ok(())
            }),
        );
        let pipeline = b.start().expect("start pipeline");
        Self {
            producer: pipeline.producer(),
            progress: pipeline.progress(),
            pipeline: Some(pipeline),
            last,
        }
    }

    /// Publishes `per_producer` items from each of `producers` threads, one at a time
    /// (`batch == 1`) or `batch` per claim, and returns when the last stage has them all.
    fn run(&self, producers: usize, per_producer: u64, stamp: bool, batch: u64) -> Duration {
        let start = Instant::now();
        let threads: Vec<_> = (0..producers)
            .map(|_| {
                let p = self.producer.clone();
                thread::spawn(move || {
                    let mut last = 0;
                    let mut i = 0;
                    while i < per_producer {
                        let n = batch.min(per_producer - i);
                        let fill = |seq: u64, s: &mut Slot| {
                            s.sequence = seq;
                            s.value = seq;
                            s.published_ns = if stamp { now_ns() } else { 0 };
                        };
                        last = if n == 1 {
                            p.publish(fill).expect("publish")
                        } else {
                            p.publish_batch(n as usize, fill).expect("publish") + n - 1
                        };
                        i += n;
                    }
                    last
                })
            })
            .collect();
        let last = threads
            .into_iter()
            .map(|t| t.join().expect("producer"))
            .max()
            .unwrap_or(0);
        self.progress.wait(self.last, last).expect("drain");
        start.elapsed()
    }

    fn one_idle(&self) {
        let seq = self
            .producer
            .publish(|seq, s| {
                s.sequence = seq;
                s.published_ns = now_ns();
            })
            .expect("publish");
        self.progress.wait(self.last, seq).expect("wait");
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if let Some(p) = self.pipeline.take() {
            p.shutdown().expect("shutdown");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The comparison: ArrayQueues between threads, one item at a time.

/// Spin-then-yield-then-park, the same parameters as the ring's default strategy, with a
/// sleeper count so the fast path costs one fence and one load, as in the ring.
struct Signal {
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Signal {
    fn new() -> Self {
        Self {
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    #[inline]
    fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            let _g = self.lock.lock().expect("lock");
            self.cv.notify_all();
        }
    }

    #[inline]
    fn wait(&self, mut ready: impl FnMut() -> bool) {
        let (spins, yields) = *WAIT;
        for _ in 0..spins {
            if ready() {
                return;
            }
            std::hint::spin_loop();
        }
        for _ in 0..yields {
            if ready() {
                return;
            }
            thread::yield_now();
        }
        loop {
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let g = self.lock.lock().expect("lock");
            if ready() {
                drop(g);
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            let (g, _) = self
                .cv
                .wait_timeout(g, Duration::from_millis(100))
                .expect("wait");
            drop(g);
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            if ready() {
                return;
            }
        }
    }
}

struct Hop {
    queue: ArrayQueue<Slot>,
    not_empty: Signal,
    not_full: Signal,
}

impl Hop {
    fn new() -> Self {
        Self {
            queue: ArrayQueue::new(CAPACITY),
            not_empty: Signal::new(),
            not_full: Signal::new(),
        }
    }

    #[inline]
    fn push(&self, mut item: Slot) {
        loop {
            match self.queue.push(item) {
                Ok(()) => break,
                Err(back) => {
                    item = back;
                    self.not_full.wait(|| !self.queue.is_full());
                }
            }
        }
        self.not_empty.notify();
    }

    /// `None` once `stop` is set and the queue is empty.
    #[inline]
    fn pop(&self, stop: &AtomicBool) -> Option<Slot> {
        loop {
            if let Some(item) = self.queue.pop() {
                self.not_full.notify();
                return Some(item);
            }
            if stop.load(Ordering::Acquire) {
                return None;
            }
            self.not_empty
                .wait(|| !self.queue.is_empty() || stop.load(Ordering::Acquire));
        }
    }
}

struct QueueChain {
    hops: Arc<[Hop; 3]>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    done_signal: Arc<Signal>,
    threads: Vec<JoinHandle<()>>,
}

impl QueueChain {
    fn new(record_to: Recorder) -> Self {
        let hops = Arc::new([Hop::new(), Hop::new(), Hop::new()]);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let done_signal = Arc::new(Signal::new());
        let mut threads = Vec::new();
        for k in 0..3 {
            let hops = Arc::clone(&hops);
            let stop = Arc::clone(&stop);
            let done = Arc::clone(&done);
            let done_signal = Arc::clone(&done_signal);
            let record_to = Arc::clone(&record_to);
            threads.push(thread::spawn(move || {
                let mut sum = 0_u64;
                let mut count = 0_u64;
                while let Some(mut s) = hops[k].pop(&stop) {
                    match k {
                        0 => {
                            stage_a(&mut s);
                            if s.published_ns != 0 {
                                record(&record_to, 0, s.published_ns, now_ns());
                            }
                            hops[1].push(s);
                        }
                        1 => {
                            stage_b(&mut s);
                            hops[2].push(s);
                        }
                        _ => {
                            sum = sum.wrapping_add(stage_c(&mut s));
                            if s.published_ns != 0 {
                                record(&record_to, 1, s.published_ns, now_ns());
                            }
                            count += 1;
                            done.store(count, Ordering::Release);
                            done_signal.notify();
                        }
                    }
                }
                black_box(sum);
            }));
        }
        Self {
            hops,
            stop,
            done,
            done_signal,
            threads,
        }
    }

    fn run(&self, producers: usize, per_producer: u64, stamp: bool) -> Duration {
        let target = self.done.load(Ordering::Acquire) + producers as u64 * per_producer;
        let start = Instant::now();
        let threads: Vec<_> = (0..producers)
            .map(|_| {
                let hops = Arc::clone(&self.hops);
                thread::spawn(move || {
                    for i in 0..per_producer {
                        hops[0].push(Slot {
                            sequence: i,
                            value: i,
                            published_ns: if stamp { now_ns() } else { 0 },
                            ..Slot::default()
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("producer");
        }
        self.done_signal
            .wait(|| self.done.load(Ordering::Acquire) >= target);
        start.elapsed()
    }

    fn one_idle(&self) {
        let target = self.done.load(Ordering::Acquire) + 1;
        self.hops[0].push(Slot {
            published_ns: now_ns(),
            ..Slot::default()
        });
        self.done_signal
            .wait(|| self.done.load(Ordering::Acquire) >= target);
    }
}

impl Drop for QueueChain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for h in self.hops.iter() {
            h.not_empty.notify();
            fence(Ordering::SeqCst);
            let _g = h.not_empty.lock.lock().expect("lock");
            h.not_empty.cv.notify_all();
        }
        for t in self.threads.drain(..) {
            t.join().expect("stage thread");
        }
    }
}

// ---------------------------------------------------------------------------------------

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("throughput");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    for producers in PRODUCER_COUNTS {
        let ring = Ring::new(recorder());
        group.bench_with_input(
            BenchmarkId::new("ring", format!("{producers}p")),
            &producers,
            |b, &p| {
                b.iter_custom(|iters| ring.run(p, iters.div_ceil(p as u64), false, 1));
            },
        );
        // The same ring, producers claiming runs of PRODUCER_BATCH (what the ring offers
        // and a queue of single items does not).
        group.bench_with_input(
            BenchmarkId::new(
                format!("ring_batch{PRODUCER_BATCH}"),
                format!("{producers}p"),
            ),
            &producers,
            |b, &p| {
                b.iter_custom(|iters| ring.run(p, iters.div_ceil(p as u64), false, PRODUCER_BATCH));
            },
        );
        drop(ring);
        let chain = QueueChain::new(recorder());
        group.bench_with_input(
            BenchmarkId::new("arrayqueue", format!("{producers}p")),
            &producers,
            |b, &p| {
                b.iter_custom(|iters| chain.run(p, iters.div_ceil(p as u64), false));
            },
        );
    }
    group.finish();
}

fn percentiles(r: &Recorder) -> String {
    format!(
        "first stage {} | last stage {}",
        percentiles_of(&r[0].lock().expect("h")),
        percentiles_of(&r[1].lock().expect("h"))
    )
}

fn percentiles_of(h: &Histogram<u64>) -> String {
    format!(
        "n={} p50={:.1}us p90={:.1}us p99={:.1}us p99.9={:.1}us max={:.1}us",
        h.len(),
        h.value_at_quantile(0.50) as f64 / 1e3,
        h.value_at_quantile(0.90) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.value_at_quantile(0.999) as f64 / 1e3,
        h.max() as f64 / 1e3,
    )
}

fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid value; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a pointer to a live rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn latency_report() {
    println!("\nlatency publish -> last stage (3 stages, 64-byte slots, capacity {CAPACITY})");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("loadavg at start: {}", load.trim());
    println!("wait: spins {} yields {}", WAIT.0, WAIT.1);

    // Idle: one item at a time, with a gap long enough for every thread to park.
    let r = recorder();
    let ring = Ring::new(Arc::clone(&r));
    for _ in 0..IDLE_SAMPLES {
        ring.one_idle();
        thread::sleep(IDLE_GAP);
    }
    println!("idle       ring:       {}", percentiles(&r));
    let cpu0 = cpu_time();
    let wall0 = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let idle_cpu = (cpu_time() - cpu0).as_secs_f64() / wall0.elapsed().as_secs_f64();
    println!(
        "idle       ring:       CPU while idle for 1 s: {:.2}%",
        idle_cpu * 100.0
    );
    drop(ring);

    let r = recorder();
    let chain = QueueChain::new(Arc::clone(&r));
    for _ in 0..IDLE_SAMPLES {
        chain.one_idle();
        thread::sleep(IDLE_GAP);
    }
    println!("idle       arrayqueue: {}", percentiles(&r));
    drop(chain);

    // Saturated: the throughput run with a timestamp per item (queueing included).
    for producers in PRODUCER_COUNTS {
        let per = SATURATED_ITEMS / producers as u64;
        let r = recorder();
        let ring = Ring::new(Arc::clone(&r));
        let t = ring.run(producers, per, true, 1);
        println!(
            "saturated  ring       {producers}p: {:.1}M items/s, {}",
            (per * producers as u64) as f64 / t.as_secs_f64() / 1e6,
            percentiles(&r)
        );
        drop(ring);
        let r = recorder();
        let chain = QueueChain::new(Arc::clone(&r));
        let t = chain.run(producers, per, true);
        println!(
            "saturated  arrayqueue {producers}p: {:.1}M items/s, {}",
            (per * producers as u64) as f64 / t.as_secs_f64() / 1e6,
            percentiles(&r)
        );
    }
}

/// The first command-line argument that is a criterion filter, if any.
fn filter() -> Option<String> {
    const WITH_VALUE: [&str; 8] = [
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--output-format",
        "--profile-time",
        "--color",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

fn main() {
    let _ = *BASE;
    let wants = |name: &str| filter().is_none_or(|f| name.contains(&f));
    let mut c = Criterion::default().configure_from_args();
    throughput(&mut c);
    c.final_summary();
    if wants("latency") {
        latency_report();
    }
}
