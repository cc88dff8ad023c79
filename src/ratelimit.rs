//! Failure throttling, in process: after `max_failures` failures for one key
//! within `window`, the key is refused until the oldest failure ages out.
//!
//! Counters live in this process's memory. Behind a load balancer with N
//! instances an attacker gets at most N times the budget (or exactly the
//! budget with sticky sessions); that bound is accepted in exchange for no
//! database write per failed attempt.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    CreatorLogin(i64, String),
    CreatorLoginIp(String),
    /// Every creator sign-up attempt that reaches bcrypt, per tenant and IP.
    CreatorSignupIp(i64, String),
    AdminLogin(String),
    AdminLoginIp(String),
    ClientAuth(i64, String),
    ClientAuthIp(String),
    /// Requests made with one tenant API key (its id): a request budget.
    ApiKey(i64),
    /// Failed API key authentications, per tenant and IP.
    ApiAuthIp(i64, String),
}

pub struct RateLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<LimitKey, VecDeque<Instant>>>,
    /// When the latest failure was recorded, in ms after `epoch` (0: never).
    /// Once that is a whole window ago every budget is whole again, so
    /// `blocked` answers without the lock: the steady state.
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
        RateLimiter {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
            last_failure_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// How long the caller must wait, if any of `keys` is over its budget.
    pub fn blocked(&self, keys: &[LimitKey]) -> Option<Duration> {
        if self.is_clear() {
            return None;
        }
        let now = Instant::now();
        let mut map = self.failures.lock().ok()?;
        keys.iter()
            .filter_map(|k| {
                let q = map.get_mut(k)?;
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    q.pop_front();
                }
                (q.len() >= self.max_failures)
                    .then(|| {
                        q.front()
                            .map(|t| self.window.saturating_sub(now.duration_since(*t)))
                    })
                    .flatten()
            })
            .max()
    }

    pub fn record_failure(&self, keys: &[LimitKey]) {
        let now = Instant::now();
        if let Ok(mut map) = self.failures.lock() {
            if map.len() > 100_000 {
                let window = self.window;
                map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            }
            for k in keys {
                let q = map.entry(k.clone()).or_default();
                q.push_back(now);
                while q.len() > self.max_failures {
                    q.pop_front();
                }
            }
            // At least 1: 0 means never.
            let ms = now.duration_since(self.epoch).as_millis().max(1) as u64;
            self.last_failure_ms.store(ms, Ordering::Release);
        }
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
        if let Ok(mut map) = self.failures.lock() {
            for k in keys {
                map.remove(k);
            }
        }
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

    pub fn record_failure(&self, tenant_id: i64, client_id: Option<&str>, ip: &str) {
        let (pair, ip_key) = Self::keys(tenant_id, client_id, ip);
        if let Some(k) = pair {
            self.pair.record_failure(&[k]);
        }
        self.ip.record_failure(&[ip_key]);
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
        let k = [LimitKey::AdminLogin("a".into())];
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
            [LimitKey::AdminLogin("a".into())],
            [LimitKey::AdminLogin("b".into())],
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
