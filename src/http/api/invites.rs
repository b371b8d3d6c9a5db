//! Invitations: `POST /invites` makes one (admins; members too with
//! `--members-may-invite`), `GET /invites` lists mine (an admin: all),
//! `DELETE /invites/{code}` revokes one. Registering with one is
//! `POST /users` with `invite`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath};
use crate::domain::invites::NewInvite;
use crate::domain::model::Invite;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(revoke))
}

/// Read by the domain's rules from the JSON itself; this type only describes it.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct NewInviteBody {
    /// A group (the caller's own) its users join.
    room_id: Option<String>,
    /// 1–1000 (default 1).
    #[schema(minimum = 1, maximum = 1000)]
    max_uses: Option<i64>,
    /// 1–2,592,000 (default 7 days).
    #[schema(minimum = 1, maximum = 2_592_000)]
    expires_in_secs: Option<i64>,
}

/// 201 with the invitation: its `url` is the link to hand out.
#[utoipa::path(
    post,
    path = "/invites",
    tag = "invites",
    request_body = NewInviteBody,
    responses(
        (status = 201, description = "The invitation", body = Invite),
        (status = 403, description = "`not_admin`, `not_member` or `not_owner`", body = ErrorBody),
        (status = 422, description = "`not_group` or `invalid`", body = ErrorBody),
    )
)]
async fn create(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let invite = app
        .natter
        .create_invite(&session.user, NewInvite::from_json(&body))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(invite)))
}

#[derive(Serialize, ToSchema)]
struct Invites {
    /// Newest first.
    invites: Vec<Invite>,
}

/// The caller's invitations (an admin's: everyone's).
#[utoipa::path(get, path = "/invites", tag = "invites", responses((status = 200, description = "The invitations", body = Invites)))]
async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let invites = app.natter.invites(&session.user).await?;
    Ok(axum::Json(Invites { invites }))
}

/// Its link stops working at once (revoking again: 204 too).
#[utoipa::path(
    delete,
    path = "/invites/{code}",
    tag = "invites",
    params(("code" = String, Path, description = "The invitation's code")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`not_found`: none of the caller's (an admin may revoke anyone's)", body = ErrorBody),
    )
)]
async fn revoke(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(code): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter.revoke_invite(&session.user, &code).await?;
    Ok(StatusCode::NO_CONTENT)
}
