//! Failure throttling, in process: after `max_failures` failures for one key
//! within `window`, the key is refused until the oldest failure ages out.
//!
//! Counters live in this process's memory. Behind a load balancer with N
//! instances an attacker gets at most N times the budget (or exactly the
//! budget with sticky sessions); that bound is accepted in exchange for no
//! database write per failed attempt.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// (tenant, email, IP): a stranger's failures never spend the budget of
    /// the owner's own address.
    CreatorLogin(i64, String, String),
    CreatorLoginIp(String),
    /// Every creator sign-up attempt that reaches bcrypt, per tenant and IP.
    CreatorSignupIp(i64, String),
    /// (email, IP), as for creators.
    AdminLogin(String, String),
    AdminLoginIp(String),
    /// Every admin sign-in or sign-up attempt that reaches bcrypt, per IP,
    /// successful ones included (see `AttemptLimiter`).
    AdminAttemptIp(String),
    ClientAuth(i64, String),
    ClientAuthIp(String),
    /// Requests made with one tenant API key (its id): a request budget.
    ApiKey(i64),
    /// Failed API key authentications, per tenant and IP.
    ApiAuthIp(i64, String),
    /// Delegated sign-in: login requests started, per tenant and IP.
    LoginStartIp(i64, String),
}

/// Hard cap on the keys one limiter holds. A full limiter evicts by
/// TinyLFU (moka), so a flood of one-off keys cannot push out the keys that
/// keep failing. Worst case per key: the key plus `max_failures` instants.
pub const MAX_KEYS: u64 = 50_000;

type Log = Arc<Mutex<VecDeque<Instant>>>;

pub struct RateLimiter {
    max_failures: usize,
    window: Duration,
    /// A concurrent, sized cache: O(1) per request, no scan and no
    /// process-wide lock on the request path (each key has its own small
    /// lock), and entries idle for a window (all their failures aged out)
    /// are dropped.
    failures: Cache<LimitKey, Log>,
    /// When the latest failure was recorded, in ms after `epoch` (0: never).
    /// Once that is a whole window ago every budget is whole again, so
    /// `blocked` answers without touching the cache: the steady state.
    last_failure_ms: AtomicU64,
    epoch: Instant,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(5, Duration::from_secs(15 * 60))
    }
}

