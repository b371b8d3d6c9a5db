//! `POST /users` (register); my account: `GET` and `DELETE /me`, `GET` and
//! `PATCH /me/profile`, `PUT /me/password`, `GET /me/export`, `PUT` and `DELETE /me/avatar`;
//! others: `GET /users?q=` (find people) and `GET /users/{id}/avatar`.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiJson, ApiPath, QueryArgs};
use crate::domain::Registration;
use crate::domain::accounts::ProfileChange;
use crate::domain::rules;
use crate::http::AppState;
use crate::http::client_addr::ClientAddr;
use crate::http::error::ApiError;
use crate::http::session::Authenticated;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", post(register))
        .route("/users", get(find_people))
        .route("/me", get(me).delete(delete_account))
        .route("/me/profile", get(profile).patch(change_profile))
        .route("/me/password", put(change_password))
        .route("/me/export", get(export))
        .route("/me/avatar", put(set_avatar).delete(remove_avatar))
        .route("/users/{id}/avatar", get(avatar))
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

/// The contract's `{id, username, email}`, exactly (the profile is `/me/profile`).
async fn me(Authenticated(session): Authenticated) -> axum::Json<crate::domain::model::User> {
    axum::Json(session.user)
}

/// My account with its profile: `display_name`, `avatar`, `in_directory`, `admin`.
async fn profile(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(app.natter.my_account(&session.user).await?))
}

/// `{display_name?, in_directory?}`: 200 with the account as it now is.
async fn change_profile(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let change = ProfileChange::from_json(&body);
    Ok(axum::Json(
        app.natter.change_profile(&session.user, change).await?,
    ))
}

#[derive(Deserialize)]
struct Deletion {
    password: String,
}

/// 204: the account is gone, with every session of it.
async fn delete_account(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    Authenticated(session): Authenticated,
    ApiJson(body): ApiJson<Deletion>,
) -> Result<impl IntoResponse, ApiError> {
    app.natter
        .delete_account(&session, &body.password, client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// My data as a JSON file to save.
async fn export(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    let export = app.natter.export(&session).await?;
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"natter-export.json\"",
        )],
        axum::Json(export),
    ))
}

/// The body is the image itself; 200 with the account as it now is.
async fn set_avatar(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let account = app
        .natter
        .set_avatar(&session.user, body.into_data_stream())
        .await?;
    Ok(axum::Json(account))
}

async fn remove_avatar(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(app.natter.remove_avatar(&session.user).await?))
}

/// Its address changes with the picture (`?v=`), so it is cached for good.
async fn avatar(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = rules::user_id(Some(&Value::String(id)));
    let avatar = app.natter.avatar(&session.user, id).await?;
    let mut response = Response::new(Body::from_stream(avatar.body.body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(avatar.content_type),
    );
    headers.insert(header::CONTENT_LENGTH, avatar.body.size.into());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    Ok(response)
}

/// `?q=`: people whose username or display name starts with it.
async fn find_people(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    args: QueryArgs,
) -> Result<impl IntoResponse, ApiError> {
    let query = match args.get("q") {
        Some(Value::String(q)) => Ok(q),
        _ => Err(crate::domain::Error::invalid("q is required")),
    };
    let people = app.natter.find_people(&session.user, query).await?;
    Ok(axum::Json(json!({ "users": people })))
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
