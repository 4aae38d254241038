//! Raft's incoming RPCs: `roda.ledger.cluster.v1.Raft`, served beside the ledger API on
//! the same port and behind the same tokens (a peer presents a peer token, or a write
//! token when the token file names no peer token: see [`crate::auth`]).

use std::sync::Arc;

use ledger_core::cluster::openraft::error::RaftError;
use tonic::{Request, Response, Status};

use super::convert;
use crate::auth::{self, Role};
use crate::backend::Node;
use crate::pb::cluster as pb;

/// Hands each RPC to the node's current Raft (a restarting node answers UNAVAILABLE,
/// which the sender backs off from).
#[derive(Debug, Clone)]
pub(crate) struct RaftService {
    pub node: Arc<Node>,
    /// What a caller must be to send Raft messages ([`crate::auth::Tokens::peer_role`]).
    pub needed: Role,
}

impl RaftService {
    fn raft(&self) -> Result<ledger_core::cluster::Raft, Status> {
        self.node
            .raft()
            .ok_or_else(|| Status::unavailable("the node is restarting"))
    }
}

fn stopped(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("the replicated log: {e}"))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        auth::require(&request, self.needed)?;
        let rpc = convert::append_request_from(request.into_inner())?;
        let reply = self.raft()?.append_entries(rpc).await.map_err(stopped)?;
        Ok(Response::new(convert::append_response_to(&reply)))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        auth::require(&request, self.needed)?;
        let rpc = convert::vote_request_from(request.into_inner())?;
        let reply = self.raft()?.vote(rpc).await.map_err(stopped)?;
        Ok(Response::new(convert::vote_response_to(&reply)))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::InstallSnapshotResponse>, Status> {
        auth::require(&request, self.needed)?;
        let rpc = convert::install_request_from(request.into_inner())?;
        // A chunk out of order is the sender's to handle (it starts over): an answer, not
        // a failed call.
        let reply = match self.raft()?.install_snapshot(rpc).await {
            Ok(reply) => Ok(reply),
            Err(RaftError::APIError(e)) => Err(e),
            Err(e @ RaftError::Fatal(_)) => return Err(stopped(e)),
        };
        Ok(Response::new(convert::install_response_to(&reply)))
    }
}
