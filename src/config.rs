//! Command line and environment configuration.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

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
    /// Run the server (the default). Boxed: its many flags would make every
    /// command as big as it.
    Serve(Box<ServeArgs>),
    /// Manage accounts: create, reset a password, disable.
    #[command(subcommand)]
    User(UserCommand),
    /// Write a consistent copy of the SQLite database to FILE, even while a server runs.
    Backup(BackupArgs),
    /// Write a room's messages, in `seq` order, as JSON.
    Export(ExportArgs),
    /// Apply pending database migrations and exit (`serve` also applies them at start).
    Migrate(StoreArgs),
}

/// Where the database is: the same flags (and environment) as `serve`, so an
/// operations command opens the store the server uses.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory for the SQLite database, the generated cookie secret and the lock file (created mode 0700).
    #[arg(long, env = "NATTER_DATA_DIR", default_value = "./natter-data")]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://PATH`, or `postgres://USER@HOST/DB` for a cluster of nodes;
    /// default: natter.db inside the data directory.
    #[arg(long, env = "NATTER_DATABASE_URL")]
    pub database_url: Option<String>,

    /// PostgreSQL: connections this process keeps open at most.
    #[arg(long, env = "NATTER_DATABASE_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool_size: u32,

    /// PostgreSQL: how long a request waits for a connection (retrying the
    /// database while it is down) before it is answered `unavailable`.
    #[arg(long, env = "NATTER_DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub database_acquire_timeout_ms: u64,
}

/// The Argon2id cost of password hashes written by `natter user`.
#[derive(Debug, Clone, Args)]
pub struct HashCostArgs {
    /// Argon2id memory cost in KiB (default 19456, OWASP's); lower only for load tests.
    #[arg(long, env = "NATTER_ARGON2_MEMORY_KIB", default_value_t = 19456, value_parser = clap::value_parser!(u32).range(8..))]
    pub argon2_memory_kib: u32,

    /// Argon2id passes (default 2).
    #[arg(long, env = "NATTER_ARGON2_ITERATIONS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub argon2_iterations: u32,
}

