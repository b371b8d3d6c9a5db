//! Bots and their scoped tokens.
//!
//! A bot is a user row owned by the person who made it. Nobody knows its
//! password (a random one, hashed like any other, so a login attempt is
//! answered like a wrong password), so it acts only through its tokens:
//! long-lived bearer secrets (`nbt_…`, kept as a SHA-256) each with scopes —
//! `read` (chats, history, sync, changes, members, search, read markers,
//! downloads), `send` (messages, edits, deletions, reactions, typing,
//! uploads) — and optionally a list of rooms. A request with a bot token is
//! authenticated as the bot by the same door as a person's session
//! ([`Natter::authenticate`]); its [`Grant`] travels with the user, and
//! every entry point of the domain asks [`allow`] before anything else.
//! Everything that is neither reading nor sending (opening chats, groups,
//! invitations, sessions, push, bots, webhooks) is a person's alone. A token
//! is looked up in the database on every request, so a revocation holds at
//! once; Socket.IO refuses bot tokens (`forbidden_scope`): a socket hears
//! every room of its user, which a room-limited token must not.

use serde_json::Value;

use super::model::{Bot, BotToken, Grant, User, UserId};
use super::store::{NewBot, StoreError};
use super::{Error, Natter, Result, Session, now_ms, rules, secrets};

/// Bots one person keeps (deleted ones do not count).
pub const MAX_BOTS_PER_USER: usize = 10;
/// Live tokens one bot has.
pub const MAX_TOKENS_PER_BOT: usize = 10;
/// Rooms a token (or an outgoing webhook) may be limited to.
pub const MAX_ROOMS_PER_GRANT: usize = 100;
/// What every bot token starts with: it tells them from session tokens
/// (and secret scanners from other secrets).
pub const TOKEN_PREFIX: &str = "nbt_";
/// The domain of bots' email addresses (`NAME@bots.invalid`): what their
/// owner adds them to a group or opens a chat with them by. `.invalid` is
/// reserved (RFC 2606): no mail goes there.
pub const EMAIL_DOMAIN: &str = "bots.invalid";

/// What an action needs of a bot token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Send,
    /// Anything else: a person's own session only.
    Manage,
}

/// Whether `me`'s credentials allow `need` (in room `rid`, when it names
/// one): a person's session allows everything; a bot token its scopes, in
/// its rooms. [`Error::ForbiddenScope`] otherwise.
pub fn allow(me: &User, need: Need, rid: Option<&str>) -> Result<()> {
    let Some(grant) = &me.grant else {
        return Ok(());
    };
    let scoped = match need {
        Need::Read => grant.read,
        Need::Send => grant.send,
        Need::Manage => false,
    };
    if scoped && rid.is_none_or(|rid| in_rooms(grant.rooms.as_deref(), rid)) {
        Ok(())
    } else {
        Err(Error::ForbiddenScope)
    }
}

/// Whether a list of rooms (`None`: every room) holds `rid`.
pub fn in_rooms(rooms: Option<&[String]>, rid: &str) -> bool {
    rooms.is_none_or(|rooms| rooms.iter().any(|r| r == rid))
}

/// Whether `me` may see room `rid` in a list (chats, search hits).
pub fn sees(me: &User, rid: &str) -> bool {
    me.grant
        .as_ref()
        .is_none_or(|grant| in_rooms(grant.rooms.as_deref(), rid))
}

/// A list of room ids as a body carries it: absent or `null` for every
/// room, otherwise 1 to [`MAX_ROOMS_PER_GRANT`] room ids.
pub fn rooms_field(raw: Option<&Value>) -> Result<Option<Vec<String>>> {
    let list = match raw {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) if (1..=MAX_ROOMS_PER_GRANT).contains(&list.len()) => list,
        Some(_) => {
            return Err(Error::invalid(format!(
                "rooms must be null or a list of 1 to {MAX_ROOMS_PER_GRANT} room ids"
            )));
        }
    };
    let mut rooms = Vec::with_capacity(list.len());
    for rid in list {
        let rid = rules::room_id(Some(rid)).map_err(|_| Error::invalid("rooms holds a bad id"))?;
        if !rooms.contains(&rid) {
            rooms.push(rid);
        }
    }
    Ok(Some(rooms))
}

