//! Persistence behind one trait, so the domain never knows which database it runs on.
//!
//! Every method is one short transaction. Implementations must keep the
//! contract's storage guarantees themselves (they are properties of the data):
//! - `seq` is assigned in the transaction that stores the message: gap-free, unique;
//! - `(room, sender, client_id)` is unique, so a resend returns the stored message;
//! - a direct room is unique per pair of users;
//! - every deleted session is logged as revoked in the deleting transaction,
//!   under ids that become visible in increasing order (the migrations' triggers).

use std::time::Instant;

use async_trait::async_trait;

use crate::domain::model::{
    Account, Attachment, Bot, BotToken, Chat, GroupInvitation, IncomingWebhook, Invite, Member,
    Message, MessageKind, NotifyLevel, OutgoingWebhook, Page, Person, Profile, PushSubscription,
    Quote, RoomAccess, RoomKind, ServerCounts, User, UserId,
};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write (e.g. the email is taken).
    #[error("conflicts with an existing record")]
    Conflict,
    /// The read ran past its deadline and was stopped inside the database.
    #[error("stopped at its deadline")]
    TimedOut,
    /// The database cannot be reached now (restarting, failing over, out of
    /// connections): nothing was done, and the same request may succeed later.
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
    /// Anything else: a bug, or a broken database (answered `internal`).
    #[error(transparent)]
    Database(Fault),
}

/// What went wrong inside the database, when no caller can do better than
/// report it.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// A write named a room that is not there. Callers check a room before
    /// writing to it, so only a room that vanished meanwhile gets here.
    #[error("no such room")]
    NoSuchRoom,
    /// The database answered what the contract rules out (rows missing from
    /// a write's answer).
    #[error("the database answered inconsistently: {0}")]
    Inconsistent(&'static str),
    /// The driver's own error.
    #[error(transparent)]
    Driver(Box<dyn std::error::Error + Send + Sync>),
}

/// A message about to be stored; the store assigns `id` and `seq`.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub rid: String,
    pub sender: User,
    pub body: String,
    pub client_id: Option<String>,
    /// The message it answers, looked up (in the same room) before the send.
    pub reply_to: Option<Quote>,
    /// Files uploaded by the sender into this room and not sent yet: the
    /// store gives them to this message in the transaction that stores it.
    pub attachments: Vec<Attachment>,
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
            kind: MessageKind::Text,
            reply_to: self.reply_to.clone(),
            reactions: Vec::new(),
            attachments: self.attachments.clone(),
            edited_at: None,
            deleted: false,
            rev: 0,
        }
    }
}

/// A change to a group room. Each is stored together with the system message
/// that records it, in one transaction.
#[derive(Debug, Clone, Copy)]
pub enum GroupChange<'a> {
    /// A new group (id `rid`) owned by the actor, with the actor and `members`.
    Create {
        title: &'a str,
        members: &'a [UserId],
    },
    Rename {
        title: &'a str,
    },
    /// Fails with [`StoreError::Conflict`] when the user is already a member.
    Add {
        user: UserId,
    },
    /// Fails with [`StoreError::Conflict`] when the user is not a member. When
    /// the owner goes, the longest-standing member left becomes the owner.
    Remove {
        user: UserId,
    },
}

/// What happens to a message's text.
#[derive(Debug, Clone, Copy)]
pub enum MessageChange<'a> {
    Edit(&'a str),
    Delete,
}

/// A member's read marker after a move: where it is, how many messages from
/// others remain after it, and whether it moved at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMarker {
    pub read_seq: i64,
    pub unread: i64,
    pub moved: bool,
}

/// A session as a token lookup finds it: its user and its times (Unix ms).
/// Whether it has expired is the domain's rule, not the store's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub user: User,
    /// The public id (never the token nor its hash).
    pub id: String,
    pub created_at: i64,
    pub last_used_at: i64,
}

/// One of a user's sessions, as its owner lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub created_at: i64,
    pub last_used_at: i64,
}

/// A session that ended, as the revocation log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Grows in commit order (see [`Store::revocations_after`]).
    pub id: i64,
    pub token_hash: Vec<u8>,
    pub user_id: UserId,
}

