//! Building, running and stopping a pipeline; the producer and progress handles.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::affinity::{Pinning, pin_current_thread, set_current_thread_nice};
use crate::batch::{Batch, Stage};
use crate::error::{PipelineError, SharedStageError};
use crate::ring::{CAPACITY_MAX, CLOSED, Control, Ring, SEQUENCE_MAX};
use crate::sync::fence;
use crate::wait::{WaitStrategy, wait_until};

/// Identifies a stage of one pipeline, as returned by [`PipelineBuilder::add_stage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageId(usize);

impl StageId {
    /// The stage's position in the chain (0 = first).
    pub fn index(self) -> usize {
        self.0
    }
}

/// Per-stage options.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageOptions {
    /// Pin the stage thread to this core (skipped, and reported by
    /// [`Pipeline::pinning`], if the core is not available).
    pub core: Option<usize>,
    /// The most slots handed to one `on_batch` call (capped at the ring capacity).
    pub batch_size_max: usize,
    /// The stage thread's nice value (0: the process's). A positive one lets other
    /// threads of the machine (say, the ones carrying network round trips) preempt this
    /// stage when they wake up on a busy machine. Linux only; a refusal is ignored.
    pub nice: i32,
}

impl Default for StageOptions {
    fn default() -> Self {
        Self {
            core: None,
            batch_size_max: usize::MAX,
            nice: 0,
        }
    }
}

impl StageOptions {
    /// Pins the stage to `core`.
    pub fn pinned(mut self, core: usize) -> Self {
        self.core = Some(core);
        self
    }

    /// Bounds the batches handed to the stage.
    pub fn batch_size_max(mut self, n: usize) -> Self {
        self.batch_size_max = n;
        self
    }

    /// Runs the stage thread at nice value `nice` (see [`StageOptions::nice`]).
    pub fn nice(mut self, nice: i32) -> Self {
        self.nice = nice;
        self
    }
}

struct StageSpec<T> {
    name: String,
    handler: Box<dyn Stage<T>>,
    options: StageOptions,
}

/// Configures a pipeline: ring size, slot factory, wait strategy, first sequence, stages.
pub struct PipelineBuilder<T> {
    capacity: usize,
    factory: Box<dyn FnMut() -> T>,
    strategy: WaitStrategy,
    initial_sequence: u64,
    stages: Vec<StageSpec<T>>,
}

impl<T> std::fmt::Debug for PipelineBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("capacity", &self.capacity)
            .field("strategy", &self.strategy)
            .field("initial_sequence", &self.initial_sequence)
            .field(
                "stages",
                &self
                    .stages
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> PipelineBuilder<T> {
    /// Sets the wait strategy (default [`WaitStrategy::DEFAULT`]).
    pub fn wait_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets the first sequence producers will claim (default 1). Every stage index starts
    /// at `initial_sequence - 1`. Must be in `1..=SEQUENCE_MAX`.
    pub fn initial_sequence(mut self, initial_sequence: u64) -> Self {
        self.initial_sequence = initial_sequence;
        self
    }

    /// Appends a stage, gated on the one added before it (the first on the producers).
    pub fn add_stage(&mut self, name: impl Into<String>, handler: impl Stage<T>) -> StageId {
        self.add_stage_with(name, handler, StageOptions::default())
    }

    /// [`add_stage`](Self::add_stage) with options (pinning, batch bound).
    pub fn add_stage_with(
        &mut self,
        name: impl Into<String>,
        handler: impl Stage<T>,
        options: StageOptions,
    ) -> StageId {
        self.stages.push(StageSpec {
            name: name.into(),
            handler: Box::new(handler),
            options,
        });
        StageId(self.stages.len() - 1)
    }

    /// Allocates the slots and starts one thread per stage.
    pub fn start(mut self) -> Result<Pipeline<T>, PipelineError> {
        if !self.capacity.is_power_of_two() || self.capacity > CAPACITY_MAX {
            return Err(PipelineError::InvalidConfig {
                reason: "capacity must be a power of two, at most 2^30",
            });
        }
        if self.initial_sequence == 0 || self.initial_sequence > SEQUENCE_MAX {
            return Err(PipelineError::InvalidConfig {
                reason: "initial sequence must be in 1..=2^62-1",
            });
        }
        if self.stages.is_empty() {
            return Err(PipelineError::InvalidConfig {
                reason: "a pipeline needs at least one stage",
            });
        }
        if self.stages.iter().any(|s| s.options.batch_size_max == 0) {
            return Err(PipelineError::InvalidConfig {
                reason: "batch_size_max must be at least 1",
            });
        }
        let control = Arc::new(Control::new(
            self.capacity as u64,
            self.strategy,
            self.initial_sequence,
            self.stages.iter().map(|s| s.name.clone()).collect(),
        ));
        let ring = Arc::new(Ring::new(
            Arc::clone(&control),
            self.capacity,
            &mut *self.factory,
        ));

        let (tx, rx) = std::sync::mpsc::channel::<(usize, Pinning)>();
        let mut threads = Vec::with_capacity(self.stages.len());
        let mut pinning = vec![Pinning::NotRequested; self.stages.len()];
        for (index, spec) in self.stages.into_iter().enumerate() {
            let ring = Arc::clone(&ring);
            let tx = tx.clone();
            let name = spec.name.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("pipeline-{name}"))
                .spawn(move || {
                    let pin = match spec.options.core {
                        Some(core) => pin_current_thread(core),
                        None => Pinning::NotRequested,
                    };
                    if spec.options.nice != 0 {
                        // A hint: the stage runs the same at the process's niceness.
                        let _ = set_current_thread_nice(spec.options.nice);
                    }
                    // The receiver lives until every stage reported.
                    let _ = tx.send((index, pin));
                    drop(tx);
                    run_stage(&ring, index, spec.handler, spec.options.batch_size_max);
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    control.fail(PipelineError::Spawn {
                        stage: name,
                        message: e.to_string(),
                    });
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(control.closed_error());
                }
            }
        }
        drop(tx);
        for (index, pin) in rx.iter() {
            pinning[index] = pin;
        }
        Ok(Pipeline {
            ring,
            threads,
            pinning,
        })
    }
}

