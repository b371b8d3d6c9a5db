//! The nouns of the messenger, shaped as the wire contract shows them.
//!
//! Internal ids are integers (cheap to index); the contract wants strings, so
//! they are serialised as strings here, once, for the JSON API and Socket.IO alike.

use serde::{Serialize, Serializer};

/// A user id: an integer in the database, a string on the wire.
pub type UserId = i64;

fn as_string<S: Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// A registered person, as anyone may see them (never the password hash).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    #[serde(serialize_with = "as_string")]
    pub id: UserId,
    pub username: String,
    pub email: String,
}

/// A room member as listed in a chat: no email, so members do not leak addresses.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Member {
    #[serde(serialize_with = "as_string")]
    pub id: UserId,
    pub username: String,
}

/// One stored message; `seq` counts from 1 in its room with no gaps.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Message {
    #[serde(serialize_with = "as_string")]
    pub id: i64,
    pub rid: String,
    pub seq: i64,
    #[serde(serialize_with = "as_string")]
    pub sender_id: UserId,
    pub sender_username: String,
    pub message: String,
    /// Unix seconds with millisecond precision, decided by the server.
    pub timestamp: f64,
    pub client_id: Option<String>,
}

/// Converts a millisecond clock reading to the contract's timestamp.
pub fn timestamp_of_millis(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

/// The kind of a room; only direct (one pair of people) rooms exist so far.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    Direct,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Direct => "direct",
        }
    }
}

/// A room as one member sees it in their chat list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Chat {
    pub room_id: String,
    pub kind: RoomKind,
    /// For a direct room: the other person's username.
    pub title: String,
    pub members: Vec<Member>,
    pub last_message: Option<Message>,
    /// Messages from others after the member's read marker.
    pub unread: i64,
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
    Member { last_seq: i64 },
}

/// A window of a room's history. `before`/`after` are exclusive `seq` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: i64,
}