/// Where a push goes and whom it is encrypted for: a browser's subscription
/// as checked by `rules::push_subscription` (the keys as base64url text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEndpoint {
    pub url: String,
    /// The browser's P-256 public key (65 bytes, uncompressed).
    pub p256dh: String,
    /// The browser's authentication secret (16 bytes).
    pub auth: String,
}

/// A subscription of a member of a room, with what deciding and writing its
/// push needs: whose it is (their name, for mentions), their level there,
/// and the room's kind and title (the notification's title).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    pub subscription_id: i64,
    pub user_id: UserId,
    pub username: String,
    pub rid: String,
    pub room_kind: RoomKind,
    /// A group's title; `None` for a direct room.
    pub room_title: Option<String>,
    pub notify: NotifyLevel,
    pub endpoint: PushEndpoint,
}

/// An uploaded file as its row keeps it: what readers see, where its bytes
/// are (file keys: see `crate::files`), and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    pub attachment: Attachment,
    /// The room it was uploaded into: only its members may fetch it.
    pub rid: String,
    pub uploader_id: UserId,
    /// The message it was sent with; `None` until then (only its uploader
    /// may fetch it meanwhile).
    pub message_id: Option<i64>,
    pub file_key: String,
    pub thumbnail_key: Option<String>,
    pub thumbnail_type: Option<String>,
    pub created_at: i64,
}

