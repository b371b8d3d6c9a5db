//! `POST /groups` (create a group) and a group's members: list, add, remove
//! (`me` as the user id: leave).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

use super::{ApiJson, ApiPath};
use crate::domain::rules::{self, Payload};
use crate::domain::{Added, NewGroup};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/groups", post(create))
        .route("/rooms/{rid}/members", get(list).post(add))
        .route("/rooms/{rid}/members/{user_id}", delete(remove))
        .route("/group-invitations", get(invitations))
        .route("/group-invitations/{rid}/accept", post(accept))
        .route("/group-invitations/{rid}/decline", post(decline))
}

async fn create(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let chat = app
        .natter
        .create_group(&session.user, NewGroup::from_json(&body))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(chat)))
}

async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let members = app.natter.members(&session.user, &rid).await?;
    Ok(axum::Json(json!({ "members": members })))
}

async fn add(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let added = app
        .natter
        .add_member(&session.user, &rid, Payload(&body).email())
        .await?;
    Ok(match added {
        Added::Member(chat) => (StatusCode::OK, axum::Json(json!(chat))),
        // Asked, not added: they join when they accept.
        Added::Invited => (StatusCode::ACCEPTED, axum::Json(json!({ "invited": true }))),
    })
}

async fn remove(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath((rid, user_id)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter
        .remove_member(&session.user, &rid, rules::whom(&Value::String(user_id)))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The invitations to groups waiting for my answer.
async fn invitations(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let invitations = app.natter.group_invitations(&session.user).await?;
    Ok(axum::Json(json!({ "invitations": invitations })))
}

/// 200 with the group I joined.
async fn accept(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let chat = app
        .natter
        .accept_group_invitation(&session.user, &rid)
        .await?;
    Ok(axum::Json(chat))
}

async fn decline(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter
        .decline_group_invitation(&session.user, &rid)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
