//! `pairs`: N direct rooms, two users each, one socket per user, both sending.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::sync::watch;

use crate::Ctx;
use crate::api::{User, bounded};
use crate::stats::{self, Counts, CpuUse, Report};
use crate::traffic::{self, Expect, Lane, RecvStats, SendStats, Window};

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Direct rooms (two users and two sockets each).
    #[arg(long, default_value_t = 200)]
    pub rooms: usize,
    /// Closed loop: messages in flight per sender (the next is sent when one is acked).
    #[arg(long, default_value_t = 4)]
    pub inflight: usize,
    /// Open loop instead: total messages per second offered, spread evenly over the senders.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of traffic before the measurement starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Message text length in characters (at least the ~20 the test fields take).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Seconds to wait for deliveries after the last ack before counting losses.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
    /// Seconds after the end to wait for outstanding acks.
    #[arg(long, default_value_t = 10.0)]
    pub ack_timeout: f64,
    /// The server's process id: its CPU time during the measured window is reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Also fail (exit 1) when a socket gets a room's messages out of `seq` order.
    #[arg(long)]
    pub strict_order: bool,
}

/// Registers 2N users, opens N rooms, connects and joins 2N sockets.
pub async fn setup(
    ctx: &Ctx,
    rooms: usize,
    tag: &str,
) -> Result<(Vec<(User, User)>, Vec<String>, Vec<f64>)> {
    let t = Instant::now();
    let users = ctx.api.users(&ctx.prefix, tag, rooms * 2).await?;
    let t_users = t.elapsed().as_secs_f64();
    let mut it = users.into_iter();
    let mut pairs = Vec::with_capacity(rooms);
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        pairs.push((a, b));
    }
    let t = Instant::now();
    let rids = ctx.api.rooms(&pairs).await?;
    let t_rooms = t.elapsed().as_secs_f64();
    Ok((pairs, rids, vec![t_users, t_rooms]))
}

/// Connects both users of every pair and joins them to their room (socket `2p`
/// is pair p's first user, `2p + 1` its second), `connect_concurrency` at a time.
pub async fn join_pairs(
    ctx: &Ctx,
    pairs: &[(User, User)],
    rids: &[String],
) -> Result<
    Vec<(
        crate::sio::Socket,
        tokio::sync::mpsc::UnboundedReceiver<crate::sio::Event>,
    )>,
> {
    let jobs = pairs
        .iter()
        .zip(rids)
        .enumerate()
        .flat_map(|(p, ((a, b), rid))| {
            [(2 * p, a, rid), (2 * p + 1, b, rid)]
                .map(|(i, user, rid)| async move { ctx.joined_socket(&user.token, rid, i).await })
        });
    bounded(ctx.connect_concurrency, jobs).await
}