/// Where a new password comes from: never a command-line value (`ps` shows those).
#[derive(Debug, Clone, Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of this file; without it, from the
    /// first line of standard input.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account (the registration rules apply).
    Create {
        /// The new username (case-folded; the registration rule applies).
        #[arg(long)]
        username: String,
        /// The new user's email address.
        #[arg(long)]
        email: String,
        /// Make the account an admin (who may make invitations).
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        cost: HashCostArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a new password and end all the user's sessions.
    ResetPassword {
        /// The user's email address.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        cost: HashCostArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Refuse the user's logins and end all their sessions.
    Disable {
        /// The user's email address.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The copy to write; it must not exist yet. Attachments' files are
    /// copied beside it, into `FILE.files/`.
    pub file: PathBuf,
    /// Where the server keeps attachments' files: default DATA_DIR/files.
    #[arg(long, env = "NATTER_FILES_DIR")]
    pub files_dir: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The room id (base64url: it may start with `-`).
    #[arg(long, allow_hyphen_values = true)]
    pub room: String,
    /// Write to this file (created mode 0600) instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also copy the room's attachments into this new directory, each as
    /// `DIR/ATTACHMENT_ID/NAME`.
    #[arg(long)]
    pub files: Option<PathBuf>,
    /// Where the server keeps attachments' files: default DATA_DIR/files.
    #[arg(long, env = "NATTER_FILES_DIR")]
    pub files_dir: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the chosen URL is printed on stdout).
    #[arg(long, env = "NATTER_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Where the database is, and how it is reached.
    #[command(flatten)]
    pub store: StoreArgs,

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

    /// Who may register: `open` (anyone who reaches the server), `invite`
    /// (with an invitation only), `closed` (accounts by `natter user create`).
    /// The first account may always be made; it is the server's admin.
    #[arg(long, env = "NATTER_REGISTRATION", value_enum, default_value_t = Registration::Open)]
    pub registration: Registration,

    /// Let every member make invitations, not only admins.
    #[arg(long, env = "NATTER_MEMBERS_MAY_INVITE")]
    pub members_may_invite: bool,

    /// Whom a group owner adds without asking: `direct` (anyone who does not
    /// block them; a person who left the group is asked), or `consent` (as
    /// `direct`, and people who share no room with the owner are asked too).
    #[arg(long, env = "NATTER_GROUP_ADDS", value_enum, default_value_t = GroupAdds::Direct)]
    pub group_adds: GroupAdds,

    /// What happens to the messages of a deleted account: `keep` (shown as
    /// "deleted user #id") or `remove` (deleted, as their sender would).
    #[arg(long, env = "NATTER_DELETED_ACCOUNT_MESSAGES", value_enum, default_value_t = DeletedAccountMessages::Keep)]
    pub deleted_account_messages: DeletedAccountMessages,

    /// Largest attachment, in bytes (the upload is refused with 413 `too_large`
    /// the moment it passes this; nothing of it is kept).
    #[arg(long, env = "NATTER_MAX_UPLOAD_BYTES", default_value_t = 25 << 20, value_parser = clap::value_parser!(u64).range(1..=(1 << 40)))]
    pub max_upload_bytes: u64,

    /// Largest image, in pixels (width × height), read from its header
    /// before it is decoded: a larger one is refused (decompression bombs).
    #[arg(long, env = "NATTER_MAX_IMAGE_PIXELS", default_value_t = 40_000_000, value_parser = clap::value_parser!(u64).range(1..=400_000_000))]
    pub max_image_pixels: u64,

    /// Seconds an upload may send nothing before it is dropped (a client
    /// that trickles holds one of its user's few upload places meanwhile).
    #[arg(long, env = "NATTER_UPLOAD_IDLE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upload_idle_secs: u64,

    /// Seconds an upload may take in all, however it trickles.
    #[arg(long, env = "NATTER_UPLOAD_DEADLINE_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub upload_deadline_secs: u64,

    /// Where attachments' files are kept: default DATA_DIR/files.
    #[arg(long, env = "NATTER_FILES_DIR")]
    pub files_dir: Option<PathBuf>,

    /// Keep attachments in this S3 bucket instead (a cluster's nodes must
    /// share one).
    #[arg(long, env = "NATTER_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// The S3 service's URL (e.g. `http://127.0.0.1:9000` for MinIO or
    /// another S3-compatible server); default AWS.
    #[arg(long, env = "NATTER_S3_ENDPOINT", requires = "s3_bucket")]
    pub s3_endpoint: Option<String>,

    /// The S3 access key id (better given in the environment than on the
    /// command line, where other users of the machine can read it). Without
    /// it, the AWS environment's own credentials (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, or an instance role).
    #[arg(
        long,
        env = "NATTER_S3_ACCESS_KEY_ID",
        hide_env_values = true,
        requires = "s3_bucket"
    )]
    pub s3_access_key_id: Option<String>,

    /// The S3 secret access key (likewise).
    #[arg(
        long,
        env = "NATTER_S3_SECRET_ACCESS_KEY",
        hide_env_values = true,
        requires = "s3_bucket"
    )]
    pub s3_secret_access_key: Option<String>,

    /// The bucket's region.
    #[arg(long, env = "NATTER_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// Prefix of the objects' names in the bucket.
    #[arg(long, env = "NATTER_S3_PREFIX", default_value = "natter/")]
    pub s3_prefix: String,

    /// Seconds a kept file must be old before the sweep may forget it when
    /// no attachment names it (an upload writes its file just before its
    /// row). Lower only in tests.
    #[arg(long, env = "NATTER_FILE_SWEEP_GRACE_SECS", default_value_t = 600)]
    pub file_sweep_grace_secs: u64,

    /// Packets that may wait in one socket's send queue. A socket that falls this
    /// far behind misses broadcasts and is closed at its next ping (its client
    /// reconnects and calls `sync`).
    #[arg(long, env = "NATTER_SOCKET_BUFFER", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..))]
    pub socket_buffer: u32,

    /// Bytes of messages that may wait in one socket's send queue. A socket
    /// that has this many unread is treated as one whose queue is full: it misses
    /// broadcasts, and a request whose answer cannot be queued closes it.
    #[arg(long, env = "NATTER_SOCKET_BUFFER_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(4096..))]
    pub socket_buffer_bytes: u32,

    /// Largest history page a client may ask for.
    #[arg(long, env = "NATTER_HISTORY_PAGE_MAX", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub history_page_max: u32,

    /// Sustained messages per second per user.
    #[arg(long, env = "NATTER_SEND_RATE", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub send_rate: u32,

    /// Messages a user may send in a burst above the sustained rate.
    #[arg(long, env = "NATTER_SEND_BURST", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub send_burst: u32,

    /// Other actions per second per user (joins, reads, typing, syncs, history,
    /// edits, reactions, group changes), with a burst of five seconds' worth.
    #[arg(long, env = "NATTER_EVENT_RATE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub event_rate: u32,

    /// People a user may look up by email per hour (new chats, group members);
    /// the budget refills steadily.
    #[arg(long, env = "NATTER_LOOKUPS_PER_HOUR", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub lookups_per_hour: u32,

    /// Times per hour one user may put the same person into a group.
    #[arg(long, env = "NATTER_ADDS_PER_PERSON_PER_HOUR", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub adds_per_person_per_hour: u32,

    /// Milliseconds one search may take, waiting for a database connection
    /// included; past it the database stops the query and the client gets
    /// `search_timeout`.
    #[arg(long, env = "NATTER_SEARCH_TIMEOUT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub search_timeout_ms: u64,

    /// Milliseconds a send may wait for its commit and announcement; past it
    /// the sender is answered `unavailable` and sends again with its `client_id`.
    #[arg(long, env = "NATTER_SEND_DEADLINE_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub send_deadline_ms: u64,

    /// Sustained searches per second per user.
    #[arg(long, env = "NATTER_SEARCH_RATE", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub search_rate: u32,

    /// Searches a user may make in a burst above the sustained rate.
    #[arg(long, env = "NATTER_SEARCH_BURST", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub search_burst: u32,

    /// The cost of the password hashes this server writes.
    #[command(flatten)]
    pub cost: HashCostArgs,

    /// Mark cookies `Secure` even when no proxy says the request came over https.
    #[arg(long, env = "NATTER_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// Login (and, separately, registration) attempts per minute for one account (email).
    #[arg(long, env = "NATTER_AUTH_ATTEMPTS_PER_ACCOUNT", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_attempts_per_account: u32,

    /// Login (and, separately, registration) attempts per minute from one client
    /// address (an IPv4 address or an IPv6 /64).
    #[arg(long, env = "NATTER_AUTH_ATTEMPTS_PER_ADDRESS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_attempts_per_address: u32,

    /// Proxies (addresses or networks, comma-separated) whose `X-Forwarded-For`
    /// names the client. Default: none, the TCP peer is the client.
    #[arg(long, env = "NATTER_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_trusted)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Live Socket.IO connections one user may hold on this node.
    #[arg(long, env = "NATTER_MAX_CONNECTIONS_PER_USER", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_user: u32,

    /// Live Socket.IO connections this node accepts in total.
    #[arg(long, env = "NATTER_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Open connections one client address (an IPv4 address or an IPv6 /64) may hold on
    /// this node. A newcomer over it takes the place of the address's oldest idle
    /// connection, or is refused when all are busy. Connections from --trusted-proxies are
    /// not counted: the proxy must cap per client itself.
    #[arg(long, env = "NATTER_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: u32,

    /// File descriptors kept from connections for the database, Redis, logs and the
    /// metrics listener: open connections are capped at the open-file limit less this.
    #[arg(long, env = "NATTER_FD_RESERVE", default_value_t = 128, value_parser = clap::value_parser!(u32).range(16..))]
    pub fd_reserve: u32,

    /// Seconds a new Socket.IO transport may take to connect to the namespace
    /// (send its CONNECT packet and pass authentication) before it is closed.
    #[arg(long, env = "NATTER_CONNECT_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout_secs: u64,

    /// Seconds between Engine.IO pings.
    #[arg(long, env = "NATTER_PING_INTERVAL_SECS", default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ping_interval_secs: u64,

    /// Seconds a client has to answer a ping before it is dropped.
    #[arg(long, env = "NATTER_PING_TIMEOUT_SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ping_timeout_secs: u64,

    /// Seconds a connection may go without a request in flight: a new one to send its
    /// first request's headers, an idle keep-alive one (HTTP/1 or HTTP/2) to send the
    /// next; then it is closed.
    #[arg(long, env = "NATTER_HEADER_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_secs: u64,

    /// Seconds data we sent may go unread (unacknowledged by the peer) before
    /// the connection is aborted: how long a client that stopped reading is kept.
    #[arg(long, env = "NATTER_WRITE_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub write_timeout_secs: u64,

    /// A session unused for this long ends (`14d`; units `s`, `m`, `h`, `d`).
    /// Uses are recorded every 5 minutes at most (or a tenth of this, if shorter).
    #[arg(long, env = "NATTER_SESSION_IDLE", default_value = "14d", value_parser = parse_lifetime)]
    pub session_idle: Duration,

    /// A session this old ends, however much it is used (`90d`; units `s`, `m`, `h`, `d`).
    #[arg(long, env = "NATTER_SESSION_MAX_AGE", default_value = "90d", value_parser = parse_lifetime)]
    pub session_max_age: Duration,

    /// Serve Prometheus `/metrics` on this separate address (e.g. `127.0.0.1:9464`);
    /// off by default. Whoever reaches it sees traffic figures, so keep it private.
    #[arg(long, env = "NATTER_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Who runs this server, as push services read it (the VAPID `sub`): a
    /// `mailto:` or `https:` URL they may write to about its pushes.
    #[arg(long, env = "NATTER_PUSH_CONTACT", default_value = "mailto:admin@localhost", value_parser = parse_contact)]
    pub push_contact: String,

    /// Accept Web Push endpoints over plain http and on local or private
    /// addresses. For tests only: the server POSTs to every endpoint a user
    /// subscribes, so this would let any user make it call into its own network.
    #[arg(long, env = "NATTER_PUSH_ALLOW_HTTP")]
    pub push_allow_http: bool,

    /// Let outgoing webhooks go to loopback and private addresses (localhost,
    /// 10/8, 192.168/16…). Off: only hosts on the internet, since the server
    /// POSTs to every URL a user names (SSRF). For a receiver on the same
    /// host or network, and for tests.
    #[arg(long, env = "NATTER_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,

    /// Messages that may wait for their outgoing webhooks, per node, and
    /// deliveries pending at once (in flight or between retries); past it a
    /// new message reaches no webhook (counted in
    /// `natter_webhook_deliveries_total{outcome="dropped"}`).
    #[arg(long, env = "NATTER_WEBHOOK_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub webhook_queue: u32,

    /// How long one outgoing webhook request may take before it counts as failed.
    #[arg(long, env = "NATTER_WEBHOOK_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub webhook_timeout_secs: u64,

    /// Password reset by email: the SMTP server to send through, as
    /// `smtp://HOST:PORT` (plain), `smtp://USER:PASS@HOST:587?tls=required`
    /// (STARTTLS) or `smtps://USER:PASS@HOST:465` (TLS); best given in the
    /// environment, out of `ps`. Without it, resets are off. Needs
    /// --smtp-from and --public-url.
    #[arg(
        long,
        env = "NATTER_SMTP_URL",
        hide_env_values = true,
        requires = "smtp_from",
        requires = "public_url"
    )]
    pub smtp_url: Option<String>,

    /// The From address of the mails, e.g. `Natter <natter@example.org>`.
    #[arg(long, env = "NATTER_SMTP_FROM", requires = "smtp_url")]
    pub smtp_from: Option<String>,

    /// Seconds one mail may take to send, connecting included; then it is
    /// given up (and logged).
    #[arg(long, env = "NATTER_SMTP_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub smtp_timeout_secs: u64,

    /// Where people reach this server, e.g. `https://chat.example.org`: the
    /// base of the links it mails. Needed with --smtp-url.
    #[arg(long, env = "NATTER_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// How long a password reset link works (`30m`; units `s`, `m`, `h`,
    /// `d`; at most `1d`).
    #[arg(long, env = "NATTER_PASSWORD_RESET_LIFETIME", default_value = "30m", value_parser = parse_reset_lifetime)]
    pub password_reset_lifetime: Duration,
}

