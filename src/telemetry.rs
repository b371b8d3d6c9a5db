//! Prometheus metrics: what is counted where, and the `/metrics` listener.
//!
//! Recording goes through the `metrics` facade (one global recorder), so the
//! places that count — the commit loop, the Socket.IO events, the API error
//! responses — need no handle passed to them. Without `--metrics-addr` no
//! recorder is installed and every record below is a no-op.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::IntoResponse;
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::tasks::Task;

const HTTP_REQUESTS: &str = "natter_http_requests_total";
const ERRORS: &str = "natter_errors_total";
const MESSAGES_STORED: &str = "natter_messages_stored_total";
const ACK_SECONDS: &str = "natter_ack_seconds";
const STORE_COMMIT_SECONDS: &str = "natter_store_commit_seconds";
const STORE_BATCH_SIZE: &str = "natter_store_batch_size";
const CONNECTIONS: &str = "natter_socketio_connections";
const USERS: &str = "natter_socketio_users";
const ROOMS: &str = "natter_socketio_rooms";
const CONNECTIONS_EVICTED: &str = "natter_connections_evicted_total";
const CONNECTIONS_REFUSED: &str = "natter_connections_refused_total";
const PUSHES_SENT: &str = "natter_pushes_sent_total";
const PUSHES_FAILED: &str = "natter_pushes_failed_total";
const PUSHES_DROPPED: &str = "natter_pushes_dropped_total";
const PUSH_SUBSCRIPTIONS_REMOVED: &str = "natter_push_subscriptions_removed_total";
const WEBHOOK_DELIVERIES: &str = "natter_webhook_deliveries_total";

/// Latency buckets (seconds): an ack on an idle SQLite node takes well under a
/// millisecond, a commit on a loaded disk tens of milliseconds.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Batch sizes up to the commit loop's largest batch (`MAX_BATCH`, 1,024).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// How often histogram samples are folded in when nobody scrapes (bounds memory).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// One HTTP response, by method, route pattern (never the raw path) and status.
pub fn http_request(method: &Method, route: &str, status: u16) {
    // Only the standard methods, so that a client cannot invent label values.
    let method = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    counter!(HTTP_REQUESTS, "method" => method, "route" => route.to_owned(), "status" => status.to_string())
        .increment(1);
}

/// Where an error reply went out.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    /// A JSON API response `{"error": {"code"}}`.
    Http,
    /// A Socket.IO ack `{error: {code}}`.
    SocketIo,
}

/// One error reply carrying one of the contract's codes.
pub fn error_replied(code: &'static str, via: Via) {
    let via = match via {
        Via::Http => "http",
        Via::SocketIo => "socketio",
    };
    counter!(ERRORS, "code" => code, "via" => via).increment(1);
}

/// From receiving an `outgoing` event to sending its ack.
pub fn ack_sent(elapsed: Duration) {
    histogram!(ACK_SECONDS).record(elapsed);
}

/// One `store_messages` call of the commit loop: its size, how long it took,
/// and how many messages it newly stored (resends are found, not stored).
pub fn batch_stored(size: usize, elapsed: Duration, created: usize) {
    histogram!(STORE_BATCH_SIZE).record(size as f64);
    histogram!(STORE_COMMIT_SECONDS).record(elapsed);
    counter!(MESSAGES_STORED).increment(created as u64);
}

/// An idle connection closed to make room for a newcomer, by the cap that
/// was reached (`address` or `node`).
pub fn connection_evicted(cap: &'static str) {
    counter!(CONNECTIONS_EVICTED, "cap" => cap).increment(1);
}

/// A newcomer closed at once: every connection under the cap it reached was busy.
pub fn connection_refused(cap: &'static str) {
    counter!(CONNECTIONS_REFUSED, "cap" => cap).increment(1);
}

/// A push its push service accepted.
pub fn push_sent() {
    counter!(PUSHES_SENT).increment(1);
}

/// A push its push service refused (but for 404/410), or did not answer in time.
pub fn push_failed() {
    counter!(PUSHES_FAILED).increment(1);
}

/// Messages whose pushes were given up before any went out, by why
/// (`queue_full`, `database`).
pub fn pushes_dropped(reason: &'static str, messages: usize) {
    counter!(PUSHES_DROPPED, "reason" => reason).increment(messages as u64);
}

