//! What the two stores write once: the rows they read (by column name), the
//! mapping of a broken constraint to [`StoreError::Conflict`], and every
//! statement whose SQL is the same in both dialects.
//!
//! The statements use numbered placeholders (`$1`, `$2`, …), which SQLite
//! reads as well as PostgreSQL does. What differs between the dialects —
//! the JSON functions that fold a message's quote and reactions into its row,
//! and a few clauses — is a [`Dialect`] constant that each store supplies.
//! What only one database can do (SQLite's single-writer batch plan,
//! PostgreSQL's row locks across nodes, the full-text searches) stays in
//! `sqlite.rs` and `postgres.rs`.
//!
//! The statements are not sqlx's compile-time-checked `query!` macros: those
//! check a statement against the one database that `DATABASE_URL` (or a
//! `.sqlx` snapshot) names at build time and expand to that driver's code,
//! so a statement shared by both dialects could be checked for one only, and
//! every build would need a live database or a snapshot kept in step with the
//! migrations. `tests/store_contract.rs` runs every statement on both
//! databases instead.

use std::time::Instant;

use async_trait::async_trait;

use sqlx::pool::PoolConnection;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Transaction,
    Type,
};

use crate::domain::model::{
    Account, Attachment, Bot, BotToken, Chat, Grant, GroupInvitation, IncomingWebhook, Invite,
    Member, Message, MessageKind, NotifyLevel, OutgoingWebhook, Page, Person, Profile,
    PushSubscription, Quote, Reaction, RoomAccess, RoomKind, RoomState, ServerCounts, User, UserId,
    WebhookEvents, attachments_of_stored, avatar_url, reactions_of, timestamp_of_millis,
};
use crate::domain::store::{
    Fault, GroupChange, MessageChange, NewBot, NewMessage, Outcome, PushEndpoint, PushTarget,
    ReadMarker, Revocation, SessionRecord, Store, StoreError, StoreResult, StoredAttachment,
    StoredSession,
};

/// The SQL that one database writes its own way.
pub trait Dialect: Database {
    /// The columns of a message `m` joined with its sender `u`, named as
    /// [`MessageRow`] reads them. The quoted message and the reactions come
    /// as JSON text from subqueries, so that every read of messages is one
    /// statement.
    const MESSAGE_COLUMNS: &'static str;
    /// How sessions with the same times are ordered: by public id, byte by byte.
    const SESSION_ID_ORDER: &'static str;
    /// What locks the row a write transaction read, until it commits (nothing
    /// where writers are serialised already).
    const FOR_UPDATE: &'static str;
    /// A subquery whose rows are the strings of the JSON array bound as `$1`:
    /// a list passed as one text parameter, the same way in both dialects.
    const JSON_TEXTS: &'static str;

    /// How many rows a statement changed (each driver has its own result type).
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// Whether the database can hold `key` as text: a key it cannot hold
    /// names nothing, and looking it up answers "not found" without asking.
    fn storable(_key: &str) -> bool {
        true
    }
}

/// A store on a SQL database: its pools, how it begins a write, and the
/// operations it does its own way. [`Store`] is implemented once for all of
/// them, below.
#[async_trait]
pub trait SqlStore: Send + Sync + 'static {
    type Db: Dialect;

    /// Where reads go (on SQLite, read-only connections beside the writer).
    fn reader(&self) -> &Pool<Self::Db>;

    /// Where single-statement writes go.
    fn writer(&self) -> &Pool<Self::Db>;

    /// A write transaction, begun as this database needs writes to be.
    async fn write_tx(&self) -> sqlx::Result<Transaction<'static, Self::Db>>;

    /// The user's chats (only `only`, if given), most recently active first.
    async fn chats_of(&self, user_id: UserId, only: Option<&str>) -> StoreResult<Vec<Chat>>;

    /// [`Store::store_messages`].
    async fn store_batch(&self, batch: &[NewMessage]) -> StoreResult<Vec<(Message, Outcome)>>;

    /// [`Store::search`].
    async fn search_messages(
        &self,
        user_id: UserId,
        words: &[String],
        limit: i64,
        deadline: Instant,
    ) -> StoreResult<Vec<Message>>;

    /// [`Store::close`].
    async fn close_pools(&self);
}

/// The columns of a member row `rm` joined with its user `u`, as [`MemberRow`] reads them.
pub const MEMBER_COLUMNS: &str = "u.id, u.username, u.display_name, u.avatar_key, rm.last_read_seq, u.last_seen_at, u.bot_owner IS NOT NULL AS bot";

#[derive(FromRow)]
pub struct UserRow {
    id: i64,
    username: String,
    email: String,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: row.id,
            username: row.username,
            email: row.email,
            grant: None,
        }
    }
}

/// A user and their password hash (a login check).
#[derive(FromRow)]
pub struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

/// A session with its user, as a token lookup finds it.
#[derive(FromRow)]
pub struct SessionRow {
    #[sqlx(flatten)]
    user: UserRow,
    public_id: String,
    created_at: i64,
    last_used_at: i64,
}

#[derive(FromRow)]
pub struct MemberRow {
    id: i64,
    username: String,
    display_name: Option<String>,
    avatar_key: Option<String>,
    last_read_seq: i64,
    last_seen_at: Option<i64>,
    bot: bool,
}

impl From<MemberRow> for Member {
    fn from(row: MemberRow) -> Self {
        Member {
            avatar: avatar_url(row.id, row.avatar_key.as_deref()),
            id: row.id,
            username: row.username,
            display_name: row.display_name,
            read_seq: row.last_read_seq,
            online: false,
            last_seen: row.last_seen_at.map(timestamp_of_millis),
            bot: row.bot,
        }
    }
}

/// An account as an admin lists it.
#[derive(FromRow)]
pub struct AccountRow {
    id: i64,
    username: String,
    display_name: Option<String>,
    email: String,
    is_admin: bool,
    disabled_at: Option<i64>,
    deleted_at: Option<i64>,
    created_at: i64,
    last_seen_at: Option<i64>,
}

impl From<AccountRow> for Account {
    fn from(row: AccountRow) -> Self {
        Account {
            id: row.id,
            username: row.username,
            display_name: row.display_name,
            email: row.email,
            admin: row.is_admin,
            disabled: row.disabled_at.is_some(),
            deleted: row.deleted_at.is_some(),
            created_at: timestamp_of_millis(row.created_at),
            last_seen: row.last_seen_at.map(timestamp_of_millis),
        }
    }
}

/// Someone found, or blocked.
#[derive(FromRow)]
pub struct PersonRow {
    id: i64,
    username: String,
    display_name: Option<String>,
    avatar_key: Option<String>,
}

impl From<PersonRow> for Person {
    fn from(row: PersonRow) -> Self {
        Person {
            avatar: avatar_url(row.id, row.avatar_key.as_deref()),
            id: row.id,
            username: row.username,
            display_name: row.display_name,
        }
    }
}

/// A message as [`Dialect::MESSAGE_COLUMNS`] names its columns.
#[derive(FromRow)]
pub struct MessageRow {
    id: i64,
    room_id: String,
    seq: i64,
    sender_id: i64,
    sender_username: String,
    body: String,
    created_at: i64,
    client_id: Option<String>,
    kind: String,
    edited_at: Option<i64>,
    deleted: bool,
    rev: i64,
    /// `[seq, sender_username, body, deleted]`, or NULL for no reply.
    reply_to: Option<String>,
    /// `[[emoji, user_id], …]` in the order they were made.
    reactions: Option<String>,
    /// The attachments as [`crate::domain::model::stored_attachments`] wrote them.
    attachments: Option<String>,
}

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        Message {
            id: row.id,
            rid: row.room_id,
            seq: row.seq,
            sender_id: row.sender_id,
            sender_username: row.sender_username,
            message: row.body,
            timestamp: timestamp_of_millis(row.created_at),
            client_id: row.client_id,
            kind: MessageKind::parse(&row.kind),
            edited_at: row.edited_at.map(timestamp_of_millis),
            deleted: row.deleted,
            rev: row.rev,
            reply_to: quote_of_json(row.reply_to.as_deref()),
            reactions: reactions_of_json(row.reactions.as_deref()),
            attachments: attachments_of_stored(row.attachments.as_deref()),
        }
    }
}

/// Reads a message's quote column: `[seq, sender_username, message, deleted]`
/// as JSON (`deleted` a boolean, or 0/1 from SQLite), or NULL for no reply.
fn quote_of_json(text: Option<&str>) -> Option<Quote> {
    let value: serde_json::Value = serde_json::from_str(text?).ok()?;
    let deleted = &value[3];
    Some(Quote {
        seq: value[0].as_i64()?,
        sender_username: value[1].as_str()?.to_owned(),
        message: Quote::excerpt(value[2].as_str()?),
        deleted: deleted.as_bool().unwrap_or(deleted.as_i64() == Some(1)),
    })
}

/// Reads a message's reactions column: a JSON array of `[emoji, user_id]`
/// (the id a number or its text) in the order they were made.
fn reactions_of_json(text: Option<&str>) -> Vec<Reaction> {
    let pairs: Vec<(String, serde_json::Value)> = text
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let pairs = pairs
        .into_iter()
        .filter_map(|(emoji, user)| {
            let user = match user {
                serde_json::Value::Number(n) => n.as_i64()?,
                serde_json::Value::String(s) => s.parse().ok()?,
                _ => return None,
            };
            Some((emoji, user))
        })
        .collect();
    reactions_of(pairs)
}

