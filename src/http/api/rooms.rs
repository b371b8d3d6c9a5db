//! One room: `PATCH` renames a group; typing, read markers, the changes
//! since a revision, and the caller's notification level.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, patch, post, put};
use serde_json::{Value, json};

use super::{ApiJson, ApiPath, QueryArgs};
use crate::domain::rules::{self, Payload};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rooms/{rid}", patch(rename))
        .route("/rooms/{rid}/typing", post(typing))
        .route("/rooms/{rid}/read", post(read))
        .route("/rooms/{rid}/changes", get(changes))
        .route("/rooms/{rid}/notify", put(set_notify))
}

async fn rename(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let chat = app
        .natter
        .rename_group(&session.user, &rid, Payload(&body).title())
        .await?;
    Ok(axum::Json(chat))
}

async fn typing(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter
        .typing(&session.user, &rid, Payload(&body).typing(), None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn read(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let read_seq = app
        .natter
        .read(&session.user, &rid, Payload(&body).read_seq())
        .await?;
    Ok(axum::Json(json!({ "rid": rid, "read_seq": read_seq })))
}

async fn changes(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    args: QueryArgs,
) -> Result<impl IntoResponse, ApiError> {
    let limits = app.natter.limits();
    let after_rev = rules::seq_cursor(args.get("after_rev").as_ref(), "after_rev")?.unwrap_or(0);
    let limit = rules::page_limit(args.get("limit").as_ref(), limits.history_page_max, limits)?;
    let (messages, rev) = app
        .natter
        .changes(&session.user, &rid, after_rev, limit)
        .await?;
    Ok(axum::Json(json!({ "messages": messages, "rev": rev })))
}

/// `{notify: "all" | "mentions" | "none"}` → the chat as the caller now sees it.
async fn set_notify(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let chat = app
        .natter
        .set_notify(&session.user, &rid, Payload(&body).notify())
        .await?;
    Ok(axum::Json(chat))
}
