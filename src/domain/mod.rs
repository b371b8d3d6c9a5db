//! The domain core: users, sessions, rooms, membership, messages and their rules.
//!
//! The web pages, the JSON API and the Socket.IO handlers all call [`Natter`];
//! they only translate requests in and results out. A rule lives here once.

pub mod connections;
pub mod delivery;
pub mod error;
pub mod model;
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

use crate::store::{NewMessage, Outcome, Store, StoreError};
use connections::{ConnectionLimits, ConnectionPermit, Connections};
use delivery::{Announcer, Delivery};
pub use error::{Error, Result};
use model::{Chat, Message, Page, RoomAccess, User};
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
    /// The socket it came from: every other socket in the room hears of it.
    pub origin: Option<String>,
}

pub struct Natter {
    store: Arc<dyn Store>,
    /// Where sends go: concurrent ones share a transaction, then are announced in order.
    delivery: Delivery,
    /// (room, user) pairs known to be members. Membership only grows today
    /// (nobody leaves a direct room), so a positive answer stays true; the
    /// entries age out anyway, and removal must invalidate them once it exists.
    members: Cache<(String, model::UserId), ()>,
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
        Ok(Natter {
            delivery: Delivery::start(store.clone()),
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

    /// Sets who hears about stored messages (the realtime layer, built after us).
    pub fn announce_with(&self, announcer: Arc<dyn Announcer>) {
        self.delivery.announce_with(announcer);
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
    /// on first use. Returns the chat as `me` sees it and whether it is new.
    pub async fn open_direct_chat(&self, me: &User, email: &str) -> Result<(Chat, bool)> {
        let other = self.user_by_email(email).await?;
        if other.id == me.id {
            return Err(Error::SelfChat);
        }
        let (rid, outcome) = self
            .store
            .open_direct_room(&secrets::new_room_id(), me.id, other.id, now_ms())
            .await?;
        let chat = self.chat(me, &rid).await?;
        Ok((chat, outcome == Outcome::Created))
    }

    /// The ids of the user's rooms.
    pub async fn room_ids(&self, me: &User) -> Result<Vec<String>> {
        Ok(self.store.room_ids(me.id).await?)
    }

    /// The user's chats, most recently active first.
    pub async fn chats(&self, me: &User) -> Result<Vec<Chat>> {
        Ok(self.store.chats(me.id).await?)
    }

    async fn chat(&self, me: &User, rid: &str) -> Result<Chat> {
        self.chats(me)
            .await?
            .into_iter()
            .find(|c| c.room_id == rid)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("room {rid} vanished")))
    }

    /// The membership check every join, send, sync and history read goes through.
    /// Returns the room's last `seq`.
    pub async fn require_member(&self, me: &User, rid: &str) -> Result<i64> {
        match self.store.room_access(rid, me.id).await? {
            RoomAccess::Member { last_seq } => Ok(last_seq),
            RoomAccess::NotMember => Err(Error::NotMember),
            RoomAccess::NoSuchRoom => Err(Error::NoSuchRoom),
        }
    }

    /// Opens a room for reading: checks membership and marks it read up to now.
    pub async fn join(&self, me: &User, rid: &str) -> Result<i64> {
        let last_seq = self.require_member(me, rid).await?;
        self.mark_read(me, rid, last_seq).await?;
        Ok(last_seq)
    }

    async fn mark_read(&self, me: &User, rid: &str, seq: i64) -> Result<()> {
        if seq > 0 {
            self.store.mark_read(rid, me.id, seq).await?;
        }
        Ok(())
    }

    // -------------------------------------------------------------- messages

    /// Validates, durably stores and announces a message. The server alone
    /// decides the sender and the time; the ack may be sent once this returns.
    pub async fn send(&self, me: &User, send: Send<'_>) -> Result<Message> {
        let accepting = self.accepting.read().await;
        if !*accepting {
            return Err(Error::ShuttingDown);
        }
        // The hot path: a member's sends skip the membership query once it is known.
        let key = (send.rid.to_owned(), me.id);
        if !self.members.contains_key(&key) {
            self.require_member(me, send.rid).await?;
            self.members.insert(key.clone(), ());
        }
        let body = rules::message_body(send.message, &self.limits)?;
        let client_id = rules::client_id(send.client_id)?;
        if self.send_limiter.check_key(&me.id).is_err() {
            return Err(Error::RateLimited);
        }
        let new = NewMessage {
            rid: key.0,
            sender: me.clone(),
            body,
            client_id,
            now_ms: now_ms(),
        };
        let (message, _) = self.delivery.store(new, send.origin).await?;
        Ok(message)
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

    /// What a reconnecting client missed: messages after `after_seq`, ascending.
    /// Marks them read, as the client is now showing them.
    pub async fn sync(
        &self,
        me: &User,
        rid: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Message>> {
        let page = Page {
            before: None,
            after: Some(after_seq),
            limit,
        };
        let messages = self.history(me, rid, page).await?;
        if let Some(last) = messages.last() {
            self.mark_read(me, rid, last.seq).await?;
        }
        Ok(messages)
    }
}
