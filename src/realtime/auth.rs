//! Who is connecting: a bearer token in the handshake `auth`, or the browser's
//! session cookie (only from our own origin, so another site cannot open a
//! socket in a visitor's name).

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, State, TryData};

use super::{Core, session_room, user_room};
use crate::http::session::{SESSION_COOKIE, cookie_value, same_origin};

/// The only reason a connection is refused; clients match on its text.
#[derive(Debug)]
pub struct Unauthorized;

impl std::fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unauthorized")
    }
}

pub async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    TryData(auth): TryData<Value>,
    State(natter): State<Core>,
) -> Result<(), Unauthorized> {
    let headers = &socket.req_parts().headers;
    let bearer = auth
        .ok()
        .and_then(|a| a.get("token").and_then(Value::as_str).map(str::to_owned));
    let token = match bearer {
        Some(token) => token,
        None if same_origin(headers) => {
            cookie_value(headers, SESSION_COOKIE).ok_or(Unauthorized)?
        }
        None => return Err(Unauthorized),
    };
    let session = natter
        .authenticate(&token)
        .await
        .map_err(|_| Unauthorized)?;
    let rooms = natter
        .room_ids(&session.user)
        .await
        .map_err(|_| Unauthorized)?;
    socket.join(session_room(&session));
    socket.join(user_room(session.user.id));
    socket.join(rooms);
    socket.extensions.insert(session);
    // Here, not in a connect handler: socketioxide sends the connect packet
    // before it runs the connect handler, so a client's first event could
    // arrive before handlers registered there exist, and be dropped.
    super::events::register(&socket);
    Ok(())
}
