//! Webhooks: incoming (a secret URL that posts into a room) and outgoing
//! (a room's events POSTed to a URL, signed).
//!
//! **Incoming.** A member of a room makes one with a name; the name becomes
//! the username of a bot made for it (owned by the member), and what is
//! posted to `/hooks/SECRET` is sent as that bot through the send path every
//! message takes ([`Natter::send_as_member`]): the same rules and limits,
//! the bot's own send budget, the room's next `seq`, the broadcast to
//! sockets, pushes and outgoing webhooks. The bot is not a member of the
//! room; the webhook's creator must be, at every post: once they leave, the
//! URL answers 404 as if it never existed.
//!
//! **Outgoing.** A person makes one for themselves or one of their bots:
//! a URL, the events it wants (`message`: every message of someone else;
//! `mention`: those that mention its owner), optionally a list of rooms. It
//! hears only rooms its owner is a member of when the event is delivered.
//! Like pushes, deliveries never slow a send: the announcement offers each
//! new message to a bounded queue ([`WebhookLimits::queue`], past which the
//! message is dropped for webhooks, counted and logged), and one task per
//! node turns each into deliveries. At most as many deliveries as the queue
//! holds are pending at once (waiting, in flight or between attempts), with
//! [`CONCURRENT_POSTS`] requests in flight. A delivery is tried
//! [`MAX_ATTEMPTS`] times, each within [`WebhookLimits::timeout`], with
//! exponential backoff from [`FIRST_RETRY`]; any answer but 2xx, a timeout
//! or a connection failure is a failed attempt. Each is signed afresh (see
//! [`signature`]). A node that starts shutting down stops delivering.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc};

use super::bots::{Need, allow, in_rooms, rooms_field};
use super::messages::Send;
use super::model::{
    IncomingWebhook, Message, MessageKind, OutgoingWebhook, RoomAccess, User, UserId, WebhookEvents,
};
use super::store::{NewBot, StoreError};
use super::{Error, Natter, Result, now_ms, rules, secrets};
use crate::tasks::Task;
use crate::telemetry;

/// Incoming webhooks one person has made (each is a bot user).
pub const MAX_INCOMING_PER_USER: i64 = 20;
/// Outgoing webhooks of one owner (a person, or each of their bots).
pub const MAX_OUTGOING_PER_OWNER: usize = 10;
/// Tries of one delivery, the first included.
pub const MAX_ATTEMPTS: u32 = 5;
/// The wait before the second try; each later one waits twice the one
/// before (1, 2, 4, 8 s: a receiver has 15 s, plus the tries, to come back).
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Requests in flight at once per node.
pub const CONCURRENT_POSTS: usize = 16;
/// What an incoming webhook's secret starts with (the path's last part).
const INCOMING_PREFIX: &str = "nwh_";
/// What an outgoing webhook's signing secret starts with.
const SIGNING_PREFIX: &str = "whsec_";
/// How long "no outgoing webhook exists" is believed: a server without any
/// costs no query per message. One made on this node is known at once.
const KNOW_ANY_FOR: Duration = Duration::from_secs(5);

/// The per-node budgets of outgoing deliveries.
#[derive(Debug, Clone, Copy)]
pub struct WebhookLimits {
    /// Messages waiting to be turned into deliveries, and deliveries
    /// pending at once (`--webhook-queue`).
    pub queue: usize,
    /// How long one request may take (`--webhook-timeout-secs`).
    pub timeout: Duration,
}

impl Default for WebhookLimits {
    fn default() -> Self {
        WebhookLimits {
            queue: 1024,
            timeout: Duration::from_secs(10),
        }
    }
}

/// One request of a delivery: where, what, and its headers.
#[derive(Debug, Clone)]
pub struct Post {
    pub url: String,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// Sends a delivery's requests (the HTTP side implements it with reqwest).
#[async_trait]
pub trait WebhookPoster: std::marker::Send + Sync + 'static {
    /// POSTs and answers the response's status, or why there was none.
    async fn post(&self, post: &Post) -> std::result::Result<u16, String>;
}

