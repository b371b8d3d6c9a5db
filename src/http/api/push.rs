//! Web Push: `GET /push/key` (the server's public key, for a browser's
//! `pushManager.subscribe`), and the caller's subscriptions: `POST` one (a
//! browser's `PushSubscription` as JSON), list them, `DELETE` one.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use serde_json::{Value, json};

use super::{ApiJson, ApiPath};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/push/key", get(key))
        .route("/push/subscriptions", get(list).post(subscribe))
        .route("/push/subscriptions/{id}", delete(unsubscribe))
}

/// Signed-in only, like everything a browser needs to subscribe.
async fn key(
    State(app): State<AppState>,
    Authenticated(_): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(json!({ "public_key": app.natter.push_key()? })))
}

/// 201 with a new subscription; 200 when its endpoint was stored before
/// (it now has these keys, and belongs to the caller).
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

async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let subscriptions = app.natter.push_subscriptions(&session.user).await?;
    Ok(axum::Json(json!({ "subscriptions": subscriptions })))
}

async fn unsubscribe(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.natter.unsubscribe_push(&session.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