/// A push subscription of a room's member, as [`Store::push_targets`] reads it.
#[derive(FromRow)]
pub struct PushTargetRow {
    id: i64,
    user_id: i64,
    username: String,
    room_id: String,
    kind: String,
    title: Option<String>,
    notify: Option<String>,
    endpoint: String,
    p256dh: String,
    auth: String,
}

impl From<PushTargetRow> for PushTarget {
    fn from(row: PushTargetRow) -> Self {
        let room_kind = RoomKind::parse(&row.kind);
        PushTarget {
            subscription_id: row.id,
            user_id: row.user_id,
            username: row.username,
            rid: row.room_id,
            room_kind,
            room_title: row.title,
            notify: NotifyLevel::effective(row.notify.as_deref(), room_kind),
            endpoint: PushEndpoint {
                url: row.endpoint,
                p256dh: row.p256dh,
                auth: row.auth,
            },
        }
    }
}

/// A bot's row: the user, its owner and when it was made.
#[derive(FromRow)]
pub struct BotRow {
    #[sqlx(flatten)]
    user: UserRow,
    bot_owner: i64,
    created_at: i64,
}

impl From<BotRow> for Bot {
    fn from(row: BotRow) -> Self {
        Bot {
            user: row.user.into(),
            owner_id: row.bot_owner,
            created_at: row.created_at,
        }
    }
}

/// A bot token's row (never its hash).
#[derive(FromRow)]
pub struct BotTokenRow {
    public_id: String,
    bot_id: i64,
    scopes: String,
    rooms: Option<String>,
    created_at: i64,
}

impl From<BotTokenRow> for BotToken {
    fn from(row: BotTokenRow) -> Self {
        BotToken {
            id: row.public_id,
            bot_id: row.bot_id,
            grant: Grant::from_stored(&row.scopes, row.rooms.as_deref()),
            created_at: row.created_at,
        }
    }
}

/// A bot token with its bot, as a token lookup finds them.
#[derive(FromRow)]
pub struct BotTokenUserRow {
    #[sqlx(flatten)]
    user: UserRow,
    #[sqlx(flatten)]
    token: BotTokenRow,
}

/// The columns of an incoming webhook `w` joined with its bot `u`.
const INCOMING_WEBHOOK_COLUMNS: &str =
    "w.public_id, w.room_id, w.created_by, w.created_at, u.id, u.username, u.email";

/// An incoming webhook's row, with its bot.
#[derive(FromRow)]
pub struct IncomingWebhookRow {
    public_id: String,
    room_id: String,
    created_by: i64,
    created_at: i64,
    #[sqlx(flatten)]
    bot: UserRow,
}

impl From<IncomingWebhookRow> for IncomingWebhook {
    fn from(row: IncomingWebhookRow) -> Self {
        IncomingWebhook {
            id: row.public_id,
            room_id: row.room_id,
            created_by: row.created_by,
            bot: row.bot.into(),
            created_at: row.created_at,
        }
    }
}

/// The columns of an outgoing webhook `w`.
const OUTGOING_WEBHOOK_COLUMNS: &str =
    "w.public_id, w.owner_id, w.url, w.secret, w.events, w.rooms, w.created_at";

/// An outgoing webhook's row.
#[derive(FromRow)]
pub struct OutgoingWebhookRow {
    public_id: String,
    owner_id: i64,
    url: String,
    secret: String,
    events: String,
    rooms: Option<String>,
    created_at: i64,
}

impl From<OutgoingWebhookRow> for OutgoingWebhook {
    fn from(row: OutgoingWebhookRow) -> Self {
        OutgoingWebhook {
            id: row.public_id,
            owner_id: row.owner_id,
            url: row.url,
            secret: row.secret,
            events: WebhookEvents::from_stored(&row.events),
            rooms: row
                .rooms
                .map(|r| serde_json::from_str(&r).unwrap_or_default()),
            created_at: row.created_at,
        }
    }
}

/// An outgoing webhook with its owner's username (mentions are of them).
#[derive(FromRow)]
pub struct WebhookTargetRow {
    #[sqlx(flatten)]
    hook: OutgoingWebhookRow,
    username: String,
}

/// A list of room ids as stored: a JSON array, or NULL for "every room".
fn stored_rooms(rooms: Option<&Vec<String>>) -> Option<String> {
    rooms.map(|r| serde_json::json!(r).to_string())
}

/// Inserts a bot user; its id.
async fn insert_bot<'e, DB: Database>(
    db: impl Executor<'e, Database = DB>,
    bot: NewBot<'_>,
) -> StoreResult<i64>
where
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, created_at, is_admin, bot_owner)
         VALUES ($1, $2, $3, $4, FALSE, $5) RETURNING id",
    )
    .bind(bot.username)
    .bind(bot.email)
    .bind(bot.password_hash)
    .bind(bot.now_ms)
    .bind(bot.owner)
    .fetch_one(db)
    .await
    .map_err(conflict_or_db)
}

/// Reads rows into the domain's type through their row struct.
pub fn all<R, T: From<R>>(rows: Vec<R>) -> Vec<T> {
    rows.into_iter().map(T::from).collect()
}

/// A connection from `pool` before `deadline`, or [`StoreError::TimedOut`].
pub async fn acquire_before<DB: Database>(
    pool: &Pool<DB>,
    deadline: Instant,
) -> StoreResult<PoolConnection<DB>> {
    let wait = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(wait, pool.acquire()).await {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(StoreError::TimedOut),
    }
}

/// A unique index refused the write: [`StoreError::Conflict`]; any other
/// failure keeps its kind.
pub fn conflict_or_db(e: sqlx::Error) -> StoreError {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => e.into(),
    }
}

/// A foreign key refused the write: what it names is gone (a session that
/// ended meanwhile), [`StoreError::Conflict`]; any other failure keeps its kind.
fn gone_or_db(e: sqlx::Error) -> StoreError {
    match e.as_database_error() {
        Some(db) if db.is_foreign_key_violation() => StoreError::Conflict,
        _ => e.into(),
    }
}

/// Hands out the room's next revision (inside the write transaction; the row
/// lock it takes orders concurrent changes of the room).
async fn next_rev<DB: Database>(tx: &mut Transaction<'static, DB>, rid: &str) -> StoreResult<i64>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    Ok(sqlx::query_scalar(
        "UPDATE rooms SET last_rev = last_rev + 1 WHERE id = $1 RETURNING last_rev",
    )
    .bind(rid)
    .fetch_one(&mut **tx)
    .await?)
}

/// Makes `members` members of room `rid` (in `tx`), one statement each: a
/// group starts with at most 101 (rules.rs). Fails with
/// [`StoreError::Conflict`] when one of them is a member already.
async fn add_members<DB: Database>(
    tx: &mut Transaction<'static, DB>,
    rid: &str,
    members: &[UserId],
    now_ms: i64,
) -> StoreResult<()>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    for &member in members {
        sqlx::query("INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3)")
            .bind(rid)
            .bind(member)
            .bind(now_ms)
            .execute(&mut **tx)
            .await
            .map_err(conflict_or_db)?;
    }
    Ok(())
}

/// Gives each fresh message of a batch (ids in `fresh` order) its
/// attachments, in `tx`: one statement per attachment, and messages with
/// attachments are few. Fails with [`StoreError::Conflict`] when one is not
/// its sender's unsent upload in that room (the batch then rolls back).
pub async fn claim_attachments<DB: Dialect>(
    tx: &mut Transaction<'static, DB>,
    fresh: &[&NewMessage],
    ids: &[i64],
) -> StoreResult<()>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    for (message, &id) in fresh.iter().zip(ids) {
        for attachment in &message.attachments {
            let claimed = sqlx::query(
                "UPDATE attachments SET message_id = $1
                 WHERE id = $2 AND room_id = $3 AND uploader_id = $4 AND message_id IS NULL",
            )
            .bind(id)
            .bind(attachment.id.as_str())
            .bind(message.rid.as_str())
            .bind(message.sender.id)
            .execute(&mut **tx)
            .await?;
            if DB::rows_affected(&claimed) != 1 {
                return Err(StoreError::Conflict);
            }
        }
    }
    Ok(())
}

/// The columns of an invitation, as [`InviteRow`] reads them.
const INVITE_COLUMNS: &str =
    "code, created_by, room_id, max_uses, uses, expires_at, revoked_at, created_at";

/// An invitation's row.
#[derive(FromRow)]
pub struct InviteRow {
    code: String,
    created_by: i64,
    room_id: Option<String>,
    max_uses: i64,
    uses: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    created_at: i64,
}

impl From<InviteRow> for Invite {
    fn from(row: InviteRow) -> Self {
        Invite {
            code: row.code,
            created_by: row.created_by,
            room_id: row.room_id,
            max_uses: row.max_uses,
            uses: row.uses,
            expires_at: row.expires_at,
            revoked: row.revoked_at.is_some(),
            created_at: row.created_at,
        }
    }
}

/// An attachment as [`Store::attachment`] reads its row.
#[derive(FromRow)]
pub struct AttachmentRow {
    id: String,
    room_id: String,
    uploader_id: i64,
    message_id: Option<i64>,
    name: String,
    content_type: String,
    size: i64,
    file_key: String,
    width: Option<i64>,
    height: Option<i64>,
    thumbnail_key: Option<String>,
    thumbnail_type: Option<String>,
    created_at: i64,
}

impl From<AttachmentRow> for StoredAttachment {
    fn from(row: AttachmentRow) -> Self {
        let dimension = |n: Option<i64>| n.and_then(|n| u32::try_from(n).ok());
        StoredAttachment {
            attachment: Attachment {
                id: row.id,
                name: row.name,
                content_type: row.content_type,
                size: u64::try_from(row.size).unwrap_or(0),
                width: dimension(row.width),
                height: dimension(row.height),
                has_thumbnail: row.thumbnail_key.is_some(),
            },
            rid: row.room_id,
            uploader_id: row.uploader_id,
            message_id: row.message_id,
            file_key: row.file_key,
            thumbnail_key: row.thumbnail_key,
            thumbnail_type: row.thumbnail_type,
            created_at: row.created_at,
        }
    }
}

