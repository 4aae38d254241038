//! The client: one channel per address, the current address, and the retry loop (the
//! rules are in the crate docs).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, ConnectError, Status};

use crate::error::{Error, source_chain};
use crate::options::{Auth, ConnectOptions};
use crate::pb::ledger_client::LedgerClient;

/// The generated client on one node's channel; it sends the token with every call.
pub type Stub = LedgerClient<InterceptedService<Channel, Auth>>;

/// The most attempts one call makes, whatever its retry budget.
pub const ATTEMPTS_MAX: u32 = 64;
const BACKOFF_INITIAL: Duration = Duration::from_millis(50);
/// Short: an election takes well under a second, and a client backing off longer than
/// that only adds to the failover its callers see.
const BACKOFF_MAX: Duration = Duration::from_millis(250);
/// Channels kept at once: the endpoints plus the leaders servers named; past it the cache
/// starts over (a server naming ever new addresses cannot grow it without bound).
const CHANNELS_MAX: usize = 64;
/// The largest response accepted (a page of history, a big batch's results).
const RESPONSE_BYTES_MAX: usize = 64 << 20;
/// The response metadata a refusing node names the leader's `host:port` with.
const LEADER_ADDR: &str = "x-ledger-leader-addr";

/// A handle on the ledger's servers that follows the leader and retries where that is
/// safe (see the crate docs). Clones share the channels and the current address.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    options: ConnectOptions,
    auth: Auth,
    state: Mutex<State>,
}

struct State {
    /// Where calls go first: an endpoint, or the leader a node named.
    current: String,
    /// The index in `options.endpoints` to move to when `current` fails.
    next_endpoint: usize,
    /// One channel per address, connected on first use.
    channels: HashMap<String, Channel>,
}

/// How an attempt failed: what it proves about the call, and so where it may go next.
enum Failure {
    /// The node refused it (nothing executed) and named the leader.
    Redirect(String),
    /// Nothing executed: a refusal naming no leader, or the request was never sent.
    NotExecuted,
    /// The connection broke or the attempt timed out: it may have executed.
    Unknown,
    /// The server's answer: returned as it is.
    Answer,
}

