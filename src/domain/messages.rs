//! Messages: sending (with replies), editing, deleting, reactions, history,
//! catching up (`sync`, changes) and search.

use std::time::Instant;

use serde_json::Value;

use super::model::{self, Message, Page, Quote, RoomState, User};
use super::rules::Limits;
use super::store::{MessageChange, NewMessage, StoreError};
use super::{Error, Natter, Result, now_ms, rules};

/// A send as a door read it. Each field is parsed by its rule (`rules`) at
/// the door; a refusal travels with the input and is answered where
/// [`Natter::send`] checks that field, so that which error a request gets
/// (shutting down, membership, then the fields in order) is decided here
/// whatever the door. The same holds for the other methods' parsed inputs.
#[derive(Debug)]
pub struct Send<'a> {
    pub rid: &'a str,
    /// [`rules::message_body`] or [`rules::message_text`].
    pub body: Result<String>,
    /// [`rules::client_id`].
    pub client_id: Result<Option<String>>,
    /// The `seq` of the message it answers, if any ([`rules::reply_to`]).
    pub reply_to: Result<Option<i64>>,
    /// Ids of the sender's uploads it carries ([`rules::attachment_ids`]).
    pub attachments: Result<Vec<String>>,
    /// The socket it came from: every other socket in the room hears of it.
    pub origin: Option<String>,
}

impl<'a> Send<'a> {
    /// `{message, client_id?, reply_to?, attachments?}` (Socket.IO
    /// `outgoing`, `POST …/messages`). With attachments, `message` (the
    /// caption) may be empty or absent.
    pub fn from_json(
        rid: &'a str,
        payload: &Value,
        limits: &Limits,
        origin: Option<String>,
    ) -> Self {
        let attachments = rules::attachment_ids(payload.get("attachments"));
        let body = match rules::field(payload, "message") {
            Value::Null if attachments.as_ref().is_ok_and(|a| !a.is_empty()) => Ok(String::new()),
            text => rules::message_body(text, limits),
        };
        Send {
            rid,
            body,
            client_id: rules::client_id(payload.get("client_id")),
            reply_to: rules::reply_to(payload.get("reply_to")),
            attachments,
            origin,
        }
    }
}

/// An edit as a door read it (see [`Send`] for why the fields are results).
#[derive(Debug)]
pub struct Edit {
    pub seq: Result<i64>,
    pub body: Result<String>,
}

impl Edit {
    /// `{seq, message}`; `seq` from the path for the API.
    pub fn from_json(seq: Option<&Value>, payload: &Value, limits: &Limits) -> Self {
        Edit {
            seq: rules::message_seq(seq),
            body: rules::message_body(rules::field(payload, "message"), limits),
        }
    }
}

/// A reaction as a door read it.
#[derive(Debug)]
pub struct React {
    pub seq: Result<i64>,
    pub emoji: Result<String>,
}

impl React {
    /// `{seq, emoji}`; `seq` from the path for the API.
    pub fn from_json(seq: Option<&Value>, payload: &Value) -> Self {
        React {
            seq: rules::message_seq(seq),
            emoji: rules::emoji(payload.get("emoji")),
        }
    }
}

/// A search as a door read it.
#[derive(Debug)]
pub struct Search {
    pub words: Result<Vec<String>>,
    /// How many hits were asked for, if said.
    pub limit: Result<Option<i64>>,
}

impl Search {
    /// `{q, limit?}` (a Socket.IO payload, or the query string read as strings).
    pub fn from_json(q: Option<&Value>, limit: Option<&Value>) -> Self {
        Search {
            words: rules::search_words(q),
            limit: rules::seq_cursor(limit, "limit"),
        }
    }
}

/// A message holds at most this many different emoji.
const MAX_DISTINCT_REACTIONS: usize = 20;

/// The rule of edits, deletions and reactions: they apply to a person's
/// message; none (or a system message) is `no_such_message`.
fn text_message(found: Option<&Message>) -> Result<&Message> {
    match found {
        Some(m) if m.kind == model::MessageKind::Text => Ok(m),
        _ => Err(Error::NoSuchMessage),
    }
}

