//! Connection pool, embedded migrations and the model layer.

pub mod models;
pub mod schema;

use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::Error;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type Conn = PooledConnection<ConnectionManager<PgConnection>>;

/// The pool in Rocket's managed state. `run` moves blocking diesel work off
/// the async workers.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
}

impl Db {
    pub fn new(pool: PgPool) -> Self {
        Db { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let pool = self.pool.clone();
        let joined = rocket::tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|_| E::from(Error::Unavailable))?;
            f(&mut conn)
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(_) => Err(E::from(Error::Internal("database task failed".into()))),
        }
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
    match PgConnection::establish(url) {
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
    let mut conn = PgConnection::establish(&admin_url).map_err(|_| unreachable_message(url))?;
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
        match PgConnection::establish(url) {
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

/// Builds the pool. Connections are made lazily, so a database that goes
/// away later only turns requests into 503s until it is back.
pub fn build_pool(url: &str, max_size: u32, timeout: Duration) -> Result<PgPool, String> {
    Pool::builder()
        .max_size(max_size)
        .min_idle(Some(max_size.min(2)))
        .connection_timeout(timeout)
        .test_on_check_out(false)
        .build(ConnectionManager::<PgConnection>::new(url))
        .map_err(|_| unreachable_message(url))
}
