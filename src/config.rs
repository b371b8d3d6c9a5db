//! Command line and environment configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "natter",
    version,
    about = "Natter: a self-hosted instant messenger server (web UI, Socket.IO, JSON API)",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand, `natter` serves with these options.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the chosen URL is printed on stdout).
    #[arg(long, env = "NATTER_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Directory for the SQLite database and the generated cookie secret (created mode 0700).
    #[arg(long, env = "NATTER_DATA_DIR", default_value = "./natter-data")]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://PATH`, or `postgres://USER@HOST/DB` for a cluster of nodes;
    /// default: natter.db inside the data directory.
    #[arg(long, env = "NATTER_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Redis URL (`redis://HOST:PORT`): fan out Socket.IO events through Redis so that
    /// several Natter nodes on one PostgreSQL database act as one. Without it, a node runs alone.
    #[arg(long, env = "NATTER_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of the Redis channels: nodes with the same prefix form one cluster.
    #[arg(long, env = "NATTER_REDIS_PREFIX", default_value = "natter")]
    pub redis_prefix: String,

    /// SQLite durability: `full` syncs every commit to disk before the ack
    /// (survives power loss); `normal` survives a process crash but may lose the
    /// last commits on power loss.
    #[arg(long, env = "NATTER_SQLITE_SYNCHRONOUS", value_enum, default_value_t = Synchronous::Full)]
    pub sqlite_synchronous: Synchronous,

    /// Log format on stderr.
    #[arg(long, env = "NATTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Longest message, in characters after trimming.
    #[arg(long, env = "NATTER_MAX_MESSAGE_CHARS", default_value_t = 4000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_message_chars: u32,

    /// Largest Socket.IO packet and JSON body, in bytes; larger frames close the connection.
    #[arg(long, env = "NATTER_MAX_PAYLOAD", default_value_t = 65536, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_payload: u32,

    /// Packets that may wait in one socket's send queue. A socket that falls this
    /// far behind misses broadcasts (its client sees a `seq` gap and calls `sync`).
    #[arg(long, env = "NATTER_SOCKET_BUFFER", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..))]
    pub socket_buffer: u32,

    /// Largest history page a client may ask for.
    #[arg(long, env = "NATTER_HISTORY_PAGE_MAX", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub history_page_max: u32,

    /// Sustained messages per second per user.
    #[arg(long, env = "NATTER_SEND_RATE", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub send_rate: u32,

    /// Messages a user may send in a burst above the sustained rate.
    #[arg(long, env = "NATTER_SEND_BURST", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub send_burst: u32,

    /// Argon2id memory cost in KiB (default 19456, OWASP's); lower only for load tests.
    #[arg(long, env = "NATTER_ARGON2_MEMORY_KIB", default_value_t = 19456, value_parser = clap::value_parser!(u32).range(8..))]
    pub argon2_memory_kib: u32,

    /// Argon2id passes (default 2).
    #[arg(long, env = "NATTER_ARGON2_ITERATIONS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub argon2_iterations: u32,

    /// Mark cookies `Secure` even when no proxy says the request came over https.
    #[arg(long, env = "NATTER_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// Serve Prometheus `/metrics` on this separate address (e.g. `127.0.0.1:9464`);
    /// off by default. Whoever reaches it sees traffic figures, so keep it private.
    #[arg(long, env = "NATTER_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Synchronous {
    Full,
    Normal,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
