//! The account page: who I am, changing my password, and the devices I am
//! signed in on, each of which I can sign out. The same rules as the JSON
//! API's `PUT /me/password` and `DELETE /sessions/{id}`, in the domain.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use axum_extra::extract::cookie::{Cookie, SignedCookieJar};
use serde::Deserialize;

use super::AppState;
use super::client_addr::ClientAddr;
use super::error::status_of;
use super::session::SignedIn;
use super::views::{AccountPage, SessionView, page};
use crate::credentials::{Scheme, private_cookie};
use crate::domain::{Error, Session};

/// What the page says after a change, across its redirect (signed, one read).
const NOTICE_COOKIE: &str = "natter_account_notice";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account", get(account))
        .route("/account/password", post(change_password))
        .route("/account/sessions/{id}/end", post(end_session))
}

/// The page as it is now, with `error` (of the password form) if any.
async fn render(
    app: &AppState,
    session: &Session,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    match app.natter.sessions(session).await {
        Ok(sessions) => {
            let view = AccountPage {
                username: session.user.username.clone(),
                email: session.user.email.clone(),
                notice,
                error,
                sessions: sessions.iter().map(SessionView::of).collect(),
            };
            page(status, &view)
        }
        Err(e) => failed(&e),
    }
}

fn failed(e: &Error) -> Response {
    if let Error::Internal(cause) = e {
        tracing::error!(error = format!("{cause:#}"), "account page failed");
    }
    (status_of(e), e.to_string()).into_response()
}

async fn account(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    jar: SignedCookieJar,
) -> Response {
    let notice = jar.get(NOTICE_COOKIE).map(|c| c.value().to_owned());
    let jar = jar.remove(Cookie::build(NOTICE_COOKIE).path("/account"));
    let page = render(&app, &session, notice, None, StatusCode::OK).await;
    (jar, page).into_response()
}

/// Back to the page, which then says `what` once.
fn done(
    app: &AppState,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
    what: &'static str,
) -> Response {
    let scheme = scheme.as_ref().map(|Extension(s)| s);
    let notice = private_cookie(
        NOTICE_COOKIE,
        what.into(),
        "/account",
        scheme,
        app.secure_cookies,
    );
    (jar.add(notice), Redirect::to("/account")).into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PasswordForm {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    SignedIn(session): SignedIn,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
    Form(form): Form<PasswordForm>,
) -> Response {
    let changed = app
        .natter
        .change_password(&session, &form.current_password, form.new_password, client)
        .await;
    match changed {
        Ok(()) => done(
            &app,
            scheme,
            jar,
            "Your password is changed, and your other devices are signed out.",
        ),
        Err(Error::Internal(cause)) => failed(&Error::Internal(cause)),
        Err(e) => render(&app, &session, None, Some(e.to_string()), status_of(&e)).await,
    }
}

async fn end_session(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
    Path(id): Path<String>,
) -> Response {
    match app.natter.revoke_session(&session, &id).await {
        Ok(()) if id == session.id => Redirect::to("/login").into_response(),
        Ok(()) => done(&app, scheme, jar, "That device is signed out."),
        Err(e) => failed(&e),
    }
}
