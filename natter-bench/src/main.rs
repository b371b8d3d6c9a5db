//! natter-bench: a load generator for any server that speaks the Natter wire
//! contract (JSON API for setup, Socket.IO v4 for traffic): Natter itself and
//! the reference peers in `shared/peers`. See `docs/benchmarks.md`.

mod api;
mod groups;
mod idle;
mod load;
mod pairs;
mod reconnect;
mod search;
mod sio;
mod stats;
mod traffic;
mod uploads;

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "natter-bench",
    version,
    about = "Load generator for servers speaking the Natter wire contract (JSON API + Socket.IO v4)"
)]
struct Cli {
    /// Base URL of the server under test (http only). `pairs` takes several
    /// (repeat `--url` or separate them with commas), one per node of a cluster:
    /// setup goes to the first, and the two sockets of each room connect to
    /// different nodes, so that every message crosses between nodes.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    url: Vec<String>,
    /// Also print one JSON line with every result (the last line of stdout).
    #[arg(long, global = true)]
    json: bool,
    /// HTTP requests in flight at most during setup.
    #[arg(long, global = true, default_value_t = 32)]
    setup_concurrency: usize,
    /// Socket connects (with their join) in flight at most during setup.
    #[arg(long, global = true, default_value_t = 64)]
    connect_concurrency: usize,
    /// Give up when the untimed setup takes longer than this (seconds).
    #[arg(long, global = true, default_value_t = 300.0)]
    setup_timeout: f64,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Direct rooms of two users, both sending: throughput, latency, integrity.
    Pairs(pairs::Opts),
    /// Group rooms: one member sends, every other member receives (fan-out).
    Groups(groups::Opts),
    /// Many authenticated idle sockets: server memory per socket.
    Idle(idle::Opts),
    /// One side keeps dropping its connection, reconnects and calls `sync`.
    Reconnect(reconnect::Opts),
    /// Full-text search in a room of 200,000 messages: latency per kind of query.
    Search(search::Opts),
    /// Uploads of big files (attachments): throughput and the server's memory while streaming.
    Uploads(uploads::Opts),
}

/// What every scenario needs: the server's API, where its sockets are, the run's name prefix.
pub struct Ctx {
    pub api: api::Api,
    /// The first node's sockets (the only node unless `--url` names several).
    pub target: sio::Target,
    /// Every node's sockets, `targets[0] == target`.
    pub targets: Vec<sio::Target>,
    /// The first node's base URL, where setup goes.
    pub url: String,
    /// Every node's base URL.
    pub urls: Vec<String>,
    pub prefix: String,
    pub connect_concurrency: usize,
    pub setup_timeout: Duration,
    /// Local addresses to spread sockets over (loopback has ~28k ports per source address).
    pub bind_ips: Vec<IpAddr>,
    /// `join-chat` calls that setup had to repeat (see [`Ctx::joined_socket`]).
    pub join_retries: AtomicU64,
    pub first_join_retry: Mutex<Option<String>>,
}

/// A connected socket and the events it receives.
pub type Connected = (
    sio::Socket,
    tokio::sync::mpsc::UnboundedReceiver<sio::Event>,
);

impl Ctx {
    /// The local address for the `i`-th socket, when several are in use.
    pub fn bind(&self, i: usize) -> Option<IpAddr> {
        if self.bind_ips.len() <= 1 {
            None
        } else {
            Some(self.bind_ips[i % self.bind_ips.len()])
        }
    }

    /// Opens the `i`-th socket authenticated with `token` (on the first node).
    pub async fn socket(&self, token: &str, i: usize) -> Result<Connected, sio::ConnectError> {
        self.socket_on(0, token, i).await
    }

    /// Opens the `i`-th socket authenticated with `token` on node `node`
    /// (an index into [`Ctx::targets`]).
    pub async fn socket_on(
        &self,
        node: usize,
        token: &str,
        i: usize,
    ) -> Result<Connected, sio::ConnectError> {
        sio::connect(
            &self.targets[node],
            &json!({ "token": token }),
            self.bind(i),
        )
        .await
    }

    /// The nodes, as the reports name them: the URL, or every URL joined by ", ".
    pub fn url_text(&self) -> String {
        self.urls.join(", ")
    }

    /// Opens the `i`-th socket and joins `rid`, failing unless the ack is `ok`.
    /// A `join-chat` left unanswered for 5 s is sent again (at most 3 times) and
    /// counted in [`Ctx::join_retries`]: setup should not die of a server that
    /// drops an event now and then, but the report must say that it did.
    pub async fn joined_socket(&self, token: &str, rid: &str, i: usize) -> Result<Connected> {
        self.joined_socket_on(0, token, rid, i).await
    }

