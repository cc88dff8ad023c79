use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::crypto::{self, TokenKind};
use crate::db::models::{Membership, Role};
use crate::db::schema::{admin_invites, memberships};

/// How long an invitation link stays valid.
pub const INVITE_TTL_DAYS: i64 = 7;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = admin_invites)]
pub struct AdminInvite {
    pub id: i64,
    pub tenant_id: i64,
    pub email: String,
    pub role: String,
    #[serde(skip)]
    pub token_digest: Vec<u8>,
    pub invited_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub accepted_by: Option<i64>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What happened to an acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    Joined,
    /// The admin was a member already; the invitation is used up anyway.
    AlreadyMember,
}

impl AdminInvite {
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        if self.accepted_at.is_some() {
            "accepted"
        } else if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= now {
            "expired"
        } else {
            "pending"
        }
    }

    /// Creates an invitation; returns the row and the token for the link (shown once).
    pub fn create(
        conn: &mut PgConnection,
        tenant_id: i64,
        email: &str,
        role: Role,
        invited_by: i64,
    ) -> QueryResult<(AdminInvite, String)> {
        let token = crypto::generate(TokenKind::Invite);
        let row = diesel::insert_into(admin_invites::table)
            .values((
                admin_invites::tenant_id.eq(tenant_id),
                admin_invites::email.eq(crate::db::models::end_user::normalize_email(email)),
                admin_invites::role.eq(role.as_str()),
                admin_invites::token_digest.eq(&token.digest),
                admin_invites::invited_by.eq(invited_by),
                admin_invites::expires_at.eq(Utc::now() + Duration::days(INVITE_TTL_DAYS)),
            ))
            .returning(AdminInvite::as_returning())
            .get_result(conn)?;
        Ok((row, token.value))
    }

    /// A usable (pending, unexpired) invitation by its link token.
    pub fn find_usable(conn: &mut PgConnection, token: &str) -> QueryResult<Option<AdminInvite>> {
        if !crypto::looks_like(TokenKind::Invite, token) {
            return Ok(None);
        }
        admin_invites::table
            .filter(admin_invites::token_digest.eq(crypto::digest(token)))
            .filter(admin_invites::accepted_at.is_null())
            .filter(admin_invites::revoked_at.is_null())
            .filter(admin_invites::expires_at.gt(diesel::dsl::now))
            .select(AdminInvite::as_select())
            .first(conn)
            .optional()
    }

    pub fn list(conn: &mut PgConnection, tenant_id: i64) -> QueryResult<Vec<AdminInvite>> {
        admin_invites::table
            .filter(admin_invites::tenant_id.eq(tenant_id))
            .order(admin_invites::created_at.desc())
            .limit(50)
            .select(AdminInvite::as_select())
            .load(conn)
    }

    pub fn revoke(conn: &mut PgConnection, tenant_id: i64, id: i64) -> QueryResult<usize> {
        diesel::update(
            admin_invites::table
                .filter(admin_invites::tenant_id.eq(tenant_id))
                .filter(admin_invites::id.eq(id))
                .filter(admin_invites::accepted_at.is_null())
                .filter(admin_invites::revoked_at.is_null()),
        )
        .set(admin_invites::revoked_at.eq(diesel::dsl::now))
        .execute(conn)
    }

    /// Uses the invitation up and adds the membership, in the caller's
    /// transaction. `None` when it was used, revoked or expired meanwhile.
    pub fn accept(
        conn: &mut PgConnection,
        invite_id: i64,
        admin_id: i64,
    ) -> QueryResult<Option<(AdminInvite, Acceptance)>> {
        let claimed: Option<AdminInvite> = diesel::update(
            admin_invites::table
                .filter(admin_invites::id.eq(invite_id))
                .filter(admin_invites::accepted_at.is_null())
                .filter(admin_invites::revoked_at.is_null())
                .filter(admin_invites::expires_at.gt(diesel::dsl::now)),
        )
        .set((
            admin_invites::accepted_at.eq(diesel::dsl::now),
            admin_invites::accepted_by.eq(admin_id),
        ))
        .returning(AdminInvite::as_returning())
        .get_result(conn)
        .optional()?;
        let Some(invite) = claimed else {
            return Ok(None);
        };
        let exists: i64 = memberships::table
            .filter(memberships::tenant_id.eq(invite.tenant_id))
            .filter(memberships::admin_id.eq(admin_id))
            .count()
            .get_result(conn)?;
        if exists > 0 {
            return Ok(Some((invite, Acceptance::AlreadyMember)));
        }
        let role = Role::parse(&invite.role).unwrap_or(Role::Viewer);
        Membership::add(conn, invite.tenant_id, admin_id, role)?;
        Ok(Some((invite, Acceptance::Joined)))
    }
}
