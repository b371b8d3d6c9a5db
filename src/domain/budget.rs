//! What one user may ask of this node, whatever the door (Socket.IO event,
//! JSON API call or web page): a budget per kind of action, so that no client
//! can turn a cheap request into a flood of writes, broadcasts or lookups.
//!
//! - **Sends**: messages per second, with a burst (the contract's limit).
//! - **Searches**: per second, with a burst: each may keep a database
//!   connection busy for up to its time budget.
//! - **Events**: every other action (join, read, typing, sync, history, edits,
//!   reactions, group changes), together: per second, with a burst of five seconds' worth.
//! - **Lookups**: actions that name another person by email (a new chat, a
//!   group's members), per hour, as a burst that refills steadily: enough to
//!   start a group of a hundred, too few to test which addresses exist.
//! - **Adds of one person**: how often one user may put the same person into
//!   groups, per hour: so nobody can pull someone into group after group, or
//!   back into a group the moment they left it.
//! - **Pages in flight**: answers that carry a page of messages (sync, history,
//!   changes, search) are built at most [`PAGES_RUNNING`] at a time per user;
//!   up to [`PAGES_WAITING`] more wait their turn, the rest are refused. A page
//!   is up to a few megabytes while it is built, so this, with the socket's
//!   byte budget, is what bounds the memory one user can hold down.
//!
//! Every refusal is [`Error::RateLimited`] and changes nothing. Budgets are
//! kept in memory, per node: behind a load balancer a user's budget is per
//! node they reach (docs/security.md).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::{Error, Result};
use super::model::UserId;

/// Page answers one user's requests build at once.
pub const PAGES_RUNNING: usize = 2;
/// Page requests of one user that may wait for their turn.
pub const PAGES_WAITING: usize = 16;

/// The per-user rates (flags of `natter serve`).
#[derive(Debug, Clone, Copy)]
pub struct BudgetLimits {
    pub sends_per_second: u32,
    pub send_burst: u32,
    pub searches_per_second: u32,
    pub search_burst: u32,
    pub events_per_second: u32,
    pub lookups_per_hour: u32,
    pub adds_per_person_per_hour: u32,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        BudgetLimits {
            sends_per_second: 20,
            send_burst: 40,
            searches_per_second: 1,
            search_burst: 5,
            events_per_second: 10,
            lookups_per_hour: 100,
            adds_per_person_per_hour: 10,
        }
    }
}

impl BudgetLimits {
    /// Budgets no client reaches: for benchmarks and fuzzers, which measure
    /// or explore everything but the refusals.
    pub fn unlimited() -> Self {
        BudgetLimits {
            sends_per_second: u32::MAX,
            send_burst: u32::MAX,
            searches_per_second: u32::MAX,
            search_burst: u32::MAX,
            events_per_second: u32::MAX,
            lookups_per_hour: u32::MAX,
            adds_per_person_per_hour: u32::MAX,
        }
    }
}

pub struct Budgets {
    sends: DefaultKeyedRateLimiter<UserId>,
    searches: DefaultKeyedRateLimiter<UserId>,
    events: DefaultKeyedRateLimiter<UserId>,
    lookups: DefaultKeyedRateLimiter<UserId>,
    /// Keyed by (who adds, who is added).
    adds: DefaultKeyedRateLimiter<(UserId, UserId)>,
    pages: PagesInFlight,
}

fn at_least_one(n: u32, what: &str) -> anyhow::Result<NonZeroU32> {
    NonZeroU32::new(n).ok_or_else(|| anyhow::anyhow!("{what} must be at least 1"))
}

impl Budgets {
    pub fn new(limits: BudgetLimits) -> anyhow::Result<Self> {
        let send_rate = at_least_one(limits.sends_per_second, "the send rate")?;
        let send_burst = at_least_one(limits.send_burst, "the send burst")?;
        let search_rate = at_least_one(limits.searches_per_second, "the search rate")?;
        let search_burst = at_least_one(limits.search_burst, "the search burst")?;
        let event_rate = at_least_one(limits.events_per_second, "the event rate")?;
        let event_burst = event_rate.saturating_mul(NonZeroU32::new(5).expect("5 is not 0"));
        let lookups = at_least_one(limits.lookups_per_hour, "the lookup rate")?;
        let adds = at_least_one(limits.adds_per_person_per_hour, "the add rate")?;
        Ok(Budgets {
            sends: RateLimiter::keyed(Quota::per_second(send_rate).allow_burst(send_burst)),
            searches: RateLimiter::keyed(Quota::per_second(search_rate).allow_burst(search_burst)),
            events: RateLimiter::keyed(Quota::per_second(event_rate).allow_burst(event_burst)),
            lookups: RateLimiter::keyed(Quota::per_hour(lookups)),
            adds: RateLimiter::keyed(Quota::per_hour(adds)),
            pages: PagesInFlight::default(),
        })
    }

