//! Request ids, the access log and per-route request counts.
//!
//! Every response carries `x-request-id` (kept from the proxy when it sent one,
//! else a new UUID); the access log line of the request, and every line logged
//! while handling it, carry the same id. The log shows the path without its
//! query string, and no headers: either may carry secrets. Paths that carry
//! one themselves (a password reset link's token) are cut before it.

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::LatencyUnit;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::{Level, Span};

use crate::telemetry;

/// Wraps every route of `router` (so that the route pattern is known).
pub fn layer(router: Router) -> Router {
    router.layer(middleware::from_fn(count)).layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(span)
                    .on_request(())
                    // A 5xx is in the access line already (and a 500's cause logged where it arose).
                    .on_failure(())
                    .on_response(
                        DefaultOnResponse::new()
                            .level(Level::INFO)
                            .latency_unit(LatencyUnit::Micros),
                    ),
            )
            .layer(PropagateRequestIdLayer::x_request_id()),
    )
}

fn span(request: &Request) -> Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        request_id = id,
        method = %request.method(),
        path = %loggable(request.uri().path()),
    )
}

/// Paths whose rest is a secret (a password reset token).
const SECRET_AFTER: &[&str] = &["/reset/", "/api/v1/password-resets/"];

/// The path as the log may show it: a secret in it replaced by `…`.
fn loggable(path: &str) -> std::borrow::Cow<'_, str> {
    match SECRET_AFTER
        .iter()
        .find(|prefix| path.starts_with(**prefix))
    {
        Some(prefix) => format!("{prefix}…").into(),
        None => path.into(),
    }
}

async fn count(route: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    telemetry::http_request(&method, route, response.status().as_u16());
    response
}
