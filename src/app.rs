//! Startup and shutdown: data directory, secret, store, routes, listener.

use std::fs;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum_extra::extract::cookie::Key;
use socketioxide::adapter::Adapter;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{SocketIo, SocketIoBuilder};
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
use sqlx::sqlite::SqliteSynchronous;
use tokio::net::TcpListener;

use crate::config::{self, DeletedAccountMessages, Registration, ServeArgs, Synchronous};
use crate::domain::accounts::{AccountRules, DeletedMessages, GroupAdds};
use crate::domain::attachments::{UploadLimits, Uploads};
use crate::domain::budget::BudgetLimits;
use crate::domain::connections::ConnectionLimits;
use crate::domain::invites::{RegistrationMode, WhoMayJoin};
use crate::domain::password::HashCost;
use crate::domain::reset::{Mailer, ResetSettings};
use crate::domain::rules::Limits;
use crate::domain::store::Store;
use crate::domain::throttle::ThrottleLimits;
use crate::domain::webhooks::WebhookLimits;
use crate::domain::{Natter, SessionLifetimes};
use crate::files::FileStore;
use crate::files::local::LocalFiles;
use crate::files::s3::{S3Files, S3Settings};
use crate::http::admission::{Admission, Caps};
use crate::http::{self, AppState};
use crate::mail::Smtp;
use crate::realtime::cluster::{RedisLink, watch_link};
use crate::realtime::{self, Fanout};
use crate::store::{self, Database};
use crate::tasks::Task;
use crate::telemetry;
use crate::webhooks::HttpPoster;
use crate::webpush::{VapidKey, WebPush};

/// How long in-flight sends, then in-flight requests, get to finish after
/// SIGTERM / Ctrl-C.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Bytes read from a WebSocket at a time.
const WS_READ_CHUNK: usize = 1024;

/// Between the last ack and closing the sockets.
const FLUSH_PAUSE: Duration = Duration::from_millis(200);

/// Runs a node until SIGTERM or Ctrl-C, then shuts it down gracefully.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let node = build(args).await?;
    // The one line on stdout: scripts and tests read the URL from it.
    println!("natter listening on http://{}", node.local_addr);
    std::io::stdout().flush()?;
    node.run(shutdown_signal()).await
}

/// A node built from its flags and listening, not serving yet: see [`build`].
pub struct Node {
    /// The address it listens on (the port chosen, if the flags said 0).
    pub local_addr: SocketAddr,
    listener: TcpListener,
    app: Router,
    natter: Arc<Natter>,
    fanout: Arc<dyn Fanout>,
    deadlines: http::server::Deadlines,
    admission: Arc<Admission>,
    /// Stopped at shutdown, in this order, before the database closes.
    tasks: Vec<Task>,
    /// The data directory's lock, held as long as the node lives.
    _lock: fs::File,
}

