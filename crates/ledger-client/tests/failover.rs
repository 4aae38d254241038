//! Leader following and retries against fake nodes: the generated server trait (build.rs
//! writes the stubs for the tests) served on real loopback sockets, each node playing one
//! role of the cluster contract (a leader, a follower naming it, a node in an election,
//! a node that never answers) and counting the calls it saw.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_client::{Client, ConnectOptions, Error, pb};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

#[allow(clippy::all, missing_docs, missing_debug_implementations)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/test_server/roda.ledger.v1.rs"));
}
use generated::ledger_server::{Ledger, LedgerServer};

/// What a fake node does with every call.
enum Role {
    /// Answers; its transaction ids are `id * 1000 + n`.
    Leader,
    /// Refuses with FAILED_PRECONDITION naming the leader, as a follower does.
    Follower { leader_id: u64, leader: String },
    /// Refuses with UNAVAILABLE and no leader this many times, then answers.
    Electing { refusals: u32 },
    /// Accepts the call and never answers (a node that hangs or a lost reply).
    Silent,
    /// FAILED_PRECONDITION without a leader: a read of a transaction not yet durable.
    NotDurable,
}

struct Node {
    id: u64,
    role: Role,
    calls: AtomicU32,
    tokens: Mutex<Vec<String>>,
}

impl Node {
    fn new(id: u64, role: Role) -> Arc<Node> {
        Arc::new(Node {
            id,
            role,
            calls: AtomicU32::new(0),
            tokens: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Plays the role for one call: the transaction id to answer with, or the refusal.
    async fn handle(&self, metadata: &MetadataMap) -> Result<u64, Status> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(token) = metadata.get("authorization") {
            self.tokens
                .lock()
                .unwrap()
                .push(token.to_str().unwrap().to_owned());
        }
        match &self.role {
            Role::Leader => Ok(self.id * 1000 + u64::from(n)),
            Role::Follower { leader_id, leader } => {
                let mut metadata = MetadataMap::new();
                metadata.insert("x-ledger-leader-id", leader_id.to_string().parse().unwrap());
                metadata.insert("x-ledger-leader-addr", leader.parse().unwrap());
                Err(Status::with_metadata(
                    Code::FailedPrecondition,
                    "not the leader",
                    metadata,
                ))
            }
            Role::Electing { refusals } if n <= *refusals => {
                Err(Status::unavailable("no leader yet"))
            }
            Role::Electing { .. } => Ok(self.id * 1000 + u64::from(n)),
            Role::Silent => std::future::pending().await,
            Role::NotDurable => Err(Status::failed_precondition("not yet durable")),
        }
    }
}

/// The node as a service (a local type: the trait wants `'static` and the node shared).
struct Served(Arc<Node>);

#[tonic::async_trait]
impl Ledger for Served {
    async fn submit_and_wait(
        &self,
        request: Request<pb::SubmitAndWaitRequest>,
    ) -> Result<Response<pb::SubmitAndWaitResponse>, Status> {
        let transaction_id = self.0.handle(request.metadata()).await?;
        Ok(Response::new(pb::SubmitAndWaitResponse {
            transaction_id,
            ..Default::default()
        }))
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let last_snapshot_tx_id = self.0.handle(request.metadata()).await?;
        Ok(Response::new(pb::GetBalanceResponse {
            balance: 0,
            last_snapshot_tx_id,
        }))
    }

    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        let tx_id = self.0.handle(request.metadata()).await?;
        Ok(Response::new(pb::GetTransactionResponse {
            tx_id,
            ..Default::default()
        }))
    }
}

async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// Serves `node` on `listener` until the test's runtime ends.
fn serve(listener: TcpListener, node: &Arc<Node>) {
    let service = LedgerServer::new(Served(Arc::clone(node)));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
}

async fn node(id: u64, role: Role) -> (Arc<Node>, String) {
    let (listener, addr) = bind().await;
    let node = Node::new(id, role);
    serve(listener, &node);
    (node, addr)
}

/// An address nobody listens on (bound, then closed).
fn dead() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    addr.to_string()
}

fn options(endpoints: &[&String]) -> ConnectOptions {
    ConnectOptions {
        timeout: Duration::from_secs(5),
        ..ConnectOptions::new(endpoints.iter().map(|e| e.as_str()))
    }
}

