//! The Socket.IO side: authentication at connect, the contract's events, and
//! the fan-out helpers the HTTP side uses (a message posted over the JSON API
//! is broadcast exactly like one sent over a socket).
//!
//! Socket.IO rooms: each chat room is joined under its room id, and every
//! socket also joins `session:<hash>` so that logging out can drop all the
//! sockets of that session at once, wherever they are.

mod auth;
mod events;

use std::sync::Arc;

use socketioxide::SocketIo;
use socketioxide::handler::ConnectHandler as _;

use crate::domain::model::Message;
use crate::domain::{Natter, Session};

/// Registers the default namespace with its auth middleware and event handlers.
pub fn attach(io: &SocketIo) {
    io.ns("/", events::on_connect.with(auth::authenticate));
}

/// The state every socket handler may extract.
pub type Core = Arc<Natter>;

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

/// Disconnects every socket opened with this session (after a logout).
pub async fn end_session(io: &SocketIo, session: &Session) {
    if let Err(e) = io.to(session_room(session)).disconnect().await {
        tracing::warn!(error = %e, "could not disconnect a revoked session's sockets");
    }
}
