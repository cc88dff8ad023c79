use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use chrono::Duration;

use crate::crypto::{self, TokenKind};
use crate::db::models::Tenant;
use crate::db::schema::{admin_sessions, admins, memberships, tenants};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = admins)]
pub struct Admin {
    pub id: i64,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = memberships)]
pub struct Membership {
    pub tenant_id: i64,
    pub admin_id: i64,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = crate::db::schema::admin_sessions)]
pub struct AdminSession {
    pub id: i64,
    pub admin_id: i64,
    pub token_digest: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ip: Option<String>,
}

/// An admin's role in one tenant, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Admin,
    Owner,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

impl Admin {
    pub fn create(conn: &mut PgConnection, email: &str, password_hash: &str) -> QueryResult<Admin> {
        diesel::insert_into(admins::table)
            .values((
                admins::email.eq(crate::db::models::end_user::normalize_email(email)),
                admins::password_hash.eq(password_hash),
            ))
            .returning(Admin::as_returning())
            .get_result(conn)
    }

    pub fn find_by_email(conn: &mut PgConnection, email: &str) -> QueryResult<Option<Admin>> {
        admins::table
            .filter(admins::email.eq(crate::db::models::end_user::normalize_email(email)))
            .select(Admin::as_select())
            .first(conn)
            .optional()
    }
}

impl Membership {
    pub fn add(
        conn: &mut PgConnection,
        tenant_id: i64,
        admin_id: i64,
        role: Role,
    ) -> QueryResult<usize> {
        diesel::insert_into(memberships::table)
            .values((
                memberships::tenant_id.eq(tenant_id),
                memberships::admin_id.eq(admin_id),
                memberships::role.eq(role.as_str()),
            ))
            .execute(conn)
    }
}

impl Admin {
    pub fn find(conn: &mut PgConnection, id: i64) -> QueryResult<Option<Admin>> {
        admins::table
            .find(id)
            .select(Admin::as_select())
            .first(conn)
            .optional()
    }

    pub fn set_password(
        conn: &mut PgConnection,
        id: i64,
        password_hash: &str,
    ) -> QueryResult<usize> {
        diesel::update(admins::table.find(id))
            .set(admins::password_hash.eq(password_hash))
            .execute(conn)
    }
}

/// How long an admin session lives: idle timeout and absolute lifetime.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle: Duration,
    pub lifetime: Duration,
}

impl AdminSession {
    /// Starts a session; returns the cookie value (only its digest is stored).
    pub fn create(
        conn: &mut PgConnection,
        admin_id: i64,
        policy: SessionPolicy,
        ip: Option<String>,
    ) -> QueryResult<String> {
        let token = crypto::generate(TokenKind::AdminSession);
        diesel::insert_into(admin_sessions::table)
            .values((
                admin_sessions::admin_id.eq(admin_id),
                admin_sessions::token_digest.eq(&token.digest),
                admin_sessions::expires_at.eq(Utc::now() + policy.lifetime),
                admin_sessions::ip.eq(ip),
            ))
            .execute(conn)?;
        Ok(token.value)
    }

    /// The admin a live session cookie belongs to. A session ends at its
    /// absolute expiry or after `policy.idle` without a request; a use
    /// refreshes `last_seen_at` (at most once a minute, to spare writes).
    pub fn authenticate(
        conn: &mut PgConnection,
        token: &str,
        policy: SessionPolicy,
    ) -> QueryResult<Option<(AdminSession, Admin)>> {
        if !crypto::looks_like(TokenKind::AdminSession, token) {
            return Ok(None);
        }
        let now = Utc::now();
        let found: Option<(AdminSession, Admin)> = admin_sessions::table
            .inner_join(admins::table)
            .filter(admin_sessions::token_digest.eq(crypto::digest(token)))
            .filter(admin_sessions::expires_at.gt(now))
            .filter(admin_sessions::last_seen_at.gt(now - policy.idle))
            .select((AdminSession::as_select(), Admin::as_select()))
            .first(conn)
            .optional()?;
        if let Some((session, _)) = &found {
            if session.last_seen_at < now - Duration::seconds(60) {
                diesel::update(admin_sessions::table.find(session.id))
                    .set(admin_sessions::last_seen_at.eq(now))
                    .execute(conn)?;
            }
        }
        Ok(found)
    }

    pub fn delete_by_token(conn: &mut PgConnection, token: &str) -> QueryResult<usize> {
        diesel::delete(
            admin_sessions::table.filter(admin_sessions::token_digest.eq(crypto::digest(token))),
        )
        .execute(conn)
    }

