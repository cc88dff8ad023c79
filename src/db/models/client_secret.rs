use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::crypto::{self, TokenKind};
use crate::db::schema::{apps, client_secrets};

/// The grace periods a rotation may leave the older secrets (seconds, and
/// how the dashboard names them): now, 1 hour, 24 hours, 7 days. The
/// dashboard and the tenant API offer exactly these.
pub const GRACE_CHOICES: [(i64, &str); 4] = [
    (0, "immediately"),
    (3600, "1 hour"),
    (86400, "24 hours"),
    (7 * 86400, "7 days"),
];

/// The grace choice of `secs`, if it is one.
pub fn grace_choice(secs: i64) -> Option<(i64, &'static str)> {
    GRACE_CHOICES.iter().copied().find(|(s, _)| *s == secs)
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = client_secrets)]
pub struct ClientSecret {
    pub id: i64,
    pub tenant_id: i64,
    pub app_id: i64,
    #[serde(skip)]
    pub secret_digest: Vec<u8>,
    pub hint: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The columns of a secret that client authentication reads. The hot
/// paths select only these, not the whole row: every column PostgreSQL
/// returns and diesel decodes is paid for on each request.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = client_secrets)]
pub struct SecretKey {
    pub id: i64,
    pub secret_digest: Vec<u8>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl SecretKey {
    /// Whether a use at `now` is to be stamped: the last stamp, as read, is
    /// more than a minute old (`ClientSecret::touch` writes no more often).
    pub fn stamp_due(&self, now: DateTime<Utc>) -> bool {
        self.last_used_at
            .map_or(true, |t| t < now - Duration::seconds(60))
    }

    /// Compares `presented` with every candidate in constant time per
    /// candidate, without stopping at the first match.
    pub fn check(candidates: &[SecretKey], presented: &str, now: DateTime<Utc>) -> SecretCheck {
        let digest = crypto::digest(presented);
        let mut result = SecretCheck::Invalid;
        for s in candidates {
            if crypto::ct_eq(&s.secret_digest, &digest) && s.revoked_at.is_none() {
                result = if s.expires_at.is_some_and(|e| e <= now) {
                    SecretCheck::Expired(s.id)
                } else {
                    SecretCheck::Valid(s.id)
                };
            }
        }
        result
    }
}

/// How a presented secret matched the app's secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretCheck {
    Valid(i64),
    /// Right value, but its grace period after a rotation has ended.
    Expired(i64),
    Invalid,
}

impl ClientSecret {
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else if self.expires_at.is_some() {
            "expiring"
        } else {
            "active"
        }
    }

    /// Creates a new secret for an app; returns the row and the value, shown once.
    pub fn create(
        conn: &mut PgConnection,
        tenant_id: i64,
        app_id: i64,
    ) -> QueryResult<(ClientSecret, String)> {
        let secret = crypto::generate(TokenKind::ClientSecret);
        let row = diesel::insert_into(client_secrets::table)
            .values((
                client_secrets::tenant_id.eq(tenant_id),
                client_secrets::app_id.eq(app_id),
                client_secrets::secret_digest.eq(&secret.digest),
                client_secrets::hint.eq(&secret.hint),
            ))
            .returning(ClientSecret::as_returning())
            .get_result(conn)?;
        Ok((row, secret.value))
    }

    /// Issues a new secret and limits every older live secret of the app to
    /// `grace` from now (zero: they stop working at once). One transaction.
    pub fn rotate(
        conn: &mut PgConnection,
        tenant_id: i64,
        app_id: i64,
        grace: Duration,
    ) -> QueryResult<(ClientSecret, String)> {
        conn.transaction(|conn| {
            lock_app(conn, tenant_id, app_id)?;
            let until = Utc::now() + grace;
            diesel::update(
                client_secrets::table
                    .filter(client_secrets::tenant_id.eq(tenant_id))
                    .filter(client_secrets::app_id.eq(app_id))
                    .filter(client_secrets::revoked_at.is_null())
                    .filter(
                        client_secrets::expires_at
                            .is_null()
                            .or(client_secrets::expires_at.gt(until)),
                    ),
            )
            .set(client_secrets::expires_at.eq(until))
            .execute(conn)?;
            Self::create(conn, tenant_id, app_id)
        })
    }

    pub fn revoke(
        conn: &mut PgConnection,
        tenant_id: i64,
        app_id: i64,
        id: i64,
    ) -> QueryResult<usize> {
        conn.transaction(|conn| {
            lock_app(conn, tenant_id, app_id)?;
            diesel::update(
                client_secrets::table
                    .filter(client_secrets::tenant_id.eq(tenant_id))
                    .filter(client_secrets::app_id.eq(app_id))
                    .filter(client_secrets::id.eq(id))
                    .filter(client_secrets::revoked_at.is_null()),
            )
            .set(client_secrets::revoked_at.eq(diesel::dsl::now))
            .execute(conn)
        })
    }

    pub fn list_for_app(
        conn: &mut PgConnection,
        tenant_id: i64,
        app_id: i64,
    ) -> QueryResult<Vec<ClientSecret>> {
        client_secrets::table
            .filter(client_secrets::tenant_id.eq(tenant_id))
            .filter(client_secrets::app_id.eq(app_id))
            .order(client_secrets::created_at.desc())
            .select(ClientSecret::as_select())
            .load(conn)
    }

    /// The unrevoked secrets of an app, for authenticating it.
    pub fn live_for_app(conn: &mut PgConnection, app_id: i64) -> QueryResult<Vec<ClientSecret>> {
        client_secrets::table
            .filter(client_secrets::app_id.eq(app_id))
            .filter(client_secrets::revoked_at.is_null())
            .select(ClientSecret::as_select())
            .load(conn)
    }

    /// Records a use; written at most once a minute per secret to keep the hot path read-only.
    pub fn touch(conn: &mut PgConnection, id: i64) -> QueryResult<usize> {
        let stale = Utc::now() - Duration::seconds(60);
        diesel::update(
            client_secrets::table
                .filter(client_secrets::id.eq(id))
                .filter(
                    client_secrets::last_used_at
                        .is_null()
                        .or(client_secrets::last_used_at.lt(stale)),
                ),
        )
        .set(client_secrets::last_used_at.eq(diesel::dsl::now))
        .execute(conn)
    }
}

/// Locks the app's row (`FOR NO KEY UPDATE`) before any of its secrets'. A
/// change to a secret renews the app's `auth_version` through a trigger
/// (migration 000004), which updates the app's row after the secret's;
/// deleting the app locks the two the other way round (the app, then its
/// secrets by cascade). Taking the app's lock first keeps one order.
fn lock_app(conn: &mut PgConnection, tenant_id: i64, app_id: i64) -> QueryResult<()> {
    apps::table
        .filter(apps::id.eq(app_id))
        .filter(apps::tenant_id.eq(tenant_id))
        .select(apps::id)
        .for_no_key_update()
        .first::<i64>(conn)
        .optional()
        .map(|_| ())
}
