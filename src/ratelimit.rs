//! Failure throttling, in process: after `max_failures` failures for one key
//! within `window`, the key is refused until the oldest failure ages out.
//!
//! Counters live in this process's memory. Behind a load balancer with N
//! instances an attacker gets at most N times the budget (or exactly the
//! budget with sticky sessions); that bound is accepted in exchange for no
//! database write per failed attempt.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    CreatorLogin(i64, String),
    CreatorLoginIp(String),
    AdminLogin(String),
    AdminLoginIp(String),
    ClientAuth(i64, String),
    ClientAuthIp(String),
}

pub struct RateLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<LimitKey, VecDeque<Instant>>>,
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
        }
    }

    /// How long the caller must wait, if any of `keys` is over its budget.
    pub fn blocked(&self, keys: &[LimitKey]) -> Option<Duration> {
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
}
