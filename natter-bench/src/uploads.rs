//! `uploads`: what a big attachment costs (issue 14). Two users share a
//! direct room; one uploads `--count` files of `--size-mb` MiB (random bytes:
//! nothing to decode, the streaming path alone), `--concurrency` at a time,
//! while the server's resident memory is sampled every 5 ms from
//! `/proc/PID/status`. Reports the throughput, each upload's latency, the
//! server's memory before and at its peak, and its CPU per upload; then
//! checks one file downloaded back by the other member, byte for byte.
//! Attachments are a Natter extension.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures_util::{StreamExt, stream};
use serde_json::json;

use crate::Ctx;
use crate::api::User;
use crate::idle::rss;
use crate::stats::{self, Latency, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Size of each file, in MiB.
    #[arg(long, default_value_t = 10)]
    pub size_mb: u64,
    /// Files uploaded (after one untimed warm-up upload).
    #[arg(long, default_value_t = 20)]
    pub count: usize,
    /// Uploads in flight at once (the server allows 3 per user).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// The server's process id: its memory and CPU are reported with it.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// `len` bytes that no compressor or deduplication shortens (xorshift).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

const MIB: f64 = 1024.0 * 1024.0;

pub async fn run(ctx: &Ctx, o: &Opts) -> Result<Report> {
    if o.count == 0 || o.size_mb == 0 || o.concurrency == 0 {
        bail!("--count, --size-mb and --concurrency must be at least 1");
    }
    let size = (o.size_mb * 1024 * 1024) as usize;
    let users = ctx.api.users(&ctx.prefix, "u", 2).await?;
    let [ann, bob] = <[User; 2]>::try_from(users).expect("two users");
    let rid = ctx.api.open_direct(&ann, &bob).await?;
    // Different bytes per file: the server keeps equal files once.
    let files: Vec<Vec<u8>> = (0..=o.count)
        .map(|i| noise(size, 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1)))
        .collect();

    // Warm-up: the first upload creates the file store's folders and
    // connections; what is measured is the steady cost.
    let (status, body) = ctx
        .api
        .upload(&rid, "warmup.bin", files[0].clone(), &ann.token)
        .await?;
    if status != 201 {
        bail!("warm-up upload: {status} {body} (is --max-upload-bytes at least {size}?)");
    }

    let before = o.server_pid.map(rss).transpose()?;
    let peak = Arc::new(AtomicU64::new(before.unwrap_or(0)));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = o.server_pid.map(|pid| {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(now) = rss(pid) {
                    peak.fetch_max(now, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    });

    let (started, cpu_from) = (Instant::now(), stats::cpu_seconds(o.server_pid));
    let results: Vec<Result<(Duration, serde_json::Value)>> =
        stream::iter(files[1..].iter().enumerate())
            .map(|(i, file)| {
                let (api, rid, token) = (&ctx.api, &rid, &ann.token);
                async move {
                    let t = Instant::now();
                    let (status, body) = api
                        .upload(rid, &format!("file-{i}.bin"), file.clone(), token)
                        .await?;
                    if status != 201 || body["size"] != json!(file.len()) {
                        bail!("upload {i}: {status} {body}");
                    }
                    Ok((t.elapsed(), body))
                }
            })
            .buffer_unordered(o.concurrency)
            .collect()
            .await;
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = match (cpu_from, stats::cpu_seconds(o.server_pid)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    sampling.store(false, Ordering::Relaxed);
    if let Some(sampler) = sampler {
        let _ = sampler.await;
    }

    let mut latency = Latency::default();
    let mut last = None;
    for result in results {
        let (took, body) = result?;
        latency.record(took.as_micros() as u64);
        last = Some(body);
    }
    let last = last.expect("at least one upload");

    // The other member fetches one back, once it is sent: the same bytes.
    let id = last["id"].as_str().unwrap_or_default();
    let index: usize = last["name"]
        .as_str()
        .and_then(|n| n.strip_prefix("file-")?.strip_suffix(".bin")?.parse().ok())
        .unwrap_or(0);
    let sent = ctx
        .api
        .send(
            &rid,
            &json!({"message": "", "attachments": [id]}),
            &ann.token,
        )
        .await?;
    if sent.0 != 201 {
        bail!("sending the attachment: {} {}", sent.0, sent.1);
    }
    let (status, bytes) = ctx
        .api
        .download(&format!("/api/v1/attachments/{id}"), &bob.token)
        .await?;
    let intact = status == 200 && bytes == files[index + 1];

    let mib = (size as f64 * o.count as f64) / MIB;
    let throughput = mib / elapsed;
    let peak = before.map(|_| peak.load(Ordering::Relaxed));
    let grew = match (before, peak) {
        (Some(b), Some(p)) => Some(p.saturating_sub(b)),
        _ => None,
    };
    let mut human = vec![
        format!(
            "uploads: {} files of {} MiB, {} at a time: {mib:.0} MiB in {elapsed:.2} s = {throughput:.1} MiB/s{}",
            o.count,
            o.size_mb,
            o.concurrency,
            server_cpu.map_or(String::new(), |c| format!(
                ", server CPU {c:.2} s ({:.0} ms per upload)",
                c * 1000.0 / o.count as f64
            )),
        ),
        latency.line("per upload"),
    ];
    if let (Some(b), Some(p), Some(g)) = (before, peak, grew) {
        human.push(format!(
            "  server RSS: {:.1} MiB before, {:.1} MiB at the peak (+{:.1} MiB while {} uploads of {} MiB were in flight)",
            b as f64 / MIB,
            p as f64 / MIB,
            g as f64 / MIB,
            o.concurrency,
            o.size_mb
        ));
    }
    human.push(format!(
        "  downloaded back by the other member: {}",
        if intact { "identical" } else { "DIFFERENT" }
    ));
    let json = json!({
        "scenario": "uploads",
        "ok": intact,
        "files": o.count,
        "size_mib": o.size_mb,
        "concurrency": o.concurrency,
        "seconds": elapsed,
        "mib_per_s": throughput,
        "latency_us": latency.json(),
        "server_cpu_s": server_cpu,
        "server_rss_before": before,
        "server_rss_peak": peak,
        "server_rss_growth": grew,
        "intact": intact,
    });
    Ok(Report {
        human: human.join("\n"),
        json,
        ok: intact,
    })
}
