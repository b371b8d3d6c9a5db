//! `POST /users` (register), `GET /me`, and `PUT /me/password` (change one's
//! own password).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiJson;
use crate::domain::Registration;
use crate::domain::model::User;
use crate::http::AppState;
use crate::http::client_addr::ClientAddr;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(me))
        .routes(routes!(change_password))
}

#[derive(Deserialize, ToSchema)]
struct NewUser {
    /// 3–32 of `a-z 0-9 _ . -`, case-folded.
    username: String,
    email: String,
    /// At least 8 characters, at most 1 KiB.
    password: String,
    /// An invitation's code (an extension: see docs/protocol.md).
    #[serde(default)]
    invite: Option<String>,
}

#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    security(()),
    request_body = NewUser,
    responses(
        (status = 201, description = "Registered", body = User),
        (status = 403, description = "`invite_required`, `registration_closed` or `invalid_invite`", body = ErrorBody),
        (status = 409, description = "`taken`: the username or email is registered", body = ErrorBody),
        (status = 422, description = "`invalid`: a field breaks its rule", body = ErrorBody),
        (status = 429, description = "`rate_limited`: throttled (`Retry-After`)", body = ErrorBody),
    )
)]
async fn register(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<impl IntoResponse, ApiError> {
    let user = app
        .natter
        .register(
            Registration {
                username: body.username,
                email: body.email,
                password: body.password,
                invite: body.invite,
            },
            client,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// The caller.
#[utoipa::path(get, path = "/me", tag = "users", responses((status = 200, description = "The caller", body = User)))]
async fn me(Authenticated(session): Authenticated) -> axum::Json<User> {
    axum::Json(session.user)
}

#[derive(Deserialize, ToSchema)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// 204: changed; every other session of the caller has ended.
#[utoipa::path(
    put,
    path = "/me/password",
    tag = "users",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; every other session of the caller has ended"),
        (status = 422, description = "`invalid`: a wrong current password, or a new one that breaks the rule", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many wrong passwords", body = ErrorBody),
    )
)]
async fn change_password(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    Authenticated(session): Authenticated,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter
        .change_password(&session, &body.current_password, body.new_password, client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
