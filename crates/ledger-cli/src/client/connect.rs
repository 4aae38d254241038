//! Reaching the server: address, TLS, bearer token, timeouts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use ledger_server::pb::ledger_client::LedgerClient;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::exit::CliError;

/// How to reach the server, and how to print.
#[derive(Args, Debug, Clone)]
pub struct Connect {
    /// Server address: host:port, or an http:// or https:// URL.
    #[arg(long, env = "LEDGER_SERVER", default_value = "127.0.0.1:50051")]
    pub server: String,
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
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A connected client that sends the token, if any, with every call.
pub type Client = LedgerClient<InterceptedService<Channel, Auth>>;

/// Adds the bearer token, if any, to every request.
#[derive(Clone)]
pub struct Auth(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

pub async fn connect(c: &Connect) -> Result<Client, CliError> {
    let tls = c.tls_ca.is_some();
    let url = if c.server.contains("://") {
        c.server.clone()
    } else if tls {
        format!("https://{}", c.server)
    } else {
        format!("http://{}", c.server)
    };
    let timeout = Duration::from_secs(c.timeout.max(1));
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| CliError::Usage(format!("--server {}: {e}", c.server)))?
        .connect_timeout(timeout)
        .timeout(timeout);
    if let Some(ca) = &c.tls_ca {
        let pem = read(ca)?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        if let Some(domain) = &c.tls_domain {
            config = config.domain_name(domain.clone());
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| CliError::Usage(format!("TLS: {e}")))?;
    }
    let token = match &c.token_file {
        Some(path) => {
            let text = String::from_utf8(read(path)?)
                .map_err(|_| CliError::Usage(format!("{}: not UTF-8", path.display())))?;
            let token = text.lines().next().unwrap_or("").trim();
            if token.is_empty() {
                return Err(CliError::Usage(format!(
                    "{}: the first line holds no token",
                    path.display()
                )));
            }
            let value = format!("Bearer {token}").parse().map_err(|_| {
                CliError::Usage(format!(
                    "{}: the token is not printable ASCII",
                    path.display()
                ))
            })?;
            Some(value)
        }
        None => None,
    };
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| CliError::Usage(format!("cannot reach {url}: {}", source_chain(&e))))?;
    Ok(LedgerClient::with_interceptor(channel, Auth(token)).max_decoding_message_size(64 << 20))
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// An error and its causes on one line (tonic's transport errors hide the useful part).
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
