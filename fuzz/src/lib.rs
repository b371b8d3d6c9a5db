//! The world every fuzz target runs in: the real [`Natter`] core on an
//! in-memory SQLite store, with two rooms (one the fuzzing user belongs to,
//! one they do not) and the real HTTP router built on it.
//!
//! [`run_node`] adds the whole application of a node, Socket.IO included,
//! assembled by `natter::app::single_node` exactly as the server does.
//!
//! Inputs name the fixtures by placeholders, replaced before decoding:
//! `@room` (a room of the user), `@group` (a group the user owns, with bob),
//! `@other` (someone else's room), `@token` (the user's session token),
//! `@email` (another registered user's email).

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum_extra::extract::cookie::Key;
use clap::Parser as _;
use natter::app;
use natter::config::{Cli, ServeArgs};
use natter::domain::budget::BudgetLimits;
use natter::domain::connections::ConnectionLimits;
use natter::domain::password::HashCost;
use natter::domain::push::{PushService, Sent};
use natter::domain::rules::Limits;
use natter::domain::store::PushEndpoint;
use natter::domain::throttle::ThrottleLimits;
use natter::domain::{Natter, NewGroup, Registration, Session};
use natter::http::{self, AppState};
use natter::realtime::Fanout;
use natter::store::sqlite::SqliteStore;
use natter::telemetry::{Census, Counted};
use sqlx::sqlite::SqliteSynchronous;

/// The body limit the server uses by default (the Socket.IO payload limit).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A fresh world every this many inputs: the store only grows (messages,
/// users, sessions), and an input must not depend on a long history.
const INPUTS_PER_WORLD: u32 = 2000;

pub struct World {
    pub natter: Arc<Natter>,
    pub session: Session,
    pub token: String,
    pub room: String,
    pub group: String,
    pub other_room: String,
    pub other_email: String,
    pub router: Router,
    /// The node, for the targets that ask for it ([`run_node`]).
    pub node: Option<Node>,
}

/// A node's whole application on the world's core: HTTP routes, the Socket.IO
/// layer with Natter's namespace, and the fan-out sockets are reached through.
pub struct Node {
    pub app: Router,
    pub fanout: Arc<dyn Fanout>,
    /// The server's settings: its defaults (or `NATTER_*` variables, as for the server).
    pub args: ServeArgs,
}

/// What the HTTP side asks of sockets (census, readiness, shutdown); there are none here.
struct NoSockets;

#[async_trait]
impl Counted for NoSockets {
    async fn census(&self) -> Census {
        Census::default()
    }
}

#[async_trait]
impl Fanout for NoSockets {
    async fn check(&self) -> Result<(), String> {
        Ok(())
    }
    async fn shutting_down(&self) {}
    async fn close(&self) {}
}

/// Pushes nowhere: what the fuzzer subscribes must never reach the network.
struct NoPushes;

#[async_trait]
impl PushService for NoPushes {
    fn public_key(&self) -> &str {
        "BNoPushesHere"
    }
    async fn send(&self, _: &PushEndpoint, _: &[u8]) -> Sent {
        Sent::Delivered
    }
}

async fn user(natter: &Natter, name: &str) -> (Session, String) {
    let email = format!("{name}@example.test");
    natter
        .register(
            Registration {
                username: name.to_owned(),
                email: email.clone(),
                password: "correct horse battery".to_owned(),
                invite: None,
            },
            None,
        )
        .await
        .expect("register");
    let (session, token) = natter
        .login(&email, "correct horse battery", None)
        .await
        .expect("login");
    (session, token)
}

impl World {
    async fn new(node: bool) -> World {
        let store = SqliteStore::open("sqlite::memory:", SqliteSynchronous::Off)
            .await
            .expect("in-memory store");
        let limits = Limits::default();
        let cost = HashCost {
            memory_kib: 64,
            iterations: 1,
        };
        // Nor login throttling: past the first attempts every input would be a 429.
        let throttle = ThrottleLimits {
            per_account_per_minute: u32::MAX,
            per_address_per_minute: u32::MAX,
        };
        let natter = Natter::new(Arc::new(store), limits, cost)
            // No budget either: the fuzzer would only ever see `rate_limited` after the first burst.
            .and_then(|n| {
                n.with_abuse_limits(
                    throttle,
                    ConnectionLimits::default(),
                    BudgetLimits::unlimited(),
                )
            })
            .expect("natter");
        let natter = Arc::new(natter);
        // The push routes answer as on a server; the task ends when the world retires.
        natter.start_pushes(Arc::new(NoPushes));
        let (alice, token) = user(&natter, "alice").await;
        let (bob, _) = user(&natter, "bob").await;
        let (carol, _) = user(&natter, "carol").await;
        let (dave, _) = user(&natter, "dave").await;
        let room = natter
            .open_direct_chat(&alice.user, &bob.user.email)
            .await
            .expect("room")
            .0
            .room_id;
        let group = NewGroup {
            title: Ok("Fuzzers".to_owned()),
            emails: Ok(vec![bob.user.email.clone()]),
        };
        let group = natter
            .create_group(&alice.user, group)
            .await
            .expect("group")
            .room_id;
        let other_room = natter
            .open_direct_chat(&carol.user, &dave.user.email)
            .await
            .expect("other room")
            .0
            .room_id;
        let state = AppState {
            natter: natter.clone(),
            fanout: Arc::new(NoSockets),
            cookie_key: Key::from(&[7u8; 64]),
            secure_cookies: false,
            trusted_proxies: Arc::new([]),
            redis: false,
        };
        let node = node.then(|| {
            let args = Cli::try_parse_from(["natter"])
                .expect("the server's default settings")
                .serve;
            let (app, fanout) = app::single_node(natter.clone(), &args, Key::from(&[7u8; 64]));
            Node { app, fanout, args }
        });
        World {
            router: http::outermost(http::router(state, MAX_BODY_BYTES)),
            node,
            natter,
            session: alice,
            token,
            room,
            group,
            other_room,
            other_email: carol.user.email,
        }
    }

