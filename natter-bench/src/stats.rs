//! Latency histograms (microseconds) and the report every scenario returns.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// The process-wide time origin: timestamps embedded in messages are
/// microseconds since this instant (sender and receiver share the clock).
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
pub fn micros(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_micros() as u64
}

/// The instant `us` microseconds after [`epoch`].
pub fn instant(us: u64) -> Instant {
    epoch() + Duration::from_micros(us)
}

/// A latency histogram in microseconds (3 significant digits, up to an hour).
#[derive(Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"))
    }
}

impl Latency {
    pub fn record(&mut self, us: u64) {
        self.0.saturating_record(us.max(1));
    }

    pub fn record_between(&mut self, from: Instant, to: Instant) {
        self.record(to.saturating_duration_since(from).as_micros() as u64);
    }

    pub fn merge(&mut self, other: &Latency) {
        self.0.add(&other.0).expect("same bounds");
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    fn q(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }

    /// `{count, mean, p50, p90, p99, p999, max}` in microseconds.
    pub fn json(&self) -> Value {
        json!({
            "count": self.count(),
            "mean": if self.0.is_empty() { 0.0 } else { (self.0.mean() * 10.0).round() / 10.0 },
            "p50": self.q(0.50),
            "p90": self.q(0.90),
            "p99": self.q(0.99),
            "p999": self.q(0.999),
            "max": if self.0.is_empty() { 0 } else { self.0.max() },
        })
    }

    /// One human line: `name  n=…  p50 … p90 … p99 … p99.9 … max …` in ms.
    pub fn line(&self, name: &str) -> String {
        let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
        if self.0.is_empty() {
            return format!("  {name:<14} (no samples)");
        }
        format!(
            "  {name:<14} n={:<8} p50 {:>7} ms  p90 {:>7}  p99 {:>7}  p99.9 {:>7}  max {:>8}",
            self.count(),
            ms(self.q(0.5)),
            ms(self.q(0.9)),
            ms(self.q(0.99)),
            ms(self.q(0.999)),
            ms(self.0.max()),
        )
    }
}

/// Error codes (from acks) or failure kinds, counted.
#[derive(Default, Clone, Debug)]
pub struct Counts(pub BTreeMap<String, u64>);

impl Counts {
    pub fn add(&mut self, key: &str, n: u64) {
        if n > 0 {
            *self.0.entry(key.to_owned()).or_default() += n;
        }
    }

    pub fn merge(&mut self, other: &Counts) {
        for (k, v) in &other.0 {
            self.add(k, *v);
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn json(&self) -> Value {
        Value::Object(self.0.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
    }

    pub fn text(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        let mut s = String::new();
        for (k, v) in &self.0 {
            if !s.is_empty() {
                s.push_str(", ");
            }
            let _ = write!(s, "{k}: {v}");
        }
        s
    }
}

/// What a scenario hands back: a human summary, one JSON object, and whether
/// the run kept every promise (no loss, no duplicate, …).
pub struct Report {
    pub human: String,
    pub json: Value,
    pub ok: bool,
}

/// CPU time (user + system) a process has used, in seconds, from
/// `/proc/PID/stat` (`None`: this process).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) / ticks as f64)
}

/// CPU seconds used by the server (when its pid is known), by this load
/// generator and by each watched group of processes between two instants.
#[derive(Debug, Default, Clone)]
pub struct CpuUse {
    pub server: Option<f64>,
    pub bench: Option<f64>,
    /// Each `--cpu` watch, by label, in the order given.
    pub watched: Vec<(String, f64)>,
}

/// A group of processes whose CPU time is reported under one label
/// (`--cpu LABEL=PID[,PID…]` or `--cpu LABEL=@COMMAND`).
#[derive(Debug, Clone)]
pub struct Watch {
    pub label: String,
    pids: Pids,
}

#[derive(Debug, Clone)]
enum Pids {
    Fixed(Vec<u32>),
    /// A shell command printing pids (separated by spaces, commas or lines).
    Command(String),
}

impl Watch {
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
        let (label, pids) = spec
            .split_once('=')
            .filter(|(l, p)| !l.is_empty() && !p.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("--cpu wants LABEL=PID[,PID…] or LABEL=@COMMAND (got {spec})")
            })?;
        if label == "server" || label == "bench" {
            anyhow::bail!(
                "--cpu label {label} is taken (server: --server-pid; bench: natter-bench itself)"
            );
        }
        let pids = match pids.strip_prefix('@') {
            Some(cmd) => Pids::Command(cmd.to_owned()),
            None => Pids::Fixed(
                parse_pids(pids)
                    .ok_or_else(|| anyhow::anyhow!("--cpu {label}: not a list of pids: {pids}"))?,
            ),
        };
        Ok(Self {
            label: label.to_owned(),
            pids,
        })
    }

    fn pids(&self) -> Vec<u32> {
        match &self.pids {
            Pids::Fixed(p) => p.clone(),
            Pids::Command(cmd) => std::process::Command::new("sh")
                .args(["-c", cmd])
                .stderr(std::process::Stdio::inherit())
                .output()
                .ok()
                .and_then(|o| parse_pids(&String::from_utf8_lossy(&o.stdout)))
                .unwrap_or_default(),
        }
    }

    /// CPU seconds of each of the group's processes now.
    fn sample(&self) -> BTreeMap<u32, f64> {
        self.pids()
            .into_iter()
            .filter_map(|p| cpu_seconds(Some(p)).map(|c| (p, c)))
            .collect()
    }
}

fn parse_pids(s: &str) -> Option<Vec<u32>> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().ok())
        .collect()
}

/// CPU time a group used between two samples: a process present at the end
/// but not at the start began in between (all its time counts); one gone by
/// the end is left out (its last seconds are not known).
fn watched_delta(start: &BTreeMap<u32, f64>, end: &BTreeMap<u32, f64>) -> f64 {
    end.iter()
        .map(|(pid, c)| (c - start.get(pid).copied().unwrap_or(0.0)).max(0.0))
        .sum()
}

/// Samples CPU use at `from` and at `to` (sleeping in between).
pub async fn cpu_between(
    pid: Option<u32>,
    watches: Vec<Watch>,
    from: Instant,
    to: Instant,
) -> CpuUse {
    let sample = move |watches: Vec<Watch>| {
        tokio::task::spawn_blocking(move || {
            let w: Vec<_> = watches.iter().map(Watch::sample).collect();
            let s = pid.and_then(|p| cpu_seconds(Some(p)));
            let b = cpu_seconds(None);
            (watches, w, s, b)
        })
    };
    tokio::time::sleep_until(from.into()).await;
    let (watches, w0, s0, b0) = sample(watches).await.expect("sampling CPU");
    tokio::time::sleep_until(to.into()).await;
    let (watches, w1, s1, b1) = sample(watches).await.expect("sampling CPU");
    CpuUse {
        server: s0.zip(s1).map(|(a, b)| b - a),
        bench: b0.zip(b1).map(|(a, b)| b - a),
        watched: watches
            .iter()
            .zip(w0.iter().zip(&w1))
            .map(|(w, (a, b))| (w.label.clone(), watched_delta(a, b)))
            .collect(),
    }
}
