//! The server's settings: flags, then `LEDGER_*` environment variables, then the optional
//! TOML file (`--config`), then defaults. Every ledger knob is here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ledger_core::ledger::{LedgerConfig, WaitStrategy};
use serde::Deserialize;

use crate::cdc::CdcSettings;

/// `ledger-server`: the roda.ledger.v1.Ledger gRPC API over an embedded ledger.
///
/// Run with no arguments it listens on 127.0.0.1:50051 with its data in ./data.
/// Precedence: flags, then LEDGER_* environment variables, then --config, then defaults.
#[derive(Parser, Debug, Default, Deserialize, Clone)]
#[command(name = "ledger-server", version, about, long_about = None)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// A TOML file with any of these settings (keys as the long flags, with `_`).
    #[arg(long, env = "LEDGER_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051]; port 0 picks a free one.
    #[arg(long, env = "LEDGER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory of the WAL and snapshots [default: ./data].
    #[arg(long, env = "LEDGER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Account ids 0..N are valid [default: 1000000].
    #[arg(long, env = "LEDGER_MAX_ACCOUNTS")]
    pub max_accounts: Option<u64>,
    /// Pipeline ring slots, a power of two: transactions in flight [default: 65536].
    #[arg(long, env = "LEDGER_RING_SIZE")]
    pub ring_size: Option<usize>,
    /// WAL segment size in bytes [default: 67108864].
    #[arg(long, env = "LEDGER_WAL_SEGMENT_BYTES")]
    pub wal_segment_bytes: Option<u64>,
    /// WAL frame size in bytes [default: 32768].
    #[arg(long, env = "LEDGER_WAL_FRAME_BYTES")]
    pub wal_frame_bytes: Option<usize>,
    /// Snapshot after this many transactions [default: 10000000].
    #[arg(long, env = "LEDGER_SNAPSHOT_INTERVAL_TX")]
    pub snapshot_interval_tx: Option<u64>,
    /// ...or after this many seconds with any transaction [default: 60].
    #[arg(long, env = "LEDGER_SNAPSHOT_INTERVAL_SECS")]
    pub snapshot_interval_secs: Option<u64>,
    /// Snapshots kept on disk [default: 2].
    #[arg(long, env = "LEDGER_SNAPSHOTS_KEPT")]
    pub snapshots_kept: Option<NonZeroUsize>,
    /// Keep every WAL segment (an audit trail) [default: false].
    #[arg(long, env = "LEDGER_WAL_KEEP_ALL")]
    pub wal_keep_all: Option<bool>,
    /// Keep WAL segments holding the last N transactions for history reads [default: 10000000].
    #[arg(long, env = "LEDGER_HISTORY_RETENTION_TX")]
    pub history_retention_tx: Option<u64>,
    /// Memory for recent WAL frames served to reads, in bytes [default: 67108864].
    #[arg(long, env = "LEDGER_READ_CACHE_BYTES")]
    pub read_cache_bytes: Option<usize>,
    /// Idempotency window for user_ref, in seconds [default: 10].
    #[arg(long, env = "LEDGER_DEDUP_WINDOW_SECS")]
    pub dedup_window_secs: Option<u64>,
    /// How long a posted, voided or expired hold is remembered, in seconds (then acting
    /// on it is HoldNotFound; at most the 2^20 most recently closed are remembered); the
    /// same on every node [default: 60].
    #[arg(long, env = "LEDGER_CLOSED_HOLD_RETENTION_SECS")]
    pub closed_hold_retention_secs: Option<u64>,
    /// How stage threads wait for work: `default` (spin, yield, park), `low-cpu` (park
    /// almost at once), `busy-spin` (only with dedicated cores) [default: default].
    #[arg(long, env = "LEDGER_WAIT_STRATEGY", value_parser = ["default", "low-cpu", "busy-spin"])]
    pub wait_strategy: Option<String>,
    /// Threads serving gRPC (the async runtime's workers) [default: one less than the
    /// number of cores, at least 1]. The ledger's stage threads come on top, and its
    /// transactor is busy under load: leaving it a core measured 10-20% more unary
    /// commits on 2 cores (see docs/benchmarks.md).
    #[arg(long, env = "LEDGER_IO_THREADS")]
    pub io_threads: Option<NonZeroUsize>,
    /// Log filter (error, warn, info, debug, trace, or a tracing filter) [default: info].
    #[arg(long, env = "LEDGER_LOG")]
    pub log: Option<String>,
    /// Log format: `text` (coloured only on a terminal) or `json` (one object per line,
    /// for log shippers) [default: text].
    #[arg(long, env = "LEDGER_LOG_FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Serve Prometheus metrics on this address (off when unset).
    #[arg(long, env = "LEDGER_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Serve the web console on this address (off when unset): HTTPS with --tls-cert,
    /// behind the same tokens as gRPC (a read token sees, a write token also submits).
    #[arg(long, env = "LEDGER_CONSOLE_LISTEN")]
    pub console_listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM); with --tls-key, the server speaks TLS only.
    #[arg(long, env = "LEDGER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "LEDGER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Bearer tokens, one per line: `read <token>` or `write <token>`. Unset: no auth.
    #[arg(long, env = "LEDGER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Check the health of the server at --listen (a loopback address for 0.0.0.0) and
    /// exit 0 if it is serving, 1 if not: the container health check.
    #[arg(long)]
    #[serde(skip)]
    pub probe: bool,
    /// Largest request message, in bytes [default: 4194304].
    #[arg(long, env = "LEDGER_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// This node's id in a cluster (with --peers). Unset: a single node.
    #[arg(long, env = "LEDGER_NODE_ID", requires = "peers")]
    pub node_id: Option<u64>,
    /// Every node of the cluster, this one included, as `id=host:port,...`: the
    /// address each serves gRPC on (--listen), which also carries node-to-node traffic.
    #[arg(long, env = "LEDGER_PEERS", requires = "node_id")]
    pub peers: Option<String>,
    /// Join an existing cluster: the leader adds this node (`ledger-cli cluster add`);
    /// it never forms a cluster of its own. --peers then lists the current members.
    #[arg(long, env = "LEDGER_JOIN", requires = "node_id")]
    pub join: Option<bool>,
    /// Take a Raft snapshot (of the ledger as it is then) every this many log
    /// entries, and forget the entries it covers but the last --raft-keep-entries: a node
    /// further behind, or joining, catches up from the snapshot. 0: never (the whole log
    /// is kept and replayed to it) [default: 65536].
    #[arg(
        long,
        env = "LEDGER_RAFT_SNAPSHOT_EVERY",
        value_name = "ENTRIES",
        requires = "node_id"
    )]
    pub raft_snapshot_every: Option<u64>,
    /// Log entries kept behind a Raft snapshot, so a follower a little behind still
    /// catches up from the log [default: 1024].
    #[arg(
        long,
        env = "LEDGER_RAFT_KEEP_ENTRIES",
        value_name = "N",
        requires = "node_id"
    )]
    pub raft_keep_entries: Option<u64>,
    /// With TLS on, the CA certificate (PEM) the other nodes' certificates chain to
    /// [default: this node's own --tls-cert, for nodes sharing one certificate or CA].
    #[arg(long, env = "LEDGER_PEER_TLS_CA")]
    pub peer_tls_ca: Option<PathBuf>,
    /// Publish every committed transaction into NATS JetStream at this server
    /// (`nats://host:port`), exactly once, resuming from the stream's last message
    /// (docs/change-stream.md). Off when unset.
    #[arg(long, env = "LEDGER_CDC_NATS_URL", value_name = "URL")]
    pub cdc_nats_url: Option<String>,
    /// The JetStream stream the sink publishes into, created when missing
    /// [default: LEDGER].
    #[arg(long, env = "LEDGER_CDC_STREAM", requires = "cdc_nats_url")]
    pub cdc_stream: Option<String>,
    /// The subject of the sink's messages; nothing else may publish on it
    /// [default: ledger.transactions].
    #[arg(long, env = "LEDGER_CDC_SUBJECT", requires = "cdc_nats_url")]
    pub cdc_subject: Option<String>,
    /// Publish rejected transactions too [default: false].
    #[arg(long, env = "LEDGER_CDC_INCLUDE_REJECTED", requires = "cdc_nats_url")]
    pub cdc_include_rejected: Option<bool>,
    /// The first transaction published into an empty stream [default: 1].
    #[arg(long, env = "LEDGER_CDC_FROM_TX_ID", requires = "cdc_nats_url")]
    pub cdc_from_tx_id: Option<u64>,
    /// The duplicate window of the stream, in seconds (at least 1), when the sink
    /// creates it [default: 2].
    #[arg(
        long,
        env = "LEDGER_CDC_DUPLICATE_WINDOW_SECS",
        requires = "cdc_nats_url",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub cdc_duplicate_window_secs: Option<u64>,
}

