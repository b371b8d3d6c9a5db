//! The web pages, on the original app's routes. Forms work without JavaScript;
//! the chat page's script only adds live updates.

use axum::Extension;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SignedCookieJar};
use serde::Deserialize;

use super::AppState;
use super::client_addr::ClientAddr;
use super::error::{retry_after, status_of};
use super::session::{MaybeSession, SignedIn};
use super::views::{
    ChatItemView, ChatPage, LoginPage, MemberView, MessageView, NewGroupForm, RegisterPage,
    RoomView, UserView, page, shown_title,
};
use crate::credentials::{SESSION_COOKIE, Scheme, private_cookie, session_cookie};
use crate::domain::invites::RegistrationMode;
use crate::domain::model::{Message, Page, RoomKind, User};
use crate::domain::rules;
use crate::domain::{Error, NewGroup, Registration, Send};

/// A one-shot notice carried across a redirect in a signed cookie.
pub(super) const FLASH_COOKIE: &str = "natter_flash";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/register", get(register_form).post(register))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/chat/", get(chat).post(send_message))
        .route("/chat", get(async || Redirect::permanent("/chat/")))
        .route("/new-chat", post(new_chat))
        .route("/new-group", post(new_group))
        .route("/invitations/{rid}/{answer}", post(answer_invitation))
}

async fn home(MaybeSession(session): MaybeSession) -> Redirect {
    match session {
        Some(_) => Redirect::to("/chat/"),
        None => Redirect::to("/login"),
    }
}

// ------------------------------------------------------------------ register

#[derive(Deserialize, Default)]
#[serde(default)]
struct InviteQuery {
    invite: String,
}

/// The sign-up form; `?invite=CODE` (an invitation's link) keeps the code in it.
async fn register_form(State(app): State<AppState>, Query(query): Query<InviteQuery>) -> Response {
    let view = RegisterPage {
        invite: query.invite,
        mode: mode_of(&app).await,
        ..RegisterPage::default()
    };
    page(StatusCode::OK, &view)
}

/// What the sign-up page says of the server's registration mode.
async fn mode_of(app: &AppState) -> &'static str {
    // A database that does not answer now: the form shows no notice, and
    // the registration itself is refused as it should be.
    match app.natter.registration_mode().await {
        Ok(RegistrationMode::Open) | Err(_) => "",
        Ok(RegistrationMode::Invite) => "invite",
        Ok(RegistrationMode::Closed) => "closed",
    }
}

/// Where the next login goes, after a sign-up that joined a group (signed).
const NEXT_ROOM_COOKIE: &str = "natter_next_room";

#[derive(Deserialize, Default)]
#[serde(default)]
struct RegisterForm {
    username: String,
    email: String,
    password: String,
    invite: String,
}

