//! `reconnect`: in each direct room one user (B) keeps sending while the
//! other (A) repeatedly loses its connection, stays away, reconnects, joins
//! and calls `sync` from the last `seq` it saw. Every message B got an ack
//! for must reach A exactly once on each path (live events, sync pages); a
//! message may legitimately come both live and in a sync page, the client
//! merges them by `seq`, and that overlap is reported.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::Ctx;
use crate::sio::{Event, Socket, Target};
use crate::stats::{Counts, Latency, Report};
use crate::traffic::{self, Bad, Expect, Lane, SendStats, Window};

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Direct rooms (one steady sender, one flaky receiver each).
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Closed loop: messages in flight per sender.
    #[arg(long, default_value_t = 1)]
    pub inflight: usize,
    /// Open loop instead: total messages per second offered.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Milliseconds a flaky receiver stays connected between drops.
    #[arg(long, default_value_t = 1000)]
    pub online_ms: u64,
    /// Milliseconds it stays away.
    #[arg(long, default_value_t = 500)]
    pub offline_ms: u64,
    /// Message text length in characters.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Seconds to wait for deliveries after the last ack.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
    /// Seconds after the end to wait for outstanding acks.
    #[arg(long, default_value_t = 10.0)]
    pub ack_timeout: f64,
}

const PAGE: usize = 200;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a flaky receiver saw.
#[derive(Default)]
struct Flaky {
    /// Per message `n` of the peer: arrivals as live events, and in sync pages.
    live: Vec<u8>,
    synced: Vec<u8>,
    /// Distinct `seq`s seen (either path).
    seqs: Vec<bool>,
    max_seq: u64,
    dup_live: u64,
    dup_sync: u64,
    /// Sync returned a message at or before the `after_seq` asked for.
    sync_stale: u64,
    /// Sync page not in ascending `seq`.
    sync_unordered: u64,
    wrong_sender: u64,
    wrong_room: u64,
    corrupt: u64,
    drops: u64,
    reconnects: u64,
    sync_calls: u64,
    /// Offline end → connected, joined and caught up.
    catch_up: Latency,
    errors: Counts,
    /// The first error in full (which room, which socket).
    first_error: Option<String>,
}

fn bump(v: &mut Vec<u8>, n: u64) -> u8 {
    let n = n as usize;
    if v.len() <= n {
        v.resize(n + 1, 0);
    }
    v[n] = v[n].saturating_add(1);
    v[n]
}

impl Flaky {
    /// Counts an error by its code (the text before any `:`), keeping the first in full.
    fn error(&mut self, detail: String) {
        let code = detail.split(':').next().unwrap_or("error").to_owned();
        self.errors.add(&code, 1);
        self.first_error.get_or_insert(detail);
    }

    fn check(&mut self, m: &Value, e: &Expect) -> Option<traffic::Parsed> {
        match traffic::parse(m, e) {
            Ok(p) => {
                let s = p.seq as usize;
                if self.seqs.len() <= s {
                    self.seqs.resize(s + 1, false);
                }
                self.seqs[s] = true;
                self.max_seq = self.max_seq.max(p.seq);
                Some(p)
            }
            Err(Bad::WrongRoom) => {
                self.wrong_room += 1;
                None
            }
            Err(Bad::WrongSender) => {
                self.wrong_sender += 1;
                None
            }
            Err(Bad::Corrupt) => {
                self.corrupt += 1;
                None
            }
        }
    }

    fn on_event(&mut self, ev: &Event, e: &Expect) {
        if ev.name != "message" {
            return;
        }
        if let Some(p) = self.check(&ev.data, e)
            && bump(&mut self.live, p.n) > 1
        {
            self.dup_live += 1;
        }
    }

