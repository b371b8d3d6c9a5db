//! Durable, ordered delivery: group commit, then announcement in commit order.
//!
//! Each send is queued to one task per node. Whenever the store is free, the
//! task takes everything waiting (up to [`MAX_BATCH`]) and stores it with one
//! [`Store::store_messages`] call — one commit, one fsync. Only then does a
//! second stage announce the new messages to connected clients — each room's
//! in commit order, in one of [`LANES`] lanes (so every room's `seq` reaches
//! every socket in order, and rooms do not wait on each other's broadcasts)
//! — and answer each sender; meanwhile the first commits the next batch. Under load a commit costs about the same for 1 or 200
//! messages, so throughput grows with concurrency while every ack still follows
//! a durable commit. With no load a batch is a single message and nothing waits.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::model::Message;
use super::notify::{Notify, Resync};
use super::push::PushQueue;
use super::store::{NewMessage, Outcome, Store, StoreError, StoreResult};
use super::webhooks::WebhookQueue;

/// Where each new message is offered once announced: pushes and outgoing
/// webhooks (neither waits).
type Offers = (PushQueue, WebhookQueue);

/// Most messages one transaction carries: bounds the latency a batch adds
/// and the memory a commit holds. Under load the batches fill: 1,024 rather
/// than 256 spreads each commit's fixed work (the full-text index's new
/// segment and its merges, the WAL sync) over more messages (540–720 on
/// average in the closed loop): 5–24 % more delivered per second on SQLite
/// (docs/benchmarks.md, "Speed II, third round"). A lone message is still a
/// batch of one.
const MAX_BATCH: usize = 1024;

/// A send waiting for its commit.
struct Pending {
    message: NewMessage,
    /// The socket the message came from, if any.
    origin: Option<String>,
    reply: Reply,
}

/// The sending side; cheap to share.
pub struct Delivery {
    queue: mpsc::Sender<Pending>,
    /// How long a sender waits for its commit and announcement (see [`Delivery::store`]).
    deadline: Duration,
}

impl Delivery {
    /// Starts the committing and announcing tasks (on the current tokio
    /// runtime). Until `notify` is set, messages are stored but not announced;
    /// each new one is then offered to `offers` (pushes, webhooks).
    pub fn start(
        store: Arc<dyn Store>,
        notify: Notify,
        offers: Offers,
        deadline: Duration,
    ) -> Self {
        let (queue, waiting) = mpsc::channel(4 * MAX_BATCH);
        let lanes = (0..LANES)
            .map(|_| {
                // A lane holds at most a batch; then the commit task waits
                // too, which keeps memory bounded when the fan-out stalls.
                let (lane, waiting) = mpsc::channel(MAX_BATCH);
                tokio::spawn(announce_lane(waiting, notify.clone(), offers.clone()));
                lane
            })
            .collect();
        tokio::spawn(commit_loop(store, waiting, lanes, notify));
        Delivery { queue, deadline }
    }

    /// Stores one message; returns once the transaction that holds it committed
    /// and the message was announced — or fails with `Unavailable` once the
    /// deadline passes, so that a sender never waits on a database that
    /// hangs. The message may still be committed and announced after that;
    /// the sender resends it with its `client_id`, which stores it once.
    pub async fn store(
        &self,
        message: NewMessage,
        origin: Option<String>,
    ) -> StoreResult<(Message, Outcome)> {
        let closed = || StoreError::Unavailable("the delivery queue is closed".into());
        let delivered = async {
            let (reply, answer) = oneshot::channel();
            self.queue
                .send(Pending {
                    message,
                    origin,
                    reply,
                })
                .await
                .map_err(|_| closed())?;
            answer.await.map_err(|_| closed())?
        };
        match tokio::time::timeout(self.deadline, delivered).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no commit within the send deadline ({:?})",
                self.deadline
            ))),
        }
    }
}

type Reply = oneshot::Sender<StoreResult<(Message, Outcome)>>;

/// How often the commit task asks whether the database is back, after a
/// batch failed because it was unreachable.
const RECOVERY_PROBE: Duration = Duration::from_millis(500);

