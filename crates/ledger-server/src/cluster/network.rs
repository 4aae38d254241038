//! Raft's outgoing RPCs: one lazily connected gRPC channel per peer, to the address the
//! peer serves on (its membership entry), carrying this node's peer token if the
//! cluster uses tokens, and this node's [`SharedRules`] (header [`RULES_HEADER`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ledger_core::cluster::openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use ledger_core::cluster::openraft::network::RPCOption;
use ledger_core::cluster::openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use ledger_core::cluster::openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use ledger_core::cluster::{NodeId, SharedRules, TypeConfig};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use super::convert;
use crate::pb::cluster::raft_client::RaftClient;

/// The header every Raft message carries this node's [`SharedRules`] in.
pub const RULES_HEADER: &str = "x-ledger-rules";
/// How a node's refusal of another's rules begins (`FAILED_PRECONDITION`).
pub const RULES_REFUSED: &str = "the sender's settings differ from this node's";

/// Creates one [`Peer`] per target node.
#[derive(Clone, Debug)]
pub struct GrpcNetwork {
    token: Option<MetadataValue<Ascii>>,
    rules: MetadataValue<Ascii>,
    max_message_bytes: usize,
    /// The address outgoing connections come from: the node's listen address when it
    /// names one, so a peer (or a test's proxy) can tell the nodes apart by address.
    local_ip: Option<IpAddr>,
    /// The CA (PEM) peers' certificates chain to, when the cluster speaks TLS.
    tls_ca: Option<Vec<u8>>,
}

impl GrpcNetwork {
    pub fn new(
        token: Option<String>,
        rules: &SharedRules,
        max_message_bytes: usize,
        listen: SocketAddr,
    ) -> Result<GrpcNetwork, String> {
        let token = token
            .map(|t| format!("Bearer {t}").parse())
            .transpose()
            .map_err(|_| "the peer token is not printable ASCII".to_owned())?;
        let rules = rules
            .to_wire()
            .parse()
            .map_err(|_| "the rules are not ASCII")?;
        Ok(GrpcNetwork {
            token,
            rules,
            max_message_bytes,
            local_ip: (!listen.ip().is_unspecified()).then(|| listen.ip()),
            tls_ca: None,
        })
    }

    /// Dials peers over TLS, trusting certificates that chain to `ca_pem` (each peer is
    /// checked against the host of its address).
    #[must_use]
    pub fn with_tls(mut self, ca_pem: Vec<u8>) -> GrpcNetwork {
        self.tls_ca = Some(ca_pem);
        self
    }

    fn endpoint(&self, target: NodeId, addr: &str) -> Result<Endpoint, String> {
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("node {target} at {addr}: {e}"))?;
        if let Some(ca) = &self.tls_ca {
            let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("node {target} at {addr}: TLS: {e}"))?;
        }
        Ok(endpoint)
    }
}

/// The RPCs to one peer.
#[derive(Debug)]
pub struct Peer {
    target: NodeId,
    client: Result<RaftClient<Channel>, String>,
    token: Option<MetadataValue<Ascii>>,
    rules: MetadataValue<Ascii>,
    /// The peer refused this node's rules, and it was logged.
    refused_rules: AtomicBool,
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        let client = self.endpoint(target, &node.addr).map(|e| {
            let channel = e
                .local_address(self.local_ip)
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .connect_lazy();
            RaftClient::new(channel)
                .max_decoding_message_size(self.max_message_bytes)
                .max_encoding_message_size(self.max_message_bytes)
        });
        Peer {
            target,
            client,
            token: self.token.clone(),
            rules: self.rules.clone(),
            refused_rules: AtomicBool::new(false),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("node {target}: {message}")]
struct PeerError {
    target: NodeId,
    message: String,
}

impl Peer {
    fn request<T>(&self, message: T, option: &RPCOption) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(option.hard_ttl());
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        request
            .metadata_mut()
            .insert(RULES_HEADER, self.rules.clone());
        request
    }

    fn client(&self) -> Result<RaftClient<Channel>, PeerError> {
        self.client.clone().map_err(|message| PeerError {
            target: self.target,
            message,
        })
    }

    /// An unreachable peer (backed off by openraft) or a failed call.
    fn error<E: std::error::Error>(&self, status: &Status) -> RPCError<NodeId, BasicNode, E> {
        let e = PeerError {
            target: self.target,
            message: status.to_string(),
        };
        // Retried by Raft as long as it lasts: said once, loudly (openraft also logs each
        // failed call, at its own level).
        if status.code() == Code::FailedPrecondition
            && status.message().contains(RULES_REFUSED)
            && !self.refused_rules.swap(true, Ordering::Relaxed)
        {
            tracing::error!(peer = self.target, error = %status.message(), "a peer refuses this node's messages");
        }
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
            _ => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

type Rpc<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, BasicNode, E>>;

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        let mut client = self
            .client()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let request = self.request(convert::append_request_to(&rpc), &option);
        let reply = client
            .append_entries(request)
            .await
            .map_err(|s| self.error(&s))?;
        convert::append_response_from(reply.into_inner()).map_err(|s| self.error(&s))
    }

    /// One chunk of a snapshot (openraft sends them in order, up to
    /// `snapshot_max_chunk_size` each: within the Raft message limit). A chunk the peer
    /// did not expect comes back as its `SnapshotMismatch`, and openraft starts over.
    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let mut client = self
            .client()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let request = self.request(convert::install_request_to(rpc), &option);
        let reply = client
            .install_snapshot(request)
            .await
            .map_err(|s| self.error(&s))?;
        convert::install_response_from(reply.into_inner())
            .map_err(|s| self.error(&s))?
            .map_err(|e| {
                RPCError::RemoteError(RemoteError::new(self.target, RaftError::APIError(e)))
            })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        let mut client = self
            .client()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let request = self.request(convert::vote_request_to(&rpc), &option);
        let reply = client.vote(request).await.map_err(|s| self.error(&s))?;
        convert::vote_response_from(reply.into_inner()).map_err(|s| self.error(&s))
    }
}
