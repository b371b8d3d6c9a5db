//! The nouns of the messenger, shaped as the wire contract shows them.
//!
//! Internal ids are integers (cheap to index); the contract wants strings, so
//! they are serialised as strings here, once, for the JSON API and Socket.IO alike.
//! Each type also describes its wire shape for the OpenAPI document
//! (`ToSchema`): an id kept as an integer is a `String` there, and a field that
//! is always sent, `null` or not, is `required`.

use serde::{Serialize, Serializer};
use utoipa::ToSchema;

/// A user id: an integer in the database, a string on the wire.
pub type UserId = i64;

fn as_string<S: Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// A registered person (or bot), as anyone may see them (never the password hash).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct User {
    /// Decimal digits.
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String)]
    pub id: UserId,
    pub username: String,
    pub email: String,
    /// What the credentials of this request allow: `None` for a person's
    /// session (everything), a bot token's scopes otherwise (see
    /// `domain::bots`). Never shown.
    #[serde(skip)]
    pub grant: Option<Grant>,
}

/// What a bot token allows: reading, sending, and in which rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub read: bool,
    pub send: bool,
    /// The rooms it is limited to; `None`: every room the bot is in.
    pub rooms: Option<Vec<String>>,
}

impl Grant {
    /// Its scopes as stored and shown: `read`, `send`, or `read,send`.
    pub fn scopes(&self) -> Vec<&'static str> {
        let mut scopes = Vec::new();
        if self.read {
            scopes.push("read");
        }
        if self.send {
            scopes.push("send");
        }
        scopes
    }

    /// Reads what [`Grant::scopes`] (joined by commas) and a JSON list of rooms stored.
    pub fn from_stored(scopes: &str, rooms: Option<&str>) -> Grant {
        Grant {
            read: scopes.split(',').any(|s| s == "read"),
            send: scopes.split(',').any(|s| s == "send"),
            rooms: rooms.map(|r| serde_json::from_str(r).unwrap_or_default()),
        }
    }
}

fn as_opt_string<S: Serializer>(id: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

fn as_strings<S: Serializer>(ids: &[i64], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(|id| id.to_string()))
}

/// A room member as listed in a chat: no email, so members do not leak addresses.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct Member {
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String)]
    pub id: UserId,
    pub username: String,
    /// The name they chose to be shown (the username when `None`; absent
    /// from the JSON then, so the contract's member shape is unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Where their avatar is served ([`avatar_url`]), if they have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    /// Their read marker in this room (for "seen").
    pub read_seq: i64,
    /// Whether they have a socket on any node (filled in by the domain).
    pub online: bool,
    /// When their last socket closed; `None` if never seen or online now.
    #[schema(required = true)]
    pub last_seen: Option<f64>,
    /// A bot (see `domain::bots`): shown as `bot: true`, absent for people.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bot: bool,
}

/// Who wrote a message: a person, or the server recording a change of the room.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Text,
    System,
}

impl MessageKind {
    /// Its text in the `kind` column (anything but `system` reads as text).
    pub fn parse(text: &str) -> Self {
        if text == "system" {
            MessageKind::System
        } else {
            MessageKind::Text
        }
    }
}

/// The message a reply quotes, as it is now (a reference, not a copy).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, ToSchema)]
pub struct Quote {
    pub seq: i64,
    pub sender_username: String,
    pub message: String,
    pub deleted: bool,
}

impl Quote {
    /// How much of the quoted message a reply carries (docs/protocol.md).
    pub const CHARS: usize = 200;

    /// The start of a message, as a reply quotes it.
    pub fn excerpt(message: &str) -> String {
        message.chars().take(Quote::CHARS).collect()
    }
}

/// One emoji on a message and who put it there.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct Reaction {
    pub emoji: String,
    pub count: usize,
    #[serde(serialize_with = "as_strings")]
    #[schema(value_type = Vec<String>)]
    pub user_ids: Vec<UserId>,
}

/// Groups `(emoji, user)` pairs, given in the order they were made, by emoji.
pub fn reactions_of(pairs: Vec<(String, UserId)>) -> Vec<Reaction> {
    let mut reactions: Vec<Reaction> = Vec::new();
    for (emoji, user) in pairs {
        match reactions.iter_mut().find(|r| r.emoji == emoji) {
            Some(r) => r.user_ids.push(user),
            None => reactions.push(Reaction {
                emoji,
                count: 0,
                user_ids: vec![user],
            }),
        }
    }
    for r in &mut reactions {
        r.count = r.user_ids.len();
    }
    reactions
}

