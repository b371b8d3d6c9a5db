//! `GET /blocks` (whom I block), `PUT` and `DELETE /blocks/{user_id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiPath;
use crate::domain::model::Person;
use crate::domain::rules;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(block, unblock))
}

/// The people I block.
#[derive(Serialize, ToSchema)]
struct Blocked {
    blocked: Vec<Person>,
}

/// Whom I block.
#[utoipa::path(
    get,
    path = "/blocks",
    tag = "blocks",
    responses((status = 200, description = "The people I block", body = Blocked))
)]
async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let blocked = app.natter.blocked(&session.user).await?;
    Ok(axum::Json(Blocked { blocked }))
}

/// Blocks someone: they can no longer write to me nor add me to groups.
#[utoipa::path(
    put,
    path = "/blocks/{user_id}",
    tag = "blocks",
    params(("user_id" = String, Path, description = "Their id")),
    responses(
        (status = 204, description = "Blocked (blocking again is no error)"),
        (status = 404, description = "`no_such_user`", body = ErrorBody),
        (status = 422, description = "`self`: oneself; `invalid`", body = ErrorBody),
    )
)]
async fn block(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(user_id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let whom = rules::user_id(Some(&Value::String(user_id)));
    app.natter.block(&session.user, whom).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unblocks someone.
#[utoipa::path(
    delete,
    path = "/blocks/{user_id}",
    tag = "blocks",
    params(("user_id" = String, Path, description = "Their id")),
    responses(
        (status = 204, description = "Unblocked"),
        (status = 404, description = "`no_such_user`: not blocked by me", body = ErrorBody),
        (status = 422, description = "`invalid`", body = ErrorBody),
    )
)]
async fn unblock(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(user_id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let whom = rules::user_id(Some(&Value::String(user_id)));
    app.natter.unblock(&session.user, whom).await?;
    Ok(StatusCode::NO_CONTENT)
}
