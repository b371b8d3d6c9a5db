//! What the page templates see. Askama escapes every `{{ }}` as HTML, so user
//! text (usernames, messages) can never become markup.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::domain::model::{Chat, Message, User, UserId};

#[derive(Template, Default)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub flash: Option<String>,
    pub error: Option<String>,
    pub email: String,
}

#[derive(Template, Default)]
#[template(path = "register.html")]
pub struct RegisterPage {
    pub username: String,
    pub email: String,
    pub username_error: Option<String>,
    pub email_error: Option<String>,
    pub password_error: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "chat.html")]
pub struct ChatPage {
    pub me: UserView,
    pub chats: Vec<ChatItemView>,
    pub room: Option<RoomView>,
    pub new_chat_email: String,
    pub new_chat_error: Option<String>,
}

pub struct UserView {
    pub id: String,
    pub username: String,
}

pub struct ChatItemView {
    pub room_id: String,
    pub title: String,
    pub last_message: Option<MessageView>,
    pub unread: i64,
    pub active: bool,
}

pub struct RoomView {
    pub room_id: String,
    pub title: String,
    pub messages: Vec<MessageView>,
    pub last_seq: i64,
    pub first_seq: i64,
}

pub struct MessageView {
    pub seq: i64,
    pub sender_username: String,
    pub message: String,
    pub timestamp: f64,
    /// UTC; the page script rewrites it into the reader's local time.
    pub iso_time: String,
    pub mine: bool,
}

impl UserView {
    pub fn of(user: &User) -> Self {
        UserView {
            id: user.id.to_string(),
            username: user.username.clone(),
        }
    }
}

impl MessageView {
    pub fn of(message: &Message, me: UserId) -> Self {
        let nanos = (message.timestamp * 1e9) as i128;
        let iso_time = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        MessageView {
            seq: message.seq,
            sender_username: message.sender_username.clone(),
            message: message.message.clone(),
            timestamp: message.timestamp,
            iso_time,
            mine: message.sender_id == me,
        }
    }
}

impl ChatItemView {
    pub fn of(chat: &Chat, me: UserId, open_rid: Option<&str>) -> Self {
        ChatItemView {
            room_id: chat.room_id.clone(),
            title: chat.title.clone(),
            last_message: chat.last_message.as_ref().map(|m| MessageView::of(m, me)),
            unread: chat.unread,
            active: open_rid == Some(chat.room_id.as_str()),
        }
    }
}

/// Renders a page with a status; a template error is a server bug, logged as such.
pub fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
