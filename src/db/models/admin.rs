use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{admins, memberships};

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

pub use crate::db::schema::admin_sessions::table as admin_sessions_table;

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
