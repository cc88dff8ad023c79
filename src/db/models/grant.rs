use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::models::NewAuditEvent;
use crate::db::schema::{access_tokens, authorization_codes, grants, refresh_tokens};

/// One install of an app by a creator: one token family.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = grants)]
pub struct Grant {
    pub id: i64,
    pub tenant_id: i64,
    pub app_id: i64,
    pub end_user_id: i64,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

impl Grant {
    pub fn create(
        conn: &mut PgConnection,
        tenant_id: i64,
        app_id: i64,
        end_user_id: i64,
        scopes: &[String],
    ) -> QueryResult<Grant> {
        diesel::insert_into(grants::table)
            .values((
                grants::tenant_id.eq(tenant_id),
                grants::app_id.eq(app_id),
                grants::end_user_id.eq(end_user_id),
                grants::scopes.eq(scopes),
            ))
            .returning(Grant::as_returning())
            .get_result(conn)
    }

    /// Locks the grant row for the rest of the transaction, serialising
    /// every rotation and revocation of one token family.
    /// Records a refresh of the grant `id` (the caller holds its lock).
    pub fn stamp_refreshed(conn: &mut PgConnection, id: i64) -> QueryResult<usize> {
        diesel::update(grants::table.find(id))
            .set(grants::last_refreshed_at.eq(diesel::dsl::now))
            .execute(conn)
    }

    pub fn lock(conn: &mut PgConnection, tenant_id: i64, id: i64) -> QueryResult<Option<Grant>> {
        grants::table
            .filter(grants::tenant_id.eq(tenant_id))
            .filter(grants::id.eq(id))
            .select(Grant::as_select())
            .for_update()
            .first(conn)
            .optional()
    }

    pub fn find(conn: &mut PgConnection, tenant_id: i64, id: i64) -> QueryResult<Option<Grant>> {
        grants::table
            .filter(grants::tenant_id.eq(tenant_id))
            .filter(grants::id.eq(id))
            .select(Grant::as_select())
            .first(conn)
            .optional()
    }

