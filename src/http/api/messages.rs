//! A room's messages: `GET` pages of history, `POST` a message (or a reply),
//! `PATCH` / `DELETE` one's own, toggle a reaction.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, QueryArgs};
use crate::domain::model::{Message, Page};
use crate::domain::rules;
use crate::domain::{Edit, History, React, Send};
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(history, post_message))
        .routes(routes!(edit_message, delete_message))
        .routes(routes!(react))
}

/// A page of the room's history, in ascending `seq`; with no cursor, the newest.
#[utoipa::path(
    get,
    path = "/rooms/{rid}/messages",
    tag = "messages",
    params(
        ("rid" = String, Path, description = "The room's id"),
        ("before" = Option<i64>, Query, minimum = 0, description = "Only messages below this `seq` (exclusive)"),
        ("after" = Option<i64>, Query, minimum = 0, description = "Only messages above this `seq` (exclusive)"),
        ("limit" = Option<i64>, Query, minimum = 1, description = "At most this many (default 50; above the maximum, 200, served as the maximum)"),
    ),
    responses(
        (status = 200, description = "The page", body = History),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_room`", body = ErrorBody),
        (status = 422, description = "`invalid`: a bad cursor or limit", body = ErrorBody),
    )
)]
async fn history(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    args: QueryArgs,
) -> Result<impl IntoResponse, ApiError> {
    let limits = app.natter.limits();
    let page = Page {
        before: rules::seq_cursor(args.get("before").as_ref(), "before")?,
        after: rules::seq_cursor(args.get("after").as_ref(), "after")?,
        limit: rules::page_limit(
            args.get("limit").as_ref(),
            limits.history_page_default,
            limits,
        )?,
    };
    Ok(axum::Json(
        app.natter.history(&session.user, &rid, page).await?,
    ))
}

// The bodies below are read by the domain's rules from the JSON itself
// (their messages name the field); these types only describe them.

/// A message to send.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct NewMessage {
    /// 1–4000 characters after trimming; may be `""` or absent with attachments.
    message: Option<String>,
    /// The sender's own id for it (1–128 characters): a resend with the same
    /// one answers the stored message.
    client_id: Option<String>,
    /// The `seq` of the message it replies to, in this room.
    reply_to: Option<i64>,
    /// Ids of the sender's uploads into this room, not yet sent (at most 10).
    attachments: Option<Vec<String>>,
}

/// Sends a message; it is broadcast like a socket send.
#[utoipa::path(
    post,
    path = "/rooms/{rid}/messages",
    tag = "messages",
    params(("rid" = String, Path, description = "The room's id")),
    request_body = NewMessage,
    responses(
        (status = 201, description = "Stored (or, for a resend, the stored one)", body = Message),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_room`, `no_such_message` (`reply_to`) or `not_found` (an attachment)", body = ErrorBody),
        (status = 413, description = "`too_long`", body = ErrorBody),
        (status = 422, description = "`empty` or `invalid`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    )
)]
async fn post_message(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let send = Send::from_json(&rid, &body, app.natter.limits(), None);
    let message = app.natter.send(&session.user, send).await?;
    Ok((StatusCode::CREATED, axum::Json(message)))
}

/// The `seq` of a path, read like one in a payload (a non-number is `invalid`).
fn seq_of(seq: String) -> Value {
    Value::String(seq)
}

#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct EditedMessage {
    /// The new text, by the rules of a new message.
    message: String,
}

/// Edits one's own text message.
#[utoipa::path(
    patch,
    path = "/rooms/{rid}/messages/{seq}",
    tag = "messages",
    params(
        ("rid" = String, Path, description = "The room's id"),
        ("seq" = i64, Path, description = "The message's `seq`"),
    ),
    request_body = EditedMessage,
    responses(
        (status = 200, description = "The message, edited", body = Message),
        (status = 403, description = "`not_member` or `not_sender`", body = ErrorBody),
        (status = 404, description = "`no_such_room` or `no_such_message`", body = ErrorBody),
        (status = 409, description = "`deleted`", body = ErrorBody),
        (status = 413, description = "`too_long`", body = ErrorBody),
        (status = 422, description = "`empty` or `invalid`", body = ErrorBody),
    )
)]
async fn edit_message(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath((rid, seq)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let edit = Edit::from_json(Some(&seq_of(seq)), &body, app.natter.limits());
    let message = app.natter.edit(&session.user, &rid, edit, None).await?;
    Ok(axum::Json(message))
}

/// Deletes one's own text message (again: the deleted message).
#[utoipa::path(
    delete,
    path = "/rooms/{rid}/messages/{seq}",
    tag = "messages",
    params(
        ("rid" = String, Path, description = "The room's id"),
        ("seq" = i64, Path, description = "The message's `seq`"),
    ),
    responses(
        (status = 200, description = "The message, deleted", body = Message),
        (status = 403, description = "`not_member` or `not_sender`", body = ErrorBody),
        (status = 404, description = "`no_such_room` or `no_such_message`", body = ErrorBody),
    )
)]
async fn delete_message(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath((rid, seq)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let message = app
        .natter
        .delete(
            &session.user,
            &rid,
            rules::message_seq(Some(&seq_of(seq))),
            None,
        )
        .await?;
    Ok(axum::Json(message))
}

#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct Reacting {
    /// 1–32 bytes, with no ASCII letter, digit, space or control character.
    emoji: String,
}

/// Toggles the caller's reaction.
#[utoipa::path(
    post,
    path = "/rooms/{rid}/messages/{seq}/reactions",
    tag = "messages",
    params(
        ("rid" = String, Path, description = "The room's id"),
        ("seq" = i64, Path, description = "The message's `seq`"),
    ),
    request_body = Reacting,
    responses(
        (status = 200, description = "The message, with its reactions", body = Message),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_room` or `no_such_message`", body = ErrorBody),
        (status = 409, description = "`deleted`", body = ErrorBody),
        (status = 422, description = "`invalid`", body = ErrorBody),
    )
)]
async fn react(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath((rid, seq)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let react = React::from_json(Some(&seq_of(seq)), &body);
    let message = app.natter.react(&session.user, &rid, react, None).await?;
    Ok(axum::Json(message))
}
