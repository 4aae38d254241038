//! Real-process cluster tests: N `ledger-server` processes forming one Raft cluster on
//! loopback, killed with SIGKILL and restarted, their links cut or delayed through a
//! [`Proxy`](crate::proxy::Proxy), their logs and balances compared.
//!
//! Node `id` listens on `127.0.0.<id+1>:<port>` (its outgoing peer connections come from
//! that IP too, which is how the proxy tells the nodes apart); `--peers` names either
//! those addresses or, with the proxy, the proxy's listener for each node.
//!
//! - [`load`]: idempotent writes through `ledger_client::Client` at `REPLICATED`,
//!   every acknowledgement recorded;
//! - [`checks`]: over gRPC: every acknowledgement on every node, the same balances;
//! - [`wal`]: offline, on stopped nodes: one log (the same record for every id), gap-free;
//! - [`scenario`]: the runs the `cluster-failover` binary and `tests/cluster.rs` make.

pub mod checks;
pub mod load;
pub mod scenario;
pub mod wal;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use ledger_client::{Client, ConnectOptions, pb};

use crate::crash::ServerProcess;
use crate::proxy::{Proxy, node_ip};

/// Bounds every wait on the cluster: a hang fails a check instead of the run.
pub const PATIENCE: Duration = Duration::from_secs(60);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(20);
/// A status call that takes longer than this counts as "no answer".
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// A clean stop that takes longer is finished with SIGKILL.
const STOP_PATIENCE: Duration = Duration::from_secs(20);

/// Every node's settings beyond identity, address and data directory. The idempotency
/// window is wide enough for every retry a run makes (the default is 10 s).
pub const NODE_ARGS: &[&str] = &[
    "--max-accounts",
    "1000",
    "--dedup-window-secs",
    "120",
    "--log",
    "warn",
];

/// How to lay the cluster out.
#[derive(Clone, Debug)]
pub struct Options {
    /// Nodes `1..=nodes`.
    pub nodes: u64,
    /// Node-to-node traffic through a [`Proxy`].
    pub proxy: bool,
    /// Server flags beyond [`NODE_ARGS`].
    pub extra_args: Vec<String>,
    /// One node's flags beyond those (a node set up unlike the others).
    pub node_args: BTreeMap<u64, Vec<String>>,
}

impl Options {
    pub fn new(nodes: u64, proxy: bool) -> Options {
        Options {
            nodes,
            proxy,
            extra_args: Vec::new(),
            node_args: BTreeMap::new(),
        }
    }
}

/// One node: its addresses, directory and process (if running).
#[derive(Debug)]
pub struct Node {
    pub id: u64,
    /// Where the server listens.
    pub listen: SocketAddr,
    /// What `--peers` names it by (the proxy's listener, or `listen`).
    pub advertised: SocketAddr,
    root: PathBuf,
    process: Option<ServerProcess>,
    /// Status calls, straight to `listen`, never retried.
    status: Client,
    /// Started with `--join true`: added to the running cluster, never forming one.
    join: bool,
}

impl Node {
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }
}

/// A cluster of `ledger-server` processes; every process is killed when it is dropped.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    nodes: BTreeMap<u64, Node>,
    peers: String,
    extra_args: Vec<String>,
    node_args: BTreeMap<u64, Vec<String>>,
    pub proxy: Option<Proxy>,
    /// Where the nodes' directories are.
    root: PathBuf,
}

