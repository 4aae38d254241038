//! The change stream (`SubscribeTransactions`): committed transactions in id order from a
//! starting id, then live as they commit. One task per subscriber reads whole frames
//! (`Ledger::visit_transactions`: memory, else disk; on the blocking pool, not the I/O
//! threads that serve submissions), writes them straight into a batch's wire bytes, and sends batches into a bounded
//! channel, so a slow subscriber stops only its own task, never the pipeline, and holds
//! at most [`BATCHES_IN_FLIGHT`] batches of memory.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use ledger_core::ledger::{Ledger, LedgerError, StreamFilter};
use prost::DecodeError;
use prost::encoding::{DecodeContext, WireType};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::Status;

use crate::batch_wire::BatchWriter;
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
/// maps the engine's errors to the wire's.
pub(crate) fn subscribe(
    ledger: Arc<Ledger>,
    request: pb::SubscribeTransactionsRequest,
    stopping: impl Future<Output = ()> + Send + 'static,
    status: impl Fn(&LedgerError) -> Status + Send + 'static,
) -> TransactionStream {
    let (out, rx) = mpsc::channel(BATCHES_IN_FLIGHT);
    // "Live" starts at the call, not when the task first runs.
    let from = match request.from_tx_id {
        0 => ledger.pipeline_index().committed + 1,
        from => from,
    };
    tokio::spawn(async move {
        tokio::select! {
            ran = run(ledger, from, request, &out) => {
                if let Err(error) = ran {
                    let _ = out.send(Err(status(&error))).await;
                }
            }
            () = stopping => {
                // Not waiting for room: a full queue ends the stream without the status,
                // which the client reads as a dropped connection just the same.
                let _ = out.try_send(Err(Status::unavailable(
                    "the server is stopping: subscribe again from the last batch's next_tx_id",
                )));
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Sends batches from transaction `from` until the client leaves (`Ok`) or the engine
/// fails a read or a wait. A batch that the filter left empty is sent only once caught
/// up, so that an idle filtered subscriber still learns where to resume.
async fn run(
    ledger: Arc<Ledger>,
    from: u64,
    request: pb::SubscribeTransactionsRequest,
    out: &mpsc::Sender<Result<EncodedBatch, Status>>,
) -> Result<(), LedgerError> {
    let filter = StreamFilter {
        accounts: request.accounts,
        include_rejected: request.include_rejected,
    };
    let mut next = from;
    loop {
        if out.is_closed() {
            return Ok(());
        }
        if next > ledger.pipeline_index().committed {
            // Caught up: wait for the next commit (a stopped engine ends the wait).
            if let Ok(waited) =
                tokio::time::timeout(IDLE_CHECK, ledger.wait_committed_async(next)).await
            {
                waited?;
            }
            continue;
        }
        // Read and converted on the blocking pool, off the I/O threads that serve
        // submissions.
        let reader = Arc::clone(&ledger);
        let page_filter = filter.clone();
        let (batch, page_next, empty) = tokio::task::spawn_blocking(move || {
            let mut batch = BatchWriter::default();
            let page_next =
                reader.visit_transactions(next, BATCH_TX_MAX, &page_filter, |t| batch.push(t))?;
            let empty = batch.is_empty();
            Ok::<_, LedgerError>((EncodedBatch(batch.finish(page_next)), page_next, empty))
        })
        .await
        .expect("the reading task does not panic")?;
        next = page_next;
        if empty && next <= ledger.pipeline_index().committed {
            continue;
        }
        if out.send(Ok(batch)).await.is_err() {
            return Ok(());
        }
    }
}
