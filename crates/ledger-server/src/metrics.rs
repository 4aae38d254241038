//! The Prometheus text endpoint (`--metrics-addr`): stage indexes, transactions by
//! outcome, WAL bytes and fsyncs, submit-to-commit latency, snapshot age. A plain HTTP/1.0
//! responder: one page, no dependencies.

use std::fmt::Write as _;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ledger_core::ledger::Ledger;

use crate::backend::Backend;
use crate::cdc::CdcProgress;
use ledger_core::transaction::FailReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bounds (seconds) of the latency histogram's buckets.
pub(crate) const LATENCY_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// Counters the service keeps.
#[derive(Debug)]
pub struct ServerMetrics {
    submitted: AtomicU64,
    invalid: AtomicU64,
    /// By fail code: 0 committed, else the FailReason code.
    outcomes: Box<[AtomicU64]>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    last_snapshot_tx: AtomicU64,
    last_snapshot_seen: std::sync::Mutex<Instant>,
    /// The change-stream sink's progress, when it runs.
    cdc: Option<Arc<CdcProgress>>,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics {
            submitted: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            outcomes: (0..256).map(|_| AtomicU64::new(0)).collect(),
            latency_buckets: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_sum_us: AtomicU64::new(0),
            last_snapshot_tx: AtomicU64::new(0),
            last_snapshot_seen: std::sync::Mutex::new(Instant::now()),
            cdc: None,
        }
    }
}

impl ServerMetrics {
    /// The counters, and the change-stream sink's progress to show beside them.
    pub fn with_cdc(cdc: Arc<CdcProgress>) -> ServerMetrics {
        ServerMetrics {
            cdc: Some(cdc),
            ..ServerMetrics::default()
        }
    }

    pub fn submitted(&self, n: u64) {
        self.submitted.fetch_add(n, Ordering::Relaxed);
    }

    pub fn invalid(&self) {
        self.invalid.fetch_add(1, Ordering::Relaxed);
    }

