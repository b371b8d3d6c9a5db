//! What the domain tells connected clients, and how it asks who is connected.
//!
//! The realtime layer implements [`Notifier`] over Socket.IO (and so, through
//! the Redis adapter, across nodes). It is built after the domain, so the
//! domain holds it in a [`Notify`] that stays silent until it is set (the CLI
//! runs the domain with no clients at all).

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde::Serialize;

use super::model::{Chat, Message, UserId};

/// A user came online or went offline (sent to every room they belong to).
#[derive(Debug, Clone, Serialize)]
pub struct Presence {
    pub user_id: String,
    pub online: bool,
    pub last_seen: Option<f64>,
}

/// Someone is typing in a room, or stopped.
#[derive(Debug, Clone, Serialize)]
pub struct Typing {
    pub rid: String,
    pub user_id: String,
    pub username: String,
    pub typing: bool,
}

/// A member's read marker moved; `unread` is what that member has left.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub rid: String,
    pub user_id: String,
    pub read_seq: i64,
    pub unread: i64,
}

#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// A new message, to every socket in its room but `except` (the sending
    /// socket, which learns it from its ack).
    async fn message_stored(&self, message: &Message, except: Option<&str>);
    /// An edited, deleted or reacted-to message, to its room but `except`.
    async fn message_updated(&self, message: &Message, except: Option<&str>);
    /// Subscribes the user's sockets to the chat's room and sends them the
    /// chat as that user sees it (created, renamed, members changed).
    async fn chat_changed(&self, user: UserId, chat: &Chat);
    /// Takes the user's sockets out of the room, silently (see
    /// `Natter::change_group` for why a removal does it twice).
    async fn unsubscribe(&self, user: UserId, rid: &str);
    /// Takes the user's sockets out of the room and tells them it is gone.
    async fn chat_removed(&self, user: UserId, rid: &str);
    async fn presence(&self, rooms: Vec<String>, presence: &Presence);
    async fn typing(&self, typing: &Typing, except: Option<&str>);
    async fn receipt(&self, receipt: &Receipt);
    /// Which of `users` have a socket on some node.
    async fn online(&self, users: &[UserId]) -> HashSet<UserId>;
    /// Disconnects THIS node's sockets of the sessions with these token
    /// hashes (each node's session watch closes its own).
    async fn sessions_ended(&self, token_hashes: &[Vec<u8>]);
    /// Tells every socket in these rooms to `sync` them: a message may have
    /// been stored without being announced (a send that failed while the
    /// database was unreachable, or one whose resend found it stored).
    async fn resync(&self, rooms: Vec<String>, reason: Resync);
}

/// Why a room's sockets are told to `resync` (the event's `reason`).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resync {
    /// Sends failed while the database was unreachable: some may be stored.
    Database,
    /// A resend found its message stored: its first try may not have been announced.
    Resend,
}

/// The notifier, once set; until then nothing is sent and nobody is online.
#[derive(Clone, Default)]
pub struct Notify(Arc<OnceLock<Arc<dyn Notifier>>>);

impl Notify {
    /// Sets the notifier (once; later calls are ignored).
    pub fn set(&self, notifier: Arc<dyn Notifier>) {
        let _ = self.0.set(notifier);
    }

    pub fn get(&self) -> &dyn Notifier {
        match self.0.get() {
            Some(notifier) => notifier.as_ref(),
            None => &Silent,
        }
    }
}

/// Tells nobody anything.
struct Silent;

#[async_trait]
impl Notifier for Silent {
    async fn message_stored(&self, _: &Message, _: Option<&str>) {}
    async fn message_updated(&self, _: &Message, _: Option<&str>) {}
    async fn chat_changed(&self, _: UserId, _: &Chat) {}
    async fn unsubscribe(&self, _: UserId, _: &str) {}
    async fn chat_removed(&self, _: UserId, _: &str) {}
    async fn presence(&self, _: Vec<String>, _: &Presence) {}
    async fn typing(&self, _: &Typing, _: Option<&str>) {}
    async fn receipt(&self, _: &Receipt) {}
    async fn online(&self, _: &[UserId]) -> HashSet<UserId> {
        HashSet::new()
    }
    async fn sessions_ended(&self, _: &[Vec<u8>]) {}
    async fn resync(&self, _: Vec<String>, _: Resync) {}
}
