//! The web pages, on the original app's routes. Forms work without JavaScript;
//! the chat page's script only adds live updates.

use axum::Form;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite, SignedCookieJar};
use serde::Deserialize;

use super::AppState;
use super::client_addr::ClientAddr;
use super::error::{retry_after, status_of};
use super::session::{MaybeSession, SESSION_COOKIE, session_cookie};
use super::views::{
    ChatItemView, ChatPage, LoginPage, MessageView, RegisterPage, RoomView, UserView, page,
};
use crate::domain::model::{Page, User};
use crate::domain::{Error, Registration, Send};

/// A one-shot notice carried across a redirect in a signed cookie.
const FLASH_COOKIE: &str = "natter_flash";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/register", get(register_form).post(register))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/chat/", get(chat).post(send_message))
        .route("/chat", get(async || Redirect::permanent("/chat/")))
        .route("/new-chat", post(new_chat))
}

async fn home(MaybeSession(session): MaybeSession) -> Redirect {
    match session {
        Some(_) => Redirect::to("/chat/"),
        None => Redirect::to("/login"),
    }
}

// ------------------------------------------------------------------ register

async fn register_form() -> Response {
    page(StatusCode::OK, &RegisterPage::default())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RegisterForm {
    username: String,
    email: String,
    password: String,
}

async fn register(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    jar: SignedCookieJar,
    Form(form): Form<RegisterForm>,
) -> Response {
    let mut view = RegisterPage {
        username: form.username.clone(),
        email: form.email.clone(),
        ..RegisterPage::default()
    };
    let registration = Registration {
        username: form.username,
        email: form.email,
        password: form.password,
    };
    match app.natter.register(registration, client).await {
        Ok(_) => {
            let flash = Cookie::build((
                FLASH_COOKIE,
                "Your account is ready. Log in to start chatting.",
            ))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax);
            (jar.add(flash), Redirect::to("/login")).into_response()
        }
        Err(e) => {
            let status = status_of(&e);
            match &e {
                Error::Field {
                    field: "username",
                    why,
                } => view.username_error = Some(why.to_string()),
                Error::Field {
                    field: "email",
                    why,
                } => view.email_error = Some(why.to_string()),
                Error::Field {
                    field: "password",
                    why,
                } => view.password_error = Some(why.to_string()),
                Error::Internal(cause) => {
                    tracing::error!(error = format!("{cause:#}"), "registration failed");
                    view.error = Some("Something went wrong; please try again.".into());
                }
                other => view.error = Some(other.to_string()),
            }
            with_retry_after(page(status, &view), &e)
        }
    }
}

// --------------------------------------------------------------------- login

async fn login_form(MaybeSession(session): MaybeSession, jar: SignedCookieJar) -> Response {
    if session.is_some() {
        return Redirect::to("/chat/").into_response();
    }
    let flash = jar.get(FLASH_COOKIE).map(|c| c.value().to_owned());
    let jar = jar.remove(Cookie::build(FLASH_COOKIE).path("/"));
    let view = LoginPage {
        flash,
        ..LoginPage::default()
    };
    (jar, page(StatusCode::OK, &view)).into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    email: String,
    password: String,
}

async fn login(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    match app.natter.login(&form.email, &form.password, client).await {
        Ok((_, token)) => {
            let cookie = session_cookie(token, &headers, app.secure_cookies);
            (jar.add(cookie), Redirect::to("/chat/")).into_response()
        }
        Err(e) => {
            if let Error::Internal(cause) = &e {
                tracing::error!(error = format!("{cause:#}"), "login failed");
            }
            let view = LoginPage {
                error: Some(e.to_string()),
                email: form.email,
                ..LoginPage::default()
            };
            with_retry_after(page(status_of(&e), &view), &e)
        }
    }
}

/// A throttled form says when to try again, in the page and in `Retry-After`.
fn with_retry_after(mut response: Response, e: &Error) -> Response {
    if let Some(wait) = retry_after(e) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, wait.as_secs().into());
    }
    response
}

async fn logout(
    State(app): State<AppState>,
    MaybeSession(session): MaybeSession,
    jar: CookieJar,
) -> Response {
    if let Some(session) = session {
        if let Err(e) = app.natter.logout(&session).await {
            tracing::error!(error = %e, "logout failed");
        }
        app.fanout.end_session(&session).await;
    }
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    (jar, Redirect::to("/login")).into_response()
}

// ---------------------------------------------------------------------- chat