impl Client {
    /// A client for `options`; checks the addresses, TLS settings and token, and connects
    /// on the first call.
    pub fn new(options: ConnectOptions) -> Result<Client, Error> {
        let Some(first) = options.endpoints.first() else {
            return Err(Error::NoEndpoints);
        };
        for address in &options.endpoints {
            options.endpoint(address)?;
        }
        let state = State {
            current: first.clone(),
            next_endpoint: 1 % options.endpoints.len(),
            channels: HashMap::new(),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                auth: options.auth()?,
                options,
                state: Mutex::new(state),
            }),
        })
    }

    /// Where the next call goes first: an endpoint, or the leader a server named.
    pub fn current_address(&self) -> String {
        self.state().current.clone()
    }

    /// Runs `rpc` on the current node's [`Stub`], following the leader and retrying by
    /// the crate's rules; `idempotent` says whether sending the call twice is harmless
    /// (a read, or writes that all carry a nonzero `user_ref`). `rpc` is called once per
    /// attempt. The typed methods ([`Client::get_balance`], ...) call this; use it for
    /// the streaming RPCs (only opening the stream is retried).
    pub async fn call<T, F, Fut>(&self, idempotent: bool, mut rpc: F) -> Result<T, Error>
    where
        F: FnMut(Stub) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.inner.options.retry_budget;
        let mut backoff = BACKOFF_INITIAL;
        let mut redirects = 0u32;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let address = self.current_address();
            let (failure, error) = match self.stub(&address).await {
                Ok(stub) => match rpc(stub).await {
                    Ok(response) => return Ok(response.into_inner()),
                    Err(status) => classify(&address, status),
                },
                Err(error @ Error::Connect { .. }) => (Failure::NotExecuted, error),
                Err(error) => return Err(error),
            };
            if matches!(error, Error::Transport { .. }) {
                // The channel may be broken: the next use connects afresh, so a failure
                // to reconnect shows as "never sent".
                self.state().channels.remove(&address);
            }
            let wait = match failure {
                Failure::Answer => return Err(error),
                Failure::Unknown if !idempotent => return Err(error),
                Failure::Redirect(leader) => {
                    self.state().current = leader;
                    redirects += 1;
                    // Follow a fresh hint at once; a chain of them waits (an election).
                    if redirects == 1 {
                        Duration::ZERO
                    } else {
                        backoff
                    }
                }
                Failure::NotExecuted | Failure::Unknown => {
                    self.rotate(&address);
                    backoff
                }
            };
            if attempts >= ATTEMPTS_MAX || Instant::now() + wait >= deadline {
                return Err(error);
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// The stub for `address`, connecting (and caching the channel) on first use.
    async fn stub(&self, address: &str) -> Result<Stub, Error> {
        let cached = self.state().channels.get(address).cloned();
        let channel = match cached {
            Some(channel) => channel,
            None => {
                let channel = self
                    .inner
                    .options
                    .endpoint(address)?
                    .connect()
                    .await
                    .map_err(|e| Error::Connect {
                        address: address.to_owned(),
                        reason: source_chain(&e),
                    })?;
                let mut state = self.state();
                if state.channels.len() >= CHANNELS_MAX {
                    state.channels.clear();
                }
                state
                    .channels
                    .entry(address.to_owned())
                    .or_insert(channel)
                    .clone()
            }
        };
        Ok(
            LedgerClient::with_interceptor(channel, self.inner.auth.clone())
                .max_decoding_message_size(RESPONSE_BYTES_MAX),
        )
    }

    /// Moves on from `failed` to the next endpoint, unless another call already has.
    fn rotate(&self, failed: &str) {
        let endpoints = &self.inner.options.endpoints;
        let mut state = self.state();
        if state.current == failed {
            state.current = endpoints[state.next_endpoint].clone();
            state.next_endpoint = (state.next_endpoint + 1) % endpoints.len();
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state whole: a panic elsewhere cannot break it.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a failed attempt's status proves, and the error to return if it is the last.
fn classify(address: &str, status: Status) -> (Failure, Error) {
    let address = address.to_owned();
    // A status with a source was made here from a transport error; one without came from
    // the server.
    if std::error::Error::source(&status).is_none() {
        let failure = match (status.code(), leader_address(&status)) {
            (Code::FailedPrecondition | Code::Unavailable, Some(leader)) => {
                Failure::Redirect(leader)
            }
            (Code::Unavailable, None) => Failure::NotExecuted,
            // A cluster node lost its leadership while the write waited: it may still
            // commit under the new leader. Retried only when idempotent.
            (Code::Aborted, _) => Failure::Unknown,
            _ => Failure::Answer,
        };
        return (failure, Error::Status { address, status });
    }
    let failure = if never_sent(&status) {
        Failure::NotExecuted
    } else {
        Failure::Unknown
    };
    (failure, Error::Transport { address, status })
}

/// The leader's address a refusing node put in its response metadata.
fn leader_address(status: &Status) -> Option<String> {
    let value = status.metadata().get(LEADER_ADDR)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// Whether the transport failed while connecting (tonic's `ConnectError`): the request
/// was never written.
fn never_sent(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.inner.options)
            .field("current", &self.current_address())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataMap;

    use super::*;

    fn refusal(code: Code, leader: Option<&str>) -> Status {
        let mut metadata = MetadataMap::new();
        if let Some(leader) = leader {
            metadata.insert(LEADER_ADDR, leader.parse().unwrap());
            metadata.insert("x-ledger-leader-id", "2".parse().unwrap());
        }
        Status::with_metadata(code, "not the leader", metadata)
    }

    #[test]
    fn statuses_say_whether_the_call_may_go_elsewhere() {
        let kind = |status| match classify("a:1", status) {
            (Failure::Redirect(to), Error::Status { .. }) => format!("redirect {to}"),
            (Failure::NotExecuted, _) => "not executed".into(),
            (Failure::Unknown, Error::Transport { .. }) => "unknown".into(),
            (Failure::Unknown, Error::Status { .. }) => "unknown (answered)".into(),
            (Failure::Answer, Error::Status { .. }) => "answer".into(),
            _ => "inconsistent".into(),
        };
        let leader = Some("b:2");
        assert_eq!(
            kind(refusal(Code::FailedPrecondition, leader)),
            "redirect b:2"
        );
        assert_eq!(kind(refusal(Code::Unavailable, leader)), "redirect b:2");
        assert_eq!(kind(refusal(Code::Unavailable, None)), "not executed");
        // Not yet durable (GetTransaction): an answer, not a redirect.
        assert_eq!(kind(refusal(Code::FailedPrecondition, None)), "answer");
        assert_eq!(kind(refusal(Code::Aborted, None)), "unknown (answered)");
        assert_eq!(kind(refusal(Code::InvalidArgument, leader)), "answer");
        let connect = Status::from_error(Box::new(ConnectError("refused".into())));
        assert_eq!(kind(connect), "not executed");
        let timeout = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(kind(timeout), "unknown");
    }

    #[test]
    fn endpoints_rotate_round_robin_and_redirects_stick() {
        let client = Client::new(ConnectOptions::new(["a:1", "b:2", "c:3"])).unwrap();
        assert_eq!(client.current_address(), "a:1");
        client.rotate("a:1");
        assert_eq!(client.current_address(), "b:2");
        // A stale failure (another call moved on already) moves nothing.
        client.rotate("a:1");
        assert_eq!(client.current_address(), "b:2");
        client.rotate("b:2");
        client.rotate("c:3");
        assert_eq!(client.current_address(), "a:1");
        assert!(matches!(
            Client::new(ConnectOptions::new(Vec::<String>::new())),
            Err(Error::NoEndpoints)
        ));
        assert!(matches!(
            Client::new(ConnectOptions::new(["a:1", "bad address"])),
            Err(Error::InvalidAddress { .. })
        ));
    }
}
