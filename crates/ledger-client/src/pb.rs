//! The messages and the client of `proto/ledger.proto`, generated at build time (prost's
//! codec). `ledger-server` generates its server over these same types.
#![allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]

tonic::include_proto!("roda.ledger.v1");
