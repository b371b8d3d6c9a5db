//! The JSON API under `/api/v1`: one module per resource, each with its own router.

mod chats;
mod rooms;
mod sessions;
mod users;

use axum::Router;
use axum::extract::FromRequest;
use axum::http::StatusCode;

use super::AppState;
use super::error::ApiError;

/// `axum::Json`, with its rejections in the contract's error format.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(users::router())
        .merge(sessions::router())
        .merge(chats::router())
        .merge(rooms::router())
        .fallback(async || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route"))
}