impl Natter {
    /// Validates, durably stores and announces a message. The server alone
    /// decides the sender and the time; the ack may be sent once this returns.
    pub async fn send(&self, me: &User, send: Send<'_>) -> Result<Message> {
        super::bots::allow(me, super::bots::Need::Send, Some(send.rid))?;
        let accepting = self.accepting.read().await;
        if !*accepting {
            return Err(Error::ShuttingDown);
        }
        // The hot path: a direct room's members skip the membership query once known.
        self.require_member_cached(me, send.rid).await?;
        self.send_as_member(me, send).await
    }

    /// The rest of [`Natter::send`], once `me` may send in the room: a
    /// member, or an incoming webhook's sender (see `webhooks`). The caller
    /// holds `accepting`.
    pub(super) async fn send_as_member(&self, me: &User, send: Send<'_>) -> Result<Message> {
        let ids = send.attachments?;
        // A caption may be empty; a message without files may not.
        let body = match send.body {
            Err(Error::Empty) if !ids.is_empty() => String::new(),
            body => body?,
        };
        let client_id = send.client_id?;
        let reply_to = match send.reply_to? {
            None => None,
            Some(seq) => Some(self.quote(send.rid, seq).await?),
        };
        let attachments = self.attachments_to_send(me, send.rid, ids).await?;
        self.budgets.send(me.id)?;
        let new = NewMessage {
            rid: send.rid.to_owned(),
            sender: me.clone(),
            body,
            client_id,
            reply_to,
            attachments,
            now_ms: now_ms(),
        };
        match self.delivery.store(new, send.origin).await {
            Ok((message, _)) => Ok(message),
            // Only a claim of its attachments conflicts: one was sent with
            // another message meanwhile (or expired unsent).
            Err(StoreError::Conflict) => Err(Error::NoSuchAttachment),
            Err(e) => Err(e.into()),
        }
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
            message: Quote::excerpt(&quoted.message),
            deleted: quoted.deleted,
        })
    }

    /// Edits one of `me`'s text messages (the new text follows the rules of a
    /// new message) and tells the room, but the socket `origin`.
    pub async fn edit(
        &self,
        me: &User,
        rid: &str,
        edit: Edit,
        origin: Option<&str>,
    ) -> Result<Message> {
        super::bots::allow(me, super::bots::Need::Send, Some(rid))?;
        self.budgets.event(me.id)?;
        let seq = edit.seq?;
        let body = edit.body?;
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
        seq: Result<i64>,
        origin: Option<&str>,
    ) -> Result<Message> {
        super::bots::allow(me, super::bots::Need::Send, Some(rid))?;
        self.budgets.event(me.id)?;
        let seq = seq?;
        self.require_member(me, rid).await?;
        let had_files = self
            .store
            .message(rid, seq)
            .await?
            .is_some_and(|m| !m.attachments.is_empty());
        let changed = self
            .store
            .change_message(rid, seq, me.id, MessageChange::Delete, now_ms())
            .await?;
        if had_files && changed.is_some() {
            self.files_released();
        }
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
        let why = match text_message(message.as_ref()) {
            Err(e) => e,
            Ok(m) if m.sender_id != me.id => Error::NotSender,
            Ok(m) if m.deleted => Error::Deleted,
            // It changed between the two reads: the caller may try again.
            Ok(_) => Error::Internal(anyhow::anyhow!("message {rid}/{seq} changed meanwhile")),
        };
        Ok((message, why))
    }

    /// Adds `me`'s `emoji` to a message, or takes it away if it was there,
    /// and tells the room, but the socket `origin`.
    pub async fn react(
        &self,
        me: &User,
        rid: &str,
        react: React,
        origin: Option<&str>,
    ) -> Result<Message> {
        super::bots::allow(me, super::bots::Need::Send, Some(rid))?;
        self.budgets.event(me.id)?;
        let seq = react.seq?;
        let emoji = react.emoji?;
        self.require_member(me, rid).await?;
        let current = self.store.message(rid, seq).await?;
        let current = text_message(current.as_ref())?;
        if current.deleted {
            return Err(Error::Deleted);
        }
        let new_emoji = !current.reactions.iter().any(|r| r.emoji == emoji);
        if new_emoji && current.reactions.len() >= MAX_DISTINCT_REACTIONS {
            return Err(Error::invalid(format!(
                "a message holds at most {MAX_DISTINCT_REACTIONS} different emoji"
            )));
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

    /// A page of history (see [`Page`]); members only.
    pub async fn history(&self, me: &User, rid: &str, page: Page) -> Result<History> {
        super::bots::allow(me, super::bots::Need::Read, Some(rid))?;
        self.budgets.event(me.id)?;
        let _turn = self.budgets.page(me.id).await?;
        let room = self.require_member(me, rid).await?;
        let messages = self.store.messages(rid, page).await?;
        // `seq` counts from 1 with no gaps (deleted messages keep theirs), so
        // the page's edge says whether anything lies beyond it.
        let has_more = match page.after {
            Some(_) => {
                let end = page
                    .before
                    .map_or(room.last_seq, |b| (b - 1).min(room.last_seq));
                messages.last().is_some_and(|m| m.seq < end)
            }
            None => messages.first().is_some_and(|m| m.seq > 1),
        };
        Ok(History { messages, has_more })
    }

    /// What a reconnecting client missed: messages after `after_seq`, ascending,
    /// and — given `after_rev` — the changes to earlier ones since that revision.
    /// Marks the new messages read, as the client is now showing them.
    pub async fn sync(&self, me: &User, rid: &str, since: Since) -> Result<Synced> {
        super::bots::allow(me, super::bots::Need::Read, Some(rid))?;
        self.budgets.event(me.id)?;
        let _turn = self.budgets.page(me.id).await?;
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
        super::bots::allow(me, super::bots::Need::Read, Some(rid))?;
        self.budgets.event(me.id)?;
        let _turn = self.budgets.page(me.id).await?;
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
    ///
    /// Bounded: a few per second per user ([`Error::RateLimited`] beyond),
    /// each stopped inside the database at its time budget
    /// ([`Error::SearchTimeout`]). Dropping the future stops the query too:
    /// the caller's door drops it when its client goes away.
    pub async fn search(&self, me: &User, search: Search) -> Result<Vec<Message>> {
        super::bots::allow(me, super::bots::Need::Read, None)?;
        let words = search.words?;
        let limit = rules::page_size(search.limit?, SEARCH_PAGE_DEFAULT, &self.limits)?
            .min(SEARCH_PAGE_MAX);
        self.budgets.search(me.id)?;
        let searched = async {
            let _turn = self.budgets.page(me.id).await?;
            let deadline = Instant::now() + self.limits.search_timeout;
            match self.store.search(me.id, &words, limit, deadline).await {
                // A room-limited bot token finds its rooms' messages only.
                Ok(mut found) => {
                    found.retain(|m| super::bots::sees(me, &m.rid));
                    Ok(found)
                }
                Err(StoreError::TimedOut) => Err(Error::SearchTimeout),
                Err(e) => Err(e.into()),
            }
        };
        // Shutdown does not wait for searches (in line or running): each
        // is dropped, which stops its query, and answered `unavailable`.
        tokio::select! {
            result = searched => result,
            () = self.stopping.cancelled() => Err(Error::ShuttingDown),
        }
    }
}

/// Where a `sync` starts: after `after_seq` (and, for changes, `after_rev`).
#[derive(Debug, Clone, Copy)]
pub struct Since {
    pub after_seq: i64,
    pub after_rev: Option<i64>,
    pub limit: i64,
}

/// A page of a room's history, in ascending `seq`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct History {
    pub messages: Vec<Message>,
    /// Whether more messages lie beyond the page in the direction it was
    /// asked for: older ones (by `before`, or no cursor) or newer ones (by `after`).
    pub has_more: bool,
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
