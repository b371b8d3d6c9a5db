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
use crate::domain::model::{Chat, GroupInvitation, Member};
use crate::domain::rules::{self, Payload};
use crate::domain::{Added, NewGroup};
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(list, add))
        .routes(routes!(remove))
        .routes(routes!(invitations))
        .routes(routes!(accept))
        .routes(routes!(decline))
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

/// `202`'s body: the person was asked, not added (they left the group
/// before, or, with `--group-adds consent`, share no room with the adder);
/// they join when they accept.
#[derive(Serialize, ToSchema)]
struct Invited {
    /// Always `true`.
    invited: bool,
}

/// Adds someone to a group the caller owns, or asks them.
#[utoipa::path(
    post,
    path = "/rooms/{rid}/members",
    tag = "groups",
    params(("rid" = String, Path, description = "The room's id")),
    request_body = NewMember,
    responses(
        (status = 200, description = "The group, with its new member", body = Chat),
        (status = 202, description = "Asked, not added: they join when they accept (`GET /group-invitations`)", body = Invited),
        (status = 403, description = "`not_member`, `not_owner`, `blocked` (either blocks the other) or `declined` (a no within 30 days)", body = ErrorBody),
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
    let added = app
        .natter
        .add_member(&session.user, &rid, Payload(&body).email())
        .await?;
    Ok(match added {
        Added::Member(chat) => (StatusCode::OK, axum::Json(chat)).into_response(),
        // Asked, not added: they join when they accept.
        Added::Invited => {
            (StatusCode::ACCEPTED, axum::Json(Invited { invited: true })).into_response()
        }
    })
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

/// The adds to groups waiting for one's answer.
#[derive(Serialize, ToSchema)]
struct Invitations {
    invitations: Vec<GroupInvitation>,
}

/// The invitations to groups waiting for my answer.
#[utoipa::path(
    get,
    path = "/group-invitations",
    tag = "groups",
    responses((status = 200, description = "Newest first", body = Invitations))
)]
async fn invitations(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let invitations = app.natter.group_invitations(&session.user).await?;
    Ok(axum::Json(Invitations { invitations }))
}

/// Accepts an invitation: joins the group.
#[utoipa::path(
    post,
    path = "/group-invitations/{rid}/accept",
    tag = "groups",
    params(("rid" = String, Path, description = "The group's id")),
    responses(
        (status = 200, description = "The group I joined", body = Chat),
        (status = 404, description = "`not_found`: no such invitation", body = ErrorBody),
    )
)]
async fn accept(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let chat = app
        .natter
        .accept_group_invitation(&session.user, &rid)
        .await?;
    Ok(axum::Json(chat))
}

/// Declines an invitation: the group may not ask again for 30 days.
#[utoipa::path(
    post,
    path = "/group-invitations/{rid}/decline",
    tag = "groups",
    params(("rid" = String, Path, description = "The group's id")),
    responses(
        (status = 204, description = "Declined"),
        (status = 404, description = "`not_found`: no such invitation", body = ErrorBody),
    )
)]
async fn decline(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter
        .decline_group_invitation(&session.user, &rid)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