/// A file sent with a message, as every reader of the message sees it.
/// Its bytes are fetched from `url` (and an image's thumbnail from
/// `thumbnail_url`), by members of the room only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// 128 random bits: the unguessable part of its links.
    pub id: String,
    /// The uploader's file name, cleaned of paths and control characters.
    pub name: String,
    /// From the file's bytes, never from the client's word.
    pub content_type: String,
    pub size: u64,
    /// An image's displayed size (after its orientation); `None` for other files.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub has_thumbnail: bool,
}

impl Attachment {
    /// Where its bytes are served (docs/protocol.md, "Attachments").
    pub fn url(&self) -> String {
        format!("/api/v1/attachments/{}", self.id)
    }

    /// How a message row keeps it: a JSON array, its fields in order (the
    /// links are derived, so they are not kept).
    pub fn to_stored(&self) -> serde_json::Value {
        serde_json::json!([
            self.id,
            self.name,
            self.content_type,
            self.size,
            self.width,
            self.height,
            self.has_thumbnail
        ])
    }

    /// Reads what [`Attachment::to_stored`] kept; `None` for anything else.
    pub fn from_stored(value: &serde_json::Value) -> Option<Attachment> {
        let dimension = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        Some(Attachment {
            id: value[0].as_str()?.to_owned(),
            name: value[1].as_str()?.to_owned(),
            content_type: value[2].as_str()?.to_owned(),
            size: value[3].as_u64()?,
            width: dimension(&value[4]),
            height: dimension(&value[5]),
            has_thumbnail: value[6].as_bool().unwrap_or(false),
        })
    }
}

/// A message's attachments as its row keeps them (`None` when it has none).
pub fn stored_attachments(attachments: &[Attachment]) -> Option<String> {
    if attachments.is_empty() {
        return None;
    }
    let list: Vec<serde_json::Value> = attachments.iter().map(Attachment::to_stored).collect();
    Some(serde_json::Value::Array(list).to_string())
}

/// Reads a message row's attachments column (NULL: none).
pub fn attachments_of_stored(text: Option<&str>) -> Vec<Attachment> {
    let Some(serde_json::Value::Array(list)) = text.and_then(|t| serde_json::from_str(t).ok())
    else {
        return Vec::new();
    };
    list.iter().filter_map(Attachment::from_stored).collect()
}

/// An [`Attachment`] as the wire shows it: its links instead of whether it
/// has a thumbnail. Serialising through it keeps the JSON and the schema of
/// the OpenAPI document one declaration.
#[derive(Serialize, ToSchema)]
#[schema(as = Attachment)]
struct AttachmentWire<'a> {
    /// 128 random bits (base64url).
    id: &'a str,
    name: &'a str,
    /// Read from the file's bytes.
    content_type: &'a str,
    /// Bytes, as kept.
    size: u64,
    /// A picture's displayed size; `null` for other files.
    #[schema(required = true)]
    width: Option<u32>,
    #[schema(required = true)]
    height: Option<u32>,
    /// The file: `/api/v1/attachments/{id}`.
    url: String,
    /// A picture's thumbnail; `null` otherwise.
    #[schema(required = true)]
    thumbnail_url: Option<String>,
}

impl Serialize for Attachment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let url = self.url();
        let thumbnail_url = self.has_thumbnail.then(|| format!("{url}/thumbnail"));
        AttachmentWire {
            id: &self.id,
            name: &self.name,
            content_type: &self.content_type,
            size: self.size,
            width: self.width,
            height: self.height,
            url,
            thumbnail_url,
        }
        .serialize(s)
    }
}

impl utoipa::PartialSchema for Attachment {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <AttachmentWire as utoipa::PartialSchema>::schema()
    }
}

impl ToSchema for Attachment {
    fn name() -> std::borrow::Cow<'static, str> {
        <AttachmentWire as ToSchema>::name()
    }
}

/// What stands for a message where only its text goes (a chat list's
/// preview, a notification): the text, or for a message of files alone
/// "📎 name" or "📎 N files" (the same as static/js/format.js says).
pub fn text_or_files(text: &str, attachments: &[Attachment]) -> String {
    match attachments {
        _ if !text.is_empty() => text.to_owned(),
        [] => String::new(),
        [one] => format!("📎 {}", one.name),
        many => format!("📎 {} files", many.len()),
    }
}

