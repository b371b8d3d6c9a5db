//! Sessions: how long they last, their owner's list of them, and how their
//! end reaches live sockets on every node.
//!
//! A session ends by logout, by its owner revoking it, by a password reset,
//! by its account being disabled, or by expiring. Each way deletes the
//! session's row, and the database logs every deleted row in the same
//! transaction (the revocation log, see [`Store::revocations_after`]) —
//! whoever deleted it: this node, another node, or `natter user` in another
//! process. Every node runs one session watch ([`Natter::watch_sessions`]): each [`WATCH_EVERY`] it ends
//! the sessions that expired (the same way) and reads the log past the last
//! entry it saw, disconnecting its own sockets of those sessions. So an ended
//! session's sockets are gone from every node within one tick (plus a query),
//! and nodes need not tell each other anything.
//!
//! Socket events do not look their session up again: that would be a read
//! per event. Until the tick after its end, a socket acts as it could just
//! before the end; then it is gone.
//!
//! [`Store::revocations_after`]: super::store::Store::revocations_after

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use super::model::{SessionInfo, User, UserId, timestamp_of_millis};
use super::{Error, Natter, Result, now_ms, secrets};
use crate::tasks::Task;

/// How often each node ends expired sessions and reads the revocation log:
/// the bound (plus two short queries) on how long an ended session's socket
/// stays connected. Each tick costs two index lookups on `sessions` and one
/// on the log's primary key.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// Revocations read per query; more are read at once in the same tick.
const REVOCATIONS_PER_READ: i64 = 500;
/// How long the log keeps a revocation: far longer than any node takes to read it.
const KEEP_REVOCATIONS: Duration = Duration::from_secs(3600);
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// A session's last use is recorded at most this often (one write per
/// session every few minutes, not one per request)...
const RECORD_USE_EVERY: Duration = Duration::from_secs(300);
/// ...or, for short idle lifetimes, this fraction of the idle lifetime: a
/// session never ends for idleness more than a tenth early.
const RECORD_USE_FRACTION: u32 = 10;

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetimes {
    /// A session unused for this long ends.
    pub idle: Duration,
    /// A session this old ends, however much it is used.
    pub max: Duration,
}

