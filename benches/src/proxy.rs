//! A TCP proxy in front of each cluster node, so a test can cut and delay the links
//! between nodes. Node `j`'s proxy listens on `127.0.0.1:<port>` (the address `--peers`
//! names for `j`) and forwards to `j`'s real listen address.
//!
//! A connection's source is told by its peer IP: node `i` dials from `127.0.0.<i+1>`
//! (its listen IP, see the server's `GrpcNetwork`), `127.0.0.1` is the client (id
//! [`CLIENT`]). The *link* `i -> j` is the connections `i` opens to `j`: its requests to
//! `j` and their answers. Cutting it closes those connections and refuses new ones (`j`
//! can still call `i` over its own connections unless `j -> i` is cut too); a delay holds
//! every byte of them, both ways, that long.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

/// The source id of connections from `127.0.0.1`: the test's clients.
pub const CLIENT: u64 = 0;
/// Chunks in flight per direction of a delayed connection (bounds its memory).
const QUEUED_CHUNKS_MAX: usize = 1024;
const CHUNK_BYTES: usize = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The loopback IP node `id` listens on and dials from: `127.0.0.<id+1>`.
pub fn node_ip(id: u64) -> Ipv4Addr {
    let last = u8::try_from(id + 1).expect("node ids below 255");
    Ipv4Addr::new(127, 0, 0, last)
}

/// Who opened a connection from `ip`: a node id, [`CLIENT`], or `None` (not ours).
pub fn source_of(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 0] && v4.octets()[3] >= 1 => {
            Some(u64::from(v4.octets()[3]) - 1)
        }
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LinkState {
    cut: bool,
    delay: Duration,
}

/// Links and the connections open on each.
#[derive(Debug, Default)]
struct Links {
    state: HashMap<(u64, u64), LinkState>,
    open: HashMap<u64, ((u64, u64), AbortHandle)>,
    next_conn: u64,
}

/// Counts of what the proxy did, for a report.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub closed_by_cut: AtomicU64,
    pub connect_failed: AtomicU64,
}

/// The proxies of one cluster; dropping it stops them and closes every connection.
#[derive(Debug)]
pub struct Proxy {
    links: Arc<Mutex<Links>>,
    addrs: BTreeMap<u64, SocketAddr>,
    acceptors: Vec<JoinHandle<()>>,
    pub stats: Arc<ProxyStats>,
}

