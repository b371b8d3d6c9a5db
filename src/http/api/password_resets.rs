//! Password reset by email (on servers with `--smtp-url`):
//! `POST /password-resets {email}` asks for a link (202, whether or not an
//! account has that email), `POST /password-resets/{token} {password}` uses
//! one (204). Without SMTP both answer 404 `reset_unavailable`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;

use super::{ApiJson, ApiPath};
use crate::http::AppState;
use crate::http::client_addr::ClientAddr;
use crate::http::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/password-resets", post(request))
        .route("/password-resets/{token}", post(complete))
}

#[derive(Deserialize)]
struct ResetRequest {
    email: String,
}

async fn request(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    app.natter.request_password_reset(&body.email, client)?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

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
