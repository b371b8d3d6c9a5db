//! The domain core: users, sessions, rooms, membership, messages and their rules.
//!
//! The web pages, the JSON API and the Socket.IO handlers all call [`Natter`];
//! they only translate requests in and results out. A rule lives here once.

pub mod connections;
pub mod delivery;
pub mod error;
pub mod model;
pub mod notify;
pub mod password;
pub mod rules;
pub mod secrets;
pub mod throttle;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;
use serde_json::Value;

use crate::store::{GroupChange, MessageChange, NewMessage, Outcome, Store, StoreError};
use connections::{ConnectionLimits, ConnectionPermit, Connections};
use delivery::Delivery;
pub use error::{Error, Result};
use model::{Chat, Member, Message, Page, Quote, RoomAccess, RoomKind, RoomState, User, UserId};
use notify::{Notifier, Notify, Presence, Receipt, Typing};
use password::{HashCost, PasswordHasher};
use rules::Limits;
use throttle::{Attempt, Throttle, ThrottleLimits};

/// A signed-in session: who, and the hash that names the session for revocation.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub token_hash: Vec<u8>,
}

/// A registration form or API body, before validation.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub username: String,
    pub email: String,
    pub password: String,
}

/// A send as a client asked for it, before validation.
#[derive(Debug, Clone)]
pub struct Send<'a> {
    pub rid: &'a str,
    pub message: &'a Value,
    pub client_id: Option<&'a Value>,
    /// The `seq` of the message it answers, if any.
    pub reply_to: Option<&'a Value>,
    /// The socket it came from: every other socket in the room hears of it.
    pub origin: Option<String>,
}

pub struct Natter {
    store: Arc<dyn Store>,
    /// Where sends go: concurrent ones share a transaction, then are announced in order.
    delivery: Delivery,
    /// Who hears about what happens (connected sockets, on every node).
    notify: Notify,
    /// (room, user) pairs known to be members of a DIRECT room, whose members
    /// never change, so a positive answer stays true on every node. Group
    /// memberships are never cached: a removal on one node must hold on all.
    members: Cache<(String, model::UserId), ()>,
    /// (room, user) pairs whose last "typing" went out less than
    /// [`TYPING_EVERY`] ago: the next ones are dropped.
    typing: Cache<(String, model::UserId), ()>,
    hasher: PasswordHasher,
    limits: Limits,
    send_limiter: DefaultKeyedRateLimiter<model::UserId>,
    /// Login and registration attempts, per account and per client address.
    throttle: Arc<Throttle>,
    connections: Connections,
    /// `true` while sends are taken. Each send holds it for reading until it
    /// is stored and announced; [`Natter::drain`] takes it for writing, so it
    /// waits for those in flight and every later send finds it `false`.
    accepting: tokio::sync::RwLock<bool>,
}

/// How many (room, user) memberships the send path remembers.
const MEMBERSHIP_CACHE_ENTRIES: u64 = 100_000;
/// At most one "typing" per user and room is passed on this often.
const TYPING_EVERY: Duration = Duration::from_secs(2);
/// A user whose last socket closed is announced offline only if no socket came
/// back meanwhile: a page reload does not flicker their presence.
const OFFLINE_AFTER: Duration = Duration::from_secs(2);
/// A message holds at most this many different emoji.
const MAX_DISTINCT_REACTIONS: usize = 20;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Budgets that are full again carry no information: forget them every minute,
/// for as long as the throttle lives.
fn forget_idle_budgets(throttle: &Arc<Throttle>) {
    let throttle = Arc::downgrade(throttle);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match throttle.upgrade() {
                Some(throttle) => throttle.forget_idle(),
                None => break,
            }
        }
    });
}