async fn register(
    State(app): State<AppState>,
    ClientAddr(client): ClientAddr,
    scheme: Option<Extension<Scheme>>,
    jar: SignedCookieJar,
    Form(form): Form<RegisterForm>,
) -> Response {
    let mut view = RegisterPage {
        username: form.username.clone(),
        email: form.email.clone(),
        invite: form.invite.clone(),
        mode: mode_of(&app).await,
        ..RegisterPage::default()
    };
    let registration = Registration {
        username: form.username,
        email: form.email,
        password: form.password,
        invite: Some(form.invite).filter(|code| !code.is_empty()),
    };
    match app.natter.register_invited(registration, client).await {
        Ok((_, room)) => {
            let scheme = scheme.as_ref().map(|Extension(s)| s);
            let flash = private_cookie(
                FLASH_COOKIE,
                "Your account is ready. Log in to start chatting.".into(),
                "/",
                scheme,
                app.secure_cookies,
            );
            let jar = match room {
                Some(rid) => jar.add(private_cookie(
                    NEXT_ROOM_COOKIE,
                    rid,
                    "/",
                    scheme,
                    app.secure_cookies,
                )),
                None => jar,
            };
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

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginQuery {
    /// Set after an account's deletion (`/account/delete`).
    deleted: Option<String>,
}

async fn login_form(
    State(app): State<AppState>,
    MaybeSession(session): MaybeSession,
    Query(query): Query<LoginQuery>,
    jar: SignedCookieJar,
) -> Response {
    if session.is_some() {
        return Redirect::to("/chat/").into_response();
    }
    let deleted = query.deleted.map(|_| "Your account is deleted.".to_owned());
    let flash = jar
        .get(FLASH_COOKIE)
        .map(|c| c.value().to_owned())
        .or(deleted);
    let jar = jar.remove(Cookie::build(FLASH_COOKIE).path("/"));
    let view = LoginPage {
        flash,
        can_reset: app.natter.password_resets_enabled(),
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
    scheme: Option<Extension<Scheme>>,
    jar: CookieJar,
    signed: SignedCookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    match app.natter.login(&form.email, &form.password, client).await {
        Ok((_, token)) => {
            let scheme = scheme.as_ref().map(|Extension(s)| s);
            let cookie = session_cookie(token, scheme, app.secure_cookies);
            // The group an invitation brought this person into, once.
            let next = match signed.get(NEXT_ROOM_COOKIE) {
                Some(rid) => format!("/chat/?rid={}", urlencoding(rid.value())),
                None => "/chat/".to_owned(),
            };
            let signed = signed.remove(Cookie::build(NEXT_ROOM_COOKIE).path("/"));
            (jar.add(cookie), signed, Redirect::to(&next)).into_response()
        }
        Err(e) => {
            if let Error::Internal(cause) = &e {
                tracing::error!(error = format!("{cause:#}"), "login failed");
            }
            let view = LoginPage {
                error: Some(e.to_string()),
                email: form.email,
                can_reset: app.natter.password_resets_enabled(),
                ..LoginPage::default()
            };
            with_retry_after(page(status_of(&e), &view), &e)
        }
    }
}

/// A throttled form says when to try again, in the page and in `Retry-After`.
pub(super) fn with_retry_after(mut response: Response, e: &Error) -> Response {
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
    if let Some(session) = session
        && let Err(e) = app.natter.logout(&session).await
    {
        tracing::error!(error = %e, "logout failed");
    }
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    (jar, Redirect::to("/login")).into_response()
}

// ---------------------------------------------------------------------- chat

#[derive(Deserialize)]
struct ChatQuery {
    rid: Option<String>,
    /// A message to open the room at (a search hit); anything but a number is ignored.
    at: Option<String>,
}

async fn chat(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    Query(query): Query<ChatQuery>,
) -> Response {
    let rid = query.rid.filter(|r| !r.is_empty());
    let at = query.at.and_then(|at| at.parse().ok());
    let opened = Opened {
        rid: rid.as_deref(),
        at,
    };
    chat_page(&app, &session.user, opened, SidebarForms::default()).await
}

/// The room a chat page opens, and the message to open it at.
#[derive(Default)]
struct Opened<'a> {
    rid: Option<&'a str>,
    at: Option<i64>,
}

/// The sidebar's forms as typed, after one of them was refused (with its status).
#[derive(Default)]
struct SidebarForms {
    refused: Option<StatusCode>,
    new_chat_email: String,
    new_chat_error: Option<String>,
    new_group: NewGroupForm,
}

/// Renders the chat list, and the open room when `rid` names one of the user's rooms.
async fn chat_page(app: &AppState, me: &User, opened: Opened<'_>, forms: SidebarForms) -> Response {
    let built = async {
        let mut status = StatusCode::OK;
        let room = match opened.rid {
            Some(rid) => match open_room(app, me, rid, opened.at).await {
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
        if let Some(refused) = forms.refused {
            status = refused;
        }
        let blocked = app.natter.blocked(me).await?;
        let room = room.map(|mut room| {
            room.peer_blocked = blocked.iter().any(|p| p.id.to_string() == room.peer_id);
            room
        });
        let view = ChatPage {
            me: UserView::of(me),
            chats: chats
                .iter()
                .map(|c| ChatItemView::of(c, me.id, room.as_ref().map(|r| r.room_id.as_str())))
                .collect(),
            total_unread: chats.iter().map(|c| c.unread).sum(),
            room,
            new_chat_email: forms.new_chat_email,
            new_chat_error: forms.new_chat_error,
            new_group: forms.new_group,
            max_message_chars: app.natter.limits().max_message_chars,
            max_upload_bytes: app.natter.max_upload_bytes().unwrap_or(0),
            invitations: app.natter.group_invitations(me).await?,
            blocked_ids: blocked
                .iter()
                .map(|p| p.id.to_string())
                .collect::<Vec<_>>()
                .join(","),
        };
        Ok::<_, Error>((status, view))
    }
    .await;
    match built {
        Ok((status, view)) => page(status, &view),
        // A refusal (too many requests, the database unreachable) is said as
        // such, with its status; only a fault is a 500.
        Err(e) => {
            let status = status_of(&e);
            if status.is_server_error() {
                tracing::error!(error = %e, "chat page failed");
            }
            with_retry_after((status, e.to_string()).into_response(), &e)
        }
    }
}

/// Opens a room for reading (marking it read): its latest page of history, or
/// the messages around `at` with that one highlighted.
async fn open_room(
    app: &AppState,
    me: &User,
    rid: &str,
    at: Option<i64>,
) -> Result<RoomView, Error> {
    let (chat, last_seq) = app.natter.open(me, rid).await?;
    let page_size = app.natter.limits().history_page_default;
    let page = |before, after, limit| Page {
        before,
        after,
        limit,
    };
    let (messages, more_after) = match at.filter(|at| (1..=last_seq).contains(at)) {
        Some(at) => {
            let mut messages = app
                .natter
                .history(me, rid, page(Some(at), None, (page_size / 2).max(1)))
                .await?
                .messages;
            let from_at = app
                .natter
                .history(me, rid, page(None, Some(at - 1), page_size))
                .await?;
            messages.extend(from_at.messages);
            (messages, from_at.has_more)
        }
        None => {
            let latest = app.natter.history(me, rid, page(None, None, page_size));
            (latest.await?.messages, false)
        }
    };
    let view_of = |m: &Message| MessageView {
        highlight: Some(m.seq) == at,
        ..MessageView::in_room(m, me.id, &chat.members)
    };
    let owner_id = chat.owner_id.map(|id| id.to_string()).unwrap_or_default();
    let peer = chat.members.iter().find(|m| m.id != me.id);
    Ok(RoomView {
        room_id: rid.to_owned(),
        title: shown_title(&chat, me.id),
        avatar: match chat.kind {
            RoomKind::Direct => peer.and_then(|m| m.avatar.clone()).unwrap_or_default(),
            RoomKind::Group => String::new(),
        },
        is_group: chat.kind == RoomKind::Group,
        is_owner: chat.owner_id == Some(me.id),
        owner_id,
        members: chat.members.iter().map(MemberView::of).collect(),
        first_seq: messages.first().map_or(last_seq + 1, |m| m.seq),
        messages: messages.iter().map(view_of).collect(),
        last_seq,
        read_seq: chat.last_read_seq,
        more_after,
        peer_id: match chat.kind {
            RoomKind::Direct => chat
                .members
                .iter()
                .find(|m| m.id != me.id)
                .map(|m| m.id.to_string())
                .unwrap_or_default(),
            RoomKind::Group => String::new(),
        },
        peer_blocked: false,
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
    SignedIn(session): SignedIn,
    Query(query): Query<ChatQuery>,
    Form(form): Form<MessageForm>,
) -> Response {
    let rid = query.rid.unwrap_or_default();
    let send = Send {
        rid: &rid,
        body: rules::message_text(&form.message, app.natter.limits()),
        client_id: Ok(None),
        reply_to: Ok(None),
        attachments: Ok(Vec::new()),
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
    SignedIn(session): SignedIn,
    Form(form): Form<NewChatForm>,
) -> Response {
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
            let forms = SidebarForms {
                refused: Some(status),
                new_chat_email: form.email,
                new_chat_error: Some(message),
                ..SidebarForms::default()
            };
            chat_page(&app, &session.user, Opened::default(), forms).await
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NewGroupFormData {
    title: String,
    /// Comma-separated.
    emails: String,
}

async fn new_group(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    Form(form): Form<NewGroupFormData>,
) -> Response {
    let emails: Vec<&str> = form
        .emails
        .split(',')
        .map(str::trim)
        .filter(|email| !email.is_empty())
        .collect();
    let group = NewGroup {
        title: rules::group_title_text(&form.title),
        emails: rules::email_texts(&emails),
    };
    match app.natter.create_group(&session.user, group).await {
        Ok(chat) => Redirect::to(&format!("/chat/?rid={}", chat.room_id)).into_response(),
        Err(Error::Internal(cause)) => {
            tracing::error!(error = format!("{cause:#}"), "new group failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(e) => {
            let status = status_of(&e);
            let message = match e {
                Error::NoSuchUser => "Nobody has registered with one of those emails.".to_owned(),
                other => other.to_string(),
            };
            let forms = SidebarForms {
                refused: Some(status),
                new_group: NewGroupForm {
                    title: form.title,
                    emails: form.emails,
                    error: Some(message),
                },
                ..SidebarForms::default()
            };
            chat_page(&app, &session.user, Opened::default(), forms).await
        }
    }
}

/// A room id in a query string (ids are base64url, but a cookie is not ours
/// to trust further than its signature).
fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Accepts (and opens the group) or declines an invitation to a group.
async fn answer_invitation(
    State(app): State<AppState>,
    SignedIn(session): SignedIn,
    Path((rid, answer)): Path<(String, String)>,
) -> Response {
    let me = &session.user;
    let answered = match answer.as_str() {
        "accept" => app.natter.accept_group_invitation(me, &rid).await.map(Some),
        "decline" => app
            .natter
            .decline_group_invitation(me, &rid)
            .await
            .map(|()| None),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match answered {
        Ok(Some(chat)) => Redirect::to(&format!(
            "/chat/?rid={}",
            url::form_urlencoded::byte_serialize(chat.room_id.as_bytes()).collect::<String>()
        ))
        .into_response(),
        Ok(None) => Redirect::to("/chat/").into_response(),
        Err(e) => (status_of(&e), e.to_string()).into_response(),
    }
}
