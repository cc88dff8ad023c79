//! Connection pool, embedded migrations and the model layer.

pub mod batch;
pub mod models;
pub mod schema;
pub mod sql;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use rocket::tokio::sync::{OwnedSemaphorePermit, Semaphore};

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::error::Error;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type PgPool = Pool<PgManager>;
pub type Conn = PooledConnection<PgManager>;

thread_local! {
    static CONNECTION_LOST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Records that the connection in use on this thread has lost its server
/// (called where a diesel error is mapped to `Error::Unavailable`).
pub fn connection_lost() {
    CONNECTION_LOST.with(|c| c.set(true));
}

fn take_connection_lost() -> bool {
    CONNECTION_LOST.with(|c| c.replace(false))
}

/// diesel's r2d2 manager, plus: a connection whose server went away is
/// discarded when it returns to the pool. diesel only reports a connection
/// broken inside a failed transaction, so after a PostgreSQL restart the
/// pool would otherwise keep handing out dead connections; a ping on every
/// checkout (`test_on_check_out`) would fix that at the cost of a round trip
/// per request. r2d2 calls `has_broken` on the thread that drops the
/// connection, which is the thread that saw the error.
#[derive(Debug)]
pub struct PgManager(ConnectionManager<PgConnection>);

impl diesel::r2d2::ManageConnection for PgManager {
    type Connection = PgConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<PgConnection, Self::Error> {
        // `build_pool` gave the inner manager `libpq_url(url)`.
        self.0.connect()
    }

    fn is_valid(&self, conn: &mut PgConnection) -> Result<(), Self::Error> {
        self.0.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        take_connection_lost() | self.0.has_broken(conn)
    }
}

/// The pool in Rocket's managed state. `run` moves blocking diesel work off
/// the async workers; `read` runs the hot paths' short reads on them.
///
/// Requests queue for a connection on a fair (first come, first served)
/// semaphore with one permit per pooled connection, before they take a
/// blocking thread. r2d2's own wait is a condition variable: a newcomer can
/// take a connection that was just handed back ahead of a caller already
/// waiting, so with more callers than connections one caller could wait
/// out the whole time-out while others went through. Waiting here also
/// keeps the number of blocking threads at the pool's size.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    permits: Arc<Semaphore>,
    wait: Duration,
    /// Slots for `read` to run on an async worker: one fewer than the
    /// runtime has workers, `None` when it has one. Sized on first use,
    /// from inside the runtime.
    inline: Arc<OnceLock<Option<Arc<Semaphore>>>>,
    calls: Arc<DbCalls>,
}

/// How many closures ran where, for `/metrics` and the tests.
#[derive(Debug, Default)]
pub struct DbCalls {
    pub inline: AtomicU64,
    pub blocking: AtomicU64,
}

impl Db {
    pub fn new(pool: PgPool) -> Self {
        let permits = Arc::new(Semaphore::new(pool.max_size() as usize));
        let wait = pool.connection_timeout();
        Db {
            pool,
            permits,
            wait,
            inline: Arc::default(),
            calls: Arc::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How long a caller may wait for a pooled connection (`db_timeout_ms`).
    pub fn wait(&self) -> Duration {
        self.wait
    }

    pub fn calls(&self) -> &DbCalls {
        &self.calls
    }

    /// Runs `f` with a pooled connection on one of tokio's blocking threads.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let started = Instant::now();
        let permit = self.acquire(&self.permits, started).await?;
        self.run_blocking(started, permit, f).await
    }

    /// Runs `f`, a short read (one indexed statement that writes nothing
    /// and takes no row lock; introspection makes a second one only when
    /// its copy of the client is out of date), on the calling async worker
    /// itself instead of a blocking thread.
    ///
    /// `run`'s hand-off to a blocking thread and back costs two thread
    /// wake-ups per call: measured with `cargo bench --bench load`, a fifth
    /// of the server's CPU time per introspection on 2 cores (README,
    /// Performance). The hot read paths (introspection, userinfo) skip it.
    /// The worker is blocked for one round trip to PostgreSQL, and at most
    /// all workers but one are: callers queue (first come, first served,
    /// without blocking a thread) for one of those slots, so a stalled
    /// database cannot stop the server from accepting, answering
    /// `/healthz` or timing out other callers. On a one-worker runtime
    /// `read` is `run`; so it is when no pooled connection is idle, since
    /// making one would block.
    ///
    /// What it does not bound: how long the statement takes. A read waits
    /// behind an `ACCESS EXCLUSIVE` lock (a migration's `ALTER TABLE`), and
    /// a task that the blocked worker had just woken stays in its LIFO slot
    /// until the read returns.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        self.read_since(Instant::now(), f).await
    }

