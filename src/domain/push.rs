//! Notifications for people away from Natter: each member's notification
//! level per chat, and Web Push to the browsers they subscribed.
//!
//! A push never slows a send down. Once a message is stored and announced,
//! the delivery offers it to a bounded queue ([`QUEUE_CAPACITY`]); when the
//! queue is full the message's pushes are dropped and counted, as pushes are
//! best effort. One task per node drains the queue in batches: one store
//! query finds the batch's targets (the subscriptions of the rooms' members
//! who did not mute them), [`wants`] picks who gets which message, one
//! presence question drops those with a socket on any node (an open tab
//! notifies its user itself), and the pushes go out [`CONCURRENT_SENDS`] at
//! a time, each within [`SEND_TIMEOUT`]. A push service that answers 404 or
//! 410 says the subscription is gone: it is deleted. Any other failure is
//! logged and counted, never retried: a retry would come late, and the
//! message waits in the app anyway.
//!
//! Each node pushes the messages it committed, so a message is pushed once
//! in a cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::model::{
    Chat, Message, MessageKind, NotifyLevel, PushSubscription, RoomKind, User, UserId,
    text_or_files,
};
use super::store::{Outcome, PushEndpoint, PushTarget, StoreError};
use super::{Error, Natter, Result, Session, now_ms, rules};
use crate::tasks::Task;
use crate::telemetry;

/// Messages that may wait for their pushes: about a second of a busy node's
/// sends. Past it a message gets no push (and the metric says so).
pub const QUEUE_CAPACITY: usize = 1024;
/// Messages taken from the queue at once: their targets are one query.
const BATCH: usize = 256;
/// Pushes in flight at once per node.
pub const CONCURRENT_SENDS: usize = 16;
/// How long one push service may take to answer; then the push counts as failed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Subscriptions one user keeps (browsers, devices); a new one past it
/// replaces their oldest.
pub const MAX_SUBSCRIPTIONS_PER_USER: i64 = 10;
/// How long "no subscription exists at all" is believed before the store is
/// asked again: a server nobody subscribed on costs no query per batch. A
/// subscription made on this node is known at once; one made on another
/// node, within this time.
const KNOW_ANY_FOR: Duration = Duration::from_secs(5);
/// Most bytes of a message's text a push carries (push services take about
/// 4 KiB, encrypted, with the rest of the payload).
const BODY_BYTES: usize = 1000;

/// What a push service made of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// 404 or 410: the subscription is no more.
    Gone,
    /// Anything else, and why.
    Failed(String),
}

/// Encrypts and sends pushes (the HTTP side implements it over RFC 8291/8292).
#[async_trait]
pub trait PushService: Send + Sync + 'static {
    /// The server's public key (VAPID), as a browser's `applicationServerKey`
    /// takes it: the uncompressed P-256 point, base64url.
    fn public_key(&self) -> &str;
    /// Encrypts `payload` for the subscription and posts it to its push service.
    async fn send(&self, to: &PushEndpoint, payload: &[u8]) -> Sent;
}

/// Where stored messages wait for their pushes: silent until the push task
/// starts (the CLI, a test's domain alone), then bounded.
#[derive(Clone, Default)]
pub struct PushQueue(Arc<QueueInner>);

#[derive(Default)]
struct QueueInner {
    sender: OnceLock<mpsc::Sender<Message>>,
    /// Whether the last offer found the queue full: an overload is logged
    /// once when it starts, not once per message.
    full: AtomicBool,
}

impl PushQueue {
    /// Hands a newly stored message over for its pushes, without waiting:
    /// a full queue drops it.
    pub fn offer(&self, message: &Message) {
        // Changes of a room are not worth a notification.
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
                    tracing::info!("the push queue takes messages again");
                }
            }
            Err(TrySendError::Full(_)) => {
                telemetry::pushes_dropped("queue_full", 1);
                if !self.0.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        capacity = QUEUE_CAPACITY,
                        "the push queue is full: new messages get no push until it drains"
                    );
                }
            }
            // The node is stopping: its last messages go without a push.
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