impl Natter {
    /// Must be called inside a tokio runtime: it starts the group-commit task.
    pub fn new(store: Arc<dyn Store>, limits: Limits, cost: HashCost) -> anyhow::Result<Self> {
        let rate = NonZeroU32::new(limits.sends_per_second)
            .ok_or_else(|| anyhow::anyhow!("the send rate must be at least 1 per second"))?;
        let burst = NonZeroU32::new(limits.send_burst)
            .ok_or_else(|| anyhow::anyhow!("the send burst must be at least 1"))?;
        let throttle = Arc::new(Throttle::new(ThrottleLimits::default())?);
        forget_idle_budgets(&throttle);
        let notify = Notify::default();
        Ok(Natter {
            delivery: Delivery::start(store.clone(), notify.clone()),
            notify,
            typing: Cache::builder()
                .max_capacity(MEMBERSHIP_CACHE_ENTRIES)
                .time_to_live(TYPING_EVERY)
                .build(),
            store,
            hasher: PasswordHasher::new(cost)?,
            send_limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            members: Cache::builder()
                .max_capacity(MEMBERSHIP_CACHE_ENTRIES)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            limits,
            throttle,
            connections: Connections::new(ConnectionLimits::default()),
            accepting: tokio::sync::RwLock::new(true),
        })
    }

    /// Replaces the default brute-force and connection limits.
    pub fn with_abuse_limits(
        mut self,
        throttle: ThrottleLimits,
        connections: ConnectionLimits,
    ) -> anyhow::Result<Self> {
        self.throttle = Arc::new(Throttle::new(throttle)?);
        self.connections = Connections::new(connections);
        forget_idle_budgets(&self.throttle);
        Ok(self)
    }

    /// Admits one more live connection (socket) of `user` on this node, or
    /// refuses it with [`Error::TooManyConnections`]; dropping the permit frees the place.
    pub fn admit_connection(&self, user: model::UserId) -> Result<ConnectionPermit> {
        self.connections.admit(user)
    }

    /// Sets who hears about what happens (the realtime layer, built after us).
    pub fn notify_with(&self, notifier: Arc<dyn Notifier>) {
        self.notify.set(notifier);
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the database answers (readiness probes).
    pub async fn ping(&self) -> Result<()> {
        Ok(self.store.ping().await?)
    }

    // ----------------------------------------------------------------- users

    /// Registers a user. Field errors come back as [`Error::Invalid`] naming the field.
    /// `client` is the address the request came from, when known (for throttling).
    pub async fn register(&self, form: Registration, client: Option<IpAddr>) -> Result<User> {
        self.throttle
            .check(Attempt::Register, &form.email, client)?;
        let username = rules::username(&form.username).map_err(|e| e.in_field("username"))?;
        let email = rules::email(&form.email).map_err(|e| e.in_field("email"))?;
        rules::password(&form.password).map_err(|e| e.in_field("password"))?;
        let hash = self.hasher.hash(form.password).await?;
        match self
            .store
            .create_user(&username, &email, &hash, now_ms())
            .await
        {
            Ok(user) => Ok(user),
            Err(StoreError::Conflict) => Err(Error::Taken),
            Err(StoreError::Database(e)) => Err(e.into()),
        }
    }

    /// Checks credentials and opens a new session; returns it with its secret token.
    /// Every login mints a fresh token, so a session id is never carried across a login.
    /// Attempts are throttled per account and per `client` address, the same
    /// way whether or not the account exists.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<(Session, String)> {
        self.throttle.check(Attempt::Login, email, client)?;
        let email = email.trim().to_lowercase();
        let Some((user, hash)) = self.store.credentials(&email).await? else {
            self.hasher.verify_nothing(password.to_owned()).await;
            return Err(Error::BadCredentials);
        };
        if !self.hasher.verify(password.to_owned(), hash).await? {
            return Err(Error::BadCredentials);
        }
        // Only after the password matched: the answer must not reveal the account's state.
        if self.store.is_disabled(user.id).await? {
            return Err(Error::Disabled);
        }
        let token = secrets::new_token();
        let token_hash = secrets::token_hash(&token);
        self.store
            .create_session(&token_hash, user.id, now_ms())
            .await?;
        Ok((Session { user, token_hash }, token))
    }

    /// Sets a new password (checked by the registration rule) for the user with
    /// `email` and ends all their sessions.
    pub async fn reset_password(&self, email: &str, password: String) -> Result<User> {
        let user = self.user_by_email(email).await?;
        rules::password(&password).map_err(|e| e.in_field("password"))?;
        let hash = self.hasher.hash(password).await?;
        self.store.set_password(user.id, &hash).await?;
        Ok(user)
    }

