//! `GET /chats` (the chat list) and `POST /chats` (open a direct chat by email).

use super::{ApiJson, QueryArgs};
use crate::domain::ChatList;
use crate::domain::model::Chat;
use crate::domain::rules;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, open_direct))
}

/// `?limit=N&before=CURSOR`: a page of the list (all of it without `limit`).
#[utoipa::path(
    get,
    path = "/chats",
    tag = "chats",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, description = "A page of this many chats; without it, the whole list"),
        ("before" = Option<String>, Query, description = "A page's `next_before`: the page after it"),
    ),
    responses(
        (status = 200, description = "The caller's chats, most recently active first", body = ChatList),
        (status = 422, description = "`invalid`: a bad `limit` or `before`", body = ErrorBody),
    )
)]
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

#[derive(Deserialize, ToSchema)]
struct Contact {
    /// The other person's.
    email: String,
}

/// The direct chat with the person of that email: 201 when it is new, 200
/// when it was there.
#[utoipa::path(
    post,
    path = "/chats",
    tag = "chats",
    request_body = Contact,
    responses(
        (status = 200, description = "The chat, which existed", body = Chat),
        (status = 201, description = "The chat, new", body = Chat),
        (status = 404, description = "`no_such_user`: nobody has that email", body = ErrorBody),
        (status = 422, description = "`self` (one's own email) or `invalid`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many look-ups", body = ErrorBody),
    )
)]
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