/// The domain's push state: the queue, the service once started, and
/// whether any subscription exists (as last read).
#[derive(Default)]
pub(super) struct Push {
    pub(super) queue: PushQueue,
    service: OnceLock<Arc<dyn PushService>>,
    known_any: Mutex<Option<(Instant, bool)>>,
}

/// Whether `target` gets a push for `message`: a member of its room other
/// than its sender, at level `all`, or `mentions` and the text mentions them.
fn wants(target: &PushTarget, message: &Message) -> bool {
    target.rid == message.rid
        && target.user_id != message.sender_id
        && match target.notify {
            NotifyLevel::All => true,
            NotifyLevel::Mentions => rules::mentions(&message.message, &target.username),
            NotifyLevel::None => false,
        }
}

/// What a push carries (JSON, encrypted): enough for the service worker to
/// show a notification and open the chat.
#[derive(Debug, Serialize)]
struct Notification<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    rid: &'a str,
    seq: i64,
    title: String,
    body: String,
    url: String,
}

impl<'a> Notification<'a> {
    /// A message as its room's member `to` is told of it.
    fn of(message: &'a Message, to: &PushTarget) -> Self {
        let title = match (to.room_kind, &to.room_title) {
            (RoomKind::Group, Some(group)) => format!("{} in {group}", message.sender_username),
            _ => message.sender_username.clone(),
        };
        Notification {
            kind: "message",
            rid: &message.rid,
            seq: message.seq,
            title,
            body: excerpt(
                &text_or_files(&message.message, &message.attachments),
                BODY_BYTES,
            ),
            // The chat page's own address for a room (pages.rs).
            url: format!("/chat/?rid={}", message.rid),
        }
    }
}

/// `text` in at most `max` bytes: whole, or cut at a character boundary
/// with "…" in the last bytes.
fn excerpt(text: &str, max: usize) -> String {
    const ELLIPSIS: &str = "…";
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - ELLIPSIS.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &text[..end])
}

