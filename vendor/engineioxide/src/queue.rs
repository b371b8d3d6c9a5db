//! Natter patch: a socket's outgoing queue, bounded in bytes as well as in packets.
//!
//! The published crate bounds the queue by a number of packets only, and a packet may be a
//! megabyte long: a client that asks for large answers and never reads could make the server
//! hold hundreds of megabytes for it. This queue also counts the bytes of the messages waiting
//! in it. A packet is refused (as when the queue is full) while the bytes already waiting reach
//! `max_bytes`, so a socket never holds more than `max_bytes` plus one packet. Bytes stop
//! counting when the transport takes the packet out to write it.
//!
//! Each batch waits boxed: tokio's channel allocates its slots 32 at a time, the first block
//! when it is made, and a `PacketBuf` slot is ~170 bytes, so every socket kept a 5.4 KiB block for a
//! queue that is nearly always empty; a boxed slot is a pointer (a 0.3 KiB block), for one
//! small allocation per batch queued (docs/benchmarks.md, "Memory").

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use engineioxide_core::{Packet, PacketBuf};
use tokio::sync::mpsc::{self, error::SendError, error::TryRecvError, error::TrySendError};

/// A queue of `packets` packets and `max_bytes` bytes of messages.
pub(crate) fn channel(packets: usize, max_bytes: usize) -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::channel::<Box<PacketBuf>>(packets);
    let bytes = Arc::new(AtomicUsize::new(0));
    let sender = QueueTx {
        tx,
        bytes: bytes.clone(),
        max_bytes,
    };
    (sender, QueueRx { rx, bytes })
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

#[derive(Debug)]
pub(crate) struct QueueTx {
    tx: mpsc::Sender<Box<PacketBuf>>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl QueueTx {
    fn over_budget(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) >= self.max_bytes
    }

    /// Queues `packets` unless the queue is closed, or full in packets or in bytes.
    pub(crate) fn try_send(&self, packets: PacketBuf) -> Result<(), TrySendError<PacketBuf>> {
        if self.over_budget() && !self.tx.is_closed() {
            return Err(TrySendError::Full(packets));
        }
        let weight = weight(&packets);
        self.bytes.fetch_add(weight, Ordering::Relaxed);
        self.tx.try_send(Box::new(packets)).map_err(|e| {
            self.bytes.fetch_sub(weight, Ordering::Relaxed);
            match e {
                TrySendError::Full(packets) => TrySendError::Full(*packets),
                TrySendError::Closed(packets) => TrySendError::Closed(*packets),
            }
        })
    }

    /// Waits for room for `packets` (in packets only: used for the upgrade's control packet).
    pub(crate) async fn send(&self, packets: PacketBuf) -> Result<(), SendError<PacketBuf>> {
        let weight = weight(&packets);
        self.bytes.fetch_add(weight, Ordering::Relaxed);
        self.tx
            .send(Box::new(packets))
            .await
            .map_err(|SendError(packets)| {
                self.bytes.fetch_sub(weight, Ordering::Relaxed);
                SendError(*packets)
            })
    }

    /// A place for one batch, unless the queue is closed, or full in packets or in bytes.
    pub(crate) fn try_reserve(&self) -> Result<QueuePermit<'_>, TrySendError<()>> {
        if self.over_budget() && !self.tx.is_closed() {
            return Err(TrySendError::Full(()));
        }
        let inner = self.tx.try_reserve()?;
        Ok(QueuePermit {
            inner,
            bytes: &self.bytes,
        })
    }

    /// Nothing waits in the queue (no batch, no reserved place).
    pub(crate) fn is_empty(&self) -> bool {
        self.tx.capacity() == self.tx.max_capacity()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    pub(crate) async fn closed(&self) {
        self.tx.closed().await
    }
}

/// A reserved place in the queue.
pub(crate) struct QueuePermit<'a> {
    inner: mpsc::Permit<'a, Box<PacketBuf>>,
    bytes: &'a AtomicUsize,
}

impl QueuePermit<'_> {
    pub(crate) fn send(self, packets: PacketBuf) {
        self.bytes.fetch_add(weight(&packets), Ordering::Relaxed);
        self.inner.send(Box::new(packets));
    }
}

#[derive(Debug)]
pub(crate) struct QueueRx {
    rx: mpsc::Receiver<Box<PacketBuf>>,
    bytes: Arc<AtomicUsize>,
}

impl QueueRx {
    /// The transport took `packets` out to write them: they no longer count.
    fn release(&self, packets: Box<PacketBuf>) -> Box<PacketBuf> {
        self.bytes.fetch_sub(weight(&packets), Ordering::Relaxed);
        packets
    }

    /// The next batch, left in its box (the WebSocket transport writes it
    /// from there: `transport/ws.rs`).
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Box<PacketBuf>>> {
        self.rx
            .poll_recv(cx)
            .map(|packets| packets.map(|p| self.release(p)))
    }

    pub(crate) fn try_recv(&mut self) -> Result<Box<PacketBuf>, TryRecvError> {
        self.rx.try_recv().map(|p| self.release(p))
    }

    pub(crate) fn close(&mut self) {
        self.rx.close();
    }
}
