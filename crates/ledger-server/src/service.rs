//! `roda.ledger.v1.Ledger` over a [`Ledger`]. Submits never block the async runtime
//! unless the ring is full (then the calling worker blocks in place: backpressure); waits
//! are futures; reads that may wait for the snapshot stage run in place too.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use ledger_core::ledger::{Ledger, LedgerError};
use ledger_core::transaction::{Operation, SubmitResult, TxId, WaitLevel};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{self, Role};
use crate::backend::Backend;
use crate::convert::{self, WireOperation};
use crate::errors;
use crate::feed::Feeds;
use crate::health::LedgerHealth;
use crate::metrics::ServerMetrics;
use crate::pb;

/// Groups a stream may have in flight (submitted, or answered but not yet sent) before
/// it stops reading requests: at most this many times [`STREAM_GROUP_MAX`] operations.
const STREAM_GROUPS_IN_FLIGHT: usize = 8;
/// The most operations a stream submits as one batch.
const STREAM_GROUP_MAX: usize = 4096;

/// The service: a shared ledger and the server's counters. Crate-private: it is only
/// served behind [`crate::auth::Tokens::check`] (see `serve`), so no embedder can expose
/// it without authentication.
#[derive(Debug, Clone)]
pub(crate) struct LedgerService {
    backend: Backend,
    max_accounts: u64,
    metrics: Arc<ServerMetrics>,
    health: Arc<LedgerHealth>,
    /// The change stream of every account, read once for its subscribers.
    feeds: Arc<Feeds>,
}