/// Everything a node needs before its first request: the data directory and
/// its lock, the store (migrated), the domain, the routes and Socket.IO (with
/// Redis, if the flags name it), the session watch, the metrics listener, and
/// the bound listener.
pub async fn build(args: ServeArgs) -> anyhow::Result<Node> {
    let open_files = open_file_limit()?;
    let Some(connection_cap) = open_files
        .checked_sub(u64::from(args.fd_reserve))
        .filter(|cap| *cap > 0)
    else {
        bail!(
            "the open-file limit ({open_files}) leaves no room for connections beside \
             --fd-reserve {}: raise it (ulimit -n, LimitNOFILE) or lower the reserve",
            args.fd_reserve
        );
    };
    tracing::debug!(open_files, connection_cap, "open files");
    // Before anything is recorded.
    let metrics = match args.metrics_addr {
        Some(addr) => Some((addr, telemetry::install()?)),
        None => None,
    };
    // Before anything starts: bad SMTP settings fail with one line.
    let mailer = match &args.smtp_url {
        Some(url) => Some(smtp(url, &args)?),
        None => None,
    };
    store::prepare_data_dir(&args.store.data_dir)?;
    // Held until the process ends: the OS lets go of it even on a kill.
    let lock = lock_data_dir(&args.store.data_dir)?;
    let (store, secret) = open_store(&args).await?;

    let limits = Limits {
        max_message_chars: args.max_message_chars as usize,
        history_page_max: i64::from(args.history_page_max),
        history_page_default: i64::from(args.history_page_max.min(50)),
        search_timeout: Duration::from_millis(args.search_timeout_ms),
        send_deadline: Duration::from_millis(args.send_deadline_ms),
        push_allow_http: args.push_allow_http,
        webhook_allow_private: args.webhook_allow_private,
    };
    let cost = HashCost {
        memory_kib: args.cost.argon2_memory_kib,
        iterations: args.cost.argon2_iterations,
    };
    let throttle = ThrottleLimits {
        per_account_per_minute: args.auth_attempts_per_account,
        per_address_per_minute: args.auth_attempts_per_address,
    };
    let connections = ConnectionLimits {
        per_user: args.max_connections_per_user,
        total: args.max_connections,
    };
    let budgets = BudgetLimits {
        sends_per_second: args.send_rate,
        send_burst: args.send_burst,
        searches_per_second: args.search_rate,
        search_burst: args.search_burst,
        events_per_second: args.event_rate,
        lookups_per_hour: args.lookups_per_hour,
        adds_per_person_per_hour: args.adds_per_person_per_hour,
    };
    let lifetimes = SessionLifetimes {
        idle: args.session_idle,
        max: args.session_max_age,
    };
    let natter = Arc::new(
        Natter::new(store, limits, cost)?
            .with_abuse_limits(throttle, connections, budgets)?
            .with_session_lifetimes(lifetimes)
            .with_uploads(Uploads::new(file_store(&args)?, upload_limits(&args)))
            .with_who_may_join(WhoMayJoin {
                mode: match args.registration {
                    Registration::Open => RegistrationMode::Open,
                    Registration::Invite => RegistrationMode::Invite,
                    Registration::Closed => RegistrationMode::Closed,
                },
                members_may_invite: args.members_may_invite,
            })
            .with_account_rules(AccountRules {
                group_adds: match args.group_adds {
                    config::GroupAdds::Direct => GroupAdds::Direct,
                    config::GroupAdds::Consent => GroupAdds::Consent,
                },
                deleted_messages: match args.deleted_account_messages {
                    DeletedAccountMessages::Keep => DeletedMessages::Keep,
                    DeletedAccountMessages::Remove => DeletedMessages::Remove,
                },
            }),
    );

    let cookie_key = Key::from(&secret);
    let push = WebPush::new(
        VapidKey::derive(&secret)?,
        args.push_contact.clone(),
        args.push_allow_http,
    )?;
    let (app, fanout, link_watch) = match &args.redis_url {
        None => {
            let (app, fanout) = single_node(natter.clone(), &args, cookie_key);
            (app, fanout, None)
        }
        Some(url) => {
            let client = redis::Client::open(resp3(url))
                .with_context(|| format!("invalid Redis URL {url:?}"))?;
            let web = WebSettings {
                redis: true,
                ..WebSettings::new(&args, cookie_key)
            };
            let link = RedisLink::connect(client)
                .await
                .with_context(|| format!("cannot connect to Redis at {url}"))?;
            let config = RedisAdapterConfig::new().with_prefix(args.redis_prefix.clone());
            let adapter = RedisAdapterCtr::new_with_driver(link.clone(), config);
            let (layer, io) = socket_io(natter.clone(), &args)
                .with_adapter::<CustomRedisAdapter<_, RedisLink>>(adapter)
                .build_layer();
            realtime::attach(&io)
                .await
                .context("cannot subscribe to Redis")?;
            let (watched, core) = (io.clone(), natter.clone());
            let watch = watch_link(link, &args.redis_prefix, move || {
                let (io, natter) = (watched.clone(), core.clone());
                async move { realtime::recheck(&io, &natter).await }
            })
            .await
            .context("cannot subscribe to Redis")?;
            let (app, fanout) = assemble(natter.clone(), web, layer, io);
            (app, fanout, Some(watch))
        }
    };

    // Before the listener: every session that ends from now on reaches the
    // sockets this node is about to accept.
    let session_watch = natter
        .watch_sessions()
        .await
        .context("cannot read the session revocation log")?;
    let pushes = natter.start_pushes(Arc::new(push));
    let resets = mailer.map(|(mailer, settings)| natter.start_password_resets(settings, mailer));
    let webhooks = natter.start_webhooks(
        Arc::new(HttpPoster::new(args.webhook_allow_private)?),
        WebhookLimits {
            queue: args.webhook_queue as usize,
            timeout: Duration::from_secs(args.webhook_timeout_secs),
        },
    );

    let exporter = match metrics {
        Some((addr, handle)) => Some(telemetry::serve(addr, handle, fanout.clone()).await?),
        None => None,
    };

    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let local_addr = listener.local_addr()?;
    tracing::info!(%local_addr, data_dir = %args.store.data_dir.display(), "serving");
    let deadlines = http::server::Deadlines {
        idle: Duration::from_secs(args.header_timeout_secs),
        write: Duration::from_secs(args.write_timeout_secs),
    };
    let caps = Caps {
        per_address: args.max_connections_per_address as usize,
        total: usize::try_from(connection_cap).unwrap_or(usize::MAX),
    };
    let admission = Admission::new(caps, args.trusted_proxies.clone().into());
    // Stopped in this order: nothing is left to watch over once the sockets
    // are closed, and none of them may outlive the database.
    let tasks = [
        Some(pushes),
        resets,
        Some(webhooks),
        Some(session_watch),
        link_watch,
        exporter,
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(Node {
        local_addr,
        listener,
        app,
        natter,
        fanout,
        deadlines,
        admission,
        tasks,
        _lock: lock,
    })
}

impl Node {
    /// Serves until `shutdown` completes, then: lets the sends in flight
    /// finish, tells the sockets, closes them, stops the background tasks,
    /// lets the requests in flight finish, and closes the database.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (natter, fanout) = (self.natter, self.fanout);
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let told_to_stop = async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        };
        let server = http::server::serve(
            self.listener,
            self.app,
            self.deadlines,
            self.admission,
            told_to_stop,
        );
        let mut server = std::pin::pin!(server);
        tokio::select! {
            result = &mut server => return result.context("server failed"),
            () = shutdown => {}
        }
        tracing::info!("shutting down: finishing the sends in flight");
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, natter.drain()).await;
        if drained.is_err() {
            tracing::warn!("sends still in flight after the grace period");
        }
        fanout.shutting_down().await;
        // Closing a socket cancels its writer at once: give the last acks and the
        // notice time to leave (sockets are served by other tasks).
        tokio::time::sleep(FLUSH_PAUSE).await;
        // Sockets would hold the graceful shutdown open forever: close them first.
        fanout.close().await;
        for task in self.tasks {
            task.stop().await;
        }
        let _ = stop_tx.send(true);
        let stopped = match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
            Ok(result) => result.context("server failed"),
            Err(_) => {
                tracing::warn!("connections still open after the grace period; exiting");
                Ok(())
            }
        };
        natter.close().await;
        tracing::info!("stopped");
        stopped
    }
}

