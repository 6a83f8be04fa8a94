//! The admin console's files (`web/admin/`), built into the binary and
//! served at `/admin` (the page) and `/admin/assets/<file>` the way the web
//! client's are (`web.rs`): a content type each, a strong ETag, 304 when
//! the browser has them. The page runs under the admin API's
//! Content-Security-Policy: its own scripts and styles only.

use crate::web::{etags, serve_asset, Asset, JS};
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;

macro_rules! admin_asset {
    ($name:literal, $kind:expr) => {
        Asset {
            name: $name,
            bytes: include_bytes!(concat!("../../../../web/admin/", $name)),
            content_type: $kind,
        }
    };
}

/// The page is the first.
const ASSETS: &[Asset] = &[
    admin_asset!("index.html", "text/html; charset=utf-8"),
    admin_asset!("admin.js", JS),
    admin_asset!("admin.css", "text/css; charset=utf-8"),
];

static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| etags(ASSETS));

/// `GET /admin`.
pub async fn page(headers: HeaderMap) -> Response {
    serve_asset(&ASSETS[0], &ETAGS[0], &headers)
}

/// `GET /admin/assets/{file}`.
pub async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(i) => serve_asset(&ASSETS[i], &ETAGS[i], &headers),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_files_that_are_served_and_no_inline_script() {
        let page = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        assert!(!page.contains("<script>"), "no inline script");
        for part in page.split("/admin/assets/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "{name} is not served"
            );
        }
    }
}
