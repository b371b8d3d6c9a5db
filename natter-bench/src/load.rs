//! A traffic run shared by the scenarios that send messages (`pairs`,
//! `groups`): how load is offered, the run itself, and its report.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::Ctx;
use crate::sio::Event;
use crate::stats::{self, Counts, CpuUse, Report};
use crate::traffic::{self, Expect, Lane, RecvStats, SendStats, Window};

/// How messages are offered and measured.
#[derive(Debug, Clone, clap::Args)]
pub struct Load {
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
    /// Also report the CPU time of other processes in the measured window, per
    /// delivered message: `LABEL=PID[,PID…]`, or `LABEL=@COMMAND`, a shell command
    /// printing pids, run at the window's start and at its end (so processes that
    /// start in between, such as new database backends, are counted). Repeatable.
    #[arg(long = "cpu", value_name = "LABEL=PIDS")]
    pub cpu: Vec<String>,
    /// Also fail (exit 1) when a socket gets a room's messages out of `seq` order.
    #[arg(long)]
    pub strict_order: bool,
}

impl Load {
    pub fn check(&self) -> Result<()> {
        if let Some(rate) = self.rate
            && (rate.is_nan() || rate <= 0.0)
        {
            anyhow::bail!("--rate must be positive");
        }
        self.watches()?;
        Ok(())
    }

    /// The `--cpu` watches.
    pub fn watches(&self) -> Result<Vec<stats::Watch>> {
        self.cpu.iter().map(|s| stats::Watch::parse(s)).collect()
    }
}

/// What a run is made of, for its report.
pub struct Shape {
    pub scenario: &'static str,
    pub rooms: usize,
    /// How the rooms read in the report's first line.
    pub rooms_text: String,
    pub senders: usize,
    /// Sockets that receive each message (1 in a pair, members − 1 in a group).
    pub receivers_per_message: usize,
}

/// What a run measured, summed over every sender and receiver.
pub struct Outcome {
    pub send: SendStats,
    pub recv: RecvStats,
    /// Acknowledged messages that a receiver that should have had them never got.
    pub lost: u64,
    /// Receiving sockets the server closed during the run.
    pub disconnects: u64,
    pub cpu: CpuUse,
}

/// Sends from every lane and receives on every socket, for the window `o`
/// asks for. `routes` lists (sender lane, receiving socket) pairs: each
/// receiver must get every acknowledged message of its senders.
pub async fn drive(
    scenario: &str,
    o: &Load,
    lanes: Vec<Arc<Lane>>,
    receivers: Vec<(mpsc::UnboundedReceiver<Event>, Expect)>,
    routes: &[(usize, usize)],
) -> Result<(Window, Outcome)> {
    let w = Window::new(o.warmup, o.duration, o.ack_timeout);
    let (stop_tx, stop_rx) = watch::channel(false);
    let cpu = tokio::spawn(stats::cpu_between(
        o.server_pid,
        o.watches()?,
        w.measure_start,
        w.end,
    ));
    let receivers: Vec<_> = receivers
        .into_iter()
        .map(|(events, e)| tokio::spawn(traffic::receive(events, e, w, stop_rx.clone())))
        .collect();
    eprintln!(
        "{scenario}: sending for {} s ({} s warmup), {}",
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
    let lost = routes
        .iter()
        .map(|&(sender, receiver)| traffic::lost(&sends[sender], &recvs[receiver].seen))
        .sum();
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

    Ok((
        w,
        Outcome {
            send,
            recv,
            lost,
            disconnects,
            cpu,
        },
    ))
}

/// The report of a traffic run: the human lines and one JSON object.
pub fn report(
    ctx: &Ctx,
    shape: &Shape,
    o: &Load,
    w: &Window,
    run: &Outcome,
    times: &[f64],
) -> Report {
    let Outcome {
        send,
        recv,
        lost,
        disconnects,
        cpu,
    } = run;
    let (lost, disconnects) = (*lost, *disconnects);
    let secs = w.seconds();
    let delivered_rate = recv.in_window as f64 / secs;
    let acked_in_window = send.ack.count();
    let acked_rate = acked_in_window as f64 / secs;
    let senders = shape.senders;
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
    let _ = writeln!(h, "natter-bench {} — {}", shape.scenario, ctx.url_text());
    if ctx.urls.len() > 1 {
        let _ = writeln!(
            h,
            "  {} nodes: the two sockets of every room are on different nodes",
            ctx.urls.len()
        );
    }
    let _ = writeln!(
        h,
        "  {}, {senders} senders, {mode}, warmup {} s, measured {} s, {}-char messages",
        shape.rooms_text, o.warmup, o.duration, o.size
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
    for (label, c) in &cpu.watched {
        let _ = writeln!(
            h,
            "  CPU in the window of {label}: {c:.2} s ({:.0} µs per delivered message)",
            cpu_per_msg(Some(*c)).unwrap_or(0.0)
        );
    }
    let _ = writeln!(h, "{}", recv.latency.line("send→receive"));
    let _ = writeln!(
        h,
        "{}",
        recv.from_write.line("send→receive, from the socket write")
    );
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
    let mut json = json!({
        "scenario": shape.scenario,
        "url": ctx.url,
        "mode": if o.rate.is_some() { "open" } else { "closed" },
        "rooms": shape.rooms,
        "receivers_per_message": shape.receivers_per_message,
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
            "send_receive_from_write": recv.from_write.json(),
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
        "cpu_s": cpu_json(cpu, Some),
        "cpu_us_per_delivered": cpu_json(cpu, |c| cpu_per_msg(Some(c)).map(f64::round)),
        "setup_join_retries": ctx.join_retries.load(std::sync::atomic::Ordering::Relaxed),
        "setup_s": { "users": times[0], "rooms": times[1], "sockets": times[2] },
        "ok": ok,
    });
    if ctx.urls.len() > 1 {
        json["urls"] = json!(ctx.urls);
    }
    Report { human: h, json, ok }
}

/// `{server, bench, LABEL…}`: each CPU figure of `cpu` passed through `f`.
fn cpu_json(cpu: &CpuUse, f: impl Fn(f64) -> Option<f64>) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("server".into(), json!(cpu.server.and_then(&f)));
    m.insert("bench".into(), json!(cpu.bench.and_then(&f)));
    for (label, c) in &cpu.watched {
        m.insert(label.clone(), json!(f(*c)));
    }
    serde_json::Value::Object(m)
}