    /// `read` for work that has been waiting since `started` (a batch of
    /// queued lookups, `db::batch`): the pool's time-out counts from then.
    pub async fn read_since<T, E, F>(&self, started: Instant, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let slots = self.inline.get_or_init(|| {
            // Outside a tokio runtime (never in the server) nothing is inline.
            let workers = rocket::tokio::runtime::Handle::try_current()
                .map_or(1, |h| h.metrics().num_workers());
            (workers > 1).then(|| Arc::new(Semaphore::new(workers - 1)))
        });
        let Some(slots) = slots else {
            let permit = self.acquire(&self.permits, started).await?;
            return self.run_blocking(started, permit, f).await;
        };
        // The slot first, then the pool's permit, always in that order (no
        // deadlock): queueing for a slot while holding a permit would idle
        // a connection. A reader queued for a slot is not yet in the pool's
        // queue, so `run` callers may go ahead of it there.
        let slot = self.acquire(slots, started).await?;
        let permit = self.acquire(&self.permits, started).await?;
        let Some(mut conn) = self.pool.try_get() else {
            drop(slot);
            return self.run_blocking(started, permit, f).await;
        };
        self.calls.inline.fetch_add(1, Ordering::Relaxed);
        take_connection_lost();
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut conn))).unwrap_or_else(|_| {
                // As a blocking thread's unwinding would: the connection's
                // state is unknown, so it is not handed out again.
                connection_lost();
                Err(E::from(Error::Internal("database task failed".into())))
            });
        // Back to the pool (where `has_broken` reads the flag this thread
        // set) before the permit lets the next caller look for it.
        drop(conn);
        drop((slot, permit));
        result
    }

    /// Waits, first come first served, for a permit of `sem`, for what is
    /// left of the pool's time-out since `started`.
    async fn acquire<E: From<Error>>(
        &self,
        sem: &Arc<Semaphore>,
        started: Instant,
    ) -> Result<OwnedSemaphorePermit, E> {
        let left = self.wait.saturating_sub(started.elapsed());
        match rocket::tokio::time::timeout(left, sem.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(E::from(Error::Unavailable)),
        }
    }

    async fn run_blocking<T, E, F>(
        &self,
        started: Instant,
        permit: OwnedSemaphorePermit,
        f: F,
    ) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        self.calls.blocking.fetch_add(1, Ordering::Relaxed);
        // Every pooled connection is taken through a permit, so one is
        // free now, or being re-made after a broken one was dropped: give
        // r2d2 what is left of the wait.
        let left = self
            .wait
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(10));
        let pool = self.pool.clone();
        let joined = rocket::tokio::task::spawn_blocking(move || {
            let _permit = permit;
            take_connection_lost();
            let mut conn = pool
                .get_timeout(left)
                .map_err(|_| E::from(Error::Unavailable))?;
            f(&mut conn)
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(_) => Err(E::from(Error::Internal("database task failed".into()))),
        }
    }
}

/// What `transaction` needs to know of a closure's error: the database
/// error inside it, if that is what it is.
pub trait DatabaseFailure {
    fn database_error(&self) -> Option<&diesel::result::Error>;
}

impl DatabaseFailure for diesel::result::Error {
    fn database_error(&self) -> Option<&diesel::result::Error> {
        Some(self)
    }
}

/// A deadlock (SQLSTATE 40P01) or a serialization failure (40001): the
/// transaction was rolled back through no fault of its own, and may run
/// again. (diesel names 40001; 40P01 it reports by PostgreSQL's message,
/// the server's `lc_messages` being English, as kitauth's role cannot
/// change it.)
pub fn is_retryable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as E};
    match e {
        E::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        E::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            info.message().starts_with("deadlock detected")
        }
        _ => false,
    }
}

/// A statement cancelled by `statement_timeout` (SQLSTATE 57014).
pub fn is_statement_timeout(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as E};
    matches!(e, E::DatabaseError(DatabaseErrorKind::Unknown, info)
        if info.message().starts_with("canceling statement due to statement timeout"))
}

/// A failure that says nothing about the request: the request may be
/// answered `503 temporarily_unavailable`, or decided another way.
pub fn is_transient(e: &diesel::result::Error) -> bool {
    is_retryable(e) || is_statement_timeout(e)
}

