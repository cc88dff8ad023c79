use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::authorization_codes;

/// Codes live two minutes at most.
pub const CODE_TTL_SECS: i64 = 120;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = authorization_codes)]
pub struct AuthorizationCode {
    pub id: i64,
    pub tenant_id: i64,
    pub app_id: i64,
    pub end_user_id: i64,
    pub code_digest: Vec<u8>,
    /// The authorize request's `redirect_uri`, empty when it carried none
    /// (see `redirect_uri_sent`).
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub grant_id: Option<i64>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = authorization_codes)]
pub struct NewAuthorizationCode {
    pub tenant_id: i64,
    pub app_id: i64,
    pub end_user_id: i64,
    pub code_digest: Vec<u8>,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    /// Set by the caller with `expires_at` from one clock reading, so a
    /// code's lifetime is exactly `CODE_TTL_SECS` (the column's default,
    /// the transaction's start, could be earlier).
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl AuthorizationCode {
    /// Whether the authorize request carried a `redirect_uri`, so that the
    /// token request must carry one too (RFC 6749 §4.1.3). An empty column
    /// records "none was sent": no migration, and every code stored before
    /// this rule keeps requiring one, as it did.
    pub fn redirect_uri_sent(&self) -> bool {
        !self.redirect_uri.is_empty()
    }

    pub fn create(conn: &mut PgConnection, new: &NewAuthorizationCode) -> QueryResult<usize> {
        diesel::insert_into(authorization_codes::table)
            .values(new)
            .execute(conn)
    }

    /// Marks an unused code of this app used and returns it; `None` when it
    /// does not exist or was used already. The UPDATE is the single-use lock.
    pub fn consume(
        conn: &mut PgConnection,
        tenant_id: i64,
        app_id: i64,
        digest: &[u8],
    ) -> QueryResult<Option<AuthorizationCode>> {
        diesel::update(
            authorization_codes::table
                .filter(authorization_codes::code_digest.eq(digest))
                .filter(authorization_codes::tenant_id.eq(tenant_id))
                .filter(authorization_codes::app_id.eq(app_id))
                .filter(authorization_codes::used_at.is_null()),
        )
        .set(authorization_codes::used_at.eq(diesel::dsl::now))
        .returning(AuthorizationCode::as_returning())
        .get_result(conn)
        .optional()
    }

    pub fn find_by_digest(
        conn: &mut PgConnection,
        tenant_id: i64,
        app_id: i64,
        digest: &[u8],
    ) -> QueryResult<Option<AuthorizationCode>> {
        authorization_codes::table
            .filter(authorization_codes::code_digest.eq(digest))
            .filter(authorization_codes::tenant_id.eq(tenant_id))
            .filter(authorization_codes::app_id.eq(app_id))
            .select(AuthorizationCode::as_select())
            .first(conn)
            .optional()
    }

    pub fn set_grant(conn: &mut PgConnection, id: i64, grant_id: i64) -> QueryResult<usize> {
        diesel::update(authorization_codes::table.find(id))
            .set(authorization_codes::grant_id.eq(grant_id))
            .execute(conn)
    }
}