impl LedgerService {
    pub(crate) fn new(
        backend: Backend,
        max_accounts: u64,
        metrics: Arc<ServerMetrics>,
        health: Arc<LedgerHealth>,
    ) -> LedgerService {
        LedgerService {
            backend,
            max_accounts,
            metrics,
            health,
            feeds: Arc::default(),
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The status for a ledger error. One the server is to blame for may mean the ledger
    /// failed: health is told to look now, so it stops saying SERVING.
    fn status(&self, error: &LedgerError) -> Status {
        if matches!(error, LedgerError::NotLeader) {
            return self.backend.not_leader();
        }
        let status = errors::status(error);
        if errors::is_server_fault(status.code()) {
            self.health.ledger_refused();
        }
        status
    }

    /// The ledger to serve one request (or one stream) with: a cluster node's changes
    /// when it restarts, and an id is only meaningful to the engine that issued it.
    fn ledger(&self) -> Result<Arc<Ledger>, Status> {
        self.backend.ledger().map_err(|e| self.status(&e))
    }

    /// A wait for a submitted write that failed. On a cluster node the engine that
    /// issued it may have lost its leadership: the write may still commit under the new
    /// leader, so its outcome is unknown (ABORTED: retry with the same user_ref).
    fn wait_failed(&self, error: &LedgerError) -> Status {
        if self.backend.node().is_some() && !matches!(error, LedgerError::Timeout { .. }) {
            return Status::aborted(format!(
                "the outcome is unknown: this node stopped leading while the write waited ({error}); retry it with the same user_ref"
            ));
        }
        self.status(error)
    }

    fn cluster_node(&self) -> Result<&Arc<crate::backend::Node>, Status> {
        self.backend.node().ok_or_else(|| {
            Status::failed_precondition(
                "a single node has no membership: start it with --node-id and --peers",
            )
        })
    }

    fn membership_status(&self, error: ledger_core::cluster::MembershipError) -> Status {
        match error {
            ledger_core::cluster::MembershipError::NotLeader => self.backend.not_leader(),
            ledger_core::cluster::MembershipError::Refused(why) => Status::failed_precondition(why),
        }
    }

    fn operation(&self, op: Option<WireOperation>) -> Result<Operation, Status> {
        convert::operation(op, self.max_accounts).inspect_err(|_| self.metrics.invalid())
    }

    /// The operations of a batch; an error names the first bad one's index.
    fn operations(
        &self,
        ops: impl Iterator<Item = Option<WireOperation>>,
    ) -> Result<Vec<Operation>, Status> {
        ops.enumerate()
            .map(|(i, op)| self.operation(op).map_err(|s| in_batch(i, &s)))
            .collect()
    }

    /// Submits one operation: at once when the ring has room, else blocking this worker
    /// until it has (the caller is backpressured, memory stays bounded).
    fn submit(&self, ledger: &Ledger, op: Operation) -> Result<TxId, Status> {
        // At once when the ring has room; else the same operation, handed back, waits
        // for room with this worker blocked in place.
        let id = if matches!(op, Operation::Reverse(_)) {
            // A reversal first reads its original from the log: off the async worker.
            tokio::task::block_in_place(|| ledger.try_submit(op))
        } else {
            match ledger.try_submit_if_room(op) {
                Ok(Ok(id)) => Ok(id),
                Ok(Err(op)) => tokio::task::block_in_place(|| ledger.try_submit(op)),
                Err(e) => Err(e),
            }
        }
        .map_err(|e| self.status(&e))?;
        self.metrics.submitted(1);
        Ok(id)
    }

    fn submit_batch(&self, ledger: &Ledger, ops: Vec<Operation>) -> Result<Vec<TxId>, Status> {
        let n = ops.len() as u64;
        let ids = tokio::task::block_in_place(|| ledger.try_submit_batch(ops))
            .map_err(|e| self.status(&e))?;
        self.metrics.submitted(n);
        Ok(ids)
    }

    /// Waits (asynchronously) for `tx_id` to reach `level`, then reads its outcome.
    async fn wait_result(
        &self,
        ledger: &Ledger,
        tx_id: TxId,
        level: WaitLevel,
    ) -> Result<SubmitResult, Status> {
        ledger
            .wait_for_async(tx_id, level)
            .await
            .map_err(|e| self.wait_failed(&e))?;
        let outcome = ledger.try_outcome(tx_id).map_err(|e| self.status(&e))?;
        let result = SubmitResult::new(tx_id, outcome);
        self.metrics.outcome(result.fail_reason);
        Ok(result)
    }

    /// Runs a balance read on the async path: first waits, as a future, until everything
    /// committed before this request is visible to reads (what the read's own catch-up
    /// would wait for, blocking), then reads from memory in place. The read's catch-up
    /// then only waits for commits made in the nanoseconds since (rare, one snapshot-stage
    /// batch at most). Measured: 64 GetBalance clients 2x the reads/s of handing every
    /// read to `block_in_place` (docs/benchmarks.md).
    async fn read_balances<T>(
        &self,
        at: ReadAt,
        f: impl FnOnce(&Ledger) -> Result<T, LedgerError>,
    ) -> Result<T, Status> {
        let ledger = self.ledger()?;
        self.read_point(&ledger, at).await?;
        let index = ledger.pipeline_index();
        if index.committed > index.snapshot {
            // A failed ledger keeps its visible state readable: the read goes on.
            let _ = ledger
                .wait_for_async(index.committed, WaitLevel::Snapshotted)
                .await;
        }
        f(&ledger).map_err(|e| self.status(&e))
    }

    /// Runs a read that may wait (for the snapshot stage, or the disk) off the async path.
    fn read<T>(&self, f: impl FnOnce(&Ledger) -> Result<T, LedgerError>) -> Result<T, Status> {
        let ledger = self.ledger()?;
        tokio::task::block_in_place(|| f(&ledger)).map_err(|e| self.status(&e))
    }

    /// [`read`](Self::read) once this node's reads show what `at` asks for; also returns
    /// the node's applied index after the read.
    async fn read_at<T>(
        &self,
        at: ReadAt,
        f: impl FnOnce(&Ledger) -> Result<T, LedgerError>,
    ) -> Result<(T, TxId), Status> {
        let ledger = self.ledger()?;
        self.read_point(&ledger, at).await?;
        let out = tokio::task::block_in_place(|| f(&ledger)).map_err(|e| self.status(&e))?;
        Ok((out, ledger.pipeline_index().snapshot))
    }

    /// Waits until reads on this node show `at.min_tx_id` (read-your-writes on any node of
    /// a cluster, bounded by [`READ_WAIT_MAX`]) and, for a linearizable read, the leader's
    /// read index. A single node's reads are linearizable as they are.
    async fn read_point(&self, ledger: &Ledger, at: ReadAt) -> Result<(), Status> {
        let mut target = at.min_tx_id;
        if at.linearizable
            && let Some(node) = self.backend.node()
        {
            let point = node.read_index().await.map_err(|e| self.status(&e))?;
            target = target.max(point);
        }
        if target == 0 || ledger.pipeline_index().snapshot >= target {
            return Ok(());
        }
        match tokio::time::timeout(READ_WAIT_MAX, ledger.wait_visible_async(target)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.status(&e)),
            Err(_) => Err(Status::unavailable(format!(
                "this node has not applied transaction {target} yet (it shows up to {}): retry, or read on the leader",
                ledger.pipeline_index().snapshot
            ))),
        }
    }
}

/// How often an idle stream looks whether its engine still runs.
const STREAM_IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The next message of a client stream; once the stream's engine has failed (on a
/// cluster node: it lost its leadership, and the node restarts with a new engine), an
/// error that ends the stream, so an idle client does not keep the old engine, and its
/// files, open; once the server is stopping, an error too, so an open stream does not
/// hold up the graceful stop.
async fn next_message<T>(
    inbound: &mut Streaming<T>,
    ledger: &Ledger,
    health: &LedgerHealth,
) -> Option<Result<T, Status>> {
    loop {
        let read = tokio::select! {
            read = tokio::time::timeout(STREAM_IDLE_CHECK, inbound.next()) => read,
            // The graceful stop waits for open streams: this one reads no more, answers
            // what it read, and ends.
            () = health.when_stopping() => {
                return Some(Err(Status::unavailable(
                    "the server is stopping: open a new stream (elsewhere, or once it is back)",
                )));
            }
        };
        match read {
            Ok(message) => return message,
            Err(_) if ledger.failure().is_some() => {
                return Some(Err(Status::unavailable(
                    "this stream's engine stopped (a cluster node that lost its leadership restarts): open a new stream",
                )));
            }
            Err(_) => {}
        }
    }
}

/// The longest a read waits for this node to apply a `min_tx_id` (or a read index).
const READ_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// What a read asks this node to have applied first.
#[derive(Clone, Copy, Debug)]
struct ReadAt {
    min_tx_id: TxId,
    linearizable: bool,
}

impl ReadAt {
    fn new(min_tx_id: TxId, linearizable: bool) -> ReadAt {
        ReadAt {
            min_tx_id,
            linearizable,
        }
    }
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<pb::SubmitAndWaitResponse, Status>> + Send>>;
type BatchResultStream =
    Pin<Box<dyn Stream<Item = Result<pb::SubmitBatchAndWaitResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::ledger_server::Ledger for LedgerService {
    async fn submit_operation(
        &self,
        request: Request<pb::SubmitOperationRequest>,
    ) -> Result<Response<pb::SubmitOperationResponse>, Status> {
        auth::require(&request, Role::Write)?;
        let op = self.operation(request.into_inner().operation.map(Into::into))?;
        let transaction_id = self.submit(&*self.ledger()?, op)?;
        Ok(Response::new(pb::SubmitOperationResponse {
            transaction_id,
        }))
    }

    async fn submit_and_wait(
        &self,
        request: Request<pb::SubmitAndWaitRequest>,
    ) -> Result<Response<pb::SubmitAndWaitResponse>, Status> {
        auth::require(&request, Role::Write)?;
        let started = Instant::now();
        let req = request.into_inner();
        let level = convert::wait_level(req.wait_level)?;
        let op = self.operation(req.operation.map(Into::into))?;
        let ledger = self.ledger()?;
        let tx_id = self.submit(&ledger, op)?;
        let result = self.wait_result(&ledger, tx_id, level).await?;
        if level != WaitLevel::Processed {
            self.metrics.commit_latency(started.elapsed());
        }
        Ok(Response::new(convert::submit_result(result)))
    }

    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        auth::require(&request, Role::Write)?;
        let ops = self.operations(
            request
                .into_inner()
                .operations
                .into_iter()
                .map(|r| r.operation.map(Into::into)),
        )?;
        let ids = self.submit_batch(&*self.ledger()?, ops)?;
        Ok(Response::new(pb::SubmitBatchResponse {
            results: ids
                .into_iter()
                .map(|transaction_id| pb::SubmitOperationResponse { transaction_id })
                .collect(),
        }))
    }