/// One message of a room by its `seq`; inside a write transaction, to
/// answer with what it wrote.
async fn message_in<'e, DB: Dialect>(
    db: impl Executor<'e, Database = DB>,
    rid: &str,
    seq: i64,
) -> StoreResult<Option<Message>>
where
    DB::Arguments: IntoArguments<DB>,
    for<'r> MessageRow: FromRow<'r, DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    let row: Option<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM messages m JOIN users u ON u.id = m.sender_id
         WHERE m.room_id = $1 AND m.seq = $2",
        DB::MESSAGE_COLUMNS
    )))
    .bind(rid)
    .bind(seq)
    .fetch_optional(db)
    .await?;
    Ok(row.map(Message::from))
}

/// Appends `note` to room `rid` as a system message of `actor` (in `tx`):
/// the room's next seq, and its activity moved forward.
async fn append_system_message<DB: Database>(
    tx: &mut Transaction<'static, DB>,
    rid: &str,
    actor: &User,
    note: &str,
    now_ms: i64,
) -> StoreResult<Message>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    // The bump's row lock queues this behind the room's sends; nodes'
    // clocks differ a little, so activity only ever moves forward.
    let seq: i64 = sqlx::query_scalar(
        "UPDATE rooms SET last_seq = last_seq + 1,
                          last_activity = CASE WHEN last_activity > $1
                                               THEN last_activity ELSE $1 END
         WHERE id = $2 RETURNING last_seq",
    )
    .bind(now_ms)
    .bind(rid)
    .fetch_one(&mut **tx)
    .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (room_id, seq, sender_id, body, created_at, kind)
         VALUES ($1, $2, $3, $4, $5, 'system') RETURNING id",
    )
    .bind(rid)
    .bind(seq)
    .bind(actor.id)
    .bind(note)
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Message {
        kind: MessageKind::System,
        ..NewMessage {
            rid: rid.to_owned(),
            sender: actor.clone(),
            body: note.to_owned(),
            client_id: None,
            reply_to: None,
            attachments: Vec::new(),
            now_ms,
        }
        .stored(id, seq)
    })
}

