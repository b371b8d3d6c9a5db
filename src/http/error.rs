//! Domain errors as HTTP responses: `{"error": {"code", "message"}}` with a fitting status.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Error;
use crate::telemetry::{self, Via};

/// Every API failure; built from a domain [`Error`] or a body that did not parse.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Sent as `Retry-After` (throttled logins and registrations).
    retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// The status of each domain error; the code comes from the error itself.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Invalid(_)
        | Error::Field { .. }
        | Error::SelfChat
        | Error::Empty
        | Error::NotGroup => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Taken | Error::AlreadyMember | Error::Deleted | Error::TooMany(..) => {
            StatusCode::CONFLICT
        }
        Error::BadCredentials | Error::Unauthorized => StatusCode::UNAUTHORIZED,
        Error::NoSuchUser
        | Error::NoSuchRoom
        | Error::NoSuchMessage
        | Error::NoSuchSession
        | Error::NoSuchSubscription
        | Error::NoSuchAttachment
        | Error::NoSuchInvite
        | Error::NoSuchGroupInvitation
        | Error::NoAvatar
        | Error::NoSuchBot
        | Error::NoSuchBotToken
        | Error::NoSuchWebhook => StatusCode::NOT_FOUND,
        Error::ResetUnavailable | Error::BadResetLink => StatusCode::NOT_FOUND,
        Error::NotMember
        | Error::Disabled
        | Error::NotOwner
        | Error::NotSender
        | Error::InviteRequired
        | Error::RegistrationClosed
        | Error::BadInvite
        | Error::NotAdmin
        | Error::Blocked
        | Error::Declined
        | Error::ForbiddenScope => StatusCode::FORBIDDEN,
        Error::TooLong(_) | Error::FileTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::RateLimited | Error::TooManyAttempts(_) | Error::TooManyConnections => {
            StatusCode::TOO_MANY_REQUESTS
        }
        Error::ShuttingDown | Error::Unavailable | Error::SearchTimeout => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        if let Error::Internal(cause) = &e {
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        ApiError {
            retry_after: retry_after(&e),
            ..ApiError::new(status_of(&e), e.code(), e.to_string())
        }
    }
}

/// How long a refused client should wait before trying again, if the error says.
pub fn retry_after(e: &Error) -> Option<Duration> {
    match e {
        Error::TooManyAttempts(wait) => Some(*wait),
        // The pool's own retries take about this long to find the database back.
        Error::Unavailable => Some(Duration::from_secs(1)),
        _ => None,
    }
}

/// A JSON body that is not JSON, not an object of the right shape, or too big.
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_long"
        } else {
            "invalid"
        };
        ApiError::new(status, code, r.body_text())
    }
}

/// A path parameter that does not decode (e.g. percent-encoded invalid UTF-8).
impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(r.status(), "invalid", r.body_text())
    }
}

/// The body of every API failure (docs/protocol.md, "Errors").
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `not_member`.
    #[schema(value_type = String)]
    pub code: &'static str,
    /// For people.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        telemetry::error_replied(self.code, Via::Http);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, wait.as_secs().into());
        }
        response
    }
}