/// A cluster node's identity and peers, from `--node-id` and `--peers`, and its Raft
/// snapshot policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    pub node_id: u64,
    pub peers: BTreeMap<u64, String>,
    pub join: bool,
    /// `--raft-snapshot-every`; `None`: `ClusterConfig`'s default.
    pub snapshot_every_entries: Option<u64>,
    /// `--raft-keep-entries`; `None`: `ClusterConfig`'s default.
    pub keep_entries_after_snapshot: Option<u64>,
}

impl Settings {
    /// Flags and environment, with the `--config` file beneath them.
    ///
    /// # Errors
    /// An unreadable or invalid config file.
    pub fn load() -> Result<Settings, String> {
        Settings::parse().with_file()
    }

    /// `self` over the TOML file it names (if any).
    ///
    /// # Errors
    /// An unreadable or invalid config file.
    pub fn with_file(self) -> Result<Settings, String> {
        let Some(path) = &self.config else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("config file {}: {e}", path.display()))?;
        let file: Settings =
            toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
        Ok(self.over(file))
    }

    /// Every setting of `self`, else `below`'s.
    fn over(self, below: Settings) -> Settings {
        macro_rules! pick {
            ($($field:ident),*) => { Settings { config: self.config, probe: self.probe, $($field: self.$field.or(below.$field)),* } };
        }
        pick!(
            listen,
            data_dir,
            max_accounts,
            ring_size,
            wal_segment_bytes,
            wal_frame_bytes,
            snapshot_interval_tx,
            snapshot_interval_secs,
            snapshots_kept,
            wal_keep_all,
            history_retention_tx,
            read_cache_bytes,
            dedup_window_secs,
            closed_hold_retention_secs,
            wait_strategy,
            io_threads,
            log,
            log_format,
            metrics_addr,
            console_listen,
            tls_cert,
            tls_key,
            token_file,
            max_message_bytes,
            node_id,
            peers,
            join,
            raft_snapshot_every,
            raft_keep_entries,
            peer_tls_ca,
            cdc_nats_url,
            cdc_stream,
            cdc_subject,
            cdc_include_rejected,
            cdc_from_tx_id,
            cdc_duplicate_window_secs
        )
    }

    /// The cluster this server is a node of, `None` for a single node.
    ///
    /// # Errors
    /// One of --node-id / --peers without the other, a malformed peer list, or a node id
    /// that is not among the peers.
    pub fn cluster(&self) -> Result<Option<ClusterSettings>, String> {
        let (node_id, peers) = match (self.node_id, &self.peers) {
            (None, None) => return Ok(None),
            (Some(id), Some(peers)) => (id, peers),
            _ => return Err("--node-id and --peers go together".into()),
        };
        let peers = parse_peers(peers)?;
        let join = self.join.unwrap_or(false);
        if !join && !peers.contains_key(&node_id) {
            return Err(format!(
                "--peers must list this node ({node_id}) too, by the address it serves on"
            ));
        }
        Ok(Some(ClusterSettings {
            node_id,
            peers,
            join,
            snapshot_every_entries: self.raft_snapshot_every,
            keep_entries_after_snapshot: self.raft_keep_entries,
        }))
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50051)))
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.unwrap_or(4 << 20)
    }

    /// gRPC worker threads: `--io-threads`, else one less than the cores (at least 1).
    pub fn io_threads(&self) -> usize {
        self.io_threads.map_or_else(
            || {
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get().saturating_sub(1))
                    .max(1)
            },
            NonZeroUsize::get,
        )
    }

    pub fn log(&self) -> &str {
        self.log.as_deref().unwrap_or("info")
    }

    /// Logs as JSON lines (`--log-format json`) rather than text.
    pub fn log_json(&self) -> bool {
        self.log_format.as_deref() == Some("json")
    }

    /// The change-stream sink, `None` when `--cdc-nats-url` is unset.
    pub fn cdc(&self) -> Option<CdcSettings> {
        Some(CdcSettings {
            url: self.cdc_nats_url.clone()?,
            stream: self.cdc_stream.clone().unwrap_or_else(|| "LEDGER".into()),
            subject: self
                .cdc_subject
                .clone()
                .unwrap_or_else(|| "ledger.transactions".into()),
            include_rejected: self.cdc_include_rejected.unwrap_or(false),
            from_tx_id: self.cdc_from_tx_id.unwrap_or(1),
            // At least a second from the TOML file too: a zero window would be left out
            // of the stream's configuration, and the broker would apply its own (2 min).
            duplicate_window: self
                .cdc_duplicate_window_secs
                .map_or(crate::cdc::DUPLICATE_WINDOW, |s| {
                    Duration::from_secs(s.max(1))
                }),
        })
    }

    /// The ledger's configuration: the defaults with every setting given applied.
    pub fn ledger_config(&self) -> LedgerConfig {
        let d = LedgerConfig::default();
        LedgerConfig {
            data_dir: self.data_dir.clone().unwrap_or(d.data_dir),
            max_accounts: self.max_accounts.unwrap_or(d.max_accounts),
            ring_size: self.ring_size.unwrap_or(d.ring_size),
            wal_segment_bytes: self.wal_segment_bytes.unwrap_or(d.wal_segment_bytes),
            wal_frame_bytes: self.wal_frame_bytes.unwrap_or(d.wal_frame_bytes),
            snapshot_interval_tx: self.snapshot_interval_tx.unwrap_or(d.snapshot_interval_tx),
            snapshot_interval: self
                .snapshot_interval_secs
                .map_or(d.snapshot_interval, Duration::from_secs),
            snapshots_kept: self.snapshots_kept.unwrap_or(d.snapshots_kept),
            wal_keep_all: self.wal_keep_all.unwrap_or(d.wal_keep_all),
            history_retention_tx: self.history_retention_tx.unwrap_or(d.history_retention_tx),
            read_cache_bytes: self.read_cache_bytes.unwrap_or(d.read_cache_bytes),
            dedup_window: self
                .dedup_window_secs
                .map_or(d.dedup_window, Duration::from_secs),
            closed_hold_retention: self
                .closed_hold_retention_secs
                .map_or(d.closed_hold_retention, Duration::from_secs),
            wait_strategy: match self.wait_strategy.as_deref() {
                Some("low-cpu") => WaitStrategy::LowCpu,
                Some("busy-spin") => WaitStrategy::BusySpin,
                _ => d.wait_strategy,
            },
            ..d
        }
    }
}

