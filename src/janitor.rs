//! Housekeeping: purges what no one can use any more, in small batches.
//!
//! - authorization codes expired for more than a day (a day of replay
//!   detection is kept: a replayed code still revokes its grant);
//! - access and refresh tokens expired or revoked longer than
//!   `token_retention_days` ago (default 30);
//! - expired creator and admin sessions;
//! - audit events older than `audit_retention_days` (default 365);
//! - API idempotency keys older than their replay window (24 h,
//!   `api::idempotency::RETENTION_HOURS`): past it a key is free again, and
//!   only the janitor would ever delete a key that is not reused.
//!
//! Grants stay: they are the install history the dashboard shows, and a
//! grant without tokens is simply an ended install.
//!
//! Every statement deletes at most `BATCH` rows chosen with `FOR UPDATE SKIP
//! LOCKED` and commits on its own, so the janitor never holds a lock for long
//! and never waits behind a refresh rotation.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use rocket::fairing::{Fairing, Info, Kind};
use rocket::{Orbit, Rocket};
use serde::Serialize;

use crate::config::AppConfig;
use crate::db::Db;
use crate::error::Error;

/// Rows deleted per statement.
pub const BATCH: i64 = 1000;

/// How long a used or expired authorization code is kept for replay detection.
pub const CODE_RETENTION: chrono::Duration = chrono::Duration::days(1);

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub tokens: chrono::Duration,
    pub audit: chrono::Duration,
}

impl Retention {
    pub fn from_config(config: &AppConfig) -> Self {
        Retention {
            tokens: chrono::Duration::days(config.token_retention_days.into()),
            audit: chrono::Duration::days(config.audit_retention_days.into()),
        }
    }
}

/// What one run deleted, per table.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub authorization_codes: u64,
    pub access_tokens: u64,
    pub refresh_tokens: u64,
    pub end_user_sessions: u64,
    pub admin_sessions: u64,
    pub audit_events: u64,
    pub api_idempotency: u64,
    /// Delegated sign-in: expired login requests and remembered logins.
    pub login_requests: u64,
    pub login_sessions: u64,
}

impl Report {
    pub fn total(&self) -> u64 {
        self.authorization_codes
            + self.access_tokens
            + self.refresh_tokens
            + self.end_user_sessions
            + self.admin_sessions
            + self.audit_events
            + self.api_idempotency
            + self.login_requests
            + self.login_sessions
    }
}

/// Deletes rows of `table` matching `condition` (which uses `$1` for the
/// cut-off), `batch` at a time, until none is left.
fn purge_table(
    conn: &mut PgConnection,
    table: &'static str,
    condition: &'static str,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> QueryResult<u64> {
    purge_table_by(conn, table, "id", condition, cutoff, batch)
}

/// `purge_table` for a table whose primary key is `key` (a column list).
fn purge_table_by(
    conn: &mut PgConnection,
    table: &'static str,
    key: &'static str,
    condition: &'static str,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> QueryResult<u64> {
    let sql = format!(
        "DELETE FROM {table} WHERE ({key}) IN \
         (SELECT {key} FROM {table} WHERE {condition} LIMIT $2 FOR UPDATE SKIP LOCKED)"
    );
    let mut total = 0u64;
    loop {
        let n = diesel::sql_query(&sql)
            .bind::<Timestamptz, _>(cutoff)
            .bind::<BigInt, _>(batch)
            .execute(conn)?;
        total += n as u64;
        if (n as i64) < batch {
            return Ok(total);
        }
    }
}

/// One janitor pass, as of `now`.
pub fn purge(
    conn: &mut PgConnection,
    retention: Retention,
    now: DateTime<Utc>,
    batch: i64,
) -> QueryResult<Report> {
    let token_cutoff = now - retention.tokens;
    Ok(Report {
        authorization_codes: purge_table(
            conn,
            "authorization_codes",
            "expires_at < $1",
            now - CODE_RETENTION,
            batch,
        )?,
        // Refresh tokens first: deleting an access token rewrites the
        // refresh token pointing at it (ON DELETE SET NULL).
        refresh_tokens: purge_table(
            conn,
            "refresh_tokens",
            "(expires_at < $1 OR revoked_at < $1)",
            token_cutoff,
            batch,
        )?,
        access_tokens: purge_table(
            conn,
            "access_tokens",
            "(expires_at < $1 OR revoked_at < $1)",
            token_cutoff,
            batch,
        )?,
        end_user_sessions: purge_table(conn, "end_user_sessions", "expires_at < $1", now, batch)?,
        admin_sessions: purge_table(conn, "admin_sessions", "expires_at < $1", now, batch)?,
        login_requests: purge_table(conn, "login_requests", "expires_at < $1", now, batch)?,
        login_sessions: purge_table(conn, "login_sessions", "expires_at < $1", now, batch)?,
        api_idempotency: purge_table_by(
            conn,
            "api_idempotency",
            "tenant_id, idem_key",
            "created_at < $1",
            now - chrono::Duration::hours(crate::api::idempotency::RETENTION_HOURS),
            batch,
        )?,
        // Audit events last: tests/janitor.rs waits for them to see a whole pass.
        audit_events: purge_table(
            conn,
            "audit_events",
            "created_at < $1",
            now - retention.audit,
            batch,
        )?,
    })
}

/// Runs `purge` on the pool, off the async workers.
pub async fn run_once(db: &Db, retention: Retention) -> Result<Report, Error> {
    db.run(move |conn| purge(conn, retention, Utc::now(), BATCH).map_err(Error::from))
        .await
}

/// The background janitor: a liftoff fairing that runs a pass every
/// `janitor_interval_secs` (the first one interval after start) until the
/// server shuts down.
pub struct Janitor {
    interval: Option<Duration>,
    retention: Retention,
}

impl Janitor {
    pub fn from_config(config: &AppConfig) -> Self {
        Janitor {
            interval: (config.janitor_interval_secs > 0)
                .then(|| Duration::from_secs(config.janitor_interval_secs)),
            retention: Retention::from_config(config),
        }
    }
}

#[rocket::async_trait]
impl Fairing for Janitor {
    fn info(&self) -> Info {
        Info {
            name: "janitor",
            kind: Kind::Liftoff,
        }
    }

    async fn on_liftoff(&self, rocket: &Rocket<Orbit>) {
        let (Some(interval), Some(db)) = (self.interval, rocket.state::<Db>().cloned()) else {
            return;
        };
        let retention = self.retention;
        let shutdown = rocket.shutdown();
        rocket::tokio::spawn(async move {
            loop {
                rocket::tokio::select! {
                    _ = rocket::tokio::time::sleep(interval) => {}
                    _ = shutdown.clone() => break,
                }
                match run_once(&db, retention).await {
                    Ok(report) => tracing::info!(
                        deleted = report.total(),
                        codes = report.authorization_codes,
                        access_tokens = report.access_tokens,
                        refresh_tokens = report.refresh_tokens,
                        end_user_sessions = report.end_user_sessions,
                        admin_sessions = report.admin_sessions,
                        audit_events = report.audit_events,
                        api_idempotency = report.api_idempotency,
                        "janitor pass"
                    ),
                    Err(e) => tracing::warn!(error = %e, "janitor pass failed; will retry"),
                }
            }
        });
    }
}
