//! `GET /search?q=…&limit=N`: full-text search across the caller's rooms.

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use super::QueryArgs;
use crate::domain::Search;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new().route("/search", get(search))
}

async fn search(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    args: QueryArgs,
) -> Result<impl IntoResponse, ApiError> {
    let messages = app
        .natter
        .search(
            &session.user,
            Search::from_json(args.get("q").as_ref(), args.get("limit").as_ref()),
        )
        .await?;
    Ok(axum::Json(json!({ "messages": messages })))
}