    /// Disables the account with `email`: login is refused with [`Error::Disabled`]
    /// and every session ends (sockets already open on a server stay open until
    /// they disconnect: see docs/operations.md).
    pub async fn disable(&self, email: &str) -> Result<User> {
        let user = self.user_by_email(email).await?;
        self.store.disable_user(user.id, now_ms()).await?;
        Ok(user)
    }

    async fn user_by_email(&self, email: &str) -> Result<User> {
        let email = rules::email(email)?;
        self.store
            .user_by_email(&email)
            .await?
            .ok_or(Error::NoSuchUser)
    }

    /// Resolves a cookie or bearer token to its live session.
    pub async fn authenticate(&self, token: &str) -> Result<Session> {
        let token_hash = secrets::token_hash(token);
        match self.store.session_user(&token_hash).await? {
            Some(user) => Ok(Session { user, token_hash }),
            None => Err(Error::Unauthorized),
        }
    }

    /// Ends a session everywhere: the token stops working at once.
    pub async fn logout(&self, session: &Session) -> Result<()> {
        Ok(self.store.delete_session(&session.token_hash).await?)
    }

    // ----------------------------------------------------------------- rooms

    /// Opens the direct room between `me` and the user with `email`, creating it
    /// on first use. Returns the chat as `me` sees it and whether it is new; a
    /// new one appears at once in both people's lists.
    pub async fn open_direct_chat(&self, me: &User, email: &str) -> Result<(Chat, bool)> {
        let other = self.user_by_email(email).await?;
        if other.id == me.id {
            return Err(Error::SelfChat);
        }
        let (rid, outcome) = self
            .store
            .open_direct_room(&secrets::new_room_id(), me.id, other.id, now_ms())
            .await?;
        let created = outcome == Outcome::Created;
        if created {
            self.tell_members(&rid).await?;
        }
        Ok((self.chat(me, &rid).await?, created))
    }

    /// The ids of the user's rooms.
    pub async fn room_ids(&self, me: &User) -> Result<Vec<String>> {
        Ok(self.store.room_ids(me.id).await?)
    }

    /// The user's chats, most recently active first, with their members' presence.
    pub async fn chats(&self, me: &User) -> Result<Vec<Chat>> {
        let mut chats = self.store.chats(me.id).await?;
        let mut people: Vec<UserId> = chats
            .iter()
            .flat_map(|c| c.members.iter().map(|m| m.id))
            .collect();
        people.sort_unstable();
        people.dedup();
        let online = self.notify.get().online(&people).await;
        for member in chats.iter_mut().flat_map(|c| c.members.iter_mut()) {
            member.online = online.contains(&member.id);
        }
        Ok(chats)
    }

    /// One of the user's chats, as it appears in their list.
    pub async fn chat(&self, me: &User, rid: &str) -> Result<Chat> {
        let mut chat = self.store.chat(rid, me.id).await?.ok_or(Error::NotMember)?;
        self.fill_presence(&mut chat.members).await;
        Ok(chat)
    }

    /// A room's members with their presence; members only.
    pub async fn members(&self, me: &User, rid: &str) -> Result<Vec<Member>> {
        self.require_member(me, rid).await?;
        let mut members = self.store.members(rid).await?;
        self.fill_presence(&mut members).await;
        Ok(members)
    }

    async fn fill_presence(&self, members: &mut [Member]) {
        let ids: Vec<UserId> = members.iter().map(|m| m.id).collect();
        let online = self.notify.get().online(&ids).await;
        for member in members {
            member.online = online.contains(&member.id);
        }
    }

    /// Sends each member of the room the room as they now see it.
    async fn tell_members(&self, rid: &str) -> Result<()> {
        let notifier = self.notify.get();
        for member in self.store.members(rid).await? {
            if let Some(mut chat) = self.store.chat(rid, member.id).await? {
                self.fill_presence(&mut chat.members).await;
                notifier.chat_changed(member.id, &chat).await;
            }
        }
        Ok(())
    }

