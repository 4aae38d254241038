//! Submit-to-level latency, measured by the producer itself: it notes when each submit
//! was made (or, in an open loop, when it was *due*, so a stalled ledger cannot hide its
//! queueing delay: no coordinated omission) and records the latency when it sees the
//! pipeline index pass the submit's last id.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Latencies are kept in microseconds, 1 us to 100 s, 3 significant digits.
pub const LATENCY_MAX_US: u64 = 100_000_000;

/// A new latency histogram.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// Records `latency` (clamped into the histogram's range).
pub fn record(hist: &mut Histogram<u64>, latency: Duration, count: u64) {
    let us = (latency.as_micros() as u64).clamp(1, LATENCY_MAX_US);
    hist.record_n(us, count).expect("clamped into range");
}

/// The submits of one producer that have not yet reached the level it measures.
#[derive(Debug)]
pub struct Tracker {
    pending: VecDeque<(u64, Instant, u64)>,
    hist: Histogram<u64>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            pending: VecDeque::new(),
            hist: histogram(),
        }
    }
}

impl Tracker {
    /// A submit of `ops` operations whose last id is `last_id`, made (or due) `at`.
    pub fn submitted(&mut self, last_id: u64, at: Instant, ops: u64) {
        self.pending.push_back((last_id, at, ops));
    }

    /// The index of the measured level is `reached` at `now`: records every submit it
    /// covers, once per operation.
    pub fn observe(&mut self, reached: u64, now: Instant) {
        while let Some(&(last_id, at, ops)) = self.pending.front() {
            if last_id > reached {
                break;
            }
            record(&mut self.hist, now.saturating_duration_since(at), ops);
            self.pending.pop_front();
        }
    }

    /// The oldest id not yet seen at the level.
    pub fn oldest_pending(&self) -> Option<u64> {
        self.pending.front().map(|&(id, _, _)| id)
    }

    /// Operations submitted and not yet seen at the level.
    pub fn pending_ops(&self) -> u64 {
        self.pending.iter().map(|&(_, _, ops)| ops).sum()
    }

    pub fn into_histogram(self) -> Histogram<u64> {
        self.hist
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_each_submit_once_when_the_index_passes_it() {
        let t0 = Instant::now();
        let mut tracker = Tracker::default();
        tracker.submitted(10, t0, 10);
        tracker.submitted(20, t0 + Duration::from_millis(1), 10);
        tracker.observe(9, t0 + Duration::from_millis(5));
        assert_eq!(tracker.oldest_pending(), Some(10));
        tracker.observe(15, t0 + Duration::from_millis(5));
        assert_eq!(tracker.oldest_pending(), Some(20));
        assert_eq!(tracker.pending_ops(), 10);
        tracker.observe(25, t0 + Duration::from_millis(3));
        assert_eq!(tracker.oldest_pending(), None);
        let hist = tracker.into_histogram();
        assert_eq!(hist.len(), 20);
        // 10 ops at 5 ms, 10 ops at 2 ms (3 ms after a submit made 1 ms after t0).
        assert!(hist.equivalent(hist.value_at_quantile(0.25), 2_000));
        assert!(hist.equivalent(hist.max(), 5_000));
    }

    #[test]
    fn out_of_range_latencies_are_clamped() {
        let mut hist = histogram();
        record(&mut hist, Duration::ZERO, 1);
        record(&mut hist, Duration::from_secs(1_000), 1);
        assert_eq!(hist.len(), 2);
        assert!(hist.max() >= LATENCY_MAX_US);
    }
}
