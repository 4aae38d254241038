//! The change stream (`SubscribeTransactions`): committed transactions in id order from a
//! starting id, then live as they commit.
//!
//! - One task per subscriber sends batches into a bounded channel: a slow subscriber
//!   stops only its own task, never the pipeline, and holds at most
//!   [`BATCHES_IN_FLIGHT`] batches of memory.
//! - It reads whole frames (`Ledger::visit_transactions`: memory, else disk) and writes
//!   them straight into a batch's wire bytes, on the blocking pool, not the I/O threads
//!   that serve submissions.
//! - A subscriber of every account, once caught up, sends the pages of the server's
//!   shared feed instead ([`crate::feed`]), reading only what lies before or between
//!   them.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use ledger_core::ledger::{Ledger, LedgerError, StreamFilter};
use prost::DecodeError;
use prost::encoding::{DecodeContext, WireType};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tonic::Status;

use crate::batch_wire::BatchWriter;
use crate::feed::{FeedReceiver, Feeds};
use crate::pb;

/// Transactions read per batch, at most (kept or filtered out).
const BATCH_TX_MAX: usize = 4096;
/// Batches queued per subscriber: its memory bound.
const BATCHES_IN_FLIGHT: usize = 4;
/// How long a caught-up subscriber waits for the next commit before it looks whether its
/// client left or its engine stopped.
const IDLE_CHECK: Duration = Duration::from_secs(1);

pub(crate) type TransactionStream =
    Pin<Box<dyn Stream<Item = Result<EncodedBatch, Status>> + Send>>;

/// A `TransactionBatch` in its wire bytes, encoded on the blocking pool beside its read:
/// the I/O threads, which also serve submissions, only frame it. The generated server
/// sends it in place of `pb::TransactionBatch` (build.rs), as a message whose encoding
/// is these bytes; it is never decoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedBatch(Bytes);

impl prost::Message for EncodedBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // Only ever sent: a decoder (none calls this) would skip what it got.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

