//! Who is looking: the gRPC server's tokens, presented as a bearer header (scripts) or a
//! sign-in cookie (browsers). Without a token file everyone may do everything, as on the
//! gRPC port. Form posts must come from the console's own pages (the same-origin check),
//! so another site cannot make a signed-in browser submit a transfer.

use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::Shared;
use super::layout::{self, PageError};
use crate::auth::Role;

/// The sign-in cookie: the token, hex-encoded (a token may hold characters a cookie may
/// not).
const COOKIE: &str = "ledger_console";

/// The caller of a page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Viewer {
    pub(crate) role: Role,
    /// Signed in with a token (the server has a token file): offer to sign out.
    pub(crate) signed_in: bool,
}

impl Viewer {
    pub(crate) fn may_submit(self) -> bool {
        self.role >= Role::Write
    }
}

impl FromRequestParts<Shared> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Shared) -> Result<Self, Response> {
        let token = bearer(&parts.headers).or_else(|| cookie(&parts.headers));
        match console.tokens.role_of(token.as_deref()) {
            Some(role) => Ok(Viewer {
                role,
                signed_in: !console.tokens.is_open(),
            }),
            None if parts.uri.path().starts_with("/api/") => Err((
                StatusCode::UNAUTHORIZED,
                "sign in: a bearer token or the console's cookie",
            )
                .into_response()),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

/// A form post from the console's own pages: refused when the browser says it comes
/// from another site (`Sec-Fetch-Site`) or names another origin than the host asked.
#[derive(Debug)]
pub(crate) struct SameOrigin;

impl<S: Sync> FromRequestParts<S> for SameOrigin {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, PageError> {
        if same_origin(&parts.headers) {
            Ok(SameOrigin)
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "This form was posted from another site. Submit it from the console's own page.",
            ))
        }
    }
}

fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match (text("origin"), text("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        (Some(_), None) => false,
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    Some(value.strip_prefix("Bearer ")?.to_owned())
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| unhex(value))
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let decoded = bytes
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(decoded).ok()
}

pub(crate) async fn login_form(State(console): State<Shared>) -> Response {
    if console.tokens.is_open() {
        return Redirect::to("/").into_response();
    }
    sign_in_page(StatusCode::OK, None)
}

#[derive(Deserialize)]
pub(crate) struct SignIn {
    token: String,
}

pub(crate) async fn login(
    State(console): State<Shared>,
    _: SameOrigin,
    Form(form): Form<SignIn>,
) -> Response {
    let token = form.token.trim();
    if console.tokens.role_of(Some(token)).is_none() {
        return sign_in_page(
            StatusCode::UNAUTHORIZED,
            Some("Unknown token: use one of the server's token file (read or write)."),
        );
    }
    let secure = if console.secure { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{secure}",
        hex(token)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

pub(crate) async fn logout(_: SameOrigin) -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

fn sign_in_page(status: StatusCode, error: Option<&str>) -> Response {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form.card method="post" action="/login" {
            label for="token" { "Token" }
            input #token type="password" name="token" autocomplete="current-password" required;
            p.hint { "A read token shows the ledger; a write token may also submit operations." }
            button type="submit" { "Sign in" }
        }
    };
    (status, layout::page("Sign in", None, body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_the_cookie_and_nothing_else_decodes() {
        let token = "abc;=, \"tok€n\"";
        assert_eq!(unhex(&hex(token)).as_deref(), Some(token));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("a=b; {COOKIE}={}", hex("t0ken")).parse().unwrap(),
        );
        assert_eq!(cookie(&headers).as_deref(), Some("t0ken"));
    }

    #[test]
    fn posts_from_another_site_are_refused() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (name, value) in pairs {
                h.insert(*name, value.parse().unwrap());
            }
            h
        };
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ])));
    }
}
