//! The OpenAPI 3.1 document of the JSON API, generated from the code and
//! served at `GET /api/v1/openapi.json`.
//!
//! Each handler describes itself with `#[utoipa::path(...)]` (method, path,
//! parameters, body, answers, tag), its module's `router()` registers it with
//! `.routes(routes!(handler))`, and the types it answers derive `ToSchema`.
//! Registering a route that way is what puts it in the document, so the
//! router and the document cannot disagree; a plain `.route(...)` in an API
//! module fails tests/openapi.rs until it is described.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{self, ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::credentials::SESSION_COOKIE;
use crate::http::error::ErrorBody;

/// Where the API is served (`http::router` nests it there).
pub const BASE: &str = "/api/v1";

/// The document's frame: what it is, how callers authenticate, its tags.
/// The paths come from the API modules' routers ([`super::routes`]).
///
/// Adding a route to the document: put `#[utoipa::path(method, path =
/// "/…", tag = "…", responses(...))]` on its handler (its path as the
/// module's router sees it, without `/api/v1`), derive `utoipa::ToSchema`
/// on what it answers, and register it in its module's `router()` with
/// `.routes(routes!(handler))` instead of `.route(...)`. A route that
/// needs no session says `security(())`; every other one gets the two
/// schemes below, `401` and the error body for any other failure. A body
/// the domain reads from a JSON `Value` is described by a `ToSchema` struct
/// of its fields, named in `request_body`. A new resource adds its tag
/// below; tests/openapi.rs then wants one call of it with valid input (its
/// answer is checked against the document).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Natter JSON API",
        description = "The JSON API of a Natter server. docs/protocol.md is the full \
            reference: the rules of every field, the limits, and the Socket.IO events.",
        license(name = "MIT", identifier = "MIT"),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
    components(schemas(ErrorBody)),
    tags(
        (name = "users", description = "Registering, and one's own account"),
        (name = "sessions", description = "Logging in and out, and one's sessions"),
        (name = "chats", description = "The chat list, and direct chats"),
        (name = "rooms", description = "One room: renaming, typing, read markers, changes, notifications"),
        (name = "messages", description = "A room's history, and sending, editing, deleting and reacting"),
        (name = "groups", description = "Group rooms and their members"),
        (name = "search", description = "Full-text search of one's rooms"),
        (name = "attachments", description = "Files sent with messages"),
        (name = "push", description = "Web Push subscriptions"),
        (name = "invites", description = "Invitations to register"),
        (name = "blocks", description = "People one blocks"),
        (name = "admin", description = "Accounts, counts, who may join, moderation (admins only: `403 not_admin` otherwise)"),
        (name = "bots", description = "Bots and their scoped tokens"),
        (name = "webhooks", description = "Incoming webhooks (a secret URL posting into a room) and outgoing ones (events POSTed out)"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// What holds for every call: the security schemes, an operation id unique
/// in the document, `401` where a session is needed, and the error body for
/// any status a call does not list.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The token that `POST /api/v1/sessions` answers, or a bot's token \
                         (`nbt_…`, `POST /api/v1/bots/{id}/tokens`), limited to its scopes and \
                         rooms (`403 forbidden_scope` beyond them, e.g. on account and bot routes)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The web pages' session (the bearer token wins when both are sent)",
            ))),
        );
        let error = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                // Handlers' names repeat across modules (`list`, `create`):
                // the tag makes each operation id unique, as OpenAPI wants.
                if let (Some(id), Some([tag, ..])) =
                    (&operation.operation_id, operation.tags.as_deref())
                {
                    operation.operation_id = Some(format!("{tag}_{id}"));
                }
                let responses = &mut operation.responses.responses;
                // No `security` of its own: the document's, a session.
                if operation.security.is_none() {
                    responses.entry("401".into()).or_insert_with(|| {
                        ResponseBuilder::new()
                            .description("`unauthorized`: no valid session")
                            .content("application/json", error())
                            .build()
                            .into()
                    });
                }
                responses.entry("default".into()).or_insert_with(|| {
                    ResponseBuilder::new()
                        .description(
                            "Any other failure, with its code (docs/protocol.md, \"Errors\")",
                        )
                        .content("application/json", error())
                        .build()
                        .into()
                });
            }
        }
    }
}

/// A file's bytes as a body (`body = inline(FileBytes)`): any bytes, not a
/// JSON array of numbers as `[u8]` would describe them.
pub struct FileBytes;

impl PartialSchema for FileBytes {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/octet-stream")
            .into()
    }
}

impl ToSchema for FileBytes {}

/// The whole document, its paths under [`BASE`].
pub fn document() -> openapi::OpenApi {
    let mut doc = ApiDoc::openapi().nest(BASE, super::routes().into_openapi());
    // After the nesting: they apply to the paths.
    Conventions.modify(&mut doc);
    doc
}

/// The document as served: built once, on first request.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
});

/// This document. It changes only with the server's version, so caches may
/// keep it for a while.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Response {
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT.as_str(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}
