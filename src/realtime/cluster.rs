//! The Redis link between the nodes of a cluster, and what happens when it
//! breaks.
//!
//! socketioxide-redis's own driver holds one connection that never comes back
//! once Redis blinks: a one-second restart left every node deaf for good. This
//! driver is a [`ConnectionManager`], which reconnects and subscribes again by
//! itself, and a watch ([`watch_link`]) that pings it and knows whether it is up.
//!
//! While the link is down, publishing fails at once — nothing waits on Redis,
//! so sends are acknowledged as usual — and the realtime layer delivers on
//! this node only (see `emit_to`). Other nodes' messages do not arrive here
//! meanwhile, nor ours there, and room changes (a member added or removed on
//! another node) do not reach this node's sockets. So when the link is back,
//! the node that saw it come back tells every node, itself included, to
//! *recheck*: each one re-reads its sockets' rooms from the database (joining
//! those they gained, leaving those they lost) and sends each socket
//! `resync`, on which clients `sync` every room they show (docs/protocol.md).
//! Every message they missed is in the store with its `seq`, so that gets them
//! each one, and clients drop what they already had by `seq`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, FromRedisValue as _, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

use crate::tasks::Task;

/// How often the watch pings Redis, up or down.
const PING_EVERY: Duration = Duration::from_millis(500);
/// A ping, a publish or a subscription that takes longer counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Each attempt to open a connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Messages waiting per subscribed channel before the next are dropped (as
/// socketioxide-redis's own driver does; a dropped message is a miss, which
/// the next recheck repairs only if the link also broke: so, generous).
const CHANNEL_BUFFER: usize = 4096;

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// The connection to Redis the Socket.IO adapter publishes and subscribes
/// through; cheap to clone (clones share it).
#[derive(Clone)]
pub struct RedisLink {
    conn: ConnectionManager,
    handlers: Handlers,
    up: Arc<AtomicBool>,
}

/// Why an operation on the link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the link to Redis is down")]
    Down,
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// Passes a pub/sub message to the stream of its channel; a lost connection
/// marks the link down (the manager reconnects; the watch sees it come back).
fn route(push: PushInfo, handlers: &Handlers, up: &AtomicBool) {
    match push.kind {
        PushKind::Disconnection => up.store(false, Ordering::Relaxed),
        PushKind::Message | PushKind::SMessage if push.data.len() >= 2 => {
            let mut data = push.data.into_iter();
            let (Some(chan), Some(payload)) = (data.next(), data.next()) else {
                return;
            };
            let (Ok(chan), Ok(payload)) = (
                String::from_redis_value(chan),
                Vec::<u8>::from_redis_value(payload),
            ) else {
                tracing::warn!("unreadable message from Redis");
                return;
            };
            if let Some(tx) = handlers.read().expect("handlers poisoned").get(&chan)
                && let Err(e) = tx.try_send((chan, payload))
            {
                tracing::warn!(error = %e, "a Redis channel's buffer is full; message dropped");
            }
        }
        _ => {}
    }
}

impl RedisLink {
    /// Connects to Redis (failing if it does not answer: a node does not start
    /// without its cluster); from then on the link mends itself.
    pub async fn connect(client: redis::Client) -> redis::RedisResult<Self> {
        let handlers: Handlers = Arc::default();
        let up = Arc::new(AtomicBool::new(true));
        let (routes, marks) = (handlers.clone(), up.clone());
        let config = ConnectionManagerConfig::new()
            .set_push_sender(move |push: PushInfo| {
                route(push, &routes, &marks);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // Reconnecting tries a few times, quickly; then the watch's pings
            // start it again every PING_EVERY for as long as it takes.
            .set_number_of_retries(3)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(RedisLink { conn, handlers, up })
    }

    /// Whether the link was up at the last ping or operation.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Answered `Down` at once while the link is known to be down, so that
    /// nothing waits on Redis; otherwise tried, and a failure marks it down.
    fn usable(&self) -> Result<(), LinkError> {
        if self.is_up() {
            Ok(())
        } else {
            Err(LinkError::Down)
        }
    }

    fn failed(&self, e: redis::RedisError) -> LinkError {
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
            self.up.store(false, Ordering::Relaxed);
        }
        LinkError::Redis(e)
    }

    /// One round trip to Redis (through the manager: a broken connection
    /// makes it reconnect).
    async fn ping(&self) -> Result<(), LinkError> {
        let mut conn = self.conn.clone();
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
        pong.map(drop).map_err(|e| self.failed(e))
    }
}

impl Driver for RedisLink {
    type Error = LinkError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), LinkError> {
        self.usable()?;
        let mut conn = self.conn.clone();
        conn.publish::<_, _, redis::Value>(chan, val)
            .await
            .map(drop)
            .map_err(|e| self.failed(e))
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, LinkError> {
        let (tx, rx) = mpsc::channel(size.max(CHANNEL_BUFFER));
        self.handlers
            .write()
            .expect("handlers poisoned")
            .insert(chan.clone(), tx);
        let mut conn = self.conn.clone();
        conn.subscribe(chan.as_str())
            .await
            .map_err(|e| self.failed(e))?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), LinkError> {
        self.handlers
            .write()
            .expect("handlers poisoned")
            .remove(&chan);
        let mut conn = self.conn.clone();
        conn.unsubscribe(chan).await.map_err(|e| self.failed(e))
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, LinkError> {
        self.usable()?;
        let mut conn = self.conn.clone();
        let (_, count): (String, u16) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(chan)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(count)
    }
}

/// The channel on which nodes ask each other to recheck; the message is the
/// asking node's id, so it does not recheck twice.
fn recheck_channel(prefix: &str) -> String {
    format!("{prefix}#natter#recheck")
}

/// Starts the watch over this node's link for the cluster `prefix`: it pings
/// the link, and when it comes back after being down asks every node to
/// recheck (see the module); `recheck` is what this node does then, whichever
/// node asked. Stop it at shutdown.
pub async fn watch_link<F, Fut>(
    link: RedisLink,
    prefix: &str,
    recheck: F,
) -> Result<Task, LinkError>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let me = crate::domain::secrets::new_token();
    let channel = recheck_channel(prefix);
    let mut asks = link.subscribe(channel.clone(), 16).await?;
    Ok(Task::spawn(
        "Redis link watch",
        move |shutdown| async move {
            let mut tick = tokio::time::interval(PING_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut was_up = true;
            loop {
                tokio::select! {
                    () = shutdown.recv() => break,
                    Some((_, asker)) = asks.next() => {
                        if asker != me.as_bytes() {
                            recheck().await;
                        }
                    }
                    _ = tick.tick() => {
                        // Down since the last tick, even if the manager already
                        // reconnected: something may have been missed meanwhile.
                        let went_down = !link.is_up();
                        let up = tokio::time::timeout(RESPONSE_TIMEOUT, link.ping())
                            .await
                            .is_ok_and(|pong| pong.is_ok());
                        link.up.store(up, Ordering::Relaxed);
                        if up && (went_down || !was_up) {
                            tracing::info!("the link to Redis is back: every node rechecks its sockets");
                            let mut conn = link.conn.clone();
                            let asked = conn.publish::<_, _, redis::Value>(&channel, me.as_bytes()).await;
                            if let Err(e) = asked {
                                tracing::warn!(error = %e, "could not ask the other nodes to recheck");
                            }
                            recheck().await;
                        } else if !up && was_up {
                            tracing::warn!("the link to Redis is down: serving this node's sockets only");
                        }
                        was_up = up;
                    }
                }
            }
        },
    ))
}
