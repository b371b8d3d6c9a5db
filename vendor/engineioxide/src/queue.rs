//! Natter patch: a socket's outgoing queue, bounded in bytes as well as in packets, and
//! small while empty.
//!
//! The published crate bounds the queue by a number of packets only, and a packet may be a
//! megabyte long: a client that asks for large answers and never reads could make the server
//! hold hundreds of megabytes for it. This queue also counts the bytes of the messages waiting
//! in it. A packet is refused (as when the queue is full) while the bytes already waiting reach
//! `max_bytes`, so a socket never holds more than `max_bytes` plus one packet. Bytes stop
//! counting when the transport takes the packet out to write it.
//!
//! The crate's queue was a tokio `mpsc` channel, which allocates its slots 32 at a time, the
//! first block when it is made: ~0.8 KiB per socket even with boxed slots, for a queue that is
//! nearly always empty. This one is a `VecDeque` of boxed batches behind a mutex, one
//! allocation of ~150 bytes while it has never been used. Its one receiver (the transport,
//! which holds the socket's `internal_rx` lock) registers its waker; there is no waiting for
//! room: a sender is refused when the queue is full, and the upgrade's one control packet
//! goes in regardless (docs/benchmarks.md, "Speed II, sixth
//! round").

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use engineioxide_core::{Packet, PacketBuf};
use tokio::sync::Notify;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

/// A queue of `packets` batches and `max_bytes` bytes of messages.
pub(crate) fn channel(packets: usize, max_bytes: usize) -> (QueueTx, QueueRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        closed: Notify::new(),
        max_packets: packets,
        max_bytes,
    });
    (
        QueueTx {
            shared: shared.clone(),
        },
        QueueRx { shared },
    )
}

/// What a batch of packets weighs: the bytes of its messages (control packets count one).
fn weight(packets: &PacketBuf) -> usize {
    packets
        .iter()
        .map(|packet| match packet {
            Packet::Message(msg) => msg.len(),
            Packet::Binary(bin) | Packet::BinaryV3(bin) => bin.len(),
            _ => 1,
        })
        .sum()
}

/// Slots an emptied queue may keep (8 bytes each); past this it gives them back.
const KEPT_SLOTS: usize = 8;

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the tasks waiting in [`QueueTx::closed`].
    closed: Notify,
    max_packets: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    batches: VecDeque<Box<PacketBuf>>,
    /// Places taken by [`QueuePermit`]s not yet used.
    reserved: usize,
    /// The weight of the batches waiting.
    bytes: usize,
    closed: bool,
    /// The receiver, waiting for a batch.
    receiver: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while it holds the lock; were one to, the queue's
        // counts are still whole (each change is one statement).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Why a new batch cannot be queued now, if it cannot.
    fn refusal(&self, state: &State) -> Option<TrySendError<()>> {
        if state.closed {
            Some(TrySendError::Closed(()))
        } else if state.batches.len() + state.reserved >= self.max_packets
            || state.bytes >= self.max_bytes
        {
            Some(TrySendError::Full(()))
        } else {
            None
        }
    }

    /// Queues `batch` (its place is already checked) and wakes the receiver.
    fn push(&self, mut state: MutexGuard<'_, State>, batch: Box<PacketBuf>, weight: usize) {
        state.bytes += weight;
        state.batches.push_back(batch);
        let receiver = state.receiver.take();
        drop(state);
        if let Some(waker) = receiver {
            waker.wake();
        }
    }

    fn close(&self) {
        let receiver = {
            let mut state = self.lock();
            state.closed = true;
            state.receiver.take()
        };
        if let Some(waker) = receiver {
            waker.wake();
        }
        self.closed.notify_waiters();
    }
}

/// The sending half, kept by the socket.
#[derive(Debug)]
pub(crate) struct QueueTx {
    shared: Arc<Shared>,
}

impl QueueTx {
    /// Queues `packets` unless the queue is closed, or full in packets or in bytes.
    pub(crate) fn try_send(&self, packets: PacketBuf) -> Result<(), TrySendError<PacketBuf>> {
        let weight = weight(&packets);
        let state = self.shared.lock();
        match self.shared.refusal(&state) {
            Some(TrySendError::Closed(())) => Err(TrySendError::Closed(packets)),
            Some(TrySendError::Full(())) => Err(TrySendError::Full(packets)),
            None => {
                self.shared.push(state, Box::new(packets), weight);
                Ok(())
            }
        }
    }

