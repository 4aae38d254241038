//! The real `ledger-server` binary on an ephemeral port with a temporary data directory,
//! driven by a tonic client: every method, wait levels, bad input, tokens, health,
//! reflection, metrics, graceful shutdown and kill -9 under load.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;

use common::Server;
use ledger_core::cluster::SharedRules;
use ledger_server::pb;
use ledger_server::pb::ledger_client::LedgerClient;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

fn deposit(account: u64, amount: u64) -> pb::submit_operation_request::Operation {
    pb::submit_operation_request::Operation::Deposit(pb::Deposit {
        account,
        amount,
        user_ref: 0,
    })
}

fn and_wait(
    op: pb::submit_and_wait_request::Operation,
    level: pb::WaitLevel,
) -> pb::SubmitAndWaitRequest {
    pb::SubmitAndWaitRequest {
        operation: Some(op),
        wait_level: level.into(),
    }
}

fn transfer(from: u64, to: u64, amount: u64) -> pb::submit_and_wait_request::Operation {
    pb::submit_and_wait_request::Operation::Transfer(pb::Transfer {
        from,
        to,
        amount,
        user_ref: 0,
    })
}

fn wait_deposit(
    account: u64,
    amount: u64,
    user_ref: u64,
) -> pb::submit_and_wait_request::Operation {
    pb::submit_and_wait_request::Operation::Deposit(pb::Deposit {
        account,
        amount,
        user_ref,
    })
}