/// The soft open-file limit, raised first to the hard one: every connection
/// is a file descriptor, and the usual soft limit (1,024) would cap the server
/// near a thousand connections.
fn open_file_limit() -> anyhow::Result<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Ok(limit),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            let (soft, _hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)
                .context("cannot read the open-file limit")?;
            Ok(soft)
        }
    }
}

/// The application of a node alone (no Redis) on `natter`, with the settings
/// of `args`: the HTTP routes with the Socket.IO layer, and the fan-out. Public
/// for the `socket_frames` fuzz target, which drives exactly this in-process.
pub fn single_node(
    natter: Arc<Natter>,
    args: &ServeArgs,
    cookie_key: Key,
) -> (Router, Arc<dyn Fanout>) {
    let (layer, io) = socket_io(natter.clone(), args).build_layer();
    realtime::attach(&io);
    assemble(natter, WebSettings::new(args, cookie_key), layer, io)
}

/// The Socket.IO server's settings from `args`, whatever the adapter.
fn socket_io(natter: Arc<Natter>, args: &ServeArgs) -> SocketIoBuilder {
    SocketIo::builder()
        .with_state(natter)
        .max_payload(u64::from(args.max_payload))
        .ws_max_message_size(args.max_payload as usize)
        .ws_max_frame_size(args.max_payload as usize)
        .max_buffer_size(args.socket_buffer as usize)
        .max_buffer_bytes(args.socket_buffer_bytes as usize)
        // Read chunks per WebSocket (default 4 KiB): chat frames are small;
        // bigger ones simply take several reads. Held only while a read is
        // under way (vendor/tungstenite gives it back while the socket is idle).
        .ws_read_buffer_size(WS_READ_CHUNK)
        .connect_timeout(Duration::from_secs(args.connect_timeout_secs))
        .ping_interval(Duration::from_secs(args.ping_interval_secs))
        .ping_timeout(Duration::from_secs(args.ping_timeout_secs))
}

