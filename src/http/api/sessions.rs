//! `POST /sessions` (log in, get a bearer token), `GET /sessions` (the
//! caller's sessions), `DELETE /sessions/current` (log out) and
//! `DELETE /sessions/{id}` (end one of one's sessions).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath};
use crate::domain::model::{SessionInfo, User};
use crate::http::AppState;
use crate::http::client_addr::ClientAddr;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login, list))
        // A static segment wins over the parameter: ids are hex, never "current".
        .routes(routes!(logout))
        .routes(routes!(revoke))
}

#[derive(Deserialize, ToSchema)]
struct Credentials {
    email: String,
    password: String,
}

/// A new session: its token, and who it is for.
#[derive(Serialize, ToSchema)]
struct LoggedIn {
    /// Opaque: `Authorization: Bearer TOKEN`, or Socket.IO's `auth.token`.
    token: String,
    user: User,
}

#[utoipa::path(
    post,
    path = "/sessions",
    tag = "sessions",
    security(()),
    request_body = Credentials,
    responses(
        (status = 201, description = "Logged in", body = LoggedIn),
        (status = 401, description = "`bad_credentials`", body = ErrorBody),
        (status = 403, description = "`disabled`: an operator disabled the account", body = ErrorBody),
        (status = 429, description = "`rate_limited`: throttled (`Retry-After`)", body = ErrorBody),
    )
)]
async fn login(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    let (session, token) = app
        .natter
        .login(&body.email, &body.password, client)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(LoggedIn {
            token,
            user: session.user,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
struct Sessions {
    /// Most recently used first.
    sessions: Vec<SessionInfo>,
}

#[utoipa::path(get, path = "/sessions", tag = "sessions", responses((status = 200, description = "The caller's sessions", body = Sessions)))]
async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let sessions = app.natter.sessions(&session).await?;
    Ok(axum::Json(Sessions { sessions }))
}

/// Revokes the token everywhere, including the sockets it opened.
#[utoipa::path(delete, path = "/sessions/current", tag = "sessions", responses((status = 204, description = "Logged out: the token stops working everywhere")))]
async fn logout(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<StatusCode, ApiError> {
    app.natter.logout(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "A session's id, as `GET /sessions` lists it")),
    responses(
        (status = 204, description = "The session has ended"),
        (status = 404, description = "`no_such_session`: none of the caller's", body = ErrorBody),
    )
)]
async fn revoke(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.natter.revoke_session(&session, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