/// Starts a subscriber's task, which ends when `stopping` resolves (the server's graceful
/// stop) with UNAVAILABLE, so the client subscribes again elsewhere or later; `status`
/// maps the engine's errors to the wire's. A subscriber of every account takes the
/// pages `feeds` read and encoded once for all of them, once it has caught up.
pub(crate) fn subscribe(
    ledger: Arc<Ledger>,
    request: pb::SubscribeTransactionsRequest,
    feeds: &Arc<Feeds>,
    stopping: impl Future<Output = ()> + Send + 'static,
    status: impl Fn(&LedgerError) -> Status + Send + 'static,
) -> TransactionStream {
    let (out, rx) = mpsc::channel(BATCHES_IN_FLIGHT);
    // "Live" starts at the call, not when the task first runs.
    let from = match request.from_tx_id {
        0 => ledger.pipeline_index().committed + 1,
        from => from,
    };
    let filter = StreamFilter {
        accounts: request.accounts,
        include_rejected: request.include_rejected,
    };
    let feed = filter
        .accounts
        .is_empty()
        .then(|| feeds.receiver(&ledger, filter.include_rejected));
    let mut subscriber = Subscriber {
        ledger,
        filter,
        out,
        next: from,
    };
    tokio::spawn(async move {
        let ran = tokio::select! {
            ran = subscriber.run(feed) => ran,
            () = stopping => {
                // Not waiting for room: a full queue ends the stream without the status,
                // which the client reads as a dropped connection just the same.
                let _ = subscriber.out.try_send(Err(Status::unavailable(
                    "the server is stopping: subscribe again from the last batch's next_tx_id",
                )));
                return;
            }
        };
        if let Err(error) = ran {
            let _ = subscriber.out.send(Err(status(&error))).await;
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Transactions `from..next` that a filter kept, as a batch's wire bytes.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) from: u64,
    pub(crate) next: u64,
    batch: EncodedBatch,
    empty: bool,
}

/// Reads and encodes up to `max` transactions from `from` on the blocking pool, off the
/// I/O threads that serve submissions.
pub(crate) async fn read_page(
    ledger: &Arc<Ledger>,
    from: u64,
    max: usize,
    filter: &StreamFilter,
) -> Result<Page, LedgerError> {
    let (ledger, filter) = (Arc::clone(ledger), filter.clone());
    tokio::task::spawn_blocking(move || {
        let mut batch = BatchWriter::default();
        let next = ledger.visit_transactions(from, max, &filter, |t| batch.push(t))?;
        let empty = batch.is_empty();
        Ok(Page {
            from,
            next,
            batch: EncodedBatch(batch.finish(next)),
            empty,
        })
    })
    .await
    .expect("the reading task does not panic")
}

/// One subscriber: where it is, and where its batches go.
struct Subscriber {
    ledger: Arc<Ledger>,
    filter: StreamFilter,
    out: mpsc::Sender<Result<EncodedBatch, Status>>,
    /// Every transaction below this one was sent or filtered out.
    next: u64,
}

impl Subscriber {
    /// Sends batches until the client leaves (`Ok`) or the engine fails a read or a
    /// wait: from the shared `feed` where there is one, else by its own reads.
    async fn run(&mut self, feed: Option<FeedReceiver>) -> Result<(), LedgerError> {
        if let Some(feed) = feed {
            self.run_shared(feed).await?;
        }
        self.run_own().await
    }

    /// Its own reads, page after page, then a wait for commits once caught up.
    async fn run_own(&mut self) -> Result<(), LedgerError> {
        while !self.out.is_closed() {
            if self.next > self.ledger.pipeline_index().committed {
                // Caught up: wait for the next commit (a stopped engine ends the wait).
                let waited =
                    tokio::time::timeout(IDLE_CHECK, self.ledger.wait_committed_async(self.next));
                if let Ok(waited) = waited.await {
                    waited?;
                }
                continue;
            }
            let page = read_page(&self.ledger, self.next, BATCH_TX_MAX, &self.filter).await?;
            if !self.send(&page).await {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The feed's pages, each sent as it came (no read, no encoding of its own). What
    /// lies below the feed's position and was not sent yet (it started behind, or fell
    /// behind and missed pages) it reads itself, never past that position, so the next
    /// page starts where it is. Returns when the feed ends.
    async fn run_shared(&mut self, mut feed: FeedReceiver) -> Result<(), LedgerError> {
        loop {
            // Pages already here first: the feed moves its position just before it
            // sends a page, so a page in flight must not look like a gap to read.
            match feed.pages.try_recv() {
                Ok(page) => {
                    if page.from == self.next && !self.send(&page).await {
                        return Ok(());
                    }
                    continue;
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(broadcast::error::TryRecvError::Closed) => return Ok(()),
                Err(broadcast::error::TryRecvError::Empty) => {}
            }
            let position = feed.position();
            if self.next < position {
                let max = usize::try_from(position - self.next)
                    .map_or(BATCH_TX_MAX, |n| n.min(BATCH_TX_MAX));
                let own = read_page(&self.ledger, self.next, max, &self.filter).await?;
                if !self.send(&own).await {
                    return Ok(());
                }
                continue;
            }
            let page = tokio::select! {
                page = feed.pages.recv() => page,
                () = self.out.closed() => return Ok(()),
            };
            match page {
                Ok(page) if page.from == self.next => {
                    if !self.send(&page).await {
                        return Ok(());
                    }
                }
                // One already sent, or past a gap that the reads above fill.
                Ok(_) => {}
                // Pages dropped: the reads above fill the gap.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }

    /// Sends `page` unless the filter left it empty and more is committed (an empty
    /// batch is sent only once caught up, so that an idle filtered subscriber still
    /// learns where to resume); false once the client left.
    async fn send(&mut self, page: &Page) -> bool {
        self.next = page.next;
        if page.empty && self.next <= self.ledger.pipeline_index().committed {
            return true;
        }
        self.out.send(Ok(page.batch.clone())).await.is_ok()
    }
}