    /// Ends every session of an admin (after a password change).
    pub fn delete_for_admin(conn: &mut PgConnection, admin_id: i64) -> QueryResult<usize> {
        diesel::delete(admin_sessions::table.filter(admin_sessions::admin_id.eq(admin_id)))
            .execute(conn)
    }

    /// Removes sessions past their absolute expiry.
    pub fn delete_expired(conn: &mut PgConnection) -> QueryResult<usize> {
        diesel::delete(
            admin_sessions::table.filter(admin_sessions::expires_at.le(diesel::dsl::now)),
        )
        .execute(conn)
    }
}

/// A member of a tenant, for the members page.
#[derive(Debug, Clone, Serialize)]
pub struct MemberRow {
    pub admin_id: i64,
    pub email: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

/// Why a membership change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    Done,
    NotFound,
    LastOwner,
}

impl Membership {
    pub fn role_of(
        conn: &mut PgConnection,
        tenant_id: i64,
        admin_id: i64,
    ) -> QueryResult<Option<Role>> {
        let role: Option<String> = memberships::table
            .filter(memberships::tenant_id.eq(tenant_id))
            .filter(memberships::admin_id.eq(admin_id))
            .select(memberships::role)
            .first(conn)
            .optional()?;
        Ok(role.as_deref().and_then(Role::parse))
    }

    /// The tenants an admin belongs to, with the role in each, by name.
    pub fn tenants_of(
        conn: &mut PgConnection,
        admin_id: i64,
    ) -> QueryResult<Vec<(Tenant, String)>> {
        memberships::table
            .inner_join(tenants::table)
            .filter(memberships::admin_id.eq(admin_id))
            .order(tenants::name.asc())
            .select((Tenant::as_select(), memberships::role))
            .load(conn)
    }

    pub fn members(conn: &mut PgConnection, tenant_id: i64) -> QueryResult<Vec<MemberRow>> {
        let rows: Vec<(i64, String, String, DateTime<Utc>)> = memberships::table
            .inner_join(admins::table)
            .filter(memberships::tenant_id.eq(tenant_id))
            .order(admins::email.asc())
            .select((
                admins::id,
                admins::email,
                memberships::role,
                memberships::created_at,
            ))
            .load(conn)?;
        Ok(rows
            .into_iter()
            .map(|(admin_id, email, role, created_at)| MemberRow {
                admin_id,
                email,
                role,
                created_at,
            })
            .collect())
    }

    /// Locks the tenant's owner rows so that two concurrent changes cannot
    /// both remove "the other" owner; returns how many owners there are.
    fn lock_owners(conn: &mut PgConnection, tenant_id: i64) -> QueryResult<usize> {
        let owners: Vec<i64> = memberships::table
            .filter(memberships::tenant_id.eq(tenant_id))
            .filter(memberships::role.eq(Role::Owner.as_str()))
            .select(memberships::admin_id)
            .for_update()
            .load(conn)?;
        Ok(owners.len())
    }

    /// Changes a member's role; the last owner cannot be demoted. Runs in
    /// the caller's transaction.
    pub fn set_role(
        conn: &mut PgConnection,
        tenant_id: i64,
        admin_id: i64,
        role: Role,
    ) -> QueryResult<MembershipChange> {
        let owners = Self::lock_owners(conn, tenant_id)?;
        let Some(current) = Self::role_of(conn, tenant_id, admin_id)? else {
            return Ok(MembershipChange::NotFound);
        };
        if current == Role::Owner && role != Role::Owner && owners <= 1 {
            return Ok(MembershipChange::LastOwner);
        }
        diesel::update(
            memberships::table
                .filter(memberships::tenant_id.eq(tenant_id))
                .filter(memberships::admin_id.eq(admin_id)),
        )
        .set(memberships::role.eq(role.as_str()))
        .execute(conn)?;
        Ok(MembershipChange::Done)
    }

    /// Removes a member; the last owner cannot be removed. Runs in the
    /// caller's transaction.
    pub fn remove(
        conn: &mut PgConnection,
        tenant_id: i64,
        admin_id: i64,
    ) -> QueryResult<MembershipChange> {
        let owners = Self::lock_owners(conn, tenant_id)?;
        let Some(current) = Self::role_of(conn, tenant_id, admin_id)? else {
            return Ok(MembershipChange::NotFound);
        };
        if current == Role::Owner && owners <= 1 {
            return Ok(MembershipChange::LastOwner);
        }
        diesel::delete(
            memberships::table
                .filter(memberships::tenant_id.eq(tenant_id))
                .filter(memberships::admin_id.eq(admin_id)),
        )
        .execute(conn)?;
        Ok(MembershipChange::Done)
    }
}