    async fn submit_batch_and_wait(
        &self,
        request: Request<pb::SubmitBatchAndWaitRequest>,
    ) -> Result<Response<pb::SubmitBatchAndWaitResponse>, Status> {
        auth::require(&request, Role::Write)?;
        let started = Instant::now();
        let req = request.into_inner();
        let level = convert::wait_level(req.wait_level)?;
        let ops = self.operations(
            req.operations
                .into_iter()
                .map(|r| r.operation.map(Into::into)),
        )?;
        let ledger = self.ledger()?;
        let ids = self.submit_batch(&ledger, ops)?;
        let batch = SubmittedBatch::new(&ids, level, started);
        Ok(Response::new(batch.answer(self, &ledger).await?))
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        auth::require(&request, Role::Read)?;
        let req = request.into_inner();
        let at = ReadAt::new(req.min_tx_id, req.linearizable);
        let account = req.account_id;
        let b = self
            .read_balances(at, |l| l.try_get_balance(account))
            .await?;
        Ok(Response::new(pb::GetBalanceResponse {
            balance: b.balance,
            last_snapshot_tx_id: b.last_snapshot_tx_id,
        }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        auth::require(&request, Role::Read)?;
        let req = request.into_inner();
        let at = ReadAt::new(req.min_tx_id, req.linearizable);
        let account = req.account_id;
        let info = self.read_balances(at, |l| l.get_account(account)).await?;
        Ok(Response::new(convert::account(&info)?))
    }

    async fn get_hold(
        &self,
        request: Request<pb::GetHoldRequest>,
    ) -> Result<Response<pb::GetHoldResponse>, Status> {
        auth::require(&request, Role::Read)?;
        let req = request.into_inner();
        let at = ReadAt::new(req.min_tx_id, req.linearizable);
        let (hold, as_of) = self.read_balances(at, |l| l.get_hold(req.hold_id)).await?;
        let hold = hold.ok_or_else(|| {
            Status::not_found(format!(
                "no hold {} (as of transaction {as_of})",
                req.hold_id
            ))
        })?;
        Ok(Response::new(pb::GetHoldResponse {
            hold: Some(convert::hold(req.hold_id, &hold)),
            last_snapshot_tx_id: as_of,
        }))
    }

    async fn get_open_holds(
        &self,
        request: Request<pb::GetOpenHoldsRequest>,
    ) -> Result<Response<pb::GetOpenHoldsResponse>, Status> {
        auth::require(&request, Role::Read)?;
        let req = request.into_inner();
        let at = ReadAt::new(req.min_tx_id, req.linearizable);
        let limit = match req.limit {
            0 => 20,
            n => n as usize,
        };
        let page = self
            .read_balances(at, |l| {
                l.get_open_holds(req.account_id, req.after_hold_id, limit)
            })
            .await?;
        Ok(Response::new(pb::GetOpenHoldsResponse {
            holds: page
                .holds
                .iter()
                .map(|(id, h)| convert::hold(*id, h))
                .collect(),
            next_after_hold_id: page.next_after,
            last_snapshot_tx_id: page.last_snapshot_tx_id,
        }))
    }

    async fn get_system_balance(
        &self,
        request: Request<pb::GetSystemBalanceRequest>,
    ) -> Result<Response<pb::GetSystemBalanceResponse>, Status> {
        auth::require(&request, Role::Read)?;
        let req = request.into_inner();
        let at = ReadAt::new(req.min_tx_id, req.linearizable);
        let b = self
            .read_balances(at, |l| l.get_system_balance(req.currency))
            .await?;
        let balance = i64::try_from(b.balance).map_err(|_| {
            Status::out_of_range(format!(
                "the system account's balance in currency {} is {}, beyond an int64",
                b.currency, b.balance
            ))
        })?;
        Ok(Response::new(pb::GetSystemBalanceResponse {
            currency: b.currency,
            balance,
            last_snapshot_tx_id: b.last_snapshot_tx_id,
        }))
    }

    async fn get_balances(
        &self,
        request: Request<pb::GetBalancesRequest>,
    ) -> Result<Response<pb::GetBalancesResponse>, Status> {
        auth::require(&request, Role::Read)?;
        let req = request.into_inner();
        let at = ReadAt::new(req.min_tx_id, req.linearizable);
        let accounts = req.account_ids;
        let b = self
            .read_balances(at, |l| l.try_get_balances(&accounts))
            .await?;
        Ok(Response::new(pb::GetBalancesResponse {
            balances: b.balances,
            last_snapshot_tx_id: b.last_snapshot_tx_id,
        }))
    }

    async fn get_transaction_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        auth::require(&request, Role::Read)?;
        let id = request.into_inner().transaction_id;
        let info = self.read(|l| l.get_transaction_status(id))?;
        Ok(Response::new(convert::status(info)))
    }

    async fn get_transaction_statuses(
        &self,
        request: Request<pb::GetStatusesRequest>,
    ) -> Result<Response<pb::GetStatusesResponse>, Status> {
        auth::require(&request, Role::Read)?;
        let ids = request.into_inner().transaction_ids;
        let infos = self.read(|l| l.get_transaction_statuses(&ids))?;
        Ok(Response::new(pb::GetStatusesResponse {
            results: infos.into_iter().map(convert::status).collect(),
        }))
    }

    async fn get_pipeline_index(
        &self,
        request: Request<pb::GetPipelineIndexRequest>,
    ) -> Result<Response<pb::GetPipelineIndexResponse>, Status> {
        auth::require(&request, Role::Read)?;
        let index = self.ledger()?.pipeline_index();
        Ok(Response::new(pb::GetPipelineIndexResponse {
            computed_index: index.computed,
            committed_index: index.committed,
            snapshot_index: index.snapshot,
        }))
    }

    async fn get_cluster_status(
        &self,
        request: Request<pb::GetClusterStatusRequest>,
    ) -> Result<Response<pb::GetClusterStatusResponse>, Status> {
        auth::require(&request, Role::Read)?;
        let response = match self.backend.node() {
            Some(node) => convert::cluster_status(&node.status()),
            None => {
                let index = self.ledger()?.pipeline_index();
                convert::single_node_status(index)
            }
        };
        Ok(Response::new(response))
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        auth::require(&request, Role::Write)?;
        let req = request.into_inner();
        let node = self.cluster_node()?;
        let members = node
            .add_node(req.node_id, req.address)
            .await
            .map_err(|e| self.membership_status(e))?;
        Ok(Response::new(convert::members(&members)))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        auth::require(&request, Role::Write)?;
        let node = self.cluster_node()?;
        let members = node
            .remove_node(request.into_inner().node_id)
            .await
            .map_err(|e| self.membership_status(e))?;
        Ok(Response::new(convert::members(&members)))
    }

    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        auth::require(&request, Role::Read)?;
        let req = request.into_inner();
        let id = req.tx_id;
        let (tx, applied) = self
            .read_at(ReadAt::new(req.min_tx_id, req.linearizable), |l| {
                l.get_transaction(id)
            })
            .await?;
        let mut response = convert::transaction(&tx);
        response.applied_tx_id = applied;
        Ok(Response::new(response))
    }

