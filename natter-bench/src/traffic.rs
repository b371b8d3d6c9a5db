//! Message traffic shared by the scenarios: the test message format, senders
//! (closed loop, or open loop paced by a dedicated thread), and the checks a
//! receiving socket applies to every `message` event.
//!
//! A test message's text is `"{n} {t_us} {w_us} {padding}"`: `n` counts the
//! sender's messages from 0, `t_us` is the send time (closed loop) or the
//! scheduled send time (open loop) and `w_us` the time its frame was handed to
//! the socket ([`WRITE_STAMP`]), in microseconds since the process epoch.
//! Its `client_id` is `{tag}{n}`, with a tag unique to the run, room and sender.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use crate::sio::{Ack, Event, Socket, WRITE_STAMP};
use crate::stats::{Counts, Latency, instant, micros};

/// A sender never numbers more messages than this (guards the `seen` vectors).
const MAX_N: u64 = 50_000_000;

/// The phases of a traffic run.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Sending starts.
    pub t0: Instant,
    /// Latencies of messages sent from here on are recorded; deliveries from
    /// here until `end` count toward the throughput.
    pub measure_start: Instant,
    /// No message is sent from here on.
    pub end: Instant,
    /// Acknowledgements still missing at this instant count as `unacked`.
    pub ack_deadline: Instant,
}

impl Window {
    pub fn new(warmup: f64, duration: f64, ack_timeout: f64) -> Self {
        let t0 = Instant::now() + Duration::from_millis(200);
        let measure_start = t0 + Duration::from_secs_f64(warmup);
        let end = measure_start + Duration::from_secs_f64(duration);
        Self {
            t0,
            measure_start,
            end,
            ack_deadline: end + Duration::from_secs_f64(ack_timeout),
        }
    }

    pub fn measured(&self, t: Instant) -> bool {
        t >= self.measure_start && t < self.end
    }

    pub fn seconds(&self) -> f64 {
        (self.end - self.measure_start).as_secs_f64()
    }
}

/// One sending socket in one room.
pub struct Lane {
    pub socket: Arc<Socket>,
    pub rid: String,
    /// `client_id` prefix, unique per run, room and sender.
    pub tag: String,
    /// Padding appended to every message text.
    pub pad: Arc<str>,
}

impl Lane {
    fn payload(&self, n: u64, t_us: u64) -> Value {
        json!({
            "rid": self.rid,
            "message": format!("{n} {t_us} {WRITE_STAMP} {}", self.pad),
            "client_id": format!("{}{n}", self.tag),
        })
    }

    fn send(&self, n: u64, t: Instant) -> Option<oneshot::Receiver<Ack>> {
        self.socket
            .emit_with_ack("outgoing", &self.payload(n, micros(t)))
            .ok()
    }
}

/// Padding that makes a message text about `size` characters long.
pub fn padding(size: usize) -> Arc<str> {
    "x".repeat(size.saturating_sub(20).max(1)).into()
}

/// What one sender saw.
#[derive(Default)]
pub struct SendStats {
    pub sent: u64,
    pub sent_in_window: u64,
    pub acked: u64,
    /// Send (or scheduled send) → ack, messages sent in the window.
    pub ack: Latency,
    /// Open loop: how late the pacer emitted each message versus its schedule.
    pub lag: Latency,
    /// Error acks by code; `closed` when the socket closed before the ack.
    pub errors: Counts,
    /// `acked[n]`: message `n` was acknowledged with `ok: true`.
    pub acked_ns: Vec<bool>,
    /// Acks still missing at the ack deadline.
    pub unacked: u64,
}

impl SendStats {
    fn on_ack(
        &mut self,
        n: u64,
        from: Instant,
        result: Result<Ack, oneshot::error::RecvError>,
        w: &Window,
    ) {
        match result {
            Ok((at, v)) if v.get("ok") == Some(&Value::Bool(true)) => {
                self.acked += 1;
                let n = n as usize;
                if self.acked_ns.len() <= n {
                    self.acked_ns.resize(n + 1, false);
                }
                self.acked_ns[n] = true;
                if from >= w.measure_start {
                    self.ack.record_between(from, at);
                }
            }
            Ok((_, v)) => {
                let code = v
                    .pointer("/error/code")
                    .and_then(Value::as_str)
                    .unwrap_or("malformed_ack");
                self.errors.add(code, 1);
            }
            Err(_) => self.errors.add("closed", 1),
        }
    }

    fn on_sent(&mut self, sched: Instant, w: &Window) {
        self.sent += 1;
        if w.measured(sched) {
            self.sent_in_window += 1;
        }
    }

    pub fn merge(&mut self, o: &SendStats) {
        self.sent += o.sent;
        self.sent_in_window += o.sent_in_window;
        self.acked += o.acked;
        self.ack.merge(&o.ack);
        self.lag.merge(&o.lag);
        self.errors.merge(&o.errors);
        self.unacked += o.unacked;
    }
}

type AckWait = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (u64, Instant, Result<Ack, oneshot::error::RecvError>)>
            + Send,
    >,
>;

