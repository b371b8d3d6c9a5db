//! `GET /chats` (the chat list) and `POST /chats` (open a direct chat by email).

use super::{ApiJson, QueryArgs};
use crate::domain::rules;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new().route("/chats", get(list).post(open_direct))
}

/// `?limit=N&before=CURSOR`: a page of the list (all of it without `limit`).
async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    args: QueryArgs,
) -> Result<impl IntoResponse, ApiError> {
    let limit = rules::seq_cursor(args.get("limit").as_ref(), "limit");
    let before = rules::chat_cursor(args.get("before").as_ref());
    let list = app.natter.chat_list(&session.user, limit, before).await?;
    Ok(axum::Json(list))
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
