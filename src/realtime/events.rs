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
use socketioxide::extract::{AckSender, Event, Extension, SocketRef, State, TryData};
use socketioxide_core::adapter::errors::SocketError;
use tokio_util::sync::CancellationToken;

use super::Core;
use crate::domain::model::{Chat, Message};
use crate::domain::rules::{self, Payload, Whom, field};
use crate::domain::{
    Added, Edit, Natter, NewGroup, React, Result, Search, Send, Session, Since, Synced,
};
use crate::telemetry::{self, Via};

/// Declares the client events once: the enums, their wire names, the list.
macro_rules! client_events {
    (
        $($variant:ident => $name:literal),* ;
        room: $($room:ident => $room_name:literal),* $(,)?
    ) => {
        /// The events that act on one room (`rid`): see [`room_event`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum RoomEvent { $($room),* }

        /// Every event a client may send, by its wire name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ClientEvent { $($variant,)* Room(RoomEvent) }

        impl ClientEvent {
            pub const ALL: &[ClientEvent] =
                &[$(ClientEvent::$variant,)* $(ClientEvent::Room(RoomEvent::$room)),*];

            /// Its name on the wire.
            pub fn name(self) -> &'static str {
                match self {
                    $(ClientEvent::$variant => $name,)*
                    $(ClientEvent::Room(RoomEvent::$room) => $room_name),*
                }
            }

            /// The event a wire name stands for, if any.
            pub fn parse(name: &str) -> Option<ClientEvent> {
                ClientEvent::ALL.iter().copied().find(|e| e.name() == name)
            }
        }
    };
}

client_events! {
    JoinChat => "join-chat",
    Outgoing => "outgoing",
    Sync => "sync",
    Search => "search",
    CreateGroup => "create-group";
    room:
    Read => "read",
    Typing => "typing",
    EditMessage => "edit-message",
    DeleteMessage => "delete-message",
    React => "react",
    RenameGroup => "rename-group",
    AddMember => "add-member",
    RemoveMember => "remove-member",
    LeaveGroup => "leave-group",
}

/// Registers the client events on a socket that is being admitted: one
/// handler for all of them, which finds the event by its name. A handler per
/// event was a boxed closure and a map entry per event per socket (0.6 KiB of
/// every idle socket, docs/benchmarks.md); an event the contract does not
/// list is ignored, as socketioxide ignores an event with no handler.
pub fn register<A: Adapter>(socket: &SocketRef<A>) {
    socket.on_fallback(
        |socket: SocketRef<A>,
         io: SocketIo<A>,
         Extension(session): Extension<Session>,
         Extension(gone): Extension<Gone>,
         State(natter): State<Core>,
         ack: AckSender<A>,
         Event(name): Event,
         TryData(data): TryData<Value>| async move {
            let Some(event) = ClientEvent::parse(&name) else {
                return;
            };
            let asked = Asked {
                socket,
                session,
                natter,
                ack,
                data: payload(data),
            };
            handle(event, asked, io, gone).await;
        },
    );
    socket.on_disconnect(on_disconnect);
}

/// Answers with the success payload or the contract's `{error: {code}}`.
///
/// An answer that cannot be queued because the socket's queue is full (its
/// client does not read what it asked for: `--socket-buffer`,
/// `--socket-buffer-bytes`) closes the socket at once rather than dropping the
/// answer: its client reconnects and asks again, and the queue's memory is freed.
fn reply<A: Adapter>(socket: &SocketRef<A>, ack: AckSender<A>, result: Result<Answer>) {
    let sent = match result {
        Ok(answer) => ack.send(&answer.with_ok()),
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
            // With its queue full, the client is not told: its connection
            // is closed (vendor/README.md, socketioxide's `disconnect`).
            if let Err(e) = socket.clone().disconnect() {
                tracing::debug!(error = %e, "the disconnect packet was not queued");
            }
        }
        Err(e) => tracing::debug!(error = %e, "ack not delivered"),
        Ok(()) => {}
    }
}

/// What an event answers when it succeeded, besides `ok: true`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// Nothing more than `ok`.
    Done {},
    Joined {
        rid: String,
        last_seq: i64,
    },
    Read {
        rid: String,
        read_seq: i64,
    },
    Message {
        message: Message,
    },
    Messages {
        messages: Vec<Message>,
    },
    Chat {
        chat: Chat,
    },
    /// A group add that became an invitation (always `true`).
    Invited {
        invited: bool,
    },
    /// `updates` and `rev` only when the client asked for changes too.
    Synced {
        messages: Vec<Message>,
        #[serde(skip_serializing_if = "Option::is_none")]
        updates: Option<Vec<Message>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        rev: Option<i64>,
    },
}

