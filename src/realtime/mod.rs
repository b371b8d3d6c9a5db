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
pub mod cluster;
pub mod events;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::handler::ConnectHandler as _;
use socketioxide_core::adapter::DefinedAdapter;
use socketioxide_core::adapter::errors::BroadcastError;

use crate::domain::model::{Chat, Message, UserId};
use crate::domain::notify::{Notifier, Presence, Receipt, Resync, Typing};
use crate::domain::{Natter, Session};
use crate::telemetry::{Census, Counted};

/// The state every socket handler may extract.
pub type Core = Arc<Natter>;

/// Registers the default namespace with its auth middleware and event handlers.
/// For a remote adapter the returned value must be awaited (it subscribes to Redis).
pub fn attach<A: Adapter + DefinedAdapter>(io: &SocketIo<A>) -> A::InitRes {
    // Everything happens in the middleware, before the client hears it is
    // connected; the handler only closes the gap the middleware leaves.
    io.ns("/", auth::confirm::<A>.with(auth::authenticate::<A>))
}

/// The session cookie of a Socket.IO request from our own origin, read from its
/// headers by [`detach_request_head`] for [`auth::authenticate`]. `None` when the
/// request has no such cookie or comes from another site (which must not open
/// a socket in a visitor's name).
#[derive(Clone, Debug)]
pub struct SameOriginCookie(Option<Box<str>>);

/// Engine.IO keeps each connection's request head for the socket's whole life.
/// Hyper parses a head into slices of its connection read buffer (8–16 KiB),
/// so keeping the head keeps that buffer: half of what an idle socket cost
/// (measured with heaptrack, docs/benchmarks.md). Copying the URI and headers
/// of Socket.IO requests into allocations of their own — and dropping axum's
/// copy of the original URI — lets the buffer go. What authentication needs
/// from the headers is read here ([`SameOriginCookie`]); only the headers
/// Engine.IO reads past this point are kept (a polling body's type, the
/// WebSocket key, which it drops once answered). Any header kept costs a whole
/// `HeaderMap` table (0.6 KiB per socket).
pub async fn detach_request_head(mut request: Request) -> Request {
    if request.uri().path().starts_with("/socket.io") {
        use crate::credentials::{SESSION_COOKIE, Scheme, cookie_value, same_origin};
        use axum::http::header::{CONTENT_TYPE, SEC_WEBSOCKET_KEY};
        const READ: [HeaderName; 2] = [CONTENT_TYPE, SEC_WEBSOCKET_KEY];
        let headers = request.headers();
        let cookie = same_origin(headers, request.extensions().get::<Scheme>())
            .then(|| cookie_value(headers, SESSION_COOKIE))
            .flatten()
            .map(String::into_boxed_str);
        request.extensions_mut().insert(SameOriginCookie(cookie));
        request.extensions_mut().remove::<OriginalUri>();
        let copied: HeaderMap = request
            .headers()
            .iter()
            .filter(|(name, _)| READ.contains(name))
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

/// Whether a Socket.IO room is a chat room (theirs have a prefix; room ids have no `:`).
fn is_chat_room(room: &str) -> bool {
    !room.contains(':')
}

fn user_room(user: UserId) -> String {
    format!("{USER_ROOM}{user}")
}

fn session_room(token_hash: &[u8]) -> String {
    let hex: String = token_hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("{SESSION_ROOM}{hex}")
}

/// What the HTTP side tells connected sockets, whatever the adapter.
#[async_trait]
pub trait Fanout: Counted {
    /// Publishes an event to a room nobody is in: with Redis, this fails when
    /// the adapter's own connection is broken (readiness).
    async fn check(&self) -> Result<(), String>;
    /// Tells every socket on this node that the server is going away (shutdown).
    async fn shutting_down(&self);
    /// Disconnects every socket on this node (shutdown).
    async fn close(&self);
}

#[async_trait]
impl<A: Adapter> Counted for SocketIo<A> {
    async fn census(&self) -> Census {
        let rooms = self.local().rooms().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not list this node's rooms");
            Vec::new()
        });
        let users = rooms.iter().filter(|r| r.starts_with(USER_ROOM)).count();
        let chats = rooms.iter().filter(|r| is_chat_room(r)).count();
        Census {
            sockets: self.sockets().len(),
            users,
            rooms: chats,
        }
    }
}

