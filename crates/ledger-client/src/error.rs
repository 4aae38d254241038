//! The one error type of the client.

use tonic::Status;

/// Why a call (or building a [`Client`](crate::Client)) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`ConnectOptions::endpoints`](crate::ConnectOptions::endpoints) is empty.
    #[error("no server address given")]
    NoEndpoints,
    /// An address that is not a valid URI: one given, or a leader address a server sent.
    #[error("server address {address:?}: {reason}")]
    InvalidAddress { address: String, reason: String },
    /// The TLS settings were refused.
    #[error("TLS: {reason}")]
    Tls { reason: String },
    /// The bearer token cannot go in a header (it must be printable ASCII).
    #[error("the token is not printable ASCII")]
    InvalidToken,
    /// No connection could be made: the request was not sent.
    #[error("cannot reach {address}: {reason}")]
    Connect { address: String, reason: String },
    /// The connection broke or the call timed out after the request may have been sent:
    /// it may or may not have executed.
    #[error(
        "{address}: no answer, the outcome is unknown: {}",
        transport_reason(status)
    )]
    Transport { address: String, status: Status },
    /// The server answered with an error status.
    #[error("server {address}: {:?}: {}", status.code(), status.message())]
    Status { address: String, status: Status },
}

impl Error {
    /// The gRPC status of a call that got one (an answer or a transport failure).
    pub fn status(&self) -> Option<&Status> {
        match self {
            Error::Transport { status, .. } | Error::Status { status, .. } => Some(status),
            _ => None,
        }
    }
}

/// An error and its causes on one line (tonic's transport errors hide the useful part in
/// their sources); a cause that repeats the text before it is left out.
pub fn source_chain(e: &dyn std::error::Error) -> String {
    chain(e.to_string(), e.source())
}

/// A transport status's message and its causes (its `Display` would print them as Debug).
fn transport_reason(status: &Status) -> String {
    chain(
        status.message().to_owned(),
        std::error::Error::source(status),
    )
}

fn chain(mut out: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut last = out.clone();
    while let Some(s) = source {
        let text = s.to_string();
        if text != last {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
        source = s.source();
    }
    out
}
