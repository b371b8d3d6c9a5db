//! Bots and their tokens: `POST /bots` makes one, `GET /bots` lists mine,
//! `DELETE /bots/{id}` deletes one; `POST /bots/{id}/tokens` makes a token
//! (its secret answered once), `GET` lists them, `DELETE …/{token}` revokes one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath};
use crate::domain::Error;
use crate::domain::bots::NewToken;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(remove))
        .routes(routes!(create_token, tokens))
        .routes(routes!(revoke_token))
}

// The types below only describe bodies that the domain reads from the JSON
// and answers that the domain's types serialise by hand.

#[derive(ToSchema)]
#[expect(dead_code, reason = "only describes a body")]
struct NewBot {
    /// The rule of people's usernames.
    username: String,
}

/// A bot, as its owner lists it (`crate::domain::model::Bot`).
#[derive(ToSchema)]
#[schema(as = Bot)]
#[expect(dead_code, reason = "only describes an answer")]
struct BotBody {
    /// Decimal digits: a user id.
    id: String,
    username: String,
    /// `USERNAME@bots.invalid`.
    email: String,
    /// Always `true`.
    bot: bool,
    owner_id: String,
    /// Unix seconds.
    created_at: f64,
}

#[derive(ToSchema)]
#[schema(as = Bots)]
#[expect(dead_code, reason = "only describes an answer")]
struct BotsBody {
    bots: Vec<BotBody>,
}

/// What a token may do.
#[derive(ToSchema)]
#[expect(dead_code, reason = "only describes a body")]
struct NewTokenBody {
    /// `read` and/or `send`, at least one.
    scopes: Vec<String>,
    /// The rooms it is limited to; left out or `null`: every room the bot is in.
    rooms: Option<Vec<String>>,
}

/// A bot's token as its owner lists it: never its secret.
#[derive(ToSchema)]
#[schema(as = BotToken)]
#[expect(dead_code, reason = "only describes an answer")]
struct BotTokenBody {
    /// What it is revoked by.
    id: String,
    bot_id: String,
    scopes: Vec<String>,
    /// `null`: every room the bot is in.
    #[schema(required = true)]
    rooms: Option<Vec<String>>,
    /// Unix seconds.
    created_at: f64,
}

/// A new token, with its secret, shown this once.
#[derive(ToSchema)]
#[schema(as = NewBotToken)]
#[expect(dead_code, reason = "only describes an answer")]
struct NewBotTokenBody {
    id: String,
    bot_id: String,
    scopes: Vec<String>,
    #[schema(required = true)]
    rooms: Option<Vec<String>>,
    created_at: f64,
    /// The bearer token (`nbt_…`), shown this once.
    token: String,
}

#[derive(ToSchema)]
#[schema(as = BotTokens)]
#[expect(dead_code, reason = "only describes an answer")]
struct BotTokensBody {
    tokens: Vec<BotTokenBody>,
}

/// A required text field of a body.
pub fn text_field(body: &Value, name: &str) -> Result<String, Error> {
    match body.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        _ => Err(Error::invalid(format!("{name} must be a string"))),
    }
}

/// Makes a bot owned by the caller.
#[utoipa::path(
    post,
    path = "/bots",
    tag = "bots",
    request_body = NewBot,
    responses(
        (status = 201, description = "The bot", body = BotBody),
        (status = 409, description = "`taken`", body = ErrorBody),
        (status = 422, description = "`invalid`, or `too_many` bots", body = ErrorBody),
    )
)]
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

/// My bots.
#[utoipa::path(
    get,
    path = "/bots",
    tag = "bots",
    responses((status = 200, description = "My bots", body = BotsBody))
)]
async fn list(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let bots = app.natter.bots(&session.user).await?;
    Ok(axum::Json(json!({ "bots": bots })))
}

/// Deletes a bot of mine, with its tokens and webhooks.
#[utoipa::path(
    delete,
    path = "/bots/{id}",
    tag = "bots",
    params(("id" = String, Path, description = "The bot's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`: no such bot of mine", body = ErrorBody),
    )
)]
async fn remove(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter.delete_bot(&session.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a token for a bot of mine.
#[utoipa::path(
    post,
    path = "/bots/{id}/tokens",
    tag = "bots",
    params(("id" = String, Path, description = "The bot's id")),
    request_body = NewTokenBody,
    responses(
        (status = 201, description = "The token and, this once, its secret (`token`)", body = NewBotTokenBody),
        (status = 404, description = "`not_found`: no such bot of mine", body = ErrorBody),
        (status = 422, description = "`invalid`, or `too_many` tokens", body = ErrorBody),
    )
)]
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

/// A bot's tokens.
#[utoipa::path(
    get,
    path = "/bots/{id}/tokens",
    tag = "bots",
    params(("id" = String, Path, description = "The bot's id")),
    responses(
        (status = 200, description = "Its tokens", body = BotTokensBody),
        (status = 404, description = "`not_found`: no such bot of mine", body = ErrorBody),
    )
)]
async fn tokens(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let tokens = app.natter.bot_tokens(&session.user, &id).await?;
    Ok(axum::Json(json!({ "tokens": tokens })))
}

/// Revokes a bot's token.
#[utoipa::path(
    delete,
    path = "/bots/{id}/tokens/{token}",
    tag = "bots",
    params(
        ("id" = String, Path, description = "The bot's id"),
        ("token" = String, Path, description = "The token's id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
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