/// A `--public-url`: `http` or `https`, a host, perhaps a path; no
/// credentials, query or fragment. Kept without its trailing slash.
fn parse_public_url(text: &str) -> Result<String, String> {
    let shape = || format!("{text:?} is not a URL like https://chat.example.org");
    let url = url::Url::parse(text).map_err(|_| shape())?;
    let plain = url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !plain {
        return Err(shape());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A `--password-reset-lifetime`: a lifetime of at most a day.
fn parse_reset_lifetime(text: &str) -> Result<Duration, String> {
    let lifetime = parse_lifetime(text)?;
    if lifetime > Duration::from_secs(86_400) {
        return Err(format!("{text:?} is longer than 1d"));
    }
    Ok(lifetime)
}

/// A `--push-contact`: a `mailto:` or `https:` URL (RFC 8292 §2.1).
fn parse_contact(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|_| format!("{text:?} is not a URL"))?;
    if matches!(url.scheme(), "mailto" | "https") {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is neither a mailto: nor an https: URL"))
    }
}

/// A session lifetime: a whole number and its unit, `s`, `m`, `h` or `d`
/// (`90s`, `30m`, `12h`, `14d`), from one second to ten years.
fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let shape = || format!("{text:?} is not a lifetime like 30m, 12h or 14d");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(shape)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| shape())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(shape()),
    };
    let seconds = number.saturating_mul(unit);
    if !(1..=3650 * 86_400).contains(&seconds) {
        return Err(format!("{text:?} is not between 1s and 3650d"));
    }
    Ok(Duration::from_secs(seconds))
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