/// A diesel error as kitauth's: a lost connection is also recorded for the
/// pool (`connection_lost`), and a transient failure is `Unavailable`.
impl From<DieselError> for Error {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => Error::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Error::Conflict(info.constraint_name().unwrap_or("unique").to_string())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                connection_lost();
                Error::Unavailable
            }
            // Deadlock, serialization failure (after `db::transaction`'s
            // retry), statement time-out: nothing wrong with the request.
            ref e if is_transient(e) => Error::Unavailable,
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, ref info)
                if is_connection_message(info.message()) =>
            {
                connection_lost();
                Error::Unavailable
            }
            // The connection died mid-transaction: diesel could not roll back.
            DieselError::BrokenTransactionManager => {
                connection_lost();
                Error::Unavailable
            }
            DieselError::RollbackErrorOnCommit { commit_error, .. } => Error::from(*commit_error),
            other => Error::Database(other),
        }
    }
}

fn is_connection_message(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("server closed the connection")
        || m.contains("connection")
        || m.contains("terminating")
        || m.contains("no connection")
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(_: diesel::r2d2::PoolError) -> Self {
        Error::Unavailable
    }
}

/// Runs `f` in a transaction: the one place kitauth's request paths run
/// one. A deadlock or serialization failure rolls it back and runs it once
/// more; a second one is the caller's error (which `Error::from` turns into
/// `Unavailable`, a 503).
pub fn transaction<T, E, F>(conn: &mut PgConnection, mut f: F) -> Result<T, E>
where
    F: FnMut(&mut PgConnection) -> Result<T, E>,
    E: From<diesel::result::Error> + DatabaseFailure,
{
    match conn.transaction(&mut f) {
        Err(e) if e.database_error().is_some_and(is_retryable) => {
            tracing::info!(
                "transaction rolled back by a deadlock or serialization failure; retrying once"
            );
            conn.transaction(f)
        }
        other => other,
    }
}

/// Host and port of a database URL, for error messages that must never show a password.
pub fn describe_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(5432)
        ),
        Err(_) => "the configured database".to_string(),
    }
}

fn unreachable_message(url: &str) -> String {
    format!(
        "cannot reach PostgreSQL at {}; start it (for example `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`) or set DATABASE_URL",
        describe_url(url)
    )
}

/// Opens a connection the way every kitauth connection is opened: with
/// `libpq_url(url)`.
pub fn connect(url: &str) -> ConnectionResult<PgConnection> {
    PgConnection::establish(&libpq_url(url))
}

/// Readies the process for libpq and returns the URL to hand it, so that
/// the process can exit while another thread is opening a connection. The
/// pool opens them in the background: at start (`min_idle`), and to replace
/// one that was lost. Exit runs library clean-up on the exiting thread
/// while the other is still inside libpq, which used to crash the test
/// processes now and then (SIGSEGV, SIGABRT). Two changes, and
/// `tests/exit.rs` checks them:
/// - OpenSSL is initialised without its exit handler
///   (`openssl_sys::init` passes `OPENSSL_INIT_NO_ATEXIT`; the first
///   initialisation in a process decides, hence before any connection).
///   The handler freed OpenSSL's tables while a TLS handshake read them.
/// - GSSAPI encryption is off unless `url` sets `gssencmode` or the
///   environment sets `PGGSSENCMODE`. libpq's default (`prefer`) asks
///   Kerberos for credentials on every TCP connection, and Kerberos'
///   library destructors abort a process that exits during that call.
///   Connections still use TLS (`sslmode`), whose default is unchanged.
pub fn libpq_url(url: &str) -> String {
    openssl_sys::init();
    without_gssenc(url, std::env::var_os("PGGSSENCMODE").is_some())
}

/// `url` with `gssencmode=disable`, unless it or the environment (`env_set`)
/// chose a mode.
fn without_gssenc(url: &str, env_set: bool) -> String {
    if url.contains("gssencmode") || env_set {
        return url.to_string();
    }
    // A URI takes a query parameter; a `key=value` string another pair.
    let uri = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let separator = match (uri, url.contains('?')) {
        (true, true) => "&",
        (true, false) => "?",
        (false, _) if url.trim().is_empty() => "",
        (false, _) => " ",
    };
    format!("{url}{separator}gssencmode=disable")
}

