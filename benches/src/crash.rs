//! The crash matrix: a real `ledger-server` process on a real data directory, driven with
//! committed acknowledgements, killed (SIGKILL at a random moment, while a snapshot or
//! segment temp file exists, during recovery, or for memory), restarted and checked.
//!
//! After every restart [`Harness::start`] checks, against a model of what was submitted:
//! - every acknowledged transaction is there (`id <= committed index`) with the user_ref,
//!   outcome and entries it was acknowledged with;
//! - every other transaction the server holds is one that was submitted and left
//!   unanswered by the kill (nothing made up), with the entries of what was submitted;
//! - the balances of every account equal the model's and sum to zero;
//! - resubmitting each unanswered operation with its user_ref (what a client does after
//!   a timeout) is answered Duplicate of the original if the original survived, and
//!   commits otherwise: never twice.
//!
//! Used by `benches/tests/crash_matrix.rs` (CI-sized) and the `crash-matrix` binary
//! (the long run, figures in docs/benchmarks.md).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ledger_client::pb;
use ledger_client::pb::ledger_client::LedgerClient;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::workload::Rng;

/// Accounts 1..=ACCOUNTS take the load; 0 is the system account deposits come from.
pub const ACCOUNTS: u64 = 64;
/// FailReason codes on the wire.
const INSUFFICIENT_FUNDS: u32 = 1;
const DUPLICATE: u32 = 7;
/// Wide enough that every retry after a restart falls inside it (the default is 10 s).
const DEDUP_WINDOW_SECS: u64 = 120;
/// A retry later than this after the kill is not checked for deduplication.
const DEDUP_CHECKED_WITHIN: Duration = Duration::from_secs(100);
/// Bounds every wait on the server, so a hang fails a check instead of the run.
const PATIENCE: Duration = Duration::from_secs(60);

/// One operation as submitted (its user_ref is the key it is tracked by).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Deposit { account: u64, amount: u64 },
    Transfer { from: u64, to: u64, amount: u64 },
}

impl Op {
    /// A random operation on accounts 1..=[`ACCOUNTS`].
    pub fn random(rng: &mut Rng) -> Op {
        let account = |rng: &mut Rng| 1 + rng.below(ACCOUNTS);
        // Mostly deposits, so transfers mostly find funds; some are still rejected.
        if rng.below(4) == 0 {
            let from = account(rng);
            let to = 1 + (from + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
            Op::Transfer {
                from,
                to,
                amount: 1 + rng.below(500),
            }
        } else {
            Op::Deposit {
                account: account(rng),
                amount: 1 + rng.below(1000),
            }
        }
    }

    fn wire(self, user_ref: u64) -> pb::SubmitAndWaitRequest {
        self.wire_at(user_ref, pb::WaitLevel::Committed)
    }

    /// The request submitting this operation under `user_ref`, waiting for `level`.
    pub fn wire_at(self, user_ref: u64, level: pb::WaitLevel) -> pb::SubmitAndWaitRequest {
        use pb::submit_and_wait_request::Operation as W;
        let operation = match self {
            Op::Deposit { account, amount } => W::Deposit(pb::Deposit {
                account,
                amount,
                user_ref,
            }),
            Op::Transfer { from, to, amount } => W::Transfer(pb::Transfer {
                from,
                to,
                amount,
                user_ref,
            }),
        };
        pb::SubmitAndWaitRequest {
            operation: Some(operation),
            wait_level: level.into(),
        }
    }

    /// The entries of the operation committed: `(account, amount, is_debit)`, sorted.
    pub fn entries(self) -> Vec<(u64, u64, bool)> {
        let mut e = match self {
            Op::Deposit { account, amount } => vec![(0, amount, false), (account, amount, true)],
            Op::Transfer { from, to, amount } => vec![(from, amount, false), (to, amount, true)],
        };
        e.sort_unstable();
        e
    }

    /// Rejections this operation may get.
    pub fn may_fail_with(self, fail_reason: u32) -> bool {
        fail_reason == DUPLICATE
            || (matches!(self, Op::Transfer { .. }) && fail_reason == INSUFFICIENT_FUNDS)
    }
}

/// An acknowledgement the server gave: the transaction is durable.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    pub tx_id: u64,
    pub user_ref: u64,
    pub fail_reason: u32,
    pub original: u64,
}

