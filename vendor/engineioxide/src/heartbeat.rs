//! One heartbeat task per engine (Natter's patch, vendor/README.md).
//!
//! The published crate gave every socket a task of its own, with its own
//! timer and a channel to hear the client's pongs through: about 2 KiB of
//! every idle socket, and a timer wake-up per socket per ping interval. Here
//! each socket keeps three timestamps ([`Heartbeat`]) and one task per engine
//! ([`run`]) walks the sockets a few times per interval: it sends the pings
//! that are due and closes the sockets whose client stayed silent too long.
//! The transports only note what they hear ([`Heartbeat::heard`]).
//!
//! Timing: a ping leaves at most one tick (an eighth of the shorter of the
//! ping interval and the ping timeout) after it is due, and a silent client
//! is closed at most one tick after its deadline.

use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use engineioxide_core::{Packet, ProtocolVersion};
use smallvec::smallvec;
use tokio::time::{Instant, MissedTickBehavior};

use crate::engine::EngineIo;
use crate::handler::EngineIoHandler;
use crate::socket::{DisconnectReason, Socket};

/// Milliseconds on the heartbeat clock: never 0, which stands for "none".
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// A socket's heartbeat state; 0 in a field means "not set".
#[derive(Debug, Default)]
pub(crate) struct Heartbeat {
    /// When the next ping is due (v4: the server pings); 0 until started.
    next_ping: AtomicU64,
    /// When the ping the server waits an answer to was sent (v4), or 0.
    awaiting: AtomicU64,
    /// When the client was last heard (v3: the client pings); 0 until started.
    last_heard: AtomicU64,
}

/// What the heartbeat task does with one socket at one tick.
enum Verdict {
    Alive,
    /// A ping is due: it was marked as awaited, and must be sent.
    Ping,
    /// Its client stayed silent past its deadline.
    Dead,
}

impl Heartbeat {
    /// Starts the heartbeat of a socket whose handshake just ended. Returns
    /// whether a first ping is to be sent now (v4: as the crate did, the
    /// first ping goes at once, then one per interval).
    fn start(&self, protocol: ProtocolVersion, interval: Duration) -> bool {
        let now = now_ms();
        match protocol {
            ProtocolVersion::V4 => {
                self.next_ping.store(now + millis(interval), Ordering::Relaxed);
                self.awaiting.store(now, Ordering::Relaxed);
                true
            }
            ProtocolVersion::V3 => {
                self.last_heard.store(now, Ordering::Relaxed);
                false
            }
        }
    }

    /// The client answered a ping (v4) or pinged (v3).
    pub(crate) fn heard(&self) {
        self.awaiting.store(0, Ordering::Relaxed);
        if self.last_heard.load(Ordering::Relaxed) != 0 {
            self.last_heard.store(now_ms(), Ordering::Relaxed);
        }
    }

    fn check(
        &self,
        protocol: ProtocolVersion,
        upgrading: bool,
        now: u64,
        interval: u64,
        timeout: u64,
    ) -> Verdict {
        if protocol != ProtocolVersion::V4 {
            let heard = self.last_heard.load(Ordering::Relaxed);
            return if heard != 0 && now.saturating_sub(heard) > interval + timeout {
                Verdict::Dead
            } else {
                Verdict::Alive
            };
        }
        let awaiting = self.awaiting.load(Ordering::Relaxed);
        if awaiting != 0 {
            return if now.saturating_sub(awaiting) >= timeout {
                Verdict::Dead
            } else {
                Verdict::Alive
            };
        }
        let due = self.next_ping.load(Ordering::Relaxed);
        if due == 0 || now < due {
            return Verdict::Alive;
        }
        // Paused while the transport is being upgraded (as the crate did).
        if upgrading {
            return Verdict::Alive;
        }
        // On schedule, unless far behind (a long pause of the whole process).
        let next = if now - due < interval { due + interval } else { now + interval };
        self.next_ping.store(next, Ordering::Relaxed);
        // Marked before the ping leaves: its answer may come back at once.
        self.awaiting.store(now, Ordering::Relaxed);
        Verdict::Ping
    }
}

impl<H: EngineIoHandler> EngineIo<H> {
    /// Starts the heartbeat of `socket` (after its handshake), and the
    /// engine's heartbeat task if it does not run yet.
    pub(crate) fn start_heartbeat(self: &std::sync::Arc<Self>, socket: &Socket<H::Data>) {
        if socket.heartbeat.start(socket.protocol, self.config.ping_interval)
            && socket.internal_tx.try_send(smallvec![Packet::Ping]).is_err()
        {
            socket.close(DisconnectReason::HeartbeatTimeout);
        }
        if !self
            .heartbeat_running
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            tokio::spawn(run(std::sync::Arc::downgrade(self)));
        }
    }
}

/// The engine's heartbeat task: ends when the engine is dropped.
async fn run<H: EngineIoHandler>(engine: Weak<EngineIo<H>>) {
    let Some((interval, timeout)) = engine
        .upgrade()
        .map(|e| (e.config.ping_interval, e.config.ping_timeout))
    else {
        return;
    };
    let tick = (interval.min(timeout) / 8).clamp(Duration::from_millis(5), Duration::from_secs(1));
    let (interval, timeout) = (millis(interval), millis(timeout));
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut dead: Vec<std::sync::Arc<Socket<H::Data>>> = Vec::new();
    loop {
        ticks.tick().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let now = now_ms();
        engine.for_each_socket(|socket| {
            let verdict = socket.heartbeat.check(
                socket.protocol,
                socket.is_upgrading(),
                now,
                interval,
                timeout,
            );
            match verdict {
                Verdict::Alive => {}
                Verdict::Ping => {
                    // A full queue: the client does not even read (the crate's rule).
                    if socket.internal_tx.try_send(smallvec![Packet::Ping]).is_err() {
                        dead.push(socket.clone());
                    }
                }
                Verdict::Dead => dead.push(socket.clone()),
            }
        });
        // Closing takes the engine's socket map: not while walking it.
        for socket in dead.drain(..) {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = ?socket.id, "heartbeat timeout");
            socket.close(DisconnectReason::HeartbeatTimeout);
        }
    }
}
