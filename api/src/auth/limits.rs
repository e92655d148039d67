//! Request rate limits per caller: each API key and each signed-in user has its own budget,
//! and requests that need no credential (sign-in, the OpenAPI document) have one per client
//! address. Over budget the answer is 429 (gRPC: `RESOURCE_EXHAUSTED`) with `Retry-After`.
//!
//! The request budgets are GCRA buckets from `governor`, in memory: each api replica counts on
//! its own, so behind N replicas a caller gets up to N times the rate. That bounds a leaked
//! key's damage per replica; a shared budget would cost a MongoDB round trip on every request.
//!
//! Sign-in attempts are the exception ([`LoginLimits`]): they are counted in MongoDB, per client
//! address and per account, so the limit holds however many replicas there are. A password
//! guess already costs an Argon2 verification, so one more write per attempt is cheap, and a
//! brute force spread over replicas (or, per account, over addresses) is what it must stop.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use mongodb::bson::DateTime;
use voice_agent_config::{ConfigError, Env};
use voice_agent_store::{MongoStore, StoreError};

use super::{Actor, Principal, secrets};

/// Callers tracked at most (see [`Bounded`]).
const MAX_TRACKED: usize = 10_000;

/// Largest per-minute rate or burst accepted from the environment.
pub const MAX_RATE: u32 = 1_000_000;

/// Rate-limit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// `API_RATE_LIMIT_PER_MINUTE`: requests per minute per API key or user; 0 turns the
    /// limits off.
    pub per_minute: u32,
    /// `API_RATE_LIMIT_BURST`: requests a caller may send at once after being idle.
    pub burst: u32,
    /// `API_ANON_RATE_LIMIT_PER_MINUTE`: requests per minute per client address to routes that
    /// need no credential; 0 turns it off.
    pub anonymous_per_minute: u32,
}

impl RateLimitSettings {
    /// Reads and validates the settings.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let bounded = |var: &'static str, default: u32| -> Result<u32, ConfigError> {
            let value: u32 = env.number(var, default)?;
            if value > MAX_RATE {
                return Err(ConfigError::Invalid {
                    var,
                    reason: format!("expected 0..={MAX_RATE}"),
                });
            }
            Ok(value)
        };
        let settings = Self {
            per_minute: bounded("API_RATE_LIMIT_PER_MINUTE", 1_200)?,
            burst: bounded("API_RATE_LIMIT_BURST", 200)?,
            anonymous_per_minute: bounded("API_ANON_RATE_LIMIT_PER_MINUTE", 120)?,
        };
        if settings.burst == 0 && settings.per_minute != 0 {
            return Err(ConfigError::Invalid {
                var: "API_RATE_LIMIT_BURST",
                reason: "at least 1 while API_RATE_LIMIT_PER_MINUTE is on".to_owned(),
            });
        }
        Ok(settings)
    }
}

/// How long a sign-in limit's window lasts, from the first attempt in it.
const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Sign-in attempt limits, counted in MongoDB across every api replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// `API_LOGIN_ATTEMPTS_PER_MINUTE`: attempts per client address per minute; 0 turns it off.
    pub per_address: u32,
    /// `API_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE`: attempts per email per minute, from any
    /// address; 0 turns it off.
    pub per_account: u32,
}

impl LoginLimits {
    /// Reads the settings.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            per_address: env.number("API_LOGIN_ATTEMPTS_PER_MINUTE", 10)?,
            per_account: env.number("API_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE", 10)?,
        })
    }

    /// Counts a sign-in attempt from `ip`; `Ok(Err(seconds to wait))` when the address is over
    /// its limit this minute. Checked before the body is read.
    pub async fn check_address(
        &self,
        store: &MongoStore,
        ip: IpAddr,
        now: DateTime,
    ) -> Result<Result<(), u64>, StoreError> {
        count(store, &format!("ip:{ip}"), self.per_address, now).await
    }

    /// Counts a sign-in attempt for the account `email` (lower-cased), from any address;
    /// `Ok(Err(seconds to wait))` when the account is over its limit this minute. Keyed by
    /// the email's digest, so the collection holds no addresses of people.
    pub async fn check_account(
        &self,
        store: &MongoStore,
        email: &str,
        now: DateTime,
    ) -> Result<Result<(), u64>, StoreError> {
        let key = format!("account:{}", secrets::digest(email));
        count(store, &key, self.per_account, now).await
    }
}

async fn count(
    store: &MongoStore,
    key: &str,
    limit: u32,
    now: DateTime,
) -> Result<Result<(), u64>, StoreError> {
    if limit == 0 {
        return Ok(Ok(()));
    }
    let (attempts, ends) = store.count_login_attempt(key, now, LOGIN_WINDOW).await?;
    if attempts > u64::from(limit) {
        let left = ends
            .timestamp_millis()
            .saturating_sub(now.timestamp_millis());
        return Ok(Err(retry_after_secs(Duration::from_millis(
            u64::try_from(left).unwrap_or(0),
        ))));
    }
    Ok(Ok(()))
}

/// Whose budget a request spends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Caller {
    Key(String),
    User(String),
}

/// The limiters; cheap to clone.
#[derive(Clone)]
pub struct RateLimits {
    callers: Option<Arc<Bounded<Caller>>>,
    anonymous: Option<Arc<Bounded<IpAddr>>>,
}

/// A keyed limiter that holds at most [`MAX_TRACKED`] callers: idle ones are dropped first;
/// if all are busy (a spray of addresses), the map starts over empty, which forgets what every
/// caller spent (the same trade the sign-in limit makes) but keeps memory bounded.
struct Bounded<K: std::hash::Hash + Eq + Clone> {
    quota: Quota,
    limiter: RwLock<Arc<DefaultKeyedRateLimiter<K>>>,
}

