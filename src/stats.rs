//! Token-endpoint counters for the dashboard chart. The token handler only
//! bumps an in-memory counter (a sharded map, so concurrent requests rarely
//! meet on a lock, and no database write on the hot path); a background
//! task adds the counts to `token_stats` every few seconds with one upsert
//! per app and hour. The dashboard home flushes first, so it is current.
//! Only clients that authenticated are counted (see `oauth::token::token`),
//! so the map holds at most one entry per real app and hour.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use diesel::Connection;
use rocket::fairing::{Fairing, Info, Kind};
use rocket::{Orbit, Rocket};

use crate::db::models::token_stats;
use crate::db::Db;
use crate::error::Error;

const SHARDS: usize = 16;
/// How often pending counts are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// (tenant id, client id, hour bucket) → (issued, failed).
type Counts = HashMap<(i64, String, i64), (i64, i64)>;

/// Cheap to clone: the background task holds a clone of the managed value.
#[derive(Clone)]
pub struct TokenStats {
    shards: Arc<Vec<Mutex<Counts>>>,
}

impl Default for TokenStats {
    fn default() -> Self {
        TokenStats {
            shards: Arc::new((0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect()),
        }
    }
}

impl TokenStats {
    /// Counts one token request of `client_id` in `tenant_id`.
    pub fn record(&self, tenant_id: i64, client_id: &str, issued: bool) {
        if client_id.len() > 200 {
            return;
        }
        let mut h = DefaultHasher::new();
        (tenant_id, client_id).hash(&mut h);
        let shard = &self.shards[(h.finish() as usize) % SHARDS];
        let bucket = token_stats::hour_bucket(Utc::now());
        if let Ok(mut map) = shard.lock() {
            // An unknown client_id is dropped at flush; bound the map anyway.
            if map.len() > 50_000 {
                return;
            }
            let entry = map
                .entry((tenant_id, client_id.to_string(), bucket))
                .or_default();
            if issued {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
    }

    /// How many (app, hour) counts wait for the next flush.
    pub fn pending(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|m| m.len()))
            .sum()
    }

    fn drain(&self) -> Counts {
        let mut all = Counts::new();
        for shard in self.shards.iter() {
            if let Ok(mut map) = shard.lock() {
                for (k, v) in map.drain() {
                    let e = all.entry(k).or_default();
                    e.0 += v.0;
                    e.1 += v.1;
                }
            }
        }
        all
    }

    fn restore(&self, counts: Counts) {
        for ((tenant_id, client_id, bucket), (issued, failed)) in counts {
            let mut h = DefaultHasher::new();
            (tenant_id, client_id.as_str()).hash(&mut h);
            if let Ok(mut map) = self.shards[(h.finish() as usize) % SHARDS].lock() {
                let e = map.entry((tenant_id, client_id, bucket)).or_default();
                e.0 += issued;
                e.1 += failed;
            }
        }
    }

    /// Writes the pending counts in one transaction; on failure they are
    /// kept for the next attempt.
    pub async fn flush(&self, db: &Db) -> Result<(), Error> {
        let counts = self.drain();
        if counts.is_empty() {
            return Ok(());
        }
        let batch = counts.clone();
        let result = db
            .run(move |conn| {
                conn.transaction(|conn| {
                    for ((tenant_id, client_id, bucket), (issued, failed)) in &batch {
                        token_stats::add(conn, *tenant_id, client_id, *bucket, *issued, *failed)?;
                    }
                    Ok::<_, diesel::result::Error>(())
                })
                .map_err(Error::from)
            })
            .await;
        if result.is_err() {
            self.restore(counts);
        }
        result
    }
}

/// Starts the periodic flush at lift-off and flushes once more at shutdown.
pub struct StatsFlusher;

#[rocket::async_trait]
impl Fairing for StatsFlusher {
    fn info(&self) -> Info {
        Info {
            name: "token stats flusher",
            kind: Kind::Liftoff | Kind::Shutdown,
        }
    }

    async fn on_liftoff(&self, rocket: &Rocket<Orbit>) {
        let (Some(db), Some(stats)) = (rocket.state::<Db>(), rocket.state::<TokenStats>()) else {
            return;
        };
        let db = db.clone();
        let stats = stats.clone();
        let mut shutdown = rocket.shutdown();
        rocket::tokio::spawn(async move {
            let mut tick = rocket::tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(rocket::tokio::time::MissedTickBehavior::Delay);
            loop {
                rocket::tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = stats.flush(&db).await {
                            tracing::warn!(error = %e, "could not write token stats; will retry");
                        }
                    }
                    _ = &mut shutdown => break,
                }
            }
        });
    }

    async fn on_shutdown(&self, rocket: &Rocket<Orbit>) {
        if let (Some(db), Some(stats)) = (rocket.state::<Db>(), rocket.state::<TokenStats>()) {
            let _ = stats.flush(db).await;
        }
    }
}
