//! How many live connections (sockets) a user, and everyone, may hold on this node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::error::{Error, Result};
use super::model::UserId;

/// The per-node caps.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub per_user: u32,
    pub total: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            per_user: 20,
            total: 10_000,
        }
    }
}

#[derive(Default)]
struct Counts {
    total: u32,
    by_user: HashMap<UserId, u32>,
}

/// Counts admitted connections; a [`ConnectionPermit`] gives its place back when dropped.
pub struct Connections {
    limits: ConnectionLimits,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection.
pub struct ConnectionPermit {
    user: UserId,
    counts: Arc<Mutex<Counts>>,
}

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Self {
        Connections {
            limits,
            counts: Arc::default(),
        }
    }

    /// How many connections are open on this node.
    pub fn open(&self) -> usize {
        self.counts
            .lock()
            .expect("connection counts poisoned")
            .total as usize
    }

    /// Admits one more connection of `user`, or refuses it when a cap is reached.
    pub fn admit(&self, user: UserId) -> Result<ConnectionPermit> {
        let mut counts = self.counts.lock().expect("connection counts poisoned");
        let mine = counts.by_user.get(&user).copied().unwrap_or(0);
        if counts.total >= self.limits.total || mine >= self.limits.per_user {
            return Err(Error::TooManyConnections);
        }
        counts.total += 1;
        counts.by_user.insert(user, mine + 1);
        Ok(ConnectionPermit {
            user,
            counts: self.counts.clone(),
        })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("connection counts poisoned");
        counts.total -= 1;
        if let Some(mine) = counts.by_user.get_mut(&self.user) {
            *mine -= 1;
            if *mine == 0 {
                counts.by_user.remove(&self.user);
            }
        }
    }
}