    /// The membership check every join, send, sync and history read goes through.
    pub async fn require_member(&self, me: &User, rid: &str) -> Result<RoomState> {
        match self.store.room_access(rid, me.id).await? {
            RoomAccess::Member(room) => Ok(room),
            RoomAccess::NotMember => Err(Error::NotMember),
            RoomAccess::NoSuchRoom => Err(Error::NoSuchRoom),
        }
    }

    /// The membership check of the hot paths (sends, typing): direct rooms'
    /// members are remembered, as they never change.
    async fn require_member_cached(&self, me: &User, rid: &str) -> Result<()> {
        let key = (rid.to_owned(), me.id);
        if !self.members.contains_key(&key) {
            let room = self.require_member(me, rid).await?;
            if room.kind == RoomKind::Direct {
                self.members.insert(key, ());
            }
        }
        Ok(())
    }

    /// Opens a room for reading: checks membership and marks it read up to now.
    /// Returns the room's last `seq`.
    pub async fn join(&self, me: &User, rid: &str) -> Result<i64> {
        let room = self.require_member(me, rid).await?;
        self.mark_read(me, rid, room.last_seq).await?;
        Ok(room.last_seq)
    }

    /// Moves the user's read marker in the room forward to `seq` (capped at
    /// the room's last message) and returns where it is. When it moved, the
    /// room hears of it: others for "seen", the user's other devices for the count.
    pub async fn read(&self, me: &User, rid: &str, seq: &Value) -> Result<i64> {
        let seq = rules::seq_cursor(Some(seq), "seq")?
            .ok_or_else(|| Error::invalid("seq is required"))?;
        let room = self.require_member(me, rid).await?;
        self.mark_read(me, rid, seq.min(room.last_seq)).await
    }

    async fn mark_read(&self, me: &User, rid: &str, seq: i64) -> Result<i64> {
        let marker = self.store.mark_read(rid, me.id, seq).await?;
        if marker.moved {
            let receipt = Receipt {
                rid: rid.to_owned(),
                user_id: me.id.to_string(),
                read_seq: marker.read_seq,
                unread: marker.unread,
            };
            self.notify.get().receipt(&receipt).await;
        }
        Ok(marker.read_seq)
    }

    // ---------------------------------------------------------------- groups

    /// Creates a group owned by `me` with the users of `emails` (unknown ones
    /// refuse it all); returns it as `me` sees it.
    pub async fn create_group(
        &self,
        me: &User,
        title: &Value,
        emails: Option<&Value>,
    ) -> Result<Chat> {
        let title = rules::group_title(title)?;
        let mut members = Vec::new();
        for email in rules::email_list(emails)? {
            let user = self.user_by_email(&email).await?;
            if user.id != me.id && !members.contains(&user.id) {
                members.push(user.id);
            }
        }
        let rid = secrets::new_room_id();
        let note = format!("{} created the group “{title}”", me.username);
        let change = GroupChange::Create {
            title: &title,
            members: &members,
        };
        self.store
            .change_group(&rid, me, change, &note, now_ms())
            .await?;
        self.tell_members(&rid).await?;
        self.chat(me, &rid).await
    }

    /// Renames a group; any member may.
    pub async fn rename_group(&self, me: &User, rid: &str, title: &Value) -> Result<Chat> {
        let title = rules::group_title(title)?;
        self.require_group(me, rid).await?;
        let note = format!("{} renamed the group to “{title}”", me.username);
        self.change_group(me, rid, GroupChange::Rename { title: &title }, &note, &[])
            .await?;
        self.chat(me, rid).await
    }

    /// Adds the user with `email` to a group; its owner only.
    pub async fn add_member(&self, me: &User, rid: &str, email: &Value) -> Result<Chat> {
        let room = self.require_group(me, rid).await?;
        if room.owner_id != Some(me.id) {
            return Err(Error::NotOwner);
        }
        let email = email
            .as_str()
            .ok_or_else(|| Error::invalid("email must be a string"))?;
        let user = self.user_by_email(email).await?;
        let note = format!("{} added {}", me.username, user.username);
        let change = GroupChange::Add { user: user.id };
        self.change_group(me, rid, change, &note, &[]).await?;
        self.chat(me, rid).await
    }

