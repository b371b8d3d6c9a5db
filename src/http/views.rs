//! What the page templates see. Askama escapes every `{{ }}` as HTML, so user
//! text (usernames, messages) can never become markup.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::domain::model::{
    Chat, Member, Message, MessageKind, Quote, Reaction, RoomKind, User, UserId,
};

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
    /// Unread messages in all chats, for the tab title.
    pub total_unread: i64,
    pub new_chat_email: String,
    pub new_chat_error: Option<String>,
    pub new_group: NewGroupForm,
    /// The longest message the server takes, for the composer's counter.
    pub max_message_chars: usize,
}

impl ChatPage {
    /// The open chat's notification level (`all`, `mentions`, `none`), or
    /// empty when no room is open: the page script's starting point.
    pub fn notify(&self) -> &'static str {
        // Only the open room's item is active.
        let open = self.chats.iter().find(|chat| chat.active);
        open.map_or("", |chat| chat.notify)
    }
}

/// The "New group" form as typed, with its error (after a refused submit).
#[derive(Default)]
pub struct NewGroupForm {
    pub title: String,
    pub emails: String,
    pub error: Option<String>,
}

pub struct UserView {
    pub id: String,
    pub username: String,
}

pub struct ChatItemView {
    pub room_id: String,
    pub title: String,
    pub is_group: bool,
    /// A direct room's other person (empty for a group), whose presence the item shows.
    pub peer_id: String,
    pub online: bool,
    pub last_message: Option<MessageView>,
    pub unread: i64,
    pub active: bool,
    /// The member's notification level in this chat.
    pub notify: &'static str,
}

pub struct RoomView {
    pub room_id: String,
    pub title: String,
    pub is_group: bool,
    /// Empty for a direct room.
    pub owner_id: String,
    pub is_owner: bool,
    pub members: Vec<MemberView>,
    pub messages: Vec<MessageView>,
    pub last_seq: i64,
    pub first_seq: i64,
    /// My read marker before this page opened the room (and so marked it
    /// read): where the page draws its "New messages" divider.
    pub read_seq: i64,
    /// The page shows a window around a search hit that stops before the room's end.
    pub more_after: bool,
}

pub struct MemberView {
    pub id: String,
    pub username: String,
    pub online: bool,
    /// Unix seconds, or empty if never seen.
    pub last_seen: String,
    pub read_seq: i64,
}

pub struct MessageView {
    pub seq: i64,
    pub rev: i64,
    pub sender_username: String,
    pub message: String,
    pub timestamp: f64,
    /// UTC; the page script rewrites it into the reader's local time.
    pub iso_time: String,
    pub mine: bool,
    pub system: bool,
    pub deleted: bool,
    pub edited: bool,
    pub reply: Option<Quote>,
    pub reactions: Vec<ReactionView>,
    /// The message a search hit opened the room at.
    pub highlight: bool,
}

pub struct ReactionView {
    pub emoji: String,
    pub count: usize,
    pub mine: bool,
    /// Who reacted, for the chip's tooltip.
    pub names: String,
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
            rev: message.rev,
            sender_username: message.sender_username.clone(),
            message: message.message.clone(),
            timestamp: message.timestamp,
            iso_time,
            mine: message.sender_id == me,
            system: message.kind == MessageKind::System,
            deleted: message.deleted,
            edited: message.edited_at.is_some(),
            reply: message.reply_to.clone(),
            reactions: Vec::new(),
            highlight: false,
        }
    }

    /// With its reactions, whose reactors are named after the room's members.
    pub fn in_room(message: &Message, me: UserId, members: &[Member]) -> Self {
        MessageView {
            reactions: message
                .reactions
                .iter()
                .map(|r| ReactionView::of(r, me, members))
                .collect(),
            ..MessageView::of(message, me)
        }
    }
}

impl ReactionView {
    fn of(reaction: &Reaction, me: UserId, members: &[Member]) -> Self {
        let names: Vec<&str> = reaction
            .user_ids
            .iter()
            .filter_map(|id| members.iter().find(|m| m.id == *id))
            .map(|m| m.username.as_str())
            .collect();
        ReactionView {
            emoji: reaction.emoji.clone(),
            count: reaction.count,
            mine: reaction.user_ids.contains(&me),
            names: names.join(", "),
        }
    }
}

impl MemberView {
    pub fn of(member: &Member) -> Self {
        MemberView {
            id: member.id.to_string(),
            username: member.username.clone(),
            online: member.online,
            last_seen: member.last_seen.map(|t| t.to_string()).unwrap_or_default(),
            read_seq: member.read_seq,
        }
    }
}

impl ChatItemView {
    pub fn of(chat: &Chat, me: UserId, open_rid: Option<&str>) -> Self {
        let peer = match chat.kind {
            RoomKind::Direct => chat.members.iter().find(|m| m.id != me),
            RoomKind::Group => None,
        };
        ChatItemView {
            room_id: chat.room_id.clone(),
            title: chat.title.clone(),
            is_group: chat.kind == RoomKind::Group,
            peer_id: peer.map(|m| m.id.to_string()).unwrap_or_default(),
            online: peer.is_some_and(|m| m.online),
            last_message: chat.last_message.as_ref().map(|m| MessageView::of(m, me)),
            unread: chat.unread,
            active: open_rid == Some(chat.room_id.as_str()),
            notify: chat.notify.as_str(),
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