    pub fn outcome(&self, reason: Option<FailReason>) {
        let code = reason.map_or(0, |r| usize::from(r.code()));
        if let Some(c) = self.outcomes.get(code) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn commit_latency(&self, took: Duration) {
        // One counter per observation (the first bucket it fits); the page sums them up.
        let secs = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|bound| secs <= *bound)
            && let Some(bucket) = self.latency_buckets.get(i)
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Observations per latency bucket (not cumulative; those above the last bound are
    /// in none), and all observations.
    pub(crate) fn latency_counts(&self) -> ([u64; LATENCY_BUCKETS.len()], u64) {
        (
            std::array::from_fn(|i| self.latency_buckets[i].load(Ordering::Relaxed)),
            self.latency_count.load(Ordering::Relaxed),
        )
    }

    /// The exposition text.
    pub fn render(&self, ledger: &Ledger) -> String {
        let mut out = String::new();
        let index = ledger.pipeline_index();
        let m = ledger.metrics();
        let mut gauge = |name: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            "ledger_computed_index",
            "Last transaction executed.",
            index.computed as f64,
        );
        gauge(
            "ledger_committed_index",
            "Last transaction durable in the WAL.",
            index.committed as f64,
        );
        gauge(
            "ledger_snapshot_index",
            "Last transaction visible to reads.",
            index.snapshot as f64,
        );
        gauge(
            "ledger_read_cache_bytes",
            "Memory of recent WAL frames kept for reads.",
            m.read_cache_bytes as f64,
        );
        gauge(
            "ledger_read_index_bytes",
            "Memory of the sparse WAL index.",
            m.read_index_bytes as f64,
        );
        let snapshot_age = {
            let mut seen = self
                .last_snapshot_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if self
                .last_snapshot_tx
                .swap(m.last_snapshot_tx_id, Ordering::Relaxed)
                != m.last_snapshot_tx_id
            {
                *seen = Instant::now();
            }
            seen.elapsed().as_secs_f64()
        };
        gauge(
            "ledger_snapshot_age_seconds",
            "Seconds since the newest snapshot changed (as seen by scrapes).",
            snapshot_age,
        );
        gauge(
            "ledger_last_snapshot_tx_id",
            "Transaction of the newest snapshot written since start.",
            m.last_snapshot_tx_id as f64,
        );
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "ledger_wal_bytes_total",
            "Bytes written to WAL segments.",
            m.wal_bytes,
        );
        counter(
            "ledger_wal_fsyncs_total",
            "Group commits (fdatasync calls).",
            m.wal_syncs,
        );
        counter(
            "ledger_wal_frames_total",
            "WAL frames written.",
            m.wal_frames,
        );
        counter(
            "ledger_snapshots_written_total",
            "Snapshots written.",
            m.snapshots_written,
        );
        counter(
            "ledger_snapshot_failures_total",
            "Snapshot writes that failed.",
            m.snapshot_failures,
        );
        counter(
            "ledger_submitted_total",
            "Operations accepted by this server.",
            self.submitted.load(Ordering::Relaxed),
        );
        counter(
            "ledger_invalid_requests_total",
            "Operations refused as INVALID_ARGUMENT.",
            self.invalid.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP ledger_transactions_total Waited-for transactions by outcome (fail code; 0 = committed).\n# TYPE ledger_transactions_total counter"
        );
        for (code, c) in self.outcomes.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v > 0 || code == 0 {
                let _ = writeln!(out, "ledger_transactions_total{{fail_code=\"{code}\"}} {v}");
            }
        }
        self.write_latency(&mut out);
        if let Some(cdc) = &self.cdc {
            write_cdc(&mut out, cdc, index.committed);
        }
        out
    }

    /// The submit-to-commit histogram, cumulative as Prometheus wants it.
    fn write_latency(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP ledger_submit_commit_seconds SubmitAndWait / SubmitBatchAndWait latency to Committed or Snapshot.\n# TYPE ledger_submit_commit_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "ledger_submit_commit_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "ledger_submit_commit_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "ledger_submit_commit_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "ledger_submit_commit_seconds_count {count}");
    }
}

