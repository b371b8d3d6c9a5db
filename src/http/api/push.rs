//! Web Push: `GET /push/key` (the server's public key, for a browser's
//! `pushManager.subscribe`), and the caller's subscriptions: `POST` one (a
//! browser's `PushSubscription` as JSON), list them, `DELETE` one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath};
use crate::domain::model::PushSubscription;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(key))
        .routes(routes!(list, subscribe))
        .routes(routes!(unsubscribe))
}

/// The server's VAPID key.
#[derive(Serialize, ToSchema)]
struct PushKey {
    /// P-256, uncompressed (65 bytes), base64url: `pushManager.subscribe`'s
    /// `applicationServerKey`.
    public_key: String,
}

/// Signed-in only, like everything a browser needs to subscribe.
#[utoipa::path(get, path = "/push/key", tag = "push", responses((status = 200, description = "The key", body = PushKey)))]
async fn key(
    State(app): State<AppState>,
    Authenticated(_): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(PushKey {
        public_key: app.natter.push_key()?.to_owned(),
    }))
}

// A browser's subscription is read by the domain's rules from the JSON
// itself; these types only describe it.

/// A browser's `PushSubscription` as JSON (other fields, such as
/// `expirationTime`, are ignored).
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct NewSubscription {
    /// An `https` URL of at most 2,048 bytes on a public host.
    endpoint: String,
    keys: SubscriptionKeys,
}

#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct SubscriptionKeys {
    /// base64url of an uncompressed P-256 public key (65 bytes).
    p256dh: String,
    /// base64url of 16 bytes.
    auth: String,
}

/// 201 with a new subscription; 200 when its endpoint was stored before
/// (it now has these keys, and belongs to the caller).
#[utoipa::path(
    post,
    path = "/push/subscriptions",
    tag = "push",
    request_body = NewSubscription,
    responses(
        (status = 200, description = "The endpoint's subscription, updated", body = PushSubscription),
        (status = 201, description = "A new subscription", body = PushSubscription),
        (status = 422, description = "`invalid`: nothing stored", body = ErrorBody),
    )
)]
async fn subscribe(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let (subscription, created) = app.natter.subscribe_push(&session, &body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(subscription)))
}

#[derive(Serialize, ToSchema)]
struct Subscriptions {
    /// Newest first.
    subscriptions: Vec<PushSubscription>,
}

#[utoipa::path(get, path = "/push/subscriptions", tag = "push", responses((status = 200, description = "The caller's subscriptions", body = Subscriptions)))]
async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let subscriptions = app.natter.push_subscriptions(&session.user).await?;
    Ok(axum::Json(Subscriptions { subscriptions }))
}

#[utoipa::path(
    delete,
    path = "/push/subscriptions/{id}",
    tag = "push",
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`: the caller has none by that id", body = ErrorBody),
    )
)]
async fn unsubscribe(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.natter.unsubscribe_push(&session.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