/// A push subscription deleted because its push service said it is gone (404/410).
pub fn push_subscription_removed() {
    counter!(PUSH_SUBSCRIPTIONS_REMOVED).increment(1);
}

/// An outgoing webhook's event, by what became of it: `delivered`,
/// `failed` (every attempt failed), `dropped` (the queue was full).
pub fn webhook_delivery(outcome: &'static str) {
    counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
}

/// What is connected to this node right now.
#[derive(Debug, Clone, Copy, Default)]
pub struct Census {
    pub sockets: usize,
    /// Distinct users with a socket here.
    pub users: usize,
    /// Chat rooms with a socket here.
    pub rooms: usize,
}

/// Whoever holds the connections counts them (the realtime layer), when a
/// scrape asks.
#[async_trait::async_trait]
pub trait Counted: Send + Sync + 'static {
    /// Counts this node's sockets, users and rooms (never asks other nodes).
    async fn census(&self) -> Census;
}

/// Installs the global recorder. Call once, before anything is recorded.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(STORE_BATCH_SIZE.into()), BATCH_BUCKETS)?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP responses by method, route and status (Socket.IO transport requests excluded)"
    );
    describe_counter!(
        ERRORS,
        "Error replies by contract code, via the JSON API (http) or a Socket.IO ack (socketio)"
    );
    describe_counter!(
        MESSAGES_STORED,
        "Messages newly stored; its rate is messages per second"
    );
    describe_histogram!(
        ACK_SECONDS,
        Unit::Seconds,
        "From receiving an outgoing event to sending its ack"
    );
    describe_histogram!(
        STORE_COMMIT_SECONDS,
        Unit::Seconds,
        "Time to store one batch of messages (one transaction, one commit)"
    );
    describe_histogram!(
        STORE_BATCH_SIZE,
        Unit::Count,
        "Messages per stored batch (group commit)"
    );
    describe_counter!(
        CONNECTIONS_EVICTED,
        "Idle connections closed to make room for a newcomer, by the cap reached (address or node)"
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "New connections closed at once because every connection under the cap was busy"
    );
    describe_counter!(PUSHES_SENT, "Web Push messages their push service accepted");
    describe_counter!(
        PUSHES_FAILED,
        "Web Push messages refused by their push service (but for 404/410) or unanswered in time; never retried"
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Outgoing webhook events, by outcome (delivered, failed after every attempt, dropped: queue full)"
    );
    describe_counter!(
        PUSHES_DROPPED,
        "Stored messages whose pushes were given up before any went out, by reason (queue_full, database)"
    );
    describe_counter!(
        PUSH_SUBSCRIPTIONS_REMOVED,
        "Push subscriptions deleted because their push service answered 404 or 410"
    );
    describe_gauge!(CONNECTIONS, "Socket.IO connections open on this node");
    describe_gauge!(
        USERS,
        "Distinct users with a Socket.IO connection on this node"
    );
    describe_gauge!(
        ROOMS,
        "Chat rooms with at least one Socket.IO connection on this node"
    );
    Ok(handle)
}

#[derive(Clone)]
struct Exporter {
    handle: PrometheusHandle,
    counted: Arc<dyn Counted>,
}

/// Serves `GET /metrics` on its own listener (not the public one, so that it is
/// reachable only where the operator exposes it) until the returned task is stopped.
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    counted: Arc<dyn Counted>,
) -> anyhow::Result<Task> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
    let upkeep = handle.clone();
    let app = Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(Exporter { handle, counted });
    Ok(Task::spawn("metrics", move |shutdown| async move {
        let upkeep = async {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        };
        let listening = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.recv().await;
        });
        tokio::select! {
            served = listening => if let Err(e) = served {
                tracing::error!(error = %e, "the metrics listener failed");
            },
            () = upkeep => {}
        }
    }))
}

async fn scrape(State(exporter): State<Exporter>) -> impl IntoResponse {
    // Gauges of what is connected are read now rather than tracked.
    let census = exporter.counted.census().await;
    gauge!(CONNECTIONS).set(census.sockets as f64);
    gauge!(USERS).set(census.users as f64);
    gauge!(ROOMS).set(census.rooms as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        exporter.handle.render(),
    )
}
