//! The contract's client → server events. Each handler decodes the payload
//! with the functions below (shared with nothing else: they are the event's
//! rules of input), calls the domain, and answers through the ack (if the
//! client asked for one).

use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};

use super::Core;
use crate::domain::model::Message;
use crate::domain::{Natter, Result, Send, Session, rules};
use crate::telemetry::{self, Via};

/// Registers the contract's events on a socket that is being admitted.
pub fn register<A: Adapter>(socket: &SocketRef<A>) {
    socket.on("join-chat", on_join_chat::<A>);
    socket.on("outgoing", on_outgoing::<A>);
    socket.on("sync", on_sync::<A>);
}

/// Answers with the success payload or the contract's `{error: {code}}`.
fn reply<A: Adapter, T: Serialize>(ack: AckSender<A>, result: Result<T>) {
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
    if let Err(e) = sent {
        tracing::debug!(error = %e, "ack not delivered");
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
        message: data.get("message").unwrap_or(&Value::Null),
        client_id: data.get("client_id"),
        origin,
    };
    // Stored, committed and announced to the room's other sockets when this returns.
    natter.send(&session.user, send).await
}

/// `sync {rid, after_seq, limit?}`: the messages after `after_seq`, ascending.
pub async fn sync(natter: &Natter, session: &Session, data: &Value) -> Result<Vec<Message>> {
    let rid = rules::room_id(data.get("rid"))?;
    let after = rules::seq_cursor(data.get("after_seq"), "after_seq")?.unwrap_or(0);
    let max = natter.limits().history_page_max;
    let limit = rules::page_limit(data.get("limit"), max, natter.limits())?;
    natter.sync(&session.user, &rid, after, limit).await
}

async fn on_join_chat<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    Extension(session): Extension<Session>,
    State(natter): State<Core>,
    ack: AckSender<A>,
    TryData(data): TryData<Value>,
) {
    let (rid, last_seq) = match join_chat(&natter, &session, &payload(data)).await {
        Ok(joined) => joined,
        Err(e) => return reply::<A, ()>(ack, Err(e)),
    };
    socket.join(rid.clone());
    reply(
        ack,
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
    let origin = Some(socket.id.to_string());
    let sent = outgoing(&natter, &session, &payload(data), origin).await;
    // Counted before the ack leaves: a client that has its ack sees it counted.
    telemetry::ack_sent(received.elapsed());
    reply(
        ack,
        sent.map(|message| json!({ "ok": true, "message": message })),
    );
}

async fn on_sync<A: Adapter>(
    Extension(session): Extension<Session>,
    State(natter): State<Core>,
    ack: AckSender<A>,
    TryData(data): TryData<Value>,
) {
    let synced = sync(&natter, &session, &payload(data)).await;
    reply(
        ack,
        synced.map(|messages| json!({ "ok": true, "messages": messages })),
    );
}
