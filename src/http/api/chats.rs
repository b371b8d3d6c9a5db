//! `GET /chats` (the chat list) and `POST /chats` (open a direct chat by email).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::ApiJson;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new().route("/chats", get(list).post(open_direct))
}

async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let chats = app.natter.chats(&session.user).await?;
    Ok(axum::Json(json!({ "chats": chats })))
}

#[derive(Deserialize)]
struct Contact {
    email: String,
}

async fn open_direct(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiJson(body): ApiJson<Contact>,
) -> Result<impl IntoResponse, ApiError> {
    let (chat, created) = app
        .natter
        .open_direct_chat(&session.user, &body.email)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(chat)))
}
