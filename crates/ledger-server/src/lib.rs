//! `ledger-server`: the `roda.ledger.v1.Ledger` gRPC API (`proto/ledger.proto`) over an
//! embedded [`ledger_core::ledger::Ledger`], with health, reflection, bearer tokens, TLS,
//! Prometheus metrics and graceful shutdown.
//!
//! - [`pb`]: the messages and client (`ledger_client::pb`, re-exported) and the generated
//!   server.
//! - `codec` (private): the server's decoding; an undecodable request is INVALID_ARGUMENT.
//! - [`convert`]: wire messages <-> ledger operations and results (shape checks).
//! - [`errors`]: the one mapping from `LedgerError` to gRPC status.
//! - `service` (private): the service itself, only ever served behind the token
//!   interceptor: [`serve::serve`] is the way to embed it.
//! - `health` (private): `grpc.health.v1.Health` following the ledger's state.
//! - `batch_wire` (private): change-stream batches and messages written straight into
//!   protobuf bytes.
//! - [`cdc`]: the change stream's sink into NATS JetStream (`--cdc-nats-url`).
//! - `console` (private): the web console (`--console-listen`), over the service.
//! - [`auth`], [`metrics`], [`settings`], [`serve`]: security, observability,
//!   configuration and the process lifecycle.

pub mod auth;
mod backend;
mod batch_wire;
pub mod cdc;
pub mod cluster;
mod codec;
mod console;
pub mod convert;
pub mod errors;
mod feed;
mod health;
pub mod metrics;
pub mod pb;
pub mod serve;
mod service;
pub mod settings;
mod subscribe;
