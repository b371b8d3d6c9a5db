//! The contract's client → server events. Each handler parses the payload,
//! calls the domain, and answers through the ack (if the client asked for one).

use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};

use super::Core;
use crate::domain::{Result, Send, Session, rules};
use crate::telemetry::{self, Via};

/// Registers the contract's events on a socket that is being admitted.
pub fn register<A: Adapter>(socket: &SocketRef<A>) {
    socket.on("join-chat", join_chat::<A>);
    socket.on("outgoing", outgoing::<A>);
    socket.on("sync", sync::<A>);
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
fn payload(data: std::result::Result<Value, impl std::fmt::Debug>) -> Value {
    data.ok().filter(Value::is_object).unwrap_or(Value::Null)
}

async fn join_chat<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    Extension(session): Extension<Session>,
    State(natter): State<Core>,
    ack: AckSender<A>,
    TryData(data): TryData<Value>,
) {
    let data = payload(data);
    let joined = async {
        let rid = rules::room_id(data.get("rid"))?;
        let last_seq = natter.join(&session.user, &rid).await?;
        Ok((rid, last_seq))
    }
    .await;
    let (rid, last_seq) = match joined {
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

async fn outgoing<A: Adapter>(
    socket: SocketRef<A>,
    Extension(session): Extension<Session>,
    State(natter): State<Core>,
    ack: AckSender<A>,
    TryData(data): TryData<Value>,
) {
    let received = Instant::now();
    let data = payload(data);
    let sent = async {
        let rid = rules::room_id(data.get("rid"))?;
        let send = Send {
            rid: &rid,
            message: data.get("message").unwrap_or(&Value::Null),
            client_id: data.get("client_id"),
            origin: Some(socket.id.to_string()),
        };
        // Stored, committed and announced to the room's other sockets when this returns.
        let message = natter.send(&session.user, send).await?;
        Ok(json!({ "ok": true, "message": message }))
    }
    .await;
    // Counted before the ack leaves: a client that has its ack sees it counted.
    telemetry::ack_sent(received.elapsed());
    reply(ack, sent);
}

async fn sync<A: Adapter>(
    Extension(session): Extension<Session>,
    State(natter): State<Core>,
    ack: AckSender<A>,
    TryData(data): TryData<Value>,
) {
    let data = payload(data);
    let synced = async {
        let rid = rules::room_id(data.get("rid"))?;
        let after = rules::seq_cursor(data.get("after_seq"), "after_seq")?.unwrap_or(0);
        let max = natter.limits().history_page_max;
        let limit = rules::page_limit(data.get("limit"), max, natter.limits())?;
        let messages = natter.sync(&session.user, &rid, after, limit).await?;
        Ok(json!({ "ok": true, "messages": messages }))
    }
    .await;
    reply(ack, synced);
}
