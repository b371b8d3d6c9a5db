//! Who may hold a connection, and who gives one up when there is no room.
//!
//! Open connections are capped per client address (an IPv4 address or an IPv6
//! /64, keyed like the login throttle) and per node (the open-file limit less
//! a reserve for the database, Redis and logs). The client address here is
//! the TCP peer: a proxy named by `--trusted-proxies` carries everyone's
//! connections, so it is capped only by the node's limit, and must cap per
//! client itself.
//!
//! Protect, not punish: a newcomer over a cap takes the place of the oldest
//! *idle* connection of its address (or, at the node's cap, of the node) —
//! one with no request in flight and not upgraded to a WebSocket, which costs
//! its client at most a reconnect. Only when all of them are busy is the
//! newcomer refused; no request and no socket is cut to make room.
//!
//! Each connection also knows since when it has been idle: the accept loop
//! closes it by that (see [`super::server`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use ipnet::IpNet;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::domain::throttle::address_key;
use crate::telemetry;

/// How many connections may be open at once.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Per client address (IPv4, or IPv6 /64); trusted proxies are not counted.
    pub per_address: usize,
    /// On this node, whoever the client: the open-file limit less the reserve.
    pub total: usize,
}

/// The cap a newcomer found full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Address,
    Node,
}

impl Cap {
    /// Its name in the metrics.
    fn label(self) -> &'static str {
        match self {
            Cap::Address => "address",
            Cap::Node => "node",
        }
    }
}

/// The open connections of one node, and the decisions about newcomers.
pub struct Admission {
    caps: Caps,
    trusted: Arc<[IpNet]>,
    table: Mutex<Table>,
    /// Told whenever an evicted connection has closed.
    closed: Notify,
}

/// Ids grow with time, so ordered sets of ids are ordered by age.
#[derive(Default)]
struct Table {
    next_id: u64,
    /// Every connection counted, with the address it is counted under (none
    /// for a trusted proxy).
    open: HashMap<u64, Option<IpAddr>>,
    /// The idle ones among them: whom to evict, oldest first.
    idle: BTreeMap<u64, Weak<Conn>>,
    by_address: HashMap<IpAddr, Tally>,
    /// Evicted, no longer counted in `open`, but their sockets not closed yet:
    /// they still hold file descriptors.
    closing: usize,
}

#[derive(Default)]
struct Tally {
    open: usize,
    idle: BTreeSet<u64>,
}

impl Admission {
    pub fn new(caps: Caps, trusted: Arc<[IpNet]>) -> Arc<Self> {
        Arc::new(Admission {
            caps,
            trusted,
            table: Mutex::default(),
            closed: Notify::new(),
        })
    }