impl Answer {
    /// The ack's payload: the answer's fields and `ok: true`, keys in the
    /// order they have always had on the wire (serde_json's, alphabetical).
    fn with_ok(self) -> Value {
        let mut payload = serde_json::to_value(self).expect("answers serialize");
        payload["ok"] = Value::Bool(true);
        payload
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
    let send = Send::from_json(&rid, data, natter.limits(), origin);
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

/// A [`RoomEvent`] from the socket `origin`: its ack's success payload.
pub async fn room_event(
    natter: &Natter,
    session: &Session,
    event: RoomEvent,
    data: &Value,
    origin: &str,
) -> Result<Answer> {
    let rid = rules::room_id(data.get("rid"))?;
    let me = &session.user;
    let origin = Some(origin);
    Ok(match event {
        RoomEvent::Read => {
            let read_seq = natter.read(me, &rid, Payload(data).read_seq()).await?;
            Answer::Read { rid, read_seq }
        }
        RoomEvent::Typing => {
            natter
                .typing(me, &rid, Payload(data).typing(), origin)
                .await?;
            Answer::Done {}
        }
        RoomEvent::EditMessage => {
            let edit = Edit::from_json(data.get("seq"), data, natter.limits());
            Answer::Message {
                message: natter.edit(me, &rid, edit, origin).await?,
            }
        }
        RoomEvent::DeleteMessage => Answer::Message {
            message: natter
                .delete(me, &rid, rules::message_seq(data.get("seq")), origin)
                .await?,
        },
        RoomEvent::React => {
            let react = React::from_json(data.get("seq"), data);
            Answer::Message {
                message: natter.react(me, &rid, react, origin).await?,
            }
        }
        RoomEvent::RenameGroup => Answer::Chat {
            chat: natter.rename_group(me, &rid, Payload(data).title()).await?,
        },
        RoomEvent::AddMember => match natter.add_member(me, &rid, Payload(data).email()).await? {
            Added::Member(chat) => Answer::Chat { chat: *chat },
            Added::Invited => Answer::Invited { invited: true },
        },
        RoomEvent::RemoveMember => {
            natter
                .remove_member(me, &rid, rules::whom(field(data, "user_id")))
                .await?;
            Answer::Done {}
        }
        RoomEvent::LeaveGroup => {
            natter.remove_member(me, &rid, Ok(Whom::Me)).await?;
            Answer::Done {}
        }
    })
}

/// `search {q, limit?}`: hits across the caller's rooms, newest first.
pub async fn search(natter: &Natter, session: &Session, data: &Value) -> Result<Answer> {
    let search = Search::from_json(data.get("q"), data.get("limit"));
    let messages = natter.search(&session.user, search).await?;
    Ok(Answer::Messages { messages })
}

/// `create-group {title, emails}`: the new group as the caller sees it.
pub async fn create_group(natter: &Natter, session: &Session, data: &Value) -> Result<Answer> {
    let chat = natter
        .create_group(&session.user, NewGroup::from_json(data))
        .await?;
    Ok(Answer::Chat { chat })
}

/// An event as a socket sent it, with who sent it.
struct Asked<A: Adapter> {
    socket: SocketRef<A>,
    session: Session,
    natter: Core,
    ack: AckSender<A>,
    data: Value,
}

/// Answers one event: calls the core, then acks (and, for some, tells others).
async fn handle<A: Adapter>(event: ClientEvent, asked: Asked<A>, io: SocketIo<A>, gone: Gone) {
    let received = Instant::now();
    let Asked {
        socket,
        session,
        natter,
        ack,
        data,
    } = asked;
    natter.session_used(&session).await;
    match event {
        ClientEvent::JoinChat => {
            let (rid, last_seq) = match join_chat(&natter, &session, &data).await {
                Ok(joined) => joined,
                Err(e) => return reply(&socket, ack, Err(e)),
            };
            socket.join(rid.clone());
            // A removal that committed after the check above may have taken this
            // socket out of the room before it was in: ask again now that it is in
            // (the other half is in `Natter::change_group`).
            if let Err(e) = natter.require_member(&session.user, &rid).await {
                socket.leave(rid);
                return reply(&socket, ack, Err(e));
            }
            // Exactly the contract's shape: clients compare it whole.
            let joined = Answer::Joined {
                rid: rid.clone(),
                last_seq,
            };
            reply(&socket, ack, Ok(joined));
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
        ClientEvent::Outgoing => {
            let origin = Some(socket.id.to_string());
            let sent = outgoing(&natter, &session, &data, origin).await;
            // Counted before the ack leaves: a client that has its ack sees it counted.
            telemetry::ack_sent(received.elapsed());
            reply(
                &socket,
                ack,
                sent.map(|message| Answer::Message { message }),
            );
        }
        ClientEvent::Sync => {
            let synced = sync(&natter, &session, &data).await;
            // The contract's exact shape, unless the client asked for changes too.
            let answer = synced.map(|s| {
                let (updates, rev) = s.changes.unzip();
                Answer::Synced {
                    messages: s.messages,
                    updates,
                    rev,
                }
            });
            reply(&socket, ack, answer);
        }
        ClientEvent::Search => {
            // Event handlers run to their end whether or not the socket is still
            // there; a search holds a database connection, so it stops with its socket.
            tokio::select! {
                found = search(&natter, &session, &data) => reply(&socket, ack, found),
                () = gone.0.cancelled() => {}
            }
        }
        ClientEvent::CreateGroup => {
            reply(&socket, ack, create_group(&natter, &session, &data).await);
        }
        ClientEvent::Room(room) => {
            let origin = socket.id.to_string();
            let answer = room_event(&natter, &session, room, &data, &origin).await;
            reply(&socket, ack, answer);
        }
    }
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
