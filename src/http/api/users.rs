//! `POST /users` (register); my account: `GET` and `DELETE /me`, `GET` and
//! `PATCH /me/profile`, `PUT /me/password`, `GET /me/export`, `PUT` and `DELETE /me/avatar`;
//! others: `GET /users?q=` (find people) and `GET /users/{id}/avatar`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::FileBytes;
use super::{ApiJson, ApiPath, QueryArgs};
use crate::domain::Registration;
use crate::domain::accounts::ProfileChange;
use crate::domain::model::{Chat, Invite, Message, Person, SessionInfo, User};
use crate::domain::rules;
use crate::http::AppState;
use crate::http::client_addr::ClientAddr;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register, find_people))
        .routes(routes!(me, delete_account))
        .routes(routes!(profile, change_profile))
        .routes(routes!(change_password))
        .routes(routes!(export))
        .routes(routes!(set_avatar, remove_avatar))
        .routes(routes!(avatar))
}

#[derive(Deserialize, ToSchema)]
struct NewUser {
    /// 3–32 of `a-z 0-9 _ . -`, case-folded.
    username: String,
    email: String,
    /// At least 8 characters, at most 1 KiB.
    password: String,
    /// An invitation's code (an extension: see docs/protocol.md).
    #[serde(default)]
    invite: Option<String>,
}

#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    security(()),
    request_body = NewUser,
    responses(
        (status = 201, description = "Registered", body = User),
        (status = 403, description = "`invite_required`, `registration_closed` or `invalid_invite`", body = ErrorBody),
        (status = 409, description = "`taken`: the username or email is registered", body = ErrorBody),
        (status = 422, description = "`invalid`: a field breaks its rule", body = ErrorBody),
        (status = 429, description = "`rate_limited`: throttled (`Retry-After`)", body = ErrorBody),
    )
)]
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

/// The caller: the contract's `{id, username, email}`, exactly (the
/// profile is `/me/profile`).
#[utoipa::path(get, path = "/me", tag = "users", responses((status = 200, description = "The caller", body = User)))]
async fn me(Authenticated(session): Authenticated) -> axum::Json<User> {
    axum::Json(session.user)
}

// The types below only describe answers that the domain's types serialise
// (their `serde(flatten)` would be an `allOf`, which a closed object refuses).

/// My account with its profile (`crate::domain::accounts::MyAccount`).
#[derive(ToSchema)]
#[schema(as = MyAccount)]
#[expect(dead_code, reason = "only describes an answer")]
struct MyAccountBody {
    /// Decimal digits.
    id: String,
    username: String,
    email: String,
    /// The name shown instead of the username; `null` for none.
    #[schema(required = true)]
    display_name: Option<String>,
    /// Where the avatar is served (`GET /users/{id}/avatar?v=…`); `null` for none.
    #[schema(required = true)]
    avatar: Option<String>,
    /// Whether people who share no room may find me (`GET /users?q=`).
    in_directory: bool,
    admin: bool,
}

/// One of my files, as an export lists it: fetch `url` with the same credentials.
#[derive(ToSchema)]
#[schema(as = ExportedFile)]
#[expect(dead_code, reason = "only describes an answer")]
struct ExportedFileBody {
    room_id: String,
    seq: i64,
    /// 128 random bits (base64url).
    id: String,
    name: String,
    content_type: String,
    size: u64,
    #[schema(required = true)]
    width: Option<u32>,
    #[schema(required = true)]
    height: Option<u32>,
    /// The file: `/api/v1/attachments/{id}`.
    url: String,
    #[schema(required = true)]
    thumbnail_url: Option<String>,
}

/// Everything the server holds of mine.
#[derive(ToSchema)]
#[schema(as = Export)]
#[expect(dead_code, reason = "only describes an answer")]
struct ExportBody {
    /// Unix seconds.
    exported_at: f64,
    account: MyAccountBody,
    sessions: Vec<SessionInfo>,
    chats: Vec<Chat>,
    /// The text messages I sent in the rooms I am in, room by room in seq order.
    messages: Vec<Message>,
    /// Whether the export's budget of messages cut them short.
    messages_truncated: bool,
    files: Vec<ExportedFileBody>,
    blocked: Vec<Person>,
    invites: Vec<Invite>,
}

/// My account with its profile: `display_name`, `avatar`, `in_directory`, `admin`.
#[utoipa::path(
    get,
    path = "/me/profile",
    tag = "users",
    responses((status = 200, description = "My account", body = MyAccountBody))
)]
async fn profile(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(app.natter.my_account(&session.user).await?))
}

