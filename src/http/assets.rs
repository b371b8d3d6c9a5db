//! CSS, scripts and the vendored Socket.IO client, compiled into the binary:
//! the UI works offline and the server is one file to deploy. Also the
//! service worker, at `/sw.js` so that it may control every page.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;
use sha2::{Digest, Sha256};

use super::AppState;

#[derive(Embed)]
#[folder = "static/"]
struct Assets;

/// The worker's source in `static/`; served only at `/sw.js`, with its constants.
const WORKER: &str = "sw.js";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/static/{*path}", get(asset))
        .route("/sw.js", get(worker))
}

/// The worker with `VERSION` (a digest of every embedded file: any change to
/// the UI makes a new worker, which replaces the cached shell) and
/// `SHELL_FILES` (what it caches at install) in front.
static WORKER_SCRIPT: LazyLock<String> = LazyLock::new(|| {
    let mut names: Vec<String> = Assets::iter().map(|name| name.into_owned()).collect();
    names.sort();
    let mut digest = Sha256::new();
    for name in &names {
        if let Some(file) = Assets::get(name) {
            digest.update(name.as_bytes());
            digest.update(file.metadata.sha256_hash());
        }
    }
    let version: String = digest.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let shell: Vec<String> = names
        .iter()
        .filter(|name| name.as_str() != WORKER)
        .map(|name| format!("/static/{name}"))
        .collect();
    let source = Assets::get(WORKER)
        .map(|file| file.data)
        .unwrap_or_default();
    format!(
        "const VERSION = {};\nconst SHELL_FILES = {};\n{}",
        serde_json::Value::from(version),
        serde_json::Value::from(shell),
        String::from_utf8_lossy(&source)
    )
});

async fn worker() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            // The browser checks for a new worker on navigations; never a stale copy.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        WORKER_SCRIPT.as_str(),
    )
        .into_response()
}

async fn asset(Path(path): Path<String>) -> Response {
    match Assets::get(&path).filter(|_| path != WORKER) {
        Some(file) => {
            let mime = mime_guess::from_path(&path).first_or_octet_stream();
            (
                [
                    (header::CONTENT_TYPE, mime.as_ref().to_owned()),
                    (header::CACHE_CONTROL, "no-cache".to_owned()),
                ],
                file.data,
            )
                .into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
