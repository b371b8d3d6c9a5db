//! The Socket.IO side: authentication at connect, the contract's events, and
//! the fan-out the HTTP side uses (a message posted over the JSON API is
//! broadcast exactly like one sent over a socket).
//!
//! Socket.IO rooms: at connect a socket is subscribed to every chat room its
//! user belongs to (under the room id), so the chat list stays live for rooms
//! that are not open; `join-chat` remains how a client opens a room. Every
//! socket also joins `user:<id>` (to subscribe it to rooms created later) and
//! `session:<hash>` (so that the end of that session drops its sockets: each
//! node's session watch disconnects its own, see `domain::sessions`).
//!
//! Everything here is generic over the socketioxide [`Adapter`]: the in-memory
//! one for a single node, the Redis one when several nodes act as one — room
//! operations and broadcasts then reach sockets on every node.

mod auth;
pub mod events;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::handler::ConnectHandler as _;
use socketioxide_core::adapter::DefinedAdapter;

use crate::domain::Natter;
use crate::domain::model::{Chat, Message, UserId};
use crate::domain::notify::{Notifier, Presence, Receipt, Typing};

/// The state every socket handler may extract.
pub type Core = Arc<Natter>;

/// Registers the default namespace with its auth middleware and event handlers.
/// For a remote adapter the returned value must be awaited (it subscribes to Redis).
pub fn attach<A: Adapter + DefinedAdapter>(io: &SocketIo<A>) -> A::InitRes {
    // Everything happens in the middleware, before the client hears it is
    // connected; the handler only closes the gap the middleware leaves.
    io.ns("/", auth::confirm::<A>.with(auth::authenticate::<A>))
}

/// Engine.IO keeps each connection's request head for the socket's whole life.
/// Hyper parses a head into slices of its connection read buffer (8–16 KiB),
/// so keeping the head keeps that buffer: half of what an idle socket cost
/// (measured with heaptrack, docs/benchmarks.md). Copying the URI and headers
/// of Socket.IO requests into allocations of their own — and dropping axum's
/// copy of the original URI — lets the buffer go.
pub async fn detach_request_head(mut request: Request) -> Request {
    if request.uri().path().starts_with("/socket.io") {
        request.extensions_mut().remove::<OriginalUri>();
        let copied: HeaderMap = request
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_str().as_bytes()).ok()?;
                let value = HeaderValue::from_bytes(value.as_bytes()).ok()?;
                Some((name, value))
            })
            .collect();
        *request.headers_mut() = copied;
        if let Ok(uri) = Uri::try_from(request.uri().to_string()) {
            *request.uri_mut() = uri;
        }
    }
    request
}
/// Prefixes of the per-user and per-session Socket.IO rooms; chat room ids have no `:`.
const USER_ROOM: &str = "user:";
const SESSION_ROOM: &str = "session:";
/// No socket ever joins it.
const PROBE_ROOM: &str = "probe:";

fn user_room(user: UserId) -> String {
    format!("{USER_ROOM}{user}")
}

fn session_room(token_hash: &[u8]) -> String {
    let hex: String = token_hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("{SESSION_ROOM}{hex}")
}

/// What is connected to this node right now (for the metrics).
#[derive(Debug, Clone, Copy, Default)]
pub struct Census {
    pub sockets: usize,
    /// Distinct users with a socket here.
    pub users: usize,
    /// Chat rooms with a socket here.
    pub rooms: usize,
}

/// What the HTTP side tells connected sockets, whatever the adapter.
#[async_trait]
pub trait Fanout: Send + Sync + 'static {
    /// Counts this node's sockets, users and rooms (never asks other nodes).
    async fn census(&self) -> Census;
    /// Publishes an event to a room nobody is in: with Redis, this fails when
    /// the adapter's own connection is broken (readiness).
    async fn check(&self) -> Result<(), String>;
    /// Tells every socket on this node that the server is going away (shutdown).
    async fn shutting_down(&self);
    /// Disconnects every socket on this node (shutdown).
    async fn close(&self);
}

#[async_trait]
impl<A: Adapter> Fanout for SocketIo<A> {
    async fn check(&self) -> Result<(), String> {
        self.to(PROBE_ROOM)
            .emit("probe", &())
            .await
            .map_err(|e| e.to_string())
    }