    async fn get_account_history(
        &self,
        request: Request<pb::GetAccountHistoryRequest>,
    ) -> Result<Response<pb::GetAccountHistoryResponse>, Status> {
        auth::require(&request, Role::Read)?;
        let req = request.into_inner();
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        let (page, applied) = self
            .read_at(ReadAt::new(req.min_tx_id, req.linearizable), |l| {
                l.get_account_history(req.account_id, req.from_tx_id, limit)
            })
            .await?;
        Ok(Response::new(pb::GetAccountHistoryResponse {
            entries: page.entries.iter().map(convert::history_entry).collect(),
            events: page.events.iter().map(convert::history_event).collect(),
            next_tx_id: page.next_tx_id,
            applied_tx_id: applied,
        }))
    }

    async fn get_balance_at(
        &self,
        request: Request<pb::GetBalanceAtRequest>,
    ) -> Result<Response<pb::GetBalanceAtResponse>, Status> {
        auth::require(&request, Role::Read)?;
        let req = request.into_inner();
        let (b, _) = self
            .read_at(ReadAt::new(req.min_tx_id, req.linearizable), |l| {
                l.get_balance_at(req.account_id, req.tx_id)
            })
            .await?;
        Ok(Response::new(pb::GetBalanceAtResponse {
            balance: b.balance,
            tx_id: b.last_snapshot_tx_id,
        }))
    }

