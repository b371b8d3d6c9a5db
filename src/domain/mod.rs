//! The domain core: users, sessions, rooms, membership, messages and their rules.
//!
//! The web pages, the JSON API and the Socket.IO handlers all call [`Natter`];
//! they only translate requests in and results out. A rule lives here once.

pub mod accounts;
pub mod admin;
pub mod attachments;
pub mod bots;
pub mod budget;
pub mod connections;
pub mod delivery;
pub mod error;
mod groups;
pub mod invites;
mod messages;
pub mod model;
pub mod notify;
pub mod password;
mod presence;
pub mod push;
pub mod reset;
pub mod rules;
pub mod secrets;
mod sessions;
pub mod store;
pub mod throttle;
pub mod webhooks;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::sync::Cache;

use budget::{BudgetLimits, Budgets};
use connections::{ConnectionLimits, ConnectionPermit, Connections};
use delivery::Delivery;
pub use error::{Error, Result};
pub use groups::{Added, NewGroup};
pub use messages::{Edit, History, React, Search, Send, Since, Synced};
use model::{Chat, Member, Page, RoomAccess, RoomKind, RoomState, User, UserId};
use notify::{Notifier, Notify, Receipt};
use password::{HashCost, PasswordHasher};
use rules::Limits;
pub use sessions::{Session, SessionLifetimes};
use store::{Outcome, Store, StoreError};
use throttle::{Attempt, Throttle, ThrottleLimits};

/// A page of a user's chat list.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ChatList {
    pub chats: Vec<Chat>,
    /// Whether older chats follow this page.
    pub has_more: bool,
    /// What `before` takes for the next page (opaque); `None` on the last.
    #[schema(required = true)]
    pub next_before: Option<String>,
}

/// A registration form or API body, before validation.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub username: String,
    pub email: String,
    pub password: String,
    /// The invitation's code, if the person came with one.
    pub invite: Option<String>,
}

pub struct Natter {
    store: Arc<dyn Store>,
    /// Where sends go: concurrent ones share a transaction, then are announced in order.
    delivery: Delivery,
    /// Who hears about what happens (connected sockets, on every node).
    notify: Notify,
    /// Web Push to those away: the queue of stored messages, and its service.
    push: push::Push,
    /// Outgoing webhooks: the queue of stored messages (see [`webhooks`]).
    webhooks: webhooks::Webhooks,
    /// Where attachments are kept, and what uploads may cost; `None` where
    /// nothing is served (the operations commands, benchmarks).
    uploads: Option<Arc<attachments::Uploads>>,
    /// (room, user) pairs known to be members of a DIRECT room, whose members
    /// never change, so a positive answer stays true on every node. Group
    /// memberships are never cached: a removal on one node must hold on all.
    members: Cache<(String, model::UserId), ()>,
    /// (room, user) pairs whose last "typing" went out less than
    /// [`TYPING_EVERY`] ago: the next ones are dropped.
    typing: Cache<(String, model::UserId), ()>,
    hasher: PasswordHasher,
    limits: Limits,
    /// What each user may ask for: sends, other events, lookups, pages in flight.
    budgets: Arc<Budgets>,
    /// Login and registration attempts, per account and per client address.
    throttle: Arc<Throttle>,
    connections: Connections,
    lifetimes: SessionLifetimes,
    /// Batches of revocations this node's session watch has applied to its sockets.
    revocations_applied: AtomicU64,
    /// `true` while sends are taken. Each send holds it for reading until it
    /// is stored and announced; [`Natter::drain`] takes it for writing, so it
    /// waits for those in flight and every later send finds it `false`.
    accepting: tokio::sync::RwLock<bool>,
    /// Who may register, and who may invite, as the flags say (an admin's
    /// choice in the database overrides it: [`Natter::who_may_join`]).
    who_may_join: invites::WhoMayJoin,
    /// What the operator chose for accounts: group adds, deleted accounts.
    account_rules: accounts::AccountRules,
    /// Direct rooms known to be blocked (or not), for a short while
    /// ([`accounts::BLOCKS_CACHED_FOR`]): every send in one asks.
    blocked_rooms: Cache<String, bool>,
    /// Password reset by email, once its mail task has started (off until then).
    resets: std::sync::OnceLock<reset::Resets>,
    /// Cancelled when shutdown begins: what only reads (a search) stops
    /// then, rather than hold the shutdown up.
    stopping: tokio_util::sync::CancellationToken,
}

/// How many chats (with unread messages) of a list get their mentions counted.
const MENTIONS_COUNTED_CHATS: usize = 50;

