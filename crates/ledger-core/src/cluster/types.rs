//! The cluster's openraft type configuration.

use std::io::Cursor;
use std::sync::Arc;

use crate::ledger::replica::EncodedFrame;

/// A node's id in the cluster (`--node-id`).
pub type NodeId = u64;

/// The payload of a normal entry of the replicated log: one leader batch's WAL frames
/// (results with balances after, never operations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frames(pub Arc<[EncodedFrame]>);

impl Frames {
    /// The ids of the first and last transaction, `None` for no frames.
    pub fn tx_range(&self) -> Option<(u64, u64)> {
        Some((self.0.first()?.first_tx_id, self.0.last()?.last_tx_id()))
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.0.iter().map(|f| f.payload.len()).sum()
    }
}

openraft::declare_raft_types!(
    /// The ledger's openraft types: `u64` node ids, nodes known by their gRPC address,
    /// [`Frames`] as the normal entries' payload.
    pub TypeConfig:
        D = Frames,
        R = (),
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// openraft's types for this configuration.
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<NodeId>;