impl RateLimiter {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self::with_capacity(max_failures, window, MAX_KEYS)
    }

    pub fn with_capacity(max_failures: usize, window: Duration, max_keys: u64) -> Self {
        RateLimiter {
            max_failures,
            window,
            failures: Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(window.max(Duration::from_millis(1)))
                .build(),
            last_failure_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Drops the failures of `q` that are a window old.
    fn prune(&self, q: &mut VecDeque<Instant>, now: Instant) {
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
    }

    /// How long the caller must wait, if any of `keys` is over its budget.
    pub fn blocked(&self, keys: &[LimitKey]) -> Option<Duration> {
        if self.is_clear() {
            return None;
        }
        let now = Instant::now();
        keys.iter()
            .filter_map(|k| {
                if self.max_failures == 0 {
                    return Some(self.window);
                }
                let log = self.failures.get(k)?;
                let mut q = log.lock().ok()?;
                self.prune(&mut q, now);
                (q.len() >= self.max_failures)
                    .then(|| {
                        q.front()
                            .map(|t| self.window.saturating_sub(now.duration_since(*t)))
                    })
                    .flatten()
            })
            .max()
    }

    /// Counts a failure against every key in `keys`, unless one of them is
    /// over its budget already: a refused caller spends no memory and
    /// does not extend its own block. Returns whether it was counted.
    pub fn record_failure(&self, keys: &[LimitKey]) -> bool {
        if self.blocked(keys).is_some() {
            return false;
        }
        let now = Instant::now();
        for k in keys {
            // Grows with the key's failures (most keys fail once).
            let log = self
                .failures
                .get_with(k.clone(), || Arc::new(Mutex::new(VecDeque::new())));
            if let Ok(mut q) = log.lock() {
                self.prune(&mut q, now);
                if q.len() < self.max_failures {
                    q.push_back(now);
                }
            };
        }
        // At least 1: 0 means never.
        let ms = now.duration_since(self.epoch).as_millis().max(1) as u64;
        self.last_failure_ms.store(ms, Ordering::Release);
        true
    }

    /// No failure within the window, for any key: no budget is spent. (A
    /// budget of zero failures refuses everyone, so it is never clear.)
    pub fn is_clear(&self) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        match self.last_failure_ms.load(Ordering::Acquire) {
            0 => true,
            ms => self.epoch.elapsed() >= Duration::from_millis(ms) + self.window,
        }
    }

    pub fn reset(&self, keys: &[LimitKey]) {
        for k in keys {
            self.failures.invalidate(k);
        }
    }

    /// How many keys the limiter holds (after moka's pending maintenance).
    pub fn len(&self) -> u64 {
        self.failures.run_pending_tasks();
        self.failures.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every attempt counts (successes too): budgets for work that is costly
/// whatever its outcome, such as admin sign-in and sign-up (a bcrypt hash,
/// and for sign-up a new tenant). `AdminAttemptIp` keys.
pub struct AttemptLimiter(pub RateLimiter);

impl Default for AttemptLimiter {
    fn default() -> Self {
        AttemptLimiter(RateLimiter::new(30, Duration::from_secs(15 * 60)))
    }
}

/// Delegated sign-in: every login request an IP starts at a tenant counts
/// (like `AttemptLimiter`, with a budget of its own; `LoginStartIp` keys),
/// `login_requests_per_ip` in 10 minutes (a login request's life), then a
/// 429 page. Anyone can open authorize with an app's public client_id; this
/// keeps one address from filling the tenant's bound of pending requests.
pub struct LoginStartLimits(pub RateLimiter);

impl LoginStartLimits {
    pub fn new(per_ip: usize) -> Self {
        LoginStartLimits(RateLimiter::new(per_ip, Duration::from_secs(600)))
    }
}

/// Budgets for failed client authentication (`invalid_client`) on the
/// token, refresh, revoke and introspect endpoints.
///
/// Only failures count, and the per-client key is the pair (client_id,
/// caller IP): someone hammering an app's client_id with wrong secrets
/// exhausts *their* budget, never the budget of the app's real caller (Kit)
/// at another address. The per-IP key is scoped to the tenant, and is
/// larger, because callers such as Kit send many apps from a few addresses
/// and one misconfigured app must not lock out the others. Over budget, a
/// failed authentication answers `429` instead of `401`; a request whose
/// credentials verify is never refused, so copying an app's public
/// client_id into failing requests cannot lock its real caller out.
pub struct ClientAuthLimits {
    pub pair: RateLimiter,
    pub ip: RateLimiter,
}

impl ClientAuthLimits {
    pub fn new(pair_max: usize, ip_max: usize, window: Duration) -> Self {
        ClientAuthLimits {
            pair: RateLimiter::new(pair_max, window),
            ip: RateLimiter::new(ip_max, window),
        }
    }

    fn keys(tenant_id: i64, client_id: Option<&str>, ip: &str) -> (Option<LimitKey>, LimitKey) {
        let pair = client_id.map(|id| {
            // The IP goes first and never contains a space; the client_id is
            // capped like everywhere else, so the map stays bounded per key.
            let id: String = id.chars().take(200).collect();
            LimitKey::ClientAuth(tenant_id, format!("{ip} {id}"))
        });
        // Per IP *within the tenant*: Kit calls every tenant from the same
        // few addresses, so one tenant's failures must not block the others.
        (pair, LimitKey::ClientAuthIp(format!("{tenant_id} {ip}")))
    }

    /// How long this caller must wait before it may authenticate again.
    pub fn blocked(&self, tenant_id: i64, client_id: Option<&str>, ip: &str) -> Option<Duration> {
        if self.pair.is_clear() && self.ip.is_clear() {
            return None;
        }
        let (pair, ip_key) = Self::keys(tenant_id, client_id, ip);
        let a = pair.and_then(|k| self.pair.blocked(&[k]));
        let b = self.ip.blocked(&[ip_key]);
        a.max(b)
    }

    /// Counts a failure, unless the caller is over budget already (then
    /// nothing is stored: a flood of fresh client_ids from a refused
    /// address adds no key). Returns whether it was counted.
    pub fn record_failure(&self, tenant_id: i64, client_id: Option<&str>, ip: &str) -> bool {
        if self.blocked(tenant_id, client_id, ip).is_some() {
            return false;
        }
        let (pair, ip_key) = Self::keys(tenant_id, client_id, ip);
        if let Some(k) = pair {
            self.pair.record_failure(&[k]);
        }
        self.ip.record_failure(&[ip_key]);
        true
    }

    /// The window of the per-client budget, in seconds.
    pub fn window_secs(&self) -> i64 {
        self.pair.window.as_secs() as i64
    }

    /// Keys held by the two limiters.
    pub fn len(&self) -> u64 {
        self.pair.len() + self.ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for ClientAuthLimits {
    fn default() -> Self {
        ClientAuthLimits::new(10, 100, Duration::from_secs(300))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_budget_and_resets() {
        let l = RateLimiter::new(3, Duration::from_secs(60));
        let k = [LimitKey::AdminLogin("a".into(), "ip".into())];
        for _ in 0..2 {
            l.record_failure(&k);
        }
        assert!(l.blocked(&k).is_none());
        l.record_failure(&k);
        assert!(l.blocked(&k).is_some());
        l.reset(&k);
        assert!(l.blocked(&k).is_none());
    }

    #[test]
    fn the_lock_free_answer_holds_only_while_no_failure_is_in_the_window() {
        let l = RateLimiter::new(1, Duration::from_millis(300));
        let (a, b) = (
            [LimitKey::AdminLogin("a".into(), "ip".into())],
            [LimitKey::AdminLogin("b".into(), "ip".into())],
        );
        assert!(l.is_clear());
        l.record_failure(&a);
        assert!(!l.is_clear());
        assert!(l.blocked(&a).is_some(), "one failure is this budget");
        l.record_failure(&b);
        l.reset(&a);
        assert!(!l.is_clear(), "b is still within the window");
        assert!(l.blocked(&b).is_some());
        // A window after the last failure the fast path is back, with no
        // reset: every budget is whole again.
        std::thread::sleep(Duration::from_millis(350));
        assert!(l.is_clear());
        assert!(l.blocked(&b).is_none());
    }

    #[test]
    fn a_caller_over_budget_adds_no_key_and_the_keys_are_capped() {
        let l = ClientAuthLimits::new(3, 5, Duration::from_secs(60));
        for i in 0..1000 {
            l.record_failure(1, Some(&format!("kit_{i}")), "10.0.0.1");
        }
        // Five failures spend the IP's budget; the other 995 are not stored.
        assert_eq!(l.len(), 5 + 1);
        let capped = RateLimiter::with_capacity(3, Duration::from_secs(60), 1000);
        for i in 0..20_000 {
            capped.record_failure(&[LimitKey::ClientAuthIp(format!("ip{i}"))]);
        }
        assert!(capped.len() <= 1000, "{}", capped.len());
    }

    #[test]
    fn client_auth_failures_from_one_ip_do_not_block_another() {
        let l = ClientAuthLimits::new(3, 100, Duration::from_secs(60));
        for _ in 0..3 {
            l.record_failure(1, Some("kit_a"), "10.0.0.1");
        }
        assert!(l.blocked(1, Some("kit_a"), "10.0.0.1").is_some());
        assert!(l.blocked(1, Some("kit_a"), "10.0.0.2").is_none());
        assert!(l.blocked(1, Some("kit_b"), "10.0.0.1").is_none());
        assert!(l.blocked(2, Some("kit_a"), "10.0.0.1").is_none());
    }

    #[test]
    fn client_auth_ip_budget_blocks_every_client_id() {
        let l = ClientAuthLimits::new(100, 4, Duration::from_secs(60));
        for i in 0..4 {
            l.record_failure(1, Some(&format!("kit_{i}")), "10.0.0.9");
        }
        assert!(l.blocked(1, Some("kit_new"), "10.0.0.9").is_some());
        assert!(l.blocked(1, None, "10.0.0.9").is_some());
        assert!(l.blocked(1, Some("kit_new"), "10.0.0.8").is_none());
    }
}