    /// One message sent by `user`.
    pub fn send(&self, user: UserId) -> Result<()> {
        self.sends.check_key(&user).map_err(|_| Error::RateLimited)
    }

    /// One search by `user`.
    pub fn search(&self, user: UserId) -> Result<()> {
        self.searches
            .check_key(&user)
            .map_err(|_| Error::RateLimited)
    }

    /// One action of `user` other than a send or a search.
    pub fn event(&self, user: UserId) -> Result<()> {
        self.events.check_key(&user).map_err(|_| Error::RateLimited)
    }

    /// `count` people looked up by email for `user` (all or none are counted).
    pub fn lookups(&self, user: UserId, count: usize) -> Result<()> {
        let Some(count) = u32::try_from(count).ok().and_then(NonZeroU32::new) else {
            return Ok(());
        };
        match self.lookups.check_key_n(&user, count) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(Error::RateLimited),
        }
    }

    /// `by` puts `whom` into a group.
    pub fn add(&self, by: UserId, whom: UserId) -> Result<()> {
        self.adds
            .check_key(&(by, whom))
            .map_err(|_| Error::RateLimited)
    }

    /// Waits for `user`'s turn to build a page of messages; refused when too
    /// many of theirs already wait. The turn ends when the permit is dropped.
    pub async fn page(&self, user: UserId) -> Result<PagePermit> {
        self.pages.enter(user).await
    }

    /// Forgets budgets that are full again, so that memory follows recent activity.
    pub fn forget_idle(&self) {
        self.sends.retain_recent();
        self.searches.retain_recent();
        self.events.retain_recent();
        self.lookups.retain_recent();
        self.adds.retain_recent();
    }
}

/// Each user's page requests: a semaphore of [`PAGES_RUNNING`] turns, and
/// how many requests hold or wait for one (the entry goes when none do).
#[derive(Default)]
struct PagesInFlight {
    users: Arc<Mutex<HashMap<UserId, Lane>>>,
}

struct Lane {
    turns: Arc<Semaphore>,
    admitted: usize,
}

/// A page request admitted: its turn, once it came, and its place in the count.
pub struct PagePermit {
    _turn: OwnedSemaphorePermit,
    _place: Place,
}

/// Gives the request's place back when dropped, even while it still waited.
struct Place {
    user: UserId,
    users: Arc<Mutex<HashMap<UserId, Lane>>>,
}

impl PagesInFlight {
    async fn enter(&self, user: UserId) -> Result<PagePermit> {
        let turns = {
            let mut users = self.users.lock().expect("page lanes poisoned");
            let lane = users.entry(user).or_insert_with(|| Lane {
                turns: Arc::new(Semaphore::new(PAGES_RUNNING)),
                admitted: 0,
            });
            if lane.admitted >= PAGES_RUNNING + PAGES_WAITING {
                return Err(Error::RateLimited);
            }
            lane.admitted += 1;
            lane.turns.clone()
        };
        let place = Place {
            user,
            users: self.users.clone(),
        };
        let turn = turns
            .acquire_owned()
            .await
            .expect("a lane's semaphore is never closed");
        Ok(PagePermit {
            _turn: turn,
            _place: place,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut users = self.users.lock().expect("page lanes poisoned");
        if let Some(lane) = users.get_mut(&self.user) {
            lane.admitted -= 1;
            if lane.admitted == 0 {
                users.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn page_requests_past_the_running_and_waiting_ones_are_refused() {
        let budgets = Budgets::new(BudgetLimits::default()).unwrap();
        let user = UserId::from(7);
        let mut held = Vec::new();
        for _ in 0..PAGES_RUNNING {
            held.push(budgets.page(user).await.unwrap());
        }
        // These wait for a turn (never given here), each holding a place.
        let waiting: Vec<_> = (0..PAGES_WAITING)
            .map(|_| {
                let pages = budgets.pages.users.clone();
                let lanes = PagesInFlight { users: pages };
                tokio::spawn(async move { lanes.enter(user).await.map(|_| ()) })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(matches!(budgets.page(user).await, Err(Error::RateLimited)));
        assert!(
            budgets.page(UserId::from(8)).await.is_ok(),
            "others are not held up"
        );
        drop(held);
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        assert!(
            budgets.pages.users.lock().unwrap().is_empty(),
            "nothing left behind"
        );
    }

    #[test]
    fn lookups_are_counted_per_person_named() {
        let limits = BudgetLimits {
            lookups_per_hour: 5,
            ..BudgetLimits::default()
        };
        let budgets = Budgets::new(limits).unwrap();
        let user = UserId::from(1);
        budgets.lookups(user, 3).unwrap();
        assert!(matches!(budgets.lookups(user, 3), Err(Error::RateLimited)));
        budgets.lookups(user, 2).unwrap();
        assert!(matches!(budgets.lookups(user, 1), Err(Error::RateLimited)));
        assert!(matches!(budgets.lookups(user, 99), Err(Error::RateLimited)));
    }
}