/// `1=10.0.0.1:50051,2=10.0.0.2:50051`: node ids to addresses.
fn parse_peers(list: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("--peers: `{item}` is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("--peers: `{id}` is not a node id (an unsigned integer)"))?;
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(format!("--peers: `{addr}` is not host:port"));
        }
        if peers.insert(id, addr.to_owned()).is_some() {
            return Err(format!("--peers: node {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("--peers lists no node".into());
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_in_deploy_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/config.toml");
        let flags = Settings::try_parse_from(["ledger-server", "--config", path]).unwrap();
        let s = flags.with_file().unwrap();
        let c = s.ledger_config();
        assert_eq!(c.max_accounts, 1_000_000);
        assert_eq!(c.data_dir, std::path::PathBuf::from("/var/lib/ledger"));
        assert_eq!(s.listen().port(), 50051);
        // Its values are the defaults, so the file documents them truthfully.
        let d = LedgerConfig::default();
        assert_eq!(c.ring_size, d.ring_size);
        assert_eq!(c.wal_frame_bytes, d.wal_frame_bytes);
        assert_eq!(c.read_cache_bytes, d.read_cache_bytes);
        assert_eq!(c.history_retention_tx, d.history_retention_tx);
        assert_eq!(c.snapshot_interval, d.snapshot_interval);
        assert_eq!(c.dedup_window, d.dedup_window);
        assert_eq!(c.closed_hold_retention, d.closed_hold_retention);
    }

    #[test]
    fn the_sink_is_off_by_default_and_needs_a_url() {
        let none = Settings::try_parse_from(["ledger-server"]).unwrap();
        assert!(none.cdc().is_none());
        assert!(!none.log_json());
        assert!(Settings::try_parse_from(["ledger-server", "--cdc-stream", "S"]).is_err());
        let on = Settings::try_parse_from([
            "ledger-server",
            "--cdc-nats-url",
            "nats://127.0.0.1:4222",
            "--cdc-include-rejected",
            "true",
            "--log-format",
            "json",
        ])
        .unwrap();
        let cdc = on.cdc().unwrap();
        assert_eq!(cdc.url, "nats://127.0.0.1:4222");
        assert_eq!(
            (cdc.stream.as_str(), cdc.subject.as_str()),
            ("LEDGER", "ledger.transactions")
        );
        assert!(cdc.include_rejected);
        assert_eq!(cdc.from_tx_id, 1);
        assert_eq!(cdc.duplicate_window, std::time::Duration::from_secs(2));
        assert!(on.log_json());
        let window = Settings::try_parse_from([
            "ledger-server",
            "--cdc-nats-url",
            "nats://127.0.0.1:4222",
            "--cdc-duplicate-window-secs",
            "30",
        ])
        .unwrap();
        assert_eq!(
            window.cdc().unwrap().duplicate_window,
            std::time::Duration::from_secs(30)
        );
        let zero = ["--cdc-duplicate-window-secs", "0"];
        let url = ["ledger-server", "--cdc-nats-url", "nats://127.0.0.1:4222"];
        assert!(Settings::try_parse_from(url.iter().chain(&zero)).is_err());
        assert!(Settings::try_parse_from(["ledger-server", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn a_flag_overrides_the_closed_hold_retention() {
        let flags =
            Settings::try_parse_from(["ledger-server", "--closed-hold-retention-secs", "7"])
                .unwrap();
        let c = flags.with_file().unwrap().ledger_config();
        assert_eq!(c.closed_hold_retention, Duration::from_secs(7));
    }

    #[test]
    fn the_cluster_example_config_in_deploy_is_valid() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/cluster-node-1.toml"
        );
        let flags = Settings::try_parse_from(["ledger-server", "--config", path]).unwrap();
        let cluster = flags.with_file().unwrap().cluster().unwrap().unwrap();
        assert_eq!(cluster.node_id, 1);
        assert_eq!(cluster.peers.len(), 3);
        assert!(!cluster.join);
        // Its Raft snapshot policy is the default, written out.
        let d = ledger_core::cluster::ClusterConfig::new(1, BTreeMap::new());
        assert_eq!(
            cluster.snapshot_every_entries,
            Some(d.snapshot_every_entries)
        );
        assert_eq!(
            cluster.keep_entries_after_snapshot,
            Some(d.keep_entries_after_snapshot)
        );
    }

    #[test]
    fn a_cluster_comes_from_node_id_and_peers() {
        let parse = |args: &[&str]| {
            let mut all = vec!["ledger-server"];
            all.extend_from_slice(args);
            Settings::try_parse_from(all)
                .map_err(|e| e.to_string())?
                .cluster()
        };
        assert_eq!(parse(&[]), Ok(None));
        let cluster = parse(&["--node-id", "2", "--peers", "1=a:1, 2=b:2,3=c:3"])
            .unwrap()
            .unwrap();
        assert_eq!(cluster.node_id, 2);
        assert_eq!(cluster.peers[&3], "c:3");
        assert!(parse(&["--node-id", "2"]).is_err());
        assert!(
            parse(&["--node-id", "4", "--peers", "1=a:1"])
                .unwrap_err()
                .contains("this node")
        );
        assert!(
            parse(&["--node-id", "1", "--peers", "1=a"])
                .unwrap_err()
                .contains("host:port")
        );
        assert!(
            parse(&["--node-id", "1", "--peers", "1=a:1,1=b:2"])
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            parse(&["--node-id", "1", "--peers", "x=a:1"])
                .unwrap_err()
                .contains("node id")
        );
        assert_eq!(cluster.snapshot_every_entries, None);
        assert_eq!(cluster.keep_entries_after_snapshot, None);
        let cluster = parse(&[
            "--node-id",
            "1",
            "--peers",
            "1=a:1",
            "--raft-snapshot-every",
            "0",
            "--raft-keep-entries",
            "16",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(cluster.snapshot_every_entries, Some(0));
        assert_eq!(cluster.keep_entries_after_snapshot, Some(16));
        // Only a cluster node has a Raft log.
        assert!(parse(&["--raft-snapshot-every", "8"]).is_err());
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "max_accounts = 77\nring_size = 1024\nlisten = \"127.0.0.1:7\"\n",
        )
        .unwrap();
        let flags = Settings::try_parse_from([
            "ledger-server",
            "--config",
            path.to_str().unwrap(),
            "--ring-size",
            "4096",
        ])
        .unwrap();
        let s = flags.with_file().unwrap();
        let c = s.ledger_config();
        assert_eq!(c.max_accounts, 77);
        assert_eq!(c.ring_size, 4096);
        assert_eq!(s.listen().port(), 7);
        assert_eq!(c.wal_frame_bytes, LedgerConfig::default().wal_frame_bytes);
        std::fs::write(&path, "no_such_knob = 1\n").unwrap();
        let flags = Settings::try_parse_from(["ledger-server", "--config", path.to_str().unwrap()])
            .unwrap();
        assert!(flags.with_file().unwrap_err().contains("no_such_knob"));
    }
}
