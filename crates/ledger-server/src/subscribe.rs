//! The change stream (`SubscribeTransactions`): committed transactions in id order from a
//! starting id, then live as they commit. One task per subscriber reads whole frames
//! (`Ledger::read_transactions`: memory, else disk; on the blocking pool, not the I/O
//! threads that serve submissions) and sends batches into a bounded
//! channel, so a slow subscriber stops only its own task, never the pipeline, and holds
//! at most [`BATCHES_IN_FLIGHT`] batches of memory.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ledger_core::ledger::{Ledger, LedgerError, StreamFilter};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::Status;

use crate::{convert, pb};

/// Transactions read per batch, at most (kept or filtered out).
const BATCH_TX_MAX: usize = 4096;
/// Batches queued per subscriber: its memory bound.
const BATCHES_IN_FLIGHT: usize = 4;
/// How long a caught-up subscriber waits for the next commit before it looks whether its
/// client left or its engine stopped.
const IDLE_CHECK: Duration = Duration::from_secs(1);

pub(crate) type TransactionStream =
    Pin<Box<dyn Stream<Item = Result<pb::TransactionBatch, Status>> + Send>>;

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
    out: &mpsc::Sender<Result<pb::TransactionBatch, Status>>,
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
        let (batch, empty) = tokio::task::spawn_blocking(move || {
            let page = reader.read_transactions(next, BATCH_TX_MAX, &page_filter)?;
            let batch = pb::TransactionBatch {
                transactions: page.transactions.iter().map(convert::transaction).collect(),
                next_tx_id: page.next_tx_id,
            };
            Ok::<_, LedgerError>((batch, page.transactions.is_empty()))
        })
        .await
        .expect("the reading task does not panic")?;
        next = batch.next_tx_id;
        if empty && next <= ledger.pipeline_index().committed {
            continue;
        }
        if out.send(Ok(batch)).await.is_err() {
            return Ok(());
        }
    }
}