/// Lets the command's process grow no file past `bytes` (RLIMIT_FSIZE): a write past it
/// fails (EFBIG) as on a full disk. SIGXFSZ, which would kill the process instead, is
/// ignored (an ignored signal stays ignored across exec).
fn limit_file_size(command: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs between fork and exec; signal(2) and setrlimit(2) are
    // async-signal-safe and change only the child's own state.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Threads of process `pid` whose name is `name`, once there are at least `expected` of
/// them (a new thread names itself after it starts, so they appear one by one), or as
/// many as there are after 10 s.
fn threads_named(pid: u32, name: &str, expected: usize) -> usize {
    let count = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter(|t| {
                let comm = t.as_ref().unwrap().path().join("comm");
                std::fs::read_to_string(comm).is_ok_and(|c| c.trim_end() == name)
            })
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = count();
        if n >= expected || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn io_threads_sets_the_grpc_worker_count() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let expected = cores.saturating_sub(1).max(1);
    assert_eq!(
        threads_named(server.child.id(), "ledger-io", expected),
        expected,
        "the default leaves the transactor a core"
    );
    for n in ["1", "3"] {
        let data = tempfile::tempdir().unwrap();
        let server = Server::start(data.path(), &["--io-threads", n]);
        let expected: usize = n.parse().unwrap();
        assert_eq!(
            threads_named(server.child.id(), "ledger-io", expected),
            expected,
            "--io-threads {n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut c = server.client().await;

    let id = c
        .submit_operation(pb::SubmitOperationRequest {
            operation: Some(deposit(1, 1000)),
        })
        .await
        .unwrap()
        .into_inner()
        .transaction_id;
    assert_eq!(id, 1);
    for level in [
        pb::WaitLevel::Processed,
        pb::WaitLevel::Committed,
        pb::WaitLevel::Snapshot,
    ] {
        let r = c
            .submit_and_wait(and_wait(transfer(1, 2, 10), level))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.fail_reason, 0, "{level:?}");
    }
    // A rejection is a fail_reason, not an error: insufficient funds (1).
    let r = c
        .submit_and_wait(and_wait(transfer(3, 2, 10), pb::WaitLevel::Committed))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.fail_reason, 1);
    // A duplicate user_ref names the original.
    let first = c
        .submit_and_wait(and_wait(wait_deposit(4, 5, 99), pb::WaitLevel::Committed))
        .await
        .unwrap()
        .into_inner();
    let dup = c
        .submit_and_wait(and_wait(wait_deposit(4, 5, 99), pb::WaitLevel::Committed))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dup.fail_reason, 7);
    assert_eq!(dup.original_transaction_id, first.transaction_id);

    let batch = c
        .submit_batch(pb::SubmitBatchRequest {
            operations: (0..5)
                .map(|i| pb::SubmitOperationRequest {
                    operation: Some(deposit(10 + i, 1)),
                })
                .collect(),
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = batch.results.iter().map(|r| r.transaction_id).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    let batch = c
        .submit_batch_and_wait(pb::SubmitBatchAndWaitRequest {
            operations: vec![
                and_wait(transfer(1, 5, 1), pb::WaitLevel::Processed),
                and_wait(transfer(9, 5, 1), pb::WaitLevel::Processed),
            ],
            wait_level: pb::WaitLevel::Snapshot.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        batch
            .results
            .iter()
            .map(|r| r.fail_reason)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );

    let b = c
        .get_balance(pb::GetBalanceRequest {
            account_id: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.balance, 1000 - 30 - 1);
    let bs = c
        .get_balances(pb::GetBalancesRequest {
            account_ids: vec![1, 2, 5],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bs.balances, vec![969, 30, 1]);
    assert_eq!(bs.last_snapshot_tx_id, b.last_snapshot_tx_id);

    let s = c
        .get_transaction_status(pb::GetStatusRequest { transaction_id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.status(), pb::TransactionStatus::OnSnapshot);
    let ss = c
        .get_transaction_statuses(pb::GetStatusesRequest {
            transaction_ids: vec![1, r.transaction_id],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ss.results[1].status(), pb::TransactionStatus::Error);
    assert_eq!(ss.results[1].fail_reason, 1);
    let index = c
        .get_pipeline_index(pb::GetPipelineIndexRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(index.computed_index >= index.committed_index);
    assert!(index.committed_index >= index.snapshot_index);

    let tx = c
        .get_transaction(pb::GetTransactionRequest {
            tx_id: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tx.entries.len(), 2);
    assert_eq!(tx.entries[0].kind(), pb::EntryKind::Credit);
    assert_eq!(tx.entries[0].computed_balance, 990);
    let dup_tx = c
        .get_transaction(pb::GetTransactionRequest {
            tx_id: dup.transaction_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dup_tx.links.len(), 1);
    assert_eq!(dup_tx.links[0].to_tx_id, first.transaction_id);
    assert_eq!(dup_tx.links[0].kind(), pb::LinkKind::Duplicate);

    let h = c
        .get_account_history(pb::GetAccountHistoryRequest {
            account_id: 1,
            from_tx_id: 0,
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.entries.len(), 2);
    assert!(h.entries[0].tx_id > h.entries[1].tx_id);
    assert_ne!(h.next_tx_id, 0);
    let at = c
        .get_balance_at(pb::GetBalanceAtRequest {
            account_id: 1,
            tx_id: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(at.balance, 1000);

    // The stream: results in order, each at its own level.
    let requests: Vec<_> = (0..100)
        .map(|i| {
            and_wait(
                transfer(1, 6, 1),
                [pb::WaitLevel::Committed, pb::WaitLevel::Processed][i % 2],
            )
        })
        .collect();
    let mut responses = c
        .submit_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(r) = responses.message().await.unwrap() {
        assert_eq!(r.fail_reason, 0);
        seen.push(r.transaction_id);
    }
    assert_eq!(seen.len(), 100);
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1));
}

/// A batch of `n` deposits of 1 into `account`, for SubmitBatchStream.
fn deposit_batch(account: u64, n: usize, level: pb::WaitLevel) -> pb::SubmitBatchAndWaitRequest {
    pb::SubmitBatchAndWaitRequest {
        operations: (0..n)
            .map(|_| and_wait(wait_deposit(account, 1, 0), pb::WaitLevel::Processed))
            .collect(),
        wait_level: level.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_stream_answers_each_batch_in_order_and_stops_at_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut c = server.client().await;
    // 20 batches of 1..=20 deposits sent at once (many in flight), every wait level.
    let levels = [
        pb::WaitLevel::Processed,
        pb::WaitLevel::Committed,
        pb::WaitLevel::Snapshot,
    ];
    let batches: Vec<_> = (1..=20)
        .map(|n| deposit_batch(3, n, levels[n % 3]))
        .collect();
    let mut answers = c
        .submit_batch_stream(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let mut next_id = None;
    for n in 1..=20u64 {
        let batch = answers
            .message()
            .await
            .unwrap()
            .expect("one answer per batch");
        assert_eq!(batch.results.len() as u64, n, "answers come in batch order");
        for r in &batch.results {
            assert_eq!(r.fail_reason, 0);
            let expected = next_id.unwrap_or(r.transaction_id);
            assert_eq!(r.transaction_id, expected, "contiguous ids across batches");
            next_id = Some(expected + 1);
        }
    }
    assert!(answers.message().await.unwrap().is_none());
    // The last batch (20 % 3 = 2) waited for the snapshot level: every deposit before it
    // is visible to reads.
    let total: u64 = (1..=20).sum();
    let balance = c
        .get_balance(pb::GetBalanceRequest {
            account_id: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .balance;
    assert_eq!(balance, total as i64);
    let statuses = c
        .get_transaction_statuses(pb::GetStatusesRequest {
            transaction_ids: (next_id.unwrap() - total..next_id.unwrap()).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses.results.len() as u64, total);
    assert!(statuses.results.iter().all(|s| s.fail_reason == 0));

    // An empty batch is refused as SubmitBatchAndWait refuses it, and ends the stream.
    let batches = vec![
        deposit_batch(3, 1, pb::WaitLevel::Committed),
        deposit_batch(3, 0, pb::WaitLevel::Committed),
    ];
    let mut answers = c
        .submit_batch_stream(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answers.message().await.unwrap().unwrap().results.len(), 1);
    let err = answers.message().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("batch 1: "), "{}", err.message());

    // The third batch holds a zero amount: two answers, then INVALID_ARGUMENT naming the
    // batch and the operation; nothing of the bad batch is submitted.
    let mut bad = deposit_batch(4, 3, pb::WaitLevel::Committed);
    bad.operations[1] = and_wait(wait_deposit(4, 0, 0), pb::WaitLevel::Committed);
    let batches = vec![
        deposit_batch(4, 2, pb::WaitLevel::Committed),
        deposit_batch(4, 2, pb::WaitLevel::Committed),
        bad,
        deposit_batch(4, 2, pb::WaitLevel::Committed),
    ];
    let mut answers = c
        .submit_batch_stream(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let mut answered = 0;
    let err = loop {
        match answers.message().await {
            Ok(Some(_)) => answered += 1,
            Ok(None) => panic!("the stream ended without an error"),
            Err(e) => break e,
        }
    };
    assert_eq!(answered, 2);
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("batch 2: operation 1:"),
        "{}",
        err.message()
    );
    // The server keeps serving; account 4 got exactly the first two batches.
    let index = c
        .get_pipeline_index(pb::GetPipelineIndexRequest {})
        .await
        .unwrap()
        .into_inner();
    c.submit_and_wait(and_wait(wait_deposit(5, 1, 0), pb::WaitLevel::Snapshot))
        .await
        .unwrap();
    let balance = c
        .get_balance(pb::GetBalanceRequest {
            account_id: 4,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .balance;
    assert_eq!(balance, 4, "index before: {index:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--max-message-bytes", "65536"]);
    let mut c = server.client().await;
    let code = |r: Result<tonic::Response<pb::SubmitOperationResponse>, tonic::Status>| {
        r.unwrap_err().code()
    };
    let submit = |op| pb::SubmitOperationRequest { operation: op };
    assert_eq!(
        code(c.submit_operation(submit(None)).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(c.submit_operation(submit(Some(deposit(1, 0)))).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(c.submit_operation(submit(Some(deposit(1000, 5)))).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(c.submit_operation(submit(Some(deposit(0, 5)))).await),
        Code::InvalidArgument
    );
    let named = pb::submit_operation_request::Operation::Named(pb::Named {
        name: "fee".into(),
        params: vec![1],
        user_ref: 0,
    });
    assert_eq!(
        code(c.submit_operation(submit(Some(named))).await),
        Code::Unimplemented
    );
    let empty = pb::submit_operation_request::Operation::Composite(pb::Composite::default());
    assert_eq!(
        code(c.submit_operation(submit(Some(empty))).await),
        Code::InvalidArgument
    );
    let bad_level = pb::SubmitAndWaitRequest {
        operation: Some(wait_deposit(1, 1, 0)),
        wait_level: 9,
    };
    assert_eq!(
        c.submit_and_wait(bad_level).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // A batch names the bad operation.
    let err = c
        .submit_batch(pb::SubmitBatchRequest {
            operations: vec![submit(Some(deposit(1, 1))), submit(Some(deposit(1, 0)))],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("operation 1:"),
        "{}",
        err.message()
    );
    // Larger than the ring: refused, not a deadlock.
    let err = c
        .submit_batch(pb::SubmitBatchRequest {
            operations: (0..5000).map(|_| submit(Some(deposit(1, 1)))).collect(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted
        ),
        "{err:?}"
    );
    // A stream answers every good request before a bad one, then ends naming it.
    let requests = vec![
        and_wait(wait_deposit(1, 1, 0), pb::WaitLevel::Committed),
        and_wait(wait_deposit(1, 1, 0), pb::WaitLevel::Committed),
        and_wait(wait_deposit(1, 0, 0), pb::WaitLevel::Committed),
        and_wait(wait_deposit(1, 1, 0), pb::WaitLevel::Committed),
    ];
    let mut responses = c
        .submit_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut answered = 0;
    let err = loop {
        match responses.message().await {
            Ok(Some(r)) => {
                assert_eq!(r.fail_reason, 0);
                answered += 1;
            }
            Ok(None) => panic!("the stream ended without an error"),
            Err(e) => break e,
        }
    };
    assert_eq!(answered, 2);
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("operation 2:"),
        "{}",
        err.message()
    );
    // Reads of what does not exist.
    let err = c
        .get_transaction(pb::GetTransactionRequest {
            tx_id: 999,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .get_balance(pb::GetBalanceRequest {
            account_id: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Garbage bytes on a raw connection: that connection fails, nobody else notices.
    let mut raw = std::net::TcpStream::connect(&server.addr).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff\xfe garbage")
        .unwrap();
    let mut sink = Vec::new();
    let _ = raw.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let _ = raw.read_to_end(&mut sink);
    let ok = c
        .submit_operation(submit(Some(deposit(1, 7))))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.transaction_id >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_separate_readers_from_writers() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "read reader-token-0123456789\nwrite writer-token-0123456789\n",
    )
    .unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--token-file", tokens.to_str().unwrap()],
    );
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let with = |token: &'static str| {
        LedgerClient::with_interceptor(channel.clone(), move |mut r: tonic::Request<()>| {
            if !token.is_empty() {
                r.metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
            }
            Ok(r)
        })
    };
    let submit = pb::SubmitOperationRequest {
        operation: Some(deposit(1, 5)),
    };
    let err = with("").submit_operation(submit.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = with("wrong-token-0123456789")
        .get_balance(pb::GetBalanceRequest {
            account_id: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = with("reader-token-0123456789")
        .submit_operation(submit.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    with("writer-token-0123456789")
        .submit_operation(submit)
        .await
        .unwrap();
    with("reader-token-0123456789")
        .get_balance(pb::GetBalanceRequest {
            account_id: 1,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A token file that names a peer token keeps Raft's RPCs to it: a write token (a client
/// of the ledger) cannot send a vote or log entries to a cluster node, the peer token can,
/// and the node goes on taking writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_peer_token_may_send_raft_messages() {
    use ledger_server::pb::cluster::raft_client::RaftClient;
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "write writer-token-0123456789\npeer peer-token-0123456789abc\n",
    )
    .unwrap();
    // A cluster of one: it leads at once, and never dials its (unused) address.
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--token-file",
            tokens.to_str().unwrap(),
            "--node-id",
            "1",
            "--peers",
            "1=127.0.0.1:9",
        ],
    );
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer = |token: &'static str| {
        move |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            Ok(r)
        }
    };
    let vote = pb::cluster::VoteRequest {
        vote: Some(pb::cluster::Vote {
            term: 1,
            node_id: 2,
            committed: false,
        }),
        last_log_id: None,
    };
    let err = RaftClient::with_interceptor(channel.clone(), bearer("writer-token-0123456789"))
        .vote(vote)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("peer token"), "{err:?}");
    // The peer token is heard (the answer refuses a stale candidate: that is Raft's call).
    RaftClient::with_interceptor(channel.clone(), bearer("peer-token-0123456789abc"))
        .vote(vote)
        .await
        .unwrap();

    // A node with another idempotency window is refused, naming the difference (once
    // leader it would let through a retry this node refuses); one with the same rules
    // is heard.
    let with_rules = |rules: String| {
        let mut request = tonic::Request::new(vote);
        request.metadata_mut().insert(
            "authorization",
            "Bearer peer-token-0123456789abc".parse().unwrap(),
        );
        request
            .metadata_mut()
            .insert("x-ledger-rules", rules.parse().unwrap());
        request
    };
    // The test server's settings: its --max-accounts, the rest default.
    let config = ledger_core::ledger::LedgerConfig {
        max_accounts: 1000,
        ..Default::default()
    };
    let ours = SharedRules::of(&config);
    let other = SharedRules::of(&ledger_core::ledger::LedgerConfig {
        dedup_window: Duration::from_secs(1),
        ..config
    });
    let mut raft = RaftClient::new(channel.clone());
    let err = raft.vote(with_rules(other.to_wire())).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .contains("dedup_window_ns: the sender has 1000000000, this node 10000000000")
            && err.message().contains("--dedup-window-secs"),
        "{err:?}"
    );
    raft.vote(with_rules(ours.to_wire())).await.unwrap();

    let mut writer = LedgerClient::with_interceptor(channel, bearer("writer-token-0123456789"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let submitted = writer
            .submit_and_wait(and_wait(wait_deposit(3, 7, 0), pb::WaitLevel::Committed))
            .await;
        match submitted {
            Ok(_) => break,
            // Until the node has elected itself.
            Err(e) if e.code() == Code::Unavailable && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("a write on the one-node cluster: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--metrics-addr", "127.0.0.1:0"]);
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "roda.ledger.v1.Ledger".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("{response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"roda.ledger.v1.Ledger"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let mut c = LedgerClient::new(channel);
    c.submit_and_wait(and_wait(wait_deposit(1, 5, 0), pb::WaitLevel::Committed))
        .await
        .unwrap();
    let text = common::metrics_page(&server);
    assert!(text.starts_with("HTTP/1.0 200 OK"), "{text}");
    assert!(text.contains("ledger_committed_index 1"), "{text}");
    assert!(
        text.contains("ledger_transactions_total{fail_code=\"0\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ledger_submit_commit_seconds_count 1"),
        "{text}"
    );
    assert!(text.contains("ledger_wal_fsyncs_total"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_a_restart_has_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[]);
    let mut c = server.client().await;
    for i in 0..50 {
        c.submit_operation(pb::SubmitOperationRequest {
            operation: Some(deposit(1 + i % 5, 10)),
        })
        .await
        .unwrap();
    }
    let status = server.signal(libc::SIGTERM);
    assert!(status.success(), "{status:?}");
    let server = Server::start(&data, &[]);
    let mut c = server.client().await;
    let bs = c
        .get_balances(pb::GetBalancesRequest {
            account_ids: vec![1, 2, 3, 4, 5],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bs.balances, vec![100; 5]);
    assert_eq!(bs.last_snapshot_tx_id, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_tls_only_and_the_probe_checks_health() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--console-listen",
            "127.0.0.1:0",
        ],
    );
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(cert.pem()))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = LedgerClient::new(channel);
    c.submit_operation(pb::SubmitOperationRequest {
        operation: Some(deposit(1, 5)),
    })
    .await
    .unwrap();
    // Plaintext against the TLS port fails; the server keeps serving.
    let mut plain = server.client().await;
    assert!(
        plain
            .get_pipeline_index(pb::GetPipelineIndexRequest {})
            .await
            .is_err()
    );
    c.get_balance(pb::GetBalanceRequest {
        account_id: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    // The console is HTTPS with the same certificate, and nothing else.
    let console = server.console.as_deref().unwrap();
    let console = console
        .strip_prefix("https://")
        .expect("the console over TLS");
    let page = https_get(console, &cert.pem(), "/accounts/1").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains(r#"<p class="big" id="balance">5</p>"#),
        "{page}"
    );
    let mut plain = tokio::net::TcpStream::connect(console).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "plain HTTP answered");
    // The container health check.
    let probe = |listen: &str| {
        Command::new(env!("CARGO_BIN_EXE_ledger-server"))
            .args(["--probe", "--listen", listen])
            .args(["--tls-cert", cert_path.to_str().unwrap()])
            .args(["--tls-key", key_path.to_str().unwrap()])
            .status()
            .unwrap()
    };
    assert!(probe(&server.addr).success());
    let refused = probe("127.0.0.1:1");
    assert_eq!(refused.code(), Some(1), "{refused:?}");
}

/// `GET path` over TLS trusting `cert_pem`, the whole response as text.
async fn https_get(addr: &str, cert_pem: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let config = ClientConfig::builder_with_provider(std::sync::Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    response
}

#[test]
fn a_taken_port_or_data_dir_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let running = Server::start(&data, &[]);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ledger-server"))
            .args(args)
            .output()
            .unwrap()
    };
    let second = run(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("in use"),
        "{second:?}"
    );
    let other = dir.path().join("other");
    let taken = run(&[
        "--listen",
        &running.addr,
        "--data-dir",
        other.to_str().unwrap(),
    ]);
    assert_eq!(taken.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&taken.stderr).contains("listen on"),
        "{taken:?}"
    );
    assert!(
        !other.exists(),
        "a failed start must not create the data directory"
    );
    // The console's and the metrics' addresses are bound before the ledger starts too.
    for flag in ["--console-listen", "--metrics-addr"] {
        let taken = run(&[
            "--listen",
            "127.0.0.1:0",
            flag,
            &running.addr,
            "--data-dir",
            other.to_str().unwrap(),
        ]);
        assert_eq!(taken.status.code(), Some(1), "{flag}");
        let stderr = String::from_utf8_lossy(&taken.stderr);
        assert!(stderr.contains("in use"), "{flag}: {stderr}");
        assert!(!other.exists(), "{flag}: the data directory was created");
    }
    let bad = run(&[
        "--max-accounts",
        "0",
        "--data-dir",
        other.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("max_accounts"),
        "{bad:?}"
    );
    let usage = run(&["--no-such-flag"]);
    assert_eq!(usage.status.code(), Some(2));
}

/// Runs 8 clients submitting deposits with SubmitAndWait(COMMITTED) until `acks` are
/// acknowledged (a count, not a time), then sends `signal`. Returns the server's exit
/// status and every acknowledged `(tx_id, amount)`.
async fn signal_under_load(
    data: &Path,
    signal: i32,
    acks: usize,
) -> (std::process::ExitStatus, Vec<(u64, u64)>) {
    let mut server = Server::start(data, &[]);
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for t in 0..8_u64 {
        let mut c = LedgerClient::new(channel.clone());
        let acked = std::sync::Arc::clone(&acked);
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let amount = 1 + i % 9;
                let req = and_wait(
                    wait_deposit(1 + (t * 31 + i) % 900, amount, 0),
                    pb::WaitLevel::Committed,
                );
                match c.submit_and_wait(req).await {
                    Ok(r) => acked
                        .lock()
                        .unwrap()
                        .push((r.into_inner().transaction_id, amount)),
                    // After the signal: refused or cut off, never a hang.
                    Err(_) => return,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < acks {
        tokio::task::yield_now().await;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let status = server.signal(signal);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    (status, acked)
}

/// Restarts on `data` and checks every acknowledged deposit is there, committed, with
/// its amount; then that the ledger takes new work after them.
async fn assert_acknowledged_survive(data: &Path, acked: &[(u64, u64)]) {
    let server = Server::start(data, &[]);
    let mut c = server.client().await;
    for (tx_id, amount) in acked {
        let tx = c
            .get_transaction(pb::GetTransactionRequest {
                tx_id: *tx_id,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(tx.fail_reason, 0);
        let debit = tx.entries.iter().find(|e| e.kind() == pb::EntryKind::Debit);
        assert_eq!(debit.unwrap().amount, *amount);
    }
    let r = c
        .submit_and_wait(and_wait(wait_deposit(1, 1, 0), pb::WaitLevel::Committed))
        .await
        .unwrap()
        .into_inner();
    assert!(r.transaction_id > acked.iter().map(|a| a.0).max().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_keeps_every_committed_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, acked) = signal_under_load(&data, libc::SIGKILL, 2000).await;
    assert_acknowledged_survive(&data, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_and_keeps_every_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (status, acked) = signal_under_load(&data, libc::SIGTERM, 500).await;
    assert!(status.success(), "{status:?}");
    assert_acknowledged_survive(&data, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_in_process_on_a_bound_listener_until_told_to_stop() {
    use ledger_server::settings::Settings;
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: Some(dir.path().join("data")),
        max_accounts: Some(1000),
        ..Settings::default()
    };
    for round in 1..=2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(ledger_server::serve::serve(
            listener,
            settings.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        let mut c = LedgerClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        c.submit_and_wait(and_wait(wait_deposit(9, 5, 0), pb::WaitLevel::Snapshot))
            .await
            .unwrap();
        let balance = c
            .get_balance(pb::GetBalanceRequest {
                account_id: 9,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .balance;
        // The second round runs on the first one's data: it was stopped durably.
        assert_eq!(balance, 5 * round);
        drop(c);
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balance_read_sees_every_commit_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut writer = server.client().await;
    let mut reader = server.client().await;
    for n in 1..=200 {
        writer
            .submit_and_wait(and_wait(wait_deposit(6, 1, 0), pb::WaitLevel::Committed))
            .await
            .unwrap();
        // Committed (not yet snapshot-level) when acknowledged: the read must wait for it.
        let one = reader
            .get_balance(pb::GetBalanceRequest {
                account_id: 6,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(one.balance, n);
        let many = reader
            .get_balances(pb::GetBalancesRequest {
                account_ids: vec![6, 7],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(many.balances, [n, 0]);
    }
}

/// The health service's answer for `service`.
async fn health_of(
    channel: &Channel,
    service: &str,
) -> tonic_health::pb::health_check_response::ServingStatus {
    tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// `ledger-server --probe` against `addr`.
fn probe(addr: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ledger-server"))
        .args(["--probe", "--listen", addr])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_ledger_is_not_serving_to_health_checks_and_the_probe() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB per file: the first WAL segment fills up within a few thousand deposits.
    let server = Server::start_with(&dir.path().join("data"), &[], |c| {
        limit_file_size(c, 64 << 10);
    });
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for service in ["", "roda.ledger.v1.Ledger"] {
        assert_eq!(health_of(&channel, service).await, ServingStatus::Serving);
    }
    assert!(probe(&server.addr).status.success());

    let mut c = LedgerClient::new(channel.clone());
    let batch = pb::SubmitBatchAndWaitRequest {
        operations: (0..100)
            .map(|_| and_wait(wait_deposit(1, 1, 0), pb::WaitLevel::Processed))
            .collect(),
        wait_level: pb::WaitLevel::Committed.into(),
    };
    let mut committed = 0;
    let err = loop {
        match c.submit_batch_and_wait(batch.clone()).await {
            Ok(_) => committed += 1,
            Err(e) => break e,
        }
        assert!(committed < 10_000, "64 KiB of WAL never filled up");
    };
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(committed > 0, "the limit let the ledger start and commit");

    // The flip is asynchronous (the refused request wakes the health watcher): wait for
    // it, up to a deadline far beyond its usual microseconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while health_of(&channel, "roda.ledger.v1.Ledger").await != ServingStatus::NotServing {
        assert!(
            std::time::Instant::now() < deadline,
            "health still SERVING 10 s after the ledger failed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(health_of(&channel, "").await, ServingStatus::NotServing);
    let probed = probe(&server.addr);
    assert_eq!(probed.status.code(), Some(1), "{probed:?}");
    assert!(
        String::from_utf8_lossy(&probed.stderr).contains("NotServing"),
        "{probed:?}"
    );
    // Reads of what is visible still work: the server itself is up.
    c.get_pipeline_index(pb::GetPipelineIndexRequest {})
        .await
        .unwrap();
}

/// Raw bytes in and out of a gRPC call: no protobuf on the client side.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

const UNARY_METHODS: [&str; 12] = [
    "SubmitOperation",
    "SubmitAndWait",
    "SubmitBatch",
    "SubmitBatchAndWait",
    "GetBalance",
    "GetBalances",
    "GetTransactionStatus",
    "GetTransactionStatuses",
    "GetPipelineIndex",
    "GetTransaction",
    "GetAccountHistory",
    "GetBalanceAt",
];

/// `bytes` as the request of `method`, bypassing protobuf: the status it gets.
async fn raw_call(
    channel: &Channel,
    method: &str,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(format!(
        "/roda.ledger.v1.Ledger/{method}"
    ))
    .unwrap();
    grpc.unary(tonic::Request::new(bytes), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_requests_are_invalid_argument_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // Never a valid message of any type: a truncated varint, a truncated key, field 0,
    // wire type 7, a length running past the end.
    let malformed: [&[u8]; 5] = [
        &[0x08],
        &[0xff],
        &[0x00, 0x01],
        &[0x0f, 0x01],
        &[0x0a, 0x7f, 0x01],
    ];
    for method in UNARY_METHODS {
        for bytes in malformed {
            let err = raw_call(&channel, method, bytes.to_vec())
                .await
                .unwrap_err();
            assert_eq!(
                err.code(),
                Code::InvalidArgument,
                "{method} {bytes:?}: {err:?}"
            );
        }
    }
    // Random bytes (a fixed seed): most are not messages, a few happen to be. Either
    // way the answer is never the server's fault.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut invalid = 0;
    for method in UNARY_METHODS {
        for _ in 0..30 {
            let len = (next() % 64) as usize + 1;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Err(err) = raw_call(&channel, method, bytes.clone()).await {
                assert!(
                    !matches!(err.code(), Code::Internal | Code::Unknown),
                    "{method} {bytes:?}: {err:?}"
                );
                invalid += usize::from(err.code() == Code::InvalidArgument);
            }
        }
    }
    assert!(
        invalid > 300,
        "only {invalid} of 360 random payloads refused"
    );
    // A stream's undecodable message ends it the same way, naming the operation.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/roda.ledger.v1.Ledger/SubmitStream");
    let outcome = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter(vec![vec![0xff_u8]])),
            path,
            RawCodec,
        )
        .await;
    let err = match outcome {
        Ok(response) => response.into_inner().message().await.unwrap_err(),
        Err(err) => err,
    };
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // The server keeps serving, on the same connection.
    let mut c = LedgerClient::new(channel);
    c.submit_and_wait(and_wait(wait_deposit(1, 5, 0), pb::WaitLevel::Committed))
        .await
        .unwrap();
}

fn configure(
    account: u64,
    currency: u32,
    flags: u32,
    overdraft_limit: u64,
    max_balance: Option<i64>,
) -> pb::submit_and_wait_request::Operation {
    pb::submit_and_wait_request::Operation::ConfigureAccount(pb::ConfigureAccount {
        account,
        currency,
        flags,
        overdraft_limit,
        max_balance,
        user_ref: 0,
        parent: 0,
    })
}

/// The money model over the wire: accounts configured with a currency and rules, the
/// new fail codes, GetAccount and GetSystemBalance, malformed configurations refused
/// with INVALID_ARGUMENT, and all of it back after a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_accounts_over_grpc_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[]);
    let mut c = server.client().await;
    let committed = pb::WaitLevel::Committed;
    let mut run = async |op| {
        c.submit_and_wait(and_wait(op, committed))
            .await
            .unwrap()
            .into_inner()
    };
    // Account 1: currency 840, 100 of overdraft. Account 2: currency 840, at most 500.
    assert_eq!(run(configure(1, 840, 0x2, 100, None)).await.fail_reason, 0);
    assert_eq!(
        run(configure(2, 840, 0x2, 0, Some(500))).await.fail_reason,
        0
    );
    assert_eq!(run(transfer(1, 2, 100)).await.fail_reason, 0);
    assert_eq!(
        run(transfer(1, 2, 1)).await.fail_reason,
        1,
        "beyond the overdraft"
    );
    assert_eq!(
        run(transfer(1, 3, 1)).await.fail_reason,
        10,
        "currency mismatch"
    );
    assert_eq!(
        run(wait_deposit(2, 401, 0)).await.fail_reason,
        11,
        "max balance"
    );
    assert_eq!(
        run(configure(2, 978, 0x2, 0, None)).await.fail_reason,
        12,
        "currency fixed"
    );
    assert_eq!(run(configure(3, 0, 0x3, 0, None)).await.fail_reason, 0);
    assert_eq!(run(wait_deposit(3, 5, 0)).await.fail_reason, 9, "frozen");
    assert_eq!(run(wait_deposit(2, 50, 0)).await.fail_reason, 0);

    // Malformed configurations never reach the ledger.
    for (op, what) in [
        (configure(0, 1, 0x2, 0, None), "system account"),
        (configure(5, 1, 0x80, 0, None), "account flags"),
        (configure(5, 1, 0x0, 10, None), "overdraft_limit needs flag"),
        (configure(5, 1, 0x2, 10, Some(-11)), "below the lowest"),
        (configure(5, 1, 0x2, u64::MAX, None), "overdraft_limit"),
    ] {
        let status = c
            .submit_and_wait(and_wait(op, committed))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}");
        assert!(
            status.message().contains(what),
            "{what}: {}",
            status.message()
        );
    }

    let check = |mut c: LedgerClient<Channel>| async move {
        let one = c
            .get_account(pb::GetAccountRequest {
                account_id: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(one.configured && one.moved);
        assert_eq!(
            (
                one.currency,
                one.flags,
                one.overdraft_limit,
                one.max_balance,
                one.balance
            ),
            (840, 0x2, 100, None, -100)
        );
        let two = c
            .get_account(pb::GetAccountRequest {
                account_id: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((two.max_balance, two.balance), (Some(500), 150));
        let plain = c
            .get_account(pb::GetAccountRequest {
                account_id: 7,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!plain.configured);
        assert_eq!(
            (plain.currency, plain.flags, plain.max_balance),
            (0, 0x2, None)
        );
        let system = c
            .get_system_balance(pb::GetSystemBalanceRequest {
                currency: 840,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(system.balance, -50);
        let out_of_range = c
            .get_account(pb::GetAccountRequest {
                account_id: 1_000,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(out_of_range.code(), Code::InvalidArgument);
    };
    check(server.client().await).await;
    let killed = server.signal(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed),
        Some(libc::SIGKILL)
    );
    let server = Server::start(&data, &[]);
    check(server.client().await).await;
}

/// Two-phase transfers over the wire: hold, partial post, the hold's state and an
/// account's open holds, the new fail codes, bad input, and a kill -9 in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_over_grpc_survive_kill_9() {
    use pb::submit_and_wait_request::Operation as Op;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[]);
    let mut c = server.client().await;
    let committed = pb::WaitLevel::Committed;
    let hold = |from, to, amount| {
        Op::Hold(pb::Hold {
            from,
            to,
            amount,
            timeout_ns: 0,
            user_ref: 0,
        })
    };
    let post = |hold_id, amount| {
        Op::PostHold(pb::PostHold {
            hold_id,
            amount,
            user_ref: 0,
        })
    };
    let mut run = async |op| {
        c.submit_and_wait(and_wait(op, committed))
            .await
            .unwrap()
            .into_inner()
    };
    assert_eq!(run(wait_deposit(1, 100, 0)).await.fail_reason, 0);
    let placed = run(hold(1, 2, 60)).await;
    assert_eq!(placed.fail_reason, 0);
    let id = placed.transaction_id;
    assert_eq!(
        run(hold(1, 3, 41)).await.fail_reason,
        1,
        "only 40 available"
    );
    assert_eq!(run(post(id, 61)).await.fail_reason, 15, "more than held");
    assert_eq!(run(post(id + 100, 0)).await.fail_reason, 13, "no such hold");
    let status = c
        .submit_and_wait(and_wait(hold(4, 4, 1), committed))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let account = c
        .get_account(pb::GetAccountRequest {
            account_id: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((account.balance, account.held_outgoing), (100, 60));
    let open = c
        .get_open_holds(pb::GetOpenHoldsRequest {
            account_id: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.holds.len(), 1);
    assert_eq!((open.holds[0].hold_id, open.holds[0].amount), (id, 60));
    // The hold's transaction shows what it did: no entries, one effect.
    let placed_tx = c
        .get_transaction(pb::GetTransactionRequest {
            tx_id: id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(placed_tx.entries.is_empty());
    assert_eq!(
        placed_tx.effects,
        [pb::TxEffect {
            effect: Some(pb::tx_effect::Effect::HoldOpened(pb::HoldPlaced {
                from: 1,
                to: 2,
                amount: 60,
                expires_at_ns: 0,
            })),
        }]
    );

    let killed = server.signal(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed),
        Some(libc::SIGKILL)
    );
    let server = Server::start(&data, &[]);
    let mut c = server.client().await;
    let r = c.submit_and_wait(and_wait(post(id, 25), committed)).await;
    let posted = r.unwrap().into_inner();
    assert_eq!(posted.fail_reason, 0);
    let again = c.submit_and_wait(and_wait(post(id, 0), committed)).await;
    assert_eq!(again.unwrap().into_inner().fail_reason, 14, "posted twice");
    let h = c
        .get_hold(pb::GetHoldRequest {
            hold_id: id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .hold
        .unwrap();
    assert_eq!(
        (h.state(), h.posted, h.from, h.to),
        (pb::HoldState::HoldPosted, 25, 1, 2)
    );
    let missing = c
        .get_hold(pb::GetHoldRequest {
            hold_id: 9_999,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let b = c
        .get_balances(pb::GetBalancesRequest {
            account_ids: vec![1, 2],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.balances, [75, 25]);
    // Account 1's history, across the restart: the deposit's and the post's entries,
    // and the hold's events (placed, then posted), newest first; refusals are absent.
    let history = c
        .get_account_history(pb::GetAccountHistoryRequest {
            account_id: 1,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let entry_txs: Vec<u64> = history.entries.iter().map(|e| e.tx_id).collect();
    assert_eq!(entry_txs, [posted.transaction_id, 1]);
    use pb::tx_effect::Effect as E;
    let events: Vec<(u64, Option<E>)> = history
        .events
        .into_iter()
        .map(|e| (e.tx_id, e.effect.and_then(|e| e.effect)))
        .collect();
    assert_eq!(
        events,
        [
            (
                posted.transaction_id,
                Some(E::HoldPosted(pb::HoldClosed {
                    hold_id: id,
                    amount: 25
                }))
            ),
            (
                id,
                Some(E::HoldOpened(pb::HoldPlaced {
                    from: 1,
                    to: 2,
                    amount: 60,
                    expires_at_ns: 0
                }))
            ),
        ]
    );
    assert_eq!(history.next_tx_id, 0);
}

/// Reversals and hierarchies over the wire: a reversal commits the inverse and links both
/// ways, a second one is refused (19), an unknown id is 17, a parent's aggregate follows
/// its sub-account, an invalid parent is 20 or INVALID_ARGUMENT; all of it after a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversals_and_hierarchies_over_grpc_survive_kill_9() {
    use pb::submit_and_wait_request::Operation as Op;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[]);
    let mut c = server.client().await;
    let committed = pb::WaitLevel::Committed;
    let reverse = |tx_id| Op::Reverse(pb::Reverse { tx_id, user_ref: 0 });
    let sub_account = |account, parent| {
        Op::ConfigureAccount(pb::ConfigureAccount {
            account,
            flags: 0x2,
            parent,
            ..Default::default()
        })
    };
    let mut run = async |op| {
        c.submit_and_wait(and_wait(op, pb::WaitLevel::Snapshot))
            .await
            .unwrap()
            .into_inner()
    };
    assert_eq!(run(sub_account(2, 1)).await.fail_reason, 0);
    assert_eq!(run(sub_account(1, 2)).await.fail_reason, 20, "a cycle");
    assert_eq!(run(wait_deposit(2, 100, 0)).await.fail_reason, 0);
    let paid = run(transfer(2, 3, 30)).await;
    assert_eq!(paid.fail_reason, 0);
    let reversal = run(reverse(paid.transaction_id)).await;
    assert_eq!(reversal.fail_reason, 0);
    assert_eq!(run(reverse(paid.transaction_id)).await.fail_reason, 19);
    assert_eq!(run(reverse(9_999)).await.fail_reason, 17);
    let err = c
        .submit_and_wait(and_wait(sub_account(5, 5), committed))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "its own parent");

    let killed = server.signal(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed),
        Some(libc::SIGKILL)
    );
    let server = Server::start(&data, &[]);
    let mut c = server.client().await;
    let again = c
        .submit_and_wait(and_wait(reverse(paid.transaction_id), committed))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.fail_reason, 19, "still reversed after a restart");
    let links = |tx_id| {
        let mut c = c.clone();
        async move {
            c.get_transaction(pb::GetTransactionRequest {
                tx_id,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .links
            .iter()
            .map(|l| (l.to_tx_id, l.kind()))
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        links(paid.transaction_id).await,
        [(reversal.transaction_id, pb::LinkKind::ReversedBy)]
    );
    assert_eq!(
        links(reversal.transaction_id).await,
        [(paid.transaction_id, pb::LinkKind::Reversal)]
    );
    let effects = c
        .get_transaction(pb::GetTransactionRequest {
            tx_id: reversal.transaction_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .effects;
    assert_eq!(
        effects,
        [pb::TxEffect {
            effect: Some(pb::tx_effect::Effect::Reversed(paid.transaction_id)),
        }]
    );
    let parent = c
        .get_account(pb::GetAccountRequest {
            account_id: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (parent.balance, parent.aggregate_balance, parent.children),
        (0, 100, 1)
    );
    let child = c
        .get_account(pb::GetAccountRequest {
            account_id: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((child.parent, child.balance), (1, 100));
}

/// Reads `stream` until it has sent every transaction below `until`; returns their ids
/// and the last batch's `next_tx_id`.
async fn stream_until(
    stream: &mut Streaming<pb::TransactionBatch>,
    until: u64,
) -> (Vec<u64>, Vec<pb::GetTransactionResponse>, u64) {
    let (mut ids, mut transactions, mut next) = (Vec::new(), Vec::new(), 0);
    while next < until {
        let batch = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("a batch within 30 s")
            .unwrap()
            .expect("the stream goes on");
        assert!(batch.next_tx_id > next, "next_tx_id moves forward");
        next = batch.next_tx_id;
        for t in batch.transactions {
            assert!(t.tx_id < next);
            ids.push(t.tx_id);
            transactions.push(t);
        }
    }
    (ids, transactions, next)
}

/// The change stream: every committed transaction once and in order, from a chosen id
/// and then live; filtered by account; rejections only when asked for; after a kill -9
/// a subscriber resumes from the last batch's `next_tx_id` with nothing lost or
/// repeated. (An id retention deleted is `NotRetained`, OUT_OF_RANGE on the wire: the
/// engine's history test covers the read.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_every_transaction_once_in_order_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[]);
    let mut c = server.client().await;
    let committed = pb::WaitLevel::Committed;
    let mut run = async |op| {
        c.submit_and_wait(and_wait(op, committed))
            .await
            .unwrap()
            .into_inner()
    };
    for i in 0..40 {
        run(wait_deposit(1 + i % 3, 10, 0)).await;
    }
    let mut s = server.client().await;
    let subscribe =
        |from_tx_id, accounts: Vec<u64>, include_rejected| pb::SubscribeTransactionsRequest {
            from_tx_id,
            accounts,
            include_rejected,
        };
    let mut all = s
        .subscribe_transactions(subscribe(1, vec![], true))
        .await
        .unwrap()
        .into_inner();
    let mut of_2 = s
        .subscribe_transactions(subscribe(5, vec![2], false))
        .await
        .unwrap()
        .into_inner();
    let mut live = s
        .subscribe_transactions(subscribe(0, vec![], false))
        .await
        .unwrap()
        .into_inner();
    // Live ones: transfers, some refused (account 3 has 130 at most).
    let mut rejected = Vec::new();
    for i in 0..40_u64 {
        let r = run(transfer(3, 1 + i % 2, 20)).await;
        if r.fail_reason != 0 {
            rejected.push(r.transaction_id);
        }
    }
    assert!(!rejected.is_empty());
    let (ids, transactions, next) = stream_until(&mut all, 81).await;
    assert_eq!(ids, (1..=80).collect::<Vec<_>>());
    assert_eq!(next, 81);
    // Each as GetTransaction shows it.
    let forty_second = c
        .get_transaction(pb::GetTransactionRequest {
            tx_id: 42,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // A stream's transactions carry no node index.
    let applied_tx_id = 0;
    assert_eq!(
        transactions[41],
        pb::GetTransactionResponse {
            applied_tx_id,
            ..forty_second
        }
    );
    // Filtered: committed transactions from 5 on with an entry on account 2.
    let want: Vec<u64> = transactions
        .iter()
        .filter(|t| t.tx_id >= 5 && t.fail_reason == 0)
        .filter(|t| t.entries.iter().any(|e| e.account_id == 2))
        .map(|t| t.tx_id)
        .collect();
    let mut got = Vec::new();
    while got.len() < want.len() {
        let batch = of_2.message().await.unwrap().unwrap();
        got.extend(batch.transactions.iter().map(|t| t.tx_id));
    }
    assert_eq!(got, want);
    // Live only: from 41, committed ones.
    let (live_ids, _, _) = stream_until(&mut live, 81).await;
    let want: Vec<u64> = (41..=80).filter(|id| !rejected.contains(id)).collect();
    assert_eq!(live_ids, want);

    // Killed mid-stream, restarted: the subscriber resumes from `next`.
    let killed = server.signal(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&killed),
        Some(libc::SIGKILL)
    );
    let err = tokio::time::timeout(Duration::from_secs(30), all.message())
        .await
        .expect("the stream ends with the server");
    assert!(matches!(err, Err(_) | Ok(None)), "{err:?}");
    let server = Server::start(&data, &[]);
    let mut c = server.client().await;
    let mut resumed = c
        .subscribe_transactions(subscribe(next, vec![], true))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..5 {
        let r = c
            .submit_and_wait(and_wait(wait_deposit(7, 1, 0), committed))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.fail_reason, 0);
    }
    let (ids, _, _) = stream_until(&mut resumed, 86).await;
    assert_eq!(ids, (81..=85).collect::<Vec<_>>());
    // A filtered subscriber whose account nothing touched still learns where to resume
    // once caught up: an empty batch carrying next_tx_id.
    let mut idle = c
        .subscribe_transactions(subscribe(81, vec![999], false))
        .await
        .unwrap()
        .into_inner();
    let (ids, _, next) = stream_until(&mut idle, 86).await;
    assert!(ids.is_empty());
    assert_eq!(next, 86);
}

/// Logs into a pipe are plain text, without colour codes; `--log-format json` writes one
/// JSON object per line.
#[test]
fn logs_are_plain_text_into_a_pipe_and_json_when_asked() {
    use std::io::{BufRead, BufReader};
    for json in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger-server"));
        command
            .args(["--listen", "127.0.0.1:0", "--log", "info"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("LEDGER_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if json {
            command.args(["--log-format", "json"]);
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let line = lines
            .find_map(|l| {
                l.ok()
                    .filter(|l| l.contains("serving roda.ledger.v1.Ledger"))
            })
            .expect("the serving line");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!line.contains('\x1b'), "no colour codes: {line:?}");
        if json {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["level"], "INFO");
            assert_eq!(v["fields"]["message"], "serving roda.ledger.v1.Ledger");
            assert!(v["timestamp"].is_string());
        } else {
            assert!(line.contains(" INFO "), "{line}");
        }
    }
}

/// Subscribers of every account share the server's feed: started at different points
/// (from the first transaction, live, midway) while batches commit, each gets every
/// transaction from its start once and in order, through the hand-over from its own
/// reads to the shared pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_sharing_the_feed_each_get_their_whole_range() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut c = server.client().await;
    let committed = pb::WaitLevel::Committed;
    c.submit_batch_and_wait(deposit_batch(1, 1000, committed))
        .await
        .unwrap();
    let subscribe = |from_tx_id| pb::SubscribeTransactionsRequest {
        from_tx_id,
        accounts: Vec::new(),
        include_rejected: false,
    };
    let mut s = server.client().await;
    let mut from_first = s
        .subscribe_transactions(subscribe(1))
        .await
        .unwrap()
        .into_inner();
    let mut live = s
        .subscribe_transactions(subscribe(0))
        .await
        .unwrap()
        .into_inner();
    let mut midway = None;
    for round in 0..10 {
        c.submit_batch_and_wait(deposit_batch(2, 500, committed))
            .await
            .unwrap();
        if round == 3 {
            midway = Some(
                s.subscribe_transactions(subscribe(2500))
                    .await
                    .unwrap()
                    .into_inner(),
            );
        }
    }
    let last = 6000;
    // And one from the start once nothing commits any more: its own reads, to the end.
    let mut idle = s
        .subscribe_transactions(subscribe(1))
        .await
        .unwrap()
        .into_inner();
    for (stream, first) in [
        (&mut from_first, 1),
        (&mut live, 1001),
        (midway.as_mut().unwrap(), 2500),
        (&mut idle, 1),
    ] {
        let (ids, _, next) = stream_until(stream, last + 1).await;
        assert_eq!(ids, (first..=last).collect::<Vec<u64>>());
        assert_eq!(next, last + 1);
    }
}

/// A graceful stop does not wait for clients that keep streams open: a SubmitBatchStream
/// whose client never closes its side and a change-stream subscriber both end with
/// UNAVAILABLE (or just end), and the server exits 0 with what it acknowledged durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &["--console-listen", "127.0.0.1:0"]);
    let mut c = server.client().await;
    // A console page's live stream, open across the stop too.
    let console = server.console.clone().unwrap();
    let mut live = std::net::TcpStream::connect(console.trim_start_matches("http://")).unwrap();
    live.write_all(b"GET /api/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: history") {
        let n = live.read(&mut buf).unwrap();
        assert!(n > 0, "the live stream ended before its history");
        seen.extend_from_slice(&buf[..n]);
    }
    let (batches, rx) = tokio::sync::mpsc::channel(4);
    batches
        .send(deposit_batch(1, 10, pb::WaitLevel::Committed))
        .await
        .unwrap();
    let mut answers = c
        .submit_batch_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    answers
        .message()
        .await
        .unwrap()
        .expect("the first batch's answer");
    let mut subscriber = c
        .subscribe_transactions(pb::SubscribeTransactionsRequest {
            from_tx_id: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    subscriber.message().await.unwrap().expect("a first batch");

    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGTERM);
    }
    let mut exited = None;
    for _ in 0..300 {
        exited = server.child.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exited = exited.expect("the server stops within 30 s with streams open");
    assert!(exited.success(), "{exited:?}");
    live.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    live.read_to_end(&mut rest).expect("the live stream ended");
    for end in [
        answers.message().await.map(|m| m.is_some()),
        subscriber.message().await.map(|m| m.is_some()),
    ] {
        assert!(
            matches!(&end, Ok(false)) || matches!(&end, Err(s) if s.code() == Code::Unavailable),
            "{end:?}"
        );
    }
    drop(batches);
    let server = Server::start(&data, &[]);
    let balance = server
        .client()
        .await
        .get_balance(pb::GetBalanceRequest {
            account_id: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(balance.balance, 10);
}