    /// Pages through `sync` from the last seen seq until a short page.
    async fn sync(&mut self, socket: &Socket, e: &Expect) -> Result<(), String> {
        for _ in 0..10_000 {
            let after = self.max_seq;
            self.sync_calls += 1;
            let ack = socket
                .call(
                    "sync",
                    &json!({ "rid": e.rid, "after_seq": after, "limit": PAGE }),
                    CALL_TIMEOUT,
                )
                .await
                .map_err(|_| "sync_no_ack".to_string())?;
            let Some(messages) = ack.get("messages").and_then(Value::as_array) else {
                return Err(format!(
                    "sync_{}",
                    ack.pointer("/error/code")
                        .and_then(Value::as_str)
                        .unwrap_or("malformed")
                ));
            };
            let mut prev = after;
            for m in messages {
                if let Some(p) = self.check(m, e) {
                    if p.seq <= after {
                        self.sync_stale += 1;
                    }
                    if p.seq <= prev {
                        self.sync_unordered += 1;
                    }
                    prev = p.seq;
                    if bump(&mut self.synced, p.n) > 1 {
                        self.dup_sync += 1;
                    }
                }
            }
            if messages.len() < PAGE {
                return Ok(());
            }
        }
        Err("sync_too_many_pages".into())
    }
}

struct FlakyJob {
    target: Target,
    bind: Option<std::net::IpAddr>,
    token: String,
    expect: Expect,
    online: Duration,
    offline: Duration,
    /// First drop at `t0 + phase` (spreads the drops of different rooms).
    phase: Duration,
}

async fn flaky(
    job: FlakyJob,
    first: (Socket, mpsc::UnboundedReceiver<Event>),
    w: Window,
    mut stop: watch::Receiver<bool>,
) -> Flaky {
    let mut st = Flaky::default();
    let (mut socket, mut events) = first;
    let mut next_drop = w.t0 + job.phase;
    let e = &job.expect;
    loop {
        if next_drop < w.end {
            let until = tokio::time::Instant::from_std(next_drop);
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Some(ev) => st.on_event(&ev, e),
                        None => {
                            st.errors.add("server_closed_socket", 1);
                            break;
                        }
                    },
                    _ = tokio::time::sleep_until(until) => break,
                }
            }
            // Whatever already arrived was read by the client before it lost the network.
            while let Ok(ev) = events.try_recv() {
                st.on_event(&ev, e);
            }
            st.drops += 1;
            if st.drops % 2 == 1 {
                socket.kill();
            } else {
                socket.close(Duration::from_secs(1)).await;
                drop(socket);
            }
            drop(events);
            tokio::time::sleep(job.offline).await;
            let back = Instant::now();
            let mut attempt = 0;
            let reopened = loop {
                attempt += 1;
                match open(&job).await {
                    Ok(s) => break Some(s),
                    Err(detail) => {
                        st.error(detail);
                        if attempt >= 5 {
                            break None;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            };
            let Some((s, ev)) = reopened else {
                st.errors.add("gave_up_reconnecting", 1);
                return st;
            };
            socket = s;
            events = ev;
            st.reconnects += 1;
            if let Err(detail) = st.sync(&socket, e).await {
                st.error(detail);
            }
            st.catch_up.record_between(back, Instant::now());
            next_drop = Instant::now() + job.online;
        } else {
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Some(ev) => st.on_event(&ev, e),
                        None => {
                            st.errors.add("server_closed_socket", 1);
                            return st;
                        }
                    },
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            while let Ok(ev) = events.try_recv() {
                st.on_event(&ev, e);
            }
            socket.close(Duration::from_secs(1)).await;
            return st;
        }
    }
}

async fn open(job: &FlakyJob) -> Result<(Socket, mpsc::UnboundedReceiver<Event>), String> {
    let (socket, events) =
        crate::sio::connect(&job.target, &json!({ "token": job.token }), job.bind)
            .await
            .map_err(|e| format!("reconnect_{}", short(&e)))?;
    let ack = socket
        .call("join-chat", &json!({ "rid": job.expect.rid }), CALL_TIMEOUT)
        .await
        .map_err(|e| {
            format!(
                "join_no_ack: join-chat {{rid: {}}} on sid {}: {e} within {} s",
                job.expect.rid,
                socket.sid,
                CALL_TIMEOUT.as_secs()
            )
        })?;
    if ack.get("ok") != Some(&Value::Bool(true)) {
        return Err(format!(
            "join_{}",
            ack.pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or("malformed")
        ));
    }
    Ok((socket, events))
}

