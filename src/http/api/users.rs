//! `POST /users` (register), `GET /me`, and `PUT /me/password` (change one's
//! own password).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use serde::Deserialize;

use super::ApiJson;
use crate::domain::Registration;
use crate::http::AppState;
use crate::http::client_addr::ClientAddr;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", post(register))
        .route("/me", get(me))
        .route("/me/password", put(change_password))
}

#[derive(Deserialize)]
struct NewUser {
    username: String,
    email: String,
    password: String,
    /// An invitation's code (an extension: see docs/protocol.md).
    #[serde(default)]
    invite: Option<String>,
}

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

async fn me(Authenticated(session): Authenticated) -> axum::Json<crate::domain::model::User> {
    axum::Json(session.user)
}

#[derive(Deserialize)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// 204: changed; every other session of the caller has ended.
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
