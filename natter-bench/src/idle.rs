//! `idle`: many authenticated sockets doing nothing; the server's resident
//! memory per socket, read from `/proc/PID/status`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, stream};
use serde_json::json;

use crate::Ctx;
use crate::sio::{ConnectError, Socket};
use crate::stats::{Counts, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Sockets to open.
    #[arg(long, default_value_t = 1000)]
    pub sockets: usize,
    /// Sockets per user (users log in once; their token is reused).
    #[arg(long, default_value_t = 100)]
    pub per_user: usize,
    /// Seconds to hold the sockets open (long enough for a server ping or two).
    #[arg(long, default_value_t = 30.0)]
    pub hold: f64,
    /// The server's process id, to read its RSS from /proc (no memory figures without it).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Seconds to let the server settle before each RSS reading.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
}

/// `VmRSS` of a process, in bytes.
pub fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .context("bad VmRSS line")?;
    Ok(kib * 1024)
}

fn kind(e: &ConnectError) -> &'static str {
    match e {
        ConnectError::Refused(_) => "refused",
        ConnectError::Timeout => "timeout",
        ConnectError::Io(_) => "io",
        ConnectError::Protocol(_) => "protocol",
    }
}

pub async fn run(ctx: &Ctx, o: &Opts, fd_limit: u64) -> Result<Report> {
    if o.sockets == 0 || o.per_user == 0 {
        bail!("--sockets and --per-user must be at least 1");
    }
    let read_rss = |what: &str| -> Option<u64> {
        let pid = o.server_pid?;
        match rss(pid) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("idle: cannot read the server's RSS {what}: {e:#}");
                None
            }
        }
    };
    let users_n = o.sockets.div_ceil(o.per_user);
    eprintln!(
        "idle: {} sockets on {users_n} users at {} (fd limit {fd_limit}, {} source address(es))",
        o.sockets,
        ctx.url,
        ctx.bind_ips.len().max(1)
    );
    let t = Instant::now();
    let users = tokio::time::timeout(ctx.setup_timeout, ctx.api.users(&ctx.prefix, "i", users_n))
        .await
        .context("setup timed out")??;
    let t_users = t.elapsed().as_secs_f64();
    let settle = Duration::from_secs_f64(o.settle);
    tokio::time::sleep(settle).await;
    let rss_before = read_rss("before");

    let t = Instant::now();
    let mut failures = Counts::default();
    let mut first_error: Option<String> = None;
    let mut sockets: Vec<Socket> = Vec::with_capacity(o.sockets);
    let mut opened = stream::iter(0..o.sockets)
        .map(|i| {
            let token = users[i / o.per_user].token.clone();
            async move { ctx.socket(&token, i).await }
        })
        .buffer_unordered(ctx.connect_concurrency);
    let connect_deadline = tokio::time::Instant::now() + ctx.setup_timeout;
    loop {
        match tokio::time::timeout_at(connect_deadline, opened.next()).await {
            Ok(Some(Ok((socket, events)))) => {
                // Idle sockets get no events; their receivers are not needed.
                drop(events);
                sockets.push(socket);
            }
            Ok(Some(Err(e))) => {
                failures.add(kind(&e), 1);
                first_error.get_or_insert_with(|| e.to_string());
            }
            Ok(None) => break,
            Err(_) => {
                failures.add("setup_timeout", 1);
                break;
            }
        }
    }
    drop(opened);
    let t_connect = t.elapsed().as_secs_f64();
    let connected = sockets.len();
    eprintln!(
        "idle: {connected} sockets open in {t_connect:.1} s ({:.0}/s); holding {} s",
        connected as f64 / t_connect.max(1e-9),
        o.hold
    );
    tokio::time::sleep(Duration::from_secs_f64(o.hold)).await;
    let rss_held = read_rss("while holding");
    let dropped = sockets.iter().filter(|s| !s.is_open()).count();

    let t = Instant::now();
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        stream::iter(sockets.iter().map(|s| s.close(Duration::from_secs(2))))
            .buffer_unordered(1000)
            .collect::<Vec<()>>(),
    )
    .await;
    drop(sockets);
    let t_close = t.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_after = read_rss("after closing");

    let per_socket = match (rss_before, rss_held) {
        (Some(b), Some(h)) if connected > 0 => Some((h as f64 - b as f64) / connected as f64),
        _ => None,
    };
    let ok = failures.total() == 0 && dropped == 0;
    let mib = |v: Option<u64>| {
        v.map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
            .unwrap_or_else(|| "n/a".into())
    };
    let mut h = String::new();
    let _ = writeln!(h, "natter-bench idle — {}", ctx.url);
    let _ = writeln!(
        h,
        "  {} sockets requested on {users_n} users ({} per user), held {} s; fd limit {fd_limit}",
        o.sockets, o.per_user, o.hold
    );
    let _ = writeln!(
        h,
        "  setup (untimed): users {t_users:.1} s; connect {t_connect:.1} s ({:.0} sockets/s); close {t_close:.1} s",
        connected as f64 / t_connect.max(1e-9)
    );
    let _ = writeln!(
        h,
        "  open {connected}, dropped by the server while idle {dropped}, connect failures: {}",
        failures.text()
    );
    if let Some(e) = &first_error {
        let _ = writeln!(h, "  first connect error: {e}");
    }
    let _ = writeln!(
        h,
        "  server RSS: before {}, holding {}, after closing {}",
        mib(rss_before),
        mib(rss_held),
        mib(rss_after)
    );
    let _ = writeln!(
        h,
        "  RSS per idle socket: {}",
        per_socket
            .map(|b| format!("{:.1} KiB ({b:.0} bytes)", b / 1024.0))
            .unwrap_or_else(|| "n/a (pass --server-pid)".into())
    );
    let _ = write!(h, "  RESULT: {}", if ok { "ok" } else { "FAILED" });
    let json = json!({
        "scenario": "idle",
        "url": ctx.url,
        "sockets": o.sockets,
        "users": users_n,
        "hold_s": o.hold,
        "connected": connected,
        "dropped": dropped,
        "connect_failures": failures.json(),
        "connect_s": t_connect,
        "connect_per_s": connected as f64 / t_connect.max(1e-9),
        "rss_bytes": { "before": rss_before, "holding": rss_held, "after_close": rss_after },
        "rss_per_socket_bytes": per_socket.map(|b| b.round()),
        "fd_limit": fd_limit,
        "ok": ok,
    });
    Ok(Report { human: h, json, ok })
}
