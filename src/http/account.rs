//! The account page: my profile (display name, picture, directory), my
//! password, the devices I am signed in on (each of which I can sign out),
//! whom I block, my data, and deleting the account. The same rules as the
//! JSON API's `/me…`, `/sessions` and `/blocks` routes, in the domain. (The
//! picture is uploaded by the page's script to `PUT /api/v1/me/avatar`.)

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
use crate::domain::accounts::{DeletedMessages, ProfileChange};
use crate::domain::{Error, Session, rules};

/// What the page says after a change, across its redirect (signed, one read).
const NOTICE_COOKIE: &str = "natter_account_notice";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account", get(account))
        .route("/account/password", post(change_password))
        .route("/account/sessions/{id}/end", post(end_session))
        .route("/account/profile", post(change_profile))
        .route("/account/avatar/remove", post(remove_avatar))
        .route("/account/blocks", post(block))
        .route("/account/blocks/{id}/remove", post(unblock))
        .route("/account/delete", post(delete_account))
}

/// The page as it is now, with `error` (of the form it names) if any.
async fn render(
    app: &AppState,
    session: &Session,
    notice: Option<String>,
    error: Option<(&'static str, String)>,
    status: StatusCode,
) -> Response {
    let me = &session.user;
    let view = async {
        let account = app.natter.my_account(me).await?;
        Ok::<_, Error>(AccountPage {
            username: me.username.clone(),
            email: me.email.clone(),
            display_name: account.display_name.unwrap_or_default(),
            avatar: account.avatar,
            in_directory: account.in_directory,
            admin: account.admin,
            notice,
            error,
            sessions: app
                .natter
                .sessions(session)
                .await?
                .iter()
                .map(SessionView::of)
                .collect(),
            blocked: app.natter.blocked(me).await?,
            messages_removed: app.natter.account_rules().deleted_messages
                == DeletedMessages::Remove,
        })
    };
    match view.await {
        Ok(view) => page(status, &view),
        Err(e) => failed(&e),
    }
}

/// A form refused: the page again, with why, beside the form.
async fn refused(app: &AppState, session: &Session, form: &'static str, e: Error) -> Response {
    match e {
        Error::Internal(cause) => failed(&Error::Internal(cause)),
        e => {
            let status = status_of(&e);
            render(app, session, None, Some((form, e.to_string())), status).await
        }
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
        Err(e) => refused(&app, &session, "password", e).await,
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

#[derive(Deserialize, Default)]
#[serde(default)]
struct ProfileForm {
    display_name: String,
    /// A checkbox: present ("on") when ticked.
    in_directory: Option<String>,
}

async fn change_profile(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
    Form(form): Form<ProfileForm>,
) -> Response {
    let change = ProfileChange::from_json(&serde_json::json!({
        "display_name": form.display_name,
        "in_directory": form.in_directory.is_some(),
    }));
    match app.natter.change_profile(&session.user, change).await {
        Ok(_) => done(&app, scheme, jar, "Your profile is saved."),
        Err(e) => refused(&app, &session, "profile", e).await,
    }
}

async fn remove_avatar(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
) -> Response {
    match app.natter.remove_avatar(&session.user).await {
        Ok(_) => done(&app, scheme, jar, "Your picture is removed."),
        Err(e) => failed(&e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BlockForm {
    user_id: String,
    /// The chat the block was made from, to go back to.
    rid: String,
}

/// Blocks someone from a direct chat's header, and goes back to the chat.
async fn block(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    Form(form): Form<BlockForm>,
) -> Response {
    let whom = rules::user_id(Some(&serde_json::Value::String(form.user_id)));
    match app.natter.block(&session.user, whom).await {
        Ok(()) => Redirect::to(&format!(
            "/chat/?rid={}",
            url::form_urlencoded::byte_serialize(form.rid.as_bytes()).collect::<String>()
        ))
        .into_response(),
        Err(e) => failed(&e),
    }
}

async fn unblock(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
    Path(id): Path<String>,
) -> Response {
    let whom = rules::user_id(Some(&serde_json::Value::String(id)));
    match app.natter.unblock(&session.user, whom).await {
        Ok(()) => done(&app, scheme, jar, "Unblocked."),
        Err(e) => failed(&e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeleteForm {
    password: String,
}

/// Deletes the account; the browser lands on the login page, signed out.
async fn delete_account(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    SignedIn(session): SignedIn,
    Form(form): Form<DeleteForm>,
) -> Response {
    match app
        .natter
        .delete_account(&session, &form.password, client)
        .await
    {
        Ok(()) => Redirect::to("/login?deleted=1").into_response(),
        Err(e) => refused(&app, &session, "delete", e).await,
    }
}
