//! Raft's incoming RPCs: `roda.ledger.cluster.v1.Raft`, served beside the ledger API on
//! the same port and behind the same tokens (a peer presents a peer token, or a write
//! token when the token file names no peer token: see [`crate::auth`]). A message from a
//! node whose [`SharedRules`] differ from this node's is refused (FAILED_PRECONDITION,
//! naming the difference): the two would decide differently once leader.

use std::sync::{Arc, Mutex};

use ledger_core::cluster::SharedRules;
use ledger_core::cluster::openraft::error::RaftError;
use tonic::{Request, Response, Status};

use super::convert;
use super::network::{RULES_HEADER, RULES_REFUSED};
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
    pub rules: Arc<SharedRules>,
    /// The last refused rules that were logged (one line per sender's setting, not one
    /// per heartbeat).
    pub refused: Arc<Mutex<Option<String>>>,
}

impl RaftService {
    /// Refuses a message whose sender runs with other rules (a sender that names none,
    /// of a version before the check, is heard).
    fn check_rules<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(theirs) = request.metadata().get(RULES_HEADER) else {
            return Ok(());
        };
        let theirs = theirs.to_str().unwrap_or_default();
        let Some(difference) = self.rules.difference(theirs) else {
            return Ok(());
        };
        let message = format!(
            "{RULES_REFUSED} ({difference}): every node of a cluster needs the same \
             --max-accounts, --dedup-window-secs and --closed-hold-retention-secs"
        );
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if refused.as_deref() != Some(theirs) {
            tracing::error!(%message, "refused a Raft message");
            *refused = Some(theirs.to_owned());
        }
        Err(Status::failed_precondition(message))
    }

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
        self.check_rules(&request)?;
        let rpc = convert::append_request_from(request.into_inner())?;
        let reply = self.raft()?.append_entries(rpc).await.map_err(stopped)?;
        Ok(Response::new(convert::append_response_to(&reply)))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        auth::require(&request, self.needed)?;
        self.check_rules(&request)?;
        let rpc = convert::vote_request_from(request.into_inner())?;
        let reply = self.raft()?.vote(rpc).await.map_err(stopped)?;
        Ok(Response::new(convert::vote_response_to(&reply)))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::InstallSnapshotResponse>, Status> {
        auth::require(&request, self.needed)?;
        self.check_rules(&request)?;
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
