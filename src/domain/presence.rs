//! Ephemeral state, never stored but for last-seen times: who is online,
//! who is typing.

use std::sync::Arc;
use std::time::Duration;

use super::model::{self, User};
use super::notify::{Presence, Typing};
use super::{Natter, Result, now_ms};

/// At most one "typing" per user and room is passed on this often.
pub(super) const TYPING_EVERY: Duration = Duration::from_secs(2);
/// A user whose last socket closed is announced offline only if no socket came
/// back meanwhile: a page reload does not flicker their presence.
const OFFLINE_AFTER: Duration = Duration::from_secs(2);

impl Natter {
    /// Tells the room's other sockets that `me` is typing (at most once per
    /// [`TYPING_EVERY`]; the rest are dropped) or stopped (always). Nothing is stored.
    pub async fn typing(
        &self,
        me: &User,
        rid: &str,
        typing: Result<bool>,
        origin: Option<&str>,
    ) -> Result<()> {
        super::bots::allow(me, super::bots::Need::Send, Some(rid))?;
        self.budgets.event(me.id)?;
        let typing = typing?;
        self.require_member_cached(me, rid).await?;
        let key = (rid.to_owned(), me.id);
        if typing {
            if self.typing.contains_key(&key) {
                return Ok(());
            }
            self.typing.insert(key, ());
        } else {
            self.typing.invalidate(&key);
        }
        let event = Typing {
            rid: rid.to_owned(),
            user_id: me.id.to_string(),
            username: me.username.clone(),
            typing,
        };
        self.notify.get().typing(&event, origin).await;
        Ok(())
    }

    /// A socket of `me` connected: the rooms they share hear they are online.
    /// `rooms` are the user's rooms, as the connecting socket just read them.
    pub async fn connected(&self, me: &User, rooms: Vec<String>) {
        self.notify.get().presence(rooms, &online(me)).await;
    }

    /// A socket of `me` closed. If, a moment later, they have none left on any
    /// node, their last-seen time is stored and their rooms hear they are offline.
    pub fn disconnected(self: &Arc<Self>, me: User) {
        let natter = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(OFFLINE_AFTER).await;
            let Some(natter) = natter.upgrade() else {
                return;
            };
            if let Err(e) = natter.went_offline(&me).await {
                tracing::warn!(error = %e, "presence not updated");
            }
        });
    }

    async fn went_offline(&self, me: &User) -> Result<()> {
        // A node shutting down closes every socket: its users reconnect elsewhere.
        let shutting_down = !*self.accepting.read().await;
        if shutting_down || self.notify.get().online(&[me.id]).await.contains(&me.id) {
            return Ok(());
        }
        let now = now_ms();
        self.store.set_last_seen(me.id, now).await?;
        let presence = Presence {
            user_id: me.id.to_string(),
            online: false,
            last_seen: Some(model::timestamp_of_millis(now)),
        };
        let rooms = self.store.room_ids(me.id).await?;
        self.notify.get().presence(rooms.clone(), &presence).await;
        // A socket that connected since the check above announced itself
        // online before this "offline" went out, and would be shown offline
        // until its next reconnect: correct it. One that connects from now on
        // announces itself after this.
        if self.notify.get().online(&[me.id]).await.contains(&me.id) {
            self.notify.get().presence(rooms, &online(me)).await;
        }
        Ok(())
    }
}

/// What a user's rooms hear when they come online.
fn online(me: &User) -> Presence {
    Presence {
        user_id: me.id.to_string(),
        online: true,
        last_seen: None,
    }
}