/// How the figures of a run came out.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Kill-and-restart cycles completed.
    pub cycles: u64,
    /// Acknowledgements found again after a restart (by reading the transaction back, or
    /// for bulk loads by a sample of them plus exact balances and index).
    pub acks_checked: u64,
    /// Of those, read back one by one with GetTransaction.
    pub acks_read_back: u64,
    /// Unacknowledged transactions found committed after a restart (all read back).
    pub unacked_found: u64,
    /// Unanswered operations resubmitted after a restart, by outcome.
    pub retries_duplicate: u64,
    pub retries_committed: u64,
    /// Spawn to health SERVING, per start.
    pub restart: Vec<Duration>,
    /// Kills while a watched temp file existed (it was still there after death).
    pub temp_caught: u64,
    /// Watched temp files that did not appear in time (killed anyway).
    pub temp_missed: u64,
    /// Kills before the server answered (during recovery), and ones that came too late.
    pub recovery_kills: u64,
    pub recovery_kills_late: u64,
    /// Memory-limited servers that refused the load but stayed up (then SIGKILLed), and
    /// ones that never hit the limit (SIGKILLed after 40 s).
    pub oom_failed_in_place: u64,
    pub oom_never_hit: u64,
    /// How the server ended, per kind ("SIGKILL", "SIGABRT", "exit 1", ...).
    pub ends: BTreeMap<String, u64>,
}

impl Stats {
    /// `(p50, max)` of the restart times.
    pub fn restart_p50_max(&self) -> (Duration, Duration) {
        let mut r = self.restart.clone();
        r.sort_unstable();
        if r.is_empty() {
            return (Duration::ZERO, Duration::ZERO);
        }
        (r[(r.len() - 1) / 2], r[r.len() - 1])
    }

    fn ended(&mut self, status: ExitStatus) {
        use std::os::unix::process::ExitStatusExt;
        let kind = match (status.signal(), status.code()) {
            (Some(libc::SIGKILL), _) => "SIGKILL".to_owned(),
            (Some(libc::SIGABRT), _) => "SIGABRT".to_owned(),
            (Some(libc::SIGSEGV), _) => "SIGSEGV".to_owned(),
            (Some(s), _) => format!("signal {s}"),
            (None, Some(c)) => format!("exit {c}"),
            (None, None) => "unknown".to_owned(),
        };
        *self.ends.entry(kind).or_default() += 1;
    }
}

/// A `ledger-server` process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    spawned: Instant,
    listening: mpsc::Receiver<String>,
    addr: Option<String>,
}

impl ServerProcess {
    /// Starts the server on `data` (stderr appended to `log`), without waiting for it.
    pub fn spawn(bin: &Path, data: &Path, args: &[String], log: &Path) -> Result<Self, String> {
        let mut all: Vec<OsString> = ["--listen", "127.0.0.1:0", "--log", "warn", "--data-dir"]
            .iter()
            .map(OsString::from)
            .collect();
        all.push(data.into());
        all.extend(args.iter().map(OsString::from));
        ServerProcess::spawn_with(bin, &all, log)
    }

