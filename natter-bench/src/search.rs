//! `search`: full-text search in one big room (issue 11). Setup fills a
//! direct room with `--messages` messages over Socket.IO (untimed; the server
//! needs its load-test send limit); then `--rounds` rounds of searches, one
//! at a time over `GET /api/v1/search`, each round one query of every kind:
//! a one-letter prefix nearly every message has, a word one old message has,
//! a word in 1 % of them, two words, a word no message has — all by a member
//! of the room — and the one-letter prefix by a user in another room, whose
//! search must walk every hit of the big room to find none of its own (the
//! case the server's time budget is for). Search is a Natter extension.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use crate::Ctx;
use crate::api::User;
use crate::stats::{self, Counts, Latency, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Messages in the big room.
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Rounds of searches (each one query of every kind).
    #[arg(long, default_value_t = 60)]
    pub rounds: usize,
    /// Sends in flight while filling the room.
    #[arg(long, default_value_t = 64)]
    pub fill_inflight: usize,
    /// The server's process id, to report its CPU time during the searches.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// The member's queries: (name in the report, query string).
const MEMBER_QUERIES: [(&str, &str); 5] = [
    ("prefix 'a'", "q=a"),
    ("rare word", "q=needle"),
    ("1 % word", "q=zeta42"),
    ("two words", "q=plan+zeta7"),
    ("no match", "q=nothing"),
];

/// The text of the room's `i`-th message (from 1): nearly every one has a
/// word starting with "a" (5,003 different ones); the 1,000th alone has
/// "needle"; `zeta42` is in one message in 101; none has "nothing".
fn text(i: u64) -> String {
    if i == 1000 {
        "the needle is here".to_owned()
    } else {
        format!(
            "message {i} about the a{} plan and zeta{}",
            i % 5003,
            i % 101
        )
    }
}

pub async fn run(ctx: &Ctx, o: &Opts) -> Result<Report> {
    if o.messages < 1000 || o.rounds == 0 {
        bail!("--messages must be at least 1000 and --rounds at least 1");
    }
    eprintln!(
        "search: filling a room with {} messages on {}",
        o.messages, ctx.url
    );
    let t = Instant::now();
    let users = ctx.api.users(&ctx.prefix, "s", 4).await?;
    let [alice, bob, carol, dave] = <[User; 4]>::try_from(users).expect("four users");
    let big = ctx.api.open_direct(&alice, &bob).await?;
    let small = ctx.api.open_direct(&carol, &dave).await?;
    fill(ctx, &alice, &bob, &big, o.messages, o.fill_inflight).await?;
    fill(ctx, &carol, &dave, &small, 10, 1).await?;
    let t_fill = t.elapsed().as_secs_f64();
    eprintln!("search: filled in {t_fill:.1} s; searching");

    let mut member = Latency::default();
    let mut kinds: Vec<Latency> = vec![Latency::default(); MEMBER_QUERIES.len()];
    let mut outsider = Latency::default();
    let mut errors = Counts::default();
    let mut outsider_errors = Counts::default();
    let (from, cpu_from) = (Instant::now(), stats::cpu_seconds(o.server_pid));
    for _ in 0..o.rounds {
        for ((_, query), kind) in MEMBER_QUERIES.iter().zip(kinds.iter_mut()) {
            let (took, outcome) = search(ctx, &alice, query).await?;
            kind.record(took);
            member.record(took);
            if let Some(code) = outcome {
                errors.add(&code, 1);
            }
        }
        let (took, outcome) = search(ctx, &carol, "q=a").await?;
        outsider.record(took);
        if let Some(code) = outcome {
            outsider_errors.add(&code, 1);
        }
    }
    let elapsed = from.elapsed().as_secs_f64();
    let server_cpu = match (cpu_from, stats::cpu_seconds(o.server_pid)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };

    let ok = errors.total() == 0 && member.count() > 0;
    let mut human = vec![
        format!(
            "search: {} messages in the room, {} rounds, setup {t_fill:.1} s, searches {elapsed:.1} s{}",
            o.messages,
            o.rounds,
            server_cpu.map_or(String::new(), |c| format!(", server CPU {c:.2} s"))
        ),
        member.line("member, all"),
    ];
    for ((name, _), kind) in MEMBER_QUERIES.iter().zip(&kinds) {
        human.push(kind.line(name));
    }
    human.push(outsider.line("outsider 'a'"));
    human.push(format!("  member errors: {}", errors.text()));
    human.push(format!(
        "  outsider errors (search_timeout is the budget at work): {}",
        outsider_errors.text()
    ));
    let json = json!({
        "scenario": "search",
        "ok": ok,
        "messages": o.messages,
        "rounds": o.rounds,
        "setup_s": t_fill,
        "server_cpu_s": server_cpu,
        "member_us": member.json(),
        "kinds_us": MEMBER_QUERIES.iter().zip(&kinds).map(|((name, _), k)| json!({"kind": name, "latency": k.json()})).collect::<Vec<_>>(),
        "outsider_us": outsider.json(),
        "errors": errors.json(),
        "outsider_errors": outsider_errors.json(),
    });
    Ok(Report {
        human: human.join("\n"),
        json,
        ok,
    })
}

/// One search as `user`: its latency (µs) and the error code, if any.
async fn search(ctx: &Ctx, user: &User, query: &str) -> Result<(u64, Option<String>)> {
    let t = Instant::now();
    let (status, body) = ctx
        .api
        .get(&format!("/api/v1/search?{query}"), &user.token)
        .await?;
    let took = t.elapsed().as_micros() as u64;
    let outcome = match (status, body["messages"].is_array()) {
        (200, true) => None,
        _ => Some(
            body["error"]["code"]
                .as_str()
                .map_or_else(|| format!("http_{status}"), str::to_owned),
        ),
    };
    Ok((took, outcome))
}

/// Sends `n` messages into `rid`, alternately from `a` and `b`, `inflight`
/// at a time; fails on any refusal.
async fn fill(ctx: &Ctx, a: &User, b: &User, rid: &str, n: u64, inflight: usize) -> Result<()> {
    let (sa, mut ea) = ctx.socket(&a.token, 0).await?;
    let (sb, mut eb) = ctx.socket(&b.token, 1).await?;
    // Every message is broadcast back to both: read and forget.
    let drain = tokio::spawn(async move {
        loop {
            tokio::select! {
                e = ea.recv() => if e.is_none() { break },
                e = eb.recv() => if e.is_none() { break },
            }
        }
    });
    let sends = stream::iter(1..=n)
        .map(|i| {
            let socket = if i % 2 == 0 { &sa } else { &sb };
            let payload = json!({"rid": rid, "message": text(i), "client_id": format!("fill-{i}")});
            async move {
                let ack: Value = socket
                    .call("outgoing", &payload, Duration::from_secs(30))
                    .await
                    .with_context(|| format!("outgoing #{i}"))?;
                if ack["ok"] != Value::Bool(true) {
                    bail!(
                        "outgoing #{i}: {ack} (start the server with bench/lib.sh's send limits)"
                    );
                }
                Ok(())
            }
        })
        .buffer_unordered(inflight.max(1));
    let failed = std::pin::pin!(sends.filter_map(|r| async move { r.err() }))
        .next()
        .await;
    sa.close(Duration::from_secs(2)).await;
    sb.close(Duration::from_secs(2)).await;
    drain.abort();
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