fn deposit(user_ref: u64) -> pb::SubmitAndWaitRequest {
    pb::SubmitAndWaitRequest {
        operation: Some(pb::submit_and_wait_request::Operation::Deposit(
            pb::Deposit {
                account: 1,
                amount: 10,
                user_ref,
            },
        )),
        wait_level: pb::WaitLevel::Committed.into(),
    }
}

fn code(result: Result<impl std::fmt::Debug, Error>) -> Code {
    match result {
        Err(Error::Status { status, .. }) => status.code(),
        other => panic!("expected a status from the server, got {other:?}"),
    }
}

#[tokio::test]
async fn a_follower_redirects_to_the_leader_which_is_remembered() {
    let (leader, leader_addr) = node(1, Role::Leader).await;
    let (follower, follower_addr) = node(
        2,
        Role::Follower {
            leader_id: 1,
            leader: leader_addr.clone(),
        },
    )
    .await;
    let client = Client::new(ConnectOptions {
        token: Some("s3cret-token".into()),
        ..options(&[&follower_addr])
    })
    .unwrap();
    // user_ref 0: the refusal proves nothing executed, so even this write may move on.
    let r = client.submit_and_wait(deposit(0)).await.unwrap();
    assert_eq!(r.transaction_id, 1001, "it landed on the leader");
    assert_eq!((follower.calls(), leader.calls()), (1, 1));
    assert_eq!(client.current_address(), leader_addr);
    // Later calls, from clones too, go straight to the leader.
    let clone = client.clone();
    let r = clone.submit_and_wait(deposit(0)).await.unwrap();
    assert_eq!(r.transaction_id, 1002);
    let b = client
        .get_balance(pb::GetBalanceRequest {
            account_id: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(b.last_snapshot_tx_id, 1003);
    assert_eq!((follower.calls(), leader.calls()), (1, 3));
    // The token went with every call, on both channels.
    assert_eq!(
        follower.tokens.lock().unwrap().as_slice(),
        ["Bearer s3cret-token"]
    );
    assert_eq!(leader.tokens.lock().unwrap().len(), 3);
    assert!(
        leader
            .tokens
            .lock()
            .unwrap()
            .iter()
            .all(|t| t == "Bearer s3cret-token")
    );
}

#[tokio::test]
async fn unavailable_is_retried_until_a_leader_answers() {
    // One endpoint in an election: refused three times, then it answers.
    let (electing, addr) = node(3, Role::Electing { refusals: 3 }).await;
    let client = Client::new(options(&[&addr])).unwrap();
    let r = client.submit_and_wait(deposit(0)).await.unwrap();
    assert_eq!(r.transaction_id, 3004);
    assert_eq!(electing.calls(), 4);

    // A node that keeps refusing is left for the next endpoint.
    let (stuck, stuck_addr) = node(4, Role::Electing { refusals: u32::MAX }).await;
    let (leader, leader_addr) = node(5, Role::Leader).await;
    let client = Client::new(options(&[&stuck_addr, &leader_addr])).unwrap();
    let r = client.submit_and_wait(deposit(0)).await.unwrap();
    assert_eq!(r.transaction_id, 5001);
    assert_eq!((stuck.calls(), leader.calls()), (1, 1));
    assert_eq!(client.current_address(), leader_addr);
}

#[tokio::test]
async fn a_dead_endpoint_is_skipped_even_for_a_write_without_user_ref() {
    // Nothing was sent to a node that could not be reached: retrying cannot commit twice.
    let (leader, leader_addr) = node(6, Role::Leader).await;
    let client = Client::new(options(&[&dead(), &leader_addr])).unwrap();
    let r = client.submit_and_wait(deposit(0)).await.unwrap();
    assert_eq!(r.transaction_id, 6001);
    assert_eq!(leader.calls(), 1);
    assert_eq!(client.current_address(), leader_addr);
}

#[tokio::test]
async fn a_write_without_user_ref_is_not_retried_when_its_outcome_is_unknown() {
    let (silent, silent_addr) = node(7, Role::Silent).await;
    let (leader, leader_addr) = node(8, Role::Leader).await;
    let quick = |endpoints: &[&String]| ConnectOptions {
        timeout: Duration::from_millis(300),
        ..options(endpoints)
    };
    // The silent node got the write and may have executed it: no retry anywhere.
    let client = Client::new(quick(&[&silent_addr, &leader_addr])).unwrap();
    let e = client.submit_and_wait(deposit(0)).await.unwrap_err();
    assert!(
        matches!(&e, Error::Transport { address, .. } if *address == silent_addr),
        "{e}"
    );
    assert!(e.to_string().contains("outcome is unknown"), "{e}");
    assert_eq!((silent.calls(), leader.calls()), (1, 0));

    // With a user_ref the server deduplicates a repeat: it moves on to the next node.
    let client = Client::new(quick(&[&silent_addr, &leader_addr])).unwrap();
    let r = client.submit_and_wait(deposit(42)).await.unwrap();
    assert_eq!(r.transaction_id, 8001);
    assert_eq!((silent.calls(), leader.calls()), (2, 1));

    // And so does a read.
    let client = Client::new(quick(&[&silent_addr, &leader_addr])).unwrap();
    let b = client
        .get_balance(pb::GetBalanceRequest {
            account_id: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(b.last_snapshot_tx_id, 8002);
    assert_eq!((silent.calls(), leader.calls()), (3, 2));
}

#[tokio::test]
async fn an_answer_is_not_retried() {
    // FAILED_PRECONDITION without a leader is the server's answer, not a redirect.
    let (node, addr) = node(9, Role::NotDurable).await;
    let client = Client::new(options(&[&addr])).unwrap();
    let r = client
        .get_transaction(pb::GetTransactionRequest {
            tx_id: 1,
            ..Default::default()
        })
        .await;
    assert_eq!(code(r), Code::FailedPrecondition);
    // An RPC this node does not implement: UNIMPLEMENTED, once.
    let r = client.get_balances(pb::GetBalancesRequest::default()).await;
    assert_eq!(code(r), Code::Unimplemented);
    assert_eq!(node.calls(), 1);
}

#[tokio::test]
async fn the_retry_budget_bounds_every_call() {
    // No budget: one attempt.
    let (stuck, stuck_addr) = node(10, Role::Electing { refusals: u32::MAX }).await;
    let client = Client::new(ConnectOptions {
        retry_budget: Duration::ZERO,
        ..options(&[&stuck_addr])
    })
    .unwrap();
    assert_eq!(
        code(client.submit_and_wait(deposit(1)).await),
        Code::Unavailable
    );
    assert_eq!(stuck.calls(), 1);

    // A short budget against nodes that never get better: the last error, promptly.
    let short = |endpoints: &[&String]| ConnectOptions {
        retry_budget: Duration::from_millis(400),
        ..options(endpoints)
    };
    let started = Instant::now();
    let client = Client::new(short(&[&stuck_addr])).unwrap();
    assert_eq!(
        code(client.submit_and_wait(deposit(1)).await),
        Code::Unavailable
    );
    let attempts = stuck.calls() - 1;
    assert!(
        (1..=ledger_client::ATTEMPTS_MAX).contains(&attempts),
        "{attempts}"
    );

    let client = Client::new(short(&[&dead(), &dead()])).unwrap();
    let e = client.submit_and_wait(deposit(0)).await.unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");

    // Two nodes naming each other (a stale view during an election) do not spin.
    let ((a_listener, a_addr), (b_listener, b_addr)) = (bind().await, bind().await);
    let a = Node::new(
        11,
        Role::Follower {
            leader_id: 12,
            leader: b_addr.clone(),
        },
    );
    let b = Node::new(
        12,
        Role::Follower {
            leader_id: 11,
            leader: a_addr.clone(),
        },
    );
    serve(a_listener, &a);
    serve(b_listener, &b);
    let client = Client::new(short(&[&a_addr])).unwrap();
    assert_eq!(
        code(client.submit_and_wait(deposit(0)).await),
        Code::FailedPrecondition
    );
    assert!((1..=ledger_client::ATTEMPTS_MAX).contains(&(a.calls() + b.calls())));
    // Generous: three 400 ms budgets plus scheduling, far below an unbounded loop.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
