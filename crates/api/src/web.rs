//! The web chat client: the files of `web/chat/`, built into the binary,
//! served at `/` (the page) and `/chat/<file>` (its modules, style and
//! icon) beside the REST API they talk to.
//!
//! Every answer may be cached but must be revalidated (`no-cache`, a strong
//! ETag from the bytes' SHA-256, `304` on `If-None-Match`), so a new binary
//! is picked up at the next load. The page runs under a strict
//! Content-Security-Policy: scripts and styles only from this origin, no
//! inline script, requests only to this origin, images also from `blob:`
//! (files downloaded with the bearer token) and `data:`.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// A file built into the binary: its name under the route that serves it,
/// bytes and content type (the admin console's files are served the same
/// way, `admin/console.rs`).
pub(crate) struct Asset {
    pub(crate) name: &'static str,
    pub(crate) bytes: &'static [u8],
    pub(crate) content_type: &'static str,
}

macro_rules! asset {
    ($name:literal, $kind:expr) => {
        $crate::web::Asset {
            name: $name,
            bytes: include_bytes!(concat!("../../../web/chat/", $name)),
            content_type: $kind,
        }
    };
}

pub(crate) const JS: &str = "text/javascript; charset=utf-8";

/// The page is the first; `/chat/index.html` is the same page.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("store.js", JS),
    asset!("ui.js", JS),
    asset!("groups.js", JS),
    asset!("upload.js", JS),
    asset!("chat.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

/// Each asset's ETag, in `ASSETS` order, computed once.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| etags(ASSETS));

/// The ETags of `assets`, in order: a hash of each one's bytes.
pub(crate) fn etags(assets: &[Asset]) -> Vec<HeaderValue> {
    assets
        .iter()
        .map(|a| {
            let hash = Sha256::digest(a.bytes);
            let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex in quotes is a header value")
        })
        .collect()
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers every answer of the client carries, found or not.
const SECURITY: [(HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// `/` and `/chat/{file}`, when the REST API they talk to is served (`on`).
pub fn router<S: Clone + Send + Sync + 'static>(on: bool) -> Router<S> {
    if !on {
        return Router::new();
    }
    Router::new()
        .route("/", get(|h: HeaderMap| async move { serve(0, &h) }))
        .route("/chat/{file}", get(file))
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(i) => serve(i, &headers),
        None => secured(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such file\n",
            )
                .into_response(),
        ),
    }
}

fn serve(i: usize, headers: &HeaderMap) -> Response {
    secured(serve_asset(&ASSETS[i], &ETAGS[i], headers))
}

/// One asset, or 304 when the browser holds these bytes already.
pub(crate) fn serve_asset(asset: &Asset, etag: &HeaderValue, headers: &HeaderMap) -> Response {
    let cached = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        // If-None-Match compares weakly: W/"x" names the same bytes as "x".
        .any(|t| t == "*" || t.trim_start_matches("W/").as_bytes() == etag.as_bytes());
    let mut response = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.bytes,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn secured(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in SECURITY {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_its_own_etag_and_the_page_loads_only_its_own_files() {
        assert_eq!(ETAGS.len(), ASSETS.len());
        let page = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        assert!(!page.contains("<script>"), "no inline script");
        for src in page.split("src=\"").skip(1) {
            let path = src.split('"').next().unwrap();
            let name = path.strip_prefix("/chat/").unwrap();
            assert!(ASSETS.iter().any(|a| a.name == name), "{path} is served");
        }
    }
}