/// A `--trusted-proxies` entry: an address or a network (`10.0.0.0/8`).
pub fn parse_trusted(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an IP address or network"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_a_number_and_a_unit() {
        assert_eq!(parse_lifetime("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_lifetime("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_lifetime("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_lifetime("14d"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in [
            "",
            "14",
            "d",
            "1.5h",
            "-1d",
            "14 d",
            "14w",
            "0s",
            "3651d",
            "99999999999999999999d",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_reset_lifetime("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_reset_lifetime("25h").is_err());
    }

    #[test]
    fn a_public_url_is_a_plain_http_or_https_base() {
        let ok = |text| parse_public_url(text).unwrap();
        assert_eq!(ok("https://chat.example.org/"), "https://chat.example.org");
        assert_eq!(ok("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(
            ok("https://example.org/natter/"),
            "https://example.org/natter"
        );
        for bad in [
            "chat.example.org",
            "ftp://example.org",
            "https://user:pw@example.org",
            "https://example.org/?a=b",
            "https://example.org/#x",
            "mailto:a@example.org",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad:?}");
        }
    }
}

/// Who may register (`--registration`; see `domain::invites`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Registration {
    Open,
    Invite,
    Closed,
}

/// Whom a group owner adds without asking (`--group-adds`; see `domain::groups`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupAdds {
    Direct,
    Consent,
}

/// What happens to a deleted account's messages (`--deleted-account-messages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeletedAccountMessages {
    Keep,
    Remove,
}
