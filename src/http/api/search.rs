//! `GET /search?q=…&limit=N`: full-text search across the caller's rooms.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::QueryArgs;
use crate::domain::Search;
use crate::domain::model::Message;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search))
}

#[derive(Serialize, ToSchema)]
struct Found {
    /// Newest first.
    messages: Vec<Message>,
}

/// The caller's rooms' text messages that have every word of `q` as a word prefix.
#[utoipa::path(
    get,
    path = "/search",
    tag = "search",
    params(
        ("q" = String, Query, description = "1–200 characters with at least one word (the first 10 count)"),
        ("limit" = Option<i64>, Query, minimum = 1, description = "At most this many (default 20; above 50 served as 50)"),
    ),
    responses(
        (status = 200, description = "The hits", body = Found),
        (status = 422, description = "`invalid`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
        (status = 503, description = "`search_timeout`: past the time budget", body = ErrorBody),
    )
)]
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
    Ok(axum::Json(Found { messages }))
}