    /// Takes a member out of a group: the owner may remove anyone, anyone may
    /// remove themselves (leave; `"me"` names the caller).
    pub async fn remove_member(&self, me: &User, rid: &str, who: &Value) -> Result<()> {
        let room = self.require_group(me, rid).await?;
        let target = match who {
            Value::String(s) if s == "me" => me.id,
            other => rules::user_id(Some(other))?,
        };
        let note = if target == me.id {
            format!("{} left", me.username)
        } else {
            if room.owner_id != Some(me.id) {
                return Err(Error::NotOwner);
            }
            let member = self
                .store
                .members(rid)
                .await?
                .into_iter()
                .find(|m| m.id == target);
            let member = member.ok_or(Error::NoSuchUser)?;
            format!("{} removed {}", me.username, member.username)
        };
        self.change_group(
            me,
            rid,
            GroupChange::Remove { user: target },
            &note,
            &[target],
        )
        .await
    }

    /// A member's check for a group operation.
    async fn require_group(&self, me: &User, rid: &str) -> Result<RoomState> {
        let room = self.require_member(me, rid).await?;
        if room.kind != RoomKind::Group {
            return Err(Error::NotGroup);
        }
        Ok(room)
    }

    /// Stores a group change with its system message, then tells everyone
    /// concerned: the room the message, each member the room as it now is.
    ///
    /// The sockets of those who are `gone` leave the room (on every node)
    /// BEFORE the removal commits: a message committed after the removal, on
    /// any node, is published after their leave, so it never reaches them.
    async fn change_group(
        &self,
        me: &User,
        rid: &str,
        change: GroupChange<'_>,
        note: &str,
        gone: &[UserId],
    ) -> Result<()> {
        for user in gone {
            self.notify.get().chat_removed(*user, rid).await;
        }
        let stored = self
            .store
            .change_group(rid, me, change, note, now_ms())
            .await;
        let message = match (stored, change) {
            (Ok(message), _) => message,
            (Err(e), _) if !gone.is_empty() => {
                // Nobody left after all (a concurrent removal): members get the room back.
                self.tell_members(rid).await?;
                return Err(match e {
                    StoreError::Conflict => Error::NoSuchUser,
                    other => other.into(),
                });
            }
            (Err(StoreError::Conflict), GroupChange::Add { .. }) => {
                return Err(Error::AlreadyMember);
            }
            (Err(e), _) => return Err(e.into()),
        };
        self.notify.get().message_stored(&message, None).await;
        self.tell_members(rid).await
    }

    // -------------------------------------------------------------- messages

    /// Validates, durably stores and announces a message. The server alone
    /// decides the sender and the time; the ack may be sent once this returns.
    pub async fn send(&self, me: &User, send: Send<'_>) -> Result<Message> {
        let accepting = self.accepting.read().await;
        if !*accepting {
            return Err(Error::ShuttingDown);
        }
        // The hot path: a direct room's members skip the membership query once known.
        self.require_member_cached(me, send.rid).await?;
        let body = rules::message_body(send.message, &self.limits)?;
        let client_id = rules::client_id(send.client_id)?;
        let reply_to = match send.reply_to {
            None | Some(Value::Null) => None,
            Some(seq) => Some(self.quote(send.rid, rules::message_seq(Some(seq))?).await?),
        };
        if self.send_limiter.check_key(&me.id).is_err() {
            return Err(Error::RateLimited);
        }
        let new = NewMessage {
            rid: send.rid.to_owned(),
            sender: me.clone(),
            body,
            client_id,
            reply_to,
            now_ms: now_ms(),
        };
        let (message, _) = self.delivery.store(new, send.origin).await?;
        Ok(message)
    }

    /// The message a reply quotes, as it is now.
    async fn quote(&self, rid: &str, seq: i64) -> Result<Quote> {
        let quoted = self
            .store
            .message(rid, seq)
            .await?
            .ok_or(Error::NoSuchMessage)?;
        Ok(Quote {
            seq,
            sender_username: quoted.sender_username,
            message: quoted.message.chars().take(200).collect(),
            deleted: quoted.deleted,
        })
    }

