//! The change-data-capture sink (`--cdc-nats-url`): every committed transaction, in id
//! order, into a NATS JetStream stream, exactly once as the stream sees it.
//!
//! - One message per transaction on one subject: the payload is the transaction as
//!   `GetTransaction` returns it (`GetTransactionResponse`, protobuf), the `Nats-Msg-Id`
//!   header its id, so the stream's duplicate window drops a resend.
//! - Where to resume is the stream's own: on every (re)connect the sink reads the id of
//!   the stream's last message and goes on from the next one. Nothing is kept on the
//!   ledger's side, so a crash of the sink, the ledger or the broker loses nothing and
//!   repeats nothing that the stream kept.
//! - No gaps: each message carries `Nats-Expected-Last-Sequence`, the stream sequence it
//!   must follow. A message the stream refused makes every later one refused too, until
//!   the sink reads the stream's end again and resends from there.
//! - Batching: only each page's last message asks for an acknowledgement; the stream
//!   stores one connection's messages in order, so that acknowledgement covers the page.
//!   At most [`PAGES_IN_FLIGHT`] pages wait for theirs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, context::PublishAckFuture};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use ledger_core::ledger::{Ledger, StreamFilter};

use crate::backend::Backend;
use crate::batch_wire;

/// Transactions read and published per page, at most.
const PAGE_TX_MAX: usize = 4096;
/// Pages published and not yet acknowledged, at most: the sink's memory bound.
const PAGES_IN_FLIGHT: usize = 4;
/// The duplicate window of a stream the sink creates, by default. The sequence chain
/// (`Nats-Expected-Last-Sequence`) is what keeps every transaction stored once; the
/// window only has to cover a resend racing a dead connection, which comes within the
/// reconnect. A short one keeps the broker's memory of ids small: at 200K messages a
/// second, a 30 s window held 6M ids (628 MiB resident for 3M messages), and the broker's
/// pauses to sweep them cost the sink a tenth of its rate (docs/benchmarks.md).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(2);
/// How long a caught-up sink waits for a commit before it looks at its engine again.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Backoff between failed sessions (broker down, stream refused a message).
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The sink's settings (`--cdc-*`).
#[derive(Clone, Debug)]
pub struct CdcSettings {
    /// The NATS server, `nats://host:port`.
    pub url: String,
    /// The JetStream stream, created with `subject` when missing.
    pub stream: String,
    /// Every message's subject; the sink must be its only publisher.
    pub subject: String,
    /// Publish rejected transactions too.
    pub include_rejected: bool,
    /// The first transaction published into an empty stream.
    pub from_tx_id: u64,
    /// The duplicate window of the stream, if the sink creates it.
    pub duplicate_window: Duration,
}

/// The sink's progress, for the metrics page.
#[derive(Debug, Default)]
pub struct CdcProgress {
    /// Every transaction up to this id is in the stream (acknowledged) or filtered out.
    acked_through: AtomicU64,
    /// Messages published, resends included.
    published: AtomicU64,
    /// Sessions that ended in an error and were started again.
    retries: AtomicU64,
}

