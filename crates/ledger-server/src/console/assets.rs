//! The console's static files, compiled into the binary: its stylesheet and script, and
//! dygraphs (MIT, vendored from Debian with its licence) for the charts.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::layout::not_found;

/// Name, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 5] = [
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/console.js"),
    ),
    (
        "dygraph.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/dygraph.min.js"),
    ),
    (
        "dygraph.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/dygraph.min.css"),
    ),
    (
        "LICENSE.dygraphs",
        "text/plain; charset=utf-8",
        include_bytes!("assets/LICENSE.dygraphs"),
    ),
];

pub(crate) async fn get(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // Bound to this binary's version only by restart: an hour, not forever.
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *bytes,
        )
            .into_response(),
        None => not_found().await.into_response(),
    }
}
