//! `GET /search?q=…&limit=N`: full-text search across the caller's rooms.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new().route("/search", get(search))
}

async fn search(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    Query(query): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let arg = |name: &str| query.get(name).map(|v| Value::String(v.clone()));
    let messages = app
        .natter
        .search(&session.user, arg("q").as_ref(), arg("limit").as_ref())
        .await?;
    Ok(axum::Json(json!({ "messages": messages })))
}