/// How many (room, user) memberships the send path remembers.
const MEMBERSHIP_CACHE_ENTRIES: u64 = 100_000;
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Budgets that are full again carry no information: forget them every minute,
/// for as long as they live.
fn forget_idle_budgets(throttle: &Arc<Throttle>, budgets: &Arc<Budgets>) {
    let throttle = Arc::downgrade(throttle);
    let budgets = Arc::downgrade(budgets);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match (throttle.upgrade(), budgets.upgrade()) {
                (Some(throttle), Some(budgets)) => {
                    throttle.forget_idle();
                    budgets.forget_idle();
                }
                _ => break,
            }
        }
    });
}
impl Natter {
    /// Must be called inside a tokio runtime: it starts the group-commit task.
    pub fn new(store: Arc<dyn Store>, limits: Limits, cost: HashCost) -> anyhow::Result<Self> {
        let throttle = Arc::new(Throttle::new(ThrottleLimits::default())?);
        let budgets = Arc::new(Budgets::new(BudgetLimits::default())?);
        forget_idle_budgets(&throttle, &budgets);
        let notify = Notify::default();
        let push = push::Push::default();
        let webhooks = webhooks::Webhooks::default();
        Ok(Natter {
            delivery: Delivery::start(
                store.clone(),
                notify.clone(),
                (push.queue.clone(), webhooks.queue.clone()),
                limits.send_deadline,
            ),
            notify,
            push,
            webhooks,
            uploads: None,
            typing: Cache::builder()
                .max_capacity(MEMBERSHIP_CACHE_ENTRIES)
                .time_to_live(presence::TYPING_EVERY)
                .build(),
            store,
            hasher: PasswordHasher::new(cost)?,
            members: Cache::builder()
                .max_capacity(MEMBERSHIP_CACHE_ENTRIES)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            limits,
            budgets,
            throttle,
            connections: Connections::new(ConnectionLimits::default()),
            lifetimes: SessionLifetimes::default(),
            revocations_applied: AtomicU64::new(0),
            accepting: tokio::sync::RwLock::new(true),
            who_may_join: invites::WhoMayJoin::default(),
            account_rules: accounts::AccountRules::default(),
            blocked_rooms: Cache::builder()
                .max_capacity(MEMBERSHIP_CACHE_ENTRIES)
                .time_to_live(accounts::BLOCKS_CACHED_FOR)
                .build(),
            resets: std::sync::OnceLock::new(),
            stopping: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// Replaces the default brute-force, connection and per-user limits.
    pub fn with_abuse_limits(
        mut self,
        throttle: ThrottleLimits,
        connections: ConnectionLimits,
        budgets: BudgetLimits,
    ) -> anyhow::Result<Self> {
        self.throttle = Arc::new(Throttle::new(throttle)?);
        self.budgets = Arc::new(Budgets::new(budgets)?);
        self.connections = Connections::new(connections);
        forget_idle_budgets(&self.throttle, &self.budgets);
        Ok(self)
    }

    /// Replaces the default session lifetimes.
    pub fn with_session_lifetimes(mut self, lifetimes: SessionLifetimes) -> Self {
        self.lifetimes = lifetimes;
        self
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

    /// Registers a user. Field errors come back as [`Error::Invalid`] naming the field.
    /// `client` is the address the request came from, when known (for throttling).
    pub async fn register(&self, form: Registration, client: Option<IpAddr>) -> Result<User> {
        Ok(self.register_invited(form, client).await?.0)
    }

    /// Registers a user, as [`Natter::register`]; also returns the group the
    /// account joined with its invitation, if any (the sign-up page sends the
    /// person there). Who may register is the server's mode (see [`invites`]).
    pub async fn register_invited(
        &self,
        form: Registration,
        client: Option<IpAddr>,
    ) -> Result<(User, Option<String>)> {
        self.throttle
            .check(Attempt::Register, &form.email, client)?;
        let username = rules::username(&form.username).map_err(|e| e.in_field("username"))?;
        let email = rules::email(&form.email).map_err(|e| e.in_field("email"))?;
        rules::password(&form.password).map_err(|e| e.in_field("password"))?;
        let invite = self.admit(form.invite.as_deref()).await?;
        let made = match self.hasher.hash(form.password).await {
            Ok(hash) => match self
                .store
                .create_user(&username, &email, &hash, now_ms())
                .await
            {
                Ok(user) => Ok(user),
                Err(StoreError::Conflict) => Err(Error::Taken),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        };
        let user = match (made, &invite) {
            (Ok(user), _) => user,
            (Err(e), Some(invite)) => {
                self.store.give_back_invite(&invite.code).await?;
                return Err(e);
            }
            (Err(e), None) => return Err(e),
        };
        // The account is made: a failure to join its group now leaves it
        // made (logged), rather than answer an error for what succeeded.
        let room = match invite {
            Some(invite) => match self.join_by_invite(&user, &invite).await {
                Ok(()) => invite.room_id,
                Err(e) => {
                    tracing::warn!(error = %e, "an invited account could not join its group");
                    None
                }
            },
            None => None,
        };
        Ok((user, room))
    }

    /// Checks credentials and opens a new session; returns it with its secret token.
    /// Every login mints a fresh token, so a session id is never carried across a login.
    /// Attempts are throttled per `client` address, per account (from
    /// addresses it never signed in from) and per account and address, with
    /// backoff: the same way whether or not the account exists (see [`throttle`]).
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<(Session, String)> {
        self.throttle.check(Attempt::Login, email, client)?;
        // As registration stored it; a malformed one simply finds nobody.
        let email = rules::email(email).unwrap_or_else(|_| email.trim().to_lowercase());
        let Some((user, hash)) = self.store.credentials(&email).await? else {
            self.hasher.verify_nothing(password.to_owned()).await;
            self.throttle.failed(&email, client);
            return Err(Error::BadCredentials);
        };
        if !self.hasher.verify(password.to_owned(), hash).await? {
            self.throttle.failed(&email, client);
            return Err(Error::BadCredentials);
        }
        self.throttle.succeeded(&email, client);
        // Only after the password matched: the answer must not reveal the account's state.
        if self.store.is_disabled(user.id).await? {
            return Err(Error::Disabled);
        }
        self.open_session(user).await
    }

    /// Sets a new password (checked by the registration rule) for the user with
    /// `email` and ends all their sessions (and so, within a tick, their sockets).
    pub async fn reset_password(&self, email: &str, password: String) -> Result<User> {
        let user = self.user_by_email(email).await?;
        rules::password(&password).map_err(|e| e.in_field("password"))?;
        let hash = self.hasher.hash(password).await?;
        self.store.set_password(user.id, &hash, None).await?;
        Ok(user)
    }

    /// A signed-in person changes their own password: the current one must
    /// match (checked like a login, with its throttle), the new one follows
    /// the registration rule. Every other session ends (and, within a tick of
    /// each node's session watch, its sockets); this one goes on.
    pub async fn change_password(
        &self,
        session: &Session,
        current: &str,
        new: String,
        client: Option<IpAddr>,
    ) -> Result<()> {
        let me = &session.user;
        bots::allow(me, bots::Need::Manage, None)?;
        self.throttle.check(Attempt::Login, &me.email, client)?;
        rules::password(&new).map_err(|e| e.in_field("new_password"))?;
        let (_, hash) = self
            .store
            .credentials(&me.email)
            .await?
            .ok_or(Error::Unauthorized)?;
        if !self.hasher.verify(current.to_owned(), hash).await? {
            self.throttle.failed(&me.email, client);
            return Err(
                Error::invalid("the current password is wrong").in_field("current_password")
            );
        }
        self.throttle.succeeded(&me.email, client);
        let hash = self.hasher.hash(new).await?;
        self.store
            .set_password(me.id, &hash, Some(&session.token_hash))
            .await?;
        Ok(())
    }

    /// Disables the account with `email`: login is refused with [`Error::Disabled`]
    /// and every session ends (their sockets close on every node within a tick
    /// of its session watch, which reads the ends from the database).
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

    /// Opens the direct room between `me` and the user with `email`, creating it
    /// on first use. Returns the chat as `me` sees it and whether it is new; a
    /// new one appears at once in both people's lists.
    pub async fn open_direct_chat(&self, me: &User, email: &str) -> Result<(Chat, bool)> {
        bots::allow(me, bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        self.budgets.lookups(me.id, 1)?;
        let other = self.user_by_email(email).await?;
        if other.id == me.id {
            return Err(Error::SelfChat);
        }
        if self.store.blocked_either_way(me.id, other.id).await? {
            return Err(Error::Blocked);
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
        Ok(self.chat_list(me, Ok(None), Ok(None)).await?.chats)
    }

    /// A page of the user's chats (`limit` of them, all when `None`), most
    /// recently active first (ties by room id), after `before` when given.
    pub async fn chat_list(
        &self,
        me: &User,
        limit: Result<Option<i64>>,
        before: Result<Option<rules::ChatCursor>>,
    ) -> Result<ChatList> {
        bots::allow(me, bots::Need::Read, None)?;
        self.budgets.event(me.id)?;
        let limit = match limit? {
            None => usize::MAX,
            Some(0) => return Err(Error::invalid("limit must be at least 1")),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let before = before?;
        let mut chats = self.store.chats(me.id).await?;
        chats.retain(|c| bots::sees(me, &c.room_id));
        // The order is decided here, where the cursor is read, whatever a
        // database's collation makes of room ids.
        chats.sort_by(|a, b| {
            (b.last_activity.cmp(&a.last_activity)).then_with(|| a.room_id.cmp(&b.room_id))
        });
        if let Some(cursor) = &before {
            chats.retain(|c| {
                c.last_activity < cursor.last_activity
                    || (c.last_activity == cursor.last_activity && c.room_id > cursor.room_id)
            });
        }
        let has_more = chats.len() > limit;
        chats.truncate(limit);
        let next_before = chats.last().filter(|_| has_more).map(|c| {
            rules::ChatCursor {
                last_activity: c.last_activity,
                room_id: c.room_id.clone(),
            }
            .encode()
        });
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
        // One query each: for the first chats with unread messages only.
        for chat in chats
            .iter_mut()
            .filter(|c| c.unread > 0)
            .take(MENTIONS_COUNTED_CHATS)
        {
            self.count_mentions(me, chat).await?;
        }
        Ok(ChatList {
            chats,
            has_more,
            next_before,
        })
    }

    /// One of the user's chats, as it appears in their list.
    pub async fn chat(&self, me: &User, rid: &str) -> Result<Chat> {
        let mut chat = self.store.chat(rid, me.id).await?.ok_or(Error::NotMember)?;
        self.fill_presence(&mut chat.members).await;
        self.count_mentions(me, &mut chat).await?;
        Ok(chat)
    }

    /// Counts the unread messages of others that mention `me` (the rule of
    /// [`rules::mentions`]), for the chat's badge: one page of history per
    /// chat with unread messages, none for the others.
    async fn count_mentions(&self, me: &User, chat: &mut Chat) -> Result<()> {
        if chat.unread == 0 {
            return Ok(());
        }
        let unread = Page {
            before: None,
            after: Some(chat.last_read_seq),
            limit: Chat::MENTIONS_SCANNED,
        };
        let messages = self.store.messages(&chat.room_id, unread).await?;
        chat.mentions = messages
            .iter()
            .filter(|m| m.sender_id != me.id && !m.deleted)
            .filter(|m| rules::mentions(&m.message, &me.username))
            .count() as i64;
        Ok(())
    }

    /// A room's members with their presence; members only.
    pub async fn members(&self, me: &User, rid: &str) -> Result<Vec<Member>> {
        bots::allow(me, bots::Need::Read, Some(rid))?;
        self.budgets.event(me.id)?;
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
    /// members are remembered, as they never change. A direct room one of
    /// whose people blocks the other takes nothing.
    async fn require_member_cached(&self, me: &User, rid: &str) -> Result<()> {
        let key = (rid.to_owned(), me.id);
        let direct = match self.members.contains_key(&key) {
            true => true,
            false => {
                let direct = self.require_member(me, rid).await?.kind == RoomKind::Direct;
                if direct {
                    self.members.insert(key, ());
                }
                direct
            }
        };
        if direct && self.direct_room_blocked(rid).await? {
            return Err(Error::Blocked);
        }
        Ok(())
    }

    /// Opens a room for reading: checks membership and marks it read up to now.
    /// Returns the room's last `seq`.
    pub async fn join(&self, me: &User, rid: &str) -> Result<i64> {
        bots::allow(me, bots::Need::Read, Some(rid))?;
        self.budgets.event(me.id)?;
        let room = self.require_member(me, rid).await?;
        self.mark_read(me, rid, room.last_seq).await?;
        Ok(room.last_seq)
    }

    /// Opens a room for reading, as a chat page does: the chat as it was
    /// (so the page shows where I had read up to) and the room's last `seq`;
    /// then the room is marked read, like [`Natter::join`].
    pub async fn open(&self, me: &User, rid: &str) -> Result<(Chat, i64)> {
        bots::allow(me, bots::Need::Read, Some(rid))?;
        self.budgets.event(me.id)?;
        let room = self.require_member(me, rid).await?;
        let chat = self.chat(me, rid).await?;
        self.mark_read(me, rid, room.last_seq).await?;
        Ok((chat, room.last_seq))
    }

    /// Moves the user's read marker in the room forward to `seq` (capped at
    /// the room's last message) and returns where it is. When it moved, the
    /// room hears of it: others for "seen", the user's other devices for the count.
    pub async fn read(&self, me: &User, rid: &str, seq: Result<Option<i64>>) -> Result<i64> {
        bots::allow(me, bots::Need::Read, Some(rid))?;
        self.budgets.event(me.id)?;
        let seq = seq?.ok_or_else(|| Error::invalid("seq is required"))?;
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

    /// Shutdown, first step: refuses new sends (`unavailable`), stops the
    /// searches, and returns once every send already taken is stored,
    /// announced and answered.
    pub async fn drain(&self) {
        self.stopping.cancel();
        *self.accepting.write().await = false;
    }

    /// Shutdown, last step: closes the database connections cleanly (SQLite
    /// checkpoints its write-ahead log into the database file).
    pub async fn close(&self) {
        self.store.close().await;
    }
}