/// One stored message; `seq` counts from 1 in its room with no gaps.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct Message {
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String)]
    pub id: i64,
    pub rid: String,
    pub seq: i64,
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String)]
    pub sender_id: UserId,
    pub sender_username: String,
    pub message: String,
    /// Unix seconds with millisecond precision, decided by the server.
    pub timestamp: f64,
    #[schema(required = true)]
    pub client_id: Option<String>,
    pub kind: MessageKind,
    #[schema(required = true)]
    pub reply_to: Option<Quote>,
    pub reactions: Vec<Reaction>,
    /// Files sent with it (the text is then a caption, and may be empty).
    pub attachments: Vec<Attachment>,
    #[schema(required = true)]
    pub edited_at: Option<f64>,
    pub deleted: bool,
    /// The room revision of its last change; 0 if never changed.
    pub rev: i64,
}

/// Converts a millisecond clock reading to the contract's timestamp.
pub fn timestamp_of_millis(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

/// The kind of a room: one pair of people, or a titled group with an owner.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    Direct,
    Group,
}

impl RoomKind {
    pub fn parse(text: &str) -> Self {
        if text == "group" {
            RoomKind::Group
        } else {
            RoomKind::Direct
        }
    }
}

/// How much of a chat reaches a member who has no tab of Natter open (Web
/// Push): every message, those that mention them, or nothing (muted).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyLevel {
    All,
    Mentions,
    /// Muted; `none` on the wire.
    None,
}

impl NotifyLevel {
    /// Where a member who never chose stands: a direct room is one person
    /// talking to you, a group may be busy.
    pub fn default_for(kind: RoomKind) -> Self {
        match kind {
            RoomKind::Direct => NotifyLevel::All,
            RoomKind::Group => NotifyLevel::Mentions,
        }
    }

    /// Its text, as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyLevel::All => "all",
            NotifyLevel::Mentions => "mentions",
            NotifyLevel::None => "none",
        }
    }

    /// The level a member has: the one they chose (as stored), or the
    /// default of the room's kind.
    pub fn effective(chosen: Option<&str>, kind: RoomKind) -> Self {
        match chosen {
            Some("all") => NotifyLevel::All,
            Some("mentions") => NotifyLevel::Mentions,
            Some("none") => NotifyLevel::None,
            _ => NotifyLevel::default_for(kind),
        }
    }
}

/// A room as one member sees it in their chat list.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct Chat {
    pub room_id: String,
    pub kind: RoomKind,
    /// A group's own title; for a direct room, the other person's username.
    pub title: String,
    /// A group's owner; `null` for a direct room.
    #[serde(serialize_with = "as_opt_string")]
    #[schema(value_type = Option<String>, required = true)]
    pub owner_id: Option<UserId>,
    pub members: Vec<Member>,
    #[schema(required = true)]
    pub last_message: Option<Message>,
    /// Messages from others after the member's read marker.
    pub unread: i64,
    /// The member's own read marker.
    pub last_read_seq: i64,
    /// Of the unread messages (the first [`Chat::MENTIONS_SCANNED`]), those
    /// that mention the member (filled in by the domain).
    pub mentions: i64,
    /// The member's notification level here (always the effective one).
    pub notify: NotifyLevel,
    /// When the room last changed (a message, a group change): what the
    /// list is ordered by, newest first. Unix ms inside; a timestamp on the wire.
    #[serde(serialize_with = "millis_as_timestamp")]
    #[schema(value_type = f64)]
    pub last_activity: i64,
}

fn millis_as_timestamp<S: Serializer>(millis: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(timestamp_of_millis(*millis))
}

impl Chat {
    /// How many unread messages are looked at for mentions: a badge, not a census.
    pub const MENTIONS_SCANNED: i64 = 100;
}

/// A direct room is titled after the other person (or oneself, if alone).
pub fn direct_title(members: &[Member], me: UserId) -> String {
    members
        .iter()
        .find(|m| m.id != me)
        .or_else(|| members.first())
        .map(|m| m.username.clone())
        .unwrap_or_default()
}

/// What a user may do with a room, decided in one store lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomAccess {
    NoSuchRoom,
    NotMember,
    Member(RoomState),
}

