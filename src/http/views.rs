//! What the page templates see. Askama escapes every `{{ }}` as HTML, so user
//! text (usernames, messages) can never become markup.

use askama::Template;

use crate::domain::admin::ServerStats;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::domain::model::{
    Attachment, Chat, GroupInvitation, Invite, Member, Message, MessageKind, Person, Quote,
    Reaction, RoomKind, SessionInfo, User, UserId,
};

#[derive(Template, Default)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub flash: Option<String>,
    pub error: Option<String>,
    pub email: String,
    /// Whether the server mails password reset links (the page links to `/forgot`).
    pub can_reset: bool,
}

#[derive(Template, Default)]
#[template(path = "forgot.html")]
pub struct ForgotPage {
    pub email: String,
    /// What happens next, once asked.
    pub notice: Option<String>,
    pub error: Option<String>,
}

#[derive(Template, Default)]
#[template(path = "reset.html")]
pub struct ResetPage {
    pub token: String,
    /// Whether the link can still be used (else the page says so).
    pub usable: bool,
    /// Why the new password was refused.
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub username: String,
    pub email: String,
    pub display_name: String,
    /// Where my avatar is served, if I have one.
    pub avatar: Option<String>,
    pub in_directory: bool,
    pub admin: bool,
    /// What the last change did (after its redirect).
    pub notice: Option<String>,
    /// Why the last form was refused, and which (`password`, `profile`, `delete`).
    pub error: Option<(&'static str, String)>,
    pub sessions: Vec<SessionView>,
    pub blocked: Vec<Person>,
    /// Whether deleting the account deletes its messages (else they stay).
    pub messages_removed: bool,
}

impl AccountPage {
    /// The error of form `form`, if it was the one refused.
    pub fn error_of(&self, form: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(which, _)| *which == form)
            .map(|(_, why)| why.as_str())
    }
}

/// One of my sessions on the account page.
pub struct SessionView {
    pub id: String,
    pub current: bool,
    /// UTC, to the minute.
    pub created: String,
    pub last_used: String,
}

impl SessionView {
    pub fn of(session: &SessionInfo) -> Self {
        SessionView {
            id: session.id.clone(),
            current: session.current,
            created: utc_minute(session.created_at),
            last_used: utc_minute(session.last_used_at),
        }
    }
}

#[derive(Template)]
#[template(path = "admin.html")]
pub struct AdminPage {
    pub stats: ServerStats,
    /// The admin looking (who cannot disable themselves).
    pub me: UserId,
    /// The search of accounts, as typed.
    pub query: String,
    pub accounts: crate::domain::admin::AccountPage,
    pub invites: Vec<InviteView>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

impl AdminPage {
    /// Whether `mode` is the registration mode now (the form's selection).
    pub fn mode_is(&self, mode: &str) -> bool {
        serde_json::to_value(self.stats.who_may_join.mode).is_ok_and(|m| m == mode)
    }

    /// The next page's link, keeping the search.
    pub fn next_page(&self) -> Option<String> {
        self.accounts.next_after.as_ref().map(|after| {
            let q: String = url::form_urlencoded::byte_serialize(self.query.as_bytes()).collect();
            format!("/admin?q={q}&after={after}")
        })
    }
}

/// An invitation on the admin page.
pub struct InviteView {
    pub code: String,
    pub url: String,
    pub uses: String,
    /// UTC, to the minute.
    pub expires: String,
    pub live: bool,
}

impl InviteView {
    pub fn of(invite: &Invite) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        InviteView {
            code: invite.code.clone(),
            url: invite.url(),
            uses: format!("{} of {}", invite.uses, invite.max_uses),
            expires: utc_minute(invite.expires_at as f64 / 1000.0),
            live: !invite.revoked && invite.uses < invite.max_uses && invite.expires_at > now,
        }
    }
}

/// A Unix time in seconds as UTC, to the minute.
fn utc_minute(ts: f64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts as i64)
        .ok()
        .and_then(|t| {
            let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
            t.format(&format).ok()
        })
        .unwrap_or_default()
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
    /// The invitation the person came with (kept in the form).
    pub invite: String,
    /// The server takes accounts by invitation only (`invite`) or not at
    /// all (`closed`); empty when open.
    pub mode: &'static str,
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
    /// The largest attachment the server takes (0: none), checked before uploading.
    pub max_upload_bytes: u64,
    /// Invitations to groups waiting for my answer.
    pub invitations: Vec<GroupInvitation>,
    /// The ids of the people I block, comma-separated: the page hides their
    /// messages in groups.
    pub blocked_ids: String,
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
    /// What the list shows: a group's title, a direct room's other person
    /// by their display name (else the room's title, their username).
    pub title: String,
    /// A direct room's other person's avatar, if they have one.
    pub avatar: String,
    pub is_group: bool,
    /// A direct room's other person (empty for a group), whose presence the item shows.
    pub peer_id: String,
    pub online: bool,
    pub last_message: Option<MessageView>,
    pub unread: i64,
    /// Unread messages that mention me.
    pub mentions: i64,
    pub active: bool,
    /// The member's notification level in this chat.
    pub notify: &'static str,
}

pub struct RoomView {
    pub room_id: String,
    /// As [`shown_title`] names it.
    pub title: String,
    /// A direct room's other person's avatar, if they have one.
    pub avatar: String,
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
    /// A direct room's other person (empty in a group): whom "Block" blocks.
    pub peer_id: String,
    /// Whether I block the other person of this direct room.
    pub peer_blocked: bool,
}

