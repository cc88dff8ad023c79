//! One-time reveals: a value the dashboard shows once (a new client secret,
//! an invitation link) is put here by the POST that made it, and the POST
//! answers with a redirect to a GET that takes it out (post/redirect/get).
//! A reload of that GET finds the value gone and says "already shown"; a
//! reload can never repeat the action.
//!
//! Where the value waits: in this process's memory, never in the database.
//! kitauth keeps only digests of secrets at rest; an encrypted copy in a
//! table would put a recoverable secret into every backup and replica, with
//! the key a configuration file away. Here the value lives at most
//! [`Reveals::TTL`], is handed out once, is reachable only from the admin
//! session that made it (the key includes the session's id, which the
//! server resolved from the session cookie's digest), and dies with the
//! process. A restart in between loses it: the page then says so, and the
//! admin rotates again. The map is bounded ([`Reveals::CAPACITY`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a reveal shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevealKind {
    /// A new client secret of an app (created or rotated).
    ClientSecret,
    /// A new invitation link.
    Invite,
}

/// Who may take a reveal and of what: the admin session, the tenant, the
/// kind and the object (app id, invite id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RevealKey {
    pub session_id: i64,
    pub tenant_id: i64,
    pub kind: RevealKind,
    pub object_id: i64,
}

/// A value to show once, with the message shown beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revealed {
    pub value: String,
    pub notice: String,
}

/// The answer of [`Reveals::take`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// The value, handed out now and never again.
    Now(Revealed),
    /// It was handed out already (a reload of the reveal page).
    AlreadyShown,
    /// Nothing is waiting: expired, another session's, or never made.
    Nothing,
}

struct Entry {
    /// `None` once handed out; the entry stays until it expires so that a
    /// reload can say "already shown".
    value: Option<Revealed>,
    expires: Instant,
}

pub struct Reveals {
    entries: Mutex<HashMap<RevealKey, Entry>>,
    capacity: usize,
}

impl Default for Reveals {
    fn default() -> Self {
        Reveals::with_capacity(Reveals::CAPACITY)
    }
}

impl Reveals {
    /// How long a value waits for its page.
    pub const TTL: Duration = Duration::from_secs(5 * 60);
    /// At most this many waiting values; past it the oldest goes first.
    pub const CAPACITY: usize = 10_000;

    pub fn with_capacity(capacity: usize) -> Reveals {
        Reveals {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RevealKey, Entry>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores a value for one later [`take`](Self::take); a newer value for
    /// the same key replaces the older one.
    pub fn put(&self, key: RevealKey, value: String, notice: impl Into<String>) {
        self.put_at(key, value, notice.into(), Instant::now());
    }

    fn put_at(&self, key: RevealKey, value: String, notice: String, now: Instant) {
        let mut map = self.lock();
        // Expired values go on every store, so that no secret stays in
        // memory long past its time. Admin actions are rare and the map is
        // small and bounded, so the pass costs nothing that matters.
        map.retain(|_, e| e.expires > now);
        if map.len() >= self.capacity && !map.contains_key(&key) {
            if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.expires).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            key,
            Entry {
                value: Some(Revealed { value, notice }),
                expires: now + Self::TTL,
            },
        );
    }

    /// Hands out the value once.
    pub fn take(&self, key: &RevealKey) -> Taken {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &RevealKey, now: Instant) -> Taken {
        let mut map = self.lock();
        match map.get_mut(key) {
            None => Taken::Nothing,
            Some(e) if e.expires <= now => {
                map.remove(key);
                Taken::Nothing
            }
            Some(e) => match e.value.take() {
                Some(v) => Taken::Now(v),
                None => Taken::AlreadyShown,
            },
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(session_id: i64) -> RevealKey {
        RevealKey {
            session_id,
            tenant_id: 1,
            kind: RevealKind::ClientSecret,
            object_id: 7,
        }
    }

    #[test]
    fn a_value_is_handed_out_once_then_already_shown() {
        let r = Reveals::default();
        r.put(key(1), "kcs_x".into(), "made");
        assert_eq!(
            r.take(&key(1)),
            Taken::Now(Revealed {
                value: "kcs_x".into(),
                notice: "made".into()
            })
        );
        assert_eq!(r.take(&key(1)), Taken::AlreadyShown);
        assert_eq!(r.take(&key(1)), Taken::AlreadyShown);
    }

    #[test]
    fn another_session_gets_nothing() {
        let r = Reveals::default();
        r.put(key(1), "kcs_x".into(), "made");
        assert_eq!(r.take(&key(2)), Taken::Nothing);
        let other_kind = RevealKey {
            kind: RevealKind::Invite,
            ..key(1)
        };
        assert_eq!(r.take(&other_kind), Taken::Nothing);
        assert!(matches!(r.take(&key(1)), Taken::Now(_)));
    }

    #[test]
    fn an_expired_value_is_gone() {
        let r = Reveals::default();
        let then = Instant::now();
        r.put_at(key(1), "kcs_x".into(), "made".into(), then);
        assert_eq!(
            r.take_at(&key(1), then + Reveals::TTL + Duration::from_secs(1)),
            Taken::Nothing
        );
        assert!(r.is_empty());
    }

    #[test]
    fn the_map_stays_bounded() {
        let r = Reveals::with_capacity(100);
        let now = Instant::now();
        for i in 0..150 {
            r.put_at(
                key(i),
                "v".into(),
                String::new(),
                now + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(r.len(), 100);
        // The newest is kept, the oldest went first.
        assert!(matches!(r.take(&key(149)), Taken::Now(_)));
        assert_eq!(r.take(&key(0)), Taken::Nothing);
    }
}
