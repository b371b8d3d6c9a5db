//! Everything served over plain HTTP: pages, the JSON API, static assets, and
//! the cross-cutting rules (security headers, same-origin writes, body limits).

mod access;
mod account;
mod admin;
pub mod admission;
pub mod api;
mod assets;
pub mod client_addr;
pub mod error;
mod health;
mod pages;
mod password_reset;
pub mod server;
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
    /// Proxies whose `X-Forwarded-For` names the client (see [`client_addr`]).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// Whether sockets fan out through Redis (then `/readyz` checks that too).
    pub redis: bool,
}

impl FromRef<AppState> for Key {
    fn from_ref(app: &AppState) -> Key {
        app.cookie_key.clone()
    }
}

/// No inline scripts or styles, no framing, nothing from other origins.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'; object-src 'none'";

/// Every route with its own rules (body limit, same-origin writes); the app
/// wraps it, with the Socket.IO layer, in [`outermost`].
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(async || "ok"))
        .route("/readyz", axum::routing::get(health::readyz))
        .merge(pages::router())
        .merge(account::router())
        .merge(admin::router())
        .merge(password_reset::router())
        .merge(assets::router())
        .nest(api::openapi::BASE, api::router())
        // An incoming webhook's secret URL (docs/protocol.md, "Bots and webhooks").
        .route(
            "/hooks/{secret}",
            axum::routing::post(api::webhooks::post_incoming),
        )
        // The nested router does not see its base with a trailing slash.
        .route("/api/v1/", axum::routing::any(api::no_such_route))
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(same_origin_writes))
}

/// What wraps everything served, Socket.IO included: the security headers on
/// every response that lacks them (polling responses carry user text too),
/// then request ids and the access log (counted once per request).
pub fn outermost(mut router: Router) -> Router {
    let security_headers = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Pages, API answers and polling responses carry people's messages:
        // no browser or proxy may keep them. Assets set their own.
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in security_headers {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    access::layer(router)
}

/// CSRF defence: a state-changing request from another origin is refused.
async fn same_origin_writes(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let scheme = request.extensions().get::<crate::credentials::Scheme>();
    if safe || crate::credentials::same_origin(request.headers(), scheme) {
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