    /// Edits one of `me`'s text messages (the new text follows the rules of a
    /// new message) and tells the room, but the socket `origin`.
    pub async fn edit(
        &self,
        me: &User,
        rid: &str,
        seq: &Value,
        text: &Value,
        origin: Option<&str>,
    ) -> Result<Message> {
        let seq = rules::message_seq(Some(seq))?;
        let body = rules::message_body(text, &self.limits)?;
        self.require_member(me, rid).await?;
        let change = MessageChange::Edit(&body);
        let changed = self
            .store
            .change_message(rid, seq, me.id, change, now_ms())
            .await?;
        let message = match changed {
            Some(message) => message,
            None => return Err(self.why_unchanged(me, rid, seq).await?.1),
        };
        self.notify.get().message_updated(&message, origin).await;
        Ok(message)
    }

    /// Deletes one of `me`'s text messages (its text and reactions are gone
    /// for good) and tells the room, but the socket `origin`. Deleting it
    /// again answers the deleted message.
    pub async fn delete(
        &self,
        me: &User,
        rid: &str,
        seq: &Value,
        origin: Option<&str>,
    ) -> Result<Message> {
        let seq = rules::message_seq(Some(seq))?;
        self.require_member(me, rid).await?;
        let changed = self
            .store
            .change_message(rid, seq, me.id, MessageChange::Delete, now_ms())
            .await?;
        let message = match changed {
            Some(message) => message,
            None => match self.why_unchanged(me, rid, seq).await? {
                (Some(message), Error::Deleted) => return Ok(message),
                (_, e) => return Err(e),
            },
        };
        self.notify.get().message_updated(&message, origin).await;
        Ok(message)
    }

    /// Why a change to message `seq` matched nothing: the error to answer,
    /// with the message when there is one.
    async fn why_unchanged(
        &self,
        me: &User,
        rid: &str,
        seq: i64,
    ) -> Result<(Option<Message>, Error)> {
        let message = self.store.message(rid, seq).await?;
        let why = match &message {
            None => Error::NoSuchMessage,
            Some(m) if m.kind == model::MessageKind::System => Error::NoSuchMessage,
            Some(m) if m.sender_id != me.id => Error::NotSender,
            Some(m) if m.deleted => Error::Deleted,
            // It changed between the two reads: the caller may try again.
            Some(_) => Error::Internal(anyhow::anyhow!("message {rid}/{seq} changed meanwhile")),
        };
        Ok((message, why))
    }

    /// Adds `me`'s `emoji` to a message, or takes it away if it was there,
    /// and tells the room, but the socket `origin`.
    pub async fn react(
        &self,
        me: &User,
        rid: &str,
        seq: &Value,
        emoji: &Value,
        origin: Option<&str>,
    ) -> Result<Message> {
        let seq = rules::message_seq(Some(seq))?;
        let emoji = rules::emoji(Some(emoji))?;
        self.require_member(me, rid).await?;
        let current = self.store.message(rid, seq).await?;
        match &current {
            None => return Err(Error::NoSuchMessage),
            Some(m) if m.kind == model::MessageKind::System => return Err(Error::NoSuchMessage),
            Some(m) if m.deleted => return Err(Error::Deleted),
            Some(m)
                if m.reactions.len() >= MAX_DISTINCT_REACTIONS
                    && !m.reactions.iter().any(|r| r.emoji == emoji) =>
            {
                return Err(Error::invalid("a message holds at most 20 different emoji"));
            }
            Some(_) => {}
        }
        let toggled = self
            .store
            .toggle_reaction(rid, seq, me.id, &emoji, now_ms())
            .await?;
        // Deleted between the two reads.
        let message = toggled.ok_or(Error::Deleted)?;
        self.notify.get().message_updated(&message, origin).await;
        Ok(message)
    }