/// `sha256=` and the hex HMAC-SHA256, keyed by the webhook's secret, of
/// `TIMESTAMP.BODY` — the timestamp as sent in `X-Natter-Timestamp`, so a
/// receiver can refuse old replays.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Which event a message is for an outgoing webhook, if any: never its
/// owner's own messages (a bot would hear itself), only its rooms; a
/// mention of its owner when it wants mentions, else a message when it
/// wants every message.
fn event_for(hook: &OutgoingWebhook, owner: &str, message: &Message) -> Option<&'static str> {
    if message.kind != MessageKind::Text
        || message.sender_id == hook.owner_id
        || !in_rooms(hook.rooms.as_deref(), &message.rid)
    {
        return None;
    }
    if hook.events.mention && rules::mentions(&message.message, owner) {
        Some("mention")
    } else if hook.events.message {
        Some("message")
    } else {
        None
    }
}

/// Where stored messages wait for their webhooks: silent until the task
/// starts, then bounded.
#[derive(Clone, Default)]
pub struct WebhookQueue(Arc<QueueInner>);

#[derive(Default)]
struct QueueInner {
    sender: OnceLock<mpsc::Sender<Message>>,
    /// Whether the last offer found the queue full (logged once per overload).
    full: AtomicBool,
}

impl WebhookQueue {
    /// Hands a newly stored message over, without waiting: a full queue drops it.
    pub fn offer(&self, message: &Message) {
        if message.kind != MessageKind::Text {
            return;
        }
        let Some(sender) = self.0.sender.get() else {
            return;
        };
        match sender.try_send(message.clone()) {
            Ok(()) => {
                if self.0.full.load(Ordering::Relaxed) && self.0.full.swap(false, Ordering::Relaxed)
                {
                    tracing::info!("the webhook queue takes messages again");
                }
            }
            Err(TrySendError::Full(_)) => {
                telemetry::webhook_delivery("dropped");
                if !self.0.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the webhook queue is full: new messages reach no outgoing webhook until it drains"
                    );
                }
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

/// The domain's webhook state: the queue, and whether any outgoing webhook
/// exists (as last read).
#[derive(Default)]
pub(super) struct Webhooks {
    pub(super) queue: WebhookQueue,
    known_any: Mutex<Option<(Instant, bool)>>,
}

/// A new outgoing webhook as a door read it: `{url, events, rooms?, bot_id?}`.
#[derive(Debug)]
pub struct NewOutgoing {
    pub url: Result<String>,
    pub events: Result<WebhookEvents>,
    pub rooms: Result<Option<Vec<String>>>,
    /// One of the caller's bots it is for; the caller's own otherwise.
    pub bot_id: Result<Option<String>>,
}

impl NewOutgoing {
    pub fn from_json(payload: &Value, limits: &rules::Limits) -> Self {
        let bad_events =
            || Error::invalid("events must be a non-empty list of \"message\" and \"mention\"");
        let events = match payload.get("events") {
            Some(Value::Array(list)) if !list.is_empty() => {
                let mut events = WebhookEvents {
                    message: false,
                    mention: false,
                };
                let mut bad = false;
                for event in list {
                    match event.as_str() {
                        Some("message") => events.message = true,
                        Some("mention") => events.mention = true,
                        _ => bad = true,
                    }
                }
                if bad { Err(bad_events()) } else { Ok(events) }
            }
            _ => Err(bad_events()),
        };
        NewOutgoing {
            url: rules::webhook_url(rules::field(payload, "url"), limits.webhook_allow_private),
            events,
            rooms: rooms_field(payload.get("rooms")),
            bot_id: match payload.get("bot_id") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(id)) => Ok(Some(id.clone())),
                Some(_) => Err(Error::invalid("bot_id must be a bot's id")),
            },
        }
    }
}

/// One delivery: an event for one webhook, ready to sign and send.
struct Pending {
    hook_id: String,
    url: String,
    secret: String,
    event: &'static str,
    event_id: String,
    body: Vec<u8>,
}

