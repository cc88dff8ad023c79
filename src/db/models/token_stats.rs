//! Hourly counters of token-endpoint outcomes per app (`token_stats`).
//! Written in batches by the dashboard's stats flusher, never on the
//! token request itself.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Text};
use serde::Serialize;

/// Adds `issued` and `failed` to the hour `bucket` (Unix seconds, a whole
/// hour) of the app `client_id` in `tenant_id`. An unknown client adds nothing.
pub fn add(
    conn: &mut PgConnection,
    tenant_id: i64,
    client_id: &str,
    bucket: i64,
    issued: i64,
    failed: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "INSERT INTO token_stats (app_id, tenant_id, bucket, issued, failed) \
         SELECT a.id, a.tenant_id, to_timestamp($3), $4, $5 FROM apps a \
         WHERE a.tenant_id = $1 AND a.client_id = $2 \
         ON CONFLICT (app_id, bucket) DO UPDATE \
         SET issued = token_stats.issued + EXCLUDED.issued, \
             failed = token_stats.failed + EXCLUDED.failed",
    )
    .bind::<BigInt, _>(tenant_id)
    .bind::<Text, _>(client_id)
    .bind::<BigInt, _>(bucket)
    .bind::<BigInt, _>(issued)
    .bind::<BigInt, _>(failed)
    .execute(conn)
}

/// Issued and failed token requests of a tenant in a period.
#[derive(Debug, Clone, Default, Serialize, QueryableByName)]
pub struct Totals {
    #[diesel(sql_type = BigInt)]
    pub issued: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
}

/// Totals over the last `hours` hours (the current hour included).
pub fn totals(conn: &mut PgConnection, tenant_id: i64, hours: i64) -> QueryResult<Totals> {
    diesel::sql_query(
        "SELECT coalesce(sum(issued), 0)::bigint AS issued, coalesce(sum(failed), 0)::bigint AS failed \
         FROM token_stats WHERE tenant_id = $1 \
         AND bucket > date_trunc('hour', now()) - make_interval(hours => $2::int)",
    )
    .bind::<BigInt, _>(tenant_id)
    .bind::<BigInt, _>(hours)
    .get_result(conn)
}

/// One day of the chart.
#[derive(Debug, Clone, Serialize, QueryableByName)]
pub struct Day {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    pub issued: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
}

/// The last `days` days (UTC), oldest first, zeros included.
pub fn daily(conn: &mut PgConnection, tenant_id: i64, days: i64) -> QueryResult<Vec<Day>> {
    diesel::sql_query(
        "SELECT d::date AS day, coalesce(sum(s.issued), 0)::bigint AS issued, \
                coalesce(sum(s.failed), 0)::bigint AS failed \
         FROM generate_series(date_trunc('day', now() AT TIME ZONE 'UTC') - make_interval(days => $2::int - 1), \
                              date_trunc('day', now() AT TIME ZONE 'UTC'), interval '1 day') AS d \
         LEFT JOIN token_stats s ON s.tenant_id = $1 \
              AND s.bucket >= (d AT TIME ZONE 'UTC') AND s.bucket < ((d + interval '1 day') AT TIME ZONE 'UTC') \
         GROUP BY d ORDER BY d",
    )
    .bind::<BigInt, _>(tenant_id)
    .bind::<BigInt, _>(days)
    .load(conn)
}

/// The start of the hour containing `t`, in Unix seconds.
pub fn hour_bucket(t: DateTime<Utc>) -> i64 {
    t.timestamp() - t.timestamp().rem_euclid(3600)
}