/// Splits `postgres://…/name?opts` into (URL of the `postgres` maintenance
/// database, database name).
fn maintenance_url(url: &str) -> Option<(String, String)> {
    let mut u = url::Url::parse(url).ok()?;
    let name = u.path().trim_start_matches('/').to_string();
    if name.is_empty() {
        return None;
    }
    u.set_path("/postgres");
    Some((u.to_string(), name))
}

/// Creates the database named in `url` if it does not exist yet.
pub fn create_database_if_missing(url: &str) -> Result<(), String> {
    match connect(url) {
        Ok(_) => return Ok(()),
        Err(ConnectionError::BadConnection(msg)) if msg.contains("does not exist") => {}
        Err(_) => return Err(unreachable_message(url)),
    }
    let (admin_url, name) =
        maintenance_url(url).ok_or_else(|| "DATABASE_URL names no database".to_string())?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("refusing to create a database named {name:?}"));
    }
    let mut conn = connect(&admin_url).map_err(|_| unreachable_message(url))?;
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .map_err(|e| format!("could not create database {name}: {e}"))?;
    tracing::info!(database = %name, "created database");
    Ok(())
}

/// Applies pending migrations; retries briefly while the database comes up.
pub fn run_migrations(url: &str) -> Result<usize, String> {
    let mut last_err = String::new();
    for attempt in 0..5 {
        match connect(url) {
            Ok(mut conn) => {
                return conn
                    .run_pending_migrations(MIGRATIONS)
                    .map(|applied| applied.len())
                    .map_err(|e| format!("migration failed: {e}"));
            }
            Err(ConnectionError::BadConnection(msg)) if msg.contains("does not exist") => {
                return Err(format!(
                    "database at {} does not exist; create it or run the debug profile, which creates it",
                    describe_url(url)
                ));
            }
            Err(_) => {
                last_err = unreachable_message(url);
                if attempt < 4 {
                    std::thread::sleep(Duration::from_millis(200 * (attempt + 1)));
                }
            }
        }
    }
    Err(last_err)
}

/// The `statement_timeout` of every pooled connection, for a pool whose
/// callers wait `timeout` for a connection (`db_timeout_ms`): half as long
/// again, so that a slow statement cannot hold a connection (and the
/// callers queued behind it) much past the time-out those callers have.
/// A cancelled statement (57014) answers 503 (`Error::Unavailable`).
pub fn statement_timeout(timeout: Duration) -> Duration {
    (timeout + timeout / 2).max(Duration::from_millis(100))
}

/// Sets `statement_timeout` on each connection the pool opens.
#[derive(Debug)]
struct StatementTimeout(Duration);

impl diesel::r2d2::CustomizeConnection<PgConnection, diesel::r2d2::Error> for StatementTimeout {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        diesel::sql_query(format!("SET statement_timeout = {}", self.0.as_millis()))
            .execute(conn)
            .map(drop)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Builds the pool. Connections are made lazily, so a database that goes
/// away later only turns requests into 503s until it is back.
pub fn build_pool(url: &str, max_size: u32, timeout: Duration) -> Result<PgPool, String> {
    Pool::builder()
        .connection_customizer(Box::new(StatementTimeout(statement_timeout(timeout))))
        .max_size(max_size)
        .min_idle(Some(max_size.min(2)))
        .connection_timeout(timeout)
        .test_on_check_out(false)
        .build(PgManager(ConnectionManager::<PgConnection>::new(
            libpq_url(url),
        )))
        .map_err(|_| unreachable_message(url))
}

#[cfg(test)]
mod tests {
    use super::without_gssenc;

    #[test]
    fn gssapi_encryption_is_off_unless_the_url_or_the_environment_chose() {
        let cases = [
            ("postgres://u@h/db", "postgres://u@h/db?gssencmode=disable"),
            (
                "postgresql://u@h:5432/db?sslmode=require",
                "postgresql://u@h:5432/db?sslmode=require&gssencmode=disable",
            ),
            ("host=h dbname=db", "host=h dbname=db gssencmode=disable"),
            ("", "gssencmode=disable"),
            (
                "postgres://h/db?gssencmode=prefer",
                "postgres://h/db?gssencmode=prefer",
            ),
            ("host=h gssencmode=require", "host=h gssencmode=require"),
        ];
        for (url, want) in cases {
            assert_eq!(without_gssenc(url, false), want, "{url}");
        }
        assert_eq!(without_gssenc("postgres://h/db", true), "postgres://h/db");
    }
}
