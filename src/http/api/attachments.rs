//! Attachments: `POST /rooms/{rid}/attachments?name=…` uploads a file (the
//! raw body, streamed), `GET /attachments/{id}` and `…/thumbnail` fetch one
//! back, for the room's members only.
//!
//! What is served is never run on our origin: a file that is not an image a
//! browser shows inline is a download (`Content-Disposition: attachment`),
//! its type is the one read from its bytes, browsers may not guess another
//! (`nosniff`), and a sandboxing CSP with no sources applies even to a
//! file opened on its own. So an uploaded HTML or SVG page never runs script.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::FileBytes;
use super::{ApiPath, QueryArgs};
use crate::domain::attachments::shown_inline;
use crate::domain::model::Attachment;
use crate::domain::rules;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::session::Authenticated;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload))
        .routes(routes!(file))
        .routes(routes!(thumbnail))
}

/// 201 with the attachment, to send with a message by its id. The body is
/// the file itself, whatever its `Content-Type` says.
#[utoipa::path(
    post,
    path = "/rooms/{rid}/attachments",
    tag = "attachments",
    params(
        ("rid" = String, Path, description = "The room's id"),
        ("name" = Option<String>, Query, description = "The file's name (cleaned; `file` when nothing is left; at most 200 characters)"),
    ),
    request_body(content = inline(FileBytes), content_type = "application/octet-stream", description = "The file itself, not multipart (its `Content-Type` is ignored)"),
    responses(
        (status = 201, description = "Kept", body = Attachment),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`no_such_room`", body = ErrorBody),
        (status = 413, description = "`too_large`: past `--max-upload-bytes`", body = ErrorBody),
        (status = 422, description = "`invalid`: empty, too many pixels, or a bad name", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    )
)]
async fn upload(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(rid): ApiPath<String>,
    args: QueryArgs,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let name = args.get("name");
    let name = rules::file_name(name.as_ref().and_then(|n| n.as_str()));
    let attachment = app
        .natter
        .upload(&session.user, &rid, name, body.into_data_stream())
        .await?;
    Ok((StatusCode::CREATED, axum::Json(attachment)))
}

/// The file, to members of its room (inline for the four picture types,
/// a download otherwise).
#[utoipa::path(
    get,
    path = "/attachments/{id}",
    tag = "attachments",
    params(("id" = String, Path, description = "The attachment's id")),
    responses(
        (status = 200, description = "The file, its `Content-Type` read from its bytes", content_type = "application/octet-stream", body = inline(FileBytes)),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
async fn file(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    serve(app, session.user, &id, false).await
}

/// A picture's thumbnail (JPEG, or PNG with transparency).
#[utoipa::path(
    get,
    path = "/attachments/{id}/thumbnail",
    tag = "attachments",
    params(("id" = String, Path, description = "The attachment's id")),
    responses(
        (status = 200, description = "The thumbnail", content_type = "application/octet-stream", body = inline(FileBytes)),
        (status = 403, description = "`not_member`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such attachment, or no thumbnail", body = ErrorBody),
    )
)]
async fn thumbnail(
    State(app): State<AppState>,
    Authenticated(session): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    serve(app, session.user, &id, true).await
}

async fn serve(
    app: AppState,
    me: crate::domain::model::User,
    id: &str,
    thumbnail: bool,
) -> Result<Response, ApiError> {
    let download = app.natter.download(&me, id, thumbnail).await?;
    let inline = shown_inline(&download.content_type);
    let disposition = content_disposition(
        if inline { "inline" } else { "attachment" },
        &download.attachment.name,
    );
    let mut response = Response::new(Body::from_stream(download.body.body));
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(&download.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, download.body.size.into());
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    // Other sites may not embed it (a member's cookie would come along).
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    // A file never changes under its id; membership is checked again after
    // an hour (a removed member keeps only what their browser already has).
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response)
}

/// `inline` or `attachment`, with the name twice: an ASCII fallback for
/// old clients, and the exact name as RFC 8187 UTF-8 (`filename*`).
fn content_disposition(kind: &str, name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut exact = String::with_capacity(name.len() * 3);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            exact.push(byte as char);
        } else {
            exact.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{exact}")
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn names_are_quoted_safely() {
        assert_eq!(
            content_disposition("attachment", "a \"b\".txt"),
            "attachment; filename=\"a _b_.txt\"; filename*=UTF-8''a%20%22b%22.txt"
        );
        assert_eq!(
            content_disposition("inline", "été.png"),
            "inline; filename=\"_t_.png\"; filename*=UTF-8''%C3%A9t%C3%A9.png"
        );
    }
}