fn short(e: &crate::sio::ConnectError) -> &'static str {
    match e {
        crate::sio::ConnectError::Refused(_) => "refused",
        crate::sio::ConnectError::Timeout => "timeout",
        crate::sio::ConnectError::Io(_) => "io",
        crate::sio::ConnectError::Protocol(_) => "protocol",
    }
}

pub async fn run(ctx: &Ctx, o: &Opts) -> Result<Report> {
    if o.rooms == 0 {
        bail!("--rooms must be at least 1");
    }
    eprintln!("reconnect: setting up {} rooms on {}", o.rooms, ctx.url);
    let setup_all = async {
        let (pairs, rids, times) = crate::pairs::setup(ctx, o.rooms, "r").await?;
        let sockets = crate::pairs::join_pairs(ctx, &pairs, &rids).await?;
        anyhow::Ok((pairs, rids, sockets, times))
    };
    let (pairs, rids, sockets, _times) = tokio::time::timeout(ctx.setup_timeout, setup_all)
        .await
        .context("setup timed out")??;

    let w = Window::new(0.0, o.duration, o.ack_timeout);
    let (stop_tx, stop_rx) = watch::channel(false);
    let pad = traffic::padding(o.size);
    let online = Duration::from_millis(o.online_ms.max(1));
    let mut lanes = Vec::new();
    let mut flakies = Vec::new();
    let mut drains = Vec::new();
    let mut it = sockets.into_iter();
    for p in 0..pairs.len() {
        let (a_sock, b_sock) = (it.next().expect("a"), it.next().expect("b"));
        let (a, b) = &pairs[p];
        let tag = format!("{}{p}.b.", ctx.prefix);
        let (b_socket, mut b_events) = b_sock;
        // B's own events (joined-chat announcements) are not examined.
        drains.push(tokio::spawn(async move {
            while b_events.recv().await.is_some() {}
        }));
        lanes.push(Arc::new(Lane {
            socket: Arc::new(b_socket),
            rid: rids[p].clone(),
            tag: tag.clone(),
            pad: pad.clone(),
        }));
        let job = FlakyJob {
            target: ctx.target.clone(),
            bind: ctx.bind(2 * p),
            token: a.token.clone(),
            expect: Expect {
                rid: rids[p].clone(),
                peer_id: b.id.clone(),
                peer_tag: tag,
            },
            online,
            offline: Duration::from_millis(o.offline_ms),
            phase: online.mul_f64((p % 10) as f64 / 10.0 + 0.05),
        };
        flakies.push(tokio::spawn(flaky(job, a_sock, w, stop_rx.clone())));
    }
    eprintln!(
        "reconnect: sending for {} s; receivers drop every {} ms for {} ms",
        o.duration, o.online_ms, o.offline_ms
    );
    let senders: Vec<_> = match o.rate {
        Some(rate) if rate > 0.0 => traffic::open_loop(lanes.clone(), rate, w),
        _ => lanes
            .iter()
            .map(|l| tokio::spawn(traffic::closed_loop(l.clone(), o.inflight, w)))
            .collect(),
    };
    let mut sends = Vec::new();
    for s in senders {
        sends.push(s.await?);
    }
    tokio::time::sleep(Duration::from_secs_f64(o.grace)).await;
    let _ = stop_tx.send(true);
    let mut flaky_stats = Vec::new();
    for f in flakies {
        flaky_stats.push(f.await?);
    }
    for l in &lanes {
        l.socket.close(Duration::from_secs(1)).await;
    }
    for d in drains {
        d.abort();
    }

    let mut lost = 0u64;
    let mut recovered = 0u64;
    let mut overlap = 0u64;
    let mut gaps = 0u64;
    for (s, f) in sends.iter().zip(&flaky_stats) {
        for (n, &acked) in s.acked_ns.iter().enumerate() {
            let live = f.live.get(n).copied().unwrap_or(0);
            let synced = f.synced.get(n).copied().unwrap_or(0);
            if acked && live == 0 && synced == 0 {
                lost += 1;
            }
            if live == 0 && synced > 0 {
                recovered += 1;
            }
            if live > 0 && synced > 0 {
                overlap += 1;
            }
        }
        let distinct = f.seqs.iter().skip(1).filter(|&&b| b).count() as u64;
        gaps += f.max_seq.saturating_sub(distinct);
    }
    let mut send = SendStats::default();
    sends.iter().for_each(|s| send.merge(s));
    let sum = |g: fn(&Flaky) -> u64| flaky_stats.iter().map(g).sum::<u64>();
    let dup_live = sum(|f| f.dup_live);
    let dup_sync = sum(|f| f.dup_sync);
    let stale = sum(|f| f.sync_stale);
    let unordered = sum(|f| f.sync_unordered);
    let wrong = sum(|f| f.wrong_sender + f.wrong_room);
    let corrupt = sum(|f| f.corrupt);
    let drops = sum(|f| f.drops);
    let reconnects = sum(|f| f.reconnects);
    let sync_calls = sum(|f| f.sync_calls);
    let mut catch_up = Latency::default();
    let mut errors = Counts::default();
    for f in &flaky_stats {
        catch_up.merge(&f.catch_up);
        errors.merge(&f.errors);
    }
    let ok = lost == 0
        && dup_live == 0
        && dup_sync == 0
        && stale == 0
        && unordered == 0
        && gaps == 0
        && wrong == 0
        && corrupt == 0
        && errors.total() == 0
        && send.acked > 0;

    let mut h = String::new();
    let _ = writeln!(h, "natter-bench reconnect — {}", ctx.url);
    let _ = writeln!(
        h,
        "  {} rooms, {} s of sending ({}), receivers online {} ms / offline {} ms",
        o.rooms,
        o.duration,
        match o.rate {
            Some(r) if r > 0.0 => format!("open loop {r} msgs/s"),
            _ => format!("closed loop, {} in flight", o.inflight),
        },
        o.online_ms,
        o.offline_ms
    );
    let _ = writeln!(
        h,
        "  sent {}  acked {}  drops {drops}  reconnects {reconnects}  sync calls {sync_calls}",
        send.sent, send.acked
    );
    let _ = writeln!(
        h,
        "  recovered by sync {recovered}  also live (merged by seq) {overlap}  lost {lost}  \
         duplicated live {dup_live} / in sync {dup_sync}  stale sync {stale}  unordered sync {unordered}  \
         seq gaps {gaps}  wrong sender/room {wrong}  corrupt {corrupt}"
    );
    let _ = writeln!(h, "{}", catch_up.line("catch-up"));
    let mut all_errors = errors.clone();
    all_errors.merge(&send.errors);
    all_errors.add("unacked", send.unacked);
    let _ = writeln!(h, "  errors: {}", all_errors.text());
    if let Some(note) = ctx.join_retry_note() {
        let _ = writeln!(h, "  {note}");
    }
    if let Some(first) = flaky_stats.iter().find_map(|f| f.first_error.as_ref()) {
        let _ = writeln!(h, "  first error: {first}");
    }
    let _ = write!(h, "  RESULT: {}", if ok { "ok" } else { "FAILED" });
    let json = json!({
        "scenario": "reconnect",
        "url": ctx.url,
        "rooms": o.rooms,
        "duration_s": o.duration,
        "online_ms": o.online_ms,
        "offline_ms": o.offline_ms,
        "counts": {
            "sent": send.sent,
            "acked": send.acked,
            "drops": drops,
            "reconnects": reconnects,
            "sync_calls": sync_calls,
            "recovered_by_sync": recovered,
            "overlap_live_and_sync": overlap,
            "lost": lost,
            "duplicated_live": dup_live,
            "duplicated_sync": dup_sync,
            "stale_sync": stale,
            "unordered_sync": unordered,
            "seq_gaps": gaps,
            "wrong_sender_or_room": wrong,
            "corrupt": corrupt,
            "unacked": send.unacked,
        },
        "errors": all_errors.json(),
        "first_error": flaky_stats.iter().find_map(|f| f.first_error.clone()),
        "latency_us": { "catch_up": catch_up.json(), "send_ack": send.ack.json() },
        "ok": ok,
    });
    Ok(Report { human: h, json, ok })
}
