//! The change-stream sink (`--cdc-nats-url`) against a real NATS server with JetStream
//! (Debian's `nats-server`, installed by `.ci/run`): the ledger and the broker are killed
//! with SIGKILL under load, and the stream must end up with every committed transaction
//! exactly once, in id order, each as `GetTransaction` shows it.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use common::{Server, ensure_tool, metric, metrics_page};
use ledger_server::pb;
use prost::Message as _;

/// A `nats-server -js` child process on a fixed port, its JetStream store in `store`.
struct Nats {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl Nats {
    fn start(store: &Path, port: u16) -> Nats {
        ensure_tool("nats-server", "nats-server");
        let mut child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on the PATH (apt-get install nats-server; .ci/run does)");
        // Ready once it accepts connections.
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Nats {
                    child,
                    port,
                    store: store.to_owned(),
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nats-server did not listen on port {port} within 10 s");
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, then a new process on the same port and store.
    fn kill_9_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        *self = Nats::start(&self.store, self.port);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now (the OS's next ephemeral one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` deposits, every tenth operation a withdrawal no account can pay (a rejection,
/// which the sink leaves out by default), in batches, each committed before the next.
async fn load(server: &Server, round: u64, n: u64) {
    let mut client = server.client().await;
    let op = |i: u64| {
        let account = 1 + (round * 7 + i) % 50;
        let operation = if i % 10 == 9 {
            pb::submit_and_wait_request::Operation::Withdrawal(pb::Withdrawal {
                account,
                amount: u64::MAX / 2,
                user_ref: 0,
            })
        } else {
            pb::submit_and_wait_request::Operation::Deposit(pb::Deposit {
                account,
                amount: 1 + i,
                user_ref: 0,
            })
        };
        pb::SubmitAndWaitRequest {
            operation: Some(operation),
            wait_level: pb::WaitLevel::Processed.into(),
        }
    };
    for batch in 0..n / 250 {
        let request = pb::SubmitBatchAndWaitRequest {
            operations: (0..250).map(|i| op(batch * 250 + i)).collect(),
            wait_level: pb::WaitLevel::Committed.into(),
        };
        client.submit_batch_and_wait(request).await.unwrap();
    }
}

/// Waits until the sink reports every committed transaction acknowledged; returns the
/// committed index.
async fn until_published(server: &Server) -> u64 {
    for _ in 0..600 {
        let page = metrics_page(server);
        let committed = metric(&page, "ledger_committed_index").unwrap();
        let acked = metric(&page, "ledger_cdc_acked_tx_id").unwrap();
        if committed > 0.0 && acked == committed {
            assert_eq!(metric(&page, "ledger_cdc_lag_transactions"), Some(0.0));
            return committed as u64;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the sink did not catch up within 60 s: {}",
        metrics_page(server)
    );
}

/// Every committed transaction up to `last`, rejections left out, from the server's own
/// change stream.
async fn committed_transactions(server: &Server, last: u64) -> Vec<pb::GetTransactionResponse> {
    let mut client = server.client().await;
    let mut stream = client
        .subscribe_transactions(pb::SubscribeTransactionsRequest {
            from_tx_id: 1,
            accounts: Vec::new(),
            include_rejected: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut transactions = Vec::new();
    let mut next = 1;
    while next <= last {
        let batch = stream.message().await.unwrap().expect("the stream goes on");
        next = batch.next_tx_id;
        transactions.extend(batch.transactions);
    }
    transactions.retain(|t| t.tx_id <= last);
    transactions
}

/// Every message of the stream, in stream order: (its `Nats-Msg-Id`, its payload).
async fn stream_messages(url: &str, name: &str) -> Vec<(u64, pb::GetTransactionResponse)> {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(name).await.unwrap();
    let info = stream.info().await.unwrap();
    // The stream the sink created, with its short duplicate window (the default).
    assert_eq!(
        info.config.duplicate_window,
        std::time::Duration::from_secs(2)
    );
    let state = info.state.clone();
    assert_eq!(
        state.messages,
        state.last_sequence - state.first_sequence + 1
    );
    let mut messages = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let id = message.headers.get(NATS_MESSAGE_ID).unwrap().as_str();
        let transaction = pb::GetTransactionResponse::decode(message.payload).unwrap();
        messages.push((id.parse().unwrap(), transaction));
    }
    messages
}

/// Kill -9 of the ledger while the sink publishes, kill -9 of the broker while the
/// ledger commits: the stream holds every committed transaction once, in id order, with
/// its id as the message id, and not the rejections; the lag metric comes back to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_publishes_every_committed_transaction_once_across_kill_9s() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut nats = Nats::start(&dir.path().join("nats"), free_port());
    let url = nats.url();
    let args = [
        "--metrics-addr",
        "127.0.0.1:0",
        "--cdc-nats-url",
        &url,
        "--cdc-stream",
        "TEST",
    ];

    let mut server = Server::start(&data, &args);
    load(&server, 1, 5_000).await;
    // Most of it is likely still unpublished or unacknowledged now.
    server.signal(libc::SIGKILL);
    let server = Server::start(&data, &args);
    load(&server, 2, 2_500).await;
    nats.kill_9_and_restart();
    load(&server, 3, 2_500).await;
    // Down while the ledger commits: the sink retries until it is back.
    nats.child.kill().unwrap();
    nats.child.wait().unwrap();
    load(&server, 4, 2_500).await;
    nats.kill_9_and_restart();
    load(&server, 5, 2_500).await;

    let last = until_published(&server).await;
    assert_eq!(last, 15_000);
    let expected = committed_transactions(&server, last).await;
    assert_eq!(expected.len(), 13_500, "one in ten is a rejection");
    let published = stream_messages(&url, "TEST").await;
    let ids: Vec<u64> = published.iter().map(|(id, _)| *id).collect();
    let expected_ids: Vec<u64> = expected.iter().map(|t| t.tx_id).collect();
    assert_eq!(ids.len(), expected_ids.len(), "each transaction once");
    assert_eq!(ids, expected_ids, "in id order, rejections left out");
    for ((id, message), transaction) in published.iter().zip(&expected) {
        assert_eq!(message.tx_id, *id);
        assert_eq!(
            message, transaction,
            "the payload is what GetTransaction shows"
        );
    }
}
