//! Bearer-token authentication: a token file names read-only and read-write tokens; the
//! interceptor marks each request with its caller's role, and each method requires one.
//!
//! Token file: one token per line, `read <token>`, `write <token>` or `peer <token>`;
//! `#` starts a comment. Without a token file every caller may do everything.
//!
//! `peer` tokens are for a cluster's nodes: once a file names one, only a peer token may
//! send Raft messages (a write token holder cannot forge log entries or votes), and it
//! may do everything else too. A file without one keeps the older rule: peers present a
//! write token.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tonic::{Request, Status};

/// What a caller may do. `Write` includes `Read`; `Peer` (a cluster node) includes both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Write,
    Peer,
}

/// The tokens the server accepts, or none (open).
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    tokens: Option<Arc<HashMap<String, Role>>>,
}

impl Tokens {
    /// No authentication: every request is `Write`.
    pub fn open() -> Tokens {
        Tokens::default()
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_none()
    }

    /// Reads a token file.
    ///
    /// # Errors
    /// An unreadable file, a line that is not `read|write <token>`, or no token at all.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("token file {}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("token file {}: {e}", path.display()))
    }

    fn parse(text: &str) -> Result<Tokens, String> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let role = match parts.next() {
                Some("read") => Role::Read,
                Some("write") => Role::Write,
                Some("peer") => Role::Peer,
                other => {
                    return Err(format!(
                        "line {}: expected `read <token>`, `write <token>` or `peer <token>`, got {other:?}",
                        n + 1
                    ));
                }
            };
            let (Some(token), None) = (parts.next(), parts.next()) else {
                return Err(format!("line {}: expected one token after the role", n + 1));
            };
            if token.len() < 16 {
                return Err(format!(
                    "line {}: tokens must be at least 16 characters",
                    n + 1
                ));
            }
            tokens.insert(token.to_owned(), role);
        }
        if tokens.is_empty() {
            return Err("no tokens".into());
        }
        Ok(Tokens {
            tokens: Some(Arc::new(tokens)),
        })
    }

    /// The token a cluster node presents to its peers: the first (in sort order) token
    /// of the role [`peer_role`](Self::peer_role) names, from its own token file, which
    /// every node of a cluster shares. `None` when open.
    pub fn peer_token(&self) -> Option<String> {
        let tokens = self.tokens.as_ref()?;
        let role = self.peer_role();
        tokens
            .iter()
            .filter(|(_, r)| **r == role)
            .map(|(token, _)| token.clone())
            .min()
    }

    /// The role Raft messages need: `Peer` once the file names a peer token, else
    /// `Write`.
    pub fn peer_role(&self) -> Role {
        let has_peer = self
            .tokens
            .as_ref()
            .is_some_and(|t| t.values().any(|r| *r == Role::Peer));
        if has_peer { Role::Peer } else { Role::Write }
    }

    /// The role of a caller presenting `token` (none: `None`): every caller may do
    /// everything when open; else the token's role, or `None` for an unknown token.
    pub fn role_of(&self, token: Option<&str>) -> Option<Role> {
        match &self.tokens {
            None => Some(Role::Write),
            Some(tokens) => tokens.get(token?.trim()).copied(),
        }
    }

    /// The interceptor: UNAUTHENTICATED without a known bearer token; else the request
    /// carries the token's role for [`require`].
    pub fn check(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let role = if self.is_open() {
            Role::Write
        } else {
            let header = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
            let token = header
                .strip_prefix("Bearer ")
                .ok_or_else(|| Status::unauthenticated("authorization is not a bearer token"))?;
            self.role_of(Some(token))
                .ok_or_else(|| Status::unauthenticated("unknown token"))?
        };
        request.extensions_mut().insert(role);
        Ok(request)
    }
}

/// PERMISSION_DENIED unless the request's caller has at least `needed`; INTERNAL when
/// [`Tokens::check`] did not mark the request.
pub(crate) fn require<T>(request: &Request<T>, needed: Role) -> Result<(), Status> {
    match request.extensions().get::<Role>() {
        Some(&role) if role >= needed => Ok(()),
        Some(_) if needed == Role::Peer => Err(Status::permission_denied(
            "only a cluster node's peer token may send Raft messages",
        )),
        Some(_) => Err(Status::permission_denied(
            "this token is read-only: it cannot submit operations",
        )),
        // Fail closed: no mark means the service was wired without its interceptor (even
        // open tokens mark every request Write). That is a server bug, not something the
        // caller can fix with another token: INTERNAL, not UNAUTHENTICATED.
        None => {
            tracing::error!(
                "request refused: the ledger service runs without its auth interceptor"
            );
            Err(Status::internal(
                "the server is misconfigured (no authentication); request refused",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_parse_and_refuse_nonsense() {
        let t =
            Tokens::parse("# ops\nread  aaaaaaaaaaaaaaaa\nwrite bbbbbbbbbbbbbbbb # ci\n").unwrap();
        let ok = |token: &str| {
            let mut r = Request::new(());
            r.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            t.check(r).map(|r| *r.extensions().get::<Role>().unwrap())
        };
        assert_eq!(ok("aaaaaaaaaaaaaaaa").unwrap(), Role::Read);
        assert_eq!(ok("bbbbbbbbbbbbbbbb").unwrap(), Role::Write);
        assert_eq!(
            ok("cccccccccccccccc").unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            t.check(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert!(Tokens::parse("admin xxxxxxxxxxxxxxxx").is_err());
        // Without a peer token, peers present the first write token; with one, only it.
        assert_eq!(t.peer_role(), Role::Write);
        assert_eq!(t.peer_token().as_deref(), Some("bbbbbbbbbbbbbbbb"));
        let p = Tokens::parse("write bbbbbbbbbbbbbbbb\npeer pppppppppppppppp\n").unwrap();
        assert_eq!(p.peer_role(), Role::Peer);
        assert_eq!(p.peer_token().as_deref(), Some("pppppppppppppppp"));
        assert_eq!(Tokens::open().peer_token(), None);
        assert!(Tokens::parse("read short").is_err());
        assert!(Tokens::parse("# nothing\n").is_err());
    }

    #[test]
    fn a_request_the_interceptor_did_not_mark_is_refused() {
        for needed in [Role::Read, Role::Write] {
            let err = require(&Request::new(()), needed).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Internal, "{needed:?}");
        }
        // Open tokens still mark: every request is allowed everything.
        let marked = Tokens::open().check(Request::new(())).unwrap();
        assert!(require(&marked, Role::Write).is_ok());
        let mut read = Request::new(());
        read.extensions_mut().insert(Role::Read);
        assert!(require(&read, Role::Read).is_ok());
        assert_eq!(
            require(&read, Role::Write).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        let mut write = Request::new(());
        write.extensions_mut().insert(Role::Write);
        let denied = require(&write, Role::Peer).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains("peer token"), "{denied:?}");
        let mut peer = Request::new(());
        peer.extensions_mut().insert(Role::Peer);
        assert!(require(&peer, Role::Peer).is_ok() && require(&peer, Role::Write).is_ok());
    }
}
