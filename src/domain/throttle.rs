//! Brute-force throttling of logins and registrations: per account (so that
//! many addresses cannot guess one password) and per client address (so that
//! one address cannot try many accounts).
//!
//! An account is named by the email as typed (case-folded), whether or not it
//! exists, so a refusal says nothing about which accounts exist.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::{Error, Result};

/// What is being attempted; each has its own budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attempt {
    Login,
    Register,
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

pub struct Throttle {
    by_account: DefaultKeyedRateLimiter<(Attempt, String)>,
    by_address: DefaultKeyedRateLimiter<(Attempt, IpAddr)>,
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
            clock: DefaultClock::default(),
        })
    }

    /// Counts one attempt; refused with how long to wait when a budget is spent.
    pub fn check(&self, attempt: Attempt, account: &str, address: Option<IpAddr>) -> Result<()> {
        if let Some(address) = address {
            self.by_address
                .check_key(&(attempt, address_key(address)))
                .map_err(|wait| self.refusal(wait.wait_time_from(self.clock.now())))?;
        }
        let account = account.trim().to_lowercase();
        self.by_account
            .check_key(&(attempt, account))
            .map_err(|wait| self.refusal(wait.wait_time_from(self.clock.now())))
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

/// One budget per IPv4 address, and per IPv6 /64 (what one host usually
/// holds); the cap on connections per address uses the same key.
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
}