impl Natter {
    /// Makes an incoming webhook for room `rid`, of which `me` is a member;
    /// its `name` is its sender's username (a bot of `me`'s). Returns it
    /// with its secret, the last part of its URL, shown this once.
    pub async fn create_incoming_webhook(
        &self,
        me: &User,
        rid: &str,
        name: Result<String>,
    ) -> Result<(IncomingWebhook, String)> {
        allow(me, Need::Manage, None)?;
        self.budgets.event(me.id)?;
        self.require_member(me, rid).await?;
        let name = rules::username(&name?).map_err(|_| {
            Error::invalid("name must be 3 to 32 of a-z, 0-9, _ . -").in_field("name")
        })?;
        if self.store.count_incoming_webhooks(me.id).await? >= MAX_INCOMING_PER_USER {
            return Err(Error::TooMany(
                "incoming webhooks",
                MAX_INCOMING_PER_USER as usize,
            ));
        }
        let secret = format!("{INCOMING_PREFIX}{}", secrets::new_token());
        let email = format!("{name}@{}", super::bots::EMAIL_DOMAIN);
        let hash = self.unknowable_password().await?;
        let bot = NewBot {
            owner: me.id,
            username: &name,
            email: &email,
            password_hash: &hash,
            now_ms: now_ms(),
        };
        let made = self
            .store
            .create_incoming_webhook(
                &secrets::token_hash(&secret),
                &secrets::new_session_id(),
                rid,
                bot,
            )
            .await;
        match made {
            Ok(hook) => Ok((hook, secret)),
            Err(StoreError::Conflict) => Err(Error::Taken),
            Err(e) => Err(e.into()),
        }
    }

    /// The incoming webhooks of a room `me` is a member of.
    pub async fn incoming_webhooks(&self, me: &User, rid: &str) -> Result<Vec<IncomingWebhook>> {
        allow(me, Need::Manage, None)?;
        self.budgets.event(me.id)?;
        self.require_member(me, rid).await?;
        Ok(self.store.incoming_webhooks(rid).await?)
    }

    /// Deletes an incoming webhook of a room `me` is a member of (any
    /// member may: it speaks into their room): its URL answers 404 at once.
    pub async fn delete_incoming_webhook(&self, me: &User, rid: &str, id: &str) -> Result<()> {
        allow(me, Need::Manage, None)?;
        self.budgets.event(me.id)?;
        self.require_member(me, rid).await?;
        match self
            .store
            .delete_incoming_webhook(rid, id, now_ms())
            .await?
        {
            true => Ok(()),
            false => Err(Error::NoSuchWebhook),
        }
    }

    /// Sends what was posted to an incoming webhook's URL, `{text,
    /// client_id?}`, into its room, as its bot. An unknown or deleted
    /// webhook, or one whose creator left the room (or was disabled), is
    /// [`Error::NoSuchWebhook`].
    pub async fn post_to_webhook(&self, secret: &str, payload: &Value) -> Result<Message> {
        let hook = self
            .store
            .incoming_webhook(&secrets::token_hash(secret))
            .await?
            .ok_or(Error::NoSuchWebhook)?;
        match self
            .store
            .room_access(&hook.room_id, hook.created_by)
            .await?
        {
            RoomAccess::Member(_) => {}
            RoomAccess::NotMember | RoomAccess::NoSuchRoom => return Err(Error::NoSuchWebhook),
        }
        let body = match payload.get("text") {
            Some(Value::String(text)) => rules::message_text(text, &self.limits),
            _ => Err(Error::invalid("text must be a string")),
        };
        let send = Send {
            rid: &hook.room_id,
            body,
            client_id: rules::client_id(payload.get("client_id")),
            reply_to: Ok(None),
            attachments: Ok(Vec::new()),
            origin: None,
        };
        let accepting = self.accepting.read().await;
        if !*accepting {
            return Err(Error::ShuttingDown);
        }
        self.send_as_member(&hook.bot, send).await
    }

    /// Who an outgoing webhook of `me`'s is for: `me`, or one of their bots.
    async fn webhook_owner(&self, me: &User, bot_id: Option<&str>) -> Result<UserId> {
        match bot_id {
            None => Ok(me.id),
            Some(id) => {
                let id: UserId = id.parse().map_err(|_| Error::NoSuchBot)?;
                let bots = self.store.bots(me.id).await?;
                match bots.iter().any(|b| b.user.id == id) {
                    true => Ok(id),
                    false => Err(Error::NoSuchBot),
                }
            }
        }
    }