#[async_trait]
impl<A: Adapter> Fanout for SocketIo<A> {
    async fn check(&self) -> Result<(), String> {
        self.to(PROBE_ROOM)
            .emit("probe", &())
            .await
            .map_err(|e| e.to_string())
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
/// one whose request caused it). When the other nodes are out of reach (the
/// Redis link is down, see [`cluster`]) it still reaches this node's sockets:
/// the others catch up when the link is back.
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
    let everywhere = match &origin {
        Some(socket) => socket.to(rooms.clone()).emit(event, payload).await,
        None => io.to(rooms.clone()).emit(event, payload).await,
    };
    // The adapter publishes before it delivers here: an adapter error means
    // nobody got it yet, so delivering here now delivers it once.
    let sent = match everywhere {
        Err(BroadcastError::Adapter(e)) => {
            tracing::debug!(error = %e, event, "other nodes out of reach; delivering on this node");
            match origin {
                Some(socket) => socket.local().to(rooms).emit(event, payload).await,
                None => io.local().to(rooms).emit(event, payload).await,
            }
        }
        other => other,
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, event, "broadcast failed");
    }
}

/// Subscribes (`join`) or unsubscribes the sockets of `user` to `rid` on every
/// node or, while the other nodes are out of reach, on this one (the others
/// recheck their sockets' rooms when the link is back).
async fn move_sockets<A: Adapter>(io: &SocketIo<A>, user: UserId, rid: &str, join: bool) {
    let everywhere = if join {
        io.to(user_room(user)).join(rid.to_owned()).await
    } else {
        io.to(user_room(user)).leave(rid.to_owned()).await
    };
    if let Err(e) = everywhere {
        tracing::debug!(error = %e, "other nodes out of reach; moving this node's sockets");
        let here = io.to(user_room(user)).local();
        let moved = if join {
            here.join(rid.to_owned()).await
        } else {
            here.leave(rid.to_owned()).await
        };
        if let Err(e) = moved {
            tracing::warn!(error = %e, "could not move sockets between rooms");
        }
    }
}

/// What a socket that may have missed messages hears: "sync every room you show".
const RESYNC: &str = "resync";

/// After the cluster's link came back (see [`cluster`]): every socket on this
/// node is put back in exactly the rooms its user now belongs to, then told to
/// `resync`. One room query per user on this node.
pub async fn recheck<A: Adapter>(io: &SocketIo<A>, natter: &Natter) {
    let mut rooms_of: HashMap<UserId, Option<HashSet<String>>> = HashMap::new();
    for socket in io.sockets() {
        let Some(session) = socket.extensions.get::<Session>() else {
            continue;
        };
        let user = session.user;
        let rooms = match rooms_of.entry(user.id) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(first) => first.insert(match natter.room_ids(&user).await {
                Ok(rooms) => Some(rooms.into_iter().collect()),
                Err(e) => {
                    tracing::warn!(error = %e, "could not recheck a user's rooms");
                    None
                }
            }),
        };
        if let Some(rooms) = rooms {
            let now: HashSet<String> = socket
                .rooms()
                .into_iter()
                .map(|room| room.to_string())
                .filter(|room| is_chat_room(room))
                .collect();
            let lost: Vec<String> = now.difference(rooms).cloned().collect();
            let gained: Vec<String> = rooms.difference(&now).cloned().collect();
            socket.leave(lost);
            socket.join(gained);
        }
        let why = serde_json::json!({ "reason": "fanout" });
        if let Err(e) = socket.emit(RESYNC, &why) {
            tracing::debug!(error = %e, "resync not sent");
        }
    }
}

#[async_trait]
impl<A: Adapter> Notifier for SocketIo<A> {
    async fn message_stored(&self, message: &Message, except: Option<&str>) {
        emit_to(self, vec![message.rid.clone()], except, "message", message).await;
    }

    async fn resync(&self, rooms: Vec<String>, reason: Resync) {
        let why = serde_json::json!({ "reason": reason });
        emit_to(self, rooms, None, RESYNC, &why).await;
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
        move_sockets(self, user, &chat.room_id, true).await;
        emit_to(self, vec![user_room(user)], None, "chat", chat).await;
    }

    async fn unsubscribe(&self, user: UserId, rid: &str) {
        move_sockets(self, user, rid, false).await;
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
            let sockets = match self.to(user_room(user)).fetch_sockets().await {
                Ok(sockets) => sockets,
                // Other nodes out of reach: what this node knows.
                Err(_) => self
                    .to(user_room(user))
                    .local()
                    .fetch_sockets()
                    .await
                    .unwrap_or_default(),
            };
            (!sockets.is_empty()).then_some(user)
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
