//! The password reset pages (on servers with `--smtp-url`): `/forgot` asks
//! for a link by email, `/reset/{token}` (the mailed link) sets the new
//! password and sends the person to log in. The same rules as the JSON
//! API's `/password-resets`, in the domain; forms are same-origin only, as
//! every write. Without SMTP both pages are 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Form, Router};
use axum_extra::extract::cookie::SignedCookieJar;
use serde::Deserialize;

use super::AppState;
use super::client_addr::ClientAddr;
use super::error::status_of;
use super::pages::{FLASH_COOKIE, with_retry_after};
use super::views::{ForgotPage, ResetPage, page};
use crate::credentials::{Scheme, private_cookie};
use crate::domain::Error;
use crate::domain::reset::spoken;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/forgot", get(forgot_form).post(forgot))
        .route("/reset/{token}", get(reset_form).post(reset))
}

/// A refusal that is no form's business: resets off (404), the database
/// unreachable, a fault.
fn failed(e: &Error) -> Response {
    if let Error::Internal(cause) = e {
        tracing::error!(error = format!("{cause:#}"), "password reset page failed");
    }
    with_retry_after((status_of(e), e.to_string()).into_response(), e)
}

async fn forgot_form(State(app): State<AppState>) -> Response {
    match app.natter.password_resets_enabled() {
        true => page(StatusCode::OK, &ForgotPage::default()),
        false => failed(&Error::ResetUnavailable),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ForgotForm {
    email: String,
}

async fn forgot(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    Form(form): Form<ForgotForm>,
) -> Response {
    match app.natter.request_password_reset(&form.email, client) {
        Ok(()) => {
            let lifetime = app.natter.password_reset_lifetime().map(spoken);
            let view = ForgotPage {
                notice: Some(format!(
                    "If an account has that email, a link to choose a new password is on \
                     its way. It works once, for {}.",
                    lifetime.unwrap_or_default()
                )),
                ..ForgotPage::default()
            };
            page(StatusCode::OK, &view)
        }
        Err(e @ (Error::Field { .. } | Error::TooManyAttempts(_))) => {
            let view = ForgotPage {
                email: form.email,
                error: Some(e.to_string()),
                ..ForgotPage::default()
            };
            with_retry_after(page(status_of(&e), &view), &e)
        }
        Err(e) => failed(&e),
    }
}

/// The page of a link: its form, or why it cannot be used.
fn reset_page(token: String, outcome: Result<(), Error>) -> Response {
    match outcome {
        Ok(()) => {
            let view = ResetPage {
                token,
                usable: true,
                error: None,
            };
            page(StatusCode::OK, &view)
        }
        Err(e @ Error::Field { .. }) => {
            let view = ResetPage {
                token,
                usable: true,
                error: Some(e.to_string()),
            };
            page(status_of(&e), &view)
        }
        Err(e @ Error::BadResetLink) => page(status_of(&e), &ResetPage::default()),
        Err(e) => failed(&e),
    }
}

async fn reset_form(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    let usable = app.natter.check_reset_link(&token).await;
    reset_page(token, usable)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResetForm {
    password: String,
}

async fn reset(
    State(app): State<AppState>,
    Path(token): Path<String>,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
    Form(form): Form<ResetForm>,
) -> Response {
    match app
        .natter
        .complete_password_reset(&token, form.password)
        .await
    {
        Ok(_) => {
            let scheme = scheme.as_ref().map(|Extension(s)| s);
            let flash = private_cookie(
                FLASH_COOKIE,
                "Your new password is set, and every device is signed out. Log in with it.".into(),
                "/",
                scheme,
                app.secure_cookies,
            );
            (jar.add(flash), Redirect::to("/login")).into_response()
        }
        Err(e) => reset_page(token, Err(e)),
    }
}
