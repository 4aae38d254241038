//! The overview's live figures. One sampler reads the pipeline indexes and the counters
//! once a second (atomics: nothing the pipeline waits for) and keeps the last ten
//! minutes; every open overview receives that history, then each new sample with the
//! newest committed transactions, over one server-sent-events stream. Ten open
//! overviews cost what one does, bar the sending.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use ledger_core::ledger::Ledger;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::Shared;
use super::access::Viewer;
use super::layout;
use crate::backend::Backend;
use crate::metrics::{LATENCY_BUCKETS, ServerMetrics};
use crate::pb;

/// Samples kept: ten minutes at one a second.
const HISTORY: usize = 600;
/// How often the sampler looks.
const EVERY: Duration = Duration::from_secs(1);
/// Newest transactions sent with each sample.
const RECENT: u64 = 10;

/// One second of the ledger, as the overview charts it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Sample {
    /// When, in milliseconds since the Unix epoch.
    pub(crate) t: u64,
    pub(crate) computed: u64,
    pub(crate) committed: u64,
    pub(crate) snapshot: u64,
    pub(crate) tx_per_s: f64,
    pub(crate) fsyncs_per_s: f64,
    pub(crate) wal_bytes_per_s: f64,
    /// Submit-to-commit latency percentiles of the second, in milliseconds: the upper
    /// bound of the histogram bucket they fall in (`None`: no waited-for commits).
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) wal_bytes: u64,
    pub(crate) wal_fsyncs: u64,
    pub(crate) last_snapshot_tx_id: u64,
    pub(crate) snapshots_written: u64,
    /// "serving", or why not.
    pub(crate) status: String,
}

/// A newest committed transaction, as the overview lists it. Amounts are strings: a
/// `u64` does not fit a JavaScript number.
#[derive(Debug, Serialize)]
pub(crate) struct Recent {
    pub(crate) id: u64,
    pub(crate) time: String,
    pub(crate) outcome: String,
    pub(crate) entries: usize,
    pub(crate) amount: String,
}

/// The sampler's history and its listeners.
#[derive(Debug)]
pub(crate) struct Live {
    history: Mutex<VecDeque<Sample>>,
    updates: broadcast::Sender<Arc<str>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            updates: broadcast::channel(8).0,
        }
    }
}

impl Live {
    fn history_json(&self) -> String {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::to_string(&*history).expect("samples serialize")
    }

    fn push(&self, sample: Sample) {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(sample);
    }
}

/// The counters one sample is the difference of.
struct Counters {
    at: Instant,
    committed: u64,
    fsyncs: u64,
    wal_bytes: u64,
    latency: [u64; LATENCY_BUCKETS.len()],
    latency_count: u64,
}

/// Samples forever (the console's task aborts it when the console stops).
pub(crate) async fn sample(live: Arc<Live>, backend: Backend, metrics: Arc<ServerMetrics>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut before: Option<Counters> = None;
    loop {
        tick.tick().await;
        // A cluster node between engines has nothing to show this second.
        let Ok(ledger) = backend.ledger() else {
            before = None;
            continue;
        };
        let (sample, now) = read(&ledger, &metrics, before.as_ref());
        before = Some(now);
        live.push(sample.clone());
        if live.updates.receiver_count() == 0 {
            continue;
        }
        let visible = sample.snapshot;
        let recent = tokio::task::spawn_blocking(move || recent(&ledger, visible))
            .await
            .unwrap_or_default();
        let message = serde_json::json!({ "sample": sample, "recent": recent });
        let _ = live.updates.send(message.to_string().into());
    }
}

/// The ledger as it is now, rates left at 0 (they need two readings).
pub(crate) fn now(ledger: &Ledger, metrics: &ServerMetrics) -> Sample {
    read(ledger, metrics, None).0
}