    /// Counts a new connection from `peer`, evicting an idle one if a cap is
    /// reached; `Err` names the cap when nobody could make room.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Arc<Conn>, Cap> {
        let peer = peer.to_canonical();
        let key = (!self.trusted.iter().any(|net| net.contains(&peer))).then(|| address_key(peer));
        let mut table = self.table();
        let address_full = key.is_some_and(|key| {
            table
                .by_address
                .get(&key)
                .is_some_and(|tally| tally.open >= self.caps.per_address)
        });
        // Sockets evicted but not closed yet still hold their descriptors.
        let node_full = table.open.len() + table.closing >= self.caps.total;
        // One eviction makes room under both caps: the socket it closes is a
        // descriptor for the node too.
        let evicted = if address_full {
            Some(table.make_room(key, Cap::Address)?)
        } else if node_full {
            Some(table.make_room(None, Cap::Node)?)
        } else {
            None
        };
        let id = table.next_id;
        table.next_id += 1;
        let conn = Arc::new(Conn {
            id,
            admission: self.clone(),
            activity: Mutex::new(Activity {
                in_flight: 0,
                upgraded: false,
                idle_since: Instant::now(),
            }),
            evicted: Notify::new(),
        });
        table.open.insert(id, key);
        if let Some(key) = key {
            table.by_address.entry(key).or_default().open += 1;
        }
        table.set_idle(id, Some(Arc::downgrade(&conn)));
        drop(table);
        if let Some(evicted) = evicted {
            tell_evicted(evicted);
        }
        Ok(conn)
    }

    /// Evicts the node's oldest idle connection, if there is one: for when
    /// the node ran out of file descriptors all the same.
    pub fn evict_oldest_idle(&self) -> bool {
        let evicted = self.table().make_room(None, Cap::Node);
        evicted.map(tell_evicted).is_ok()
    }

    /// Resolves once every evicted connection has closed. An evicted
    /// connection closes at once, but on its own task: the accept loop waits
    /// for that, so that the node never holds more sockets than its cap,
    /// plus the one just accepted.
    pub async fn settled(&self) {
        loop {
            let closed = self.closed.notified();
            let mut closed = std::pin::pin!(closed);
            // Listening before looking, so that no closing is missed.
            closed.as_mut().enable();
            if self.table().closing == 0 {
                return;
            }
            closed.await;
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // No update of the table panics halfway: a poisoned lock still
        // guards a consistent table, and connections must go on.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Table {
    /// Evicts the oldest idle connection of `key`'s address, or of the node,
    /// and hands it back to be told (see [`tell_evicted`]); counted as an
    /// eviction at `cap`, or as a refusal at `cap` if there is none.
    fn make_room(&mut self, key: Option<IpAddr>, cap: Cap) -> Result<Weak<Conn>, Cap> {
        let oldest = match key {
            Some(key) => self
                .by_address
                .get(&key)
                .and_then(|tally| tally.idle.first().copied()),
            None => self.idle.keys().next().copied(),
        };
        let Some(id) = oldest else {
            telemetry::connection_refused(cap.label());
            return Err(cap);
        };
        let victim = self.idle.get(&id).cloned().unwrap_or_default();
        // Its place is the newcomer's from now: it closes at once (see `Conn::evicted`).
        self.forget(id);
        self.closing += 1;
        telemetry::connection_evicted(cap.label());
        Ok(victim)
    }

    /// Marks a counted connection idle (`Some`) or busy (`None`).
    fn set_idle(&mut self, id: u64, idle: Option<Weak<Conn>>) {
        let Some(&key) = self.open.get(&id) else {
            return; // evicted already
        };
        let tally = key.and_then(|key| self.by_address.get_mut(&key));
        match idle {
            Some(conn) => {
                if let Some(tally) = tally {
                    tally.idle.insert(id);
                }
                self.idle.insert(id, conn);
            }
            None => {
                if let Some(tally) = tally {
                    tally.idle.remove(&id);
                }
                self.idle.remove(&id);
            }
        }
    }

    /// Stops counting a connection in `open`; whether it was counted there.
    fn forget(&mut self, id: u64) -> bool {
        let Some(key) = self.open.remove(&id) else {
            return false;
        };
        self.idle.remove(&id);
        if let Some(key) = key
            && let Some(tally) = self.by_address.get_mut(&key)
        {
            tally.open -= 1;
            tally.idle.remove(&id);
            if tally.open == 0 {
                self.by_address.remove(&key);
            }
        }
        true
    }
}

/// Tells an evicted connection to close. Never under the table's lock: the
/// handle may be the connection's last, whose drop takes the lock.
fn tell_evicted(victim: Weak<Conn>) {
    if let Some(victim) = victim.upgrade() {
        victim.evicted.notify_one();
    }
}

/// One admitted connection. Its place is given back when the last handle
/// drops: the one the socket holds (see `server::Held`), so that a WebSocket
/// keeps its place after hyper has handed the socket over.
pub struct Conn {
    id: u64,
    admission: Arc<Admission>,
    activity: Mutex<Activity>,
    evicted: Notify,
}

struct Activity {
    in_flight: u32,
    /// Upgraded (a WebSocket): busy for good, since hyper no longer sees it.
    upgraded: bool,
    /// When `in_flight` last fell to 0, or the connection was accepted.
    idle_since: Instant,
}

impl Conn {
    /// Counts a request in flight until the returned guard drops: when its
    /// response has been sent, or abandoned.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        let mut activity = self.activity();
        activity.in_flight += 1;
        if activity.in_flight == 1 {
            // Under the activity lock, so that a request ending on another
            // task cannot mark the connection idle in between.
            self.admission.table().set_idle(self.id, None);
        }
        InFlight { conn: self.clone() }
    }

    /// Since when the connection has had nothing in flight; `None` while busy.
    pub fn idle_since(&self) -> Option<Instant> {
        let activity = self.activity();
        (activity.in_flight == 0 && !activity.upgraded).then_some(activity.idle_since)
    }

    /// Resolves when a newcomer has taken this connection's place; it must
    /// then close. It was idle when chosen, but a request may have slipped
    /// in since: that one is finished first.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }

    fn activity(&self) -> MutexGuard<'_, Activity> {
        self.activity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut table = self.admission.table();
        if !table.forget(self.id) {
            // Evicted before.
            table.closing -= 1;
            drop(table);
            self.admission.closed.notify_waiters();
        }
    }
}

