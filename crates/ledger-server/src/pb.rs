//! The messages and service of `proto/ledger.proto`: the messages and the client are
//! `ledger_client::pb`'s (re-exported), the server is generated here at build time.
#![allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]

// `::`: the glob brings a module named `ledger_client` (the generated client) too.
pub use ::ledger_client::pb::*;

// `ledger_server`, over the messages above (see build.rs).
tonic::include_proto!("roda.ledger.v1");

/// The encoded descriptor set of `ledger.proto`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ledger_descriptor.bin"));

/// `proto/raft.proto`: the Raft RPCs between cluster nodes (server and client).
pub mod cluster {
    tonic::include_proto!("roda.ledger.cluster.v1");
}