    /// Queues a control packet even when the queue is full; refused only once it
    /// is closed. For the upgrade's `Noop`, which ends a waiting long-polling
    /// request: one packet over the budget, once per socket.
    pub(crate) fn send_control(&self, packet: Packet) -> Result<(), TrySendError<()>> {
        let state = self.shared.lock();
        if state.closed {
            return Err(TrySendError::Closed(()));
        }
        let batch: Box<PacketBuf> = Box::new(smallvec::smallvec![packet]);
        let weight = weight(&batch);
        self.shared.push(state, batch, weight);
        Ok(())
    }

    /// A place for one batch, unless the queue is closed, or full in packets or in bytes.
    pub(crate) fn try_reserve(&self) -> Result<QueuePermit<'_>, TrySendError<()>> {
        let mut state = self.shared.lock();
        if let Some(refusal) = self.shared.refusal(&state) {
            return Err(refusal);
        }
        state.reserved += 1;
        Ok(QueuePermit {
            shared: &self.shared,
        })
    }

    /// Nothing waits in the queue (no batch, no reserved place).
    pub(crate) fn is_empty(&self) -> bool {
        let state = self.shared.lock();
        state.batches.is_empty() && state.reserved == 0
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Resolves once the queue is closed.
    pub(crate) async fn closed(&self) {
        loop {
            let notified = self.shared.closed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a close between the two still wakes it.
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// A reserved place in the queue; given back if dropped unused.
pub(crate) struct QueuePermit<'a> {
    shared: &'a Shared,
}

impl QueuePermit<'_> {
    /// Queues `packets` in the reserved place; they are dropped if the queue
    /// closed since the place was reserved (no one would read them).
    pub(crate) fn send(self, packets: PacketBuf) {
        let weight = weight(&packets);
        let batch = Box::new(packets);
        let shared = self.shared;
        // The place is used, not given back: `Drop` must not run.
        std::mem::forget(self);
        let mut state = shared.lock();
        state.reserved -= 1;
        if !state.closed {
            shared.push(state, batch, weight);
        }
    }
}

impl Drop for QueuePermit<'_> {
    fn drop(&mut self) {
        self.shared.lock().reserved -= 1;
    }
}

/// The receiving half, read by the transport.
#[derive(Debug)]
pub(crate) struct QueueRx {
    shared: Arc<Shared>,
}

