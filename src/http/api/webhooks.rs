//! Webhooks. Incoming: `POST /rooms/{rid}/webhooks` makes one (its secret
//! URL answered once), `GET` lists the room's, `DELETE …/{id}` deletes one;
//! `POST /hooks/{secret}` (outside `/api/v1`, no session: the URL is the
//! credential) posts into its room. Outgoing: `POST /webhooks` makes one
//! (its signing secret answered once), `GET /webhooks`, `DELETE /webhooks/{id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::bots::text_field;
use super::{ApiJson, ApiPath};
use crate::domain::webhooks::NewOutgoing;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_incoming, incoming))
        .routes(routes!(delete_incoming))
        .routes(routes!(create_outgoing, outgoing))
        .routes(routes!(delete_outgoing))
}

// The types below only describe bodies that the domain reads from the JSON
// and answers that the domain's types serialise by hand.

#[derive(ToSchema)]
#[expect(dead_code, reason = "only describes a body")]
struct NewIncoming {
    /// The name its messages are sent under (a bot's username rule).
    name: String,
}

/// An incoming webhook (`crate::domain::model::IncomingWebhook`).
#[derive(ToSchema)]
#[schema(as = IncomingWebhook)]
#[expect(dead_code, reason = "only describes an answer")]
struct IncomingBody {
    id: String,
    name: String,
    room_id: String,
    created_by: String,
    /// The bot its messages are sent as.
    bot_id: String,
    /// Unix seconds.
    created_at: f64,
}

/// A new incoming webhook, with its secret URL, shown this once.
#[derive(ToSchema)]
#[schema(as = NewIncomingWebhook)]
#[expect(dead_code, reason = "only describes an answer")]
struct NewIncomingBody {
    id: String,
    name: String,
    room_id: String,
    created_by: String,
    bot_id: String,
    created_at: f64,
    /// `/hooks/SECRET`: `POST {text}` there to send (no session).
    url: String,
}

#[derive(ToSchema)]
#[schema(as = IncomingWebhooks)]
#[expect(dead_code, reason = "only describes an answer")]
struct IncomingList {
    webhooks: Vec<IncomingBody>,
}

#[derive(ToSchema)]
#[expect(dead_code, reason = "only describes a body")]
struct NewOutgoingBody {
    /// Where each event is POSTed (public addresses only, unless
    /// `--webhook-allow-private`).
    url: String,
    /// `message` and/or `mention`.
    events: Vec<String>,
    /// The rooms it is limited to; left out or `null`: every room of mine.
    rooms: Option<Vec<String>>,
    /// One of my bots it is for (the events of the bot's rooms); left out
    /// or `null`: mine.
    bot_id: Option<String>,
}

/// An outgoing webhook (`crate::domain::model::OutgoingWebhook`): never its secret.
#[derive(ToSchema)]
#[schema(as = OutgoingWebhook)]
#[expect(dead_code, reason = "only describes an answer")]
struct OutgoingBody {
    id: String,
    owner_id: String,
    url: String,
    events: Vec<String>,
    #[schema(required = true)]
    rooms: Option<Vec<String>>,
    /// Unix seconds.
    created_at: f64,
}

/// A new outgoing webhook, with its signing secret, shown this once.
#[derive(ToSchema)]
#[schema(as = NewOutgoingWebhook)]
#[expect(dead_code, reason = "only describes an answer")]
struct NewOutgoingAnswer {
    id: String,
    owner_id: String,
    url: String,
    events: Vec<String>,
    #[schema(required = true)]
    rooms: Option<Vec<String>>,
    created_at: f64,
    /// The HMAC-SHA256 key its deliveries are signed with.
    secret: String,
}

#[derive(ToSchema)]
#[schema(as = OutgoingWebhooks)]
#[expect(dead_code, reason = "only describes an answer")]
struct OutgoingList {
    webhooks: Vec<OutgoingBody>,
}

/// Where an incoming webhook's secret is posted to.
pub fn hook_url(secret: &str) -> String {
    format!("/hooks/{secret}")
}

/// Makes an incoming webhook posting into a room of mine.
#[utoipa::path(
    post,
    path = "/rooms/{rid}/webhooks",
    tag = "webhooks",
    params(("rid" = String, Path, description = "The room's id")),
    request_body = NewIncoming,
    responses(
        (status = 201, description = "The webhook and, this once, its secret URL", body = NewIncomingBody),
        (status = 403, description = "`not_member` or `not_owner`", body = ErrorBody),
        (status = 404, description = "`no_such_room`", body = ErrorBody),
        (status = 422, description = "`invalid`, or `too_many`", body = ErrorBody),
    )
)]
async fn create_incoming(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let (hook, secret) = app
        .natter
        .create_incoming_webhook(&session.user, &rid, text_field(&body, "name"))
        .await?;
    let mut answer = json!(hook);
    answer["url"] = json!(hook_url(&secret));
    Ok((StatusCode::CREATED, axum::Json(answer)))
}

/// A room's incoming webhooks.
#[utoipa::path(
    get,
    path = "/rooms/{rid}/webhooks",
    tag = "webhooks",
    params(("rid" = String, Path, description = "The room's id")),
    responses(
        (status = 200, description = "Its webhooks", body = IncomingList),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_room`", body = ErrorBody),
    )
)]
async fn incoming(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let hooks = app.natter.incoming_webhooks(&session.user, &rid).await?;
    Ok(axum::Json(json!({ "webhooks": hooks })))
}

/// Deletes an incoming webhook.
#[utoipa::path(
    delete,
    path = "/rooms/{rid}/webhooks/{id}",
    tag = "webhooks",
    params(
        ("rid" = String, Path, description = "The room's id"),
        ("id" = String, Path, description = "The webhook's id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
async fn delete_incoming(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath((rid, id)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter
        .delete_incoming_webhook(&session.user, &rid, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /hooks/{secret}` `{text, client_id?}`: 201 with the message sent.
pub async fn post_incoming(
    State(app): State<AppState>,
    ApiPath(secret): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let message = app.natter.post_to_webhook(&secret, &body).await?;
    Ok((StatusCode::CREATED, axum::Json(message)))
}

/// Makes an outgoing webhook: the server POSTs my rooms' events to it.
#[utoipa::path(
    post,
    path = "/webhooks",
    tag = "webhooks",
    request_body = NewOutgoingBody,
    responses(
        (status = 201, description = "The webhook and, this once, its signing secret (`secret`)", body = NewOutgoingAnswer),
        (status = 422, description = "`invalid` (e.g. a private address), or `too_many`", body = ErrorBody),
    )
)]
async fn create_outgoing(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let new = NewOutgoing::from_json(&body, app.natter.limits());
    let hook = app
        .natter
        .create_outgoing_webhook(&session.user, new)
        .await?;
    let mut answer = json!(hook);
    answer["secret"] = json!(hook.secret);
    Ok((StatusCode::CREATED, axum::Json(answer)))
}

/// My outgoing webhooks.
#[utoipa::path(
    get,
    path = "/webhooks",
    tag = "webhooks",
    responses((status = 200, description = "My webhooks", body = OutgoingList))
)]
async fn outgoing(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let hooks = app.natter.outgoing_webhooks(&session.user).await?;
    Ok(axum::Json(json!({ "webhooks": hooks })))
}

/// Deletes an outgoing webhook of mine.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
async fn delete_outgoing(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter
        .delete_outgoing_webhook(&session.user, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