/// A room as its member's request finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomState {
    pub kind: RoomKind,
    pub owner_id: Option<UserId>,
    pub last_seq: i64,
    /// The room's revision: bumped by every edit, deletion and reaction.
    pub last_rev: i64,
}

/// A window of a room's history. `before`/`after` are exclusive `seq` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: i64,
}

/// One of a user's sessions (a login on some device), as they list it.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
#[schema(as = Session)]
pub struct SessionInfo {
    /// What the session is revoked by: neither its token nor the token's hash.
    pub id: String,
    pub created_at: f64,
    /// Recorded at most every few minutes (see docs/security.md).
    pub last_used_at: f64,
    /// When it ends unless used before then (never past its absolute lifetime).
    pub expires_at: f64,
    /// Whether this is the session the request came with.
    pub current: bool,
}

/// A browser's Web Push subscription, as its owner lists it (never its keys).
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct PushSubscription {
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String)]
    pub id: i64,
    pub endpoint: String,
    pub created_at: f64,
}

/// An invitation to register (and to join a group, when it names one), as
/// its creator and admins list it. The code is the secret: whoever has the
/// link may use it, `max_uses` times, until it expires or is revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub code: String,
    pub created_by: UserId,
    /// The group its users join.
    pub room_id: Option<String>,
    pub max_uses: i64,
    pub uses: i64,
    /// Unix ms.
    pub expires_at: i64,
    pub revoked: bool,
    /// Unix ms.
    pub created_at: i64,
}

impl Invite {
    /// Where a person opens it: the sign-up page, with the code.
    pub fn url(&self) -> String {
        format!("/register?invite={}", self.code)
    }
}

/// An [`Invite`] as the wire shows it (see [`AttachmentWire`] for why a
/// separate type): its link, the creator's id as a string, times as timestamps.
#[derive(Serialize, ToSchema)]
#[schema(as = Invite)]
struct InviteWire<'a> {
    /// The secret: 128 random bits (base64url).
    code: &'a str,
    /// `/register?invite=CODE`: the link to hand out.
    url: String,
    created_by: String,
    /// The group its users join; `null` for none.
    #[schema(required = true)]
    room_id: Option<&'a str>,
    max_uses: i64,
    uses: i64,
    expires_at: f64,
    revoked: bool,
    created_at: f64,
}

impl Serialize for Invite {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        InviteWire {
            code: &self.code,
            url: self.url(),
            created_by: self.created_by.to_string(),
            room_id: self.room_id.as_deref(),
            max_uses: self.max_uses,
            uses: self.uses,
            expires_at: timestamp_of_millis(self.expires_at),
            revoked: self.revoked,
            created_at: timestamp_of_millis(self.created_at),
        }
        .serialize(s)
    }
}

impl utoipa::PartialSchema for Invite {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <InviteWire as utoipa::PartialSchema>::schema()
    }
}

impl ToSchema for Invite {
    fn name() -> std::borrow::Cow<'static, str> {
        <InviteWire as ToSchema>::name()
    }
}

/// An account as an admin lists it (`GET /api/v1/admin/users`).
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct Account {
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String)]
    pub id: UserId,
    pub username: String,
    #[schema(required = true)]
    pub display_name: Option<String>,
    pub email: String,
    pub admin: bool,
    pub disabled: bool,
    /// A deleted account keeps its (wiped) row: it wrote what stays in rooms.
    pub deleted: bool,
    /// Unix seconds.
    pub created_at: f64,
    /// When their last socket closed (Unix seconds); `None` if never.
    #[schema(required = true)]
    pub last_seen: Option<f64>,
}

/// What the server holds, counted (`GET /api/v1/admin/stats`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default, ToSchema)]
pub struct ServerCounts {
    /// Accounts that are not deleted (disabled ones included).
    pub users: i64,
    pub disabled_users: i64,
    pub direct_rooms: i64,
    pub groups: i64,
    pub messages: i64,
    pub sessions: i64,
    pub attachments: i64,
}

/// The parts of a profile its owner sets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    pub display_name: Option<String>,
    /// The avatar's file key (see `crate::files`).
    pub avatar_key: Option<String>,
    /// Whether people who share no room may find them by name.
    pub in_directory: bool,
}

/// Someone as a search of people, or my list of blocked people, shows them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct Person {
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String)]
    pub id: UserId,
    pub username: String,
    #[schema(required = true)]
    pub display_name: Option<String>,
    /// Where their avatar is served, if they have one.
    #[schema(required = true)]
    pub avatar: Option<String>,
}

