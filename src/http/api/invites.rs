//! Invitations: `POST /invites` makes one (admins; members too with
//! `--members-may-invite`), `GET /invites` lists mine (an admin: all),
//! `DELETE /invites/{code}` revokes one. Registering with one is
//! `POST /users` with `invite`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use serde_json::{Value, json};

use super::{ApiJson, ApiPath};
use crate::domain::invites::NewInvite;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/invites", post(create).get(list))
        .route("/invites/{code}", delete(revoke))
}

/// 201 with the invitation: its `url` is the link to hand out.
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

async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let invites = app.natter.invites(&session.user).await?;
    Ok(axum::Json(json!({ "invites": invites })))
}

async fn revoke(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(code): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter.revoke_invite(&session.user, &code).await?;
    Ok(StatusCode::NO_CONTENT)
}