/// A free port on `ip` (bound, then released: nothing else on this machine binds the
/// nodes' own loopback IPs).
fn free_port(ip: Ipv4Addr) -> Result<u16, String> {
    let listener = std::net::TcpListener::bind((ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn status_client(addr: SocketAddr) -> Result<Client, String> {
    Client::new(ConnectOptions {
        timeout: STATUS_TIMEOUT,
        retry_budget: Duration::ZERO,
        ..ConnectOptions::new([addr.to_string()])
    })
    .map_err(|e| e.to_string())
}

impl Cluster {
    /// Lays out and starts the nodes under `root` (node `id` in `root/n<id>`); returns
    /// once every process listens (see [`Cluster::wait_leader`] for a leader).
    pub async fn start(bin: PathBuf, root: &Path, options: &Options) -> Result<Cluster, String> {
        let mut listen = BTreeMap::new();
        for id in 1..=options.nodes {
            let ip = node_ip(id);
            listen.insert(id, SocketAddr::from((ip, free_port(ip)?)));
        }
        let proxy = if options.proxy {
            Some(Proxy::start(&listen).await?)
        } else {
            None
        };
        let mut nodes = BTreeMap::new();
        for (&id, &addr) in &listen {
            let advertised = proxy.as_ref().and_then(|p| p.addr(id)).unwrap_or(addr);
            let root = root.join(format!("n{id}"));
            std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
            nodes.insert(
                id,
                Node {
                    id,
                    listen: addr,
                    advertised,
                    root,
                    process: None,
                    status: status_client(addr)?,
                    join: false,
                },
            );
        }
        let peers = nodes
            .values()
            .map(|n| format!("{}={}", n.id, n.advertised))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            bin,
            nodes,
            peers,
            extra_args: options.extra_args.clone(),
            node_args: options.node_args.clone(),
            proxy,
            root: root.to_path_buf(),
        };
        for id in cluster.ids() {
            cluster.spawn(id)?;
        }
        for id in cluster.ids() {
            cluster.wait_listening(id).await?;
        }
        Ok(cluster)
    }

    /// Every node's id.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The ids of the nodes whose process runs.
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.process.is_some())
            .map(|n| n.id)
            .collect()
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[&id]
    }

    /// Every node's listen address (a client straight to the nodes).
    pub fn direct_addrs(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.listen.to_string()).collect()
    }

    /// Every node's address as `--peers` names it (through the proxy, if there is one).
    pub fn advertised_addrs(&self) -> Vec<String> {
        self.nodes
            .values()
            .map(|n| n.advertised.to_string())
            .collect()
    }

    /// Both addresses of node `id` (what a client may name it by).
    pub fn addrs_of(&self, id: u64) -> Vec<String> {
        let n = self.node(id);
        vec![n.listen.to_string(), n.advertised.to_string()]
    }

    /// Lays out node `id` (in `root/n<id>`, on `127.0.0.<id+1>`) and starts it with
    /// `--join true` and the same settings as the others: it waits, a member of no
    /// cluster, until [`Cluster::add_member`] adds it. Returns once it listens. The
    /// others dial it directly, never through the proxy.
    pub async fn start_joining(&mut self, id: u64) -> Result<(), String> {
        if self.nodes.contains_key(&id) {
            return Err(format!("node {id} is already laid out"));
        }
        let ip = node_ip(id);
        let listen = SocketAddr::from((ip, free_port(ip)?));
        let root = self.root.join(format!("n{id}"));
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        self.nodes.insert(
            id,
            Node {
                id,
                listen,
                advertised: listen,
                root,
                process: None,
                status: status_client(listen)?,
                join: true,
            },
        );
        self.spawn(id)?;
        self.wait_listening(id).await
    }

    /// Adds node `id` (started with [`Cluster::start_joining`]) through the leader's
    /// `AddNode`, which returns once the node caught up and votes; returns the voters
    /// then. Waits up to [`PATIENCE`].
    pub async fn add_member(&self, id: u64) -> Result<Vec<u64>, String> {
        let client = Client::new(ConnectOptions {
            timeout: PATIENCE,
            retry_budget: PATIENCE,
            ..ConnectOptions::new(self.direct_addrs())
        })
        .map_err(|e| e.to_string())?;
        let added = client.add_node(pb::AddNodeRequest {
            node_id: id,
            address: self.node(id).advertised.to_string(),
        });
        let members = tokio::time::timeout(PATIENCE, added)
            .await
            .map_err(|_| format!("AddNode({id}) did not return within {PATIENCE:?}"))?
            .map_err(|e| format!("AddNode({id}): {e}"))?;
        Ok(members.members.iter().map(|m| m.node_id).collect())
    }

    /// Starts node `id`'s process (not waiting for it).
    fn spawn(&mut self, id: u64) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).ok_or("no such node")?;
        if node.process.is_some() {
            return Err(format!("node {id} is already running"));
        }
        let mut args: Vec<std::ffi::OsString> = vec![
            "--node-id".into(),
            id.to_string().into(),
            "--peers".into(),
            self.peers.clone().into(),
            "--listen".into(),
            node.listen.to_string().into(),
            "--data-dir".into(),
            node.data_dir().into(),
        ];
        if node.join {
            args.extend(["--join".into(), "true".into()]);
        }
        args.extend(NODE_ARGS.iter().map(Into::into));
        args.extend(self.extra_args.iter().map(Into::into));
        let own = self.node_args.get(&id).into_iter().flatten();
        args.extend(own.map(Into::into));
        node.process = Some(ServerProcess::spawn_with(
            &self.bin,
            &args,
            &node.log_path(),
        )?);
        Ok(())
    }

    async fn wait_listening(&mut self, id: u64) -> Result<(), String> {
        let node = self.nodes.get_mut(&id).ok_or("no such node")?;
        let process = node.process.as_mut().ok_or("not running")?;
        tokio::task::block_in_place(|| process.wait_listening())
            .map(|_| ())
            .map_err(|e| format!("node {id}: {e}\n{}", self.log_tail(id)))
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill9(&mut self, id: u64) -> Result<ExitStatus, String> {
        let node = self.nodes.get_mut(&id).ok_or("no such node")?;
        let mut process = node.process.take().ok_or("not running")?;
        Ok(process.kill9())
    }

    /// Stops node `id` cleanly (SIGTERM; SIGKILL after a while).
    pub fn stop(&mut self, id: u64) -> Result<ExitStatus, String> {
        let node = self.nodes.get_mut(&id).ok_or("no such node")?;
        let mut process = node.process.take().ok_or("not running")?;
        Ok(tokio::task::block_in_place(|| {
            process.terminate(STOP_PATIENCE)
        }))
    }

    /// Stops every running node cleanly.
    pub fn stop_all(&mut self) -> Result<(), String> {
        for id in self.running() {
            self.stop(id)?;
        }
        Ok(())
    }

    /// Starts node `id` again on its data; returns once it listens.
    pub async fn restart(&mut self, id: u64) -> Result<(), String> {
        self.spawn(id)?;
        self.wait_listening(id).await
    }

    /// Starts every stopped node; returns once they listen.
    pub async fn restart_all(&mut self) -> Result<(), String> {
        let stopped: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| n.process.is_none())
            .map(|n| n.id)
            .collect();
        for &id in &stopped {
            self.spawn(id)?;
        }
        for id in stopped {
            self.wait_listening(id).await?;
        }
        Ok(())
    }

    /// Node `id`'s own view of the cluster.
    pub async fn status(&self, id: u64) -> Result<pb::GetClusterStatusResponse, String> {
        self.node(id)
            .status
            .get_cluster_status(pb::GetClusterStatusRequest {})
            .await
            .map_err(|e| format!("node {id}: {e}"))
    }

    /// The statuses of `ids` that answered (one by one: each is a loopback round trip,
    /// or a refused connection for a stopped node).
    pub async fn statuses(&self, ids: &[u64]) -> BTreeMap<u64, pb::GetClusterStatusResponse> {
        let mut out = BTreeMap::new();
        for &id in ids {
            if let Ok(s) = self.status(id).await {
                out.insert(id, s);
            }
        }
        out
    }

    /// The writable leader of `among`, once every node of `among` answers, follows it and
    /// is in its term (no election still in flight among them). Waits up to `patience`.
    pub async fn wait_leader(&self, among: &[u64], patience: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + patience;
        let mut last = BTreeMap::new();
        while Instant::now() < deadline {
            last = self.statuses(among).await;
            if let Some(leader) = agreed_leader(among, &last) {
                return Ok(leader);
            }
            tokio::time::sleep(POLL).await;
        }
        Err(format!(
            "no writable leader that all of {among:?} follow within {patience:?}: {}",
            describe(&last)
        ))
    }

    /// Waits until the running nodes hold the same log, wholly applied, and show the same
    /// transactions; returns the last transaction id (the load must be stopped).
    pub async fn wait_converged(&self, patience: Duration) -> Result<u64, String> {
        let ids = self.running();
        let deadline = Instant::now() + patience;
        let mut last = BTreeMap::new();
        while Instant::now() < deadline {
            last = self.statuses(&ids).await;
            if let Some(tx) = converged(&ids, &last) {
                return Ok(tx);
            }
            tokio::time::sleep(POLL).await;
        }
        Err(format!(
            "the nodes {ids:?} did not converge within {patience:?}: {}",
            describe(&last)
        ))
    }

    /// Waits until node `id` shows transaction `tx` to reads.
    pub async fn wait_applied(&self, id: u64, tx: u64, patience: Duration) -> Result<(), String> {
        let deadline = Instant::now() + patience;
        let mut last = None;
        while Instant::now() < deadline {
            match self.status(id).await {
                Ok(s) if s.applied_index >= tx => return Ok(()),
                Ok(s) => last = Some(s.applied_index),
                Err(_) => {}
            }
            tokio::time::sleep(POLL).await;
        }
        Err(format!(
            "node {id} did not apply transaction {tx} within {patience:?} (applied: {last:?})"
        ))
    }

    /// Each node's process: its pid, or how it ended (a failure message's first line).
    pub fn processes(&mut self) -> String {
        let mut out = Vec::new();
        for node in self.nodes.values_mut() {
            let state = match node.process.as_mut() {
                None => "stopped".to_owned(),
                Some(p) => match p.try_wait() {
                    Some(status) => format!("exited unasked: {status}"),
                    None => format!("pid {}", p.pid()),
                },
            };
            out.push(format!("node {}: {state}", node.id));
        }
        out.join(", ")
    }

    /// The last lines of node `id`'s log, for a failure message.
    pub fn log_tail(&self, id: u64) -> String {
        let text = std::fs::read_to_string(self.node(id).log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("node {id} log tail:\n{tail}")
    }

    /// Every node's log tail.
    pub fn log_tails(&self) -> String {
        self.ids()
            .into_iter()
            .map(|id| self.log_tail(id))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The leader every node of `among` follows in its term, if there is one and it takes
/// writes.
fn agreed_leader(
    among: &[u64],
    statuses: &BTreeMap<u64, pb::GetClusterStatusResponse>,
) -> Option<u64> {
    if statuses.len() != among.len() {
        return None;
    }
    let leader = statuses
        .values()
        .find(|s| s.writable && s.role() == pb::NodeRole::Leader)?;
    let agreed = statuses
        .values()
        .all(|s| s.leader_id == Some(leader.node_id) && s.term == leader.term);
    agreed.then_some(leader.node_id)
}

/// The last transaction id, if every node of `ids` answered with the same log wholly
/// applied and the same transactions visible.
fn converged(ids: &[u64], statuses: &BTreeMap<u64, pb::GetClusterStatusResponse>) -> Option<u64> {
    if statuses.len() != ids.len() {
        return None;
    }
    let first = statuses.values().next()?;
    let same = statuses.values().all(|s| {
        s.last_log_index.is_some()
            && s.last_log_index == first.last_log_index
            && s.last_applied_log_index == s.last_log_index
            && s.applied_index == first.applied_index
            && s.durable_index == first.applied_index
    });
    same.then_some(first.applied_index)
}

/// One line per node: role, term, leader and indexes.
pub fn describe(statuses: &BTreeMap<u64, pb::GetClusterStatusResponse>) -> String {
    if statuses.is_empty() {
        return "no node answered".into();
    }
    statuses
        .values()
        .map(|s| {
            format!(
                "\n  node {}: {:?} term {} leader {:?} writable {} computed {} durable {} replicated {} applied {} log {:?}/{:?}",
                s.node_id,
                s.role(),
                s.term,
                s.leader_id,
                s.writable,
                s.computed_index,
                s.durable_index,
                s.replicated_index,
                s.applied_index,
                s.last_applied_log_index,
                s.last_log_index
            )
        })
        .collect()
}