fn read(ledger: &Ledger, metrics: &ServerMetrics, before: Option<&Counters>) -> (Sample, Counters) {
    let index = ledger.pipeline_index();
    let m = ledger.metrics();
    let (latency, latency_count) = metrics.latency_counts();
    let now = Counters {
        at: Instant::now(),
        committed: index.committed,
        fsyncs: m.wal_syncs,
        wal_bytes: m.wal_bytes,
        latency,
        latency_count,
    };
    let rate = |f: fn(&Counters) -> u64| {
        before.map_or(0.0, |b| {
            f(&now).saturating_sub(f(b)) as f64 / now.at.duration_since(b.at).as_secs_f64()
        })
    };
    let (p50_ms, p99_ms) = match before {
        Some(b) => {
            let delta: Vec<u64> = now
                .latency
                .iter()
                .zip(&b.latency)
                .map(|(n, b)| n.saturating_sub(*b))
                .collect();
            let count = now.latency_count.saturating_sub(b.latency_count);
            (
                percentile(&delta, count, 0.5),
                percentile(&delta, count, 0.99),
            )
        }
        None => (None, None),
    };
    let status = match ledger.failure() {
        None => "serving".to_owned(),
        Some(error) => format!("failed: {error}"),
    };
    let sample = Sample {
        t: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        computed: index.computed,
        committed: index.committed,
        snapshot: index.snapshot,
        tx_per_s: rate(|c| c.committed),
        fsyncs_per_s: rate(|c| c.fsyncs),
        wal_bytes_per_s: rate(|c| c.wal_bytes),
        p50_ms,
        p99_ms,
        wal_bytes: m.wal_bytes,
        wal_fsyncs: m.wal_syncs,
        last_snapshot_tx_id: m.last_snapshot_tx_id,
        snapshots_written: m.snapshots_written,
        status,
    };
    (sample, now)
}

/// The `q` quantile of `count` observations spread over the buckets as `per_bucket`
/// says, in milliseconds: the upper bound of its bucket; the last bound when it lies
/// above every bucket.
fn percentile(per_bucket: &[u64], count: u64, q: f64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = ((count as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (bound, n) in LATENCY_BUCKETS.iter().zip(per_bucket) {
        seen += n;
        if seen >= rank {
            return Some(bound * 1e3);
        }
    }
    LATENCY_BUCKETS.last().map(|b| b * 1e3)
}

/// The newest transactions visible to reads, newest first.
pub(crate) fn recent(ledger: &Ledger, visible: u64) -> Vec<Recent> {
    (visible.saturating_sub(RECENT - 1).max(1)..=visible)
        .rev()
        .filter_map(|id| ledger.get_transaction(id).ok())
        .map(|tx| {
            let tx = crate::convert::transaction(&tx);
            let moved: u128 = tx
                .entries
                .iter()
                .filter(|e| e.kind() == pb::EntryKind::Credit)
                .map(|e| u128::from(e.amount))
                .sum();
            Recent {
                id: tx.tx_id,
                time: layout::utc(tx.timestamp_ns),
                outcome: layout::tx_outcome(&tx),
                entries: tx.entries.len(),
                amount: moved.to_string(),
            }
        })
        .collect()
}

/// `GET /api/live`: the history, then each sample as it comes, until the client leaves
/// or the server stops.
pub(crate) async fn events(State(console): State<Shared>, _: Viewer) -> impl IntoResponse {
    let mut updates = console.live.updates.subscribe();
    let history = console.live.history_json();
    let stopping = console.health.when_stopping();
    let (send, events) = mpsc::channel::<Result<Event, Infallible>>(4);
    tokio::spawn(async move {
        if send
            .send(Ok(Event::default().event("history").data(history)))
            .await
            .is_err()
        {
            return;
        }
        tokio::pin!(stopping);
        loop {
            let update = tokio::select! {
                () = &mut stopping => return,
                update = updates.recv() => update,
            };
            let data = match update {
                Ok(data) => data,
                // A slow client skips samples rather than hold any back.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let event = Event::default().event("sample").data(&*data);
            if send.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(events)).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_bounds() {
        let mut per_bucket = [0; LATENCY_BUCKETS.len()];
        assert_eq!(percentile(&per_bucket, 0, 0.5), None);
        // 98 at <= 0.5 ms, 2 at <= 5 ms: p50 0.5 ms, p99 5 ms.
        per_bucket[2] = 98;
        per_bucket[5] = 2;
        assert_eq!(percentile(&per_bucket, 100, 0.5), Some(0.5));
        assert_eq!(percentile(&per_bucket, 100, 0.99), Some(5.0));
        // Observations above every bucket: the last bound.
        assert_eq!(percentile(&per_bucket, 200, 0.99), Some(1000.0));
    }
}