    type SubmitStreamStream = ResultStream;

    async fn submit_stream(
        &self,
        request: Request<Streaming<pb::SubmitAndWaitRequest>>,
    ) -> Result<Response<Self::SubmitStreamStream>, Status> {
        auth::require(&request, Role::Write)?;
        let mut inbound = request.into_inner();
        // Submitted groups (contiguous ids), in order, to the task that waits for them
        // and answers; each channel holds a few groups, so memory stays bounded.
        let (pending_tx, mut pending_rx) =
            mpsc::channel::<Result<Submitted, Status>>(STREAM_GROUPS_IN_FLIGHT);
        let (out_tx, out_rx) = mpsc::channel(STREAM_GROUPS_IN_FLIGHT);
        // One engine per stream: its ids mean nothing to another.
        let ledger = self.ledger()?;
        let service = self.clone();
        let ledger_for_answers = Arc::clone(&ledger);
        tokio::spawn(async move {
            let mut index = 0usize;
            let mut ops = Vec::with_capacity(STREAM_GROUP_MAX);
            let mut levels = Vec::with_capacity(STREAM_GROUP_MAX);
            // Reads what the client has sent so far (at least one message), submits it as
            // one batch: one ring claim for many operations, as SubmitBatch does.
            while let Some(first) = next_message(&mut inbound, &ledger, &service.health).await {
                let mut failure = None;
                let mut next = Some(first);
                while let Some(message) = next.take() {
                    let parsed = message.and_then(|req| {
                        let level = convert::wait_level(req.wait_level)?;
                        Ok((service.operation(req.operation.map(Into::into))?, level))
                    });
                    match parsed {
                        Ok((op, level)) => {
                            ops.push(op);
                            levels.push(level);
                        }
                        Err(status) => {
                            failure = Some(in_batch(index + ops.len(), &status));
                            break;
                        }
                    }
                    if ops.len() < STREAM_GROUP_MAX {
                        next = ready(&mut inbound).await;
                    }
                }
                if !ops.is_empty() {
                    let submitted = match service.submit_batch(&ledger, std::mem::take(&mut ops)) {
                        Ok(ids) => Submitted {
                            first: ids.first().copied().unwrap_or(0),
                            levels: std::mem::take(&mut levels),
                        },
                        Err(status) => {
                            let _ = pending_tx.send(Err(in_batch(index, &status))).await;
                            break;
                        }
                    };
                    index += submitted.levels.len();
                    // A full channel stops this loop reading: backpressure to the client.
                    if pending_tx.send(Ok(submitted)).await.is_err() {
                        return;
                    }
                }
                if let Some(status) = failure {
                    let _ = pending_tx.send(Err(status)).await;
                    break;
                }
            }
        });
        let service = self.clone();
        let ledger = ledger_for_answers;
        tokio::spawn(async move {
            let mut groups = Vec::with_capacity(STREAM_GROUPS_IN_FLIGHT);
            // Answers everything submitted so far after one wait, for its last id at its
            // highest level (ids only grow, levels are ordered); outcomes come from memory.
            while pending_rx
                .recv_many(&mut groups, STREAM_GROUPS_IN_FLIGHT)
                .await
                > 0
            {
                let last = groups
                    .iter()
                    .filter_map(|g| g.as_ref().ok())
                    .filter_map(Submitted::last)
                    .reduce(|(a, l), (b, m)| (a.max(b), highest(l, m)));
                let waited = match last {
                    Some((id, level)) => ledger
                        .wait_for_async(id, level)
                        .await
                        .map_err(|e| service.wait_failed(&e)),
                    None => Ok(()),
                };
                for group in groups.drain(..) {
                    let (responses, failed) = match (&waited, group) {
                        (Err(status), _) => (vec![Err(status.clone())], true),
                        (_, Err(status)) => (vec![Err(status)], true),
                        (Ok(()), Ok(group)) => answers(&service, &ledger, &group),
                    };
                    if out_tx.send(responses).await.is_err() || failed {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(Flatten {
            rx: out_rx,
            current: Vec::new().into_iter(),
        })))
    }

    type SubscribeTransactionsStream = crate::subscribe::TransactionStream;

    async fn subscribe_transactions(
        &self,
        request: Request<pb::SubscribeTransactionsRequest>,
    ) -> Result<Response<Self::SubscribeTransactionsStream>, Status> {
        auth::require(&request, Role::Read)?;
        let ledger = self.ledger()?;
        let service = self.clone();
        Ok(Response::new(crate::subscribe::subscribe(
            ledger,
            request.into_inner(),
            &self.feeds,
            self.health.when_stopping(),
            move |e| service.status(e),
        )))
    }

    type SubmitBatchStreamStream = BatchResultStream;

    async fn submit_batch_stream(
        &self,
        request: Request<Streaming<pb::SubmitBatchAndWaitRequest>>,
    ) -> Result<Response<Self::SubmitBatchStreamStream>, Status> {
        auth::require(&request, Role::Write)?;
        let mut inbound = request.into_inner();
        // Submitted batches, in order, to the task that answers them; a full channel stops
        // the reader: at most this many batches in flight per stream (bounded memory).
        let (pending_tx, mut pending_rx) =
            mpsc::channel::<Result<SubmittedBatch, Status>>(STREAM_GROUPS_IN_FLIGHT);
        let (out_tx, out_rx) = mpsc::channel(STREAM_GROUPS_IN_FLIGHT);
        // One engine per stream: its ids mean nothing to another.
        let ledger = self.ledger()?;
        let service = self.clone();
        let ledger_for_answers = Arc::clone(&ledger);
        tokio::spawn(async move {
            let mut index = 0usize;
            while let Some(message) = next_message(&mut inbound, &ledger, &service.health).await {
                let started = Instant::now();
                let submitted = message.and_then(|req| {
                    let level = convert::wait_level(req.wait_level)?;
                    let ops = service.operations(
                        req.operations
                            .into_iter()
                            .map(|r| r.operation.map(Into::into)),
                    )?;
                    let ids = service.submit_batch(&ledger, ops)?;
                    Ok(SubmittedBatch::new(&ids, level, started))
                });
                let failed = submitted.is_err();
                let submitted = submitted
                    .map_err(|s| Status::new(s.code(), format!("batch {index}: {}", s.message())));
                if pending_tx.send(submitted).await.is_err() || failed {
                    return;
                }
                index += 1;
            }
        });
        let service = self.clone();
        let ledger = ledger_for_answers;
        tokio::spawn(async move {
            while let Some(batch) = pending_rx.recv().await {
                let answer = match batch {
                    Ok(batch) => batch.answer(&service, &ledger).await,
                    Err(status) => Err(status),
                };
                let failed = answer.is_err();
                if out_tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out_rx),
        )))
    }
}

/// A submitted batch waiting for its answer: ids `first..first + count` at `level`.
#[derive(Debug)]
struct SubmittedBatch {
    first: TxId,
    count: u64,
    level: WaitLevel,
    started: Instant,
}

impl SubmittedBatch {
    fn new(ids: &[TxId], level: WaitLevel, started: Instant) -> SubmittedBatch {
        SubmittedBatch {
            first: ids.first().copied().unwrap_or(0),
            count: ids.len() as u64,
            level,
            started,
        }
    }

    /// Waits once, for the last id (ids are contiguous: once the last reached the level,
    /// all did), then reads every outcome from memory.
    async fn answer(
        &self,
        service: &LedgerService,
        ledger: &Ledger,
    ) -> Result<pb::SubmitBatchAndWaitResponse, Status> {
        let metrics = &service.metrics;
        if self.count > 0 {
            ledger
                .wait_for_async(self.first + self.count - 1, self.level)
                .await
                .map_err(|e| service.wait_failed(&e))?;
        }
        let mut results = Vec::with_capacity(usize::try_from(self.count).unwrap_or(0));
        for id in self.first..self.first + self.count {
            let outcome = ledger.try_outcome(id).map_err(|e| service.status(&e))?;
            let result = SubmitResult::new(id, outcome);
            metrics.outcome(result.fail_reason);
            results.push(convert::submit_result(result));
        }
        if self.level != WaitLevel::Processed {
            metrics.commit_latency(self.started.elapsed());
        }
        Ok(pb::SubmitBatchAndWaitResponse { results })
    }
}

/// A stream's submitted group: ids `first..first + levels.len()`, each with its level.
#[derive(Debug)]
struct Submitted {
    first: TxId,
    levels: Vec<WaitLevel>,
}

impl Submitted {
    fn last(&self) -> Option<(TxId, WaitLevel)> {
        let level = self.levels.iter().copied().reduce(highest)?;
        Some((self.first + self.levels.len() as u64 - 1, level))
    }
}

/// The answers of a group that reached its levels; `true` if one of them failed (the
/// stream then ends after it).
fn answers(
    service: &LedgerService,
    ledger: &Ledger,
    group: &Submitted,
) -> (Vec<Result<pb::SubmitAndWaitResponse, Status>>, bool) {
    let metrics = &service.metrics;
    let mut out = Vec::with_capacity(group.levels.len());
    for tx_id in group.first..group.first + group.levels.len() as u64 {
        match ledger.try_outcome(tx_id) {
            Ok(outcome) => {
                let result = SubmitResult::new(tx_id, outcome);
                metrics.outcome(result.fail_reason);
                out.push(Ok(convert::submit_result(result)));
            }
            Err(e) => {
                out.push(Err(service.status(&e)));
                return (out, true);
            }
        }
    }
    (out, false)
}

/// The response stream: groups from a channel, handed out one answer at a time.
struct Flatten {
    rx: mpsc::Receiver<Vec<Result<pb::SubmitAndWaitResponse, Status>>>,
    current: std::vec::IntoIter<Result<pb::SubmitAndWaitResponse, Status>>,
}

impl Stream for Flatten {
    type Item = Result<pb::SubmitAndWaitResponse, Status>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.current.next() {
                return std::task::Poll::Ready(Some(item));
            }
            match self.rx.poll_recv(cx) {
                std::task::Poll::Ready(Some(group)) => self.current = group.into_iter(),
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}

/// The next message if the client already sent it, without waiting for one.
async fn ready(
    inbound: &mut Streaming<pb::SubmitAndWaitRequest>,
) -> Option<Result<pb::SubmitAndWaitRequest, Status>> {
    std::future::poll_fn(|cx| match Pin::new(&mut *inbound).poll_next(cx) {
        std::task::Poll::Ready(message) => std::task::Poll::Ready(message),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// The later of two wait levels.
fn highest(a: WaitLevel, b: WaitLevel) -> WaitLevel {
    let rank = |l: WaitLevel| match l {
        WaitLevel::Processed => 0,
        WaitLevel::Committed => 1,
        // In a cluster the gate (replicated) comes before the snapshot stage.
        WaitLevel::Replicated => 2,
        WaitLevel::Snapshotted => 3,
    };
    if rank(a) >= rank(b) { a } else { b }
}

/// A status naming which operation of a batch or stream it is about.
fn in_batch(index: usize, status: &Status) -> Status {
    Status::new(
        status.code(),
        format!("operation {index}: {}", status.message()),
    )
}