/// The body of a stage thread.
pub(crate) fn run_stage<T: 'static>(
    ring: &Ring<T>,
    index: usize,
    mut handler: Box<dyn Stage<T>>,
    batch_max: usize,
) {
    let control = &*ring.control;
    let cell = control.stage(index);
    let batch_max = (batch_max.min(ring.capacity())) as u64;
    let mut next = cell.cursor.load(Ordering::Relaxed) + 1;
    loop {
        // Wait until `next` is ready for this stage, or there is nothing more to do.
        let ready = if index == 0 {
            wait_until(control.strategy, &control.published, next, None, || {
                if ring.is_available(next) {
                    return Some(Some(next));
                }
                stage_exit(control, next)
            })
        } else {
            let upstream = control.stage(index - 1);
            wait_until(control.strategy, &upstream.notifier, next, None, || {
                let up = upstream.cursor.load(Ordering::Acquire);
                if up >= next {
                    return Some(Some(up));
                }
                stage_exit(control, next)
            })
        };
        // Without a deadline the wait returns only through `check`.
        let Some(ready) = ready.expect("a wait without a deadline never times out") else {
            break;
        };
        if control.is_failed() {
            break;
        }
        let last = if index == 0 {
            ring.highest_available(next, batch_max)
        } else {
            ready.min(next + batch_max - 1)
        };
        let len = (last - next + 1) as usize;
        // SAFETY: stage `index` holds `next..=last` exclusively: for stage 0 each of them
        // was read as published (`available[s] == s`, Acquire); for a later stage the
        // upstream cursor was read `>= last` (Acquire). Our own cursor is `next - 1`, so
        // the downstream stage cannot have them, and producers cannot reclaim them before
        // the last stage passes them. `len <= batch_max <= capacity`.
        let mut batch = unsafe { Batch::new(ring, next, len) };
        let outcome = catch_unwind(AssertUnwindSafe(|| handler.on_batch(&mut batch)));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some((e.to_string(), false, Some(SharedStageError::from(e)))),
            Err(payload) => Some((panic_message(payload.as_ref()), true, None)),
        };
        if let Some((message, panicked, source)) = failure {
            control.fail(PipelineError::StageFailed {
                stage: cell.name.clone(),
                message,
                panicked,
                source,
            });
            break;
        }
        cell.release(last);
        next = last + 1;
    }
    cell.exited.store(true, Ordering::Release);
    cell.notifier.wake_all();
}