#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes a body that the domain reads from the JSON"
)]
struct ProfileBody {
    /// 1–64 characters, trimmed; `null` or empty: none.
    display_name: Option<String>,
    in_directory: Option<bool>,
}

/// Changes my profile; fields left out stay as they are.
#[utoipa::path(
    patch,
    path = "/me/profile",
    tag = "users",
    request_body = ProfileBody,
    responses(
        (status = 200, description = "My account as it now is", body = MyAccountBody),
        (status = 422, description = "`invalid`", body = ErrorBody),
    )
)]
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

#[derive(Deserialize, ToSchema)]
struct Deletion {
    /// The current password, again.
    password: String,
}

/// Deletes my account, with every session of it.
#[utoipa::path(
    delete,
    path = "/me",
    tag = "users",
    request_body = Deletion,
    responses(
        (status = 204, description = "The account is gone"),
        (status = 422, description = "`invalid`: a wrong password", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many wrong passwords", body = ErrorBody),
    )
)]
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

/// My data as a JSON file to save (`Content-Disposition: attachment`); with
/// `?files=zip`, a ZIP archive of that JSON and my files.
#[utoipa::path(
    get,
    path = "/me/export",
    tag = "users",
    params(("files" = Option<String>, Query, description = "`zip`: the JSON and my files as one ZIP archive")),
    responses(
        (status = 200, description = "Everything the server holds of mine as JSON; with `files=zip`, a ZIP of `export.json`, `files/ID-NAME` and `avatar`",
            content(
                (ExportBody = "application/json"),
                (inline(FileBytes) = "application/zip"),
            )
        ),
        (status = 422, description = "`invalid`: `files` is not `zip`", body = ErrorBody),
    )
)]
async fn export(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    args: QueryArgs,
) -> Result<Response, ApiError> {
    match args.get("files").as_ref().and_then(Value::as_str) {
        None => {}
        Some("zip") => {
            let archive = app.natter.export_archive(&session).await?;
            let mut response = Response::new(Body::from_stream(archive.body));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            );
            headers.insert(header::CONTENT_LENGTH, archive.size.into());
            headers.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"natter-export.zip\""),
            );
            return Ok(response);
        }
        Some(_) => return Err(crate::domain::Error::invalid("files must be \"zip\"").into()),
    }
    let export = app.natter.export(&session).await?;
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"natter-export.json\"",
        )],
        axum::Json(export),
    )
        .into_response())
}

/// Sets my avatar: the body is the image itself (PNG, JPEG, GIF or WebP).
#[utoipa::path(
    put,
    path = "/me/avatar",
    tag = "users",
    request_body(content = inline(FileBytes), content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "My account as it now is", body = MyAccountBody),
        (status = 413, description = "`too_large`", body = ErrorBody),
        (status = 422, description = "`invalid`: not a picture", body = ErrorBody),
    )
)]
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

/// Removes my avatar (no error if there is none).
#[utoipa::path(
    delete,
    path = "/me/avatar",
    tag = "users",
    responses((status = 200, description = "My account as it now is", body = MyAccountBody))
)]
async fn remove_avatar(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(app.natter.remove_avatar(&session.user).await?))
}

/// Someone's avatar. Its address changes with the picture (`?v=`), so it is
/// cached for good.
#[utoipa::path(
    get,
    path = "/users/{id}/avatar",
    tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The picture", content_type = "image/*", body = inline(FileBytes)),
        (status = 404, description = "`not_found`: no avatar, or `no_such_user`", body = ErrorBody),
    )
)]
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

/// People found by name.
#[derive(Serialize, ToSchema)]
struct People {
    users: Vec<Person>,
}

/// People whose username or display name starts with `q`: those I share a
/// room with, and those in the directory.
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    params(("q" = String, Query, description = "The start of a name")),
    responses(
        (status = 200, description = "The people found", body = People),
        (status = 422, description = "`invalid`: no `q`", body = ErrorBody),
    )
)]
async fn find_people(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    args: QueryArgs,
) -> Result<impl IntoResponse, ApiError> {
    let query = match args.get("q") {
        Some(Value::String(q)) => Ok(q),
        _ => Err(crate::domain::Error::invalid("q is required")),
    };
    let users = app.natter.find_people(&session.user, query).await?;
    Ok(axum::Json(People { users }))
}

#[derive(Deserialize, ToSchema)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// 204: changed; every other session of the caller has ended.
#[utoipa::path(
    put,
    path = "/me/password",
    tag = "users",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; every other session of the caller has ended"),
        (status = 422, description = "`invalid`: a wrong current password, or a new one that breaks the rule", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many wrong passwords", body = ErrorBody),
    )
)]
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
