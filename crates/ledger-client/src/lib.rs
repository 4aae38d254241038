//! `ledger-client`: talk to `ledger-server` (the `roda.ledger.v1.Ledger` gRPC API of
//! `proto/ledger.proto`) without depending on the server.
//!
//! - [`pb`]: the generated messages and the raw generated client,
//!   [`pb::ledger_client::LedgerClient`]. The server uses these same message types.
//! - [`ConnectOptions`]: addresses, TLS, bearer token, timeouts, retry budget.
//! - [`Client`]: a cheap-to-clone handle that sends each call to the current leader and
//!   retries where that is safe; one typed method per unary RPC, [`Client::call`] for
//!   anything else (streams).
//!
//! ```no_run
//! # async fn example() -> Result<(), ledger_client::Error> {
//! use ledger_client::{Client, ConnectOptions, pb};
//!
//! let client = Client::new(ConnectOptions::new(["10.0.0.1:50051", "10.0.0.2:50051"]))?;
//! let balance = client
//!     .get_balance(pb::GetBalanceRequest { account_id: 1, ..Default::default() })
//!     .await?;
//! println!("{}", balance.balance);
//! # Ok(())
//! # }
//! ```
//!
//! # Leader following and retries
//!
//! A call goes to the *current address*: the first endpoint at first, later the leader the
//! servers named. When it fails, what happens next depends on how it failed:
//!
//! | the call ended with | executed? | next |
//! |---|---|---|
//! | `FAILED_PRECONDITION` or `UNAVAILABLE` with `x-ledger-leader-addr` metadata | no (a refusal) | the named leader becomes the current address; the call goes there |
//! | `UNAVAILABLE` without a leader address (an election, a stopped node) | no (a refusal) | the next endpoint, round-robin, after a backoff |
//! | no connection could be made | no (never sent) | the next endpoint, after a backoff |
//! | the connection broke or the call timed out | unknown | the next endpoint after a backoff, **only if the call is idempotent**; else the error is returned |
//! | any other status (an answer) | - | returned; `FAILED_PRECONDITION` without a leader address is an answer too (e.g. a transaction not yet durable) |
//!
//! A call is *idempotent* when sending it twice cannot commit twice: every read, and a
//! submission ([`Client::submit_operation`], [`Client::submit_and_wait`], the batch
//! submissions) whose operations all carry a nonzero `user_ref`, which the server
//! deduplicates. A write with `user_ref` 0 is retried only when the failure proves it did
//! not execute (the first three rows).
//!
//! The backoff starts at 50 ms and doubles up to 250 ms; the first redirect of a call is
//! followed at once, later ones wait like any retry (two nodes naming each other during
//! an election do not spin). A call starts no new attempt that would begin after
//! [`ConnectOptions::retry_budget`] (default 5 s) from its start, nor more than
//! [`ATTEMPTS_MAX`] attempts; it then returns the last error. Each attempt is bounded by
//! [`ConnectOptions::timeout`], so a call returns within about `retry_budget + timeout`.
//!
//! The server contract this relies on: a node that is not the leader refuses a request
//! with `FAILED_PRECONDITION` and `x-ledger-leader-id` (decimal) plus
//! `x-ledger-leader-addr` (`host:port`) in the response metadata, or with `UNAVAILABLE`
//! when it knows no leader; in both cases it executed nothing.

mod client;
mod error;
mod options;
pub mod pb;
mod rpc;

pub use client::{ATTEMPTS_MAX, Client, Stub};
pub use error::{Error, source_chain};
pub use options::{Auth, ConnectOptions};
/// The gRPC types a caller of the streaming methods handles (a stream, its end status).
pub use tonic::{Code, Status, Streaming};