/// Commits batch after batch; hands each committed message to its room's
/// announcing lane, so that batch N+1 is being stored while batch N is being
/// broadcast. Failures are answered at once.
///
/// A batch that failed because the database was unreachable may still have
/// committed (the connection broke on the way back), so its messages may be
/// stored but never announced: once the database answers again, its rooms are
/// told to `resync`.
async fn commit_loop(
    store: Arc<dyn Store>,
    mut waiting: mpsc::Receiver<Pending>,
    lanes: Vec<mpsc::Sender<Announcement>>,
    notify: Notify,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    let mut uncertain: HashSet<String> = HashSet::new();
    loop {
        if uncertain.is_empty() {
            if waiting.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
        } else {
            tokio::select! {
                received = waiting.recv_many(&mut batch, MAX_BATCH) => if received == 0 {
                    return;
                },
                () = tokio::time::sleep(RECOVERY_PROBE) => {
                    if store.ping().await.is_ok() {
                        notify
                            .get()
                            .resync(uncertain.drain().collect(), Resync::Database)
                            .await;
                    }
                    continue;
                }
            }
        }
        let (messages, senders): (Vec<NewMessage>, Vec<_>) = batch
            .drain(..)
            .map(|p| (p.message, (p.origin, p.reply)))
            .unzip();
        let (size, started) = (messages.len(), Instant::now());
        let results = match store.store_messages(&messages).await {
            Ok(stored) => {
                // The database answers again: under steady traffic the
                // probe's timer never fires, so this is where that shows.
                if !uncertain.is_empty() {
                    notify
                        .get()
                        .resync(uncertain.drain().collect(), Resync::Database)
                        .await;
                }
                stored.into_iter().map(Ok).collect()
            }
            // The database cannot be reached: each message alone would wait
            // for it again.
            Err(StoreError::Unavailable(why)) => {
                uncertain.extend(messages.iter().map(|m| m.rid.clone()));
                (0..messages.len())
                    .map(|_| Err(StoreError::Unavailable(why.clone())))
                    .collect()
            }
            // Nothing of the batch was stored. One bad message (or a race with
            // another node) must not fail its neighbours: store each alone.
            Err(_) => {
                let mut one_by_one = Vec::with_capacity(messages.len());
                for message in messages {
                    let rid = message.rid.clone();
                    let result = store.store_message(message).await;
                    if matches!(result, Err(StoreError::Unavailable(_))) {
                        uncertain.insert(rid);
                    }
                    one_by_one.push(result);
                }
                one_by_one
            }
        };
        let created = results
            .iter()
            .filter(|r| matches!(r, Ok((_, Outcome::Created))));
        crate::telemetry::batch_stored(size, started.elapsed(), created.count());
        for ((origin, reply), result) in senders.into_iter().zip(results) {
            let lane = match &result {
                Ok((message, _)) => &lanes[lane_of(&message.rid)],
                Err(_) => {
                    let _ = reply.send(result);
                    continue;
                }
            };
            if lane.send((origin, reply, result)).await.is_err() {
                return;
            }
        }
    }
}

/// Announcements in flight at once, each lane in order: a room's messages
/// always take the same lane, so every room's `seq` reaches every socket in
/// order, while rooms in different lanes do not wait for each other. With
/// Redis an announcement waits for a publish round trip; one lane would make
/// the whole node wait for each in turn.
const LANES: usize = 16;

/// A stored message to announce (from socket `origin`), then its sender's answer.
type Announcement = (Option<String>, Reply, StoreResult<(Message, Outcome)>);

/// The lane of a room: the same for its every message.
fn lane_of(rid: &str) -> usize {
    use std::hash::{BuildHasher as _, BuildHasherDefault};
    let hasher = BuildHasherDefault::<std::hash::DefaultHasher>::default();
    (hasher.hash_one(rid) % LANES as u64) as usize
}

/// Announces its messages one after another (and offers each new one for
/// its pushes and webhooks: without waiting), then answers each sender.
///
/// A resend of a stored message is not announced again, which would make
/// every socket hear it twice. But its first try may never have been
/// announced: stored by a node that died before its broadcast, or in a commit
/// whose answer was lost. So the room is told to `resync` instead, and each
/// socket gets it, once, by `sync`.
async fn announce_lane(
    mut waiting: mpsc::Receiver<Announcement>,
    notify: Notify,
    (push, webhooks): Offers,
) {
    while let Some((origin, reply, result)) = waiting.recv().await {
        match &result {
            Ok((message, Outcome::Created)) => {
                notify
                    .get()
                    .message_stored(message, origin.as_deref())
                    .await;
                push.offer(message);
                webhooks.offer(message);
            }
            Ok((message, Outcome::Existing)) => {
                notify
                    .get()
                    .resync(vec![message.rid.clone()], Resync::Resend)
                    .await;
            }
            Err(_) => {}
        }
        let _ = reply.send(result);
    }
}