    /// Revokes a grant and every token of its family. Returns false when it
    /// was revoked already. Callers run it inside their transaction.
    pub fn revoke(
        conn: &mut PgConnection,
        tenant_id: i64,
        id: i64,
        reason: &str,
    ) -> QueryResult<bool> {
        let changed = diesel::update(
            grants::table
                .filter(grants::tenant_id.eq(tenant_id))
                .filter(grants::id.eq(id))
                .filter(grants::revoked_at.is_null()),
        )
        .set((
            grants::revoked_at.eq(diesel::dsl::now),
            grants::revoked_reason.eq(reason),
        ))
        .execute(conn)?;
        diesel::update(
            access_tokens::table
                .filter(access_tokens::tenant_id.eq(tenant_id))
                .filter(access_tokens::grant_id.eq(id))
                .filter(access_tokens::revoked_at.is_null()),
        )
        .set(access_tokens::revoked_at.eq(diesel::dsl::now))
        .execute(conn)?;
        diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::tenant_id.eq(tenant_id))
                .filter(refresh_tokens::grant_id.eq(id))
                .filter(refresh_tokens::revoked_at.is_null()),
        )
        .set(refresh_tokens::revoked_at.eq(diesel::dsl::now))
        .execute(conn)?;
        if changed > 0 {
            // An uninstall is forgotten consent: a reinstall asks again.
            diesel::sql_query(
                "DELETE FROM consents c USING grants g WHERE g.id = $1 AND g.tenant_id = $2 \
                 AND c.tenant_id = g.tenant_id AND c.app_id = g.app_id AND c.end_user_id = g.end_user_id",
            )
            .bind::<diesel::sql_types::BigInt, _>(id)
            .bind::<diesel::sql_types::BigInt, _>(tenant_id)
            .execute(conn)?;
        }
        Ok(changed > 0)
    }

    /// Revokes every live grant matching `filter` (an app's or a creator's), in one transaction.
    pub fn revoke_many(
        conn: &mut PgConnection,
        tenant_id: i64,
        ids: &[i64],
        reason: &str,
    ) -> QueryResult<usize> {
        conn.transaction(|conn| {
            let mut n = 0;
            for id in ids {
                if Grant::revoke(conn, tenant_id, *id, reason)? {
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    pub fn live_ids_for_app(
        conn: &mut PgConnection,
        tenant_id: i64,
        app_id: i64,
    ) -> QueryResult<Vec<i64>> {
        grants::table
            .filter(grants::tenant_id.eq(tenant_id))
            .filter(grants::app_id.eq(app_id))
            .filter(grants::revoked_at.is_null())
            .select(grants::id)
            .load(conn)
    }

    pub fn live_ids_for_end_user(
        conn: &mut PgConnection,
        tenant_id: i64,
        end_user_id: i64,
    ) -> QueryResult<Vec<i64>> {
        grants::table
            .filter(grants::tenant_id.eq(tenant_id))
            .filter(grants::end_user_id.eq(end_user_id))
            .filter(grants::revoked_at.is_null())
            .select(grants::id)
            .load(conn)
    }

    /// Revokes every live grant of an app and voids its unused
    /// authorization codes, so that a code issued a moment before cannot
    /// start a new install afterwards. One transaction.
    pub fn revoke_all_for_app(
        conn: &mut PgConnection,
        tenant_id: i64,
        app_id: i64,
        reason: &str,
    ) -> QueryResult<usize> {
        conn.transaction(|conn| {
            diesel::update(
                authorization_codes::table
                    .filter(authorization_codes::tenant_id.eq(tenant_id))
                    .filter(authorization_codes::app_id.eq(app_id))
                    .filter(authorization_codes::used_at.is_null()),
            )
            .set(authorization_codes::used_at.eq(diesel::dsl::now))
            .execute(conn)?;
            let ids = Grant::live_ids_for_app(conn, tenant_id, app_id)?;
            Grant::revoke_many(conn, tenant_id, &ids, reason)
        })
    }

    /// The same for every install of one creator.
    pub fn revoke_all_for_end_user(
        conn: &mut PgConnection,
        tenant_id: i64,
        end_user_id: i64,
        reason: &str,
    ) -> QueryResult<usize> {
        conn.transaction(|conn| {
            diesel::update(
                authorization_codes::table
                    .filter(authorization_codes::tenant_id.eq(tenant_id))
                    .filter(authorization_codes::end_user_id.eq(end_user_id))
                    .filter(authorization_codes::used_at.is_null()),
            )
            .set(authorization_codes::used_at.eq(diesel::dsl::now))
            .execute(conn)?;
            // A creator whose installs all go is forgotten by delegated
            // sign-in too: remembered logins and consents end with them.
            super::login::LoginSession::end_all(conn, tenant_id, end_user_id)?;
            super::login::Consent::forget_all(conn, tenant_id, end_user_id)?;
            super::login::LoginRequest::expire_for_end_user(conn, tenant_id, end_user_id)?;
            let ids = Grant::live_ids_for_end_user(conn, tenant_id, end_user_id)?;
            Grant::revoke_many(conn, tenant_id, &ids, reason)
        })
    }
}

/// The revocation flows of installs, shared by the dashboard and the tenant
/// API: each is one transaction that revokes and writes its audit row.
/// `audit` carries the caller (actor, IP, details such as an API key's id);
/// the flow names the action and the object and adds what it did.
impl Grant {
    /// Revokes one install. `None` when the tenant has no such install;
    /// `Some(false)` when it was revoked already (nothing is audited then).
    pub fn revoke_audited(
        conn: &mut PgConnection,
        tenant_id: i64,
        id: i64,
        reason: &str,
        audit: NewAuditEvent,
    ) -> QueryResult<Option<bool>> {
        conn.transaction(|conn| {
            let Some(grant) = Grant::lock(conn, tenant_id, id)? else {
                return Ok(None);
            };
            let changed = Grant::revoke(conn, tenant_id, id, reason)?;
            if changed {
                audit
                    .action("grant.revoked")
                    .object("grant", id)
                    .merge_details(serde_json::json!({
                        "app_id": grant.app_id, "end_user_id": grant.end_user_id,
                    }))
                    .insert(conn)?;
            }
            Ok(Some(changed))
        })
    }

    /// Revokes every install of an app (see `revoke_all_for_app`), audited.
    pub fn revoke_all_for_app_audited(
        conn: &mut PgConnection,
        tenant_id: i64,
        app_id: i64,
        reason: &str,
        audit: NewAuditEvent,
    ) -> QueryResult<usize> {
        conn.transaction(|conn| {
            let n = Grant::revoke_all_for_app(conn, tenant_id, app_id, reason)?;
            audit
                .action("grant.revoked_all_for_app")
                .object("app", app_id)
                .merge_details(serde_json::json!({"revoked": n}))
                .insert(conn)?;
            Ok(n)
        })
    }

    /// Revokes every install of a creator, audited.
    pub fn revoke_all_for_end_user_audited(
        conn: &mut PgConnection,
        tenant_id: i64,
        end_user_id: i64,
        reason: &str,
        audit: NewAuditEvent,
    ) -> QueryResult<usize> {
        conn.transaction(|conn| {
            let n = Grant::revoke_all_for_end_user(conn, tenant_id, end_user_id, reason)?;
            audit
                .action("grant.revoked_all_for_creator")
                .object("end_user", end_user_id)
                .merge_details(serde_json::json!({"revoked": n}))
                .insert(conn)?;
            Ok(n)
        })
    }
}
