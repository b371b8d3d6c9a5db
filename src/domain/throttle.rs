//! Brute-force throttling of logins, registrations and password reset
//! requests, built so that an attacker cannot use it to lock the owner out
//! of their own account.
//!
//! Three budgets, each checked before the password is:
//! - **per client address** (IPv4 address or IPv6 /64), all accounts together:
//!   one address cannot try many accounts;
//! - **per account, from addresses that never signed in to it**: many
//!   addresses together cannot guess one password quickly. An address from
//!   which the account signed in before (on this node, in the last
//!   [`KNOWN_FOR`]) is not counted here, so a flood from elsewhere does not
//!   keep the owner out;
//! - **per account and address, with backoff**: after [`FREE_FAILURES`] wrong
//!   passwords in a row from one address, each further one doubles the wait
//!   before the next try (1 s, 2 s, 4 s … up to [`LONGEST_WAIT`]); a right
//!   password clears it. This is what slows a guesser at a known address.
//!
//! An account is named by the email as typed (normalised), whether or not it
//! exists, so a refusal says nothing about which accounts exist.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;

use super::error::{Error, Result};

/// Wrong passwords from one address for one account before the backoff starts.
pub const FREE_FAILURES: u32 = 5;
/// The longest a backoff makes one address wait for one account.
pub const LONGEST_WAIT: Duration = Duration::from_secs(15 * 60);
/// How long a successful sign-in makes its address known to the account.
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// Addresses remembered per node, as known to an account or in backoff.
const REMEMBERED: u64 = 100_000;

/// What is being attempted; each has its own budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attempt {
    Login,
    Register,
    /// A request for a password reset mail.
    Reset,
}

/// Attempts allowed per minute (each also the burst), per account and per address.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    pub per_account_per_minute: u32,
    pub per_address_per_minute: u32,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        ThrottleLimits {
            per_account_per_minute: 10,
            per_address_per_minute: 30,
        }
    }
}

/// Wrong passwords in a row from one address for one account, and until when
/// the next try must wait.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    wait_until: Instant,
}

pub struct Throttle {
    by_account: DefaultKeyedRateLimiter<(Attempt, String)>,
    by_address: DefaultKeyedRateLimiter<(Attempt, IpAddr)>,
    /// (account, address) pairs that signed in.
    known: Cache<(String, IpAddr), ()>,
    /// (account, address) pairs with wrong passwords in a row.
    failures: Cache<(String, IpAddr), Failures>,
    clock: DefaultClock,
}

impl Throttle {
    pub fn new(limits: ThrottleLimits) -> anyhow::Result<Self> {
        let quota = |per_minute: u32, what: &str| {
            NonZeroU32::new(per_minute)
                .map(Quota::per_minute)
                .ok_or_else(|| anyhow::anyhow!("the {what} attempt limit must be at least 1"))
        };
        Ok(Throttle {
            by_account: RateLimiter::keyed(quota(limits.per_account_per_minute, "per-account")?),
            by_address: RateLimiter::keyed(quota(limits.per_address_per_minute, "per-address")?),
            known: Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_live(KNOWN_FOR)
                .build(),
            failures: Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_idle(LONGEST_WAIT * 2)
                .build(),
            clock: DefaultClock::default(),
        })
    }

    /// Counts one attempt; refused with how long to wait when a budget is spent.
    pub fn check(&self, attempt: Attempt, account: &str, address: Option<IpAddr>) -> Result<()> {
        let account = account_key(account);
        let address = address.map(address_key);
        if let Some(address) = address {
            self.by_address
                .check_key(&(attempt, address))
                .map_err(|wait| self.refusal(wait.wait_time_from(self.clock.now())))?;
            if let Some(failures) = self.failures.get(&(account.clone(), address)) {
                let now = Instant::now();
                if failures.wait_until > now {
                    return Err(self.refusal(failures.wait_until - now));
                }
            }
            if attempt == Attempt::Login && self.known.contains_key(&(account.clone(), address)) {
                return Ok(());
            }
        }
        self.by_account
            .check_key(&(attempt, account))
            .map_err(|wait| self.refusal(wait.wait_time_from(self.clock.now())))
    }

    /// A wrong password for `account` from `address`: past the free ones,
    /// the next try from there waits twice as long as the last.
    pub fn failed(&self, account: &str, address: Option<IpAddr>) {
        let Some(address) = address.map(address_key) else {
            return;
        };
        let key = (account_key(account), address);
        let count = self.failures.get(&key).map_or(0, |f| f.count) + 1;
        let wait = match count.checked_sub(FREE_FAILURES) {
            None | Some(0) => Duration::ZERO,
            Some(over) => Duration::from_secs(1u64 << (over - 1).min(20)).min(LONGEST_WAIT),
        };
        let wait_until = Instant::now() + wait;
        self.failures.insert(key, Failures { count, wait_until });
    }

    /// A right password for `account` from `address`: its backoff ends, and
    /// the address no longer counts against the account's budget.
    pub fn succeeded(&self, account: &str, address: Option<IpAddr>) {
        if let Some(address) = address.map(address_key) {
            let key = (account_key(account), address);
            self.failures.invalidate(&key);
            self.known.insert(key, ());
        }
    }

    fn refusal(&self, wait: Duration) -> Error {
        // Whole seconds, rounded up: what a Retry-After header can say.
        Error::TooManyAttempts(Duration::from_secs(wait.as_secs() + 1))
    }

    /// Forgets keys whose budgets are full again, so that memory follows recent activity.
    pub fn forget_idle(&self) {
        self.by_account.retain_recent();
        self.by_account.shrink_to_fit();
        self.by_address.retain_recent();
        self.by_address.shrink_to_fit();
    }
}

/// Accounts are named as the email rule would store them, valid or not.
fn account_key(account: &str) -> String {
    super::rules::email(account).unwrap_or_else(|_| account.trim().to_lowercase())
}

/// One budget per IPv4 address, and per IPv6 /64 (what one host usually holds).
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_budget() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn wrong_passwords_past_the_free_ones_double_the_wait_and_a_right_one_clears_it() {
        let throttle = Throttle::new(ThrottleLimits {
            per_account_per_minute: 1000,
            per_address_per_minute: 1000,
        })
        .unwrap();
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        let here = Some(address);
        let waits: Vec<Duration> = (0..FREE_FAILURES + 3)
            .map(|_| {
                throttle.failed("a@example.test", here);
                let key = (account_key("a@example.test"), address_key(address));
                let failures = throttle.failures.get(&key).unwrap();
                failures
                    .wait_until
                    .saturating_duration_since(Instant::now())
            })
            .collect();
        let rounded: Vec<u64> = waits
            .iter()
            .map(|w| (w.as_millis() as u64).div_ceil(1000))
            .collect();
        assert_eq!(rounded, [0, 0, 0, 0, 0, 1, 2, 4]);
        assert!(
            throttle
                .check(Attempt::Login, "a@example.test", here)
                .is_err()
        );
        throttle.succeeded("A@Example.test ", here);
        assert!(
            throttle
                .check(Attempt::Login, "a@example.test", here)
                .is_ok()
        );
    }
}
