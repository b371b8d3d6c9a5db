//! The admin API under `/admin`: accounts (`GET /admin/users`, `PATCH
//! /admin/users/{id}`), the server's health and counts (`GET /admin/stats`),
//! who may join (`GET` and `PUT /admin/settings`), and moderation (`DELETE
//! /admin/rooms/{rid}/messages/{seq}`). Members get 403 `not_admin`.

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use serde_json::Value;

use super::{ApiJson, ApiPath, QueryArgs};
use crate::domain::admin::{AccountChange, JoinSettings};
use crate::domain::rules;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(users))
        .route("/admin/users/{id}", axum::routing::patch(change_user))
        .route("/admin/stats", get(stats))
        .route("/admin/settings", get(settings).put(change_settings))
        .route("/admin/rooms/{rid}/messages/{seq}", delete(moderate))
}

/// `?q=&after=&limit=`: a page of accounts in id order.
async fn users(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    args: QueryArgs,
) -> Result<impl IntoResponse, ApiError> {
    let query = args.get("q").and_then(|q| q.as_str().map(str::to_owned));
    let after = args
        .get("after")
        .map(|a| rules::user_id(Some(&a)))
        .transpose();
    let limit = rules::seq_cursor(args.get("limit").as_ref(), "limit");
    let page = app
        .natter
        .accounts(&session.user, query, after, limit)
        .await?;
    Ok(axum::Json(page))
}

/// `{disabled?, password?}`: 200 with the account as it now is.
async fn change_user(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let id = rules::user_id(Some(&Value::String(id)));
    let change = AccountChange::from_json(&body);
    let account = app.natter.change_account(&session.user, id, change).await?;
    Ok(axum::Json(account))
}

async fn stats(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(app.natter.server_stats(&session.user).await?))
}

async fn settings(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let stats = app.natter.server_stats(&session.user).await?;
    Ok(axum::Json(stats.who_may_join))
}

/// `{registration?: "open"|"invite"|"closed"|null, members_may_invite?}`;
/// `null` goes back to the server's flags.
async fn change_settings(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let change = JoinSettings::from_json(&body);
    Ok(axum::Json(
        app.natter.set_who_may_join(&session.user, change).await?,
    ))
}

/// 200 with the system message that records the deletion.
async fn moderate(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath((rid, seq)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let seq = rules::message_seq(Some(&Value::String(seq)));
    let record = app.natter.moderate(&session.user, &rid, seq).await?;
    Ok(axum::Json(serde_json::json!({ "message": record })))
}
