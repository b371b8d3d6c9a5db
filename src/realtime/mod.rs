//! The Socket.IO side: authentication at connect, the contract's events, and
//! the fan-out the HTTP side uses (a message posted over the JSON API is
//! broadcast exactly like one sent over a socket).
//!
//! Socket.IO rooms: at connect a socket is subscribed to every chat room its
//! user belongs to (under the room id), so the chat list stays live for rooms
//! that are not open; `join-chat` remains how a client opens a room. Every
//! socket also joins `user:<id>` (to subscribe it to rooms created later) and
//! `session:<hash>` (so that logging out drops that session's sockets).
//!
//! Everything here is generic over the socketioxide [`Adapter`]: the in-memory
//! one for a single node, the Redis one when several nodes act as one — room
//! operations and broadcasts then reach sockets on every node.

mod auth;
pub mod events;

use std::sync::Arc;

use async_trait::async_trait;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::handler::ConnectHandler as _;
use socketioxide_core::adapter::DefinedAdapter;

use crate::domain::delivery::Announcer;
use crate::domain::model::{Chat, Message, UserId};
use crate::domain::{Natter, Session};

/// The state every socket handler may extract.
pub type Core = Arc<Natter>;

/// Registers the default namespace with its auth middleware and event handlers.
/// For a remote adapter the returned value must be awaited (it subscribes to Redis).
pub fn attach<A: Adapter + DefinedAdapter>(io: &SocketIo<A>) -> A::InitRes {
    // Everything happens in the middleware, before the client hears it is connected.
    io.ns("/", (async || ()).with(auth::authenticate::<A>))
}

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

/// What the HTTP side tells connected sockets, whatever the adapter.
#[async_trait]
pub trait Fanout: Send + Sync + 'static {
    /// Subscribes the members' connected sockets to a room that was just created.
    async fn room_created(&self, chat: &Chat);
    /// Disconnects every socket opened with this session (after a logout).
    async fn end_session(&self, session: &Session);
    /// Disconnects every socket on this node (shutdown).
    async fn close(&self);
}

#[async_trait]
impl<A: Adapter> Fanout for SocketIo<A> {
    async fn room_created(&self, chat: &Chat) {
        for member in &chat.members {
            if let Err(e) = self
                .to(user_room(member.id))
                .join(chat.room_id.clone())
                .await
            {
                tracing::warn!(error = %e, "could not subscribe sockets to a new room");
            }
        }
    }

    async fn end_session(&self, session: &Session) {
        if let Err(e) = self.to(session_room(session)).disconnect().await {
            tracing::warn!(error = %e, "could not disconnect a revoked session's sockets");
        }
    }

    async fn close(&self) {
        SocketIo::close(self).await;
    }
}

/// New messages go to their room; the sending socket (always on this node, the
/// one that stored the message) is left out.
#[async_trait]
impl<A: Adapter> Announcer for SocketIo<A> {
    async fn message_stored(&self, message: &Message, except: Option<&str>) {
        let origin = except
            .and_then(|sid| sid.parse().ok())
            .and_then(|sid| self.get_socket(sid));
        let room = message.rid.clone();
        let sent = match origin {
            Some(socket) => socket.to(room).emit("message", message).await,
            None => self.to(room).emit("message", message).await,
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, rid = %message.rid, "broadcast failed");
        }
    }
}
