//! The admin API under `/admin`: accounts (`GET /admin/users`, `PATCH
//! /admin/users/{id}`), the server's health and counts (`GET /admin/stats`),
//! who may join (`GET` and `PUT /admin/settings`), and moderation (`DELETE
//! /admin/rooms/{rid}/messages/{seq}`). Members get 403 `not_admin`.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, QueryArgs};
use crate::domain::admin::{AccountChange, AccountPage, JoinSettings};
use crate::domain::invites::WhoMayJoin;
use crate::domain::model::{Account, Message, ServerCounts};
use crate::domain::rules;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(users))
        .routes(routes!(change_user))
        .routes(routes!(stats))
        .routes(routes!(settings, change_settings))
        .routes(routes!(moderate))
}

/// A page of accounts in id order.
#[utoipa::path(
    get,
    path = "/admin/users",
    tag = "admin",
    params(
        ("q" = Option<String>, Query, description = "The start of a username, display name or email"),
        ("after" = Option<String>, Query, description = "The previous page's `next_after`"),
        ("limit" = Option<i64>, Query, description = "Accounts per page"),
    ),
    responses(
        (status = 200, description = "A page of accounts", body = AccountPage),
        (status = 403, description = "`not_admin`", body = ErrorBody),
        (status = 422, description = "`invalid`", body = ErrorBody),
    )
)]
async fn users(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    args: QueryArgs,
) -> Result<impl IntoResponse, ApiError> {
    let query = args.get("q").and_then(|q| q.as_str().map(str::to_owned));
    let after = args
        .get("after")
        .map(|a| rules::user_id(Some(&a)))
        .transpose();
    let limit = rules::seq_cursor(args.get("limit").as_ref(), "limit");
    let page = app
        .natter
        .accounts(&session.user, query, after, limit)
        .await?;
    Ok(axum::Json(page))
}

#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct AccountChangeBody {
    /// Disabling ends the account's sessions and drops its sockets on every node.
    disabled: Option<bool>,
    /// A new password (the registration rule); ends the account's sessions.
    password: Option<String>,
}

/// Disables, enables, or sets the password of an account.
#[utoipa::path(
    patch,
    path = "/admin/users/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The account's id")),
    request_body = AccountChangeBody,
    responses(
        (status = 200, description = "The account as it now is", body = Account),
        (status = 403, description = "`not_admin`", body = ErrorBody),
        (status = 404, description = "`no_such_user`", body = ErrorBody),
        (status = 422, description = "`invalid`", body = ErrorBody),
    )
)]
async fn change_user(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let id = rules::user_id(Some(&Value::String(id)));
    let change = AccountChange::from_json(&body);
    let account = app.natter.change_account(&session.user, id, change).await?;
    Ok(axum::Json(account))
}

/// The server as an admin sees it (`crate::domain::admin::ServerStats`).
#[derive(ToSchema)]
#[schema(as = ServerStats)]
#[expect(dead_code, reason = "only describes an answer")]
struct ServerStatsBody {
    version: String,
    /// Whether the database answers.
    database: bool,
    counts: ServerCounts,
    /// Sockets open on the node that answered.
    sockets_on_this_node: u64,
    /// Who may register now.
    registration: crate::domain::invites::RegistrationMode,
    /// Whether members (not only admins) may make invitations.
    members_may_invite: bool,
}

/// The server's health and counts.
#[utoipa::path(
    get,
    path = "/admin/stats",
    tag = "admin",
    responses(
        (status = 200, description = "The server", body = ServerStatsBody),
        (status = 403, description = "`not_admin`", body = ErrorBody),
    )
)]
async fn stats(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(app.natter.server_stats(&session.user).await?))
}

/// Who may join now.
#[utoipa::path(
    get,
    path = "/admin/settings",
    tag = "admin",
    responses(
        (status = 200, description = "Who may join", body = WhoMayJoin),
        (status = 403, description = "`not_admin`", body = ErrorBody),
    )
)]
async fn settings(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let stats = app.natter.server_stats(&session.user).await?;
    Ok(axum::Json(stats.who_may_join))
}

#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct JoinSettingsBody {
    /// `null` goes back to the server's flags.
    registration: Option<crate::domain::invites::RegistrationMode>,
    members_may_invite: Option<bool>,
}

/// Sets who may join, for every node; fields left out stay as they are.
#[utoipa::path(
    put,
    path = "/admin/settings",
    tag = "admin",
    request_body = JoinSettingsBody,
    responses(
        (status = 200, description = "Who may join now", body = WhoMayJoin),
        (status = 403, description = "`not_admin`", body = ErrorBody),
        (status = 422, description = "`invalid`", body = ErrorBody),
    )
)]
async fn change_settings(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let change = JoinSettings::from_json(&body);
    Ok(axum::Json(
        app.natter.set_who_may_join(&session.user, change).await?,
    ))
}

/// The system message that records a moderation.
#[derive(Serialize, ToSchema)]
struct Moderated {
    message: Message,
}

/// Deletes a message as an admin; a system message records it.
#[utoipa::path(
    delete,
    path = "/admin/rooms/{rid}/messages/{seq}",
    tag = "admin",
    params(
        ("rid" = String, Path, description = "The room's id"),
        ("seq" = i64, Path, description = "The message's seq"),
    ),
    responses(
        (status = 200, description = "The system message that records the deletion", body = Moderated),
        (status = 403, description = "`not_admin`", body = ErrorBody),
        (status = 404, description = "`no_such_room` or `no_such_message`", body = ErrorBody),
    )
)]
async fn moderate(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath((rid, seq)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let seq = rules::message_seq(Some(&Value::String(seq)));
    let record = app.natter.moderate(&session.user, &rid, seq).await?;
    Ok(axum::Json(Moderated { message: record }))
}