impl Natter {
    /// Sets how much of the chat reaches `me` by push; every socket of
    /// theirs, on every node, gets the chat again (so all their devices follow).
    pub async fn set_notify(
        &self,
        me: &User,
        rid: &str,
        level: Result<NotifyLevel>,
    ) -> Result<Chat> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let level = level?;
        self.require_member(me, rid).await?;
        // Removed from the group since the check.
        if !self.store.set_notify(rid, me.id, level).await? {
            return Err(Error::NotMember);
        }
        let chat = self.chat(me, rid).await?;
        self.notify.get().chat_changed(me.id, &chat).await;
        Ok(chat)
    }

    /// The public key browsers subscribe with (see [`PushService::public_key`]).
    pub fn push_key(&self) -> Result<&str> {
        match self.push.service.get() {
            Some(service) => Ok(service.public_key()),
            None => Err(Error::Internal(anyhow::anyhow!("Web Push is not started"))),
        }
    }

    /// Stores a browser's push subscription for `me`, made with their session
    /// (its end ends it); returns it and whether it is new (`false`: its
    /// endpoint was stored before, and now has these keys and this owner).
    /// `raw` is the browser's `PushSubscription` as JSON; it is read by
    /// [`rules::push_subscription`] under this server's `--push-allow-http`.
    pub async fn subscribe_push(
        &self,
        me: &Session,
        raw: &serde_json::Value,
    ) -> Result<(PushSubscription, bool)> {
        super::bots::allow(&me.user, super::bots::Need::Manage, None)?;
        self.budgets.event(me.user.id)?;
        let endpoint = rules::push_subscription(raw, self.limits.push_allow_http)?;
        let saved = self
            .store
            .save_push_subscription(
                me.user.id,
                &me.token_hash,
                &endpoint,
                MAX_SUBSCRIPTIONS_PER_USER,
                now_ms(),
            )
            .await;
        let (subscription, outcome) = match saved {
            Ok(saved) => saved,
            // The session ended meanwhile.
            Err(StoreError::Conflict) => return Err(Error::Unauthorized),
            Err(e) => return Err(e.into()),
        };
        *self.push.known_any.lock().expect("not poisoned") = Some((Instant::now(), true));
        Ok((subscription, outcome == Outcome::Created))
    }

    /// `me`'s push subscriptions, newest first.
    pub async fn push_subscriptions(&self, me: &User) -> Result<Vec<PushSubscription>> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        Ok(self.store.push_subscriptions(me.id).await?)
    }

    /// Deletes one of `me`'s push subscriptions by its id; someone else's
    /// (or none) is [`Error::NoSuchSubscription`].
    pub async fn unsubscribe_push(&self, me: &User, id: &str) -> Result<()> {
        super::bots::allow(me, super::bots::Need::Manage, None)?;
        self.budgets.event(me.id)?;
        let id: i64 = id.parse().map_err(|_| Error::NoSuchSubscription)?;
        match self.store.delete_push_subscription(me.id, id).await? {
            true => Ok(()),
            false => Err(Error::NoSuchSubscription),
        }
    }

    /// Starts this node's push task (see the module) with `service`; from
    /// now on every message this node stores is offered for pushes. Once per
    /// node: a second call's service is ignored.
    pub fn start_pushes(self: &Arc<Self>, service: Arc<dyn PushService>) -> Task {
        let (sender, mut waiting) = mpsc::channel(QUEUE_CAPACITY);
        let _ = self.push.queue.0.sender.set(sender);
        let _ = self.push.service.set(service.clone());
        let natter = self.clone();
        Task::spawn("web push", move |shutdown| async move {
            let mut batch = Vec::with_capacity(BATCH);
            // Pushing ends as soon as the node starts stopping, a batch cut
            // short: once its sockets close, everyone would look offline and
            // be pushed what they have just read, and a push service that
            // hangs must not hold the shutdown up.
            loop {
                tokio::select! {
                    () = shutdown.recv() => break,
                    () = natter.stopping.cancelled() => break,
                    received = waiting.recv_many(&mut batch, BATCH) => if received == 0 {
                        break;
                    },
                }
                tokio::select! {
                    () = shutdown.recv() => break,
                    () = natter.stopping.cancelled() => break,
                    () = natter.push_batch(&batch, service.as_ref()) => {}
                }
                batch.clear();
            }
        })
    }

    /// Sends the pushes of a batch of stored messages.
    async fn push_batch(&self, batch: &[Message], service: &dyn PushService) {
        if !self.any_push_subscription().await {
            return;
        }
        let mut rids: Vec<String> = batch.iter().map(|m| m.rid.clone()).collect();
        rids.sort_unstable();
        rids.dedup();
        let targets = match self.store.push_targets(&rids).await {
            Ok(targets) => targets,
            Err(e) => {
                tracing::warn!(error = %e, messages = batch.len(), "push targets unread: no push");
                telemetry::pushes_dropped("database", batch.len());
                return;
            }
        };
        // (message, target) pairs, by index: the sends below borrow nothing
        // of theirs but the two lists.
        let mut pushes: Vec<(usize, usize)> = Vec::new();
        for (m, message) in batch.iter().enumerate() {
            for (t, target) in targets.iter().enumerate() {
                if wants(target, message) {
                    pushes.push((m, t));
                }
            }
        }
        if pushes.is_empty() {
            return;
        }
        let mut users: Vec<UserId> = pushes.iter().map(|&(_, t)| targets[t].user_id).collect();
        users.sort_unstable();
        users.dedup();
        let online = self.notify.get().online(&users).await;
        pushes.retain(|&(_, t)| !online.contains(&targets[t].user_id));
        let targets = &targets;
        futures_util::stream::iter(pushes)
            .map(|(m, t)| async move {
                let payload = serde_json::to_vec(&Notification::of(&batch[m], &targets[t]))
                    .expect("a notification serialises");
                let sending = service.send(&targets[t].endpoint, &payload);
                let sent = tokio::time::timeout(SEND_TIMEOUT, sending)
                    .await
                    .unwrap_or_else(|_| Sent::Failed(format!("no answer within {SEND_TIMEOUT:?}")));
                (t, sent)
            })
            .buffer_unordered(CONCURRENT_SENDS)
            .for_each(|(t, sent)| self.sent(&targets[t], sent))
            .await;
    }

    /// What a push's answer leads to.
    async fn sent(&self, target: &PushTarget, sent: Sent) {
        match sent {
            Sent::Delivered => telemetry::push_sent(),
            Sent::Gone => {
                let id = target.subscription_id;
                match self
                    .store
                    .delete_push_subscription(target.user_id, id)
                    .await
                {
                    Ok(_) => {
                        tracing::debug!(subscription = id, "push subscription gone: deleted");
                        telemetry::push_subscription_removed();
                    }
                    Err(e) => tracing::warn!(error = %e, "a gone push subscription stays"),
                }
            }
            Sent::Failed(why) => {
                // Never the endpoint: it is a capability, like a token.
                tracing::warn!(
                    subscription = target.subscription_id,
                    user_id = target.user_id,
                    why,
                    "push failed"
                );
                telemetry::push_failed();
            }
        }
    }

    /// Whether any subscription exists, as read at most [`KNOW_ANY_FOR`] ago.
    async fn any_push_subscription(&self) -> bool {
        if let Some((read_at, any)) = *self.push.known_any.lock().expect("not poisoned")
            && read_at.elapsed() < KNOW_ANY_FOR
        {
            return any;
        }
        match self.store.any_push_subscription().await {
            Ok(any) => {
                *self.push.known_any.lock().expect("not poisoned") = Some((Instant::now(), any));
                any
            }
            // The targets' query will say what is wrong.
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::MessageKind;

    fn message(text: &str, sender: UserId) -> Message {
        Message {
            id: 1,
            rid: "r".into(),
            seq: 7,
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

    fn target(user_id: UserId, notify: NotifyLevel, kind: RoomKind) -> PushTarget {
        PushTarget {
            subscription_id: 1,
            user_id,
            username: "bob".into(),
            rid: "r".into(),
            room_kind: kind,
            room_title: (kind == RoomKind::Group).then(|| "Trip".to_owned()),
            notify,
            endpoint: PushEndpoint {
                url: "https://push.example.com/".into(),
                p256dh: String::new(),
                auth: String::new(),
            },
        }
    }

    #[test]
    fn who_gets_a_push() {
        let all = target(2, NotifyLevel::All, RoomKind::Direct);
        let mentions = target(2, NotifyLevel::Mentions, RoomKind::Group);
        let muted = target(2, NotifyLevel::None, RoomKind::Direct);
        assert!(wants(&all, &message("hi", 1)));
        assert!(!wants(&all, &message("hi", 2)), "never one's own message");
        assert!(!wants(&mentions, &message("hi all", 1)));
        assert!(wants(&mentions, &message("hi @Bob", 1)));
        assert!(!wants(&muted, &message("hi @bob", 1)));
        let elsewhere = PushTarget {
            rid: "other".into(),
            ..all
        };
        assert!(!wants(&elsewhere, &message("hi", 1)));
    }

    #[test]
    fn notifications_name_the_sender_and_the_group() {
        let text = message("hello", 1);
        let direct = Notification::of(&text, &target(2, NotifyLevel::All, RoomKind::Direct));
        assert_eq!(direct.title, "ann");
        assert_eq!(direct.url, "/chat/?rid=r");
        assert_eq!((direct.kind, direct.rid, direct.seq), ("message", "r", 7));
        let group = Notification::of(&text, &target(2, NotifyLevel::All, RoomKind::Group));
        assert_eq!(group.title, "ann in Trip");
    }

    #[test]
    fn bodies_are_cut_at_a_character_boundary() {
        assert_eq!(excerpt("short", 1000), "short");
        let exact = "x".repeat(1000);
        assert_eq!(excerpt(&exact, 1000), exact);
        let cut = excerpt(&"x".repeat(1001), 1000);
        assert_eq!(cut.len(), 1000);
        assert!(cut.ends_with('…'));
        // 'é' is two bytes: the cut falls inside one and moves before it.
        let cut = excerpt(&"é".repeat(600), 1000);
        assert!(cut.len() <= 1000);
        assert_eq!(cut, format!("{}…", "é".repeat(498)));
    }
}