/// Where a user's avatar is served; `key` (its file key) makes the address
/// change with the picture, so it can be cached for good.
pub fn avatar_url(user: UserId, key: Option<&str>) -> Option<String> {
    key.map(|key| {
        format!(
            "/api/v1/users/{user}/avatar?v={}",
            &key[..key.len().min(12)]
        )
    })
}

/// A group add waiting for its person's answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct GroupInvitation {
    pub room_id: String,
    pub title: String,
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String)]
    pub invited_by: UserId,
    pub invited_by_username: String,
    /// Unix seconds.
    #[serde(serialize_with = "seconds")]
    #[schema(value_type = f64)]
    pub created_at: i64,
}

fn seconds<S: Serializer>(millis: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(timestamp_of_millis(*millis))
}

/// A bot, as its owner lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bot {
    pub user: User,
    pub owner_id: UserId,
    /// Unix ms.
    pub created_at: i64,
}

impl Serialize for Bot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut out = s.serialize_struct("Bot", 6)?;
        out.serialize_field("id", &self.user.id.to_string())?;
        out.serialize_field("username", &self.user.username)?;
        out.serialize_field("email", &self.user.email)?;
        out.serialize_field("bot", &true)?;
        out.serialize_field("owner_id", &self.owner_id.to_string())?;
        out.serialize_field("created_at", &timestamp_of_millis(self.created_at))?;
        out.end()
    }
}

/// A bot's token as its owner lists it: never the secret nor its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotToken {
    /// What it is revoked by.
    pub id: String,
    pub bot_id: UserId,
    pub grant: Grant,
    /// Unix ms.
    pub created_at: i64,
}

impl Serialize for BotToken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut out = s.serialize_struct("BotToken", 5)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("bot_id", &self.bot_id.to_string())?;
        out.serialize_field("scopes", &self.grant.scopes())?;
        out.serialize_field("rooms", &self.grant.rooms)?;
        out.serialize_field("created_at", &timestamp_of_millis(self.created_at))?;
        out.end()
    }
}

/// An incoming webhook: its secret URL posts into `room_id` as `bot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingWebhook {
    pub id: String,
    pub room_id: String,
    pub created_by: UserId,
    /// The user its messages are sent as (a bot of `created_by`).
    pub bot: User,
    /// Unix ms.
    pub created_at: i64,
}

impl Serialize for IncomingWebhook {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut out = s.serialize_struct("IncomingWebhook", 6)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("name", &self.bot.username)?;
        out.serialize_field("room_id", &self.room_id)?;
        out.serialize_field("created_by", &self.created_by.to_string())?;
        out.serialize_field("bot_id", &self.bot.id.to_string())?;
        out.serialize_field("created_at", &timestamp_of_millis(self.created_at))?;
        out.end()
    }
}

/// What an outgoing webhook is told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookEvents {
    /// Every message from someone else in its rooms.
    pub message: bool,
    /// The messages that mention its owner.
    pub mention: bool,
}

impl WebhookEvents {
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.message {
            names.push("message");
        }
        if self.mention {
            names.push("mention");
        }
        names
    }

    /// Reads what [`WebhookEvents::names`] (joined by commas) stored.
    pub fn from_stored(text: &str) -> Self {
        WebhookEvents {
            message: text.split(',').any(|s| s == "message"),
            mention: text.split(',').any(|s| s == "mention"),
        }
    }
}

/// An outgoing webhook, as its owner lists it (never its secret, which is
/// shown once, when it is made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingWebhook {
    pub id: String,
    pub owner_id: UserId,
    pub url: String,
    /// The HMAC key its deliveries are signed with.
    pub secret: String,
    pub events: WebhookEvents,
    /// The rooms it is limited to; `None`: every room of its owner.
    pub rooms: Option<Vec<String>>,
    /// Unix ms.
    pub created_at: i64,
}

impl Serialize for OutgoingWebhook {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut out = s.serialize_struct("OutgoingWebhook", 6)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("owner_id", &self.owner_id.to_string())?;
        out.serialize_field("url", &self.url)?;
        out.serialize_field("events", &self.events.names())?;
        out.serialize_field("rooms", &self.rooms)?;
        out.serialize_field("created_at", &timestamp_of_millis(self.created_at))?;
        out.end()
    }
}