    async fn census(&self) -> Census {
        let rooms = self.local().rooms().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not list this node's rooms");
            Vec::new()
        });
        let users = rooms.iter().filter(|r| r.starts_with(USER_ROOM)).count();
        let chats = rooms
            .iter()
            .filter(|r| !r.starts_with(USER_ROOM) && !r.starts_with(SESSION_ROOM))
            .count();
        Census {
            sockets: self.sockets().len(),
            users,
            rooms: chats,
        }
    }

    async fn shutting_down(&self) {
        let notice = serde_json::json!({ "reconnect": true });
        if let Err(e) = self.local().emit("shutting-down", &notice).await {
            tracing::debug!(error = %e, "shutdown notice not sent to every socket");
        }
    }

    async fn close(&self) {
        SocketIo::close(self).await;
    }
}

/// Emits `event` to `rooms`, but the socket `except` (always on this node: the
/// one whose request caused it), logging a failure.
async fn emit_to<A: Adapter, T: serde::Serialize + ?Sized>(
    io: &SocketIo<A>,
    rooms: Vec<String>,
    except: Option<&str>,
    event: &'static str,
    payload: &T,
) {
    let origin = except
        .and_then(|sid| sid.parse().ok())
        .and_then(|sid| io.get_socket(sid));
    let sent = match origin {
        Some(socket) => socket.to(rooms).emit(event, payload).await,
        None => io.to(rooms).emit(event, payload).await,
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, event, "broadcast failed");
    }
}

#[async_trait]
impl<A: Adapter> Notifier for SocketIo<A> {
    async fn message_stored(&self, message: &Message, except: Option<&str>) {
        emit_to(self, vec![message.rid.clone()], except, "message", message).await;
    }

    async fn message_updated(&self, message: &Message, except: Option<&str>) {
        emit_to(
            self,
            vec![message.rid.clone()],
            except,
            "message-updated",
            message,
        )
        .await;
    }

    async fn chat_changed(&self, user: UserId, chat: &Chat) {
        // Joining first: the room's next message must not overtake the chat.
        if let Err(e) = self.to(user_room(user)).join(chat.room_id.clone()).await {
            tracing::warn!(error = %e, "could not subscribe sockets to a room");
        }
        emit_to(self, vec![user_room(user)], None, "chat", chat).await;
    }

    async fn unsubscribe(&self, user: UserId, rid: &str) {
        if let Err(e) = self.to(user_room(user)).leave(rid.to_owned()).await {
            tracing::warn!(error = %e, "could not unsubscribe sockets from a room");
        }
    }

    async fn chat_removed(&self, user: UserId, rid: &str) {
        self.unsubscribe(user, rid).await;
        let gone = serde_json::json!({ "rid": rid });
        emit_to(self, vec![user_room(user)], None, "chat-removed", &gone).await;
    }

    async fn presence(&self, rooms: Vec<String>, presence: &Presence) {
        if !rooms.is_empty() {
            emit_to(self, rooms, None, "presence", presence).await;
        }
    }

    async fn typing(&self, typing: &Typing, except: Option<&str>) {
        emit_to(self, vec![typing.rid.clone()], except, "typing", typing).await;
    }

    async fn receipt(&self, receipt: &Receipt) {
        emit_to(self, vec![receipt.rid.clone()], None, "read", receipt).await;
    }

    async fn online(&self, users: &[UserId]) -> HashSet<UserId> {
        // One question per user, all at once: with Redis each asks every node.
        let asks = users.iter().map(|&user| async move {
            match self.to(user_room(user)).fetch_sockets().await {
                Ok(sockets) => (!sockets.is_empty()).then_some(user),
                Err(e) => {
                    tracing::warn!(error = %e, "could not ask who is online");
                    None
                }
            }
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn sessions_ended(&self, token_hashes: &[Vec<u8>]) {
        let rooms: Vec<String> = token_hashes.iter().map(|h| session_room(h)).collect();
        // Local: every node's watch reads the same revocations and closes its
        // own sockets, so this needs neither Redis nor a healthy other node.
        if let Err(e) = self.local().to(rooms).disconnect().await {
            tracing::warn!(error = %e, "could not disconnect an ended session's sockets");
        }
    }
}
