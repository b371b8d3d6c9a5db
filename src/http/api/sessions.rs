//! `POST /sessions` (log in, get a bearer token), `GET /sessions` (the
//! caller's sessions), `DELETE /sessions/current` (log out) and
//! `DELETE /sessions/{id}` (end one of one's sessions).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use serde::Deserialize;
use serde_json::json;

use super::{ApiJson, ApiPath};
use crate::http::AppState;
use crate::http::client_addr::ClientAddr;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions", post(login).get(list))
        // A static segment wins over the parameter: ids are hex, never "current".
        .route("/sessions/current", delete(logout))
        .route("/sessions/{id}", delete(revoke))
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

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
        axum::Json(json!({ "token": token, "user": session.user })),
    ))
}

async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let sessions = app.natter.sessions(&session).await?;
    Ok(axum::Json(json!({ "sessions": sessions })))
}

/// Revokes the token everywhere, including the sockets it opened.
async fn logout(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<StatusCode, ApiError> {
    app.natter.logout(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.natter.revoke_session(&session, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
