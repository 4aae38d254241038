//! The cluster mode (feature `cluster`): ledger nodes replicating one log with Raft
//! (openraft). The replicated log *is* the WAL: each entry is a header frame and the
//! leader's records frames (results, never operations), so a follower never executes an
//! operation and never disagrees with the leader. See `docs/consistency.md`.
//!
//! - [`ClusterNode`]: one node: the engine in replica mode, the log store, Raft, and the
//!   role changes. Reads on any node; writes on the leader.
//! - The network is the embedder's: an [`openraft::RaftNetworkFactory`] of
//!   [`TypeConfig`] (the server sends the Raft RPCs over its own gRPC port).
//! - [`SharedRules`]: the settings every node must share, for the network to check.

mod entry_format;
mod log_store;
mod node;
mod raft_snapshot;
mod rules;
mod state_machine;
mod types;
mod wire;

pub use entry_format::ENTRY_HEADER_KIND;
pub use node::{ClusterConfig, ClusterError, ClusterNode, MembershipError, NodeStatus, Role};
/// The Raft library, for implementing the network and its RPC messages.
pub use openraft;
pub use rules::SharedRules;
pub use types::{Entry, Frames, LogId, Membership, NodeId, Raft, TypeConfig, Vote};

pub use crate::ledger::replica::EncodedFrame;
pub use wire::{
    WireError, entry_from_wire, entry_header, snapshot_meta_from_wire, snapshot_meta_to_wire,
};