impl Default for SessionLifetimes {
    /// Idle: 14 days. Someone who has not opened Natter for two weeks types
    /// their password again; a token left on an abandoned or lost device
    /// stops working on its own. Absolute: 90 days. Even a token in constant
    /// use — perhaps a stolen copy, used by someone else — is re-confirmed by
    /// the password every quarter.
    fn default() -> Self {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        SessionLifetimes {
            idle: 14 * DAY,
            max: 90 * DAY,
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl SessionLifetimes {
    /// The instants before which a session's last use, or its creation,
    /// means it has ended — at `now` (Unix ms).
    fn cutoffs(&self, now: i64) -> Cutoffs {
        Cutoffs {
            used_before: now.saturating_sub(millis(self.idle)),
            created_before: now.saturating_sub(millis(self.max)),
        }
    }

    fn expires_at(&self, created_at: i64, last_used_at: i64) -> i64 {
        let idle_end = last_used_at.saturating_add(millis(self.idle));
        idle_end.min(created_at.saturating_add(millis(self.max)))
    }

    /// How old a recorded last use may get before a use records it again (ms).
    fn record_use_every(&self) -> i64 {
        millis(RECORD_USE_EVERY.min(self.idle / RECORD_USE_FRACTION))
    }
}

/// The one expiry rule: applied to a session at the door, and by the sweep
/// (through the store) to all of them.
#[derive(Debug, Clone, Copy)]
struct Cutoffs {
    used_before: i64,
    created_before: i64,
}

impl Cutoffs {
    fn expired(&self, created_at: i64, last_used_at: i64) -> bool {
        last_used_at < self.used_before || created_at < self.created_before
    }
}

/// A signed-in session: who, and what names it.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    /// Names the session's sockets (and its entries in the revocation log).
    pub token_hash: Vec<u8>,
    /// What its owner lists and revokes it by.
    pub id: String,
    /// When a use was last recorded (Unix ms). Shared by the clones a
    /// socket's events get, so that they record a use once, not each.
    last_used_at: Arc<AtomicI64>,
    /// How many batches of revocations this node had applied to its sockets
    /// before the session was looked up (see [`Natter::confirm`]).
    revocations_applied: u64,
}

impl Session {
    /// What a bot token stands for (see `domain::bots`): the bot (with the
    /// token's grant), named by the token's hash and id. It is looked up on
    /// every request and has no idle lifetime, so no use is recorded.
    pub(super) fn of_bot(user: User, token_hash: Vec<u8>, id: String) -> Session {
        Session {
            user,
            token_hash,
            id,
            last_used_at: Arc::new(AtomicI64::new(i64::MAX)),
            revocations_applied: 0,
        }
    }
}

impl Natter {
    /// Opens a new session for `user`; returns it with its secret token.
    pub(super) async fn open_session(&self, user: User) -> Result<(Session, String)> {
        let token = secrets::new_token();
        let token_hash = secrets::token_hash(&token);
        let id = secrets::new_session_id();
        let applied = self.revocations_applied.load(Ordering::SeqCst);
        let now = now_ms();
        self.store
            .create_session(&token_hash, &id, user.id, now)
            .await?;
        let session = Session {
            user,
            token_hash,
            id,
            last_used_at: Arc::new(AtomicI64::new(now)),
            revocations_applied: applied,
        };
        Ok((session, token))
    }

    /// Resolves a cookie or bearer token to its live session — not ended,
    /// not expired, its account not disabled — and records the use. A bot
    /// token (`nbt_…`) resolves to its bot, carrying the token's grant.
    pub async fn authenticate(&self, token: &str) -> Result<Session> {
        if token.starts_with(super::bots::TOKEN_PREFIX) {
            match self.bot_session(token).await {
                // One session token in 64⁴ starts the same way.
                Err(Error::Unauthorized) => {}
                found => return found,
            }
        }
        let session = self.look_up(secrets::token_hash(token)).await?;
        self.session_used(&session).await;
        Ok(session)
    }

    async fn look_up(&self, token_hash: Vec<u8>) -> Result<Session> {
        // Read before the lookup, for `confirm`.
        let applied = self.revocations_applied.load(Ordering::SeqCst);
        let stored = self
            .store
            .session(&token_hash)
            .await?
            .ok_or(Error::Unauthorized)?;
        let cutoffs = self.lifetimes.cutoffs(now_ms());
        if cutoffs.expired(stored.created_at, stored.last_used_at) {
            // Refused now; the watch deletes it and closes its sockets.
            return Err(Error::Unauthorized);
        }
        Ok(Session {
            user: stored.user,
            token_hash,
            id: stored.id,
            last_used_at: Arc::new(AtomicI64::new(stored.last_used_at)),
            revocations_applied: applied,
        })
    }

    /// A socket's credentials: as [`Natter::authenticate`], but a bot token
    /// is refused ([`Error::ForbiddenScope`]): a socket hears every room of
    /// its user, which a room-limited token must not.
    pub async fn authenticate_socket(&self, token: &str) -> Result<Session> {
        let session = self.authenticate(token).await?;
        if session.user.grant.is_some() {
            return Err(Error::ForbiddenScope);
        }
        Ok(session)
    }

    /// For a socket that has just been admitted with `session`: whether the
    /// session is still live. Between its lookup and the moment the socket
    /// can be found by a disconnect, this node's watch may have closed the
    /// session's sockets without it; then (and only then, so almost never)
    /// the session is looked up again.
    pub async fn confirm(&self, session: &Session) -> Result<()> {
        if self.revocations_applied.load(Ordering::SeqCst) == session.revocations_applied {
            return Ok(());
        }
        self.look_up(session.token_hash.clone()).await.map(drop)
    }

    /// Records that the session was used now (it keeps it from ending for
    /// idleness) — if its recorded last use is old enough to be worth a write.
    pub async fn session_used(&self, session: &Session) {
        let now = now_ms();
        let last = session.last_used_at.load(Ordering::Relaxed);
        if now - last < self.lifetimes.record_use_every() {
            return;
        }
        // Of a socket's concurrent events, one records it.
        if session
            .last_used_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        if let Err(e) = self.store.touch_session(&session.token_hash, now).await {
            tracing::warn!(error = %e, "could not record a session's use");
        }
    }

    /// Ends the session everywhere: the token stops working at once, its
    /// sockets close (on this node now, on the others within a watch tick).
    pub async fn logout(&self, session: &Session) -> Result<()> {
        super::bots::allow(&session.user, super::bots::Need::Manage, None)?;
        // Already ended (a concurrent logout, an expiry): nothing left to do.
        self.end_session(session.user.id, &session.id).await?;
        Ok(())
    }

    /// The user's live sessions, most recently used first; `me`'s is `current`.
    pub async fn sessions(&self, me: &Session) -> Result<Vec<SessionInfo>> {
        super::bots::allow(&me.user, super::bots::Need::Manage, None)?;
        let cutoffs = self.lifetimes.cutoffs(now_ms());
        let listed = self.store.sessions(me.user.id).await?;
        Ok(listed
            .into_iter()
            .filter(|s| !cutoffs.expired(s.created_at, s.last_used_at))
            .map(|s| SessionInfo {
                current: s.id == me.id,
                expires_at: timestamp_of_millis(
                    self.lifetimes.expires_at(s.created_at, s.last_used_at),
                ),
                created_at: timestamp_of_millis(s.created_at),
                last_used_at: timestamp_of_millis(s.last_used_at),
                id: s.id,
            })
            .collect())
    }

    /// Ends one of `me`'s sessions, by its id, as [`Natter::logout`] does;
    /// [`Error::NoSuchSession`] if they have none by that id.
    pub async fn revoke_session(&self, me: &Session, id: &str) -> Result<()> {
        super::bots::allow(&me.user, super::bots::Need::Manage, None)?;
        match self.end_session(me.user.id, id).await? {
            true => Ok(()),
            false => Err(Error::NoSuchSession),
        }
    }

    async fn end_session(&self, user: UserId, id: &str) -> Result<bool> {
        let Some(token_hash) = self.store.end_session(user, id).await? else {
            return Ok(false);
        };
        // This node's sockets at once; every node's watch (this one's too)
        // finds the revocation in the log within a tick.
        self.notify.get().sessions_ended(&[token_hash]).await;
        Ok(true)
    }

    /// Starts this node's watch over ended sessions (see the module): from
    /// now on, every session that ends has its sockets on this node closed.
    pub async fn watch_sessions(self: &Arc<Self>) -> Result<Task> {
        // Sockets open only after this: earlier revocations concern none.
        let after = self.store.last_revocation_id().await?;
        let natter = self.clone();
        Ok(Task::spawn("session watch", move |shutdown| async move {
            let mut after = after;
            let mut tick = tokio::time::interval(WATCH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut pruned = Instant::now();
            loop {
                tokio::select! {
                    () = shutdown.recv() => break,
                    _ = tick.tick() => {}
                }
                natter.end_expired_sessions().await;
                after = natter.close_ended_sessions(after).await;
                if pruned.elapsed() >= PRUNE_EVERY {
                    natter.prune_revocations().await;
                    pruned = Instant::now();
                }
            }
        }))
    }

    /// Deletes the sessions that expired; the log then has them as revoked.
    /// Every node does it (finding nothing, most of the time, in two index
    /// lookups): a node that is down does not keep anyone's socket open.
    async fn end_expired_sessions(&self) {
        let cutoffs = self.lifetimes.cutoffs(now_ms());
        let ended = self
            .store
            .end_expired_sessions(cutoffs.used_before, cutoffs.created_before)
            .await;
        match ended {
            Ok(0) => {}
            Ok(sessions) => tracing::info!(sessions, "expired sessions ended"),
            Err(e) => tracing::warn!(error = %e, "could not end expired sessions"),
        }
    }

    /// Closes this node's sockets of the sessions the log has as revoked
    /// after entry `after`; returns the last entry read.
    async fn close_ended_sessions(&self, mut after: i64) -> i64 {
        loop {
            let ended = match self
                .store
                .revocations_after(after, REVOCATIONS_PER_READ)
                .await
            {
                Ok(ended) => ended,
                Err(e) => {
                    // Read again from the same entry next tick.
                    tracing::warn!(error = %e, "could not read the revocation log");
                    return after;
                }
            };
            let Some(last) = ended.last() else {
                return after;
            };
            after = last.id;
            // After the read, before the disconnect: see `confirm`.
            self.revocations_applied.fetch_add(1, Ordering::SeqCst);
            let full = ended.len() as i64 == REVOCATIONS_PER_READ;
            for revocation in &ended {
                tracing::debug!(user_id = revocation.user_id, "session ended");
            }
            let hashes: Vec<Vec<u8>> = ended.into_iter().map(|r| r.token_hash).collect();
            self.notify.get().sessions_ended(&hashes).await;
            if !full {
                return after;
            }
        }
    }

    async fn prune_revocations(&self) {
        let before = now_ms().saturating_sub(millis(KEEP_REVOCATIONS));
        if let Err(e) = self.store.prune_revocations(before).await {
            tracing::warn!(error = %e, "could not prune the revocation log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_when_idle_or_old() {
        let lifetimes = SessionLifetimes {
            idle: Duration::from_secs(10),
            max: Duration::from_secs(100),
        };
        let cutoffs = lifetimes.cutoffs(1_000_000);
        // Used 9 s ago, made 99 s ago: live.
        assert!(!cutoffs.expired(901_000, 991_000));
        // Unused for 10 s and a moment.
        assert!(cutoffs.expired(901_000, 989_999));
        // Used just now, but made more than 100 s ago.
        assert!(cutoffs.expired(899_999, 1_000_000));
        assert_eq!(lifetimes.expires_at(901_000, 991_000), 1_001_000);
        assert_eq!(lifetimes.expires_at(901_000, 995_000), 1_001_000);
        assert_eq!(lifetimes.expires_at(950_000, 991_000), 1_001_000);
        assert_eq!(lifetimes.expires_at(950_000, 980_000), 990_000);
    }

    #[test]
    fn uses_are_recorded_every_five_minutes_or_a_tenth_of_the_idle_lifetime() {
        assert_eq!(SessionLifetimes::default().record_use_every(), 300_000);
        let short = SessionLifetimes {
            idle: Duration::from_secs(20),
            max: Duration::from_secs(60),
        };
        assert_eq!(short.record_use_every(), 2_000);
    }
}
