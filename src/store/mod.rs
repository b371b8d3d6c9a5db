//! Persistence behind one trait, so the domain never knows which database it runs on.
//!
//! Every method is one short transaction. Implementations must keep the
//! contract's storage guarantees themselves (they are properties of the data):
//! - `seq` is assigned in the transaction that stores the message: gap-free, unique;
//! - `(room, sender, client_id)` is unique, so a resend returns the stored message;
//! - a direct room is unique per pair of users.

mod batch;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;

use crate::domain::model::{Chat, Message, Page, RoomAccess, User, UserId};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write (e.g. the email is taken).
    #[error("conflicts with an existing record")]
    Conflict,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A message about to be stored; the store assigns `id` and `seq`.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub rid: String,
    pub sender: User,
    pub body: String,
    pub client_id: Option<String>,
    pub now_ms: i64,
}

impl NewMessage {
    /// The message as stored, once the store gave it its `id` and `seq`.
    pub fn stored(&self, id: i64, seq: i64) -> Message {
        Message {
            id,
            rid: self.rid.clone(),
            seq,
            sender_id: self.sender.id,
            sender_username: self.sender.username.clone(),
            message: self.body.clone(),
            timestamp: crate::domain::model::timestamp_of_millis(self.now_ms),
            client_id: self.client_id.clone(),
        }
    }
}

/// Whether a write made something new or found what was already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Existing,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Runs the cheapest query there is: the database answers (readiness).
    async fn ping(&self) -> StoreResult<()>;

    /// Fails with [`StoreError::Conflict`] when the username or email is taken.
    async fn create_user(
        &self,
        username: &str,
        email: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> StoreResult<User>;

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;

    /// The user and their stored password hash, for a login check.
    async fn credentials(&self, email: &str) -> StoreResult<Option<(User, String)>>;

    async fn create_session(
        &self,
        token_hash: &[u8],
        user_id: UserId,
        now_ms: i64,
    ) -> StoreResult<()>;

    async fn session_user(&self, token_hash: &[u8]) -> StoreResult<Option<User>>;

    async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<()>;

    /// Returns the pair's direct room, creating it (with id `new_rid`) if absent.
    async fn open_direct_room(
        &self,
        new_rid: &str,
        a: UserId,
        b: UserId,
        now_ms: i64,
    ) -> StoreResult<(String, Outcome)>;

    async fn room_access(&self, rid: &str, user_id: UserId) -> StoreResult<RoomAccess>;

    /// The user's rooms, most recently active first.
    async fn chats(&self, user_id: UserId) -> StoreResult<Vec<Chat>>;

    /// The ids of the user's rooms (what a connecting socket subscribes to).
    async fn room_ids(&self, user_id: UserId) -> StoreResult<Vec<String>>;

    /// Stores each message with its room's next `seq` — or finds the one already
    /// stored under the same `client_id` by the same sender in the same room —
    /// all in ONE transaction (one commit, one fsync), answering in the order
    /// given. If anything fails, nothing of the batch is stored.
    async fn store_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<(Message, Outcome)>>;

    /// One message: a batch of one.
    async fn store_message(&self, new: NewMessage) -> StoreResult<(Message, Outcome)> {
        let mut stored = self.store_messages(std::slice::from_ref(&new)).await?;
        Ok(stored.remove(0))
    }

    /// A page of history in ascending `seq`: the newest `limit` below `before`,
    /// or, with `after`, the oldest `limit` above it.
    async fn messages(&self, rid: &str, page: Page) -> StoreResult<Vec<Message>>;

    /// Moves the member's read marker forward (never back) to `seq`.
    async fn mark_read(&self, rid: &str, user_id: UserId, seq: i64) -> StoreResult<()>;

    /// Waits for the connections in use and closes them all (at shutdown).
    async fn close(&self);

    /// Replaces the user's password hash and deletes all their sessions, in one transaction.
    async fn set_password(&self, user_id: UserId, password_hash: &str) -> StoreResult<()>;

    /// Marks the user disabled (keeping the first time it was) and deletes all
    /// their sessions, in one transaction. A disabled user's sessions never
    /// resolve, even one created by a login that raced with this.
    async fn disable_user(&self, user_id: UserId, now_ms: i64) -> StoreResult<()>;

    /// Whether the user was disabled.
    async fn is_disabled(&self, user_id: UserId) -> StoreResult<bool>;
}