fn wait_ack(n: u64, from: Instant, rx: oneshot::Receiver<Ack>) -> AckWait {
    Box::pin(async move { (n, from, rx.await) })
}

/// Closed loop: `inflight` messages outstanding; each ack sends the next one
/// until `w.end`, then waits for the rest until `w.ack_deadline`.
pub async fn closed_loop(lane: Arc<Lane>, inflight: usize, w: Window) -> SendStats {
    let mut st = SendStats::default();
    tokio::time::sleep_until(w.t0.into()).await;
    let mut pending = FuturesUnordered::new();
    let mut n = 0u64;
    let mut open = true;
    for _ in 0..inflight.max(1) {
        let now = Instant::now();
        match lane.send(n, now) {
            Some(rx) => {
                st.on_sent(now, &w);
                pending.push(wait_ack(n, now, rx));
                n += 1;
            }
            None => {
                st.errors.add("closed", 1);
                open = false;
                break;
            }
        }
    }
    loop {
        match tokio::time::timeout_at(w.ack_deadline.into(), pending.next()).await {
            Err(_) => {
                st.unacked += pending.len() as u64;
                break;
            }
            Ok(None) => break,
            Ok(Some((k, from, result))) => {
                st.on_ack(k, from, result, &w);
                let now = Instant::now();
                if open && now < w.end && n < MAX_N {
                    match lane.send(n, now) {
                        Some(rx) => {
                            st.on_sent(now, &w);
                            pending.push(wait_ack(n, now, rx));
                            n += 1;
                        }
                        None => open = false,
                    }
                }
            }
        }
    }
    st
}

/// One message emitted by the pacer thread.
struct Emitted {
    n: u64,
    sched: Instant,
    emitted: Instant,
    rx: Option<oneshot::Receiver<Ack>>,
}

/// Open loop at `rate` messages per second in total, spread evenly over the
/// lanes: message `k` of the run is scheduled at `t0 + k / rate` and goes to
/// lane `k % lanes`. A dedicated OS thread keeps the schedule (precise
/// sleeps; if it falls behind it sends at once, and latency is still measured
/// from the scheduled time, so a slow server cannot hide its stalls —
/// no coordinated omission). Returns one stats future per lane.
pub fn open_loop(
    lanes: Vec<Arc<Lane>>,
    rate: f64,
    w: Window,
) -> Vec<tokio::task::JoinHandle<SendStats>> {
    let mut txs = Vec::with_capacity(lanes.len());
    let mut collectors = Vec::with_capacity(lanes.len());
    for _ in &lanes {
        let (tx, rx) = mpsc::unbounded_channel::<Emitted>();
        txs.push(tx);
        collectors.push(tokio::spawn(collect(rx, w)));
    }
    std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            let interval = 1.0 / rate;
            let mut counters = vec![0u64; lanes.len()];
            let mut k: u64 = 0;
            loop {
                let sched = w.t0 + Duration::from_secs_f64(k as f64 * interval);
                if sched >= w.end {
                    break;
                }
                let now = Instant::now();
                if sched > now {
                    std::thread::sleep(sched - now);
                }
                let i = (k % lanes.len() as u64) as usize;
                let n = counters[i];
                counters[i] += 1;
                let rx = lanes[i].send(n, sched);
                let _ = txs[i].send(Emitted {
                    n,
                    sched,
                    emitted: Instant::now(),
                    rx,
                });
                k += 1;
            }
        })
        .expect("spawn the pacer thread");
    collectors
}

async fn collect(mut rx: mpsc::UnboundedReceiver<Emitted>, w: Window) -> SendStats {
    let mut st = SendStats::default();
    let mut pending = FuturesUnordered::new();
    let mut input = true;
    let deadline = tokio::time::sleep_until(w.ack_deadline.into());
    tokio::pin!(deadline);
    loop {
        if !input && pending.is_empty() {
            break;
        }
        tokio::select! {
            e = rx.recv(), if input => match e {
                None => input = false,
                Some(e) => {
                    st.on_sent(e.sched, &w);
                    if w.measured(e.sched) {
                        st.lag.record_between(e.sched, e.emitted);
                    }
                    match e.rx {
                        Some(ack) => pending.push(wait_ack(e.n, e.sched, ack)),
                        None => st.errors.add("closed", 1),
                    }
                }
            },
            Some((n, from, result)) = pending.next(), if !pending.is_empty() => {
                st.on_ack(n, from, result, &w);
            }
            _ = &mut deadline => {
                st.unacked += pending.len() as u64;
                break;
            }
        }
    }
    st
}

/// What a receiving socket expects of the messages it is sent.
#[derive(Clone)]
pub struct Expect {
    pub rid: String,
    /// The only user whose messages this socket should get.
    pub peer_id: String,
    /// The peer's `client_id` prefix.
    pub peer_tag: String,
}

/// A test message, as received.
pub struct Parsed {
    pub n: u64,
    pub t_us: u64,
    /// When its frame was written to the sender's socket.
    pub w_us: u64,
    pub seq: u64,
}

/// Why a `message` event does not pass.
pub enum Bad {
    WrongRoom,
    WrongSender,
    Corrupt,
}

