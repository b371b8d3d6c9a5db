//! Password reset by email (on servers with `--smtp-url`):
//! `POST /password-resets {email}` asks for a link (202, whether or not an
//! account has that email), `POST /password-resets/{token} {password}` uses
//! one (204). Without SMTP both answer 404 `reset_unavailable`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath};
use crate::http::AppState;
use crate::http::client_addr::ClientAddr;
use crate::http::error::{ApiError, ErrorBody};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request))
        .routes(routes!(complete))
}

#[derive(Deserialize, ToSchema)]
struct ResetRequest {
    email: String,
}

/// Asks for a reset link by email.
#[utoipa::path(
    post,
    path = "/password-resets",
    tag = "users",
    security(()),
    request_body = ResetRequest,
    responses(
        (status = 202, description = "Accepted, whether or not an account has that email"),
        (status = 404, description = "`reset_unavailable`: the server sends no mail (no `--smtp-url`)", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    )
)]
async fn request(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    app.natter.request_password_reset(&body.email, client)?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
struct NewPassword {
    /// The registration rule.
    password: String,
}

/// Sets a new password with a reset link's token; ends every session.
#[utoipa::path(
    post,
    path = "/password-resets/{token}",
    tag = "users",
    security(()),
    params(("token" = String, Path, description = "The link's token")),
    request_body = NewPassword,
    responses(
        (status = 204, description = "The password is set"),
        (status = 404, description = "`reset_unavailable`: the server sends no mail (no `--smtp-url`); `invalid_reset`: a used, expired or unknown token", body = ErrorBody),
        (status = 422, description = "`invalid`: a password that breaks the rule", body = ErrorBody),
    )
)]
async fn complete(
    State(app): State<AppState>,
    ApiPath(token): ApiPath<String>,
    ApiJson(body): ApiJson<NewPassword>,
) -> Result<StatusCode, ApiError> {
    app.natter
        .complete_password_reset(&token, body.password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
