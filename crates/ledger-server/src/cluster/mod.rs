//! The server as a cluster node (`--node-id`, `--peers`): Raft's RPCs in and out over
//! the node's own gRPC port, and the conversions between openraft's messages and
//! `proto/raft.proto`.

mod convert;
mod network;
mod service;

pub use network::GrpcNetwork;
pub(crate) use service::RaftService;