/// The change-stream sink's lines: how far the broker acknowledged, and how far behind
/// the committed index that is.
fn write_cdc(out: &mut String, cdc: &CdcProgress, committed: u64) {
    let acked = cdc.acked_through();
    for (name, kind, help, value) in [
        (
            "ledger_cdc_acked_tx_id",
            "gauge",
            "Every transaction up to this id is acknowledged by the broker (or filtered out).",
            acked,
        ),
        (
            "ledger_cdc_lag_transactions",
            "gauge",
            "Committed index minus the acknowledged id.",
            committed.saturating_sub(acked),
        ),
        (
            "ledger_cdc_published_total",
            "counter",
            "Messages published to the broker, resends included.",
            cdc.published(),
        ),
        (
            "ledger_cdc_retries_total",
            "counter",
            "Sink sessions that failed and started again.",
            cdc.retries(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

/// Serves `GET /metrics` (any path, in fact) on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, backend: Backend, metrics: Arc<ServerMetrics>) {
    accept_loop(
        || listener.accept(),
        |(socket, _)| {
            tokio::spawn(respond(socket, backend.clone(), Arc::clone(&metrics)));
        },
    )
    .await;
}

/// How long to pause before accepting again after `error`, if at all. Out of file
/// descriptors (EMFILE, ENFILE), buffers or memory lasts until something else frees
/// them: accepting again at once would spin a core. Only a connection that died
/// before it was accepted concerns nobody else.
pub fn accept_backoff(error: &io::Error) -> Option<Duration> {
    match error.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::Interrupted => None,
        // Resource exhaustion, and anything unforeseen: pausing never hurts a scrape page.
        _ => Some(ACCEPT_BACKOFF),
    }
}

/// The pause after an accept error that is not about one connection.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts with `accept` forever, handing each connection to `handle`; pauses as
/// [`accept_backoff`] says after an error, logging once per burst of them.
async fn accept_loop<C, F>(mut accept: impl FnMut() -> F, mut handle: impl FnMut(C))
where
    F: Future<Output = io::Result<C>>,
{
    let mut failing = false;
    loop {
        match accept().await {
            Ok(conn) => {
                failing = false;
                handle(conn);
            }
            Err(error) => match accept_backoff(&error) {
                Some(pause) => {
                    if !failing {
                        tracing::warn!(%error, ?pause, "metrics: accept failed; pausing before each retry");
                        failing = true;
                    }
                    tokio::time::sleep(pause).await;
                }
                None => tracing::debug!(%error, "metrics: a connection died before accept"),
            },
        }
    }
}

/// Answers one scrape.
async fn respond(mut socket: TcpStream, backend: Backend, metrics: Arc<ServerMetrics>) {
    let mut buf = [0_u8; 1024];
    // The request itself does not matter; read what the client sent first.
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf)).await;
    let response = match backend.ledger() {
        Ok(ledger) => {
            let body = metrics.render(&ledger);
            format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        }
        // A cluster node restarting after a lost leadership.
        Err(_) => "HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_owned(),
    };
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_render_cumulatively() {
        let m = ServerMetrics::default();
        m.commit_latency(Duration::from_micros(200));
        m.commit_latency(Duration::from_millis(3));
        m.commit_latency(Duration::from_secs(5));
        let mut out = String::new();
        m.write_latency(&mut out);
        for line in [
            "ledger_submit_commit_seconds_bucket{le=\"0.0001\"} 0",
            "ledger_submit_commit_seconds_bucket{le=\"0.00025\"} 1",
            "ledger_submit_commit_seconds_bucket{le=\"0.002\"} 1",
            "ledger_submit_commit_seconds_bucket{le=\"0.005\"} 2",
            "ledger_submit_commit_seconds_bucket{le=\"1\"} 2",
            "ledger_submit_commit_seconds_bucket{le=\"+Inf\"} 3",
            "ledger_submit_commit_seconds_count 3",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in\n{out}");
        }
    }

    #[test]
    fn resource_exhaustion_backs_off_and_a_dead_connection_does_not() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(accept_backoff(&e), Some(ACCEPT_BACKOFF), "{e}");
        }
        for errno in [libc::ECONNABORTED, libc::ECONNRESET, libc::EINTR] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(accept_backoff(&e), None, "{e}");
        }
    }

    /// The loop pauses between failed accepts (a sleep never ends early, so the gaps
    /// are at least the backoff whatever the machine's speed), and serves again after.
    #[tokio::test]
    async fn the_accept_loop_pauses_after_emfile() {
        use std::sync::Mutex;
        const FAILURES: usize = 3;
        let calls = Mutex::new(Vec::new());
        let handled = Mutex::new(Vec::new());
        let (done, finished) = tokio::sync::oneshot::channel();
        let mut done = Some(done);
        let accept = || {
            let mut calls = calls.lock().unwrap();
            calls.push(Instant::now());
            let n = calls.len();
            if n == FAILURES + 2 {
                // Both answers seen: end the test (the loop itself never ends).
                let _ = done.take().map(|d| d.send(()));
            }
            async move {
                match n {
                    n if n <= FAILURES => Err(io::Error::from_raw_os_error(libc::EMFILE)),
                    n if n == FAILURES + 1 => Ok(n),
                    _ => std::future::pending().await,
                }
            }
        };
        tokio::select! {
            () = accept_loop(accept, |n| handled.lock().unwrap().push(n)) => unreachable!(),
            _ = finished => {}
        }
        assert_eq!(*handled.lock().unwrap(), [FAILURES + 1]);
        let calls = calls.lock().unwrap();
        for (i, pair) in calls.windows(2).enumerate().take(FAILURES) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= ACCEPT_BACKOFF,
                "accept {} came {gap:?} after a failure",
                i + 2
            );
        }
    }
}