/// What the web side needs besides the domain.
struct WebSettings {
    cookie_key: Key,
    secure_cookies: bool,
    max_body_bytes: usize,
    trusted_proxies: Arc<[ipnet::IpNet]>,
    /// Whether there is Redis to check in `/readyz`.
    redis: bool,
}

impl WebSettings {
    /// Without Redis.
    fn new(args: &ServeArgs, cookie_key: Key) -> Self {
        WebSettings {
            cookie_key,
            secure_cookies: args.secure_cookies,
            max_body_bytes: args.max_payload as usize,
            trusted_proxies: args.trusted_proxies.clone().into(),
            redis: false,
        }
    }
}

/// Puts the HTTP routes and the Socket.IO layer together, for any adapter.
fn assemble<A: Adapter>(
    natter: Arc<Natter>,
    web: WebSettings,
    layer: SocketIoLayer<A>,
    io: SocketIo<A>,
) -> (Router, Arc<dyn Fanout>) {
    natter.notify_with(Arc::new(io.clone()));
    let fanout: Arc<dyn Fanout> = Arc::new(io);
    let state = AppState {
        natter,
        fanout: fanout.clone(),
        cookie_key: web.cookie_key,
        secure_cookies: web.secure_cookies,
        trusted_proxies: web.trusted_proxies,
        redis: web.redis,
    };
    let trusted = state.trusted_proxies.clone();
    let app = http::router(state, web.max_body_bytes)
        .layer(layer)
        .layer(axum::middleware::map_request(realtime::detach_request_head))
        .layer(axum::middleware::from_fn_with_state(
            trusted,
            http::client_addr::label_scheme,
        ));
    (http::outermost(app), fanout)
}

/// socketioxide-redis speaks RESP3 (Redis 7+); the redis crate needs it asked for.
fn resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

/// Opens the configured store and finds the cookie secret: in the data
/// directory for SQLite, in the database for PostgreSQL (so that every node of
/// a cluster signs cookies alike).
async fn open_store(args: &ServeArgs) -> anyhow::Result<(Arc<dyn Store>, Vec<u8>)> {
    let synchronous = match args.sqlite_synchronous {
        Synchronous::Full => SqliteSynchronous::Full,
        Synchronous::Normal => SqliteSynchronous::Normal,
    };
    let secret_file = args.store.data_dir.join("cookie-secret");
    match store::open(&args.store, synchronous).await? {
        Database::Postgres(store) => {
            let secret = store.shared_secret(&new_secret()?).await?;
            Ok((Arc::new(store), secret))
        }
        Database::Sqlite(store) => Ok((Arc::new(store), load_or_create_secret(&secret_file)?)),
    }
}