/// A token's scopes as a body carries them: a non-empty list of `read` and `send`.
fn scopes_field(raw: Option<&Value>) -> Result<(bool, bool)> {
    let bad = || Error::invalid("scopes must be a non-empty list of \"read\" and \"send\"");
    let Some(Value::Array(list)) = raw else {
        return Err(bad());
    };
    let (mut read, mut send) = (false, false);
    for scope in list {
        match scope.as_str() {
            Some("read") => read = true,
            Some("send") => send = true,
            _ => return Err(bad()),
        }
    }
    if !(read || send) {
        return Err(bad());
    }
    Ok((read, send))
}

/// A new token as a door read it: `{scopes, rooms?}`.
#[derive(Debug)]
pub struct NewToken {
    pub grant: Result<Grant>,
}

impl NewToken {
    pub fn from_json(payload: &Value) -> Self {
        let grant = scopes_field(payload.get("scopes")).and_then(|(read, send)| {
            Ok(Grant {
                read,
                send,
                rooms: rooms_field(payload.get("rooms"))?,
            })
        });
        NewToken { grant }
    }
}

impl Natter {
    /// A password nobody knows, hashed: bots (and webhooks' senders) never
    /// log in, and a try is answered like any wrong password.
    pub(super) async fn unknowable_password(&self) -> Result<String> {
        Ok(self.hasher.hash(secrets::new_token()).await?)
    }

