//! One typed method per unary RPC, and which requests are safe to send twice.

use crate::client::Client;
use crate::error::Error;
use crate::pb;

/// Whether sending a request twice cannot execute it twice.
trait Idempotent {
    fn idempotent(&self) -> bool;
}

macro_rules! rpcs {
    ($($(#[$doc:meta])* $method:ident($request:ident) -> $response:ident;)*) => {
        impl Client {
            $(
                $(#[$doc])*
                pub async fn $method(&self, request: pb::$request) -> Result<pb::$response, Error> {
                    self.call(request.idempotent(), |mut stub| {
                        let request = request.clone();
                        async move { stub.$method(request).await }
                    })
                    .await
                }
            )*
        }
    };
}

rpcs! {
    /// `SubmitOperation`: the transaction id once sequenced. Retried after an unknown
    /// outcome only with a nonzero `user_ref`.
    submit_operation(SubmitOperationRequest) -> SubmitOperationResponse;
    /// `SubmitAndWait`: the id and outcome once the wait level is reached. Retried after
    /// an unknown outcome only with a nonzero `user_ref`.
    submit_and_wait(SubmitAndWaitRequest) -> SubmitAndWaitResponse;
    /// `SubmitBatch`. Retried after an unknown outcome only if every operation has a
    /// nonzero `user_ref`.
    submit_batch(SubmitBatchRequest) -> SubmitBatchResponse;
    /// `SubmitBatchAndWait`. Retried after an unknown outcome only if every operation has
    /// a nonzero `user_ref`.
    submit_batch_and_wait(SubmitBatchAndWaitRequest) -> SubmitBatchAndWaitResponse;
    /// `GetBalance`.
    get_balance(GetBalanceRequest) -> GetBalanceResponse;
    /// `GetBalances`: one consistent cut.
    get_balances(GetBalancesRequest) -> GetBalancesResponse;
    /// `GetTransactionStatus`.
    get_transaction_status(GetStatusRequest) -> GetStatusResponse;
    /// `GetTransactionStatuses`.
    get_transaction_statuses(GetStatusesRequest) -> GetStatusesResponse;
    /// `GetPipelineIndex`.
    get_pipeline_index(GetPipelineIndexRequest) -> GetPipelineIndexResponse;
    /// `GetTransaction`.
    get_transaction(GetTransactionRequest) -> GetTransactionResponse;
    /// `GetAccountHistory`: one page.
    get_account_history(GetAccountHistoryRequest) -> GetAccountHistoryResponse;
    /// `GetBalanceAt`.
    get_balance_at(GetBalanceAtRequest) -> GetBalanceAtResponse;
    /// `GetClusterStatus`: the answering node's own view.
    get_cluster_status(GetClusterStatusRequest) -> GetClusterStatusResponse;
    /// `AddNode`, on the leader. Idempotent: adding a member again changes nothing.
    add_node(AddNodeRequest) -> MembershipResponse;
    /// `RemoveNode`, on the leader. Idempotent: removing a non-member changes nothing.
    remove_node(RemoveNodeRequest) -> MembershipResponse;
    /// `GetAccount`: an account's currency, rules and balance.
    get_account(GetAccountRequest) -> GetAccountResponse;
    /// `GetSystemBalance`: the system account's balance in one currency.
    get_system_balance(GetSystemBalanceRequest) -> GetSystemBalanceResponse;
    /// `GetHold`: one hold by id.
    get_hold(GetHoldRequest) -> GetHoldResponse;
    /// `GetOpenHolds`: one page of an account's open holds.
    get_open_holds(GetOpenHoldsRequest) -> GetOpenHoldsResponse;
}

macro_rules! reads {
    ($($request:ident),*) => {
        $(impl Idempotent for pb::$request {
            fn idempotent(&self) -> bool {
                true
            }
        })*
    };
}

reads!(
    GetBalanceRequest,
    GetBalancesRequest,
    GetStatusRequest,
    GetStatusesRequest,
    GetPipelineIndexRequest,
    GetTransactionRequest,
    GetAccountHistoryRequest,
    GetBalanceAtRequest,
    GetClusterStatusRequest,
    AddNodeRequest,
    RemoveNodeRequest,
    GetAccountRequest,
    GetSystemBalanceRequest,
    GetHoldRequest,
    GetOpenHoldsRequest
);

/// The `user_ref` of either oneof of operations (two generated types of the same shape);
/// 0 for none, and for a kind this list does not know yet: not idempotent until added.
macro_rules! user_ref {
    ($operation:expr, $oneof:ident) => {{
        use pb::$oneof::Operation;
        match $operation {
            Some(Operation::Deposit(o)) => o.user_ref,
            Some(Operation::Withdrawal(o)) => o.user_ref,
            Some(Operation::Transfer(o)) => o.user_ref,
            Some(Operation::Composite(o)) => o.user_ref,
            Some(Operation::Named(o)) => o.user_ref,
            Some(Operation::ConfigureAccount(o)) => o.user_ref,
            Some(Operation::Hold(o)) => o.user_ref,
            Some(Operation::PostHold(o)) => o.user_ref,
            Some(Operation::VoidHold(o)) => o.user_ref,
            _ => 0,
        }
    }};
}

impl Idempotent for pb::SubmitOperationRequest {
    fn idempotent(&self) -> bool {
        user_ref!(&self.operation, submit_operation_request) != 0
    }
}

impl Idempotent for pb::SubmitAndWaitRequest {
    fn idempotent(&self) -> bool {
        user_ref!(&self.operation, submit_and_wait_request) != 0
    }
}

impl Idempotent for pb::SubmitBatchRequest {
    fn idempotent(&self) -> bool {
        self.operations.iter().all(Idempotent::idempotent)
    }
}

impl Idempotent for pb::SubmitBatchAndWaitRequest {
    fn idempotent(&self) -> bool {
        self.operations.iter().all(Idempotent::idempotent)
    }
}

impl Client {
    /// `SubscribeTransactions`: the change stream. Opening it follows the crate's retry
    /// rules (a read); a stream that breaks is the caller's to open again from the last
    /// batch's `next_tx_id`.
    pub async fn subscribe_transactions(
        &self,
        request: pb::SubscribeTransactionsRequest,
    ) -> Result<tonic::Streaming<pb::TransactionBatch>, Error> {
        self.call(true, |mut stub| {
            let request = request.clone();
            async move { stub.subscribe_transactions(request).await }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::submit_and_wait_request::Operation;

    fn deposit(user_ref: u64) -> pb::SubmitAndWaitRequest {
        pb::SubmitAndWaitRequest {
            operation: Some(Operation::Deposit(pb::Deposit {
                account: 1,
                amount: 5,
                user_ref,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn only_writes_with_a_user_ref_are_idempotent() {
        assert!(deposit(7).idempotent());
        assert!(!deposit(0).idempotent());
        assert!(!pb::SubmitAndWaitRequest::default().idempotent());
        let composite = pb::SubmitOperationRequest {
            operation: Some(pb::submit_operation_request::Operation::Composite(
                pb::Composite {
                    user_ref: 3,
                    ..Default::default()
                },
            )),
        };
        assert!(composite.idempotent());
        let batch = |refs: &[u64]| pb::SubmitBatchAndWaitRequest {
            operations: refs.iter().map(|&r| deposit(r)).collect(),
            ..Default::default()
        };
        assert!(batch(&[1, 2, 3]).idempotent());
        assert!(!batch(&[1, 0, 3]).idempotent());
        let unwaited = pb::SubmitBatchRequest {
            operations: vec![pb::SubmitOperationRequest::default()],
        };
        assert!(!unwaited.idempotent());
        assert!(
            pb::GetBalanceRequest {
                account_id: 1,
                ..Default::default()
            }
            .idempotent()
        );
    }
}
