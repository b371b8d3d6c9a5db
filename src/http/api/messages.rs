//! A room's messages: `GET` pages of history, `POST` a message (or a reply),
//! `PATCH` / `DELETE` one's own, toggle a reaction.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, patch, post};
use serde_json::Value;

use super::{ApiJson, ApiPath, QueryArgs};
use crate::domain::model::Page;
use crate::domain::rules;
use crate::domain::{Edit, React, Send};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rooms/{rid}/messages", get(history).post(post_message))
        .route(
            "/rooms/{rid}/messages/{seq}",
            patch(edit_message).delete(delete_message),
        )
        .route("/rooms/{rid}/messages/{seq}/reactions", post(react))
}

async fn history(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    args: QueryArgs,
) -> Result<impl IntoResponse, ApiError> {
    let limits = app.natter.limits();
    let page = Page {
        before: rules::seq_cursor(args.get("before").as_ref(), "before")?,
        after: rules::seq_cursor(args.get("after").as_ref(), "after")?,
        limit: rules::page_limit(
            args.get("limit").as_ref(),
            limits.history_page_default,
            limits,
        )?,
    };
    Ok(axum::Json(
        app.natter.history(&session.user, &rid, page).await?,
    ))
}

async fn post_message(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let send = Send::from_json(&rid, &body, app.natter.limits(), None);
    let message = app.natter.send(&session.user, send).await?;
    Ok((StatusCode::CREATED, axum::Json(message)))
}

/// The `seq` of a path, read like one in a payload (a non-number is `invalid`).
fn seq_of(seq: String) -> Value {
    Value::String(seq)
}

async fn edit_message(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath((rid, seq)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let edit = Edit::from_json(Some(&seq_of(seq)), &body, app.natter.limits());
    let message = app.natter.edit(&session.user, &rid, edit, None).await?;
    Ok(axum::Json(message))
}

async fn delete_message(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath((rid, seq)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let message = app
        .natter
        .delete(
            &session.user,
            &rid,
            rules::message_seq(Some(&seq_of(seq))),
            None,
        )
        .await?;
    Ok(axum::Json(message))
}

async fn react(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath((rid, seq)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let react = React::from_json(Some(&seq_of(seq)), &body);
    let message = app.natter.react(&session.user, &rid, react, None).await?;
    Ok(axum::Json(message))
}
