//! `POST /sessions` (log in, get a bearer token) and `DELETE /sessions/current`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use serde::Deserialize;
use serde_json::json;

use super::ApiJson;
use crate::http::AppState;
use crate::http::client_addr::ClientAddr;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions", post(login))
        .route("/sessions/current", delete(logout))
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

/// Revokes the token everywhere, including the sockets it opened.
async fn logout(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<StatusCode, ApiError> {
    app.natter.logout(&session).await?;
    app.fanout.end_session(&session).await;
    Ok(StatusCode::NO_CONTENT)
}