    /// Ends the world inside the runtime, as a server shuts down: sends are
    /// drained first (a socket closing later then announces no presence). The
    /// Socket.IO server is left open: every input closed its sockets, and a
    /// handler still in flight may yet emit through it. The store is closed
    /// explicitly because a node never drops its core (the core's notifier is
    /// the Socket.IO server, whose state is the core).
    async fn retire(&self) {
        self.natter.drain().await;
        self.natter.close().await;
    }

    /// Replaces the placeholders in an input by this world's values.
    pub fn expand(&self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for (from, to) in [
            (&b"@room"[..], self.room.as_bytes()),
            (b"@group", self.group.as_bytes()),
            (b"@other", self.other_room.as_bytes()),
            (b"@token", self.token.as_bytes()),
            (b"@email", self.other_email.as_bytes()),
        ] {
            out = replace(&out, from, to);
        }
        out
    }
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

thread_local! {
    // Never dropped either: tasks still in flight at exit (a handler whose answer
    // the last input did not wait for, in `socket_frames`) would be dropped with
    // it, outside any runtime, and one holding a store connection panics (sqlx).
    static RUNTIME: ManuallyDrop<tokio::runtime::Runtime> = ManuallyDrop::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    );
    // Never dropped: at exit the runtime may be gone already, and a store's
    // connections can only go back to their pool inside it (sqlx panics
    // otherwise, which libFuzzer would report as a crash of the last input).
    static WORLD: ManuallyDrop<RefCell<Option<(Arc<World>, u32)>>> =
        const { ManuallyDrop::new(RefCell::new(None)) };
}

/// Runs one input against the current world (made anew every few thousand inputs).
pub fn run<F, Fut>(f: F)
where
    F: FnOnce(Arc<World>) -> Fut,
    Fut: Future<Output = ()>,
{
    run_world(false, f);
}

/// As [`run`], in a world with a [`Node`].
pub fn run_node<F, Fut>(f: F)
where
    F: FnOnce(Arc<World>) -> Fut,
    Fut: Future<Output = ()>,
{
    run_world(true, f);
}

fn run_world<F, Fut>(node: bool, f: F)
where
    F: FnOnce(Arc<World>) -> Fut,
    Fut: Future<Output = ()>,
{
    RUNTIME.with(|rt| {
        let world = WORLD.with(|cell| {
            let mut cell = cell.borrow_mut();
            match cell.as_mut() {
                Some((world, used)) if *used < INPUTS_PER_WORLD => {
                    *used += 1;
                    world.clone()
                }
                _ => {
                    if let Some((old, _)) = cell.take() {
                        // Inside the runtime: its store's connections go back to their pools.
                        rt.block_on(old.retire());
                        let _inside = rt.enter();
                        drop(old);
                    }
                    let world = Arc::new(rt.block_on(World::new(node)));
                    *cell = Some((world.clone(), 1));
                    world
                }
            }
        });
        rt.block_on(f(world));
    });
}

/// Whether `code` is one of the contract's error codes (PROTOCOL.md).
pub fn contract_code(code: &str) -> bool {
    matches!(
        code,
        "invalid"
            | "taken"
            | "bad_credentials"
            | "unauthorized"
            | "no_such_user"
            | "self"
            | "not_member"
            | "no_such_room"
            | "empty"
            | "too_long"
            | "rate_limited"
            | "forbidden"
            | "not_found"
            | "method_not_allowed"
            // The messenger features' (docs/protocol.md).
            | "not_group"
            | "not_owner"
            | "already_member"
            | "no_such_message"
            | "not_sender"
            | "deleted"
            // Session management's (docs/protocol.md).
            | "no_such_session"
    )
}