impl<K: std::hash::Hash + Eq + Clone> Bounded<K> {
    fn new(quota: Quota) -> Self {
        Self {
            quota,
            limiter: RwLock::new(Arc::new(DefaultKeyedRateLimiter::keyed(quota))),
        }
    }

    fn current(&self) -> Arc<DefaultKeyedRateLimiter<K>> {
        self.limiter
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current().len()
    }

    fn check(&self, key: &K) -> Result<(), u64> {
        let mut limiter = self.current();
        if limiter.len() >= MAX_TRACKED {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            if limiter.len() >= MAX_TRACKED {
                let fresh = Arc::new(DefaultKeyedRateLimiter::keyed(self.quota));
                *self.limiter.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
                limiter = fresh;
            }
        }
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            retry_after_secs(wait)
        })
    }
}

fn quota(per_minute: u32, burst: u32) -> Option<Quota> {
    let per_minute = NonZeroU32::new(per_minute)?;
    let burst = NonZeroU32::new(burst).unwrap_or(per_minute);
    Some(Quota::per_minute(per_minute).allow_burst(burst))
}

impl RateLimits {
    /// Limiters for `settings`.
    pub fn new(settings: RateLimitSettings) -> Self {
        let anon_burst = settings.anonymous_per_minute.min(settings.burst.max(1));
        Self {
            callers: quota(settings.per_minute, settings.burst).map(|q| Arc::new(Bounded::new(q))),
            anonymous: quota(settings.anonymous_per_minute, anon_burst)
                .map(|q| Arc::new(Bounded::new(q))),
        }
    }

    /// Spends one request of `principal`'s budget; `Err(seconds to wait)` when it is spent.
    pub fn check_principal(&self, principal: &Principal) -> Result<(), u64> {
        let Some(limiter) = &self.callers else {
            return Ok(());
        };
        let caller = match &principal.actor {
            Actor::Key { prefix, .. } => Caller::Key(prefix.clone()),
            Actor::User { id, .. } => Caller::User(id.clone()),
        };
        limiter.check(&caller)
    }

    /// Spends one request of the budget of the anonymous client at `ip`.
    pub fn check_anonymous(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        match (&self.anonymous, ip) {
            (Some(limiter), Some(ip)) => limiter.check(&ip),
            _ => Ok(()),
        }
    }
}

/// Whole seconds to wait, rounded up, at least 1 (`Retry-After` takes whole seconds).
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(prefix: &str) -> Principal {
        Principal {
            role: voice_agent_store::Role::Viewer,
            actor: Actor::Key {
                prefix: prefix.to_owned(),
                name: "test".to_owned(),
            },
        }
    }

    fn settings(per_minute: u32, burst: u32, anonymous_per_minute: u32) -> RateLimitSettings {
        RateLimitSettings {
            per_minute,
            burst,
            anonymous_per_minute,
        }
    }

    #[test]
    fn a_key_gets_its_burst_then_a_retry_after_and_other_keys_keep_theirs() {
        let limits = RateLimits::new(settings(60, 3, 0));
        for _ in 0..3 {
            assert_eq!(limits.check_principal(&key("aaaaaaaaaaaa")), Ok(()));
        }
        let wait = limits.check_principal(&key("aaaaaaaaaaaa")).unwrap_err();
        // One request per second refills: the wait is a second, not the whole minute.
        assert_eq!(wait, 1);
        assert_eq!(limits.check_principal(&key("bbbbbbbbbbbb")), Ok(()));
    }

    #[test]
    fn anonymous_budgets_are_per_address_and_zero_turns_limits_off() {
        let limits = RateLimits::new(settings(0, 1, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limits.check_anonymous(Some(a)).is_ok());
        assert!(limits.check_anonymous(Some(a)).is_err());
        assert!(limits.check_anonymous(Some(b)).is_ok());
        for _ in 0..1_000 {
            assert_eq!(limits.check_principal(&key("aaaaaaaaaaaa")), Ok(()));
        }
    }

    #[test]
    fn a_spray_of_addresses_does_not_grow_the_map_without_bound() {
        let limits = RateLimits::new(settings(0, 1, 60));
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limits.check_anonymous(Some(ip));
        }
        let tracked = limits.anonymous.as_ref().unwrap().len();
        assert!(tracked <= MAX_TRACKED + 1, "{tracked} addresses tracked");
    }

    #[test]
    fn out_of_range_settings_name_the_variable() {
        let env = Env::from_pairs([("API_RATE_LIMIT_PER_MINUTE", "2000000")]);
        let err = RateLimitSettings::from_env(&env).unwrap_err();
        assert!(
            err.to_string().contains("API_RATE_LIMIT_PER_MINUTE"),
            "{err}"
        );
        let off = Env::from_pairs([("API_RATE_LIMIT_PER_MINUTE", "0")]);
        assert_eq!(RateLimitSettings::from_env(&off).unwrap().per_minute, 0);
    }

    #[test]
    fn login_limits_default_to_ten_a_minute_and_zero_turns_them_off() {
        let defaults = LoginLimits::from_env(&Env::from_pairs(Vec::<(&str, &str)>::new())).unwrap();
        assert_eq!(
            defaults,
            LoginLimits {
                per_address: 10,
                per_account: 10
            }
        );
        let off = Env::from_pairs([("API_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE", "0")]);
        assert_eq!(LoginLimits::from_env(&off).unwrap().per_account, 0);
        let bad = Env::from_pairs([("API_LOGIN_ATTEMPTS_PER_MINUTE", "many")]);
        let err = LoginLimits::from_env(&bad).unwrap_err();
        assert!(
            err.to_string().contains("API_LOGIN_ATTEMPTS_PER_MINUTE"),
            "{err}"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