    /// [`Ctx::joined_socket`] on node `node` (an index into [`Ctx::targets`]).
    pub async fn joined_socket_on(
        &self,
        node: usize,
        token: &str,
        rid: &str,
        i: usize,
    ) -> Result<Connected> {
        let (socket, events) = self.socket_on(node, token, i).await?;
        let mut tries = 0;
        let ack = loop {
            tries += 1;
            match socket
                .call("join-chat", &json!({ "rid": rid }), Duration::from_secs(5))
                .await
            {
                Ok(ack) => break ack,
                Err(sio::CallError::Timeout) if tries < 4 => {
                    self.join_retries.fetch_add(1, Ordering::Relaxed);
                    let mut first = self.first_join_retry.lock().expect("lock");
                    first.get_or_insert_with(|| {
                        format!("join-chat {{rid: {rid}}} on sid {}", socket.sid)
                    });
                }
                Err(e) => anyhow::bail!("join-chat {rid}: {e} (tried {tries} times)"),
            }
        };
        if ack.get("ok") != Some(&Value::Bool(true)) {
            anyhow::bail!("join-chat {rid}: {ack}");
        }
        Ok((socket, events))
    }

    /// Setup's `join-chat` retries, as a line for the human report (empty when none).
    pub fn join_retry_note(&self) -> Option<String> {
        let n = self.join_retries.load(Ordering::Relaxed);
        (n > 0).then(|| {
            format!(
                "WARNING: the server left {n} setup join-chat(s) unanswered for 5 s (sent again; first: {})",
                self.first_join_retry
                    .lock()
                    .expect("lock")
                    .clone()
                    .unwrap_or_default()
            )
        })
    }

    /// Spreads sockets over 127.0.0.x source addresses when more than a
    /// single address's ephemeral ports are needed (loopback servers only).
    fn plan_sources(&mut self, sockets: usize) {
        const PER_SOURCE: usize = 20_000;
        let loopback = self
            .targets
            .iter()
            .all(|t| t.addr.ip().is_loopback() && t.addr.is_ipv4());
        if sockets > PER_SOURCE && loopback {
            let n = sockets.div_ceil(PER_SOURCE).min(250);
            self.bind_ips = (1..=n as u8)
                .map(|i| IpAddr::from([127, 0, 0, i]))
                .collect();
        }
    }
}

/// Raises the soft open-file limit to the hard one; returns the limit in force.
fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024)
}

async fn run(cli: Cli) -> Result<stats::Report> {
    stats::epoch();
    let fd_limit = raise_fd_limit();
    let bases = cli
        .url
        .iter()
        .map(|u| sio::url_lite::parse(u))
        .collect::<Result<Vec<_>>>()?;
    let base = &bases[0];
    if bases.len() > 1 && !matches!(cli.scenario, Scenario::Pairs(_)) {
        anyhow::bail!("several --url (nodes of a cluster) are supported by `pairs` only");
    }
    let targets: Vec<sio::Target> = bases
        .iter()
        .map(|b| sio::Target::from_base(b, Duration::from_secs(30)))
        .collect();
    let mut ctx = Ctx {
        api: api::Api::new(&base.http, cli.setup_concurrency)?,
        target: targets[0].clone(),
        targets,
        url: base.http.clone(),
        urls: bases.iter().map(|b| b.http.clone()).collect(),
        prefix: api::run_prefix(),
        connect_concurrency: cli.connect_concurrency.max(1),
        setup_timeout: Duration::from_secs_f64(cli.setup_timeout),
        bind_ips: Vec::new(),
        join_retries: AtomicU64::new(0),
        first_join_retry: Mutex::new(None),
    };
    let sockets = match &cli.scenario {
        Scenario::Pairs(o) => o.rooms * 2,
        Scenario::Groups(o) => o.groups * o.members,
        Scenario::Idle(o) => o.sockets,
        Scenario::Reconnect(o) => o.rooms * 2,
        Scenario::Search(_) => 4,
        Scenario::Uploads(_) => 0,
    };
    if sockets as u64 + 64 > fd_limit {
        eprintln!(
            "natter-bench: warning: {sockets} sockets need more file descriptors than the limit \
             of {fd_limit} (raise the hard limit, e.g. `ulimit -Hn 1048576` as root); \
             connections past it will fail"
        );
    }
    ctx.plan_sources(sockets);
    match &cli.scenario {
        Scenario::Pairs(o) => pairs::run(&ctx, o).await,
        Scenario::Groups(o) => groups::run(&ctx, o).await,
        Scenario::Idle(o) => idle::run(&ctx, o, fd_limit).await,
        Scenario::Reconnect(o) => reconnect::run(&ctx, o).await,
        Scenario::Search(o) => search::run(&ctx, o).await,
        Scenario::Uploads(o) => uploads::run(&ctx, o).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_out = cli.json;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(run(cli));
    // Sockets still open are dropped with the runtime; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(report) => {
            println!("{}", report.human);
            if json_out {
                println!("{}", report.json);
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("natter-bench: error: {e:#}");
            if json_out {
                println!("{}", json!({ "ok": false, "error": format!("{e:#}") }));
            }
            ExitCode::from(2)
        }
    }
}
