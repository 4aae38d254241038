//! Idempotent writes against a cluster: each client task submits one operation at a time
//! with `SubmitAndWait` at `REPLICATED` through its own `ledger_client::Client` (leader
//! following, retries), every operation under a new nonzero user_ref, resent with the same
//! user_ref until it is acknowledged. Every acknowledgement is recorded with when it came
//! and which address gave it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ledger_client::{Client, ConnectOptions, pb};

use crate::crash::Op;
use crate::workload::Rng;

/// One operation is resent for at most this long (well inside the nodes' idempotency
/// window, so a resend can never commit it twice).
const OP_PATIENCE: Duration = Duration::from_secs(60);
/// The pause between resends of an operation the client gave up on.
const RESEND_PAUSE: Duration = Duration::from_millis(20);
/// Operations per client task, at most.
const OPS_PER_CLIENT_MAX: u64 = 10_000_000;
/// How long joining the clients may take after a stop.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);

/// An acknowledgement: the transaction is durable on a majority.
#[derive(Clone, Debug)]
pub struct Ack {
    pub tx_id: u64,
    pub user_ref: u64,
    pub op: Op,
    /// 0 committed, else the FailReason code (7: a duplicate of `original`).
    pub fail_reason: u32,
    pub original: u64,
    /// When the answer came, and from which address.
    pub at: Instant,
    pub by: String,
}

impl Ack {
    /// The answer `r` to `op` (sent with `user_ref`), just received from `by`.
    pub fn of(r: &pb::SubmitAndWaitResponse, user_ref: u64, op: Op, by: String) -> Ack {
        Ack {
            tx_id: r.transaction_id,
            user_ref,
            op,
            fail_reason: r.fail_reason,
            original: r.original_transaction_id,
            at: Instant::now(),
            by,
        }
    }
}

/// How the clients reach the cluster.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub clients: usize,
    pub endpoints: Vec<String>,
    /// Per attempt: a write waiting on a deposed or partitioned leader ends by then.
    pub timeout: Duration,
    /// How long one call follows leaders and retries before returning.
    pub retry_budget: Duration,
    pub seed: u64,
}

impl LoadOptions {
    pub fn new(clients: usize, endpoints: Vec<String>, seed: u64) -> LoadOptions {
        LoadOptions {
            clients,
            endpoints,
            timeout: Duration::from_secs(3),
            retry_budget: Duration::from_secs(10),
            seed,
        }
    }
}

/// What a finished load saw.
#[derive(Debug, Default)]
pub struct LoadLog {
    pub acks: Vec<Ack>,
    /// Sent, never acknowledged (the load stopped while they were being resent): each may
    /// or may not have committed, never twice.
    pub unresolved: Vec<(u64, Op)>,
    /// Calls that returned an error (then resent).
    pub errors: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    acks: Mutex<Vec<Ack>>,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    stop: AtomicBool,
}

/// A client of one node only: never retried, never following a leader elsewhere (a
/// refusal that names a leader would move a `Client`'s next call there, so it is made
/// afresh when that happened).
#[derive(Debug)]
pub struct Pinned {
    addr: String,
    timeout: Duration,
    client: Client,
}

impl Pinned {
    pub fn new(addr: String, timeout: Duration) -> Result<Pinned, String> {
        let client = Pinned::client(&addr, timeout)?;
        Ok(Pinned {
            addr,
            timeout,
            client,
        })
    }

    fn client(addr: &str, timeout: Duration) -> Result<Client, String> {
        Client::new(ConnectOptions {
            timeout,
            retry_budget: Duration::ZERO,
            ..ConnectOptions::new([addr.to_owned()])
        })
        .map_err(|e| e.to_string())
    }

    /// The client, on this node.
    pub fn get(&mut self) -> Result<&Client, String> {
        if self.client.current_address() != self.addr {
            self.client = Pinned::client(&self.addr, self.timeout)?;
        }
        Ok(&self.client)
    }
}

/// Client tasks writing until [`Load::finish`].
#[derive(Debug)]
pub struct Load {
    tasks: Vec<tokio::task::JoinHandle<Vec<(u64, Op)>>>,
    shared: Arc<Shared>,
}

impl Load {
    /// Starts `options.clients` tasks; user_refs come from `next_ref` (never 0).
    pub fn start(options: &LoadOptions, next_ref: &Arc<AtomicU64>) -> Result<Load, String> {
        let shared = Arc::new(Shared::default());
        let mut rng = Rng::new(options.seed);
        let mut tasks = Vec::new();
        for _ in 0..options.clients {
            let client = Client::new(ConnectOptions {
                timeout: options.timeout,
                retry_budget: options.retry_budget,
                ..ConnectOptions::new(options.endpoints.clone())
            })
            .map_err(|e| e.to_string())?;
            tasks.push(tokio::spawn(client_loop(
                client,
                Rng::new(rng.next_u64()),
                Arc::clone(next_ref),
                Arc::clone(&shared),
            )));
        }
        Ok(Load { tasks, shared })
    }

    /// Acknowledgements so far.
    pub fn acked(&self) -> usize {
        self.shared
            .acks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The acknowledgements from index `from` on (in the order they came).
    pub fn acks_from(&self, from: usize) -> Vec<Ack> {
        let acks = self
            .shared
            .acks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        acks.get(from..).map(<[Ack]>::to_vec).unwrap_or_default()
    }

    /// Waits until `n` more acknowledgements than now have come, up to `patience`.
    pub async fn wait_acks(&self, n: usize, patience: Duration) -> Result<(), String> {
        let target = self.acked() + n;
        let deadline = Instant::now() + patience;
        while self.acked() < target {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} of {n} acknowledgements within {patience:?} (last error: {:?})",
                    n + self.acked() - target,
                    self.last_error()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the clients after their current operation and collects what they saw.
    pub async fn finish(self) -> Result<LoadLog, String> {
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut unresolved = Vec::new();
        let shared = self.shared;
        for task in self.tasks {
            let left = tokio::time::timeout(JOIN_PATIENCE, task)
                .await
                .map_err(|_| "a load client hung after the stop".to_owned())?
                .map_err(|e| format!("load client: {e}"))?;
            unresolved.extend(left);
        }
        let acks = std::mem::take(&mut *shared.acks.lock().unwrap_or_else(PoisonError::into_inner));
        let last_error = shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok(LoadLog {
            acks,
            unresolved,
            errors: shared.errors.load(Ordering::Relaxed),
            last_error,
        })
    }
}

/// One client: operations one at a time until stopped; returns the operation it was
/// still resending, if any.
async fn client_loop(
    client: Client,
    mut rng: Rng,
    next_ref: Arc<AtomicU64>,
    shared: Arc<Shared>,
) -> Vec<(u64, Op)> {
    for _ in 0..OPS_PER_CLIENT_MAX {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let user_ref = next_ref.fetch_add(1, Ordering::Relaxed);
        let op = Op::random(&mut rng);
        let request = op.wire_at(user_ref, pb::WaitLevel::Replicated);
        let started = Instant::now();
        loop {
            match client.submit_and_wait(request.clone()).await {
                Ok(r) => {
                    let ack = Ack::of(&r, user_ref, op, client.current_address());
                    shared
                        .acks
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(ack);
                    break;
                }
                Err(e) => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    *shared
                        .last_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                    if shared.stop.load(Ordering::Relaxed) || started.elapsed() > OP_PATIENCE {
                        return vec![(user_ref, op)];
                    }
                    tokio::time::sleep(RESEND_PAUSE).await;
                }
            }
        }
    }
    Vec::new()
}
