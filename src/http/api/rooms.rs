//! One room: `PATCH` renames a group; typing, read markers, the changes
//! since a revision, and the caller's notification level.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, QueryArgs};
use crate::domain::model::{Chat, Message, NotifyLevel};
use crate::domain::rules::{self, Payload};
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rename))
        .routes(routes!(typing))
        .routes(routes!(read))
        .routes(routes!(changes))
        .routes(routes!(set_notify))
}

// The bodies below are read by the domain's rules from the JSON itself
// (their messages name the field); these types only describe them.

/// A group's new title.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct Rename {
    /// 1–80 characters, trimmed.
    title: String,
}

/// Renames a group (any member may).
#[utoipa::path(
    patch,
    path = "/rooms/{rid}",
    tag = "rooms",
    params(("rid" = String, Path, description = "The room's id")),
    request_body = Rename,
    responses(
        (status = 200, description = "The group, renamed", body = Chat),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_room`", body = ErrorBody),
        (status = 422, description = "`not_group` or `invalid`", body = ErrorBody),
    )
)]
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

#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct Typing {
    /// Whether the caller is typing; absent or `null` counts as `true`.
    typing: Option<bool>,
}

/// Tells the room's other sockets that the caller is typing (or stopped).
#[utoipa::path(
    post,
    path = "/rooms/{rid}/typing",
    tag = "rooms",
    params(("rid" = String, Path, description = "The room's id")),
    request_body = Typing,
    responses(
        (status = 204, description = "Passed on (a `true` at most once per 2 s)"),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_room`", body = ErrorBody),
        (status = 422, description = "`invalid`", body = ErrorBody),
    )
)]
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

#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct Read {
    /// Up to which message the caller has read (capped at the room's last;
    /// never moves back). Its decimal text is taken too.
    #[schema(minimum = 0)]
    seq: i64,
}

/// Where the caller's read marker stands now.
#[derive(Serialize, ToSchema)]
struct ReadMarker {
    rid: String,
    read_seq: i64,
}

/// Moves the caller's read marker forward.
#[utoipa::path(
    post,
    path = "/rooms/{rid}/read",
    tag = "rooms",
    params(("rid" = String, Path, description = "The room's id")),
    request_body = Read,
    responses(
        (status = 200, description = "The marker", body = ReadMarker),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_room`", body = ErrorBody),
        (status = 422, description = "`invalid`", body = ErrorBody),
    )
)]
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
    Ok(axum::Json(ReadMarker { rid, read_seq }))
}

/// The messages changed since a revision.
#[derive(Serialize, ToSchema)]
struct Changes {
    /// Edited, deleted or reacted to after `after_rev`, in revision order.
    messages: Vec<Message>,
    /// The revision caught up to: pass it as `after_rev` for the rest.
    rev: i64,
}

#[utoipa::path(
    get,
    path = "/rooms/{rid}/changes",
    tag = "rooms",
    params(
        ("rid" = String, Path, description = "The room's id"),
        ("after_rev" = Option<i64>, Query, minimum = 0, description = "The revision the caller has (default 0)"),
        ("limit" = Option<i64>, Query, minimum = 1, description = "At most this many (default and cap: the largest history page)"),
    ),
    responses(
        (status = 200, description = "The changes", body = Changes),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_room`", body = ErrorBody),
        (status = 422, description = "`invalid`", body = ErrorBody),
    )
)]
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
    Ok(axum::Json(Changes { messages, rev }))
}

#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct Notify {
    notify: NotifyLevel,
}

/// `{notify: "all" | "mentions" | "none"}` → the chat as the caller now sees it.
#[utoipa::path(
    put,
    path = "/rooms/{rid}/notify",
    tag = "rooms",
    params(("rid" = String, Path, description = "The room's id")),
    request_body = Notify,
    responses(
        (status = 200, description = "The chat, with its new level", body = Chat),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_room`", body = ErrorBody),
        (status = 422, description = "`invalid`", body = ErrorBody),
    )
)]
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