pub async fn run(ctx: &Ctx, o: &Opts) -> Result<Report> {
    if o.rooms == 0 {
        bail!("--rooms must be at least 1");
    }
    if let Some(rate) = o.rate
        && (rate.is_nan() || rate <= 0.0)
    {
        bail!("--rate must be positive");
    }
    eprintln!("pairs: setting up {} rooms on {}", o.rooms, ctx.url);
    let setup_all = async {
        let (pairs, rids, mut times) = setup(ctx, o.rooms, "p").await?;
        let t = Instant::now();
        let sockets = join_pairs(ctx, &pairs, &rids).await?;
        times.push(t.elapsed().as_secs_f64());
        anyhow::Ok((pairs, rids, sockets, times))
    };
    let (pairs, rids, sockets, times) = tokio::time::timeout(ctx.setup_timeout, setup_all)
        .await
        .context("setup timed out")??;
    eprintln!(
        "pairs: setup done: {} users in {:.1} s, {} rooms in {:.1} s, {} sockets joined in {:.1} s",
        pairs.len() * 2,
        times[0],
        rids.len(),
        times[1],
        sockets.len(),
        times[2]
    );

    let pad = traffic::padding(o.size);
    let mut lanes = Vec::new();
    let mut expects = Vec::new();
    let mut event_rxs = Vec::new();
    for (i, (socket, events)) in sockets.into_iter().enumerate() {
        let (p, side) = (i / 2, i % 2);
        let peer = if side == 0 { &pairs[p].1 } else { &pairs[p].0 };
        lanes.push(Arc::new(Lane {
            socket: Arc::new(socket),
            rid: rids[p].clone(),
            tag: format!("{}{p}.{side}.", ctx.prefix),
            pad: pad.clone(),
        }));
        expects.push(Expect {
            rid: rids[p].clone(),
            peer_id: peer.id.clone(),
            peer_tag: format!("{}{p}.{}.", ctx.prefix, 1 - side),
        });
        event_rxs.push(events);
    }

    let w = Window::new(o.warmup, o.duration, o.ack_timeout);
    let (stop_tx, stop_rx) = watch::channel(false);
    let cpu = tokio::spawn(stats::cpu_between(o.server_pid, w.measure_start, w.end));
    let receivers: Vec<_> = event_rxs
        .into_iter()
        .zip(expects)
        .map(|(events, e)| tokio::spawn(traffic::receive(events, e, w, stop_rx.clone())))
        .collect();
    eprintln!(
        "pairs: sending for {} s ({} s warmup), {}",
        o.duration,
        o.warmup,
        match o.rate {
            Some(r) => format!("open loop at {r} msgs/s"),
            None => format!("closed loop, {} in flight per sender", o.inflight),
        }
    );
    let senders: Vec<_> = match o.rate {
        Some(rate) => traffic::open_loop(lanes.clone(), rate, w),
        None => lanes
            .iter()
            .map(|l| tokio::spawn(traffic::closed_loop(l.clone(), o.inflight, w)))
            .collect(),
    };
    let mut sends = Vec::with_capacity(senders.len());
    for s in senders {
        sends.push(s.await?);
    }
    tokio::time::sleep(Duration::from_secs_f64(o.grace)).await;
    let _ = stop_tx.send(true);
    let mut recvs = Vec::with_capacity(receivers.len());
    for r in receivers {
        recvs.push(r.await?);
    }
    // Sender i's messages go to socket i ^ 1.
    let mut lost = 0;
    for (i, s) in sends.iter().enumerate() {
        lost += traffic::lost(s, &recvs[i ^ 1].seen);
    }
    let mut send = SendStats::default();
    sends.iter().for_each(|s| send.merge(s));
    let mut recv = RecvStats::default();
    recvs.iter().for_each(|r| recv.merge(r));
    let disconnects = recvs.iter().filter(|r| r.disconnected).count() as u64;
    let cpu = cpu.await?;

    // Close politely, bounded (the server's cost of closing is not measured).
    let closing = lanes.iter().map(|l| l.socket.close(Duration::from_secs(2)));
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(closing),
    )
    .await;

    Ok(report(
        ctx,
        o,
        &w,
        &send,
        &recv,
        lost,
        disconnects,
        &times,
        cpu,
    ))
}