    /// Starts the server with exactly `args` (stderr appended to `log`), without waiting.
    pub fn spawn_with<S: AsRef<OsStr>>(bin: &Path, args: &[S], log: &Path) -> Result<Self, String> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let spawned = Instant::now();
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, listening) = mpsc::channel();
        // Reads the port, then keeps draining so the server never blocks on stdout.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        Ok(ServerProcess {
            child,
            spawned,
            listening,
            addr: None,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether it has printed its address yet (without waiting).
    pub fn has_listened(&mut self) -> bool {
        if self.addr.is_none() {
            self.addr = self.listening.try_recv().ok();
        }
        self.addr.is_some()
    }

    /// Waits for its address; an error if it exits first.
    pub fn wait_listening(&mut self) -> Result<String, String> {
        if let Some(a) = &self.addr {
            return Ok(a.clone());
        }
        match self.listening.recv_timeout(PATIENCE) {
            Ok(a) => {
                self.addr = Some(a.clone());
                Ok(a)
            }
            Err(_) => {
                let status = self.child.try_wait().ok().flatten();
                Err(format!("the server did not start listening ({status:?})"))
            }
        }
    }

    /// Waits until health reports SERVING; returns the time since spawn and a channel.
    pub async fn wait_serving(&mut self) -> Result<(Duration, Channel), String> {
        let addr = tokio::task::block_in_place(|| self.wait_listening())?;
        let channel = Channel::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "roda.ledger.v1.Ledger".into(),
                })
                .await
                .map(|r| r.into_inner().status());
            if matches!(status, Ok(ServingStatus::Serving)) {
                return Ok((self.spawned.elapsed(), channel));
            }
            if Instant::now() > deadline {
                return Err(format!("health never SERVING: {status:?}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGKILL (if still running), then reaps it.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        kill(self.pid(), libc::SIGKILL);
        self.child.wait().expect("wait for the server")
    }

    /// SIGTERM (a clean stop), then SIGKILL if it has not exited within `patience`.
    pub fn terminate(&mut self, patience: Duration) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        kill(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill9()
    }

    /// Its exit status if it has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2) on the pid of a child we have not reaped yet.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// What one load client saw: everything it submitted and what was answered.
#[derive(Debug, Default)]
struct ClientLog {
    sent: Vec<(u64, Op)>,
    acks: Vec<Ack>,
}

/// Clients submitting with SubmitAndWait / SubmitBatchAndWait at COMMITTED until the
/// server dies or [`Load::stop`]; user_refs come from one counter, so each is new.
#[derive(Debug)]
pub struct Load {
    tasks: Vec<tokio::task::JoinHandle<ClientLog>>,
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Load {
    /// Acknowledged operations so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Asks the clients to stop after their current request.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether every client has ended (the server went away, or stop()).
    pub fn finished(&self) -> bool {
        self.tasks.iter().all(tokio::task::JoinHandle::is_finished)
    }
}

/// The model of the ledger's contents, and the harness that checks the server against it.
#[derive(Debug)]
pub struct Harness {
    bin: PathBuf,
    root: PathBuf,
    args: Vec<String>,
    rng: Rng,
    next_ref: Arc<AtomicU64>,
    /// Transactions 1..=committed have been checked.
    committed: u64,
    balances: Vec<i64>,
    /// Operations of the last load (and retries) by user_ref, until a start checks them.
    sent: HashMap<u64, Op>,
    acks: Vec<Ack>,
    /// One in this many acknowledgements is read back (the rest checked by balances).
    read_back_every: u64,
    killed_at: Option<Instant>,
    pub stats: Stats,
}

impl Harness {
    /// A harness whose data directory is `root/data` (the server's log `root/server.log`)
    /// and whose server runs with `args` (beyond address, log level and data directory).
    pub fn new(bin: PathBuf, root: &Path, args: &[&str], seed: u64) -> Harness {
        let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        args.extend(["--dedup-window-secs".into(), DEDUP_WINDOW_SECS.to_string()]);
        Harness {
            bin,
            root: root.to_path_buf(),
            args,
            rng: Rng::new(seed),
            next_ref: Arc::new(AtomicU64::new(1)),
            committed: 0,
            balances: vec![0; ACCOUNTS as usize + 1],
            sent: HashMap::new(),
            acks: Vec::new(),
            read_back_every: 1,
            killed_at: None,
            stats: Stats::default(),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// The last lines of the server's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Lines of the server's log (all its runs) containing `text`.
    pub fn log_lines_containing(&self, text: &str) -> usize {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        log.lines().filter(|l| l.contains(text)).count()
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// A uniformly random duration in `lo..hi`.
    pub fn random_between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_micros() as u64;
        lo + Duration::from_micros(self.rng.below(span.max(1)))
    }

    /// Starts the server without waiting for it.
    pub fn spawn(&self) -> Result<ServerProcess, String> {
        ServerProcess::spawn(&self.bin, &self.data(), &self.args, &self.log())
    }

    /// Starts the server, waits until it serves (counting the time), then checks it
    /// against the model and resubmits what the last kill left unanswered.
    pub async fn start(&mut self) -> Result<(ServerProcess, Channel), String> {
        let mut server = self.spawn()?;
        let (took, channel) = server
            .wait_serving()
            .await
            .map_err(|e| format!("{e}\nserver log:\n{}", self.log_tail()))?;
        self.stats.restart.push(took);
        self.check(&channel).await?;
        Ok((server, channel))
    }

    /// Kills the server with SIGKILL, joins the load and takes what it saw into the model.
    pub async fn kill(&mut self, server: &mut ServerProcess, load: Load) -> Result<(), String> {
        let status = server.kill9();
        self.killed(status, load).await
    }

    /// The server has ended (`status`): joins the load and takes what it saw in.
    pub async fn killed(&mut self, status: ExitStatus, load: Load) -> Result<(), String> {
        self.killed_at = Some(Instant::now());
        self.stats.ended(status);
        self.stats.cycles += 1;
        for task in load.tasks {
            let log = tokio::time::timeout(PATIENCE, task)
                .await
                .map_err(|_| "a load client hung after the kill".to_owned())?
                .map_err(|e| format!("load client: {e}"))?;
            self.sent.extend(log.sent);
            self.acks.extend(log.acks);
        }
        Ok(())
    }

    /// Starts `unary` SubmitAndWait clients and `batchers` SubmitBatchAndWait clients
    /// (`batch` operations each), all at COMMITTED, on `channel`.
    pub fn load(&mut self, channel: &Channel, unary: usize, batchers: usize, batch: usize) -> Load {
        let acked = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for i in 0..unary + batchers {
            let size = if i < unary { 1 } else { batch.max(1) };
            let client = LedgerClient::new(channel.clone())
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20);
            let seed = self.rng.next_u64();
            let (acked, stop, next_ref) = (
                Arc::clone(&acked),
                Arc::clone(&stop),
                Arc::clone(&self.next_ref),
            );
            tasks.push(tokio::spawn(client_loop(
                client,
                size,
                i < unary,
                seed,
                acked,
                stop,
                next_ref,
            )));
        }
        Load { tasks, acked, stop }
    }

    /// Reads back one in `every` acknowledgement (bulk loads); 1 reads back all.
    pub fn read_back_every(&mut self, every: u64) {
        self.read_back_every = every.max(1);
    }

    /// Transactions 1..=n are checked.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The checks after a start; see the module documentation.
    async fn check(&mut self, channel: &Channel) -> Result<(), String> {
        let mut c = LedgerClient::new(channel.clone());
        let index = c
            .get_pipeline_index(pb::GetPipelineIndexRequest {})
            .await
            .map_err(|e| format!("GetPipelineIndex: {e}"))?
            .into_inner();
        let n = index.committed_index;
        let before = self.committed;
        if n < before {
            return Err(format!(
                "committed index went back from {before} to {n}: checked transactions lost"
            ));
        }
        let mut acked: HashMap<u64, Ack> = HashMap::with_capacity(self.acks.len());
        for ack in std::mem::take(&mut self.acks) {
            if ack.tx_id > n {
                return Err(format!(
                    "LOST: acknowledged transaction {} (user_ref {}) is beyond the committed index {n}",
                    ack.tx_id, ack.user_ref
                ));
            }
            if ack.tx_id <= before {
                return Err(format!(
                    "acknowledged id {} was already taken before the last kill",
                    ack.tx_id
                ));
            }
            if acked.insert(ack.tx_id, ack).is_some() {
                return Err(format!("two acknowledgements for id {}", ack.tx_id));
            }
        }
        // Every unacknowledged id, and a sample of the acknowledged ones.
        let every = self.read_back_every;
        let wanted: Vec<u64> = (before + 1..=n)
            .filter(|id| !acked.contains_key(id) || id % every == 0)
            .collect();
        let fetched = fetch_all(channel, &wanted).await?;
        // Successful commits per user_ref, to catch one committed twice.
        let mut success: HashMap<u64, u64> = HashMap::new();
        let mut effects: Vec<(u64, Op)> = Vec::new();
        for id in before + 1..=n {
            let tx = fetched.get(&id);
            let (user_ref, fail_reason, original) = match (acked.get(&id), tx) {
                (Some(a), _) => (a.user_ref, a.fail_reason, a.original),
                (None, Some(tx)) => {
                    let original = tx.links.first().map_or(0, |l| l.to_tx_id);
                    (tx.user_ref, tx.fail_reason, original)
                }
                (None, None) => unreachable!("every unacknowledged id was fetched"),
            };
            let Some(&op) = self.sent.get(&user_ref) else {
                return Err(format!(
                    "transaction {id} has user_ref {user_ref}, which was never submitted (or was committed before)"
                ));
            };
            if let Some(tx) = tx {
                check_tx(id, tx, op, user_ref, fail_reason, original)?;
            }
            if fail_reason == 0 {
                if let Some(first) = success.insert(user_ref, id) {
                    return Err(format!(
                        "user_ref {user_ref} committed twice: transactions {first} and {id}"
                    ));
                }
                effects.push((id, op));
            } else if !op.may_fail_with(fail_reason) {
                return Err(format!(
                    "transaction {id} ({op:?}) failed with {fail_reason}"
                ));
            }
        }
        for (_, op) in &effects {
            self.apply(*op);
        }
        self.stats.acks_checked += acked.len() as u64;
        self.stats.acks_read_back +=
            acked.keys().filter(|id| fetched.contains_key(id)).count() as u64;
        self.stats.unacked_found += (n - before) - acked.len() as u64;
        self.committed = n;
        self.check_balances(&mut c, n).await?;

        // Retry what the kill left unanswered: committed ones must come back Duplicate of
        // the original, the others commit now. Rejected ones are decided: left alone.
        let acked_refs: HashSet<u64> = acked.values().map(|a| a.user_ref).collect();
        let rejected: HashSet<u64> = fetched
            .values()
            .filter(|t| t.fail_reason != 0)
            .map(|t| t.user_ref)
            .collect();
        let mut pending: Vec<(u64, Op)> = std::mem::take(&mut self.sent)
            .into_iter()
            .filter(|(r, _)| !acked_refs.contains(r) && !rejected.contains(r))
            .collect();
        pending.sort_unstable_by_key(|(r, _)| *r);
        let in_window = self
            .killed_at
            .is_some_and(|t| t.elapsed() < DEDUP_CHECKED_WITHIN);
        for (user_ref, op) in pending {
            let original = success.get(&user_ref).copied();
            let r = c
                .submit_and_wait(op.wire(user_ref))
                .await
                .map_err(|e| format!("retry of user_ref {user_ref}: {e}"))?
                .into_inner();
            match (original, r.fail_reason) {
                (Some(o), DUPLICATE) if r.original_transaction_id == o => {
                    self.stats.retries_duplicate += 1;
                }
                (Some(o), _) if in_window => {
                    return Err(format!(
                        "retry of user_ref {user_ref} (committed as {o} before the kill) got {r:?}: committed twice?"
                    ));
                }
                (None, DUPLICATE) => {
                    return Err(format!(
                        "retry of user_ref {user_ref} is a duplicate of {}, which holds no such user_ref",
                        r.original_transaction_id
                    ));
                }
                _ => self.stats.retries_committed += 1,
            }
            self.sent.insert(user_ref, op);
            self.acks.push(Ack {
                tx_id: r.transaction_id,
                user_ref,
                fail_reason: r.fail_reason,
                original: r.original_transaction_id,
            });
        }
        Ok(())
    }

    fn apply(&mut self, op: Op) {
        for (account, amount, debit) in op.entries() {
            let amount = amount as i64;
            self.balances[account as usize] += if debit { amount } else { -amount };
        }
    }

    /// The server's balances, once its readers have caught up with `n`, equal the model's.
    async fn check_balances(&self, c: &mut LedgerClient<Channel>, n: u64) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let r = c
                .get_balances(pb::GetBalancesRequest {
                    account_ids: (0..=ACCOUNTS).collect(),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("GetBalances: {e}"))?
                .into_inner();
            if r.last_snapshot_tx_id >= n {
                if r.balances != self.balances {
                    return Err(format!(
                        "balances at {n} differ from the model:\n server {:?}\n model  {:?}",
                        r.balances, self.balances
                    ));
                }
                if r.balances.iter().sum::<i64>() != 0 {
                    return Err(format!("balances at {n} do not sum to zero"));
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "balances stuck at {} below the committed index {n}",
                    r.last_snapshot_tx_id
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Submits `n` deposits in batches of `batch` at COMMITTED on `channel` (a fast way to
    /// grow the log); all acknowledged, or an error.
    pub async fn bulk(&mut self, channel: &Channel, n: u64, batch: usize) -> Result<(), String> {
        let mut c = LedgerClient::new(channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let mut done = 0;
        while done < n {
            let size = (n - done).min(batch as u64);
            let mut ops = Vec::with_capacity(size as usize);
            for _ in 0..size {
                let user_ref = self.next_ref.fetch_add(1, Ordering::Relaxed);
                let op = Op::Deposit {
                    account: 1 + self.rng.below(ACCOUNTS),
                    amount: 1 + self.rng.below(1000),
                };
                ops.push((user_ref, op));
            }
            let r = c
                .submit_batch_and_wait(pb::SubmitBatchAndWaitRequest {
                    operations: ops.iter().map(|(r, op)| op.wire(*r)).collect(),
                    wait_level: pb::WaitLevel::Committed.into(),
                })
                .await
                .map_err(|e| format!("bulk load: {e}"))?
                .into_inner();
            for ((user_ref, op), res) in ops.into_iter().zip(r.results) {
                self.sent.insert(user_ref, op);
                self.acks.push(Ack {
                    tx_id: res.transaction_id,
                    user_ref,
                    fail_reason: res.fail_reason,
                    original: res.original_transaction_id,
                });
            }
            done += size;
        }
        Ok(())
    }
}

/// One transaction read back agrees with what was submitted under its user_ref (and with
/// its acknowledgement, when it had one).
fn check_tx(
    id: u64,
    tx: &pb::GetTransactionResponse,
    op: Op,
    user_ref: u64,
    fail_reason: u32,
    original: u64,
) -> Result<(), String> {
    let mismatch = |what: &str| {
        Err(format!(
            "transaction {id}: {what} differs from what was submitted/acknowledged (user_ref {user_ref}, {op:?}, fail_reason {fail_reason}): {tx:?}"
        ))
    };
    if tx.tx_id != id || tx.user_ref != user_ref {
        return mismatch("id or user_ref");
    }
    if tx.fail_reason != fail_reason {
        return mismatch("outcome");
    }
    let mut entries: Vec<(u64, u64, bool)> = tx
        .entries
        .iter()
        .map(|e| (e.account_id, e.amount, e.kind() == pb::EntryKind::Debit))
        .collect();
    entries.sort_unstable();
    let expected = if fail_reason == 0 {
        op.entries()
    } else {
        Vec::new()
    };
    if entries != expected {
        return mismatch("entries");
    }
    if fail_reason == DUPLICATE && tx.links.first().map(|l| l.to_tx_id) != Some(original) {
        return mismatch("duplicate link");
    }
    Ok(())
}

/// GetTransaction of every id in `ids`, several at a time.
async fn fetch_all(
    channel: &Channel,
    ids: &[u64],
) -> Result<HashMap<u64, pb::GetTransactionResponse>, String> {
    const IN_FLIGHT: usize = 8;
    let mut tasks = Vec::new();
    for part in 0..IN_FLIGHT {
        let mine: Vec<u64> = ids.iter().skip(part).step_by(IN_FLIGHT).copied().collect();
        let mut c = LedgerClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(mine.len());
            for tx_id in mine {
                let tx = c
                    .get_transaction(pb::GetTransactionRequest {
                        tx_id,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| format!("LOST? GetTransaction({tx_id}): {e}"))?
                    .into_inner();
                out.push((tx_id, tx));
            }
            Ok::<_, String>(out)
        }));
    }
    let mut all = HashMap::with_capacity(ids.len());
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

/// One load client: submits until an error (the server is gone) or `stop`.
async fn client_loop(
    mut client: LedgerClient<Channel>,
    size: usize,
    unary: bool,
    seed: u64,
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    next_ref: Arc<AtomicU64>,
) -> ClientLog {
    let mut rng = Rng::new(seed);
    let mut log = ClientLog::default();
    while !stop.load(Ordering::Relaxed) {
        let first = log.sent.len();
        for _ in 0..size {
            let user_ref = next_ref.fetch_add(1, Ordering::Relaxed);
            log.sent.push((user_ref, Op::random(&mut rng)));
        }
        let ops = &log.sent[first..];
        let results = if unary {
            let (user_ref, op) = ops[0];
            let call = client.submit_and_wait(op.wire(user_ref));
            match tokio::time::timeout(PATIENCE, call).await {
                Ok(Ok(r)) => vec![r.into_inner()],
                _ => break,
            }
        } else {
            let call = client.submit_batch_and_wait(pb::SubmitBatchAndWaitRequest {
                operations: ops.iter().map(|(r, op)| op.wire(*r)).collect(),
                wait_level: pb::WaitLevel::Committed.into(),
            });
            match tokio::time::timeout(PATIENCE, call).await {
                Ok(Ok(r)) => r.into_inner().results,
                _ => break,
            }
        };
        for (&(user_ref, _), r) in ops.iter().zip(&results) {
            log.acks.push(Ack {
                tx_id: r.transaction_id,
                user_ref,
                fail_reason: r.fail_reason,
                original: r.original_transaction_id,
            });
        }
        acked.fetch_add(results.len() as u64, Ordering::Relaxed);
    }
    log
}

/// Waits for a file whose name ends in `suffix` to be created in `dir` and SIGKILLs
/// `pid` the moment it is (inotify: no polling loop competing for the 2 cores). Returns
/// the name, or `None` if none appeared within `patience`.
pub fn kill_on_create(dir: &Path, suffix: &str, pid: i32, patience: Duration) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let cdir = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: plain syscalls on a descriptor this function owns and closes.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a valid descriptor and NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(fd, cdir.as_ptr(), libc::IN_CREATE) };
    let mut caught = None;
    let deadline = Instant::now() + patience;
    let mut buf = [0u8; 4096];
    while wd >= 0 && caught.is_none() && Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 20) } <= 0 {
            continue;
        }
        // SAFETY: reads into a buffer we own, of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        let mut at = 0usize;
        // Events: wd i32, mask u32, cookie u32, len u32, then `len` bytes of name.
        while n > 0 && at + 16 <= n as usize {
            let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap_or_default());
            let name = &buf[at + 16..(at + 16 + len as usize).min(n as usize)];
            let name = String::from_utf8_lossy(name)
                .trim_end_matches('\0')
                .to_owned();
            if name.ends_with(suffix) {
                kill(pid, libc::SIGKILL);
                caught = Some(name);
                break;
            }
            at += 16 + len as usize;
        }
    }
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    caught
}

/// The inode of `path`, if it exists.
pub fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Names in `dir` ending in `suffix`.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(suffix))
                .collect()
        })
        .unwrap_or_default()
}

