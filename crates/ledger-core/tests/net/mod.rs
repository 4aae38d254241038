//! An in-memory network for cluster tests: delivers Raft RPCs by calling the target
//! node's Raft handle; a cut link (either direction of a call) is unreachable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use ledger_core::cluster::openraft::error::{
    InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable,
};
use ledger_core::cluster::openraft::network::RPCOption;
use ledger_core::cluster::openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use ledger_core::cluster::openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use ledger_core::cluster::{ClusterNode, NodeId, TypeConfig};

pub type Node = ClusterNode<Router>;

/// Delivers RPCs by calling the target node's Raft handle; a cut link is unreachable.
#[derive(Clone, Default)]
pub struct Router {
    pub nodes: Arc<Mutex<BTreeMap<NodeId, Arc<Node>>>>,
    cut: Arc<Mutex<BTreeSet<(NodeId, NodeId)>>>,
    from: NodeId,
}

#[derive(Debug, thiserror::Error)]
#[error("link {0} -> {1} is down")]
struct LinkDown(NodeId, NodeId);

impl Router {
    pub fn for_node(&self, from: NodeId) -> Router {
        Router {
            from,
            ..self.clone()
        }
    }

    fn target(&self, to: NodeId) -> Result<ledger_core::cluster::Raft, Unreachable> {
        let down = Unreachable::new(&LinkDown(self.from, to));
        if self.cut.lock().unwrap().contains(&(self.from, to)) {
            return Err(down);
        }
        let node = self.nodes.lock().unwrap().get(&to).cloned().ok_or(down)?;
        node.raft()
            .ok_or_else(|| Unreachable::new(&LinkDown(self.from, to)))
    }

    /// Cuts every link between `node` and the others, both ways.
    pub fn isolate(&self, node: NodeId, others: &[NodeId]) {
        let mut cut = self.cut.lock().unwrap();
        for &o in others {
            cut.insert((node, o));
            cut.insert((o, node));
        }
    }

    pub fn heal(&self) {
        self.cut.lock().unwrap().clear();
    }
}

pub struct Link {
    router: Router,
    to: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Link;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Link {
        Link {
            router: self.clone(),
            to: target,
        }
    }
}

type Rpc<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, BasicNode, E>>;

impl RaftNetwork<TypeConfig> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        let raft = self.router.target(self.to)?;
        let reply = raft
            .append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)));
        // The reply crosses the same link back.
        self.router.target(self.to)?;
        reply
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let raft = self.router.target(self.to)?;
        let reply = raft
            .install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)));
        self.router.target(self.to)?;
        reply
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        let raft = self.router.target(self.to)?;
        let reply = raft
            .vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)));
        self.router.target(self.to)?;
        reply
    }
}

/// Submits `ops` and waits (at most 30 s: a test must fail, not hang, when replication
/// stops) until they are replicated; their results.
pub fn replicate(
    ledger: &ledger_core::ledger::Ledger,
    ops: Vec<ledger_core::transaction::Operation>,
) -> Result<Vec<ledger_core::transaction::SubmitResult>, ledger_core::ledger::LedgerError> {
    use ledger_core::transaction::{SubmitResult, WaitLevel};
    let ids = ledger.try_submit_batch(ops)?;
    let last = *ids.last().expect("a batch of at least one operation");
    ledger.try_wait_for_timeout(
        last,
        WaitLevel::Replicated,
        std::time::Duration::from_secs(30),
    )?;
    ids.into_iter()
        .map(|id| Ok(SubmitResult::new(id, ledger.try_outcome(id)?)))
        .collect()
}
