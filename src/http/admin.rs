//! The admin page: the server's counts, who may join, the accounts (search,
//! disable, enable, set a password), invitations, and moderation. The same
//! rules as the admin API (`/api/v1/admin/…`), in the domain; members get
//! 403 as they do there.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use axum_extra::extract::cookie::{Cookie, SignedCookieJar};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::status_of;
use super::session::SignedIn;
use super::views::{AdminPage, InviteView, page};
use crate::credentials::{Scheme, private_cookie};
use crate::domain::admin::{AccountChange, JoinSettings};
use crate::domain::invites::NewInvite;
use crate::domain::{Error, Session, rules};

/// What the page says after a change, across its redirect (signed, one read).
const NOTICE_COOKIE: &str = "natter_admin_notice";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(admin))
        .route("/admin/settings", post(change_settings))
        .route("/admin/users/{id}/{action}", post(change_user))
        .route("/admin/invites", post(create_invite))
        .route("/admin/invites/{code}/revoke", post(revoke_invite))
        .route("/admin/moderate", post(moderate))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UsersQuery {
    q: String,
    after: String,
}

async fn admin(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    Query(query): Query<UsersQuery>,
    jar: SignedCookieJar,
) -> Response {
    let notice = jar.get(NOTICE_COOKIE).map(|c| c.value().to_owned());
    let jar = jar.remove(Cookie::build(NOTICE_COOKIE).path("/admin"));
    let page = render(&app, &session, &query, notice, None).await;
    (jar, page).into_response()
}

async fn render(
    app: &AppState,
    session: &Session,
    query: &UsersQuery,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let me = &session.user;
    let view = async {
        let after = match query.after.as_str() {
            "" => Ok(None),
            after => rules::user_id(Some(&Value::String(after.to_owned()))).map(Some),
        };
        let query_text = Some(query.q.clone()).filter(|q| !q.trim().is_empty());
        let accounts = app.natter.accounts(me, query_text, after, Ok(None)).await?;
        Ok::<_, Error>(AdminPage {
            stats: app.natter.server_stats(me).await?,
            me: me.id,
            query: query.q.clone(),
            accounts,
            invites: app
                .natter
                .invites(me)
                .await?
                .iter()
                .map(InviteView::of)
                .collect(),
            notice,
            error,
        })
    };
    match view.await {
        Ok(view) => page(StatusCode::OK, &view),
        Err(e) => failed(&e),
    }
}

fn failed(e: &Error) -> Response {
    if let Error::Internal(cause) = e {
        tracing::error!(error = format!("{cause:#}"), "admin page failed");
    }
    (status_of(e), e.to_string()).into_response()
}

/// Back to the page after a change, which then says `what` once; a refused
/// change shows the page again with why (a member gets the bare refusal).
async fn answer(
    app: &AppState,
    session: &Session,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
    outcome: Result<String, Error>,
) -> Response {
    match outcome {
        Ok(what) => {
            let scheme = scheme.as_ref().map(|Extension(s)| s);
            let notice = private_cookie(NOTICE_COOKIE, what, "/admin", scheme, app.secure_cookies);
            (jar.add(notice), Redirect::to("/admin")).into_response()
        }
        Err(e @ (Error::NotAdmin | Error::Internal(_))) => failed(&e),
        Err(e) => {
            render(
                app,
                session,
                &UsersQuery::default(),
                None,
                Some(e.to_string()),
            )
            .await
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SettingsForm {
    registration: String,
    members_may_invite: Option<String>,
}

async fn change_settings(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
    Form(form): Form<SettingsForm>,
) -> Response {
    let change = JoinSettings::from_json(&json!({
        "registration": form.registration,
        "members_may_invite": form.members_may_invite.is_some(),
    }));
    let outcome = app
        .natter
        .set_who_may_join(&session.user, change)
        .await
        .map(|_| "Who may join is saved.".to_owned());
    answer(&app, &session, scheme, jar, outcome).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserForm {
    password: String,
}

/// `disable`, `enable` or `password` an account.
async fn change_user(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<UserForm>,
) -> Response {
    let change = match action.as_str() {
        "disable" => json!({"disabled": true}),
        "enable" => json!({"disabled": false}),
        "password" => json!({"password": form.password}),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let id = rules::user_id(Some(&Value::String(id)));
    let outcome = app
        .natter
        .change_account(&session.user, id, AccountChange::from_json(&change))
        .await
        .map(|account| match action.as_str() {
            "disable" => format!(
                "{} is disabled and signed out everywhere.",
                account.username
            ),
            "enable" => format!("{} may sign in again.", account.username),
            _ => format!(
                "{}'s password is set; they are signed out everywhere.",
                account.username
            ),
        });
    answer(&app, &session, scheme, jar, outcome).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct InviteForm {
    max_uses: String,
    expires_in_days: String,
}

async fn create_invite(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
    Form(form): Form<InviteForm>,
) -> Response {
    let number = |text: &str| text.trim().parse::<i64>().map_or(Value::Null, Value::from);
    let days = number(&form.expires_in_days);
    let new = NewInvite::from_json(&json!({
        "max_uses": number(&form.max_uses),
        "expires_in_secs": days.as_i64().map(|d| d.saturating_mul(86_400)),
    }));
    let outcome = app
        .natter
        .create_invite(&session.user, new)
        .await
        .map(|invite| format!("New invitation: {}", invite.url()));
    answer(&app, &session, scheme, jar, outcome).await
}

async fn revoke_invite(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
    Path(code): Path<String>,
) -> Response {
    let outcome = app
        .natter
        .revoke_invite(&session.user, &code)
        .await
        .map(|()| "The invitation is revoked.".to_owned());
    answer(&app, &session, scheme, jar, outcome).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ModerateForm {
    rid: String,
    seq: String,
}

async fn moderate(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
    Form(form): Form<ModerateForm>,
) -> Response {
    let seq = rules::message_seq(Some(&Value::String(form.seq.trim().to_owned())));
    let outcome = app
        .natter
        .moderate(&session.user, form.rid.trim(), seq)
        .await
        .map(|_| "The message is deleted for everyone.".to_owned());
    answer(&app, &session, scheme, jar, outcome).await
}
