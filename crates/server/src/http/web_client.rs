//! The web client (`ui/`, built with `vite build --mode web` into `ui/dist-web`),
//! embedded in the binary and served at `/web/`: the one binary is still the whole
//! server. A build without the web client's files (the UI not built) answers `/web/`
//! with a page saying so, and the join page offers no "Join in this browser".
//!
//! The entry page is never cached (it names the current assets); the assets carry a
//! content hash in their names and are cached for a year. Every answer has a content
//! security policy that lets the page reach only its own server.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::Embed;

use crate::ServerState;

#[derive(Embed)]
#[folder = "../../ui/dist-web/"]
#[allow_missing = true]
struct Files;

/// Whether this binary carries the web client.
pub fn available() -> bool {
    Files::get("index.html").is_some()
}

/// What the page may do: scripts, styles and connections to its own server only (the
/// signaling socket and the two credential routes), media from the devices it asks for.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `/web/` and its files; `/web` goes to `/web/` (the page's asset paths are relative).
pub fn routes() -> Router<Arc<ServerState>> {
    Router::new()
        .route("/web", get(|| async { Redirect::permanent("web/") }))
        .route("/web/", get(|| async { serve("index.html") }))
        .route("/web/{*path}", get(|Path(path): Path<String>| async move { serve(&path) }))
}

fn serve(path: &str) -> Response {
    let Some(file) = Files::get(path) else {
        if path == "index.html" {
            tracing::warn!("the web client was asked for, but this server was built without it");
            return (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "This server was built without the web client (build ui/ first: npm --prefix ui run build).\n",
            )
                .into_response();
        }
        return crate::error::ApiError::from(confer_proto::ErrorCode::NotFound).into_response();
    };
    let mime = file.metadata.mimetype().to_owned();
    let cache = if path == "index.html" { "no-cache" } else { "public, max-age=31536000, immutable" };
    let mut response = (StatusCode::OK, file.data.into_owned()).into_response();
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(&mime) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    // The page's address names the meeting: other sites are not told it.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(self), microphone=(self), display-capture=(self), speaker-selection=(self)"),
    );
    response
}