impl Proxy {
    /// One listener on `127.0.0.1:0` per node of `targets` (id -> real listen address).
    pub async fn start(targets: &BTreeMap<u64, SocketAddr>) -> Result<Proxy, String> {
        let links = Arc::new(Mutex::new(Links::default()));
        let stats = Arc::new(ProxyStats::default());
        let mut addrs = BTreeMap::new();
        let mut acceptors = Vec::new();
        for (&to, &target) in targets {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .map_err(|e| format!("proxy for node {to}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            addrs.insert(to, addr);
            acceptors.push(tokio::spawn(accept_loop(
                listener,
                to,
                target,
                Arc::clone(&links),
                Arc::clone(&stats),
            )));
        }
        Ok(Proxy {
            links,
            addrs,
            acceptors,
            stats,
        })
    }

    /// The address node `id` is reached at through the proxy.
    pub fn addr(&self, id: u64) -> Option<SocketAddr> {
        self.addrs.get(&id).copied()
    }

    fn links(&self) -> MutexGuard<'_, Links> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cuts `from -> to`: closes its open connections and refuses new ones.
    pub fn cut(&self, from: u64, to: u64) {
        let mut links = self.links();
        links.state.entry((from, to)).or_default().cut = true;
        let doomed: Vec<u64> = links
            .open
            .iter()
            .filter(|(_, (link, _))| *link == (from, to))
            .map(|(&id, _)| id)
            .collect();
        for id in doomed {
            if let Some((_, handle)) = links.open.remove(&id) {
                handle.abort();
                self.stats.closed_by_cut.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Cuts every link between `node` and each of `others`, both ways.
    pub fn isolate(&self, node: u64, others: &[u64]) {
        for &o in others {
            self.cut(node, o);
            self.cut(o, node);
        }
    }

    /// Holds every byte of `from -> to` connections `delay` long (new chunks from now).
    pub fn delay(&self, from: u64, to: u64, delay: Duration) {
        self.links().state.entry((from, to)).or_default().delay = delay;
    }

    /// Restores `from -> to`: no cut, no delay.
    pub fn heal(&self, from: u64, to: u64) {
        self.links().state.remove(&(from, to));
    }

    /// Restores every link.
    pub fn heal_all(&self) {
        self.links().state.clear();
    }

    /// Connections open now on `from -> to`.
    pub fn open_connections(&self, from: u64, to: u64) -> usize {
        self.links()
            .open
            .values()
            .filter(|(link, _)| *link == (from, to))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for a in &self.acceptors {
            a.abort();
        }
        for (_, (_, handle)) in self.links().open.drain() {
            handle.abort();
        }
    }
}

fn link_state(links: &Mutex<Links>, link: (u64, u64)) -> LinkState {
    let links = links.lock().unwrap_or_else(PoisonError::into_inner);
    links.state.get(&link).copied().unwrap_or_default()
}

/// Accepts connections for node `to` until aborted.
async fn accept_loop(
    listener: TcpListener,
    to: u64,
    target: SocketAddr,
    links: Arc<Mutex<Links>>,
    stats: Arc<ProxyStats>,
) {
    loop {
        let Ok((inbound, peer)) = listener.accept().await else {
            // EMFILE and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some(from) = source_of(peer.ip()) else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let link = (from, to);
        let mut guard = links.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.state.get(&link).is_some_and(|s| s.cut) {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            continue; // dropping `inbound` closes it
        }
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let id = guard.next_conn;
        guard.next_conn += 1;
        // Registered under the lock the task takes to unregister: it cannot finish first.
        let task = tokio::spawn(connection(
            inbound,
            target,
            link,
            id,
            Arc::clone(&links),
            Arc::clone(&stats),
        ));
        guard.open.insert(id, (link, task.abort_handle()));
    }
}

/// Forwards one connection both ways until either side closes it or its link is cut.
async fn connection(
    inbound: TcpStream,
    target: SocketAddr,
    link: (u64, u64),
    id: u64,
    links: Arc<Mutex<Links>>,
    stats: Arc<ProxyStats>,
) {
    let outbound = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(s)) => Some(s),
        _ => {
            stats.connect_failed.fetch_add(1, Ordering::Relaxed);
            None
        }
    };
    if let Some(outbound) = outbound {
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (in_read, in_write) = inbound.into_split();
        let (out_read, out_write) = outbound.into_split();
        // The first direction to end (EOF or error) ends the connection.
        tokio::select! {
            () = pump(in_read, out_write, link, &links) => {}
            () = pump(out_read, in_write, link, &links) => {}
        }
    }
    links
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .open
        .remove(&id);
}

/// Copies `from` to `to`, each chunk held for the link's delay at the time it was read.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: (u64, u64),
    links: &Mutex<Links>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUED_CHUNKS_MAX);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due = Instant::now() + link_state(links, link).delay;
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    // At EOF the writer drains what was read, then half-closes; the connection ends
    // when either direction has.
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use std::io;

    use tokio::net::TcpSocket;

    use super::*;

    /// A server that sends back whatever it reads.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn connect_from(ip: Ipv4Addr, to: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((ip, 0))).unwrap();
        socket.connect(to).await.unwrap()
    }

    /// Sends 4 bytes and reads them back; an error if the connection is closed.
    async fn round_trip(s: &mut TcpStream) -> io::Result<Duration> {
        let started = Instant::now();
        let mut back = [0u8; 4];
        let trip = async {
            s.write_all(b"ping").await?;
            s.read_exact(&mut back).await
        };
        tokio::time::timeout(Duration::from_secs(10), trip).await??;
        assert_eq!(&back, b"ping");
        Ok(started.elapsed())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn links_are_cut_delayed_and_healed_per_source() {
        let echo = echo_server().await;
        let proxy = Proxy::start(&BTreeMap::from([(2, echo)])).await.unwrap();
        let to = proxy.addr(2).unwrap();
        assert_eq!(source_of(node_ip(1).into()), Some(1));
        assert_eq!(source_of(Ipv4Addr::LOCALHOST.into()), Some(CLIENT));

        let mut node1 = connect_from(node_ip(1), to).await;
        let mut node3 = connect_from(node_ip(3), to).await;
        let mut client = connect_from(Ipv4Addr::LOCALHOST, to).await;
        for s in [&mut node1, &mut node3, &mut client] {
            round_trip(s).await.unwrap();
        }

        // Cut 1 -> 2: its open connection is closed, a new one refused; the others go on.
        proxy.cut(1, 2);
        assert!(round_trip(&mut node1).await.is_err());
        let mut refused = connect_from(node_ip(1), to).await;
        assert!(round_trip(&mut refused).await.is_err());
        round_trip(&mut node3).await.unwrap();
        round_trip(&mut client).await.unwrap();
        assert_eq!(proxy.open_connections(1, 2), 0);

        // Healed, node 1 connects again; delayed, each way takes the delay.
        proxy.heal(1, 2);
        let mut node1 = connect_from(node_ip(1), to).await;
        round_trip(&mut node1).await.unwrap();
        let delay = Duration::from_millis(100);
        proxy.delay(1, 2, delay);
        assert!(round_trip(&mut node1).await.unwrap() >= 2 * delay);
        assert!(round_trip(&mut client).await.unwrap() < 2 * delay);
        proxy.heal_all();
        round_trip(&mut node1).await.unwrap();
    }
}