/// In a stage's wait: `Some(None)` when the stage should leave its loop. Reads only the
/// `closed` flag until the pipeline is closed (failures close it too).
#[inline]
fn stage_exit(control: &Control, next: u64) -> Option<Option<u64>> {
    if !control.closed.load(Ordering::Acquire) {
        return None;
    }
    if control.is_failed() {
        return Some(None);
    }
    // `closed` is stored after `CLOSED`: the claim end read here is final.
    let (_, end) = control.claim_state();
    if next >= end {
        return Some(None);
    }
    None
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// A running pipeline: owns the stage threads. Dropping it shuts it down (draining).
pub struct Pipeline<T> {
    ring: Arc<Ring<T>>,
    threads: Vec<JoinHandle<()>>,
    pinning: Vec<Pinning>,
}

impl<T> std::fmt::Debug for Pipeline<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("ring", &self.ring)
            .field("pinning", &self.pinning)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// Starts configuring a pipeline of `capacity` slots (a power of two), each made by
    /// `factory` once, up front, and reused for every sequence that maps to it.
    pub fn builder(capacity: usize, factory: impl FnMut() -> T + 'static) -> PipelineBuilder<T> {
        PipelineBuilder {
            capacity,
            factory: Box::new(factory),
            strategy: WaitStrategy::DEFAULT,
            initial_sequence: 1,
            stages: Vec::new(),
        }
    }

    /// A handle to publish with; clone it freely, use it from any thread.
    pub fn producer(&self) -> Producer<T> {
        Producer {
            ring: Arc::clone(&self.ring),
        }
    }

    /// A handle to read stage indices and wait on them.
    pub fn progress(&self) -> Progress {
        Progress {
            control: Arc::clone(&self.ring.control),
        }
    }

    /// For each stage, in order, what became of its pinning request.
    pub fn pinning(&self) -> &[Pinning] {
        &self.pinning
    }

    /// Stops accepting publishes (they get [`PipelineError::ShutDown`]) without waiting.
    /// The stages go on until they have drained everything already claimed.
    pub fn close(&self) {
        self.ring.control.close();
    }

    /// Stops accepting publishes, lets every stage drain what was claimed, joins the
    /// threads. Returns the pipeline's failure if a stage (or a producer) failed.
    pub fn shutdown(mut self) -> Result<(), PipelineError> {
        self.stop_and_join()
    }

    /// Waits for the stage threads to end without closing: returns once the pipeline
    /// failed, or once someone else closed it and it drained.
    pub fn join(mut self) -> Result<(), PipelineError> {
        self.join_threads()
    }

    fn stop_and_join(&mut self) -> Result<(), PipelineError> {
        self.ring.control.close();
        self.join_threads()
    }

    fn join_threads(&mut self) -> Result<(), PipelineError> {
        for t in self.threads.drain(..) {
            // Handlers and wakers run under catch_unwind, so the loop itself should not
            // panic; if it ever does, that is a failure, never a clean shutdown.
            let stage = t.thread().name().unwrap_or("pipeline").to_owned();
            if let Err(payload) = t.join() {
                self.ring.control.fail(PipelineError::StageFailed {
                    stage,
                    message: panic_message(payload.as_ref()),
                    panicked: true,
                    source: None,
                });
            }
        }
        match self.ring.control.failure.get() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl<T> Drop for Pipeline<T> {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.ring.control.close();
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// Publishes into the ring. Cheap to clone; `Send + Sync`.
pub struct Producer<T> {
    pub(crate) ring: Arc<Ring<T>>,
}

impl<T> Clone for Producer<T> {
    fn clone(&self) -> Self {
        Self {
            ring: Arc::clone(&self.ring),
        }
    }
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

/// Fails the pipeline if a fill closure unwinds between claim and publish.
struct ClaimGuard<'a> {
    control: &'a Control,
    first: u64,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        self.control.fail(PipelineError::ProducerPanicked {
            sequence: self.first,
        });
    }
}

impl<T: Send> Producer<T> {
    /// Claims the next sequence, lets `fill(sequence, slot)` write the slot, publishes it
    /// and returns the sequence. Waits (with the pipeline's strategy) while the ring is
    /// full. Errors once the pipeline is closed or failed.
    ///
    /// `fill` must not publish on the same pipeline itself: with a full ring that waits
    /// for a slot its own unpublished claim holds back.
    #[inline]
    pub fn publish(&self, fill: impl FnOnce(u64, &mut T)) -> Result<u64, PipelineError> {
        let seq = self.claim(1, true)?;
        let mut fill = Some(fill);
        self.fill_and_publish(seq, 1, |s, slot| {
            if let Some(f) = fill.take() {
                f(s, slot);
            }
        });
        Ok(seq)
    }

    /// [`publish`](Self::publish) that returns [`PipelineError::Full`] instead of waiting.
    #[inline]
    pub fn try_publish(&self, fill: impl FnOnce(u64, &mut T)) -> Result<u64, PipelineError> {
        let seq = self.claim(1, false)?;
        let mut fill = Some(fill);
        self.fill_and_publish(seq, 1, |s, slot| {
            if let Some(f) = fill.take() {
                f(s, slot);
            }
        });
        Ok(seq)
    }

    /// Claims `n` contiguous sequences at once, calls `fill(sequence, slot)` for each in
    /// order, publishes them together and returns the first. `n` must be in
    /// `1..=capacity` ([`PipelineError::InvalidBatchSize`] otherwise, never a deadlock).
    pub fn publish_batch(
        &self,
        n: usize,
        fill: impl FnMut(u64, &mut T),
    ) -> Result<u64, PipelineError> {
        let n = self.check_batch(n)?;
        let first = self.claim(n, true)?;
        self.fill_and_publish(first, n, fill);
        Ok(first)
    }

    /// [`publish_batch`](Self::publish_batch) that returns [`PipelineError::Full`] instead
    /// of waiting when fewer than `n` slots are free.
    pub fn try_publish_batch(
        &self,
        n: usize,
        fill: impl FnMut(u64, &mut T),
    ) -> Result<u64, PipelineError> {
        let n = self.check_batch(n)?;
        let first = self.claim(n, false)?;
        self.fill_and_publish(first, n, fill);
        Ok(first)
    }

    /// Read stage indices and wait on them.
    pub fn progress(&self) -> Progress {
        Progress {
            control: Arc::clone(&self.ring.control),
        }
    }

    /// The ring's capacity.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    fn check_batch(&self, n: usize) -> Result<u64, PipelineError> {
        if n == 0 || n > self.ring.capacity() {
            return Err(PipelineError::InvalidBatchSize {
                requested: n,
                capacity: self.ring.capacity(),
            });
        }
        Ok(n as u64)
    }

    /// Claims `n` sequences (`1 <= n <= capacity`) and returns the first.
    #[inline]
    fn claim(&self, n: u64, blocking: bool) -> Result<u64, PipelineError> {
        let control = &*self.ring.control;
        let capacity = control.capacity;
        let last_stage = control.last_stage();
        loop {
            let current = control.claim.load(Ordering::Relaxed);
            if current & CLOSED != 0 {
                // The load above is Relaxed: without this fence (pairing with `close`'s
                // `AcqRel` RMW) a failure recorded before the close may not be visible
                // yet, and the producer would report `ShutDown` instead of it.
                fence(Ordering::Acquire);
                return Err(control.closed_error());
            }
            let last = current + n - 1;
            if last > SEQUENCE_MAX {
                return Err(PipelineError::ShutDown);
            }
            // Slot of `last` last held `last - capacity`: it must have left the last stage.
            let mut gate = control.gate_cache.load(Ordering::Acquire);
            if last > gate + capacity {
                gate = last_stage.cursor.load(Ordering::Acquire);
                control.gate_cache.store(gate, Ordering::Release);
            }
            if last > gate + capacity {
                if !blocking {
                    return Err(PipelineError::Full {
                        capacity: capacity as usize,
                    });
                }
                let need = last - capacity;
                let waited = wait_until(control.strategy, &last_stage.notifier, need, None, || {
                    if last_stage.cursor.load(Ordering::Acquire) >= need {
                        return Some(Ok(()));
                    }
                    if control.closed.load(Ordering::Acquire) {
                        return Some(Err(control.closed_error()));
                    }
                    None
                });
                // Without a deadline the wait returns only through the check.
                match waited.expect("a wait without a deadline never times out") {
                    Ok(()) => continue,
                    Err(e) => return Err(e),
                }
            }
            if control
                .claim
                .compare_exchange_weak(current, current + n, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(current);
            }
        }
    }

    #[inline]
    fn fill_and_publish(&self, first: u64, n: u64, mut fill: impl FnMut(u64, &mut T)) {
        let ring = &*self.ring;
        // The claim checked it (`check_batch`, or `n == 1`); distinct slots rely on it.
        // `ring.capacity()` is the slot slice's length, already loaded for `slot_ptr`.
        assert!(n >= 1 && n as usize <= ring.capacity());
        let guard = ClaimGuard {
            control: &ring.control,
            first,
        };
        for seq in first..first + n {
            // SAFETY: this producer claimed `first..first + n` (the CAS succeeded) and has
            // not published them: no stage reads these slots until `mark_available`, and
            // the last stage has released their previous occupants (the gate check), so
            // this is the only reference. `n <= capacity` keeps the slots distinct.
            let slot = unsafe { &mut *ring.slot_ptr(seq) };
            fill(seq, slot);
        }
        std::mem::forget(guard);
        for seq in first..first + n {
            ring.mark_available(seq);
        }
        ring.control.published.advance(first + n - 1);
    }
}

/// Reads stage indices and waits on them. Cheap to clone, not generic, `Send + Sync`:
/// hold one wherever completions are awaited.
#[derive(Clone)]
pub struct Progress {
    pub(crate) control: Arc<Control>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field(
                "indices",
                &self
                    .control
                    .stages
                    .iter()
                    .map(|s| (s.name.as_str(), s.cursor.load(Ordering::Relaxed)))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// The last sequence `stage` has finished (`initial_sequence - 1` before any).
    #[inline]
    pub fn index(&self, stage: StageId) -> u64 {
        self.control.stage(stage.0).cursor.load(Ordering::Acquire)
    }

    /// The last sequence claimed by a producer (it may not be published yet).
    pub fn claimed(&self) -> u64 {
        self.control.claim_state().1 - 1
    }

    /// The number of stages.
    pub fn stage_count(&self) -> usize {
        self.control.stages.len()
    }

    /// The stage at position `index` in the chain, if there is one.
    pub fn stage(&self, index: usize) -> Option<StageId> {
        (index < self.control.stages.len()).then_some(StageId(index))
    }

    /// The last stage of the chain.
    pub fn last_stage(&self) -> StageId {
        StageId(self.control.stages.len() - 1)
    }

    /// The name `stage` was registered with.
    pub fn stage_name(&self, stage: StageId) -> &str {
        &self.control.stage(stage.0).name
    }

    /// The failure that stopped the pipeline, if any.
    pub fn failure(&self) -> Option<PipelineError> {
        self.control.failure.get().cloned()
    }

    /// Whether publishes are refused (after `close`/`shutdown`, or a failure).
    pub fn is_closed(&self) -> bool {
        self.control.claim_state().0
    }

    /// Blocks until `stage`'s index is `>= sequence`. `Err` if the pipeline failed, or the
    /// stage stopped (shutdown) below `sequence`.
    pub fn wait(&self, stage: StageId, sequence: u64) -> Result<(), PipelineError> {
        self.wait_deadline(stage, sequence, None)
    }

    /// [`wait`](Self::wait) for at most `timeout`: then [`PipelineError::Timeout`].
    pub fn wait_timeout(
        &self,
        stage: StageId,
        sequence: u64,
        timeout: Duration,
    ) -> Result<(), PipelineError> {
        // A timeout too long to represent is no deadline at all.
        self.wait_deadline(stage, sequence, Instant::now().checked_add(timeout))
    }

    fn wait_deadline(
        &self,
        stage: StageId,
        sequence: u64,
        deadline: Option<Instant>,
    ) -> Result<(), PipelineError> {
        let control = &*self.control;
        let notifier = &control.stage(stage.0).notifier;
        wait_until(control.strategy, notifier, sequence, deadline, || {
            control.check_level(stage.0, sequence)
        })
        .unwrap_or(Err(PipelineError::Timeout { target: sequence }))
    }

    /// A future that resolves when `stage`'s index is `>= sequence` (same outcomes as
    /// [`wait`](Self::wait)). Works on any executor: it registers the task's waker and is
    /// woken, with every other waiter whose level was reached, when the index advances.
    pub fn wait_async(&self, stage: StageId, sequence: u64) -> WaitFuture {
        WaitFuture {
            control: Arc::clone(&self.control),
            stage: stage.0,
            target: sequence,
            registered: None,
        }
    }
}

/// The future of [`Progress::wait_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct WaitFuture {
    control: Arc<Control>,
    stage: usize,
    target: u64,
    registered: Option<u64>,
}

impl std::fmt::Debug for WaitFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitFuture")
            .field("stage", &self.stage)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl WaitFuture {
    fn finish(&mut self, r: Result<(), PipelineError>) -> Poll<Result<(), PipelineError>> {
        if let Some(id) = self.registered.take() {
            self.control.stage(self.stage).notifier.deregister(id);
        }
        Poll::Ready(r)
    }
}

impl Future for WaitFuture {
    type Output = Result<(), PipelineError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(r) = this.control.check_level(this.stage, this.target) {
            return this.finish(r);
        }
        let notifier = &this.control.stage(this.stage).notifier;
        let id = notifier.register_task(this.target, this.registered, cx.waker());
        this.registered = Some(id);
        // Re-check after registering: an advance in between may not have seen us.
        if let Some(r) = this.control.check_level(this.stage, this.target) {
            return this.finish(r);
        }
        Poll::Pending
    }
}

impl Drop for WaitFuture {
    fn drop(&mut self) {
        if let Some(id) = self.registered.take() {
            self.control.stage(self.stage).notifier.deregister(id);
        }
    }
}
