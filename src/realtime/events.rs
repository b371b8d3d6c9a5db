//! The contract's client → server events. Each handler decodes the payload
//! with the functions below (shared with nothing else: they are the event's
//! rules of input), calls the domain, and answers through the ack (if the
//! client asked for one). Every event counts as a use of the socket's session
//! (recorded every few minutes at most), so a socket in use keeps its session
//! from ending for idleness; a socket that only answers pings does not.

use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::SendError;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};
use socketioxide_core::adapter::errors::SocketError;
use tokio_util::sync::CancellationToken;

use super::Core;
use crate::domain::model::Message;
use crate::domain::rules::{self, field};
use crate::domain::{Natter, Result, Send, Session, Since, Synced};
use crate::telemetry::{self, Via};

/// Registers the contract's events on a socket that is being admitted.
pub fn register<A: Adapter>(socket: &SocketRef<A>) {
    socket.on("join-chat", on_join_chat::<A>);
    socket.on("outgoing", on_outgoing::<A>);
    socket.on("sync", on_sync::<A>);
    socket.on("read", on_read::<A>);
    socket.on("typing", on_typing::<A>);
    socket.on("edit-message", on_edit::<A>);
    socket.on("delete-message", on_delete::<A>);
    socket.on("react", on_react::<A>);
    socket.on("search", on_search::<A>);
    socket.on("create-group", on_create_group::<A>);
    socket.on("rename-group", on_rename_group::<A>);
    socket.on("add-member", on_add_member::<A>);
    socket.on("remove-member", on_remove_member::<A>);
    socket.on("leave-group", on_leave_group::<A>);
    socket.on_disconnect(on_disconnect);
}

/// Answers with the success payload or the contract's `{error: {code}}`.
///
/// An answer that cannot be queued because the socket's queue is full (its
/// client does not read what it asked for: `--socket-buffer`,
/// `--socket-buffer-bytes`) closes the socket at once rather than dropping the
/// answer: its client reconnects and asks again, and the queue's memory is freed.
fn reply<A: Adapter, T: Serialize>(socket: &SocketRef<A>, ack: AckSender<A>, result: Result<T>) {
    let sent = match result {
        Ok(payload) => ack.send(&payload),
        Err(e) => {
            if let crate::domain::Error::Internal(cause) = &e {
                tracing::error!(error = %cause, "event failed");
            }
            telemetry::error_replied(e.code(), Via::SocketIo);
            ack.send(&json!({ "error": { "code": e.code() } }))
        }
    };
    match sent {
        Err(SendError::Socket(SocketError::InternalChannelFull)) => {
            tracing::debug!(sid = %socket.id, "answer not queued: the socket's queue is full; closing it");
            if let Err(e) = socket.clone().disconnect() {
                tracing::debug!(error = %e, "socket already closed");
            }
        }
        Err(e) => tracing::debug!(error = %e, "ack not delivered"),
        Ok(()) => {}
    }
}

/// A payload that is not an object reads as an empty one: every field missing.
pub fn payload(data: std::result::Result<Value, impl std::fmt::Debug>) -> Value {
    data.ok().filter(Value::is_object).unwrap_or(Value::Null)
}

/// `join-chat {rid}`: the room opened for reading; its id and last `seq`.
pub async fn join_chat(natter: &Natter, session: &Session, data: &Value) -> Result<(String, i64)> {
    let rid = rules::room_id(data.get("rid"))?;
    let last_seq = natter.join(&session.user, &rid).await?;
    Ok((rid, last_seq))
}

/// `outgoing {rid, message, client_id?}` from the socket `origin`: the stored message.
pub async fn outgoing(
    natter: &Natter,
    session: &Session,
    data: &Value,
    origin: Option<String>,
) -> Result<Message> {
    let rid = rules::room_id(data.get("rid"))?;
    let send = Send {
        rid: &rid,
        message: field(data, "message"),
        client_id: data.get("client_id"),
        reply_to: data.get("reply_to"),
        origin,
    };
    // Stored, committed and announced to the room's other sockets when this returns.
    natter.send(&session.user, send).await
}

