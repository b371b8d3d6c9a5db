//! A room's history: `GET` pages of it, `POST` a message into it.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use super::{ApiJson, ApiPath};
use crate::domain::model::Page;
use crate::domain::{Send, rules};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new().route("/rooms/{rid}/messages", get(history).post(post_message))
}

async fn history(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let arg = |name: &str| query.get(name).map(|v| Value::String(v.clone()));
    let limits = app.natter.limits();
    let page = Page {
        before: rules::seq_cursor(arg("before").as_ref(), "before")?,
        after: rules::seq_cursor(arg("after").as_ref(), "after")?,
        limit: rules::page_limit(arg("limit").as_ref(), limits.history_page_default, limits)?,
    };
    let messages = app.natter.history(&session.user, &rid, page).await?;
    Ok(axum::Json(json!({ "messages": messages })))
}

async fn post_message(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let send = Send {
        rid: &rid,
        message: body.get("message").unwrap_or(&Value::Null),
        client_id: body.get("client_id"),
        origin: None,
    };
    let message = app.natter.send(&session.user, send).await?;
    Ok((StatusCode::CREATED, axum::Json(message)))
}
