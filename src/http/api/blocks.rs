//! `GET /blocks` (whom I block), `PUT` and `DELETE /blocks/{user_id}`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use serde_json::{Value, json};

use super::ApiPath;
use crate::domain::rules;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/blocks", get(list))
        .route("/blocks/{user_id}", put(block).delete(unblock))
}

async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let blocked = app.natter.blocked(&session.user).await?;
    Ok(axum::Json(json!({ "blocked": blocked })))
}

/// 204; blocking again is no error.
async fn block(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(user_id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let whom = rules::user_id(Some(&Value::String(user_id)));
    app.natter.block(&session.user, whom).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unblock(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(user_id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let whom = rules::user_id(Some(&Value::String(user_id)));
    app.natter.unblock(&session.user, whom).await?;
    Ok(StatusCode::NO_CONTENT)
}