#[allow(clippy::too_many_arguments)]
fn report(
    ctx: &Ctx,
    o: &Opts,
    w: &Window,
    send: &SendStats,
    recv: &RecvStats,
    lost: u64,
    disconnects: u64,
    times: &[f64],
    cpu: CpuUse,
) -> Report {
    let secs = w.seconds();
    let delivered_rate = recv.in_window as f64 / secs;
    let acked_in_window = send.ack.count();
    let acked_rate = acked_in_window as f64 / secs;
    let senders = o.rooms * 2;
    let ok = lost == 0
        && recv.duplicated == 0
        && (recv.out_of_order == 0 || !o.strict_order)
        && recv.wrong_sender == 0
        && recv.wrong_room == 0
        && recv.corrupt == 0
        && send.acked > 0;
    let mode = match o.rate {
        Some(r) => format!("open loop, {r} msgs/s offered"),
        None => format!("closed loop, {} in flight per sender", o.inflight),
    };
    let mut h = String::new();
    let _ = writeln!(h, "natter-bench pairs — {}", ctx.url);
    let _ = writeln!(
        h,
        "  {} rooms, {senders} senders, {mode}, warmup {} s, measured {} s, {}-char messages",
        o.rooms, o.warmup, o.duration, o.size
    );
    let _ = writeln!(
        h,
        "  setup (untimed): users {:.1} s, rooms {:.1} s, sockets+join {:.1} s",
        times[0], times[1], times[2]
    );
    let _ = writeln!(
        h,
        "  delivered {delivered_rate:.0} msgs/s, acked {acked_rate:.0} msgs/s (measured window)"
    );
    let cpu_per_msg = |c: Option<f64>| {
        c.filter(|_| recv.in_window > 0)
            .map(|c| c * 1e6 / recv.in_window as f64)
    };
    let _ = writeln!(
        h,
        "  CPU in the window: server {}, load generator {}",
        cpu.server
            .map_or("n/a (pass --server-pid)".into(), |c| format!(
                "{c:.2} s ({:.0} µs per delivered message)",
                cpu_per_msg(cpu.server).unwrap_or(0.0)
            )),
        cpu.bench.map_or("n/a".into(), |c| format!(
            "{c:.2} s ({:.0} µs per delivered message)",
            cpu_per_msg(cpu.bench).unwrap_or(0.0)
        )),
    );
    let _ = writeln!(h, "{}", recv.latency.line("send→receive"));
    let _ = writeln!(h, "{}", send.ack.line("send→ack"));
    if o.rate.is_some() {
        let _ = writeln!(h, "{}", send.lag.line("pacer lag"));
    }
    let mut errors = send.errors.clone();
    errors.add("unacked", send.unacked);
    let _ = writeln!(
        h,
        "  sent {}  acked {}  delivered {}  lost {lost}  duplicated {}  out-of-order {}  \
         wrong sender {}  wrong room {}  corrupt {}  disconnects {disconnects}",
        send.sent,
        send.acked,
        recv.delivered,
        recv.duplicated,
        recv.out_of_order,
        recv.wrong_sender,
        recv.wrong_room,
        recv.corrupt
    );
    let _ = writeln!(h, "  ack errors: {}", errors.text());
    if let Some(note) = ctx.join_retry_note() {
        let _ = writeln!(h, "  {note}");
    }
    if let Some((rid, before, after)) = &recv.first_out_of_order {
        let _ = writeln!(
            h,
            "  WARNING: {} deliveries out of seq order (first: seq {after} after seq {before} in room {rid}); \
             a client that resumes with `sync` from its last seen seq would miss messages",
            recv.out_of_order
        );
    }
    let _ = write!(
        h,
        "  RESULT: {}",
        if ok {
            "ok"
        } else if send.acked == 0 {
            "FAILED (nothing was acknowledged)"
        } else {
            "FAILED (integrity)"
        }
    );
    let json = json!({
        "scenario": "pairs",
        "url": ctx.url,
        "mode": if o.rate.is_some() { "open" } else { "closed" },
        "rooms": o.rooms,
        "senders": senders,
        "inflight": if o.rate.is_some() { None } else { Some(o.inflight) },
        "rate": o.rate,
        "duration_s": o.duration,
        "warmup_s": o.warmup,
        "size": o.size,
        "delivered_per_s": (delivered_rate * 10.0).round() / 10.0,
        "acked_per_s": (acked_rate * 10.0).round() / 10.0,
        "latency_us": {
            "send_receive": recv.latency.json(),
            "send_ack": send.ack.json(),
            "pacer_lag": if o.rate.is_some() { send.lag.json() } else { serde_json::Value::Null },
        },
        "counts": {
            "sent": send.sent,
            "sent_in_window": send.sent_in_window,
            "acked": send.acked,
            "delivered": recv.delivered,
            "lost": lost,
            "duplicated": recv.duplicated,
            "out_of_order": recv.out_of_order,
            "wrong_sender": recv.wrong_sender,
            "wrong_room": recv.wrong_room,
            "corrupt": recv.corrupt,
            "unacked": send.unacked,
            "disconnects": disconnects,
        },
        "first_out_of_order": recv.first_out_of_order.as_ref().map(|(rid, before, after)| {
            json!({ "rid": rid, "seq_before": before, "seq_after": after })
        }),
        "ack_errors": Counts::json(&send.errors),
        "cpu_s": { "server": cpu.server, "bench": cpu.bench },
        "cpu_us_per_delivered": {
            "server": cpu_per_msg(cpu.server).map(f64::round),
            "bench": cpu_per_msg(cpu.bench).map(f64::round),
        },
        "setup_join_retries": ctx.join_retries.load(std::sync::atomic::Ordering::Relaxed),
        "setup_s": { "users": times[0], "rooms": times[1], "sockets": times[2] },
        "ok": ok,
    });
    Report { human: h, json, ok }
}