/// `sync {rid, after_seq, after_rev?, limit?}`: the messages after `after_seq`,
/// ascending, and the changes to earlier ones after `after_rev`.
pub async fn sync(natter: &Natter, session: &Session, data: &Value) -> Result<Synced> {
    let rid = rules::room_id(data.get("rid"))?;
    let max = natter.limits().history_page_max;
    let since = Since {
        after_seq: rules::seq_cursor(data.get("after_seq"), "after_seq")?.unwrap_or(0),
        after_rev: rules::seq_cursor(data.get("after_rev"), "after_rev")?,
        limit: rules::page_limit(data.get("limit"), max, natter.limits())?,
    };
    natter.sync(&session.user, &rid, since).await
}

/// The names of the events that act on one room (`rid`): see [`room_event`].
pub const ROOM_EVENTS: [&str; 9] = [
    "read",
    "typing",
    "edit-message",
    "delete-message",
    "react",
    "rename-group",
    "add-member",
    "remove-member",
    "leave-group",
];

/// One of [`ROOM_EVENTS`] from the socket `origin`: its ack's success payload.
pub async fn room_event(
    natter: &Natter,
    session: &Session,
    event: &str,
    data: &Value,
    origin: &str,
) -> Result<Value> {
    let rid = rules::room_id(data.get("rid"))?;
    let me = &session.user;
    let origin = Some(origin);
    Ok(match event {
        "read" => {
            let read_seq = natter.read(me, &rid, field(data, "seq")).await?;
            json!({ "ok": true, "rid": rid, "read_seq": read_seq })
        }
        "typing" => {
            natter.typing(me, &rid, data.get("typing"), origin).await?;
            json!({ "ok": true })
        }
        "edit-message" => {
            let (seq, text) = (field(data, "seq"), field(data, "message"));
            let message = natter.edit(me, &rid, seq, text, origin).await?;
            json!({ "ok": true, "message": message })
        }
        "delete-message" => {
            let message = natter.delete(me, &rid, field(data, "seq"), origin).await?;
            json!({ "ok": true, "message": message })
        }
        "react" => {
            let (seq, emoji) = (field(data, "seq"), field(data, "emoji"));
            let message = natter.react(me, &rid, seq, emoji, origin).await?;
            json!({ "ok": true, "message": message })
        }
        "rename-group" => {
            let chat = natter.rename_group(me, &rid, field(data, "title")).await?;
            json!({ "ok": true, "chat": chat })
        }
        "add-member" => {
            let chat = natter.add_member(me, &rid, field(data, "email")).await?;
            json!({ "ok": true, "chat": chat })
        }
        "remove-member" => {
            natter
                .remove_member(me, &rid, field(data, "user_id"))
                .await?;
            json!({ "ok": true })
        }
        "leave-group" => {
            natter.remove_member(me, &rid, &json!("me")).await?;
            json!({ "ok": true })
        }
        other => unreachable!("{other} is not a room event"),
    })
}

async fn on_join_chat<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    Extension(session): Extension<Session>,
    State(natter): State<Core>,
    ack: AckSender<A>,
    TryData(data): TryData<Value>,
) {
    natter.session_used(&session).await;
    let (rid, last_seq) = match join_chat(&natter, &session, &payload(data)).await {
        Ok(joined) => joined,
        Err(e) => return reply::<A, ()>(&socket, ack, Err(e)),
    };
    socket.join(rid.clone());
    // A removal that committed after the check above may have taken this
    // socket out of the room before it was in: ask again now that it is in
    // (the other half is in `Natter::change_group`).
    if let Err(e) = natter.require_member(&session.user, &rid).await {
        socket.leave(rid);
        return reply::<A, ()>(&socket, ack, Err(e));
    }
    reply(
        &socket,
        ack,
        // Exactly the contract's shape: clients compare it whole.
        Ok(json!({ "ok": true, "rid": rid, "last_seq": last_seq })),
    );
    let user = &session.user;
    let announcement = json!({
        "rid": rid,
        "user_id": user.id.to_string(),
        "username": user.username,
        "msg": format!("{} is now online.", user.username),
    });
    if let Err(e) = io.to(rid).emit("joined-chat", &announcement).await {
        tracing::warn!(error = %e, "joined-chat broadcast failed");
    }
}

