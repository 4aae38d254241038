//! Where the service's ledger comes from: one embedded engine, or a cluster node, whose
//! engine is replaced when the node restarts after a lost leadership (so the service
//! takes it per request, never keeps it).

use std::sync::Arc;

use ledger_core::cluster::ClusterNode;
use ledger_core::ledger::{Ledger, LedgerError};
use tonic::Status;
use tonic::metadata::MetadataValue;

use crate::cluster::GrpcNetwork;

/// A cluster node as the server runs it.
pub type Node = ClusterNode<GrpcNetwork>;

/// Metadata of a refused write: the leader to send it to.
pub const LEADER_ID_KEY: &str = "x-ledger-leader-id";
pub const LEADER_ADDR_KEY: &str = "x-ledger-leader-addr";

#[derive(Clone, Debug)]
pub enum Backend {
    Single(Arc<Ledger>),
    Cluster(Arc<Node>),
}

impl Backend {
    /// The ledger to serve this request with.
    ///
    /// # Errors
    /// [`LedgerError::Stopped`] while a cluster node restarts.
    pub fn ledger(&self) -> Result<Arc<Ledger>, LedgerError> {
        match self {
            Backend::Single(ledger) => Ok(Arc::clone(ledger)),
            Backend::Cluster(node) => node.ledger(),
        }
    }

    pub fn node(&self) -> Option<&Arc<Node>> {
        match self {
            Backend::Single(_) => None,
            Backend::Cluster(node) => Some(node),
        }
    }

    /// A write refused by a node that does not lead: FAILED_PRECONDITION naming the
    /// leader (id and address in the metadata), or UNAVAILABLE while none is known (an
    /// election).
    pub fn not_leader(&self) -> Status {
        let node = self.node();
        let leader = node.and_then(|n| n.leader());
        match leader {
            Some((id, _)) if node.is_some_and(|n| n.id() == id) => {
                Status::unavailable("this node is taking over as leader: retry shortly")
            }
            Some((id, addr)) => {
                let mut status = Status::failed_precondition(format!(
                    "this node does not lead the cluster: send writes to node {id} at {addr}"
                ));
                let metadata = status.metadata_mut();
                metadata.insert(LEADER_ID_KEY, MetadataValue::from(id));
                if let Ok(addr) = addr.parse() {
                    metadata.insert(LEADER_ADDR_KEY, addr);
                }
                status
            }
            None => Status::unavailable("the cluster is electing a leader: retry shortly"),
        }
    }
}