impl QueueRx {
    /// The next batch, left in its box (the WebSocket transport writes it
    /// from there: `transport/ws.rs`). Once the queue is closed, what is still
    /// queued comes out, then `None`.
    ///
    /// Each batch taken spends the task's tokio budget, as tokio's own channels
    /// do, so a task draining a long queue yields to the others in time.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Box<PacketBuf>>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let mut state = self.shared.lock();
        match Self::pop(&mut state) {
            Ok(batch) => {
                coop.made_progress();
                Poll::Ready(Some(batch))
            }
            Err(TryRecvError::Disconnected) => {
                coop.made_progress();
                Poll::Ready(None)
            }
            Err(TryRecvError::Empty) => {
                match &mut state.receiver {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    receiver => *receiver = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    pub(crate) fn try_recv(&mut self) -> Result<Box<PacketBuf>, TryRecvError> {
        Self::pop(&mut self.shared.lock())
    }

    /// The transport took a batch out to write it: it no longer counts. A
    /// queue emptied after a backlog gives its slots back (a `VecDeque` never
    /// shrinks: one burst would otherwise size it for the socket's life).
    fn pop(state: &mut State) -> Result<Box<PacketBuf>, TryRecvError> {
        match state.batches.pop_front() {
            Some(batch) => {
                state.bytes -= weight(&batch);
                if state.batches.is_empty() && state.batches.capacity() > KEPT_SLOTS {
                    state.batches = VecDeque::new();
                }
                Ok(batch)
            }
            None if state.closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Refuses every new batch; what is queued can still be taken out.
    pub(crate) fn close(&mut self) {
        self.shared.close();
    }

    #[cfg(feature = "__test_harness")]
    pub(crate) async fn recv(&mut self) -> Option<Box<PacketBuf>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        self.shared.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engineioxide_core::Str;
    use smallvec::smallvec;

    fn message(len: usize) -> PacketBuf {
        smallvec![Packet::Message(Str::from("x".repeat(len)))]
    }

    fn drain(rx: &mut QueueRx) -> Vec<PacketBuf> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|batch| *batch)
            .collect()
    }

    #[test]
    fn a_full_queue_refuses_until_the_transport_takes_a_batch() {
        let (tx, mut rx) = channel(2, usize::MAX);
        tx.try_send(message(1)).unwrap();
        let permit = tx.try_reserve().unwrap();
        assert!(matches!(
            tx.try_send(message(2)),
            Err(TrySendError::Full(_))
        ));
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
        drop(permit);
        tx.try_send(message(3)).unwrap();
        tx.send_control(Packet::Noop).unwrap(); // over the count: the upgrade's
        tx.send_control(Packet::Message(Str::from("xyz"))).unwrap();
        assert!(!tx.is_empty());
        assert_eq!(
            drain(&mut rx),
            [
                message(1),
                message(3),
                smallvec![Packet::Noop],
                smallvec![Packet::Message(Str::from("xyz"))]
            ]
        );
        assert_eq!(rx.shared.lock().bytes, 0, "what went in came out");
        assert!(tx.is_empty());
        tx.try_send(message(4)).unwrap();
    }

    #[test]
    fn bytes_count_until_the_transport_takes_them() {
        let (tx, mut rx) = channel(100, 10);
        tx.try_send(message(6)).unwrap();
        tx.try_send(message(6)).unwrap(); // 6 < 10 waited: queued, now 12
        assert!(matches!(
            tx.try_send(message(1)),
            Err(TrySendError::Full(_))
        ));
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
        rx.try_recv().unwrap();
        tx.try_send(message(1)).unwrap();
        assert_eq!(drain(&mut rx), [message(6), message(1)]);
    }

    #[test]
    fn a_closed_queue_refuses_and_still_gives_what_waits() {
        let (tx, mut rx) = channel(10, usize::MAX);
        tx.try_send(message(1)).unwrap();
        let permit = tx.try_reserve().unwrap();
        rx.close();
        assert!(tx.is_closed());
        assert!(matches!(
            tx.try_send(message(2)),
            Err(TrySendError::Closed(_))
        ));
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Closed(()))));
        permit.send(message(3)); // no one would read it: dropped
        assert!(tx.send_control(Packet::Noop).is_err());
        assert_eq!(*rx.try_recv().unwrap(), message(1));
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Disconnected)));
    }

    #[tokio::test]
    async fn the_receiver_wakes_for_a_batch_and_for_the_end() {
        const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
        let (tx, mut rx) = channel(10, usize::MAX);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(batch) = std::future::poll_fn(|cx| rx.poll_recv(cx)).await {
                got.push(*batch);
            }
            got
        });
        tokio::task::yield_now().await;
        tx.try_send(message(1)).unwrap();
        tx.try_reserve().unwrap().send(message(2));
        drop(tx);
        let got = tokio::time::timeout(TIMEOUT, reader).await.unwrap();
        assert_eq!(got.unwrap(), [message(1), message(2)]);

        let (tx, rx) = channel(10, usize::MAX);
        let waiter = tokio::spawn(async move { tx.closed().await });
        tokio::task::yield_now().await;
        drop(rx);
        tokio::time::timeout(TIMEOUT, waiter)
            .await
            .expect("closed() resolves when the receiver goes")
            .unwrap();
    }

    #[test]
    fn an_emptied_queue_gives_its_slots_back() {
        let (tx, mut rx) = channel(1000, usize::MAX);
        for n in 0..100 {
            tx.try_send(message(n)).unwrap();
        }
        assert!(rx.shared.lock().batches.capacity() >= 100);
        assert_eq!(drain(&mut rx).len(), 100);
        assert!(rx.shared.lock().batches.capacity() <= KEPT_SLOTS);
    }

    /// The point of this queue: an unused one is one small allocation.
    #[test]
    fn an_empty_queue_is_small() {
        assert!(
            std::mem::size_of::<Shared>() <= 160,
            "{} bytes",
            std::mem::size_of::<Shared>()
        );
    }
}
