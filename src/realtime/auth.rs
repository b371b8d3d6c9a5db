//! Who is connecting: a bearer token in the handshake `auth`, or the browser's
//! session cookie (only from our own origin, so another site cannot open a
//! socket in a visitor's name). Then the per-user and total connection caps.
//! Once admitted, a socket's session is confirmed once more (see [`confirm`]).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Extension, SocketRef, State, TryData};

use super::{Core, SameOriginCookie, session_room, user_room};
use crate::domain::Session;

/// Why a connection is refused: the `connect_error` message, which clients match on.
#[derive(Debug)]
pub enum Refused {
    Unauthorized,
    /// A bot token: bots use the JSON API.
    ForbiddenScope,
    TooManyConnections,
    /// The database could not be reached to check the session: try again.
    Unavailable,
}

impl From<crate::domain::Error> for Refused {
    fn from(e: crate::domain::Error) -> Self {
        match e {
            crate::domain::Error::Unavailable => Refused::Unavailable,
            crate::domain::Error::ForbiddenScope => Refused::ForbiddenScope,
            _ => Refused::Unauthorized,
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Unauthorized => "unauthorized",
            Refused::ForbiddenScope => "forbidden_scope",
            Refused::TooManyConnections => "too_many_connections",
            Refused::Unavailable => "unavailable",
        })
    }
}

pub async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    TryData(auth): TryData<Value>,
    State(natter): State<Core>,
) -> Result<(), Refused> {
    let bearer = auth
        .ok()
        .and_then(|a| a.get("token").and_then(Value::as_str).map(str::to_owned));
    let cookie = || {
        let SameOriginCookie(cookie) = socket.req_parts().extensions.get()?;
        cookie.as_deref().map(str::to_owned)
    };
    let token = bearer.or_else(cookie).ok_or(Refused::Unauthorized)?;
    let session = natter.authenticate_socket(&token).await?;
    // Held by the socket: its place is given back when the socket is gone.
    let permit = natter
        .admit_connection(session.user.id)
        .map_err(|_| Refused::TooManyConnections)?;
    let rooms = natter.room_ids(&session.user).await?;
    socket.join(session_room(&session.token_hash));
    socket.join(user_room(session.user.id));
    socket.join(rooms.clone());
    // As in `join-chat`: a removal that committed since the list was read may
    // have missed this socket, so the list is read again now that it is in.
    let still: HashSet<String> = natter.room_ids(&session.user).await?.into_iter().collect();
    let (rooms, gone): (Vec<String>, Vec<String>) =
        rooms.into_iter().partition(|r| still.contains(r));
    if !gone.is_empty() {
        socket.leave(gone);
    }
    let user = session.user.clone();
    socket.extensions.insert(session);
    socket.extensions.insert(Arc::new(permit));
    socket.extensions.insert(super::events::Gone::default());
    // After the answer to this handshake: the rooms they share hear they are online.
    tokio::spawn(async move { natter.connected(&user, rooms).await });
    // Here, not in a connect handler: socketioxide sends the connect packet
    // before it runs the connect handler, so a client's first event could
    // arrive before handlers registered there exist, and be dropped.
    super::events::register(&socket);
    Ok(())
}

/// The connect handler, run once the socket can be found by a disconnect —
/// which it could not during [`authenticate`]: had its session ended then,
/// this node's session watch would have missed it. Closes it if so.
pub async fn confirm<A: Adapter>(
    socket: SocketRef<A>,
    Extension(session): Extension<Session>,
    State(natter): State<Core>,
) {
    if natter.confirm(&session).await.is_err()
        && let Err(e) = socket.disconnect()
    {
        tracing::debug!(error = %e, "an ended session's socket was already gone");
    }
}