impl CdcProgress {
    pub fn acked_through(&self) -> u64 {
        self.acked_through.load(Ordering::Relaxed)
    }

    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

/// Why a session ended; the sink logs it and starts another.
#[derive(Debug, thiserror::Error)]
enum SinkError {
    #[error("connect to {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error("publish: {0}")]
    Publish(#[from] async_nats::jetstream::context::PublishError),
    #[error("ledger: {0}")]
    Ledger(#[from] ledger_core::ledger::LedgerError),
}

/// Runs the sink until the task is aborted: sessions one after the other, with a
/// backoff after each failed one.
pub(crate) async fn run(backend: Backend, settings: CdcSettings, progress: Arc<CdcProgress>) {
    let mut delay = RETRY_MIN;
    loop {
        let before = progress.acked_through();
        let Err(error) = session(&backend, &settings, &progress).await;
        progress.retries.fetch_add(1, Ordering::Relaxed);
        if progress.acked_through() != before {
            delay = RETRY_MIN;
        }
        tracing::warn!(%error, retry_in = ?delay, "change stream sink");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// Where a session goes on: the next transaction to read, and the stream sequence the
/// next message must follow.
#[derive(Clone, Copy, Debug)]
struct Position {
    next_tx_id: u64,
    last_sequence: u64,
}

/// One connection: find the stream's end, then publish from there until an error.
async fn session(
    backend: &Backend,
    settings: &CdcSettings,
    progress: &CdcProgress,
) -> Result<std::convert::Infallible, SinkError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(&settings.url)
        .await
        .map_err(|source| SinkError::Connect {
            url: settings.url.clone(),
            source,
        })?;
    let js = jetstream::new(client.clone());
    let mut position = stream_end(&js, settings).await?;
    progress
        .acked_through
        .store(position.next_tx_id - 1, Ordering::Relaxed);
    tracing::info!(
        stream = %settings.stream,
        next_tx_id = position.next_tx_id,
        "change stream sink: publishing"
    );
    let subject = Subject::from(settings.subject.as_str());
    let filter = StreamFilter {
        accounts: Vec::new(),
        include_rejected: settings.include_rejected,
    };
    // (read through this id, the acknowledgement of the page's last message)
    let mut in_flight: VecDeque<(u64, Option<PublishAckFuture>)> = VecDeque::new();
    loop {
        let ledger = backend.ledger()?;
        let caught_up = position.next_tx_id > ledger.pipeline_index().committed;
        if in_flight.len() >= PAGES_IN_FLIGHT || (caught_up && !in_flight.is_empty()) {
            let (through, ack) = in_flight.pop_front().expect("in_flight is not empty");
            if let Some(ack) = ack {
                ack.await?;
            }
            progress.acked_through.store(through, Ordering::Relaxed);
            continue;
        }
        if caught_up {
            if let Ok(waited) =
                tokio::time::timeout(IDLE_CHECK, ledger.wait_committed_async(position.next_tx_id))
                    .await
            {
                waited?;
            }
            continue;
        }
        let (messages, next_tx_id) = read_page(ledger, position.next_tx_id, filter.clone()).await?;
        let ack = publish_page(&client, &js, &subject, &messages, &mut position).await?;
        progress
            .published
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        position.next_tx_id = next_tx_id;
        in_flight.push_back((next_tx_id - 1, ack));
    }
}

/// The stream (created when missing) and where its messages end.
async fn stream_end(
    js: &jetstream::Context,
    settings: &CdcSettings,
) -> Result<Position, SinkError> {
    let failed = |message: String| SinkError::Stream {
        stream: settings.stream.clone(),
        message,
    };
    let mut stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: settings.stream.clone(),
            subjects: vec![settings.subject.clone()],
            duplicate_window: settings.duplicate_window,
            ..Default::default()
        })
        .await
        .map_err(|e| failed(e.to_string()))?;
    let last_sequence = stream
        .info()
        .await
        .map_err(|e| failed(e.to_string()))?
        .state
        .last_sequence;
    let next_tx_id = match stream
        .get_last_raw_message_by_subject(&settings.subject)
        .await
    {
        Ok(message) => {
            let id = message
                .headers
                .get(NATS_MESSAGE_ID)
                .and_then(|id| id.as_str().parse::<u64>().ok())
                .ok_or_else(|| {
                    failed(format!(
                        "its last message on {} (sequence {}) has no transaction id: \
                         something else publishes on the sink's subject",
                        settings.subject, message.sequence
                    ))
                })?;
            id + 1
        }
        Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
            settings.from_tx_id.max(1)
        }
        Err(e) => return Err(failed(e.to_string())),
    };
    Ok(Position {
        next_tx_id,
        last_sequence,
    })
}

/// Reads up to a page of transactions from `from` and encodes each (on the blocking pool:
/// the read may go to disk); returns them with the id to read on from.
async fn read_page(
    ledger: Arc<Ledger>,
    from: u64,
    filter: StreamFilter,
) -> Result<(Vec<(u64, Bytes)>, u64), SinkError> {
    tokio::task::spawn_blocking(move || {
        let mut messages = Vec::new();
        let next = ledger.visit_transactions(from, PAGE_TX_MAX, &filter, |tx| {
            messages.push((tx.tx_id, batch_wire::transaction_message(tx)));
        })?;
        Ok((messages, next))
    })
    .await
    .expect("the reading task does not panic")
}

/// Publishes a page in order, each message chained to the one before it; only the last
/// asks for an acknowledgement. Advances `position.last_sequence` past the page.
async fn publish_page(
    client: &async_nats::Client,
    js: &jetstream::Context,
    subject: &Subject,
    messages: &[(u64, Bytes)],
    position: &mut Position,
) -> Result<Option<PublishAckFuture>, SinkError> {
    let Some(((last_id, last_payload), rest)) = messages.split_last() else {
        return Ok(None);
    };
    for (tx_id, payload) in rest {
        let headers = chained(*tx_id, position);
        client
            .publish_with_headers(subject.clone(), headers, payload.clone())
            .await
            .map_err(|e| SinkError::Stream {
                stream: subject.to_string(),
                message: e.to_string(),
            })?;
    }
    let publish = jetstream::message::PublishMessage::build()
        .payload(last_payload.clone())
        .headers(chained(*last_id, position));
    Ok(Some(js.send_publish(subject.clone(), publish).await?))
}

/// The headers of transaction `tx_id`'s message, the next one after `position`.
fn chained(tx_id: u64, position: &mut Position) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, tx_id.to_string());
    headers.insert(
        NATS_EXPECTED_LAST_SEQUENCE,
        position.last_sequence.to_string(),
    );
    position.last_sequence += 1;
    headers
}