pub struct MemberView {
    pub id: String,
    pub username: String,
    /// The display name, or the username.
    pub shown: String,
    pub online: bool,
    /// Unix seconds, or empty if never seen.
    pub last_seen: String,
    pub read_seq: i64,
    /// A bot (docs/protocol.md, "Bots and webhooks"): marked as one.
    pub bot: bool,
}

pub struct MessageView {
    pub seq: i64,
    pub rev: i64,
    pub sender_id: UserId,
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
    pub attachments: Vec<AttachmentView>,
    /// The message a search hit opened the room at.
    pub highlight: bool,
}

impl MessageView {
    /// A chat list's preview of it: its text, or what its files are.
    pub fn preview(&self) -> String {
        let files: Vec<Attachment> = self.attachments.iter().map(|a| a.0.clone()).collect();
        crate::domain::model::text_or_files(&self.message, &files)
    }
}

/// An attachment as templates/attachments.html shows it: the rules of
/// static/js/format.js (docs/rendering.md, "Attachments"), for the history
/// the server renders.
pub struct AttachmentView(pub Attachment);

/// The box a picture is shown in, at most this many CSS pixels a side.
const IMAGE_BOX: f64 = 320.0;

impl std::ops::Deref for AttachmentView {
    type Target = Attachment;

    fn deref(&self) -> &Attachment {
        &self.0
    }
}

impl AttachmentView {
    /// A picture browsers draw, whose size is known.
    pub fn inline(&self) -> bool {
        crate::domain::attachments::shown_inline(&self.content_type) && self.box_size().is_some()
    }

    /// What the picture shows: its thumbnail, or the file when it has none.
    pub fn src(&self) -> String {
        if self.has_thumbnail {
            format!("{}/thumbnail", self.url())
        } else {
            self.url()
        }
    }

    fn box_size(&self) -> Option<(u32, u32)> {
        let (w, h) = (f64::from(self.width?), f64::from(self.height?));
        if w <= 0.0 || h <= 0.0 {
            return None;
        }
        let scale = (IMAGE_BOX / w).min(IMAGE_BOX / h).min(1.0);
        let side = |n: f64| ((n * scale).round() as u32).max(1);
        Some((side(w), side(h)))
    }

    pub fn box_width(&self) -> u32 {
        self.box_size().map_or(0, |b| b.0)
    }

    pub fn box_height(&self) -> u32 {
        self.box_size().map_or(0, |b| b.1)
    }

    /// The size for a person: "512 B", "1.5 KB", "25 MB".
    pub fn size_text(&self) -> String {
        const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
        if self.size < 1024 {
            return format!("{} B", self.size);
        }
        let (mut value, mut unit) = (self.size as f64 / 1024.0, 0);
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        let shown = if value < 10.0 {
            (value * 10.0).round() / 10.0
        } else {
            value.round()
        };
        if shown >= 1024.0 && unit < UNITS.len() - 1 {
            return format!("1 {}", UNITS[unit + 1]);
        }
        format!("{shown} {}", UNITS[unit])
    }

    /// The name's extension for the file's icon ("PDF"): up to 4 letters or
    /// digits after the last dot, uppercased; empty when none.
    pub fn ext(&self) -> String {
        match self.name.rsplit_once('.') {
            Some((_, ext))
                if (1..=4).contains(&ext.chars().count())
                    && ext.chars().all(char::is_alphanumeric) =>
            {
                ext.to_uppercase()
            }
            _ => String::new(),
        }
    }
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
            sender_id: message.sender_id,
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
            attachments: message
                .attachments
                .iter()
                .cloned()
                .map(AttachmentView)
                .collect(),
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
            shown: member
                .display_name
                .clone()
                .unwrap_or_else(|| member.username.clone()),
            online: member.online,
            last_seen: member.last_seen.map(|t| t.to_string()).unwrap_or_default(),
            read_seq: member.read_seq,
            bot: member.bot,
        }
    }
}

/// A chat as people see it named: a group by its title, a direct room by
/// the other person's display name if they chose one (the wire's `title`
/// stays their username).
pub fn shown_title(chat: &Chat, me: UserId) -> String {
    let peer = match chat.kind {
        RoomKind::Direct => chat.members.iter().find(|m| m.id != me),
        RoomKind::Group => None,
    };
    peer.and_then(|m| m.display_name.clone())
        .unwrap_or_else(|| chat.title.clone())
}

impl ChatItemView {
    pub fn of(chat: &Chat, me: UserId, open_rid: Option<&str>) -> Self {
        let peer = match chat.kind {
            RoomKind::Direct => chat.members.iter().find(|m| m.id != me),
            RoomKind::Group => None,
        };
        ChatItemView {
            room_id: chat.room_id.clone(),
            title: shown_title(chat, me),
            avatar: peer.and_then(|m| m.avatar.clone()).unwrap_or_default(),
            is_group: chat.kind == RoomKind::Group,
            peer_id: peer.map(|m| m.id.to_string()).unwrap_or_default(),
            online: peer.is_some_and(|m| m.online),
            last_message: chat.last_message.as_ref().map(|m| MessageView::of(m, me)),
            unread: chat.unread,
            mentions: chat.mentions,
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
