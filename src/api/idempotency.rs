//! `Idempotency-Key` on creates, stored in PostgreSQL (`api_idempotency`).
//!
//! The key's row is inserted in the same transaction as the create: a
//! second request with the same key waits on the row's unique index until
//! the first commits (then it reads the stored answer) or rolls back (then
//! it runs itself). So two concurrent creates with one key make one object.
//! The stored answer has its one-time secrets removed (secrets are only
//! ever stored as digests); a replay says so with `secret_redacted`.

use diesel::prelude::*;
use diesel::sql_types::{Bytea, Int8, Text};
use rocket::http::Status;
use serde_json::Value;

use super::body::Answer;
use super::problem::Problem;

/// How long a stored answer is replayed.
pub const RETENTION_HOURS: i64 = 24;

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = Bytea)]
    request_digest: Vec<u8>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Int4>)]
    status: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Jsonb>)]
    response: Option<Value>,
}

/// Runs `create` once per (tenant, key): `create` returns the answer and
/// the answer to store (the same without one-time secrets). Without a key,
/// it just runs. Everything is one transaction.
pub fn once<F>(
    conn: &mut PgConnection,
    tenant_id: i64,
    key: Option<&str>,
    request_digest: &[u8],
    create: F,
) -> Result<Answer, Problem>
where
    F: FnOnce(&mut PgConnection) -> Result<(Answer, Value), Problem>,
{
    conn.transaction(|conn| {
        let Some(key) = key else {
            return create(conn).map(|(a, _)| a);
        };
        diesel::sql_query(format!(
            "DELETE FROM api_idempotency WHERE tenant_id = $1 AND idem_key = $2 \
             AND created_at < now() - interval '{RETENTION_HOURS} hours'"
        ))
        .bind::<Int8, _>(tenant_id)
        .bind::<Text, _>(key)
        .execute(conn)?;
        let inserted = diesel::sql_query(
            "INSERT INTO api_idempotency (tenant_id, idem_key, request_digest) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind::<Int8, _>(tenant_id)
        .bind::<Text, _>(key)
        .bind::<Bytea, _>(request_digest)
        .execute(conn)?;
        if inserted == 1 {
            let (answer, stored) = create(conn)?;
            diesel::sql_query(
                "UPDATE api_idempotency SET status = $3, response = $4 \
                 WHERE tenant_id = $1 AND idem_key = $2",
            )
            .bind::<Int8, _>(tenant_id)
            .bind::<Text, _>(key)
            .bind::<diesel::sql_types::Int4, _>(i32::from(answer.status.code))
            .bind::<diesel::sql_types::Jsonb, _>(&stored)
            .execute(conn)?;
            return Ok(answer);
        }
        let row: Stored = diesel::sql_query(
            "SELECT request_digest, status, response FROM api_idempotency \
             WHERE tenant_id = $1 AND idem_key = $2",
        )
        .bind::<Int8, _>(tenant_id)
        .bind::<Text, _>(key)
        .get_result(conn)?;
        if !crate::crypto::ct_eq(&row.request_digest, request_digest) {
            return Err(Problem::invalid(
                "Idempotency-Key",
                "this key was used with a different request in the last 24 hours",
            ));
        }
        let status = row
            .status
            .and_then(|s| u16::try_from(s).ok())
            .and_then(Status::from_code)
            .unwrap_or(Status::Ok);
        Ok(Answer {
            status,
            body: row.response.unwrap_or(Value::Null),
            etag: None,
            replayed: true,
        })
    })
}

/// `answer` with the one-time secret fields replaced by null, and
/// `secret_redacted: true`, for storing.
pub fn redact(answer: &Value, secret_fields: &[&str]) -> Value {
    let mut v = answer.clone();
    if let Value::Object(m) = &mut v {
        for f in secret_fields {
            if m.contains_key(*f) {
                m.insert((*f).to_string(), Value::Null);
            }
        }
        m.insert("secret_redacted".into(), Value::Bool(true));
    }
    v
}
