//! The JSON API under `/api/v1`: one module per resource, each with its own
//! router, whose routes describe themselves in the OpenAPI document ([`openapi`]).

mod admin;
mod attachments;
mod blocks;
mod bots;
mod chats;
mod groups;
mod invites;
mod messages;
pub mod openapi;
mod password_resets;
mod push;
mod rooms;
mod search;
mod sessions;
mod users;
pub mod webhooks;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;

/// `axum::Json`, with its rejections in the contract's error format.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Path`, with its rejections (e.g. invalid UTF-8) in the contract's error format.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A query string's parameters, each read as a JSON string so that the
/// domain's rules read it as they read a body's field.
pub struct QueryArgs(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryArgs {
    type Rejection = <Query<HashMap<String, String>> as FromRequestParts<S>>::Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(args) = Query::from_request_parts(parts, state).await?;
        Ok(QueryArgs(args))
    }
}

impl QueryArgs {
    pub fn get(&self, name: &str) -> Option<Value> {
        self.0.get(name).map(|v| Value::String(v.clone()))
    }
}

/// Every route of the API, with its description.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi::openapi_json))
        .merge(users::router())
        .merge(sessions::router())
        .merge(chats::router())
        .merge(rooms::router())
        .merge(messages::router())
        .merge(groups::router())
        .merge(search::router())
        .merge(push::router())
        .merge(attachments::router())
        .merge(invites::router())
        .merge(blocks::router())
        .merge(admin::router())
        .merge(password_resets::router())
        .merge(bots::router())
        .merge(webhooks::router())
}

pub fn router() -> Router<AppState> {
    let (router, _) = routes().split_for_parts();
    router
        // After the routes: it applies to those present.
        .method_not_allowed_fallback(async || {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "no such method on this route",
            )
        })
        .fallback(no_such_route)
}

/// An unknown route under the API base.
pub async fn no_such_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
