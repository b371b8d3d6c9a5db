//! Group commit: concurrent sends share one transaction.
//!
//! Each send is queued to one task per node. Whenever the store is free, the
//! task takes everything waiting (up to [`MAX_BATCH`]) and stores it with one
//! [`Store::store_messages`] call — one commit, one fsync — and only then answers
//! each sender. Under load a commit costs the same for 1 or 200 messages, so
//! throughput grows with concurrency while every ack still follows a durable
//! commit. With no load a batch is a single message and nothing waits.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{NewMessage, Outcome, Store, StoreError, StoreResult};
use crate::domain::model::Message;

/// Most messages one transaction carries: bounds the latency a batch adds.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<StoreResult<(Message, Outcome)>>;

/// The sending side; cheap to share.
pub struct GroupCommit {
    queue: mpsc::Sender<(NewMessage, Reply)>,
}

impl GroupCommit {
    /// Starts the committing task (on the current tokio runtime).
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, waiting) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(commit_loop(store, waiting));
        GroupCommit { queue }
    }

    /// Stores one message; returns once the transaction that holds it committed.
    pub async fn store(&self, message: NewMessage) -> StoreResult<(Message, Outcome)> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Database(sqlx::Error::PoolClosed);
        self.queue
            .send((message, reply))
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

async fn commit_loop(store: Arc<dyn Store>, mut waiting: mpsc::Receiver<(NewMessage, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (messages, replies): (Vec<NewMessage>, Vec<Reply>) = batch.drain(..).unzip();
        match store.store_messages(&messages).await {
            Ok(stored) => {
                for (reply, result) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(result));
                }
            }
            // Nothing of the batch was stored. One bad message (or a race with
            // another node) must not fail its neighbours: store each alone.
            Err(_) => {
                for (message, reply) in messages.into_iter().zip(replies) {
                    let _ = reply.send(store.store_message(message).await);
                }
            }
        }
    }
}