/// A request in flight on a connection (see [`Conn::request_started`]).
pub struct InFlight {
    conn: Arc<Conn>,
}

impl InFlight {
    /// The request upgraded the connection: it stays busy for good.
    pub fn upgraded(self) {
        self.conn.activity().upgraded = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut activity = self.conn.activity();
        activity.in_flight -= 1;
        if activity.in_flight == 0 {
            activity.idle_since = Instant::now();
            if !activity.upgraded {
                let conn = Arc::downgrade(&self.conn);
                self.conn
                    .admission
                    .table()
                    .set_idle(self.conn.id, Some(conn));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(per_address: usize, total: usize, trusted: &[&str]) -> Arc<Admission> {
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        Admission::new(Caps { per_address, total }, trusted.into())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn an_address_at_its_cap_gives_up_its_oldest_idle_connection_else_is_refused() {
        let admission = admission(2, 100, &[]);
        let first = admission.admit(ip("192.0.2.1")).unwrap();
        let second = admission.admit(ip("192.0.2.1")).unwrap();
        let _other = admission.admit(ip("192.0.2.2")).unwrap();
        let busy = second.request_started();
        // The first is idle: it makes room, and is told so.
        let third = admission.admit(ip("192.0.2.1")).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), first.evicted())
            .await
            .expect("evicted");
        // Both left are busy now (one of them upgraded): the next is refused.
        third.request_started().upgraded();
        assert_eq!(admission.admit(ip("192.0.2.1")).err(), Some(Cap::Address));
        // A finished request makes its connection evictable again.
        drop(busy);
        assert!(admission.admit(ip("192.0.2.1")).is_ok());
    }

    #[tokio::test]
    async fn the_node_cap_evicts_across_addresses_and_proxies_are_not_capped_per_address() {
        let admission = admission(1, 3, &["10.0.0.0/8"]);
        let proxied: Vec<_> = (0..3)
            .map(|_| admission.admit(ip("10.0.0.1")).unwrap())
            .collect();
        let busy: Vec<_> = proxied[1..].iter().map(|c| c.request_started()).collect();
        // The node is full: its one idle connection, the oldest, makes room.
        let newcomer = admission.admit(ip("2001:db8::1")).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), proxied[0].evicted())
            .await
            .expect("evicted");
        let _newcomer_busy = newcomer.request_started();
        assert_eq!(
            admission.admit(ip("2001:db8::2")).err(),
            Some(Cap::Address),
            "one /64 is one address"
        );
        assert_eq!(admission.admit(ip("192.0.2.9")).err(), Some(Cap::Node));
        // Closed connections give their places back.
        drop(busy);
        drop(proxied);
        assert!(admission.admit(ip("192.0.2.9")).is_ok());
    }

    #[tokio::test]
    async fn an_evicted_connection_holds_its_descriptor_until_it_closes() {
        let admission = admission(10, 2, &[]);
        let first = admission.admit(ip("192.0.2.1")).unwrap();
        let second = admission.admit(ip("192.0.2.2")).unwrap();
        let _second_busy = second.request_started();
        let third = admission.admit(ip("192.0.2.3")).unwrap();
        let _third_busy = third.request_started();
        // The first made room, but its socket is still open: the node is full.
        let wait = std::time::Duration::from_millis(50);
        assert!(
            tokio::time::timeout(wait, admission.settled())
                .await
                .is_err()
        );
        assert_eq!(admission.admit(ip("192.0.2.4")).err(), Some(Cap::Node));
        drop(first);
        tokio::time::timeout(wait, admission.settled())
            .await
            .expect("settled once the evicted socket closed");
    }
}