    /// Tells the room's other sockets that `me` is typing (at most once per
    /// [`TYPING_EVERY`]; the rest are dropped) or stopped (always). Nothing is stored.
    pub async fn typing(
        &self,
        me: &User,
        rid: &str,
        typing: Option<&Value>,
        origin: Option<&str>,
    ) -> Result<()> {
        let typing = rules::typing(typing)?;
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

    /// Shutdown, first step: refuses new sends (`unavailable`) and returns
    /// once every send already taken is stored, announced and answered.
    pub async fn drain(&self) {
        *self.accepting.write().await = false;
    }

    /// Shutdown, last step: closes the database connections cleanly (SQLite
    /// checkpoints its write-ahead log into the database file).
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// A page of history (see [`Page`]); members only.
    pub async fn history(&self, me: &User, rid: &str, page: Page) -> Result<Vec<Message>> {
        self.require_member(me, rid).await?;
        Ok(self.store.messages(rid, page).await?)
    }

    /// What a reconnecting client missed: messages after `after_seq`, ascending,
    /// and — given `after_rev` — the changes to earlier ones since that revision.
    /// Marks the new messages read, as the client is now showing them.
    pub async fn sync(&self, me: &User, rid: &str, since: Since) -> Result<Synced> {
        let room = self.require_member(me, rid).await?;
        // Changes first: an edit made between the two reads then shows in
        // `messages` (read after) or comes again next time (its revision is
        // above the one reported), never neither.
        let changes = match since.after_rev {
            Some(after_rev) => {
                let (mut changed, rev) = self
                    .changes_after(rid, &room, after_rev, since.limit)
                    .await?;
                changed.retain(|m| m.seq <= since.after_seq);
                Some((changed, rev))
            }
            None => None,
        };
        let page = Page {
            before: None,
            after: Some(since.after_seq),
            limit: since.limit,
        };
        let messages = self.store.messages(rid, page).await?;
        if let Some(last) = messages.last() {
            self.mark_read(me, rid, last.seq).await?;
        }
        Ok(Synced { messages, changes })
    }

    /// Messages of the room changed after revision `after_rev`, and the room's revision.
    pub async fn changes(
        &self,
        me: &User,
        rid: &str,
        after_rev: i64,
        limit: i64,
    ) -> Result<(Vec<Message>, i64)> {
        let room = self.require_member(me, rid).await?;
        self.changes_after(rid, &room, after_rev, limit).await
    }

    /// A page of changes after `after_rev`, and the revision a client has
    /// caught up to with it: the room's, or the page's last when the page is
    /// full (more changes follow it).
    async fn changes_after(
        &self,
        rid: &str,
        room: &RoomState,
        after_rev: i64,
        limit: i64,
    ) -> Result<(Vec<Message>, i64)> {
        let changed = self.store.changes(rid, after_rev, limit).await?;
        let rev = match changed.last() {
            Some(last) if changed.len() as i64 >= limit => last.rev,
            _ => room.last_rev,
        };
        Ok((changed, rev))
    }

    /// Full-text search of the text messages of `me`'s rooms, newest first.
    pub async fn search(
        &self,
        me: &User,
        query: Option<&Value>,
        limit: Option<&Value>,
    ) -> Result<Vec<Message>> {
        let words = rules::search_words(query)?;
        let limit =
            rules::page_limit(limit, SEARCH_PAGE_DEFAULT, &self.limits)?.min(SEARCH_PAGE_MAX);
        Ok(self.store.search(me.id, &words, limit).await?)
    }

    // -------------------------------------------------------------- presence

    /// A socket of `me` connected: the rooms they share hear they are online.
    pub async fn connected(&self, me: &User) -> Result<()> {
        let presence = Presence {
            user_id: me.id.to_string(),
            online: true,
            last_seen: None,
        };
        let rooms = self.store.room_ids(me.id).await?;
        self.notify.get().presence(rooms, &presence).await;
        Ok(())
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
        self.notify.get().presence(rooms, &presence).await;
        Ok(())
    }
}

/// Where a `sync` starts: after `after_seq` (and, for changes, `after_rev`).
#[derive(Debug, Clone, Copy)]
pub struct Since {
    pub after_seq: i64,
    pub after_rev: Option<i64>,
    pub limit: i64,
}

/// What `sync` answers: new messages and, when asked for (`after_rev`), the
/// changes to earlier ones with the revision they reach.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Synced {
    pub messages: Vec<Message>,
    pub changes: Option<(Vec<Message>, i64)>,
}

/// Search pages: smaller than history pages, as each hit carries its context.
const SEARCH_PAGE_DEFAULT: i64 = 20;
const SEARCH_PAGE_MAX: i64 = 50;
