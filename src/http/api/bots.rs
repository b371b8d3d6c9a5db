//! Bots and their tokens: `POST /bots` makes one, `GET /bots` lists mine,
//! `DELETE /bots/{id}` deletes one; `POST /bots/{id}/tokens` makes a token
//! (its secret answered once), `GET` lists them, `DELETE …/{token}` revokes one.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use serde_json::{Value, json};

use super::{ApiJson, ApiPath};
use crate::domain::Error;
use crate::domain::bots::NewToken;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/bots", post(create).get(list))
        .route("/bots/{id}", delete(remove))
        .route("/bots/{id}/tokens", post(create_token).get(tokens))
        .route("/bots/{id}/tokens/{token}", delete(revoke_token))
}

/// A required text field of a body.
pub fn text_field(body: &Value, name: &str) -> Result<String, Error> {
    match body.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        _ => Err(Error::invalid(format!("{name} must be a string"))),
    }
}

async fn create(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let bot = app
        .natter
        .create_bot(&session.user, text_field(&body, "username"))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(bot)))
}

async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let bots = app.natter.bots(&session.user).await?;
    Ok(axum::Json(json!({ "bots": bots })))
}

async fn remove(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter.delete_bot(&session.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// 201 with the token's description and, this once, its secret (`token`).
async fn create_token(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let (token, secret) = app
        .natter
        .create_bot_token(&session.user, &id, NewToken::from_json(&body))
        .await?;
    let mut answer = json!(token);
    answer["token"] = json!(secret);
    Ok((StatusCode::CREATED, axum::Json(answer)))
}

async fn tokens(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let tokens = app.natter.bot_tokens(&session.user, &id).await?;
    Ok(axum::Json(json!({ "tokens": tokens })))
}

async fn revoke_token(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath((id, token)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter
        .revoke_bot_token(&session.user, &id, &token)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
