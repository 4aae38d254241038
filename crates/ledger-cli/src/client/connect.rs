//! Reaching the servers: the connection flags, read into `ledger_client`'s options.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use ledger_client::{Client, ConnectOptions};

use crate::exit::CliError;

/// How to reach the servers, and how to print.
#[derive(Args, Debug, Clone)]
pub struct Connect {
    /// Server addresses, comma-separated (host:port, or http:// or https:// URLs): calls
    /// go to the first and follow the leader it names; the next is tried when one fails.
    #[arg(
        long,
        env = "LEDGER_SERVER",
        default_value = "127.0.0.1:50051",
        value_delimiter = ','
    )]
    pub server: Vec<String>,
    /// CA certificate (PEM) the server's certificate must chain to; turns TLS on.
    #[arg(long, env = "LEDGER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Name to check the server's certificate against [default: the address's host].
    #[arg(long, env = "LEDGER_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
    /// File whose first line is a bearer token (the server's --token-file entries).
    #[arg(long, env = "LEDGER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Seconds to wait for the connection and for each answer.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Seconds to keep retrying (another server, a new leader, a restart) before giving
    /// up; 0: never retry. A submission without --user-ref is not retried once it may
    /// have executed.
    #[arg(long, default_value_t = 5)]
    pub retry: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A client for the servers `c` names (it connects on its first call).
pub fn connect(c: &Connect) -> Result<Client, CliError> {
    let token = match &c.token_file {
        Some(path) => Some(token(path)?),
        None => None,
    };
    let options = ConnectOptions {
        endpoints: c.server.clone(),
        tls_ca_pem: c.tls_ca.as_deref().map(read).transpose()?,
        tls_domain: c.tls_domain.clone(),
        token,
        timeout: Duration::from_secs(c.timeout.max(1)),
        retry_budget: Duration::from_secs(c.retry),
    };
    Client::new(options).map_err(|e| match (&e, &c.token_file) {
        (ledger_client::Error::InvalidToken, Some(path)) => {
            CliError::usage(format!("{}: {e}", path.display()))
        }
        _ => CliError::usage(e),
    })
}

/// The first line of a token file.
fn token(path: &Path) -> Result<String, CliError> {
    let text = String::from_utf8(read(path)?)
        .map_err(|_| CliError::Usage(format!("{}: not UTF-8", path.display())))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(CliError::Usage(format!(
            "{}: the first line holds no token",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}
