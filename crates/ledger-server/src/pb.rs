//! The messages and service of `proto/ledger.proto`, generated at build time.
#![allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]

// The messages and `ledger_server`.
tonic::include_proto!("roda.ledger.v1");
// `ledger_client` (generated apart: it keeps prost's codec; see build.rs).
include!(concat!(env!("OUT_DIR"), "/client/roda.ledger.v1.rs"));

/// The encoded descriptor set of `ledger.proto`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ledger_descriptor.bin"));

/// `proto/raft.proto`: the Raft RPCs between cluster nodes (server and client).
pub mod cluster {
    tonic::include_proto!("roda.ledger.cluster.v1");
}
