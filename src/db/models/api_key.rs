//! Tenant API keys (`kak_`): 256 random bits, shown once; only the SHA-256
//! digest is stored, looked up by digest within the tenant and compared in
//! constant time.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::crypto::{self, TokenKind};
use crate::db::schema::api_keys;

/// What a key may do. `read`: every GET; `write`: every change; `login`:
/// only the delegated sign-in calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApiScope {
    Read,
    Write,
    Login,
}

impl ApiScope {
    pub const ALL: [ApiScope; 3] = [ApiScope::Read, ApiScope::Write, ApiScope::Login];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::Read => "read",
            ApiScope::Write => "write",
            ApiScope::Login => "login",
        }
    }

    pub fn parse(s: &str) -> Option<ApiScope> {
        ApiScope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    #[serde(skip)]
    pub key_digest: Vec<u8>,
    pub hint: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_by: String,
}

/// A key to create: checked by [`NewApiKey::validate`].
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub scopes: Vec<ApiScope>,
    pub expires_in_days: Option<i64>,
    /// Who made it: `admin:<email>` or `cli`.
    pub created_by: String,
}

/// The longest expiry a key can be given, in days.
pub const MAX_EXPIRY_DAYS: i64 = 3650;

impl NewApiKey {
    /// The one rule for a key's fields, for the dashboard and the CLI.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err("The key name must have 1 to 100 characters.".into());
        }
        if name.chars().any(char::is_control) {
            return Err("The key name must not contain control characters.".into());
        }
        if self.scopes.is_empty() {
            return Err("Give the key at least one scope: read, write or login.".into());
        }
        if let Some(d) = self.expires_in_days {
            if !(1..=MAX_EXPIRY_DAYS).contains(&d) {
                return Err(format!(
                    "The expiry must be 1 to {MAX_EXPIRY_DAYS} days from now."
                ));
            }
        }
        Ok(())
    }
}

/// Why a presented key was refused (all answer 401 alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Unknown,
    Revoked,
    Expired,
}

impl ApiKey {
    /// Whether the key may do what only owners do (choosing who signs
    /// creators in): it was made with the command line (the operator), or
    /// by an admin who is an owner of the tenant now.
    pub fn acts_as_owner(&self, conn: &mut PgConnection) -> QueryResult<bool> {
        if self.created_by == "cli" {
            return Ok(true);
        }
        let Some(email) = self.created_by.strip_prefix("admin:") else {
            return Ok(false);
        };
        let Some(admin) = crate::db::models::Admin::find_by_email(conn, email)? else {
            return Ok(false);
        };
        let role = crate::db::models::Membership::role_of(conn, self.tenant_id, admin.id)?;
        Ok(role == Some(crate::db::models::Role::Owner))
    }

    pub fn has_scope(&self, scope: ApiScope) -> bool {
        self.scopes.iter().any(|s| s == scope.as_str())
    }

    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        }
    }

    /// Creates a key (`new` checked by `validate` first); returns the row
    /// and the value, shown this once.
    pub fn create(
        conn: &mut PgConnection,
        tenant_id: i64,
        new: &NewApiKey,
    ) -> QueryResult<(ApiKey, String)> {
        let secret = crypto::generate(TokenKind::ApiKey);
        let mut scopes: Vec<String> = ApiScope::ALL
            .into_iter()
            .filter(|s| new.scopes.contains(s))
            .map(|s| s.as_str().to_string())
            .collect();
        scopes.dedup();
        let expires_at = new.expires_in_days.map(|d| Utc::now() + Duration::days(d));
        let row = diesel::insert_into(api_keys::table)
            .values((
                api_keys::tenant_id.eq(tenant_id),
                api_keys::name.eq(new.name.trim()),
                api_keys::key_digest.eq(&secret.digest),
                api_keys::hint.eq(&secret.hint),
                api_keys::scopes.eq(&scopes),
                api_keys::expires_at.eq(expires_at),
                api_keys::created_by.eq(&new.created_by),
            ))
            .returning(ApiKey::as_returning())
            .get_result(conn)?;
        Ok((row, secret.value))
    }

    /// The key of this tenant whose value is `presented`: looked up by
    /// digest within the tenant, compared in constant time, and refused
    /// when revoked or expired. Another tenant's key is `Unknown`.
    pub fn authenticate(
        conn: &mut PgConnection,
        tenant_id: i64,
        presented: &str,
        now: DateTime<Utc>,
    ) -> QueryResult<Result<ApiKey, KeyRefusal>> {
        if !crypto::looks_like(TokenKind::ApiKey, presented) {
            return Ok(Err(KeyRefusal::Unknown));
        }
        let digest = crypto::digest(presented);
        let found = api_keys::table
            .filter(api_keys::tenant_id.eq(tenant_id))
            .filter(api_keys::key_digest.eq(&digest))
            .select(ApiKey::as_select())
            .first(conn)
            .optional()?;
        Ok(match found {
            Some(k) if crypto::ct_eq(&k.key_digest, &digest) => {
                if k.revoked_at.is_some() {
                    Err(KeyRefusal::Revoked)
                } else if k.expires_at.is_some_and(|e| e <= now) {
                    Err(KeyRefusal::Expired)
                } else {
                    Ok(k)
                }
            }
            _ => Err(KeyRefusal::Unknown),
        })
    }

    /// Whether a use at `now` is to be stamped: the stamp as read is more
    /// than a minute old. `touch` writes no more often, so a busy key costs
    /// one UPDATE a minute, not one per request.
    pub fn stamp_due(&self, now: DateTime<Utc>) -> bool {
        self.last_used_at
            .map_or(true, |t| t < now - Duration::seconds(60))
    }

    pub fn touch(conn: &mut PgConnection, tenant_id: i64, id: i64) -> QueryResult<usize> {
        let stale = Utc::now() - Duration::seconds(60);
        diesel::update(
            api_keys::table
                .filter(api_keys::tenant_id.eq(tenant_id))
                .filter(api_keys::id.eq(id))
                .filter(
                    api_keys::last_used_at
                        .is_null()
                        .or(api_keys::last_used_at.lt(stale)),
                ),
        )
        .set(api_keys::last_used_at.eq(diesel::dsl::now))
        .execute(conn)
    }

    pub fn list(conn: &mut PgConnection, tenant_id: i64) -> QueryResult<Vec<ApiKey>> {
        api_keys::table
            .filter(api_keys::tenant_id.eq(tenant_id))
            .order((api_keys::created_at.desc(), api_keys::id.desc()))
            .select(ApiKey::as_select())
            .load(conn)
    }

    pub fn find(conn: &mut PgConnection, tenant_id: i64, id: i64) -> QueryResult<Option<ApiKey>> {
        api_keys::table
            .filter(api_keys::tenant_id.eq(tenant_id))
            .filter(api_keys::id.eq(id))
            .select(ApiKey::as_select())
            .first(conn)
            .optional()
    }

    /// Revokes a live key at once; 0 when unknown or revoked already.
    pub fn revoke(conn: &mut PgConnection, tenant_id: i64, id: i64) -> QueryResult<usize> {
        diesel::update(
            api_keys::table
                .filter(api_keys::tenant_id.eq(tenant_id))
                .filter(api_keys::id.eq(id))
                .filter(api_keys::revoked_at.is_null()),
        )
        .set(api_keys::revoked_at.eq(diesel::dsl::now))
        .execute(conn)
    }
}