    /// Makes a bot owned by `me`, named `username` (the rule of people's
    /// names; its email is `USERNAME@bots.invalid`).
    pub async fn create_bot(&self, me: &User, username: Result<String>) -> Result<Bot> {
        allow(me, Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let username = username?;
        let username = rules::username(&username).map_err(|e| e.in_field("username"))?;
        if self.store.bots(me.id).await?.len() >= MAX_BOTS_PER_USER {
            return Err(Error::TooMany("bots", MAX_BOTS_PER_USER));
        }
        let email = format!("{username}@{EMAIL_DOMAIN}");
        let hash = self.unknowable_password().await?;
        let bot = NewBot {
            owner: me.id,
            username: &username,
            email: &email,
            password_hash: &hash,
            now_ms: now_ms(),
        };
        match self.store.create_bot(bot).await {
            Ok(bot) => Ok(bot),
            Err(StoreError::Conflict) => Err(Error::Taken),
            Err(e) => Err(e.into()),
        }
    }

    /// `me`'s bots, oldest first.
    pub async fn bots(&self, me: &User) -> Result<Vec<Bot>> {
        allow(me, Need::Manage, None)?;
        self.budgets.event(me.id)?;
        Ok(self.store.bots(me.id).await?)
    }

    /// One of `me`'s bots by its id; [`Error::NoSuchBot`] otherwise.
    async fn my_bot(&self, me: &User, id: &str) -> Result<Bot> {
        let id: UserId = id.parse().map_err(|_| Error::NoSuchBot)?;
        let bots = self.store.bots(me.id).await?;
        bots.into_iter()
            .find(|b| b.user.id == id)
            .ok_or(Error::NoSuchBot)
    }

    /// Deletes one of `me`'s bots: its tokens stop working at once and it
    /// can never act again; its messages stay, and so does its name.
    pub async fn delete_bot(&self, me: &User, id: &str) -> Result<()> {
        allow(me, Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let bot = self.my_bot(me, id).await?;
        match self.store.delete_bot(me.id, bot.user.id, now_ms()).await? {
            true => Ok(()),
            false => Err(Error::NoSuchBot),
        }
    }

    /// Makes a token for one of `me`'s bots; returns it with its secret,
    /// which is never shown again.
    pub async fn create_bot_token(
        &self,
        me: &User,
        bot_id: &str,
        new: NewToken,
    ) -> Result<(BotToken, String)> {
        allow(me, Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let bot = self.my_bot(me, bot_id).await?;
        let grant = new.grant?;
        if self.store.bot_tokens(bot.user.id).await?.len() >= MAX_TOKENS_PER_BOT {
            return Err(Error::TooMany("tokens", MAX_TOKENS_PER_BOT));
        }
        let secret = format!("{TOKEN_PREFIX}{}", secrets::new_token());
        let token = BotToken {
            id: secrets::new_session_id(),
            bot_id: bot.user.id,
            grant,
            created_at: now_ms(),
        };
        self.store
            .create_bot_token(&secrets::token_hash(&secret), &token)
            .await?;
        Ok((token, secret))
    }

    /// The tokens of one of `me`'s bots (never their secrets).
    pub async fn bot_tokens(&self, me: &User, bot_id: &str) -> Result<Vec<BotToken>> {
        allow(me, Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let bot = self.my_bot(me, bot_id).await?;
        Ok(self.store.bot_tokens(bot.user.id).await?)
    }

    /// Revokes a token of one of `me`'s bots: the next request with it is
    /// refused (each request looks its token up).
    pub async fn revoke_bot_token(&self, me: &User, bot_id: &str, id: &str) -> Result<()> {
        allow(me, Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let bot = self.my_bot(me, bot_id).await?;
        match self.store.delete_bot_token(bot.user.id, id).await? {
            true => Ok(()),
            false => Err(Error::NoSuchBotToken),
        }
    }

    /// The session a bot token stands for: the bot, with the token's grant.
    pub(super) async fn bot_session(&self, token: &str) -> Result<Session> {
        let token_hash = secrets::token_hash(token);
        let (mut user, token) = self
            .store
            .bot_token(&token_hash)
            .await?
            .ok_or(Error::Unauthorized)?;
        user.grant = Some(token.grant);
        Ok(Session::of_bot(user, token_hash, token.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bot(read: bool, send: bool, rooms: Option<&[&str]>) -> User {
        User {
            id: 1,
            username: "b".into(),
            email: "b@bots.invalid".into(),
            grant: Some(Grant {
                read,
                send,
                rooms: rooms.map(|r| r.iter().map(|s| s.to_string()).collect()),
            }),
        }
    }

    #[test]
    fn scopes_and_rooms_decide() {
        let person = User {
            grant: None,
            ..bot(false, false, None)
        };
        assert!(allow(&person, Need::Manage, None).is_ok());
        let reader = bot(true, false, None);
        assert!(allow(&reader, Need::Read, Some("r")).is_ok());
        assert!(allow(&reader, Need::Send, Some("r")).is_err());
        assert!(allow(&reader, Need::Manage, None).is_err());
        let limited = bot(true, true, Some(&["a"]));
        assert!(allow(&limited, Need::Send, Some("a")).is_ok());
        assert!(allow(&limited, Need::Send, Some("b")).is_err());
        assert!(allow(&limited, Need::Read, None).is_ok());
        assert!(sees(&limited, "a") && !sees(&limited, "b"));
    }

    #[test]
    fn token_bodies() {
        let ok = NewToken::from_json(&json!({"scopes": ["send", "read"], "rooms": ["a", "a"]}));
        let grant = ok.grant.unwrap();
        assert!(grant.read && grant.send);
        assert_eq!(grant.rooms, Some(vec!["a".to_owned()]));
        for bad in [
            json!({}),
            json!({"scopes": []}),
            json!({"scopes": ["write"]}),
            json!({"scopes": ["read"], "rooms": []}),
            json!({"scopes": ["read"], "rooms": "a"}),
        ] {
            assert!(NewToken::from_json(&bad).grant.is_err(), "{bad}");
        }
    }
}
