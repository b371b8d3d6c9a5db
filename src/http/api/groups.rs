//! `POST /groups` (create a group) and a group's members: list, add, remove
//! (`me` as the user id: leave).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath};
use crate::domain::NewGroup;
use crate::domain::model::{Chat, Member};
use crate::domain::rules::{self, Payload};
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(list, add))
        .routes(routes!(remove))
}

// The bodies below are read by the domain's rules from the JSON itself
// (their messages name the field); these types only describe them.

#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct NewGroupBody {
    /// 1–80 characters, trimmed.
    title: String,
    /// The other members' emails (at most 100; may be empty; one's own and
    /// repeats are ignored).
    emails: Vec<String>,
}

/// Creates a group owned by the caller.
#[utoipa::path(
    post,
    path = "/groups",
    tag = "groups",
    request_body = NewGroupBody,
    responses(
        (status = 201, description = "The group", body = Chat),
        (status = 404, description = "`no_such_user`: an email nobody has (nothing is created)", body = ErrorBody),
        (status = 422, description = "`invalid`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many look-ups", body = ErrorBody),
    )
)]
async fn create(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let chat = app
        .natter
        .create_group(&session.user, NewGroup::from_json(&body))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(chat)))
}

/// A room's members, with their presence.
#[derive(Serialize, ToSchema)]
struct Members {
    members: Vec<Member>,
}

#[utoipa::path(
    get,
    path = "/rooms/{rid}/members",
    tag = "groups",
    params(("rid" = String, Path, description = "The room's id")),
    responses(
        (status = 200, description = "The members", body = Members),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_room`", body = ErrorBody),
    )
)]
async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let members = app.natter.members(&session.user, &rid).await?;
    Ok(axum::Json(Members { members }))
}

#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct NewMember {
    /// The person's email.
    email: String,
}

/// Adds someone to a group the caller owns.
#[utoipa::path(
    post,
    path = "/rooms/{rid}/members",
    tag = "groups",
    params(("rid" = String, Path, description = "The room's id")),
    request_body = NewMember,
    responses(
        (status = 200, description = "The group, with its new member", body = Chat),
        (status = 403, description = "`not_member` or `not_owner`", body = ErrorBody),
        (status = 404, description = "`no_such_room` or `no_such_user`", body = ErrorBody),
        (status = 409, description = "`already_member`", body = ErrorBody),
        (status = 422, description = "`not_group` or `invalid`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    )
)]
async fn add(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let chat = app
        .natter
        .add_member(&session.user, &rid, Payload(&body).email())
        .await?;
    Ok(axum::Json(chat))
}

/// Removes a member (the owner), or leaves (`me`, or one's own id).
#[utoipa::path(
    delete,
    path = "/rooms/{rid}/members/{user_id}",
    tag = "groups",
    params(
        ("rid" = String, Path, description = "The room's id"),
        ("user_id" = String, Path, description = "The member's id, or `me`"),
    ),
    responses(
        (status = 204, description = "Removed, or left"),
        (status = 403, description = "`not_member` or `not_owner`", body = ErrorBody),
        (status = 404, description = "`no_such_room` or `no_such_user`", body = ErrorBody),
        (status = 422, description = "`not_group` or `invalid`", body = ErrorBody),
    )
)]
async fn remove(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath((rid, user_id)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter
        .remove_member(&session.user, &rid, rules::whom(&Value::String(user_id)))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