    /// Makes an outgoing webhook for `me` or one of their bots. Its signing
    /// secret is in the answer (`secret`), this once.
    pub async fn create_outgoing_webhook(
        &self,
        me: &User,
        new: NewOutgoing,
    ) -> Result<OutgoingWebhook> {
        allow(me, Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let url = new.url?;
        let events = new.events?;
        let rooms = new.rooms?;
        let owner = self.webhook_owner(me, new.bot_id?.as_deref()).await?;
        if self.store.outgoing_webhooks(owner).await?.len() >= MAX_OUTGOING_PER_OWNER {
            return Err(Error::TooMany("outgoing webhooks", MAX_OUTGOING_PER_OWNER));
        }
        let hook = OutgoingWebhook {
            id: secrets::new_session_id(),
            owner_id: owner,
            url,
            secret: format!("{SIGNING_PREFIX}{}", secrets::new_token()),
            events,
            rooms,
            created_at: now_ms(),
        };
        self.store.create_outgoing_webhook(&hook).await?;
        *self.webhooks.known_any.lock().expect("not poisoned") = Some((Instant::now(), true));
        Ok(hook)
    }

    /// The outgoing webhooks of `me`, then of each of their bots, each oldest first.
    pub async fn outgoing_webhooks(&self, me: &User) -> Result<Vec<OutgoingWebhook>> {
        allow(me, Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let mut hooks = self.store.outgoing_webhooks(me.id).await?;
        for bot in self.store.bots(me.id).await? {
            hooks.extend(self.store.outgoing_webhooks(bot.user.id).await?);
        }
        Ok(hooks)
    }

    /// Deletes an outgoing webhook of `me` or of one of their bots: nothing
    /// more is delivered to it (a delivery already pending may still arrive).
    pub async fn delete_outgoing_webhook(&self, me: &User, id: &str) -> Result<()> {
        allow(me, Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let mut owners = vec![me.id];
        owners.extend(self.store.bots(me.id).await?.iter().map(|b| b.user.id));
        for owner in owners {
            if self.store.delete_outgoing_webhook(owner, id).await? {
                return Ok(());
            }
        }
        Err(Error::NoSuchWebhook)
    }

    /// Starts this node's webhook task (see the module): from now on every
    /// message this node stores is offered to outgoing webhooks. Once per node.
    pub fn start_webhooks(
        self: &Arc<Self>,
        poster: Arc<dyn WebhookPoster>,
        limits: WebhookLimits,
    ) -> Task {
        let size = limits.queue.max(1);
        let (sender, mut waiting) = mpsc::channel(size);
        let _ = self.webhooks.queue.0.sender.set(sender);
        let pending = Arc::new(Semaphore::new(size));
        let posting = Arc::new(Semaphore::new(CONCURRENT_POSTS));
        let natter = self.clone();
        Task::spawn("webhooks", move |shutdown| async move {
            loop {
                let message = tokio::select! {
                    () = shutdown.recv() => return,
                    () = natter.stopping.cancelled() => return,
                    message = waiting.recv() => match message {
                        Some(message) => message,
                        None => return,
                    },
                };
                for delivery in natter.deliveries_of(&message).await {
                    // While the pending deliveries are at their budget, the
                    // queue fills behind this wait, and then drops.
                    let permit = tokio::select! {
                        () = shutdown.recv() => return,
                        () = natter.stopping.cancelled() => return,
                        permit = pending.clone().acquire_owned() => permit.expect("never closed"),
                    };
                    let (natter, poster, posting) =
                        (natter.clone(), poster.clone(), posting.clone());
                    tokio::spawn(async move {
                        natter
                            .deliver(delivery, poster.as_ref(), &posting, limits.timeout)
                            .await;
                        drop(permit);
                    });
                }
            }
        })
    }

    /// The deliveries a stored message makes: one per outgoing webhook whose
    /// owner is in its room now and wants it.
    async fn deliveries_of(&self, message: &Message) -> Vec<Pending> {
        if !self.any_outgoing_webhook().await {
            return Vec::new();
        }
        let targets = match self.store.webhook_targets(&message.rid).await {
            Ok(targets) => targets,
            Err(e) => {
                tracing::warn!(error = %e, "webhook targets unread: no delivery");
                return Vec::new();
            }
        };
        targets
            .into_iter()
            .filter_map(|(hook, owner)| {
                let event = event_for(&hook, &owner, message)?;
                let event_id = format!("{}.{}", hook.id, message.id);
                let body = json!({
                    "id": event_id,
                    "event": event,
                    "webhook_id": hook.id,
                    "message": message,
                });
                Some(Pending {
                    hook_id: hook.id,
                    url: hook.url,
                    secret: hook.secret,
                    event,
                    event_id,
                    body: serde_json::to_vec(&body).expect("an event serialises"),
                })
            })
            .collect()
    }

    /// Tries one delivery until it is accepted, or [`MAX_ATTEMPTS`] times.
    async fn deliver(
        &self,
        delivery: Pending,
        poster: &dyn WebhookPoster,
        posting: &Semaphore,
        timeout: Duration,
    ) {
        let mut wait = FIRST_RETRY;
        for attempt in 1..=MAX_ATTEMPTS {
            let answer = {
                let _turn = posting.acquire().await.expect("never closed");
                let timestamp = now_ms() / 1000;
                let post = Post {
                    url: delivery.url.clone(),
                    headers: vec![
                        ("content-type", "application/json".to_owned()),
                        ("x-natter-event", delivery.event.to_owned()),
                        ("x-natter-event-id", delivery.event_id.clone()),
                        ("x-natter-timestamp", timestamp.to_string()),
                        (
                            "x-natter-signature",
                            signature(&delivery.secret, timestamp, &delivery.body),
                        ),
                    ],
                    body: delivery.body.clone(),
                };
                match tokio::time::timeout(timeout, poster.post(&post)).await {
                    Ok(answer) => answer,
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                }
            };
            let why = match answer {
                Ok(status) if (200..300).contains(&status) => {
                    telemetry::webhook_delivery("delivered");
                    return;
                }
                Ok(status) => format!("answered {status}"),
                Err(why) => why,
            };
            // Never the URL: it may hold a secret of the receiver's.
            tracing::debug!(
                webhook = delivery.hook_id,
                attempt,
                why,
                "webhook attempt failed"
            );
            if attempt == MAX_ATTEMPTS {
                tracing::warn!(webhook = delivery.hook_id, why, "webhook delivery given up");
                telemetry::webhook_delivery("failed");
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.stopping.cancelled() => return,
            }
            wait *= 2;
        }
    }

    /// Whether any outgoing webhook exists, as read at most [`KNOW_ANY_FOR`] ago.
    async fn any_outgoing_webhook(&self) -> bool {
        if let Some((read_at, any)) = *self.webhooks.known_any.lock().expect("not poisoned")
            && read_at.elapsed() < KNOW_ANY_FOR
        {
            return any;
        }
        match self.store.any_outgoing_webhook().await {
            Ok(any) => {
                *self.webhooks.known_any.lock().expect("not poisoned") =
                    Some((Instant::now(), any));
                any
            }
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str, sender: UserId, rid: &str) -> Message {
        Message {
            id: 1,
            rid: rid.into(),
            seq: 1,
            sender_id: sender,
            sender_username: "ann".into(),
            message: text.into(),
            timestamp: 0.0,
            client_id: None,
            kind: MessageKind::Text,
            reply_to: None,
            reactions: Vec::new(),
            attachments: Vec::new(),
            edited_at: None,
            deleted: false,
            rev: 0,
        }
    }

    fn hook(message: bool, mention: bool, rooms: Option<Vec<String>>) -> OutgoingWebhook {
        OutgoingWebhook {
            id: "h".into(),
            owner_id: 2,
            url: "https://example.com/".into(),
            secret: "s".into(),
            events: WebhookEvents { message, mention },
            rooms,
            created_at: 0,
        }
    }

    #[test]
    fn which_event() {
        let both = hook(true, true, None);
        assert_eq!(
            event_for(&both, "bob", &message("hi", 1, "r")),
            Some("message")
        );
        assert_eq!(
            event_for(&both, "bob", &message("hi @bob", 1, "r")),
            Some("mention")
        );
        assert_eq!(
            event_for(&both, "bob", &message("hi", 2, "r")),
            None,
            "its own"
        );
        let mentions = hook(false, true, None);
        assert_eq!(event_for(&mentions, "bob", &message("hi", 1, "r")), None);
        let limited = hook(true, false, Some(vec!["a".into()]));
        assert_eq!(event_for(&limited, "bob", &message("hi", 1, "b")), None);
        assert_eq!(
            event_for(&limited, "bob", &message("hi", 1, "a")),
            Some("message")
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed apart: `printf '1.{}' | openssl dgst -sha256 -hmac key`.
        assert_eq!(
            signature("key", 1, b"{}"),
            "sha256=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
    }
}
