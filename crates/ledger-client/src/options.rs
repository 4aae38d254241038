//! How to reach the servers: addresses, TLS, bearer token, timeouts.

use std::fmt;
use std::time::Duration;

use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::error::{Error, source_chain};

/// How to reach the ledger's servers.
#[derive(Clone)]
pub struct ConnectOptions {
    /// The nodes to try, in order: `host:port` or an `http://` / `https://` URL. The first
    /// is tried first, the next after a node fails (see the crate docs).
    pub endpoints: Vec<String>,
    /// A CA certificate (PEM) the servers' certificates must chain to; turns TLS on
    /// (`https://` for a `host:port`).
    pub tls_ca_pem: Option<Vec<u8>>,
    /// The name to check every server's certificate against [default: the address's host].
    pub tls_domain: Option<String>,
    /// A bearer token sent with every call (`authorization: Bearer <token>`).
    pub token: Option<String>,
    /// The limit on connecting to a node and on each attempt's answer.
    pub timeout: Duration,
    /// How long a call may keep retrying before it returns its last error; zero: never
    /// retry.
    pub retry_budget: Duration,
}

impl ConnectOptions {
    /// Options for these endpoints, with the defaults for everything else.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> ConnectOptions {
        ConnectOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..ConnectOptions::default()
        }
    }

    /// `address` as a URL: `host:port` gets the scheme TLS calls for.
    fn url(&self, address: &str) -> String {
        if address.contains("://") {
            address.to_owned()
        } else if self.tls_ca_pem.is_some() {
            format!("https://{address}")
        } else {
            format!("http://{address}")
        }
    }

    /// The tonic endpoint for `address` (unconnected).
    pub(crate) fn endpoint(&self, address: &str) -> Result<Endpoint, Error> {
        let mut endpoint = Endpoint::from_shared(self.url(address))
            .map_err(|e| Error::InvalidAddress {
                address: address.to_owned(),
                reason: source_chain(&e),
            })?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        if let Some(pem) = &self.tls_ca_pem {
            let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            if let Some(domain) = &self.tls_domain {
                config = config.domain_name(domain.clone());
            }
            endpoint = endpoint.tls_config(config).map_err(|e| Error::Tls {
                reason: source_chain(&e),
            })?;
        }
        Ok(endpoint)
    }

    /// The interceptor that sends the token.
    pub(crate) fn auth(&self) -> Result<Auth, Error> {
        let header = match &self.token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| Error::InvalidToken)?,
            ),
            None => None,
        };
        Ok(Auth(header))
    }
}

impl Default for ConnectOptions {
    /// The server's default address, no TLS, no token, 10 s per attempt, 5 s of retries.
    fn default() -> ConnectOptions {
        ConnectOptions {
            endpoints: vec!["127.0.0.1:50051".to_owned()],
            tls_ca_pem: None,
            tls_domain: None,
            token: None,
            timeout: Duration::from_secs(10),
            retry_budget: Duration::from_secs(5),
        }
    }
}

// By hand: the token stays out of logs.
impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("endpoints", &self.endpoints)
            .field("tls", &self.tls_ca_pem.is_some())
            .field("tls_domain", &self.tls_domain)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("retry_budget", &self.retry_budget)
            .finish()
    }
}

/// Adds the bearer token, if any, to every request.
#[derive(Clone)]
pub struct Auth(Option<MetadataValue<Ascii>>);

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

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Auth(<token>)"
        } else {
            "Auth(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme_and_tokens_a_header() {
        let plain = ConnectOptions::new(["127.0.0.1:1"]);
        assert_eq!(
            plain.endpoint("127.0.0.1:1").unwrap().uri(),
            "http://127.0.0.1:1/"
        );
        assert_eq!(
            plain.endpoint("https://example.org:2").unwrap().uri(),
            "https://example.org:2/"
        );
        assert!(matches!(
            plain.endpoint("not an address"),
            Err(Error::InvalidAddress { .. })
        ));
        let tls = ConnectOptions {
            tls_ca_pem: Some(Vec::new()),
            ..plain.clone()
        };
        assert_eq!(tls.url("h:3"), "https://h:3");
        assert_eq!(tls.url("http://h:3"), "http://h:3");

        let mut request = Request::new(());
        let mut auth = ConnectOptions {
            token: Some("secret".into()),
            ..plain.clone()
        }
        .auth()
        .unwrap();
        request = tonic::service::Interceptor::call(&mut auth, request).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer secret"
        );
        assert!(!format!("{auth:?}").contains("secret"));
        let bad = ConnectOptions {
            token: Some("tab\there\u{7f}".into()),
            ..plain
        };
        assert!(matches!(bad.auth(), Err(Error::InvalidToken)));
    }
}