async fn on_outgoing<A: Adapter>(
    socket: SocketRef<A>,
    Extension(session): Extension<Session>,
    State(natter): State<Core>,
    ack: AckSender<A>,
    TryData(data): TryData<Value>,
) {
    let received = Instant::now();
    natter.session_used(&session).await;
    let origin = Some(socket.id.to_string());
    let sent = outgoing(&natter, &session, &payload(data), origin).await;
    // Counted before the ack leaves: a client that has its ack sees it counted.
    telemetry::ack_sent(received.elapsed());
    reply(
        &socket,
        ack,
        sent.map(|message| json!({ "ok": true, "message": message })),
    );
}

async fn on_sync<A: Adapter>(
    socket: SocketRef<A>,
    Extension(session): Extension<Session>,
    State(natter): State<Core>,
    ack: AckSender<A>,
    TryData(data): TryData<Value>,
) {
    natter.session_used(&session).await;
    let synced = sync(&natter, &session, &payload(data)).await;
    // The contract's exact shape, unless the client asked for changes too.
    reply(
        &socket,
        ack,
        synced.map(|s| match s.changes {
            Some((updates, rev)) => {
                json!({ "ok": true, "messages": s.messages, "updates": updates, "rev": rev })
            }
            None => json!({ "ok": true, "messages": s.messages }),
        }),
    );
}

macro_rules! room_events {
    ($($handler:ident => $event:literal),* $(,)?) => {$(
        async fn $handler<A: Adapter>(
            socket: SocketRef<A>,
            Extension(session): Extension<Session>,
            State(natter): State<Core>,
            ack: AckSender<A>,
            TryData(data): TryData<Value>,
        ) {
            natter.session_used(&session).await;
            let origin = socket.id.to_string();
            let answer = room_event(&natter, &session, $event, &payload(data), &origin).await;
            reply(&socket, ack, answer);
        }
    )*};
}

room_events! {
    on_read => "read",
    on_typing => "typing",
    on_edit => "edit-message",
    on_delete => "delete-message",
    on_react => "react",
    on_rename_group => "rename-group",
    on_add_member => "add-member",
    on_remove_member => "remove-member",
    on_leave_group => "leave-group",
}

/// `search {q, limit?}`: hits across the caller's rooms, newest first.
pub async fn search(natter: &Natter, session: &Session, data: &Value) -> Result<Value> {
    let found = natter
        .search(&session.user, data.get("q"), data.get("limit"))
        .await?;
    Ok(json!({ "ok": true, "messages": found }))
}

/// `create-group {title, emails}`: the new group as the caller sees it.
pub async fn create_group(natter: &Natter, session: &Session, data: &Value) -> Result<Value> {
    let chat = natter
        .create_group(&session.user, field(data, "title"), data.get("emails"))
        .await?;
    Ok(json!({ "ok": true, "chat": chat }))
}

async fn on_search<A: Adapter>(
    socket: SocketRef<A>,
    Extension(session): Extension<Session>,
    Extension(gone): Extension<Gone>,
    State(natter): State<Core>,
    ack: AckSender<A>,
    TryData(data): TryData<Value>,
) {
    natter.session_used(&session).await;
    // Event handlers run to their end whether or not the socket is still
    // there; a search holds a database connection, so it stops with its socket.
    let data = payload(data);
    tokio::select! {
        found = search(&natter, &session, &data) => reply(&socket, ack, found),
        () = gone.0.cancelled() => {}
    }
}

async fn on_create_group<A: Adapter>(
    socket: SocketRef<A>,
    Extension(session): Extension<Session>,
    State(natter): State<Core>,
    ack: AckSender<A>,
    TryData(data): TryData<Value>,
) {
    natter.session_used(&session).await;
    reply(
        &socket,
        ack,
        create_group(&natter, &session, &payload(data)).await,
    );
}

/// Cancelled when its socket disconnects: what runs for that socket alone
/// (a search) stops then.
#[derive(Debug, Clone, Default)]
pub struct Gone(CancellationToken);

/// A socket closed: its user may have gone offline (checked a moment later).
async fn on_disconnect(
    Extension(session): Extension<Session>,
    Extension(gone): Extension<Gone>,
    State(natter): State<Core>,
) {
    gone.0.cancel();
    natter.disconnected(session.user);
}