/// A bot user about to be made (for [`Store::create_bot`] and
/// [`Store::create_incoming_webhook`]): no password anyone knows opens it.
#[derive(Debug, Clone, Copy)]
pub struct NewBot<'a> {
    pub owner: UserId,
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub now_ms: i64,
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

    /// Fails with [`StoreError::Conflict`] when the username or email is
    /// taken. The first account is made an admin.
    async fn create_user(
        &self,
        username: &str,
        email: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> StoreResult<User>;

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;

    /// Whether any account exists (the first one may always be made).
    async fn any_user(&self) -> StoreResult<bool>;

    /// Whether the user is an admin. The first account made is one.
    async fn is_admin(&self, user_id: UserId) -> StoreResult<bool>;

    /// Makes the user an admin (`natter user create --admin`).
    async fn set_admin(&self, user_id: UserId) -> StoreResult<()>;

    /// Stores a new invitation.
    async fn create_invite(&self, invite: &Invite) -> StoreResult<()>;

    /// The invitations `created_by` made, or every one when `None`; newest first.
    async fn invites(&self, created_by: Option<UserId>) -> StoreResult<Vec<Invite>>;

    /// Revokes the invitation `code` (of `created_by`, or anyone's when
    /// `None`); `false` when there is no such invitation.
    async fn revoke_invite(
        &self,
        code: &str,
        created_by: Option<UserId>,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// Takes one use of the invitation `code` if it can still be used (not
    /// revoked, not expired at `now_ms`, uses left, its creator not
    /// disabled), in one statement: two
    /// people racing for its last use cannot both get it. Returns the
    /// invitation after the use, or `None`.
    async fn use_invite(&self, code: &str, now_ms: i64) -> StoreResult<Option<Invite>>;

    /// Gives back a use taken by [`Store::use_invite`] whose registration failed.
    async fn give_back_invite(&self, code: &str) -> StoreResult<()>;

    /// The user and their stored password hash, for a login check.
    async fn credentials(&self, email: &str) -> StoreResult<Option<(User, String)>>;

    /// Stores a new session, named `id` for its owner, last used `now_ms`.
    async fn create_session(
        &self,
        token_hash: &[u8],
        id: &str,
        user_id: UserId,
        now_ms: i64,
    ) -> StoreResult<()>;

    /// The session with this token hash, unless its user is disabled —
    /// whatever its age: expiry is the domain's rule.
    async fn session(&self, token_hash: &[u8]) -> StoreResult<Option<StoredSession>>;

    /// Records a use of the session at `now_ms` (a later one is kept).
    async fn touch_session(&self, token_hash: &[u8], now_ms: i64) -> StoreResult<()>;

    /// The user's sessions, most recently used first.
    async fn sessions(&self, user_id: UserId) -> StoreResult<Vec<SessionRecord>>;

    /// Deletes the user's session named `id`; returns its token hash, or
    /// `None` when the user has no such session.
    ///
    /// Every way a session ends (this, [`Store::end_expired_sessions`],
    /// [`Store::set_password`], [`Store::disable_user`]) logs it in the
    /// revocation log in the transaction that deletes it.
    async fn end_session(&self, user_id: UserId, id: &str) -> StoreResult<Option<Vec<u8>>>;

    /// Deletes every session last used before `used_before` or created
    /// before `created_before` (Unix ms); returns how many. Finding none costs
    /// two index lookups and no write.
    async fn end_expired_sessions(&self, used_before: i64, created_before: i64)
    -> StoreResult<u64>;

    /// The revocations logged after the one with id `after`, oldest first, at
    /// most `limit`. Ids become visible in increasing order, even when several
    /// processes end sessions at once: a reader that walks them never skips one.
    async fn revocations_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Revocation>>;

    /// The id of the newest revocation (0 if none): where a reader starts.
    async fn last_revocation_id(&self) -> StoreResult<i64>;

    /// Forgets the revocations logged before `before_ms` (Unix ms); returns how many.
    async fn prune_revocations(&self, before_ms: i64) -> StoreResult<u64>;

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
    ///
    /// A new message's attachments become its own in the same transaction;
    /// one that is not its sender's unsent upload in that room (sent with
    /// another message meanwhile, or expired) fails the batch with
    /// [`StoreError::Conflict`].
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
    async fn mark_read(&self, rid: &str, user_id: UserId, seq: i64) -> StoreResult<ReadMarker>;

    /// The room as its member `user_id` sees it in their list.
    async fn chat(&self, rid: &str, user_id: UserId) -> StoreResult<Option<Chat>>;

    /// The room's members, longest-standing first (presence not filled in).
    async fn members(&self, rid: &str) -> StoreResult<Vec<Member>>;

    /// Applies a group change and stores its system message (`note`, sent by
    /// `actor`) with the room's next `seq`, in one transaction.
    async fn change_group(
        &self,
        rid: &str,
        actor: &User,
        change: GroupChange<'_>,
        note: &str,
        now_ms: i64,
    ) -> StoreResult<Message>;

    /// One message of a room by its `seq`.
    async fn message(&self, rid: &str, seq: i64) -> StoreResult<Option<Message>>;

    /// Edits or deletes a text message of `sender` that is not deleted, giving
    /// it the room's next revision; `None` if no such message matched. A
    /// deletion deletes its attachments' rows too (their bytes go with the
    /// next sweep of unnamed files).
    async fn change_message(
        &self,
        rid: &str,
        seq: i64,
        sender: UserId,
        change: MessageChange<'_>,
        now_ms: i64,
    ) -> StoreResult<Option<Message>>;

    /// Adds the user's `emoji` to a text message that is not deleted, or takes
    /// it away if it was there, giving the message the room's next revision;
    /// `None` if no such message matched.
    async fn toggle_reaction(
        &self,
        rid: &str,
        seq: i64,
        user_id: UserId,
        emoji: &str,
        now_ms: i64,
    ) -> StoreResult<Option<Message>>;

    /// Messages changed after revision `after_rev`, in revision order.
    async fn changes(&self, rid: &str, after_rev: i64, limit: i64) -> StoreResult<Vec<Message>>;

    /// Text messages, not deleted, of the user's rooms that contain every one
    /// of `words` (as a word prefix), newest first. `words` are alphanumeric.
    ///
    /// Driven by the full-text index, newest hit first, so that it stops at
    /// `limit`. Fails with [`StoreError::TimedOut`] once `deadline` passes
    /// (waiting for a connection included): the database stops the query
    /// itself, and the connection is free again when this returns. Dropping
    /// the future stops the query too (the caller went away).
    async fn search(
        &self,
        user_id: UserId,
        words: &[String],
        limit: i64,
        deadline: Instant,
    ) -> StoreResult<Vec<Message>>;

    /// Records when the user's last socket closed.
    async fn set_last_seen(&self, user_id: UserId, now_ms: i64) -> StoreResult<()>;

    /// Waits for the connections in use and closes them all (at shutdown).
    async fn close(&self);

    /// Replaces the user's password hash and deletes all their sessions but
    /// the one of token hash `keep` (the one that made the change), in one
    /// transaction.
    async fn set_password(
        &self,
        user_id: UserId,
        password_hash: &str,
        keep: Option<&[u8]>,
    ) -> StoreResult<()>;

    /// Marks the user disabled (keeping the first time it was) and deletes all
    /// their sessions, in one transaction. A disabled user's sessions never
    /// resolve, even one created by a login that raced with this.
    async fn disable_user(&self, user_id: UserId, now_ms: i64) -> StoreResult<()>;

    /// Whether the user was disabled.
    async fn is_disabled(&self, user_id: UserId) -> StoreResult<bool>;

    /// Sets the member's notification level in the room; `false` when
    /// `user_id` is not a member of it.
    async fn set_notify(&self, rid: &str, user_id: UserId, level: NotifyLevel)
    -> StoreResult<bool>;

    /// Stores a push subscription of `user_id`, made with the session of
    /// `session_hash` (its end deletes it) — or, when its endpoint is stored
    /// already, whoever's it was, gives that row to them with these keys and
    /// this session ([`Outcome::Existing`]). Then, past `keep` subscriptions
    /// of the user, their oldest others are deleted. One transaction. Fails
    /// with [`StoreError::Conflict`] when the session has ended meanwhile.
    async fn save_push_subscription(
        &self,
        user_id: UserId,
        session_hash: &[u8],
        endpoint: &PushEndpoint,
        keep: i64,
        now_ms: i64,
    ) -> StoreResult<(PushSubscription, Outcome)>;

    /// The user's push subscriptions, newest first.
    async fn push_subscriptions(&self, user_id: UserId) -> StoreResult<Vec<PushSubscription>>;

    /// Deletes the user's push subscription `id`; `false` if they have none by that id.
    async fn delete_push_subscription(&self, user_id: UserId, id: i64) -> StoreResult<bool>;

    /// Whether any push subscription is stored at all (one index probe).
    async fn any_push_subscription(&self) -> StoreResult<bool>;

    /// The push subscriptions of the members of `rids` who have not muted
    /// the room there (level `none`) and are not disabled: one statement,
    /// whatever the number of rooms.
    async fn push_targets(&self, rids: &[String]) -> StoreResult<Vec<PushTarget>>;

    /// Records an upload (not sent yet).
    async fn create_attachment(&self, attachment: &StoredAttachment) -> StoreResult<()>;

    /// The attachment with this id, sent or not.
    async fn attachment(&self, id: &str) -> StoreResult<Option<StoredAttachment>>;

    /// Of `keys`, those that some attachment names (as its file or its thumbnail).
    async fn files_in_use(&self, keys: &[String]) -> StoreResult<Vec<String>>;

    /// Forgets the uploads never sent that were made before `before_ms`;
    /// returns how many.
    async fn expire_unsent_attachments(&self, before_ms: i64) -> StoreResult<u64>;

    // Accounts, consent and administration (issue 16).

    /// The live (not deleted) account with this id.
    async fn user_by_id(&self, user_id: UserId) -> StoreResult<Option<User>>;

    /// Accounts in id order after `after`, `limit` of them; with `query`,
    /// those whose username, display name or email starts with it (any case).
    async fn accounts(
        &self,
        query: Option<&str>,
        after: UserId,
        limit: i64,
    ) -> StoreResult<Vec<Account>>;

    /// Lets a disabled account sign in again.
    async fn enable_user(&self, user_id: UserId) -> StoreResult<()>;

    /// What the server holds, counted.
    async fn counts(&self) -> StoreResult<ServerCounts>;

    /// A setting every node reads from the database.
    async fn setting(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;

    /// Sets (or, with `None`, clears) a setting.
    async fn set_setting(&self, key: &str, value: Option<&[u8]>) -> StoreResult<()>;

    /// Deletes text message `seq` whoever sent it and records `note` as a
    /// system message of `moderator`, in one transaction. Returns the
    /// deleted message and the note; `None` when no such live text message.
    async fn moderate_message(
        &self,
        rid: &str,
        seq: i64,
        moderator: &User,
        note: &str,
        now_ms: i64,
    ) -> StoreResult<Option<(Message, Message)>>;

    async fn profile(&self, user_id: UserId) -> StoreResult<Profile>;

    async fn set_profile(
        &self,
        user_id: UserId,
        display_name: Option<&str>,
        in_directory: bool,
    ) -> StoreResult<()>;

    /// Sets (or removes) the avatar; returns the key it replaced.
    async fn set_avatar(&self, user_id: UserId, key: Option<&str>) -> StoreResult<Option<String>>;

    /// Up to `limit` live accounts but `me` whose username or display name
    /// starts with `prefix` (lower case), who share a room with `me` or are
    /// in the directory.
    async fn find_people(&self, me: UserId, prefix: &str, limit: i64) -> StoreResult<Vec<Person>>;

    /// Records that `blocker` blocked `blocked` (again is no error).
    async fn block(&self, blocker: UserId, blocked: UserId, now_ms: i64) -> StoreResult<()>;

    /// Whether there was a block to lift.
    async fn unblock(&self, blocker: UserId, blocked: UserId) -> StoreResult<bool>;

    /// Whom `blocker` blocked, most recent first.
    async fn blocked_by(&self, blocker: UserId) -> StoreResult<Vec<Person>>;

    /// Whether either of the two blocked the other.
    async fn blocked_either_way(&self, a: UserId, b: UserId) -> StoreResult<bool>;

    /// Whether the room is a direct room one of whose two people blocked the other.
    async fn direct_room_blocked(&self, rid: &str) -> StoreResult<bool>;

    /// Whether the two are members of a room in common.
    async fn share_a_room(&self, a: UserId, b: UserId) -> StoreResult<bool>;

    /// Invites `user` to group `rid`: a new invitation, or one declined
    /// before `declined_before` made anew. `false` when one is pending, or
    /// was declined since, or the person has `max_pending` pending already.
    async fn invite_to_group(
        &self,
        rid: &str,
        user: UserId,
        by: UserId,
        now_ms: i64,
        declined_before: i64,
        max_pending: i64,
    ) -> StoreResult<bool>;

    /// The state of `user`'s invitation to `rid`: `None` for none, else
    /// when it was declined (`None` while pending).
    async fn group_invitation_state(
        &self,
        rid: &str,
        user: UserId,
    ) -> StoreResult<Option<Option<i64>>>;

    /// The user's pending invitations to groups, newest first.
    async fn group_invitations(&self, user: UserId) -> StoreResult<Vec<GroupInvitation>>;

    /// Takes a pending invitation (to accept it); `false` if none is pending.
    async fn take_group_invitation(&self, rid: &str, user: UserId) -> StoreResult<bool>;

    /// Declines a pending invitation (kept, so the group cannot ask again at
    /// once); `false` if none is pending.
    async fn decline_group(&self, rid: &str, user: UserId, now_ms: i64) -> StoreResult<bool>;

    /// Records that `user` left group `rid` of their own accord (`true`), or
    /// forgets it (`false`: they are back).
    async fn note_departure(
        &self,
        rid: &str,
        user: UserId,
        left: bool,
        now_ms: i64,
    ) -> StoreResult<()>;

    /// Whether `user` left group `rid` of their own accord.
    async fn left_group(&self, rid: &str, user: UserId) -> StoreResult<bool>;

    /// Deletes the account: wipes its name, email, password and profile,
    /// ends its sessions, drops its push subscriptions, invitations, blocks
    /// and unsent uploads, disables its bots and drops their tokens and every
    /// webhook of the account or its bots. Its direct rooms stay (the other person keeps the
    /// conversation); with `remove_messages`, its text messages are deleted
    /// (as a sender's own deletion would). The caller takes the account out
    /// of its groups first. `None` when there is no such live account, else
    /// the key of the avatar it had.
    async fn delete_account(
        &self,
        user_id: UserId,
        remove_messages: bool,
        now_ms: i64,
    ) -> StoreResult<Option<Option<String>>>;

    /// The live text messages `user` sent in room `rid` after `after_seq`,
    /// in seq order, `limit` of them (an export of my data).
    async fn messages_by(
        &self,
        user: UserId,
        rid: &str,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<Message>>;
    // Password reset by email (issue 16).

    /// Stores a reset link (by its token's hash) for `user_id`, good until
    /// `expires_at`, unless the user is disabled or already holds `max_live`
    /// links live at `now_ms`; returns whether it was stored. One
    /// transaction, with the user's row locked: two nodes racing cannot pass
    /// the cap together. The user's links expired at `now_ms` are deleted.
    async fn create_password_reset(
        &self,
        token_hash: &[u8],
        user_id: UserId,
        now_ms: i64,
        expires_at: i64,
        max_live: i64,
    ) -> StoreResult<bool>;

    /// The user of the reset link with this token hash, if it is live at
    /// `now_ms` and its user not disabled (the link's page asks before any
    /// password is hashed).
    async fn password_reset(&self, token_hash: &[u8], now_ms: i64) -> StoreResult<Option<User>>;

    /// Uses the reset link with this token hash, if it is live at `now_ms`
    /// and its user not disabled: in one transaction, deletes it and the
    /// user's other links, replaces the password hash and deletes every
    /// session of the user (logged as revoked). Two uses racing: one wins.
    /// Returns the user, or `None` when the link cannot be used.
    async fn use_password_reset(
        &self,
        token_hash: &[u8],
        password_hash: &str,
        now_ms: i64,
    ) -> StoreResult<Option<User>>;

    // Bots and webhooks (issue 16).

    /// Makes a bot owned by `bot.owner`. Fails with [`StoreError::Conflict`]
    /// when the username or email is taken.
    async fn create_bot(&self, bot: NewBot<'_>) -> StoreResult<Bot>;

    /// The bots `owner` made and has not deleted, oldest first (incoming
    /// webhooks' own bots apart).
    async fn bots(&self, owner: UserId) -> StoreResult<Vec<Bot>>;

    /// Deletes `owner`'s bot `bot_id`: disables it and deletes its tokens and
    /// outgoing webhooks, in one transaction; `false` when `owner` has no such bot.
    async fn delete_bot(&self, owner: UserId, bot_id: UserId, now_ms: i64) -> StoreResult<bool>;

    /// Stores a bot's token under the hash of its secret.
    async fn create_bot_token(&self, token_hash: &[u8], token: &BotToken) -> StoreResult<()>;

    /// The bot's tokens, oldest first.
    async fn bot_tokens(&self, bot_id: UserId) -> StoreResult<Vec<BotToken>>;

    /// Deletes the bot's token `id`; `false` if it has none by that id.
    async fn delete_bot_token(&self, bot_id: UserId, id: &str) -> StoreResult<bool>;

    /// The bot and token of this token hash, unless the bot or its owner is
    /// disabled (a deleted bot is).
    async fn bot_token(&self, token_hash: &[u8]) -> StoreResult<Option<(User, BotToken)>>;

    /// Makes an incoming webhook of room `rid` named by `secret_hash`, with
    /// its own bot user (`bot`), in one transaction. Fails with
    /// [`StoreError::Conflict`] when the bot's username or email is taken.
    async fn create_incoming_webhook(
        &self,
        secret_hash: &[u8],
        id: &str,
        rid: &str,
        bot: NewBot<'_>,
    ) -> StoreResult<IncomingWebhook>;

    /// The room's incoming webhooks, oldest first.
    async fn incoming_webhooks(&self, rid: &str) -> StoreResult<Vec<IncomingWebhook>>;

    /// How many incoming webhooks `created_by` has made (and not deleted).
    async fn count_incoming_webhooks(&self, created_by: UserId) -> StoreResult<i64>;

    /// Deletes the room's incoming webhook `id` and disables its bot, in one
    /// transaction; `false` when the room has none by that id.
    async fn delete_incoming_webhook(&self, rid: &str, id: &str, now_ms: i64) -> StoreResult<bool>;

    /// The incoming webhook of this secret hash, unless its creator is disabled.
    async fn incoming_webhook(&self, secret_hash: &[u8]) -> StoreResult<Option<IncomingWebhook>>;

    /// Stores an outgoing webhook.
    async fn create_outgoing_webhook(&self, hook: &OutgoingWebhook) -> StoreResult<()>;

    /// The outgoing webhooks of `owner`, oldest first.
    async fn outgoing_webhooks(&self, owner: UserId) -> StoreResult<Vec<OutgoingWebhook>>;

    /// Deletes `owner`'s outgoing webhook `id`; `false` if they have none by that id.
    async fn delete_outgoing_webhook(&self, owner: UserId, id: &str) -> StoreResult<bool>;

    /// Whether any outgoing webhook is stored at all (one index probe).
    async fn any_outgoing_webhook(&self) -> StoreResult<bool>;

    /// The outgoing webhooks whose owner is a member of `rid` now and is not
    /// disabled, each with its owner's username (for mentions).
    async fn webhook_targets(&self, rid: &str) -> StoreResult<Vec<(OutgoingWebhook, String)>>;
}
