//! Webhooks. Incoming: `POST /rooms/{rid}/webhooks` makes one (its secret
//! URL answered once), `GET` lists the room's, `DELETE …/{id}` deletes one;
//! `POST /hooks/{secret}` (outside `/api/v1`, no session: the URL is the
//! credential) posts into its room. Outgoing: `POST /webhooks` makes one
//! (its signing secret answered once), `GET /webhooks`, `DELETE /webhooks/{id}`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use serde_json::{Value, json};

use super::bots::text_field;
use super::{ApiJson, ApiPath};
use crate::domain::webhooks::NewOutgoing;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rooms/{rid}/webhooks", post(create_incoming).get(incoming))
        .route("/rooms/{rid}/webhooks/{id}", delete(delete_incoming))
        .route("/webhooks", post(create_outgoing).get(outgoing))
        .route("/webhooks/{id}", delete(delete_outgoing))
}

/// Where an incoming webhook's secret is posted to.
pub fn hook_url(secret: &str) -> String {
    format!("/hooks/{secret}")
}

async fn create_incoming(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let (hook, secret) = app
        .natter
        .create_incoming_webhook(&session.user, &rid, text_field(&body, "name"))
        .await?;
    let mut answer = json!(hook);
    answer["url"] = json!(hook_url(&secret));
    Ok((StatusCode::CREATED, axum::Json(answer)))
}

async fn incoming(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let hooks = app.natter.incoming_webhooks(&session.user, &rid).await?;
    Ok(axum::Json(json!({ "webhooks": hooks })))
}

async fn delete_incoming(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath((rid, id)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter
        .delete_incoming_webhook(&session.user, &rid, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /hooks/{secret}` `{text, client_id?}`: 201 with the message sent.
pub async fn post_incoming(
    State(app): State<AppState>,
    ApiPath(secret): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let message = app.natter.post_to_webhook(&secret, &body).await?;
    Ok((StatusCode::CREATED, axum::Json(message)))
}

/// 201 with the webhook and, this once, its signing secret (`secret`).
async fn create_outgoing(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let new = NewOutgoing::from_json(&body, app.natter.limits());
    let hook = app
        .natter
        .create_outgoing_webhook(&session.user, new)
        .await?;
    let mut answer = json!(hook);
    answer["secret"] = json!(hook.secret);
    Ok((StatusCode::CREATED, axum::Json(answer)))
}

async fn outgoing(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let hooks = app.natter.outgoing_webhooks(&session.user).await?;
    Ok(axum::Json(json!({ "webhooks": hooks })))
}

async fn delete_outgoing(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter
        .delete_outgoing_webhook(&session.user, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