fn id_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Checks one `Message` against what is expected and parses its test fields.
pub fn parse(m: &Value, e: &Expect) -> Result<Parsed, Bad> {
    if id_string(m.get("rid")).as_deref() != Some(e.rid.as_str()) {
        return Err(Bad::WrongRoom);
    }
    if id_string(m.get("sender_id")).as_deref() != Some(e.peer_id.as_str()) {
        return Err(Bad::WrongSender);
    }
    let text = m
        .get("message")
        .and_then(Value::as_str)
        .ok_or(Bad::Corrupt)?;
    let mut parts = text.split(' ');
    let n: u64 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(Bad::Corrupt)?;
    let t_us: u64 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(Bad::Corrupt)?;
    let w_us: u64 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(Bad::Corrupt)?;
    let seq = m.get("seq").and_then(Value::as_u64).ok_or(Bad::Corrupt)?;
    if n >= MAX_N {
        return Err(Bad::Corrupt);
    }
    let client_id = m.get("client_id").and_then(Value::as_str).unwrap_or("");
    if client_id.strip_prefix(e.peer_tag.as_str()) != Some(&text[..text.find(' ').unwrap_or(0)]) {
        return Err(Bad::Corrupt);
    }
    Ok(Parsed { n, t_us, w_us, seq })
}

/// What one receiving socket saw.
#[derive(Default)]
pub struct RecvStats {
    /// Distinct test messages delivered.
    pub delivered: u64,
    /// Deliveries read inside the measured window.
    pub in_window: u64,
    /// Send → receive for messages sent in the window.
    pub latency: Latency,
    /// The same, timed from the moment the frame was handed to the socket.
    pub from_write: Latency,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub wrong_sender: u64,
    pub wrong_room: u64,
    pub corrupt: u64,
    /// `seen[n]`: how many times the peer's message `n` arrived.
    pub seen: Vec<u8>,
    pub last_seq: u64,
    /// The first out-of-order delivery: (room, seq before, seq that came after it).
    pub first_out_of_order: Option<(String, u64, u64)>,
    /// The server closed this socket during the run.
    pub disconnected: bool,
}

impl RecvStats {
    /// Applies one `message` event; returns the parsed message if it is new.
    pub fn on_message(&mut self, ev: &Event, e: &Expect, w: &Window) -> Option<Parsed> {
        let p = match parse(&ev.data, e) {
            Ok(p) => p,
            Err(Bad::WrongRoom) => {
                self.wrong_room += 1;
                return None;
            }
            Err(Bad::WrongSender) => {
                self.wrong_sender += 1;
                return None;
            }
            Err(Bad::Corrupt) => {
                self.corrupt += 1;
                return None;
            }
        };
        let n = p.n as usize;
        if self.seen.len() <= n {
            self.seen.resize(n + 1, 0);
        }
        self.seen[n] = self.seen[n].saturating_add(1);
        if self.seen[n] > 1 {
            self.duplicated += 1;
            return None;
        }
        if p.seq <= self.last_seq {
            self.out_of_order += 1;
            if self.first_out_of_order.is_none() {
                self.first_out_of_order = Some((e.rid.clone(), self.last_seq, p.seq));
            }
        } else {
            self.last_seq = p.seq;
        }
        self.delivered += 1;
        if w.measured(ev.at) {
            self.in_window += 1;
        }
        let sent = instant(p.t_us);
        if sent >= w.measure_start {
            self.latency.record_between(sent, ev.at);
            self.from_write.record_between(instant(p.w_us), ev.at);
        }
        Some(p)
    }

    pub fn merge(&mut self, o: &RecvStats) {
        self.delivered += o.delivered;
        self.in_window += o.in_window;
        self.latency.merge(&o.latency);
        self.from_write.merge(&o.from_write);
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.wrong_sender += o.wrong_sender;
        self.wrong_room += o.wrong_room;
        self.corrupt += o.corrupt;
        self.disconnected |= o.disconnected;
        if self.first_out_of_order.is_none() {
            self.first_out_of_order.clone_from(&o.first_out_of_order);
        }
    }
}

/// Reads `message` events until `stop` turns true (anything already queued
/// then is still counted) or the socket closes.
pub async fn receive(
    mut events: mpsc::UnboundedReceiver<Event>,
    e: Expect,
    w: Window,
    mut stop: watch::Receiver<bool>,
) -> RecvStats {
    let mut st = RecvStats::default();
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => {
                    if ev.name == "message" {
                        st.on_message(&ev, &e, &w);
                    }
                }
                None => {
                    st.disconnected = true;
                    return st;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    while let Ok(ev) = events.try_recv() {
        if ev.name == "message" {
            st.on_message(&ev, &e, &w);
        }
    }
    st
}

/// Acked messages of a sender that its receiver never saw.
pub fn lost(send: &SendStats, seen: &[u8]) -> u64 {
    send.acked_ns
        .iter()
        .enumerate()
        .filter(|&(n, &acked)| acked && seen.get(n).copied().unwrap_or(0) == 0)
        .count() as u64
}