/// 64 random bytes, the size a cookie signing key needs.
fn new_secret() -> anyhow::Result<Vec<u8>> {
    let mut secret = vec![0u8; 64];
    getrandom::fill(&mut secret).context("the OS random source failed")?;
    Ok(secret)
}

/// Where attachments are kept: the S3 bucket the flags name, or a directory
/// (default DATA_DIR/files).
fn file_store(args: &ServeArgs) -> anyhow::Result<Arc<dyn FileStore>> {
    match &args.s3_bucket {
        Some(bucket) => {
            // This node's own (the data directory is locked): what is in it
            // now is what a crash left mid-upload.
            let staging = args.store.data_dir.join("staging");
            if staging.exists() {
                std::fs::remove_dir_all(&staging)
                    .with_context(|| format!("cannot empty {}", staging.display()))?;
            }
            let settings = S3Settings {
                bucket: bucket.clone(),
                endpoint: args.s3_endpoint.clone(),
                region: args.s3_region.clone(),
                access_key_id: args.s3_access_key_id.clone(),
                secret_access_key: args.s3_secret_access_key.clone(),
                prefix: args.s3_prefix.clone(),
            };
            Ok(Arc::new(S3Files::open(&settings, &staging)?))
        }
        None => {
            let dir = match &args.files_dir {
                Some(dir) => dir.clone(),
                None => args.store.data_dir.join("files"),
            };
            if args.redis_url.is_some() {
                // Every node must reach every file (docs/deploy.md).
                tracing::warn!(
                    files_dir = %dir.display(),
                    "a cluster node keeps attachments in a local directory: unless every node \
                     shares it, the others cannot serve them; set --s3-bucket"
                );
            }
            Ok(Arc::new(LocalFiles::open(&dir)?))
        }
    }
}

/// The SMTP server of `--smtp-url` (which clap lets through only with
/// `--smtp-from` and `--public-url`), and how reset links are made.
fn smtp(url: &str, args: &ServeArgs) -> anyhow::Result<(Arc<dyn Mailer>, ResetSettings)> {
    let (Some(from), Some(public_url)) = (&args.smtp_from, &args.public_url) else {
        bail!("--smtp-url needs --smtp-from and --public-url");
    };
    let timeout = Duration::from_secs(args.smtp_timeout_secs);
    let host = url::Url::parse(public_url)?
        .host_str()
        .context("--public-url has no host")?
        .to_owned();
    let mailer = Smtp::new(url, from, &host, timeout)?;
    let settings = ResetSettings {
        public_url: public_url.clone(),
        lifetime: args.password_reset_lifetime,
        send_deadline: timeout,
    };
    Ok((Arc::new(mailer), settings))
}

fn upload_limits(args: &ServeArgs) -> UploadLimits {
    UploadLimits {
        max_bytes: args.max_upload_bytes,
        max_pixels: args.max_image_pixels,
        idle: Duration::from_secs(args.upload_idle_secs),
        deadline: Duration::from_secs(args.upload_deadline_secs),
        sweep_grace: Duration::from_secs(args.file_sweep_grace_secs),
        ..UploadLimits::default()
    }
}

/// Takes the data directory's lock file, so that a second server started on
/// the same directory refuses to start instead of running beside the first
/// (two writers would each believe they own the cookie secret and the SQLite
/// file's group commit). Released when the returned file is dropped or the
/// process ends, however it ends.
fn lock_data_dir(dir: &Path) -> anyhow::Result<fs::File> {
    let path = dir.join("natter.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => bail!(
            "another Natter server is using the data directory {} (it holds {}); \
             stop it, or give this one another --data-dir",
            dir.display(),
            path.display()
        ),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// The cookie secret: generated on first start, kept (mode 0600) beside the data.
fn load_or_create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(secret) = fs::read(path) {
        if secret.len() >= 64 {
            return Ok(secret);
        }
        bail!(
            "{} is too short to be a secret; delete it to generate a new one",
            path.display()
        );
    }
    let secret = new_secret()?;
    store::create_private_file(path)?;
    fs::write(path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(secret)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot install the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
