//! Natural batching for the hot read paths: concurrent requests that need
//! the same kind of lookup share one statement.
//!
//! A caller queues its item and waits. A runner task takes everything
//! queued, answers it with one statement (`BatchQuery::run`) through
//! `Db::read`, and hands each caller its own answer. Nothing waits for a
//! batch to fill: an idle runner takes a lone item at once, and what
//! arrives while a statement is out forms the next batch, so batches grow
//! only when the database is the bottleneck. One statement for N lookups
//! costs PostgreSQL far less than N statements (measured with pgbench on
//! the seeded benchmark database; README, Performance) and costs the
//! server one round trip instead of N.
//!
//! Each item carries its own tenant, and `run` must answer each item only
//! from rows of that tenant, exactly as the one-item query would.
//!
//! Time-outs are as without batching: a caller waits at most the pool's
//! time-out (`db_timeout_ms`) from the moment it queued, then answers 503;
//! a batch waits for a connection only for what is left of its oldest
//! item's time-out; items whose callers gave up are dropped before the
//! statement, and those already past their time-out are answered at once.
//! The queue holds at most `QUEUE_CAP` items; a caller beyond that gets a
//! 503 at once rather than a place in a queue that cannot drain in time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use diesel::pg::PgConnection;
use diesel::QueryResult;
use rocket::tokio::sync::{oneshot, Notify};

use super::Db;
use crate::error::Error;

/// A lookup that can answer many items in one statement.
pub trait BatchQuery: Send + Sync + 'static {
    type Item: Send + 'static;
    type Out: Send + 'static;
    /// Most items in one statement.
    const MAX_BATCH: usize = 64;
    /// One answer per item, in the items' order.
    fn run(conn: &mut PgConnection, items: &[Self::Item]) -> QueryResult<Vec<Self::Out>>;
}

/// Most items waiting at once, across all callers.
pub const QUEUE_CAP: usize = 4096;

struct Waiter<Q: BatchQuery> {
    item: Q::Item,
    queued: Instant,
    answer: oneshot::Sender<Result<Q::Out, Error>>,
}

struct Inner<Q: BatchQuery> {
    queue: Mutex<Vec<Waiter<Q>>>,
    ready: Notify,
    /// Statements run and items answered, for `/metrics` and the tests.
    statements: AtomicU64,
    items: AtomicU64,
}

/// The queue and runners of one `BatchQuery`, in Rocket's managed state.
pub struct Batcher<Q: BatchQuery> {
    inner: Arc<Inner<Q>>,
    runners: usize,
    started: OnceLock<()>,
}

impl<Q: BatchQuery> Batcher<Q> {
    /// `runners` statements of this kind may be out at once.
    pub fn new(runners: usize) -> Self {
        Batcher {
            inner: Arc::new(Inner {
                queue: Mutex::new(Vec::new()),
                ready: Notify::new(),
                statements: AtomicU64::new(0),
                items: AtomicU64::new(0),
            }),
            runners: runners.max(1),
            started: OnceLock::new(),
        }
    }

    /// (statements run, items they answered) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.inner.statements.load(Ordering::Relaxed),
            self.inner.items.load(Ordering::Relaxed),
        )
    }

    /// Answers `item`, in a statement shared with whatever else is queued.
    pub async fn get(&self, db: &Db, item: Q::Item) -> Result<Q::Out, Error> {
        // The runners start on first use, inside the server's runtime.
        self.started.get_or_init(|| {
            for _ in 0..self.runners {
                rocket::tokio::spawn(run(self.inner.clone(), db.clone()));
            }
        });
        let (tx, rx) = oneshot::channel();
        let queued = Instant::now();
        {
            let mut queue = lock(&self.inner.queue);
            if queue.len() >= QUEUE_CAP {
                return Err(Error::Unavailable);
            }
            queue.push(Waiter {
                item,
                queued,
                answer: tx,
            });
        }
        self.inner.ready.notify_one();
        match rocket::tokio::time::timeout(db.wait(), rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Error::Internal("batch runner stopped".into())),
            // As `Db::read` would after the pool's time-out.
            Err(_) => Err(Error::Unavailable),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A runner: waits for items, answers up to `MAX_BATCH` of them at a time.
async fn run<Q: BatchQuery>(inner: Arc<Inner<Q>>, db: Db) {
    loop {
        let batch: Vec<Waiter<Q>> = {
            let mut queue = lock(&inner.queue);
            // Callers that gave up (time-out, dropped request) are gone.
            queue.retain(|w| !w.answer.is_closed());
            let n = queue.len().min(Q::MAX_BATCH);
            queue.drain(..n).collect()
        };
        if batch.is_empty() {
            // A notify_one that came before this await left a permit: no
            // item is missed.
            inner.ready.notified().await;
            continue;
        }
        // More queued than one batch takes: let another runner start.
        if !lock(&inner.queue).is_empty() {
            inner.ready.notify_one();
        }
        // The pool's time-out counts from the oldest item's arrival; one
        // already past it is answered at once.
        let (late, batch): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|w| w.queued.elapsed() >= db.wait());
        for w in late {
            let _ = w.answer.send(Err(Error::Unavailable));
        }
        let Some(oldest) = batch.iter().map(|w| w.queued).min() else {
            continue;
        };
        let (items, senders): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|w| (w.item, w.answer)).unzip();
        let expected = items.len();
        inner.statements.fetch_add(1, Ordering::Relaxed);
        inner.items.fetch_add(expected as u64, Ordering::Relaxed);
        let answers = db
            .read_since(oldest, move |conn| {
                Q::run(conn, &items).map_err(Error::from)
            })
            .await
            .and_then(|answers| {
                if answers.len() == expected {
                    Ok(answers)
                } else {
                    Err(Error::Internal(
                        "batch answered the wrong number of items".into(),
                    ))
                }
            });
        match answers {
            Ok(answers) => {
                for (tx, answer) in senders.into_iter().zip(answers) {
                    // A caller that gave up meanwhile is gone.
                    let _ = tx.send(Ok(answer));
                }
            }
            Err(e) => {
                for tx in senders {
                    let _ = tx.send(Err(share(&e)));
                }
            }
        }
    }
}

/// The same error for each caller of a failed batch.
fn share(e: &Error) -> Error {
    match e {
        Error::Unavailable => Error::Unavailable,
        other => Error::Internal(other.to_string()),
    }
}