/// The private writable memory of process `pid` in bytes (`VmData`: what RLIMIT_DATA
/// counts), if readable.
pub fn vm_data(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmData:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Caps the private writable memory of running process `pid` at `bytes` (RLIMIT_DATA via
/// prlimit): from then on an allocation past it fails, and Rust aborts the process.
/// RLIMIT_DATA rather than RLIMIT_AS: glibc reserves 64 MiB per malloc arena up front,
/// so the address space barely moves while the heap grows inside it, but each piece of
/// an arena made writable counts against RLIMIT_DATA. No core file: the abort is the
/// point, not its dump.
pub fn limit_memory(pid: i32, bytes: u64) -> Result<(), String> {
    for (resource, bytes) in [(libc::RLIMIT_CORE, 0), (libc::RLIMIT_DATA, bytes)] {
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        // SAFETY: prlimit(2) with a valid new limit and no old-limit pointer.
        let r = unsafe { libc::prlimit(pid, resource, &limit, std::ptr::null_mut()) };
        if r != 0 {
            return Err(format!("prlimit: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Server settings of each scenario (beyond address, log level, data directory).
pub mod args {
    /// Snapshots every 50k transactions keep recovery short across many cycles.
    pub const KILL9: &[&str] = &["--max-accounts", "1000", "--snapshot-interval-tx", "50000"];
    /// A million accounts make each snapshot file ~tens of MB, written often: the temp
    /// file exists long enough to be caught.
    pub const SNAPSHOT: &[&str] = &[
        "--max-accounts",
        "1000000",
        "--snapshot-interval-tx",
        "2000",
    ];
    /// 16 KiB segments: a rotation every few hundred transactions.
    pub const ROTATION: &[&str] = &[
        "--max-accounts",
        "1000",
        "--wal-segment-bytes",
        "16384",
        "--wal-frame-bytes",
        "4096",
        "--snapshot-interval-tx",
        "20000",
        "--history-retention-tx",
        "100000",
    ];
    /// No snapshots: every start replays the whole log.
    pub const RECOVERY: &[&str] = &[
        "--max-accounts",
        "1000",
        "--snapshot-interval-tx",
        "1000000000",
        "--snapshot-interval-secs",
        "1000000",
    ];
    pub const OOM: &[&str] = &["--max-accounts", "1000", "--snapshot-interval-tx", "50000"];
}

/// Load of every scenario: 4 unary clients and one of batches of 20.
fn load(h: &mut Harness, channel: &Channel) -> Load {
    h.load(channel, 4, 1, 20)
}

/// Scenario 1: SIGKILL at a random moment within `max_delay` of the load starting,
/// `cycles` times.
pub async fn kill9_cycles(h: &mut Harness, cycles: u64, max_delay: Duration) -> Result<(), String> {
    let (mut server, mut channel) = h.start().await?;
    for _ in 0..cycles {
        let load = load(h, &channel);
        let delay = h.random_between(Duration::ZERO, max_delay);
        tokio::time::sleep(delay).await;
        h.kill(&mut server, load).await?;
        (server, channel) = h.start().await?;
    }
    Ok(())
}

/// Kills the server the moment a `*suffix` file appears in `dir` (armed after a random
/// delay under load), or after `patience` if none does. Returns the caught file's path
/// and inode if it was still there after death.
async fn kill_on_temp(
    h: &mut Harness,
    server: &mut ServerProcess,
    channel: &Channel,
    dir: PathBuf,
    suffix: &'static str,
    patience: Duration,
) -> Result<Option<(PathBuf, u64)>, String> {
    let load = load(h, channel);
    let arm = h.random_between(Duration::ZERO, Duration::from_millis(300));
    tokio::time::sleep(arm).await;
    let pid = server.pid();
    let watch_dir = dir.clone();
    let caught =
        tokio::task::spawn_blocking(move || kill_on_create(&watch_dir, suffix, pid, patience))
            .await
            .map_err(|e| e.to_string())?;
    h.kill(server, load).await?;
    let Some(name) = caught else {
        h.stats.temp_missed += 1;
        return Ok(None);
    };
    let path = dir.join(name);
    Ok(match inode(&path) {
        Some(ino) => {
            h.stats.temp_caught += 1;
            Some((path, ino))
        }
        // Renamed between the event and the kill.
        None => {
            h.stats.temp_missed += 1;
            None
        }
    })
}

/// The next start deleted the temp file a kill left (a file of that name now, if any,
/// is a new one).
fn assert_cleaned(left: Option<(PathBuf, u64)>) -> Result<(), String> {
    match left {
        Some((path, ino)) if inode(&path) == Some(ino) => Err(format!(
            "{} survived a restart: temp files are not cleaned up",
            path.display()
        )),
        _ => Ok(()),
    }
}

/// Scenario 2: SIGKILL while a snapshot is being written (`snapshot-*.snap.tmp` exists).
pub async fn snapshot_kills(h: &mut Harness, cycles: u64) -> Result<(), String> {
    let (mut server, mut channel) = h.start().await?;
    let dir = h.data().join("snapshots");
    for _ in 0..cycles {
        let left = kill_on_temp(
            h,
            &mut server,
            &channel,
            dir.clone(),
            ".snap.tmp",
            Duration::from_secs(10),
        )
        .await?;
        (server, channel) = h.start().await?;
        assert_cleaned(left)?;
    }
    Ok(())
}

/// Scenario 3: tiny segments: every other kill at a random moment, the others while a new
/// segment's `wal-*.seg.tmp` exists.
pub async fn rotation_kills(
    h: &mut Harness,
    cycles: u64,
    max_delay: Duration,
) -> Result<(), String> {
    let (mut server, mut channel) = h.start().await?;
    let dir = h.data().join("wal");
    for cycle in 0..cycles {
        let mut left = None;
        if cycle % 2 == 0 {
            let load = load(h, &channel);
            let delay = h.random_between(Duration::ZERO, max_delay);
            tokio::time::sleep(delay).await;
            h.kill(&mut server, load).await?;
        } else {
            left = kill_on_temp(
                h,
                &mut server,
                &channel,
                dir.clone(),
                ".seg.tmp",
                Duration::from_secs(5),
            )
            .await?;
        }
        (server, channel) = h.start().await?;
        assert_cleaned(left)?;
    }
    Ok(())
}

/// Scenario 4: a log of `log_tx` transactions and no snapshot; then `rounds` times:
/// `kills` starts in a row killed before they serve (at a random point of the last full
/// start's time), a full start (checked), a little more load and a kill under it.
pub async fn recovery_kills(
    h: &mut Harness,
    log_tx: u64,
    rounds: u64,
    kills: u64,
) -> Result<(), String> {
    let (mut server, channel) = h.start().await?;
    h.bulk(&channel, log_tx, 2000).await?;
    // Read back 1 in 100 acknowledgements: the rest are covered by the exact index and
    // balances.
    h.read_back_every(100);
    let status = server.kill9();
    h.stats.ended(status);
    h.stats.cycles += 1;
    let (mut server, mut channel) = h.start().await?;
    h.read_back_every(1);
    for _ in 0..rounds {
        let load = load(h, &channel);
        let delay = h.random_between(Duration::ZERO, Duration::from_millis(300));
        tokio::time::sleep(delay).await;
        h.kill(&mut server, load).await?;
        let full = h.stats.restart.last().copied().unwrap_or_default();
        for _ in 0..kills {
            let mut s = h.spawn()?;
            let at = h.random_between(Duration::from_millis(1), full.mul_f64(0.9));
            tokio::time::sleep(at).await;
            if s.has_listened() {
                h.stats.recovery_kills_late += 1;
            } else {
                h.stats.recovery_kills += 1;
            }
            let status = s.kill9();
            h.stats.ended(status);
        }
        (server, channel) = h.start().await?;
    }
    Ok(())
}

/// Scenario 5: under load, the server's memory is capped just above what it uses
/// (RLIMIT_DATA, see [`limit_memory`]): the next allocations past it fail and the process
/// dies of it. Then restart and check, `rounds` times.
pub async fn oom_kills(h: &mut Harness, rounds: u64) -> Result<(), String> {
    let (mut server, mut channel) = h.start().await?;
    h.read_back_every(1);
    for _ in 0..rounds {
        let load = load(h, &channel);
        let delay = h.random_between(Duration::from_millis(50), Duration::from_millis(300));
        tokio::time::sleep(delay).await;
        let pid = server.pid();
        let margin = h.rng().below(4 << 20);
        let vm = vm_data(pid).ok_or("no VmData")?;
        limit_memory(pid, vm + margin)?;
        let mut deadline = Instant::now() + Duration::from_secs(20);
        let mut tightened = false;
        let mut refused_since: Option<Instant> = None;
        let status = loop {
            if let Some(status) = server.try_wait() {
                break status;
            }
            if load.finished() {
                // Every client refused with the process still up: it failed in place.
                // Give a dying process a moment, then SIGKILL.
                let since = *refused_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(2) {
                    h.stats.oom_failed_in_place += 1;
                    break server.kill9();
                }
            } else if Instant::now() > deadline {
                if tightened {
                    h.stats.oom_never_hit += 1;
                    break server.kill9();
                }
                // Still within the margin: take the margin away.
                tightened = true;
                limit_memory(pid, vm_data(pid).unwrap_or(vm))?;
                deadline = Instant::now() + Duration::from_secs(20);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        h.killed(status, load).await?;
        (server, channel) = h.start().await?;
    }
    Ok(())
}