/// `text` with LIKE's wildcards escaped (by `\`), to match as itself.
fn like_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Runs `update` on the user and deletes all their sessions, in `tx`.
async fn end_sessions_after<DB: Database>(
    mut tx: Transaction<'static, DB>,
    update: sqlx::query::Query<'_, DB, DB::Arguments>,
    user_id: UserId,
    keep: Option<&[u8]>,
) -> StoreResult<()>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q [u8]>: Encode<'q, DB> + Type<DB>,
{
    update.execute(&mut *tx).await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND ($2 IS NULL OR token_hash <> $2)")
        .bind(user_id)
        .bind(keep)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The [`Store`] contract on any [`SqlStore`], its statements written once.
///
/// sqlx cannot name "a database that runs these statements" in one trait,
/// so what they need of it — executors, and the column and parameter types
/// they use — is spelled out here, once for all the methods.
#[async_trait]
impl<S> Store for S
where
    S: SqlStore,
    for<'c> &'c mut <S::Db as Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as Database>::Arguments: IntoArguments<S::Db>,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'r> CredentialsRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> SessionRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> MemberRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> MessageRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> PushTargetRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> AttachmentRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> InviteRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> AccountRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> UserRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> PersonRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> BotRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> BotTokenRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> BotTokenUserRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> IncomingWebhookRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> OutgoingWebhookRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'r> WebhookTargetRow: FromRow<'r, <S::Db as Database>::Row>,
    for<'q> Option<i64>: Encode<'q, S::Db>,
    for<'q> Option<&'q str>: Encode<'q, S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> bool: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> String: Decode<'q, S::Db> + Type<S::Db>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> &'q [u8]: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<&'q [u8]>: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Vec<u8>: Decode<'q, S::Db> + Type<S::Db>,
{
    async fn ping(&self) -> StoreResult<()> {
        // The reader pool: a long write batch must not make the node look down.
        sqlx::query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }

    async fn create_user(
        &self,
        username: &str,
        email: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> StoreResult<User> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, email, password_hash, created_at, is_admin)
             VALUES ($1, $2, $3, $4, NOT EXISTS (SELECT 1 FROM users)) RETURNING id",
        )
        .bind(username)
        .bind(email)
        .bind(password_hash)
        .bind(now_ms)
        .fetch_one(self.writer())
        .await
        .map_err(conflict_or_db)?;
        Ok(User {
            id,
            username: username.to_owned(),
            email: email.to_owned(),
            grant: None,
        })
    }

    async fn any_user(&self) -> StoreResult<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)")
            .fetch_one(self.reader())
            .await?)
    }

    async fn is_admin(&self, user_id: UserId) -> StoreResult<bool> {
        let admin: Option<bool> = sqlx::query_scalar("SELECT is_admin FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(self.reader())
            .await?;
        Ok(admin.unwrap_or(false))
    }

    async fn set_admin(&self, user_id: UserId) -> StoreResult<()> {
        sqlx::query("UPDATE users SET is_admin = TRUE WHERE id = $1")
            .bind(user_id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn create_invite(&self, invite: &Invite) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO invites (code, created_by, room_id, max_uses, uses, expires_at, created_at)
             VALUES ($1, $2, $3, $4, 0, $5, $6)",
        )
        .bind(invite.code.as_str())
        .bind(invite.created_by)
        .bind(invite.room_id.as_deref())
        .bind(invite.max_uses)
        .bind(invite.expires_at)
        .bind(invite.created_at)
        .execute(self.writer())
        .await
        .map_err(conflict_or_db)?;
        Ok(())
    }

    async fn invites(&self, created_by: Option<UserId>) -> StoreResult<Vec<Invite>> {
        let rows: Vec<InviteRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INVITE_COLUMNS} FROM invites
             WHERE $1 IS NULL OR created_by = $1
             ORDER BY created_at DESC, code"
        )))
        .bind(created_by)
        .fetch_all(self.reader())
        .await?;
        Ok(all(rows))
    }

    async fn revoke_invite(
        &self,
        code: &str,
        created_by: Option<UserId>,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let revoked = sqlx::query(
            "UPDATE invites SET revoked_at = COALESCE(revoked_at, $1)
             WHERE code = $2 AND ($3 IS NULL OR created_by = $3)",
        )
        .bind(now_ms)
        .bind(code)
        .bind(created_by)
        .execute(self.writer())
        .await?;
        Ok(S::Db::rows_affected(&revoked) > 0)
    }

    async fn use_invite(&self, code: &str, now_ms: i64) -> StoreResult<Option<Invite>> {
        if !S::Db::storable(code) {
            return Ok(None);
        }
        let row: Option<InviteRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE invites SET uses = uses + 1
             WHERE code = $1 AND revoked_at IS NULL AND expires_at > $2 AND uses < max_uses
               AND created_by IN (SELECT id FROM users WHERE disabled_at IS NULL)
             RETURNING {INVITE_COLUMNS}"
        )))
        .bind(code)
        .bind(now_ms)
        .fetch_optional(self.writer())
        .await?;
        Ok(row.map(Invite::from))
    }

    async fn give_back_invite(&self, code: &str) -> StoreResult<()> {
        sqlx::query("UPDATE invites SET uses = uses - 1 WHERE code = $1 AND uses > 0")
            .bind(code)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        Ok(self.credentials(email).await?.map(|(user, _)| user))
    }

    async fn credentials(&self, email: &str) -> StoreResult<Option<(User, String)>> {
        if !S::Db::storable(email) {
            return Ok(None);
        }
        let row: Option<CredentialsRow> = sqlx::query_as(
            "SELECT id, username, email, password_hash FROM users
             WHERE email = $1 AND deleted_at IS NULL",
        )
        .bind(email)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(|row| (row.user.into(), row.password_hash)))
    }

    async fn create_session(
        &self,
        token_hash: &[u8],
        id: &str,
        user_id: UserId,
        now_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, public_id, user_id, created_at, last_used_at)
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(token_hash)
        .bind(id)
        .bind(user_id)
        .bind(now_ms)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn session(&self, token_hash: &[u8]) -> StoreResult<Option<StoredSession>> {
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT u.id, u.username, u.email, s.public_id, s.created_at, s.last_used_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND u.disabled_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(|row| StoredSession {
            user: row.user.into(),
            id: row.public_id,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
        }))
    }

    async fn touch_session(&self, token_hash: &[u8], now_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sessions SET last_used_at = $1 WHERE token_hash = $2 AND last_used_at < $1",
        )
        .bind(now_ms)
        .bind(token_hash)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn sessions(&self, user_id: UserId) -> StoreResult<Vec<SessionRecord>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT public_id, created_at, last_used_at FROM sessions WHERE user_id = $1
             ORDER BY last_used_at DESC, created_at DESC, {}",
            S::Db::SESSION_ID_ORDER
        )))
        .bind(user_id)
        .fetch_all(self.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, created_at, last_used_at)| SessionRecord {
                id,
                created_at,
                last_used_at,
            })
            .collect())
    }

    async fn end_session(&self, user_id: UserId, id: &str) -> StoreResult<Option<Vec<u8>>> {
        if !S::Db::storable(id) {
            return Ok(None);
        }
        // The triggers of migration 0005 log the revocation.
        let ended = sqlx::query_scalar(
            "DELETE FROM sessions WHERE public_id = $1 AND user_id = $2 RETURNING token_hash",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(self.writer())
        .await?;
        Ok(ended)
    }

    async fn end_expired_sessions(
        &self,
        used_before: i64,
        created_before: i64,
    ) -> StoreResult<u64> {
        // Several times a second on every node: the usual answer, none, must
        // not take the writer (nor the revocation log's lock).
        let any: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sessions WHERE last_used_at < $1)
                 OR EXISTS (SELECT 1 FROM sessions WHERE created_at < $2)",
        )
        .bind(used_before)
        .bind(created_before)
        .fetch_one(self.reader())
        .await?;
        if !any {
            return Ok(0);
        }
        let ended = sqlx::query("DELETE FROM sessions WHERE last_used_at < $1 OR created_at < $2")
            .bind(used_before)
            .bind(created_before)
            .execute(self.writer())
            .await?;
        Ok(S::Db::rows_affected(&ended))
    }

    async fn revocations_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Revocation>> {
        // Ids become visible in increasing order: SQLite has one writer, and
        // PostgreSQL's deleters of sessions commit in id order (migration 0005).
        let rows: Vec<(i64, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT id, token_hash, user_id FROM session_revocations WHERE id > $1
             ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, token_hash, user_id)| Revocation {
                id,
                token_hash,
                user_id,
            })
            .collect())
    }

    async fn last_revocation_id(&self) -> StoreResult<i64> {
        let last = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM session_revocations")
            .fetch_one(self.reader())
            .await?;
        Ok(last)
    }

    async fn prune_revocations(&self, before_ms: i64) -> StoreResult<u64> {
        let pruned = sqlx::query("DELETE FROM session_revocations WHERE at < $1")
            .bind(before_ms)
            .execute(self.writer())
            .await?;
        Ok(S::Db::rows_affected(&pruned))
    }

    async fn open_direct_room(
        &self,
        new_rid: &str,
        a: UserId,
        b: UserId,
        now_ms: i64,
    ) -> StoreResult<(String, Outcome)> {
        let mut tx = self.write_tx().await?;
        // A concurrent creator of the same pair makes the insert wait for its
        // commit, then do nothing; its room (with both members, committed
        // together) wins.
        let key = format!("{}:{}", a.min(b), a.max(b));
        let created: Option<String> = sqlx::query_scalar(
            "INSERT INTO rooms (id, kind, direct_key, last_activity, created_at)
             VALUES ($1, 'direct', $2, $3, $3)
             ON CONFLICT (direct_key) DO NOTHING RETURNING id",
        )
        .bind(new_rid)
        .bind(key.as_str())
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        if created.is_none() {
            tx.rollback().await?;
            let rid: String = sqlx::query_scalar("SELECT id FROM rooms WHERE direct_key = $1")
                .bind(key.as_str())
                .fetch_one(self.reader())
                .await?;
            return Ok((rid, Outcome::Existing));
        }
        add_members(&mut tx, new_rid, &[a, b], now_ms).await?;
        tx.commit().await?;
        Ok((new_rid.to_owned(), Outcome::Created))
    }

    async fn room_access(&self, rid: &str, user_id: UserId) -> StoreResult<RoomAccess> {
        if !S::Db::storable(rid) {
            return Ok(RoomAccess::NoSuchRoom);
        }
        let row: Option<(String, Option<i64>, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT r.kind, r.owner_id, r.last_seq, r.last_rev, m.user_id FROM rooms r
             LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = $1
             WHERE r.id = $2",
        )
        .bind(user_id)
        .bind(rid)
        .fetch_optional(self.reader())
        .await?;
        Ok(match row {
            None => RoomAccess::NoSuchRoom,
            Some((.., None)) => RoomAccess::NotMember,
            Some((kind, owner_id, last_seq, last_rev, Some(_))) => RoomAccess::Member(RoomState {
                kind: RoomKind::parse(&kind),
                owner_id,
                last_seq,
                last_rev,
            }),
        })
    }

    async fn chats(&self, user_id: UserId) -> StoreResult<Vec<Chat>> {
        self.chats_of(user_id, None).await
    }

    async fn room_ids(&self, user_id: UserId) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT room_id FROM room_members WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(self.reader())
                .await?,
        )
    }

    async fn store_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<(Message, Outcome)>> {
        self.store_batch(batch).await
    }

    async fn messages(&self, rid: &str, page: Page) -> StoreResult<Vec<Message>> {
        if !S::Db::storable(rid) {
            return Ok(Vec::new());
        }
        let before = page.before.unwrap_or(i64::MAX);
        let rows: Vec<MessageRow> = match page.after {
            Some(after) => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM messages m JOIN users u ON u.id = m.sender_id
                     WHERE m.room_id = $1 AND m.seq > $2 AND m.seq < $3
                     ORDER BY m.seq ASC LIMIT $4",
                    S::Db::MESSAGE_COLUMNS
                )))
                .bind(rid)
                .bind(after)
                .bind(before)
                .bind(page.limit)
                .fetch_all(self.reader())
                .await?
            }
            None => {
                let mut rows: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM messages m JOIN users u ON u.id = m.sender_id
                     WHERE m.room_id = $1 AND m.seq < $2
                     ORDER BY m.seq DESC LIMIT $3",
                    S::Db::MESSAGE_COLUMNS
                )))
                .bind(rid)
                .bind(before)
                .bind(page.limit)
                .fetch_all(self.reader())
                .await?;
                rows.reverse();
                rows
            }
        };
        Ok(all(rows))
    }

    async fn mark_read(&self, rid: &str, user_id: UserId, seq: i64) -> StoreResult<ReadMarker> {
        if !S::Db::storable(rid) {
            return Ok(ReadMarker {
                read_seq: 0,
                unread: 0,
                moved: false,
            });
        }
        let mut tx = self.write_tx().await?;
        // The condition is re-checked on the latest row version after a
        // concurrent update, so a lower `seq` never overwrites a higher one.
        let moved = sqlx::query(
            "UPDATE room_members SET last_read_seq = $1
             WHERE room_id = $2 AND user_id = $3 AND last_read_seq < $1",
        )
        .bind(seq)
        .bind(rid)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let (read_seq, unread): (i64, i64) = sqlx::query_as(
            "SELECT mine.last_read_seq,
                    (SELECT COUNT(*) FROM messages m WHERE m.room_id = mine.room_id
                       AND m.seq > mine.last_read_seq AND m.sender_id <> mine.user_id)
             FROM room_members mine WHERE mine.room_id = $1 AND mine.user_id = $2",
        )
        .bind(rid)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or_default();
        tx.commit().await?;
        Ok(ReadMarker {
            read_seq,
            unread,
            moved: S::Db::rows_affected(&moved) > 0,
        })
    }

    async fn chat(&self, rid: &str, user_id: UserId) -> StoreResult<Option<Chat>> {
        if !S::Db::storable(rid) {
            return Ok(None);
        }
        Ok(self.chats_of(user_id, Some(rid)).await?.pop())
    }

    async fn members(&self, rid: &str) -> StoreResult<Vec<Member>> {
        if !S::Db::storable(rid) {
            return Ok(Vec::new());
        }
        let rows: Vec<MemberRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MEMBER_COLUMNS} FROM room_members rm JOIN users u ON u.id = rm.user_id
             WHERE rm.room_id = $1 ORDER BY rm.joined_at, u.id"
        )))
        .bind(rid)
        .fetch_all(self.reader())
        .await?;
        Ok(all(rows))
    }

    async fn change_group(
        &self,
        rid: &str,
        actor: &User,
        change: GroupChange<'_>,
        note: &str,
        now_ms: i64,
    ) -> StoreResult<Message> {
        let mut tx = self.write_tx().await?;
        // Who joins: the owner and the members of a new group, or the one added.
        let mut joining: Vec<UserId> = Vec::new();
        match change {
            GroupChange::Create { title, members } => {
                sqlx::query(
                    "INSERT INTO rooms (id, kind, title, owner_id, last_activity, created_at)
                     VALUES ($1, 'group', $2, $3, $4, $4)",
                )
                .bind(rid)
                .bind(title)
                .bind(actor.id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                joining.push(actor.id);
                joining.extend(members);
            }
            GroupChange::Rename { title } => {
                sqlx::query("UPDATE rooms SET title = $1 WHERE id = $2")
                    .bind(title)
                    .bind(rid)
                    .execute(&mut *tx)
                    .await?;
            }
            GroupChange::Add { user } => joining.push(user),
            GroupChange::Remove { user } => {
                let gone =
                    sqlx::query("DELETE FROM room_members WHERE room_id = $1 AND user_id = $2")
                        .bind(rid)
                        .bind(user)
                        .execute(&mut *tx)
                        .await?;
                if S::Db::rows_affected(&gone) == 0 {
                    return Err(StoreError::Conflict);
                }
                sqlx::query(
                    "UPDATE rooms SET owner_id = (SELECT user_id FROM room_members
                                                  WHERE room_id = rooms.id
                                                  ORDER BY joined_at, user_id LIMIT 1)
                     WHERE id = $1 AND owner_id = $2",
                )
                .bind(rid)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            }
        }
        add_members(&mut tx, rid, &joining, now_ms).await?;
        let message = append_system_message(&mut tx, rid, actor, note, now_ms).await?;
        tx.commit().await?;
        Ok(message)
    }

    async fn message(&self, rid: &str, seq: i64) -> StoreResult<Option<Message>> {
        if !S::Db::storable(rid) {
            return Ok(None);
        }
        message_in(self.reader(), rid, seq).await
    }

    async fn change_message(
        &self,
        rid: &str,
        seq: i64,
        sender: UserId,
        change: MessageChange<'_>,
        now_ms: i64,
    ) -> StoreResult<Option<Message>> {
        if !S::Db::storable(rid) {
            return Ok(None);
        }
        let mut tx = self.write_tx().await?;
        let rev = next_rev(&mut tx, rid).await?;
        let update = match change {
            MessageChange::Edit(_) => sqlx::query_scalar(
                "UPDATE messages SET body = $6, edited_at = $1, rev = $2
                 WHERE room_id = $3 AND seq = $4 AND sender_id = $5 AND kind = 'text'
                   AND deleted_at IS NULL
                 RETURNING id",
            ),
            MessageChange::Delete => sqlx::query_scalar(
                "UPDATE messages SET body = '', attachments = NULL, deleted_at = $1, rev = $2
                 WHERE room_id = $3 AND seq = $4 AND sender_id = $5 AND kind = 'text'
                   AND deleted_at IS NULL
                 RETURNING id",
            ),
        };
        let mut update = update
            .bind(now_ms)
            .bind(rev)
            .bind(rid)
            .bind(seq)
            .bind(sender);
        if let MessageChange::Edit(body) = change {
            update = update.bind(body);
        }
        let Some(id): Option<i64> = update.fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        if let MessageChange::Delete = change {
            sqlx::query("DELETE FROM reactions WHERE message_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM attachments WHERE message_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let message = message_in(&mut *tx, rid, seq).await?;
        tx.commit().await?;
        Ok(message)
    }

    async fn toggle_reaction(
        &self,
        rid: &str,
        seq: i64,
        user_id: UserId,
        emoji: &str,
        now_ms: i64,
    ) -> StoreResult<Option<Message>> {
        if !S::Db::storable(rid) || !S::Db::storable(emoji) {
            return Ok(None);
        }
        let mut tx = self.write_tx().await?;
        // The row lock orders concurrent toggles of one message.
        let id: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM messages
             WHERE room_id = $1 AND seq = $2 AND kind = 'text' AND deleted_at IS NULL {}",
            S::Db::FOR_UPDATE
        )))
        .bind(rid)
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        let removed = sqlx::query(
            "DELETE FROM reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3",
        )
        .bind(id)
        .bind(user_id)
        .bind(emoji)
        .execute(&mut *tx)
        .await?;
        if S::Db::rows_affected(&removed) == 0 {
            sqlx::query(
                "INSERT INTO reactions (message_id, user_id, emoji, created_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(user_id)
            .bind(emoji)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        let rev = next_rev(&mut tx, rid).await?;
        sqlx::query("UPDATE messages SET rev = $1 WHERE id = $2")
            .bind(rev)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let message = message_in(&mut *tx, rid, seq).await?;
        tx.commit().await?;
        Ok(message)
    }

    async fn changes(&self, rid: &str, after_rev: i64, limit: i64) -> StoreResult<Vec<Message>> {
        if !S::Db::storable(rid) {
            return Ok(Vec::new());
        }
        let rows: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM messages m JOIN users u ON u.id = m.sender_id
             WHERE m.room_id = $1 AND m.rev > $2 ORDER BY m.rev LIMIT $3",
            S::Db::MESSAGE_COLUMNS
        )))
        .bind(rid)
        .bind(after_rev)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        Ok(all(rows))
    }

    async fn search(
        &self,
        user_id: UserId,
        words: &[String],
        limit: i64,
        deadline: Instant,
    ) -> StoreResult<Vec<Message>> {
        self.search_messages(user_id, words, limit, deadline).await
    }

    async fn set_last_seen(&self, user_id: UserId, now_ms: i64) -> StoreResult<()> {
        sqlx::query("UPDATE users SET last_seen_at = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(user_id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn close(&self) {
        self.close_pools().await;
    }

    async fn set_password(
        &self,
        user_id: UserId,
        password_hash: &str,
        keep: Option<&[u8]>,
    ) -> StoreResult<()> {
        let update = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id);
        end_sessions_after(self.write_tx().await?, update, user_id, keep).await
    }

    async fn disable_user(&self, user_id: UserId, now_ms: i64) -> StoreResult<()> {
        let update =
            sqlx::query("UPDATE users SET disabled_at = COALESCE(disabled_at, $1) WHERE id = $2")
                .bind(now_ms)
                .bind(user_id);
        end_sessions_after(self.write_tx().await?, update, user_id, None).await
    }

    async fn is_disabled(&self, user_id: UserId) -> StoreResult<bool> {
        let disabled: Option<bool> =
            sqlx::query_scalar("SELECT disabled_at IS NOT NULL FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(self.reader())
                .await?;
        Ok(disabled.unwrap_or(false))
    }

    async fn set_notify(
        &self,
        rid: &str,
        user_id: UserId,
        level: NotifyLevel,
    ) -> StoreResult<bool> {
        if !S::Db::storable(rid) {
            return Ok(false);
        }
        let set =
            sqlx::query("UPDATE room_members SET notify = $1 WHERE room_id = $2 AND user_id = $3")
                .bind(level.as_str())
                .bind(rid)
                .bind(user_id)
                .execute(self.writer())
                .await?;
        Ok(S::Db::rows_affected(&set) > 0)
    }

    async fn save_push_subscription(
        &self,
        user_id: UserId,
        session_hash: &[u8],
        endpoint: &PushEndpoint,
        keep: i64,
        now_ms: i64,
    ) -> StoreResult<(PushSubscription, Outcome)> {
        let mut tx = self.write_tx().await?;
        // A browser that subscribes again (new keys, another login) keeps its row.
        let replaced: Option<i64> = sqlx::query_scalar(
            "UPDATE push_subscriptions
             SET user_id = $1, session_hash = $2, p256dh = $3, auth = $4, created_at = $5
             WHERE endpoint = $6 RETURNING id",
        )
        .bind(user_id)
        .bind(session_hash)
        .bind(endpoint.p256dh.as_str())
        .bind(endpoint.auth.as_str())
        .bind(now_ms)
        .bind(endpoint.url.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(gone_or_db)?;
        let (id, outcome) = match replaced {
            Some(id) => (id, Outcome::Existing),
            None => {
                // Another node may have stored the same endpoint since the
                // update looked: then this updates that row instead.
                let id = sqlx::query_scalar(
                    "INSERT INTO push_subscriptions
                         (user_id, session_hash, p256dh, auth, created_at, endpoint)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (endpoint) DO UPDATE
                     SET user_id = excluded.user_id, session_hash = excluded.session_hash,
                         p256dh = excluded.p256dh, auth = excluded.auth,
                         created_at = excluded.created_at
                     RETURNING id",
                )
                .bind(user_id)
                .bind(session_hash)
                .bind(endpoint.p256dh.as_str())
                .bind(endpoint.auth.as_str())
                .bind(now_ms)
                .bind(endpoint.url.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(gone_or_db)?;
                (id, Outcome::Created)
            }
        };
        sqlx::query(
            "DELETE FROM push_subscriptions WHERE user_id = $1 AND id <> $2
               AND id NOT IN (SELECT id FROM push_subscriptions WHERE user_id = $1 AND id <> $2
                              ORDER BY created_at DESC, id DESC LIMIT $3)",
        )
        .bind(user_id)
        .bind(id)
        .bind(keep - 1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let subscription = PushSubscription {
            id,
            endpoint: endpoint.url.clone(),
            created_at: timestamp_of_millis(now_ms),
        };
        Ok((subscription, outcome))
    }

    async fn push_subscriptions(&self, user_id: UserId) -> StoreResult<Vec<PushSubscription>> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT id, endpoint, created_at FROM push_subscriptions WHERE user_id = $1
             ORDER BY created_at DESC, id DESC",
        )
        .bind(user_id)
        .fetch_all(self.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, endpoint, created_at)| PushSubscription {
                id,
                endpoint,
                created_at: timestamp_of_millis(created_at),
            })
            .collect())
    }

    async fn delete_push_subscription(&self, user_id: UserId, id: i64) -> StoreResult<bool> {
        let deleted = sqlx::query("DELETE FROM push_subscriptions WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(self.writer())
            .await?;
        Ok(S::Db::rows_affected(&deleted) > 0)
    }

    async fn any_push_subscription(&self) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM push_subscriptions)")
                .fetch_one(self.reader())
                .await?,
        )
    }

    async fn push_targets(&self, rids: &[String]) -> StoreResult<Vec<PushTarget>> {
        let rids: Vec<&String> = rids.iter().filter(|r| S::Db::storable(r)).collect();
        if rids.is_empty() {
            return Ok(Vec::new());
        }
        let list = serde_json::json!(rids).to_string();
        let rows: Vec<PushTargetRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT s.id, s.user_id, u.username, rm.room_id, r.kind, r.title, rm.notify,
                    s.endpoint, s.p256dh, s.auth
             FROM room_members rm
             JOIN rooms r ON r.id = rm.room_id
             JOIN users u ON u.id = rm.user_id
             JOIN push_subscriptions s ON s.user_id = rm.user_id
             WHERE rm.room_id IN ({})
               AND (rm.notify IS NULL OR rm.notify <> 'none')
               AND u.disabled_at IS NULL",
            S::Db::JSON_TEXTS
        )))
        .bind(list.as_str())
        .fetch_all(self.reader())
        .await?;
        Ok(all(rows))
    }

    async fn create_attachment(&self, a: &StoredAttachment) -> StoreResult<()> {
        let size = i64::try_from(a.attachment.size).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO attachments (id, room_id, uploader_id, name, content_type, size,
                                      file_key, width, height, thumbnail_key, thumbnail_type,
                                      created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(a.attachment.id.as_str())
        .bind(a.rid.as_str())
        .bind(a.uploader_id)
        .bind(a.attachment.name.as_str())
        .bind(a.attachment.content_type.as_str())
        .bind(size)
        .bind(a.file_key.as_str())
        .bind(a.attachment.width.map(i64::from))
        .bind(a.attachment.height.map(i64::from))
        .bind(a.thumbnail_key.as_deref())
        .bind(a.thumbnail_type.as_deref())
        .bind(a.created_at)
        .execute(self.writer())
        .await
        .map_err(conflict_or_db)?;
        Ok(())
    }

    async fn attachment(&self, id: &str) -> StoreResult<Option<StoredAttachment>> {
        if !S::Db::storable(id) {
            return Ok(None);
        }
        let row: Option<AttachmentRow> = sqlx::query_as(
            "SELECT id, room_id, uploader_id, message_id, name, content_type, size, file_key,
                    width, height, thumbnail_key, thumbnail_type, created_at
             FROM attachments WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(StoredAttachment::from))
    }

    async fn files_in_use(&self, keys: &[String]) -> StoreResult<Vec<String>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let list = serde_json::json!(keys).to_string();
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT file_key FROM attachments WHERE file_key IN ({texts})
             UNION
             SELECT thumbnail_key FROM attachments WHERE thumbnail_key IN ({texts})
             UNION
             SELECT avatar_key FROM users WHERE avatar_key IN ({texts})",
            texts = S::Db::JSON_TEXTS
        )))
        .bind(list.as_str())
        .fetch_all(self.reader())
        .await?)
    }

    async fn expire_unsent_attachments(&self, before_ms: i64) -> StoreResult<u64> {
        let expired =
            sqlx::query("DELETE FROM attachments WHERE message_id IS NULL AND created_at < $1")
                .bind(before_ms)
                .execute(self.writer())
                .await?;
        Ok(S::Db::rows_affected(&expired))
    }
    // Accounts, consent and administration (issue 16).

    async fn user_by_id(&self, user_id: UserId) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, username, email FROM users WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(user_id)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(User::from))
    }

    async fn accounts(
        &self,
        query: Option<&str>,
        after: UserId,
        limit: i64,
    ) -> StoreResult<Vec<Account>> {
        let pattern = query.map(|q| format!("{}%", like_escaped(&q.to_lowercase())));
        let rows: Vec<AccountRow> = sqlx::query_as(
            "SELECT id, username, display_name, email, is_admin, disabled_at, deleted_at,
                    created_at, last_seen_at
             FROM users
             WHERE id > $1
               AND ($2 IS NULL OR username LIKE $2 ESCAPE '\\' OR email LIKE $2 ESCAPE '\\'
                    OR lower(display_name) LIKE $2 ESCAPE '\\')
             ORDER BY id LIMIT $3",
        )
        .bind(after)
        .bind(pattern.as_deref())
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        Ok(all(rows))
    }

    async fn enable_user(&self, user_id: UserId) -> StoreResult<()> {
        sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1 AND deleted_at IS NULL")
            .bind(user_id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn counts(&self) -> StoreResult<ServerCounts> {
        // Each a count of a small table or an index, but messages: their
        // number is the sum of the rooms' last seq, read off the rooms.
        let (users, disabled_users, direct_rooms, groups, messages, sessions, attachments) =
            sqlx::query_as::<_, (i64, i64, i64, i64, i64, i64, i64)>(
                "SELECT (SELECT COUNT(*) FROM users WHERE deleted_at IS NULL),
                        (SELECT COUNT(*) FROM users
                          WHERE disabled_at IS NOT NULL AND deleted_at IS NULL),
                        (SELECT COUNT(*) FROM rooms WHERE kind = 'direct'),
                        (SELECT COUNT(*) FROM rooms WHERE kind = 'group'),
                        (SELECT CAST(COALESCE(SUM(last_seq), 0) AS BIGINT) FROM rooms),
                        (SELECT COUNT(*) FROM sessions),
                        (SELECT COUNT(*) FROM attachments)",
            )
            .fetch_one(self.reader())
            .await?;
        Ok(ServerCounts {
            users,
            disabled_users,
            direct_rooms,
            groups,
            messages,
            sessions,
            attachments,
        })
    }

    async fn setting(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(self.reader())
                .await?,
        )
    }

    async fn set_setting(&self, key: &str, value: Option<&[u8]>) -> StoreResult<()> {
        match value {
            Some(value) => sqlx::query(
                "INSERT INTO settings (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value),
            None => sqlx::query("DELETE FROM settings WHERE key = $1").bind(key),
        }
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn moderate_message(
        &self,
        rid: &str,
        seq: i64,
        moderator: &User,
        note: &str,
        now_ms: i64,
    ) -> StoreResult<Option<(Message, Message)>> {
        if !S::Db::storable(rid) {
            return Ok(None);
        }
        let mut tx = self.write_tx().await?;
        // The row lock orders this behind the message's other changes.
        let id: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM messages
             WHERE room_id = $1 AND seq = $2 AND kind = 'text' AND deleted_at IS NULL {}",
            S::Db::FOR_UPDATE
        )))
        .bind(rid)
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        let rev = next_rev(&mut tx, rid).await?;
        sqlx::query(
            "UPDATE messages SET body = '', attachments = NULL, deleted_at = $1, rev = $2
             WHERE id = $3",
        )
        .bind(now_ms)
        .bind(rev)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for table in ["reactions", "attachments"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE message_id = $1"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let deleted = message_in(&mut *tx, rid, seq)
            .await?
            .ok_or(StoreError::Database(Fault::Inconsistent(
                "a moderated message vanished",
            )))?;
        let record = append_system_message(&mut tx, rid, moderator, note, now_ms).await?;
        tx.commit().await?;
        Ok(Some((deleted, record)))
    }

    async fn profile(&self, user_id: UserId) -> StoreResult<Profile> {
        let row: Option<(Option<String>, Option<String>, bool)> = sqlx::query_as(
            "SELECT display_name, avatar_key, in_directory FROM users WHERE id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map_or_else(
            Profile::default,
            |(display_name, avatar_key, in_directory)| Profile {
                display_name,
                avatar_key,
                in_directory,
            },
        ))
    }

    async fn set_profile(
        &self,
        user_id: UserId,
        display_name: Option<&str>,
        in_directory: bool,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE users SET display_name = $1, in_directory = $2 WHERE id = $3")
            .bind(display_name)
            .bind(in_directory)
            .bind(user_id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn set_avatar(&self, user_id: UserId, key: Option<&str>) -> StoreResult<Option<String>> {
        let mut tx = self.write_tx().await?;
        let old: Option<Option<String>> =
            sqlx::query_scalar("SELECT avatar_key FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query("UPDATE users SET avatar_key = $1 WHERE id = $2")
            .bind(key)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(old.flatten())
    }

    async fn find_people(&self, me: UserId, prefix: &str, limit: i64) -> StoreResult<Vec<Person>> {
        let pattern = format!("{}%", like_escaped(prefix));
        let rows: Vec<PersonRow> = sqlx::query_as(
            "SELECT u.id, u.username, u.display_name, u.avatar_key FROM users u
             WHERE u.id <> $1 AND u.deleted_at IS NULL AND u.disabled_at IS NULL
               AND (u.username LIKE $2 ESCAPE '\\' OR lower(u.display_name) LIKE $2 ESCAPE '\\')
               AND (u.in_directory OR EXISTS (
                      SELECT 1 FROM room_members mine
                      JOIN room_members theirs ON theirs.room_id = mine.room_id
                      WHERE mine.user_id = $1 AND theirs.user_id = u.id))
               AND NOT EXISTS (SELECT 1 FROM blocks
                               WHERE blocker_id = u.id AND blocked_id = $1)
             ORDER BY u.username LIMIT $3",
        )
        .bind(me)
        .bind(pattern.as_str())
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        Ok(all(rows))
    }

    async fn block(&self, blocker: UserId, blocked: UserId, now_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (blocker_id, blocked_id) DO NOTHING",
        )
        .bind(blocker)
        .bind(blocked)
        .bind(now_ms)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn unblock(&self, blocker: UserId, blocked: UserId) -> StoreResult<bool> {
        let gone = sqlx::query("DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2")
            .bind(blocker)
            .bind(blocked)
            .execute(self.writer())
            .await?;
        Ok(S::Db::rows_affected(&gone) > 0)
    }

    async fn blocked_by(&self, blocker: UserId) -> StoreResult<Vec<Person>> {
        let rows: Vec<PersonRow> = sqlx::query_as(
            "SELECT u.id, u.username, u.display_name, u.avatar_key
             FROM blocks b JOIN users u ON u.id = b.blocked_id
             WHERE b.blocker_id = $1 ORDER BY b.created_at DESC, u.id",
        )
        .bind(blocker)
        .fetch_all(self.reader())
        .await?;
        Ok(all(rows))
    }

    async fn blocked_either_way(&self, a: UserId, b: UserId) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM blocks
                            WHERE (blocker_id = $1 AND blocked_id = $2)
                               OR (blocker_id = $2 AND blocked_id = $1))",
        )
        .bind(a)
        .bind(b)
        .fetch_one(self.reader())
        .await?)
    }

    async fn direct_room_blocked(&self, rid: &str) -> StoreResult<bool> {
        if !S::Db::storable(rid) {
            return Ok(false);
        }
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rooms r
                            JOIN room_members one ON one.room_id = r.id
                            JOIN room_members other ON other.room_id = r.id
                            JOIN blocks b ON b.blocker_id = one.user_id
                                         AND b.blocked_id = other.user_id
                            WHERE r.id = $1 AND r.kind = 'direct')",
        )
        .bind(rid)
        .fetch_one(self.reader())
        .await?)
    }

    async fn share_a_room(&self, a: UserId, b: UserId) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM room_members one
                            JOIN room_members other ON other.room_id = one.room_id
                            WHERE one.user_id = $1 AND other.user_id = $2)",
        )
        .bind(a)
        .bind(b)
        .fetch_one(self.reader())
        .await?)
    }

    async fn invite_to_group(
        &self,
        rid: &str,
        user: UserId,
        by: UserId,
        now_ms: i64,
        declined_before: i64,
        max_pending: i64,
    ) -> StoreResult<bool> {
        let made = sqlx::query(
            "INSERT INTO group_invitations (room_id, user_id, invited_by, created_at)
             SELECT $1, $2, $3, $4
             WHERE (SELECT COUNT(*) FROM group_invitations
                    WHERE user_id = $2 AND declined_at IS NULL) < $6
             ON CONFLICT (room_id, user_id) DO UPDATE
                SET invited_by = excluded.invited_by, created_at = excluded.created_at,
                    declined_at = NULL
                WHERE group_invitations.declined_at IS NOT NULL
                  AND group_invitations.declined_at < $5",
        )
        .bind(rid)
        .bind(user)
        .bind(by)
        .bind(now_ms)
        .bind(declined_before)
        .bind(max_pending)
        .execute(self.writer())
        .await?;
        Ok(S::Db::rows_affected(&made) > 0)
    }

    async fn group_invitation_state(
        &self,
        rid: &str,
        user: UserId,
    ) -> StoreResult<Option<Option<i64>>> {
        Ok(sqlx::query_scalar(
            "SELECT declined_at FROM group_invitations WHERE room_id = $1 AND user_id = $2",
        )
        .bind(rid)
        .bind(user)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn group_invitations(&self, user: UserId) -> StoreResult<Vec<GroupInvitation>> {
        let rows: Vec<(String, Option<String>, i64, String, i64)> = sqlx::query_as(
            "SELECT g.room_id, r.title, g.invited_by, u.username, g.created_at
             FROM group_invitations g
             JOIN rooms r ON r.id = g.room_id
             JOIN users u ON u.id = g.invited_by
             WHERE g.user_id = $1 AND g.declined_at IS NULL
             ORDER BY g.created_at DESC, g.room_id",
        )
        .bind(user)
        .fetch_all(self.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(room_id, title, invited_by, invited_by_username, created_at)| GroupInvitation {
                    room_id,
                    title: title.unwrap_or_default(),
                    invited_by,
                    invited_by_username,
                    created_at,
                },
            )
            .collect())
    }

    async fn take_group_invitation(&self, rid: &str, user: UserId) -> StoreResult<bool> {
        let taken = sqlx::query(
            "DELETE FROM group_invitations
             WHERE room_id = $1 AND user_id = $2 AND declined_at IS NULL",
        )
        .bind(rid)
        .bind(user)
        .execute(self.writer())
        .await?;
        Ok(S::Db::rows_affected(&taken) > 0)
    }

    async fn decline_group(&self, rid: &str, user: UserId, now_ms: i64) -> StoreResult<bool> {
        let declined = sqlx::query(
            "UPDATE group_invitations SET declined_at = $1
             WHERE room_id = $2 AND user_id = $3 AND declined_at IS NULL",
        )
        .bind(now_ms)
        .bind(rid)
        .bind(user)
        .execute(self.writer())
        .await?;
        Ok(S::Db::rows_affected(&declined) > 0)
    }

    async fn note_departure(
        &self,
        rid: &str,
        user: UserId,
        left: bool,
        now_ms: i64,
    ) -> StoreResult<()> {
        match left {
            true => sqlx::query(
                "INSERT INTO group_departures (room_id, user_id, left_at) VALUES ($1, $2, $3)
                 ON CONFLICT (room_id, user_id) DO UPDATE SET left_at = excluded.left_at",
            )
            .bind(rid)
            .bind(user)
            .bind(now_ms),
            false => {
                sqlx::query("DELETE FROM group_departures WHERE room_id = $1 AND user_id = $2")
                    .bind(rid)
                    .bind(user)
            }
        }
        .execute(self.writer())
        .await
        .map_err(gone_or_db)?;
        Ok(())
    }

    async fn left_group(&self, rid: &str, user: UserId) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM group_departures WHERE room_id = $1 AND user_id = $2)",
        )
        .bind(rid)
        .bind(user)
        .fetch_one(self.reader())
        .await?)
    }

    async fn delete_account(
        &self,
        user_id: UserId,
        remove_messages: bool,
        now_ms: i64,
    ) -> StoreResult<Option<Option<String>>> {
        let mut tx = self.write_tx().await?;
        let avatar: Option<Option<String>> =
            sqlx::query_scalar("SELECT avatar_key FROM users WHERE id = $1 AND deleted_at IS NULL")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(avatar) = avatar else {
            return Ok(None);
        };
        if remove_messages {
            let rooms: Vec<String> = sqlx::query_scalar(
                "SELECT room_id FROM room_members WHERE user_id = $1 ORDER BY room_id",
            )
            .bind(user_id)
            .fetch_all(&mut *tx)
            .await?;
            // One revision per room, as a sender's own deletions would get.
            for rid in &rooms {
                let rev = next_rev(&mut tx, rid).await?;
                sqlx::query(
                    "DELETE FROM attachments WHERE message_id IN
                       (SELECT id FROM messages WHERE room_id = $1 AND sender_id = $2)",
                )
                .bind(rid.as_str())
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE messages SET body = '', attachments = NULL, deleted_at = $1, rev = $2
                     WHERE room_id = $3 AND sender_id = $4 AND kind = 'text'
                       AND deleted_at IS NULL",
                )
                .bind(now_ms)
                .bind(rev)
                .bind(rid.as_str())
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        let wiped_name = format!("deleted user #{user_id}");
        let wiped_email = format!("{user_id}@deleted.invalid");
        sqlx::query(
            "UPDATE users SET username = $1, email = $2, password_hash = '', display_name = NULL,
                              avatar_key = NULL, in_directory = FALSE, is_admin = FALSE,
                              disabled_at = COALESCE(disabled_at, $3), deleted_at = $3
             WHERE id = $4",
        )
        .bind(wiped_name.as_str())
        .bind(wiped_email.as_str())
        .bind(now_ms)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        for forget in [
            "DELETE FROM sessions WHERE user_id = $1",
            "DELETE FROM push_subscriptions WHERE user_id = $1",
            "DELETE FROM blocks WHERE blocker_id = $1 OR blocked_id = $1",
            "DELETE FROM group_invitations WHERE user_id = $1 OR invited_by = $1",
            "DELETE FROM group_departures WHERE user_id = $1",
            "DELETE FROM attachments WHERE uploader_id = $1 AND message_id IS NULL",
            "DELETE FROM invites WHERE created_by = $1",
            // Its bots go quiet: their tokens and every webhook of theirs or its.
            "DELETE FROM bot_tokens WHERE bot_id IN (SELECT id FROM users WHERE bot_owner = $1)",
            "DELETE FROM incoming_webhooks WHERE created_by = $1",
            "DELETE FROM outgoing_webhooks
             WHERE owner_id = $1 OR owner_id IN (SELECT id FROM users WHERE bot_owner = $1)",
            "UPDATE users
             SET disabled_at = COALESCE(disabled_at, (SELECT deleted_at FROM users WHERE id = $1))
             WHERE bot_owner = $1",
        ] {
            sqlx::query(forget).bind(user_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Some(avatar))
    }

    async fn messages_by(
        &self,
        user: UserId,
        rid: &str,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<Message>> {
        let rows: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM messages m JOIN users u ON u.id = m.sender_id
             WHERE m.room_id = $1 AND m.seq > $2 AND m.sender_id = $3 AND m.kind = 'text'
               AND m.deleted_at IS NULL
             ORDER BY m.seq LIMIT $4",
            S::Db::MESSAGE_COLUMNS
        )))
        .bind(rid)
        .bind(after_seq)
        .bind(user)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        Ok(all(rows))
    }

    // Password reset by email (issue 16).

    async fn create_password_reset(
        &self,
        token_hash: &[u8],
        user_id: UserId,
        now_ms: i64,
        expires_at: i64,
        max_live: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        // The row lock orders concurrent requests for one account (PostgreSQL;
        // SQLite has one writer).
        let user: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM users WHERE id = $1 AND disabled_at IS NULL {}",
            S::Db::FOR_UPDATE
        )))
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if user.is_none() {
            return Ok(false);
        }
        // Only this account's: rows another transaction may be deleting
        // too would risk a deadlock between nodes.
        sqlx::query("DELETE FROM password_resets WHERE user_id = $1 AND expires_at <= $2")
            .bind(user_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM password_resets WHERE user_id = $1 AND expires_at > $2",
        )
        .bind(user_id)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?;
        if live >= max_live {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(now_ms)
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or_db)?;
        tx.commit().await?;
        Ok(true)
    }

    async fn password_reset(&self, token_hash: &[u8], now_ms: i64) -> StoreResult<Option<User>> {
        let row: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT u.id, u.username, u.email
             FROM password_resets r JOIN users u ON u.id = r.user_id
             WHERE r.token_hash = $1 AND r.expires_at > $2 AND u.disabled_at IS NULL",
        )
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(|(id, username, email)| User {
            id,
            username,
            email,
            grant: None,
        }))
    }

    async fn use_password_reset(
        &self,
        token_hash: &[u8],
        password_hash: &str,
        now_ms: i64,
    ) -> StoreResult<Option<User>> {
        let mut tx = self.write_tx().await?;
        // The delete is the check: of two uses racing, the second finds no row.
        let user_id: Option<i64> = sqlx::query_scalar(
            "DELETE FROM password_resets
             WHERE token_hash = $1 AND expires_at > $2
               AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL)
             RETURNING user_id",
        )
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(user_id) = user_id else {
            return Ok(None);
        };
        let (id, username, email): (i64, String, String) =
            sqlx::query_as("SELECT id, username, email FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM password_resets WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let update = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id);
        end_sessions_after(tx, update, user_id, None).await?;
        Ok(Some(User {
            id,
            username,
            email,
            grant: None,
        }))
    }

    // Bots and webhooks (issue 16).

    async fn create_bot(&self, bot: NewBot<'_>) -> StoreResult<Bot> {
        let id = insert_bot(self.writer(), bot).await?;
        Ok(Bot {
            user: User {
                id,
                username: bot.username.to_owned(),
                email: bot.email.to_owned(),
                grant: None,
            },
            owner_id: bot.owner,
            created_at: bot.now_ms,
        })
    }

    async fn bots(&self, owner: UserId) -> StoreResult<Vec<Bot>> {
        let rows: Vec<BotRow> = sqlx::query_as(
            "SELECT id, username, email, bot_owner, created_at FROM users
             WHERE bot_owner = $1 AND disabled_at IS NULL
               AND id NOT IN (SELECT bot_id FROM incoming_webhooks)
             ORDER BY created_at, id",
        )
        .bind(owner)
        .fetch_all(self.reader())
        .await?;
        Ok(all(rows))
    }

    async fn delete_bot(&self, owner: UserId, bot_id: UserId, now_ms: i64) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let disabled = sqlx::query(
            "UPDATE users SET disabled_at = $1
             WHERE id = $2 AND bot_owner = $3 AND disabled_at IS NULL
               AND id NOT IN (SELECT bot_id FROM incoming_webhooks)",
        )
        .bind(now_ms)
        .bind(bot_id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if S::Db::rows_affected(&disabled) == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM bot_tokens WHERE bot_id = $1")
            .bind(bot_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM outgoing_webhooks WHERE owner_id = $1")
            .bind(bot_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_bot_token(&self, token_hash: &[u8], token: &BotToken) -> StoreResult<()> {
        let scopes = token.grant.scopes().join(",");
        let rooms = stored_rooms(token.grant.rooms.as_ref());
        sqlx::query(
            "INSERT INTO bot_tokens (token_hash, public_id, bot_id, scopes, rooms, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(token.id.as_str())
        .bind(token.bot_id)
        .bind(scopes.as_str())
        .bind(rooms.as_deref())
        .bind(token.created_at)
        .execute(self.writer())
        .await
        .map_err(conflict_or_db)?;
        Ok(())
    }

    async fn bot_tokens(&self, bot_id: UserId) -> StoreResult<Vec<BotToken>> {
        let rows: Vec<BotTokenRow> = sqlx::query_as(
            "SELECT public_id, bot_id, scopes, rooms, created_at FROM bot_tokens
             WHERE bot_id = $1 ORDER BY created_at, public_id",
        )
        .bind(bot_id)
        .fetch_all(self.reader())
        .await?;
        Ok(all(rows))
    }

    async fn delete_bot_token(&self, bot_id: UserId, id: &str) -> StoreResult<bool> {
        if !S::Db::storable(id) {
            return Ok(false);
        }
        let deleted = sqlx::query("DELETE FROM bot_tokens WHERE bot_id = $1 AND public_id = $2")
            .bind(bot_id)
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(S::Db::rows_affected(&deleted) > 0)
    }

    async fn bot_token(&self, token_hash: &[u8]) -> StoreResult<Option<(User, BotToken)>> {
        let row: Option<BotTokenUserRow> = sqlx::query_as(
            "SELECT u.id, u.username, u.email,
                    t.public_id, t.bot_id, t.scopes, t.rooms, t.created_at
             FROM bot_tokens t
             JOIN users u ON u.id = t.bot_id
             JOIN users o ON o.id = u.bot_owner
             WHERE t.token_hash = $1 AND u.disabled_at IS NULL AND o.disabled_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(|row| (row.user.into(), row.token.into())))
    }

    async fn create_incoming_webhook(
        &self,
        secret_hash: &[u8],
        id: &str,
        rid: &str,
        bot: NewBot<'_>,
    ) -> StoreResult<IncomingWebhook> {
        let mut tx = self.write_tx().await?;
        let bot_id = insert_bot(&mut *tx, bot).await?;
        sqlx::query(
            "INSERT INTO incoming_webhooks
                 (secret_hash, public_id, room_id, created_by, bot_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(secret_hash)
        .bind(id)
        .bind(rid)
        .bind(bot.owner)
        .bind(bot_id)
        .bind(bot.now_ms)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or_db)?;
        tx.commit().await?;
        Ok(IncomingWebhook {
            id: id.to_owned(),
            room_id: rid.to_owned(),
            created_by: bot.owner,
            bot: User {
                id: bot_id,
                username: bot.username.to_owned(),
                email: bot.email.to_owned(),
                grant: None,
            },
            created_at: bot.now_ms,
        })
    }

    async fn incoming_webhooks(&self, rid: &str) -> StoreResult<Vec<IncomingWebhook>> {
        if !S::Db::storable(rid) {
            return Ok(Vec::new());
        }
        let rows: Vec<IncomingWebhookRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INCOMING_WEBHOOK_COLUMNS}
             FROM incoming_webhooks w JOIN users u ON u.id = w.bot_id
             WHERE w.room_id = $1 ORDER BY w.created_at, w.public_id"
        )))
        .bind(rid)
        .fetch_all(self.reader())
        .await?;
        Ok(all(rows))
    }

    async fn count_incoming_webhooks(&self, created_by: UserId) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM incoming_webhooks WHERE created_by = $1")
                .bind(created_by)
                .fetch_one(self.reader())
                .await?,
        )
    }

    async fn delete_incoming_webhook(&self, rid: &str, id: &str, now_ms: i64) -> StoreResult<bool> {
        if !S::Db::storable(rid) || !S::Db::storable(id) {
            return Ok(false);
        }
        let mut tx = self.write_tx().await?;
        let bot_id: Option<i64> = sqlx::query_scalar(
            "DELETE FROM incoming_webhooks WHERE room_id = $1 AND public_id = $2 RETURNING bot_id",
        )
        .bind(rid)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(bot_id) = bot_id else {
            return Ok(false);
        };
        sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL")
            .bind(now_ms)
            .bind(bot_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn incoming_webhook(&self, secret_hash: &[u8]) -> StoreResult<Option<IncomingWebhook>> {
        let row: Option<IncomingWebhookRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INCOMING_WEBHOOK_COLUMNS}
             FROM incoming_webhooks w
             JOIN users u ON u.id = w.bot_id
             JOIN users c ON c.id = w.created_by
             WHERE w.secret_hash = $1 AND u.disabled_at IS NULL AND c.disabled_at IS NULL"
        )))
        .bind(secret_hash)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(IncomingWebhook::from))
    }

    async fn create_outgoing_webhook(&self, hook: &OutgoingWebhook) -> StoreResult<()> {
        let events = hook.events.names().join(",");
        let rooms = stored_rooms(hook.rooms.as_ref());
        sqlx::query(
            "INSERT INTO outgoing_webhooks
                 (public_id, owner_id, url, secret, events, rooms, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hook.id.as_str())
        .bind(hook.owner_id)
        .bind(hook.url.as_str())
        .bind(hook.secret.as_str())
        .bind(events.as_str())
        .bind(rooms.as_deref())
        .bind(hook.created_at)
        .execute(self.writer())
        .await
        .map_err(conflict_or_db)?;
        Ok(())
    }

    async fn outgoing_webhooks(&self, owner: UserId) -> StoreResult<Vec<OutgoingWebhook>> {
        let rows: Vec<OutgoingWebhookRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {OUTGOING_WEBHOOK_COLUMNS} FROM outgoing_webhooks w
             WHERE w.owner_id = $1 ORDER BY w.created_at, w.public_id"
        )))
        .bind(owner)
        .fetch_all(self.reader())
        .await?;
        Ok(all(rows))
    }

    async fn delete_outgoing_webhook(&self, owner: UserId, id: &str) -> StoreResult<bool> {
        if !S::Db::storable(id) {
            return Ok(false);
        }
        let deleted =
            sqlx::query("DELETE FROM outgoing_webhooks WHERE owner_id = $1 AND public_id = $2")
                .bind(owner)
                .bind(id)
                .execute(self.writer())
                .await?;
        Ok(S::Db::rows_affected(&deleted) > 0)
    }

    async fn any_outgoing_webhook(&self) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM outgoing_webhooks)")
                .fetch_one(self.reader())
                .await?,
        )
    }

    async fn webhook_targets(&self, rid: &str) -> StoreResult<Vec<(OutgoingWebhook, String)>> {
        if !S::Db::storable(rid) {
            return Ok(Vec::new());
        }
        let rows: Vec<WebhookTargetRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {OUTGOING_WEBHOOK_COLUMNS}, u.username
             FROM outgoing_webhooks w
             JOIN room_members rm ON rm.user_id = w.owner_id AND rm.room_id = $1
             JOIN users u ON u.id = w.owner_id
             WHERE u.disabled_at IS NULL
             ORDER BY w.created_at, w.public_id"
        )))
        .bind(rid)
        .fetch_all(self.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.hook.into(), row.username))
            .collect())
    }
}
