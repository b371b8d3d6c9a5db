//! Who is asking, as axum extractors: the session cookie (browsers) or a
//! bearer token (apps, bots), both resolved through the same server-side
//! session table (reading them: [`crate::credentials`]).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use super::AppState;
use super::error::ApiError;
use crate::credentials::{SESSION_COOKIE, cookie_value, request_token};
use crate::domain::{Error, Session};

/// A request made by a signed-in user; refused with 401 otherwise.
pub struct Authenticated(pub Session);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let token = request_token(&parts.headers).ok_or(Error::Unauthorized)?;
        Ok(Authenticated(app.natter.authenticate(&token).await?))
    }
}

/// The signed-in user of a page, if any (pages redirect instead of refusing).
pub struct MaybeSession(pub Option<Session>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Some(token) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Ok(MaybeSession(None));
        };
        match app.natter.authenticate(&token).await {
            Ok(session) => Ok(MaybeSession(Some(session))),
            Err(Error::Unauthorized) => Ok(MaybeSession(None)),
            Err(e) => Err(e.into()),
        }
    }
}

/// The signed-in user of a page that needs one: without a session, the
/// browser is sent to log in.
pub struct SignedIn(pub Session);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        match MaybeSession::from_request_parts(parts, app).await {
            Ok(MaybeSession(Some(session))) => Ok(SignedIn(session)),
            Ok(MaybeSession(None)) => Err(Redirect::to("/login").into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}
