//! Everything served over plain HTTP: pages, the JSON API, static assets, and
//! the cross-cutting rules (security headers, same-origin writes, body limits).

pub mod api;
mod assets;
pub mod error;
mod pages;
pub mod session;
mod views;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::Key;
use std::sync::Arc;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::domain::Natter;
use crate::realtime::Fanout;
use error::ApiError;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub natter: Arc<Natter>,
    /// Tells connected sockets (on every node) what the HTTP side changed.
    pub fanout: Arc<dyn Fanout>,
    /// Signs the flash cookie; derived from the generated secret in the data dir.
    pub cookie_key: Key,
    pub secure_cookies: bool,
}

impl FromRef<AppState> for Key {
    fn from_ref(app: &AppState) -> Key {
        app.cookie_key.clone()
    }
}

/// No inline scripts or styles, no framing, nothing from other origins.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'; object-src 'none'";

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let router = Router::new()
        .route("/healthz", axum::routing::get(async || "ok"))
        .merge(pages::router())
        .merge(assets::router())
        .nest("/api/v1", api::router())
        // The nested router does not see its base with a trailing slash.
        .route("/api/v1/", axum::routing::any(api::no_such_route))
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(same_origin_writes));
    with_security_headers(router)
}

/// Adds the security headers to every response of `router` that lacks them
/// (also applied over the Socket.IO layer: polling responses carry user text).
pub fn with_security_headers(mut router: Router) -> Router {
    let security_headers = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    for (name, value) in security_headers {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router
}

/// CSRF defence: a state-changing request from another origin is refused.
async fn same_origin_writes(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if safe || session::same_origin(request.headers()) {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "cross-origin request refused",
        )
        .into_response()
    }
}
