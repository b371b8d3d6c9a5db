//! The Socket.IO side: authentication at connect, the contract's events, and
//! the fan-out helpers the HTTP side uses (a message posted over the JSON API
//! is broadcast exactly like one sent over a socket).
//!
//! Socket.IO rooms: at connect a socket is subscribed to every chat room its
//! user belongs to (under the room id), so the chat list stays live for rooms
//! that are not open; `join-chat` remains how a client opens a room. Every
//! socket also joins `user:<id>` (to subscribe it to rooms created later) and
//! `session:<hash>` (so that logging out drops that session's sockets).

mod auth;
mod events;

use std::sync::Arc;

use socketioxide::SocketIo;
use socketioxide::handler::ConnectHandler as _;

use crate::domain::model::{Chat, Message, UserId};
use crate::domain::{Natter, Session};

/// Registers the default namespace with its auth middleware and event handlers.
pub fn attach(io: &SocketIo) {
    io.ns("/", events::on_connect.with(auth::authenticate));
}

/// The state every socket handler may extract.
pub type Core = Arc<Natter>;

fn user_room(user: UserId) -> String {
    format!("user:{user}")
}

fn session_room(session: &Session) -> String {
    let hex: String = session
        .token_hash
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("session:{hex}")
}

/// Sends a newly stored message to every socket in its room.
pub async fn publish_message(io: &SocketIo, message: &Message) {
    if let Err(e) = io.to(message.rid.clone()).emit("message", message).await {
        tracing::warn!(error = %e, rid = %message.rid, "broadcast failed");
    }
}

/// Subscribes the members' connected sockets to a room that was just created.
pub async fn room_created(io: &SocketIo, chat: &Chat) {
    for member in &chat.members {
        if let Err(e) = io.to(user_room(member.id)).join(chat.room_id.clone()).await {
            tracing::warn!(error = %e, "could not subscribe sockets to a new room");
        }
    }
}

/// Disconnects every socket opened with this session (after a logout).
pub async fn end_session(io: &SocketIo, session: &Session) {
    if let Err(e) = io.to(session_room(session)).disconnect().await {
        tracing::warn!(error = %e, "could not disconnect a revoked session's sockets");
    }
}