#[derive(Deserialize)]
struct ChatQuery {
    rid: Option<String>,
}

async fn chat(
    State(app): State<AppState>,
    MaybeSession(session): MaybeSession,
    Query(query): Query<ChatQuery>,
) -> Response {
    let Some(session) = session else {
        return Redirect::to("/login").into_response();
    };
    let rid = query.rid.filter(|r| !r.is_empty());
    chat_page(&app, &session.user, rid.as_deref(), String::new(), None).await
}

/// Renders the chat list, and the open room when `rid` names one of the user's rooms.
async fn chat_page(
    app: &AppState,
    me: &User,
    rid: Option<&str>,
    new_chat_email: String,
    new_chat_error: Option<(StatusCode, String)>,
) -> Response {
    let built = async {
        let mut status = StatusCode::OK;
        let room = match rid {
            Some(rid) => match open_room(app, me, rid).await {
                Ok(room) => Some(room),
                Err(e @ (Error::NotMember | Error::NoSuchRoom)) => {
                    status = status_of(&e);
                    None
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        // After open_room, so the opened room's unread count is already cleared.
        let chats = app.natter.chats(me).await?;
        let room = room.map(|mut room: RoomView| {
            if let Some(chat) = chats.iter().find(|c| c.room_id == room.room_id) {
                room.title = chat.title.clone();
            }
            room
        });
        let new_chat_error = new_chat_error.map(|(s, message)| {
            status = s;
            message
        });
        let view = ChatPage {
            me: UserView::of(me),
            chats: chats
                .iter()
                .map(|c| ChatItemView::of(c, me.id, room.as_ref().map(|r| r.room_id.as_str())))
                .collect(),
            room,
            new_chat_email,
            new_chat_error,
        };
        Ok::<_, Error>((status, view))
    }
    .await;
    match built {
        Ok((status, view)) => page(status, &view),
        Err(e) => {
            tracing::error!(error = %e, "chat page failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn open_room(app: &AppState, me: &User, rid: &str) -> Result<RoomView, Error> {
    let (last_seq, _) = app.natter.join(me, rid).await?;
    let page_size = app.natter.limits().history_page_default;
    let messages = app
        .natter
        .history(
            me,
            rid,
            Page {
                before: None,
                after: None,
                limit: page_size,
            },
        )
        .await?;
    Ok(RoomView {
        room_id: rid.to_owned(),
        title: String::new(),
        first_seq: messages.first().map_or(last_seq + 1, |m| m.seq),
        messages: messages.iter().map(|m| MessageView::of(m, me.id)).collect(),
        last_seq,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MessageForm {
    message: String,
}

/// The message box without JavaScript: store, broadcast, show the room again.
async fn send_message(
    State(app): State<AppState>,
    MaybeSession(session): MaybeSession,
    Query(query): Query<ChatQuery>,
    Form(form): Form<MessageForm>,
) -> Response {
    let Some(session) = session else {
        return Redirect::to("/login").into_response();
    };
    let rid = query.rid.unwrap_or_default();
    let message = serde_json::Value::String(form.message);
    let send = Send {
        rid: &rid,
        message: &message,
        client_id: None,
        reply_to: None,
        origin: None,
    };
    match app.natter.send(&session.user, send).await {
        Ok(_) => Redirect::to(&format!("/chat/?rid={rid}")).into_response(),
        Err(Error::Internal(cause)) => {
            tracing::error!(error = format!("{cause:#}"), "send failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(e) => (status_of(&e), e.to_string()).into_response(),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NewChatForm {
    email: String,
}

async fn new_chat(
    State(app): State<AppState>,
    MaybeSession(session): MaybeSession,
    Form(form): Form<NewChatForm>,
) -> Response {
    let Some(session) = session else {
        return Redirect::to("/login").into_response();
    };
    match app
        .natter
        .open_direct_chat(&session.user, &form.email)
        .await
    {
        Ok((chat, _)) => Redirect::to(&format!("/chat/?rid={}", chat.room_id)).into_response(),
        Err(Error::Internal(cause)) => {
            tracing::error!(error = format!("{cause:#}"), "new chat failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(e) => {
            let status = status_of(&e);
            let message = match e {
                Error::NoSuchUser => "Nobody has registered with that email yet.".to_owned(),
                Error::SelfChat => "That is your own email.".to_owned(),
                other => other.to_string(),
            };
            chat_page(
                &app,
                &session.user,
                None,
                form.email,
                Some((status, message)),
            )
            .await
        }
    }
}
