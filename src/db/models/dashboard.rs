//! Read models for the dashboard: paginated, searchable lists of installs,
//! creators and audit events. Every query takes the tenant id.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Date, Nullable, Text, Timestamptz};
use serde::Serialize;

use super::paging::{Page, PageRequest};

/// `%term%` for ILIKE, with the pattern characters escaped.
pub fn contains_pattern(term: &str) -> String {
    let mut out = String::from("%");
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// One install (grant) as the lists show it.
#[derive(Debug, Clone, Serialize, QueryableByName)]
pub struct InstallRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub app_id: i64,
    #[diesel(sql_type = Text)]
    pub app_name: String,
    #[diesel(sql_type = BigInt)]
    pub end_user_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub email: Option<String>,
    /// Delegated sign-in: the tenant's subject and the name it gave.
    #[diesel(sql_type = Nullable<Text>)]
    pub subject: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub name: Option<String>,
    #[diesel(sql_type = Array<Text>)]
    pub scopes: Vec<String>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_refreshed_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub revoked_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    pub revoked_reason: Option<String>,
    /// Expiry of the newest access token.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub access_expires_at: Option<DateTime<Utc>>,
    /// Expiry of the live refresh token, if there is one.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub refresh_expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    pub total: i64,
}

impl InstallRow {
    /// active, revoked, or expired (no live refresh token left).
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.refresh_expires_at.is_some_and(|e| e > now)
            || self.access_expires_at.is_some_and(|e| e > now)
        {
            "active"
        } else {
            "expired"
        }
    }
}

/// Which installs to list.
#[derive(Debug, Clone, Default)]
pub struct InstallFilter {
    pub app_id: Option<i64>,
    pub end_user_id: Option<i64>,
    pub grant_id: Option<i64>,
    /// Part of the creator's email, subject or name.
    pub email: Option<String>,
}

/// The expiry of an install's newest access token (`g` is the grant).
macro_rules! access_expires {
    () => {
        "(SELECT max(t.expires_at) FROM access_tokens t WHERE t.grant_id = g.id \
            AND t.tenant_id = g.tenant_id)"
    };
}

/// The expiry of an install's live refresh token, if it has one.
macro_rules! refresh_expires {
    () => {
        "(SELECT max(r.expires_at) FROM refresh_tokens r WHERE r.grant_id = g.id \
            AND r.tenant_id = g.tenant_id \
            AND r.revoked_at IS NULL AND r.used_at IS NULL)"
    };
}

/// The columns and joins of an install row, shared by the dashboard's
/// numbered pages and the API's keyset pages. `$1` is the tenant id.
macro_rules! install_select {
    ($total:literal) => {
        concat!(
            "SELECT g.id, g.app_id, a.name AS app_name, g.end_user_id, e.email, e.subject, e.name, \
            g.scopes, \
            g.created_at, g.last_refreshed_at, g.revoked_at, g.revoked_reason, ",
            access_expires!(),
            " AS access_expires_at, ",
            refresh_expires!(),
            " AS refresh_expires_at, ",
            $total,
            " AS total \
            FROM grants g JOIN end_users e ON e.id = g.end_user_id AND e.tenant_id = g.tenant_id \
            JOIN apps a ON a.id = g.app_id AND a.tenant_id = g.tenant_id \
            WHERE g.tenant_id = $1 "
        )
    };
}

const INSTALL_QUERY: &str = concat!(
    install_select!("count(*) OVER ()"),
    "AND ($2::bigint IS NULL OR g.app_id = $2) \
    AND ($3::bigint IS NULL OR g.end_user_id = $3) \
    AND ($4::bigint IS NULL OR g.id = $4) \
    AND ($5::text IS NULL OR e.email ILIKE $5 ESCAPE '\\' OR e.subject ILIKE $5 ESCAPE '\\' \
         OR e.name ILIKE $5 ESCAPE '\\') \
    ORDER BY g.created_at DESC, g.id DESC LIMIT $6 OFFSET $7"
);

pub fn installs(
    conn: &mut PgConnection,
    tenant_id: i64,
    filter: &InstallFilter,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<InstallRow>> {
    diesel::sql_query(INSTALL_QUERY)
        .bind::<BigInt, _>(tenant_id)
        .bind::<Nullable<BigInt>, _>(filter.app_id)
        .bind::<Nullable<BigInt>, _>(filter.end_user_id)
        .bind::<Nullable<BigInt>, _>(filter.grant_id)
        .bind::<Nullable<Text>, _>(filter.email.as_deref().map(contains_pattern))
        .bind::<BigInt, _>(limit)
        .bind::<BigInt, _>(offset)
        .load(conn)
}

pub fn install(
    conn: &mut PgConnection,
    tenant_id: i64,
    grant_id: i64,
) -> QueryResult<Option<InstallRow>> {
    let filter = InstallFilter {
        grant_id: Some(grant_id),
        ..Default::default()
    };
    Ok(installs(conn, tenant_id, &filter, 1, 0)?.into_iter().next())
}

/// What an install's status is, as the API filters it (`InstallRow::status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallStatus {
    /// Not revoked, and a token of it still works.
    Live,
    Revoked,
    /// Not revoked, but every token of it has expired.
    Expired,
}

impl InstallStatus {
    pub fn parse(raw: &str) -> Option<InstallStatus> {
        match raw {
            "live" | "active" => Some(InstallStatus::Live),
            "revoked" => Some(InstallStatus::Revoked),
            "expired" => Some(InstallStatus::Expired),
            _ => None,
        }
    }
    fn code(self) -> &'static str {
        match self {
            InstallStatus::Live => "live",
            InstallStatus::Revoked => "revoked",
            InstallStatus::Expired => "expired",
        }
    }
}

/// The API's filters of the install list.
#[derive(Debug, Clone, Default)]
pub struct InstallQuery {
    pub app_id: Option<i64>,
    pub end_user_id: Option<i64>,
    /// The creator's subject (delegated sign-in), exactly.
    pub subject: Option<String>,
    pub status: Option<InstallStatus>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created strictly before.
    pub created_before: Option<DateTime<Utc>>,
}

/// One level, so that the `LIMIT` ends the walk down
/// `grants_tenant_keyset_idx` after a page of rows and the token expiries
/// are read for those rows only. (Filtering an outer query on the
/// subquery's columns made PostgreSQL work them out for every install of
/// the tenant first: 170–200 ms of its CPU per page of a tenant with
/// 10,000 installs, docs/performance.md.) The status filter is the CASE of
/// `InstallRow::status`, evaluated only when a status is asked for. Keyset
/// pages carry no total (`total` is 0): counting would read the whole list
/// on every page.
const INSTALL_KEYSET_QUERY: &str = concat!(
    install_select!("0::bigint"),
    "AND ($2::bigint IS NULL OR g.app_id = $2) \
    AND ($3::bigint IS NULL OR g.end_user_id = $3) \
    AND ($4::timestamptz IS NULL OR g.created_at >= $4) \
    AND ($5::timestamptz IS NULL OR g.created_at < $5) \
    AND ($6::timestamptz IS NULL OR (g.created_at, g.id) < ($6, $7::bigint)) \
    AND ($8::text IS NULL OR $8 = CASE \
        WHEN g.revoked_at IS NOT NULL THEN 'revoked' \
        WHEN ",
    refresh_expires!(),
    " > now() OR ",
    access_expires!(),
    " > now() THEN 'live' \
        ELSE 'expired' END) \
    AND ($10::text IS NULL OR e.subject = $10) \
    ORDER BY g.created_at DESC, g.id DESC LIMIT $9"
);

/// One keyset page of a tenant's installs, newest first.
pub fn installs_page(
    conn: &mut PgConnection,
    tenant_id: i64,
    query: &InstallQuery,
    page: &PageRequest,
) -> QueryResult<Page<InstallRow>> {
    let rows: Vec<InstallRow> = diesel::sql_query(INSTALL_KEYSET_QUERY)
        .bind::<BigInt, _>(tenant_id)
        .bind::<Nullable<BigInt>, _>(query.app_id)
        .bind::<Nullable<BigInt>, _>(query.end_user_id)
        .bind::<Nullable<Timestamptz>, _>(query.created_after)
        .bind::<Nullable<Timestamptz>, _>(query.created_before)
        .bind::<Nullable<Timestamptz>, _>(page.after.map(|c| c.created_at))
        .bind::<BigInt, _>(page.after.map_or(0, |c| c.id))
        .bind::<Nullable<Text>, _>(query.status.map(InstallStatus::code))
        .bind::<BigInt, _>(page.fetch())
        .bind::<Nullable<Text>, _>(query.subject.as_deref())
        .load(conn)?;
    Ok(Page::from_rows(rows, page, |r| (r.created_at, r.id)))
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Installs that still work: not revoked, with a live refresh token.
pub fn active_installs(conn: &mut PgConnection, tenant_id: i64) -> QueryResult<i64> {
    diesel::sql_query(
        "SELECT count(*) AS n FROM grants g WHERE g.tenant_id = $1 AND g.revoked_at IS NULL \
         AND EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = g.id AND r.revoked_at IS NULL \
                     AND r.used_at IS NULL AND r.expires_at > now())",
    )
    .bind::<BigInt, _>(tenant_id)
    .get_result::<Count>(conn)
    .map(|c| c.n)
}

/// A creator account as the list shows it.
#[derive(Debug, Clone, Serialize, QueryableByName)]
pub struct CreatorRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub email: Option<String>,
    /// Delegated sign-in: the tenant's subject and the name it gave.
    #[diesel(sql_type = Nullable<Text>)]
    pub subject: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub name: Option<String>,
    #[diesel(sql_type = Bool)]
    pub disabled: bool,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    pub live_installs: i64,
    #[diesel(sql_type = BigInt)]
    pub total: i64,
}

pub fn creators(
    conn: &mut PgConnection,
    tenant_id: i64,
    email: Option<&str>,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<CreatorRow>> {
    diesel::sql_query(
        "SELECT e.id, e.email, e.subject, e.name, e.disabled, e.created_at, \
         (SELECT count(*) FROM grants g WHERE g.end_user_id = e.id AND g.tenant_id = e.tenant_id \
             AND g.revoked_at IS NULL) AS live_installs, \
         count(*) OVER () AS total \
         FROM end_users e WHERE e.tenant_id = $1 \
         AND ($2::text IS NULL OR e.email ILIKE $2 ESCAPE '\\' OR e.subject ILIKE $2 ESCAPE '\\' \
              OR e.name ILIKE $2 ESCAPE '\\') \
         ORDER BY COALESCE(e.subject, e.email) ASC, e.id ASC LIMIT $3 OFFSET $4",
    )
    .bind::<BigInt, _>(tenant_id)
    .bind::<Nullable<Text>, _>(email.map(contains_pattern))
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(offset)
    .load(conn)
}

/// One keyset page of a tenant's creators, newest first (the dashboard's
/// list sorts by email; the API's by creation, so that a page is stable
/// while creators sign up).
pub fn creators_page(
    conn: &mut PgConnection,
    tenant_id: i64,
    email: Option<&str>,
    page: &PageRequest,
) -> QueryResult<Page<CreatorRow>> {
    let rows: Vec<CreatorRow> = diesel::sql_query(
        "SELECT e.id, e.email, e.subject, e.name, e.disabled, e.created_at, \
         (SELECT count(*) FROM grants g WHERE g.end_user_id = e.id AND g.tenant_id = e.tenant_id \
             AND g.revoked_at IS NULL) AS live_installs, \
         0::bigint AS total \
         FROM end_users e WHERE e.tenant_id = $1 \
         AND ($2::text IS NULL OR e.email ILIKE $2 ESCAPE '\\' OR e.subject ILIKE $2 ESCAPE '\\' \
              OR e.name ILIKE $2 ESCAPE '\\') \
         AND ($3::timestamptz IS NULL OR (e.created_at, e.id) < ($3, $4::bigint)) \
         ORDER BY e.created_at DESC, e.id DESC LIMIT $5",
    )
    .bind::<BigInt, _>(tenant_id)
    .bind::<Nullable<Text>, _>(email.map(contains_pattern))
    .bind::<Nullable<Timestamptz>, _>(page.after.map(|c| c.created_at))
    .bind::<BigInt, _>(page.after.map_or(0, |c| c.id))
    .bind::<BigInt, _>(page.fetch())
    .load(conn)?;
    Ok(Page::from_rows(rows, page, |r| (r.created_at, r.id)))
}

/// One creator as the lists show it.
pub fn creator(
    conn: &mut PgConnection,
    tenant_id: i64,
    id: i64,
) -> QueryResult<Option<CreatorRow>> {
    diesel::sql_query(
        "SELECT e.id, e.email, e.subject, e.name, e.disabled, e.created_at, \
         (SELECT count(*) FROM grants g WHERE g.end_user_id = e.id AND g.tenant_id = e.tenant_id \
             AND g.revoked_at IS NULL) AS live_installs, \
         1::bigint AS total \
         FROM end_users e WHERE e.tenant_id = $1 AND e.id = $2",
    )
    .bind::<BigInt, _>(tenant_id)
    .bind::<BigInt, _>(id)
    .get_result(conn)
    .optional()
}

/// One audit event with the total of the filtered list.
#[derive(Debug, Clone, Serialize, QueryableByName)]
pub struct AuditRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub actor: String,
    #[diesel(sql_type = Text)]
    pub action: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub object_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub object_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub ip: Option<String>,
    #[diesel(sql_type = Text)]
    pub details: String,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    pub total: i64,
}

/// Which audit events to list. `kind` matches an action exactly or as a
/// prefix (`client` matches `client.wrong_secret`); dates are inclusive UTC days.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub kind: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

pub fn audit(
    conn: &mut PgConnection,
    tenant_id: i64,
    filter: &AuditFilter,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<AuditRow>> {
    diesel::sql_query(
        "SELECT id, actor, action, object_type, object_id, ip, details::text AS details, created_at, \
         count(*) OVER () AS total FROM audit_events WHERE tenant_id = $1 \
         AND ($2::text IS NULL OR action = $2 OR action LIKE $2 || '.%') \
         AND ($3::date IS NULL OR created_at >= ($3::date AT TIME ZONE 'UTC')) \
         AND ($4::date IS NULL OR created_at < (($4::date + 1) AT TIME ZONE 'UTC')) \
         ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6",
    )
    .bind::<BigInt, _>(tenant_id)
    .bind::<Nullable<Text>, _>(filter.kind.as_deref())
    .bind::<Nullable<Date>, _>(filter.from)
    .bind::<Nullable<Date>, _>(filter.to)
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(offset)
    .load(conn)
}

/// The API's filters of the audit log. `kind` matches an action exactly,
/// `kind_prefix` as a dotted prefix (`client` matches `client.wrong_secret`,
/// as the dashboard's filter does); `object_type`/`object_id` name the object.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub kind: Option<String>,
    pub kind_prefix: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// At or after.
    pub after: Option<DateTime<Utc>>,
    /// Strictly before.
    pub before: Option<DateTime<Utc>>,
}

/// One keyset page of a tenant's audit log, newest first.
pub fn audit_page(
    conn: &mut PgConnection,
    tenant_id: i64,
    query: &AuditQuery,
    page: &PageRequest,
) -> QueryResult<Page<AuditRow>> {
    let rows: Vec<AuditRow> = diesel::sql_query(
        "SELECT id, actor, action, object_type, object_id, ip, details::text AS details, created_at, \
         0::bigint AS total FROM audit_events WHERE tenant_id = $1 \
         AND ($2::text IS NULL OR action = $2) \
         AND ($3::text IS NULL OR action = $3 OR starts_with(action, $3 || '.')) \
         AND ($4::text IS NULL OR object_type = $4) \
         AND ($5::text IS NULL OR object_id = $5) \
         AND ($6::timestamptz IS NULL OR created_at >= $6) \
         AND ($7::timestamptz IS NULL OR created_at < $7) \
         AND ($8::timestamptz IS NULL OR (created_at, id) < ($8, $9::bigint)) \
         ORDER BY created_at DESC, id DESC LIMIT $10",
    )
    .bind::<BigInt, _>(tenant_id)
    .bind::<Nullable<Text>, _>(query.kind.as_deref())
    .bind::<Nullable<Text>, _>(query.kind_prefix.as_deref())
    .bind::<Nullable<Text>, _>(query.object_type.as_deref())
    .bind::<Nullable<Text>, _>(query.object_id.as_deref())
    .bind::<Nullable<Timestamptz>, _>(query.after)
    .bind::<Nullable<Timestamptz>, _>(query.before)
    .bind::<Nullable<Timestamptz>, _>(page.after.map(|c| c.created_at))
    .bind::<BigInt, _>(page.after.map_or(0, |c| c.id))
    .bind::<BigInt, _>(page.fetch())
    .load(conn)?;
    Ok(Page::from_rows(rows, page, |r| (r.created_at, r.id)))
}

#[derive(QueryableByName)]
struct ActionName {
    #[diesel(sql_type = Text)]
    action: String,
}

/// The distinct actions recorded for a tenant, for the filter menu.
pub fn audit_actions(conn: &mut PgConnection, tenant_id: i64) -> QueryResult<Vec<String>> {
    let rows: Vec<ActionName> = diesel::sql_query(
        "SELECT DISTINCT action FROM audit_events WHERE tenant_id = $1 ORDER BY action LIMIT 200",
    )
    .bind::<BigInt, _>(tenant_id)
    .load(conn)?;
    Ok(rows.into_iter().map(|r| r.action).collect())
}

#[derive(QueryableByName)]
struct ObjectName {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    label: String,
}

/// Readable names of audit objects of one tenant, keyed by (type, id):
/// an app's name, a creator's email, an install as "email · app", a client
/// secret as "app · hint…", a member's email, an invitation's email.
/// Objects that are gone are simply absent.
pub fn audit_object_names(
    conn: &mut PgConnection,
    tenant_id: i64,
    objects: &[(String, i64)],
) -> QueryResult<std::collections::HashMap<(String, i64), String>> {
    let ids = |kind: &str| -> Vec<i64> {
        objects
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, id)| *id)
            .collect()
    };
    let rows: Vec<ObjectName> = diesel::sql_query(
        "SELECT 'app' AS kind, id, name AS label FROM apps WHERE tenant_id = $1 AND id = ANY($2) \
         UNION ALL SELECT 'end_user', id, COALESCE(subject, email) FROM end_users WHERE tenant_id = $1 AND id = ANY($3) \
         UNION ALL SELECT 'client_secret', s.id, a.name || ' · ' || s.hint || '…' FROM client_secrets s \
           JOIN apps a ON a.id = s.app_id AND a.tenant_id = $1 WHERE s.tenant_id = $1 AND s.id = ANY($4) \
         UNION ALL SELECT 'grant', g.id, COALESCE(u.subject, u.email) || ' · ' || a.name FROM grants g \
           JOIN apps a ON a.id = g.app_id AND a.tenant_id = $1 \
           JOIN end_users u ON u.id = g.end_user_id AND u.tenant_id = $1 \
           WHERE g.tenant_id = $1 AND g.id = ANY($5) \
         UNION ALL SELECT 'admin', ad.id, ad.email FROM admins ad \
           JOIN memberships m ON m.admin_id = ad.id AND m.tenant_id = $1 WHERE ad.id = ANY($6) \
         UNION ALL SELECT 'invite', i.id, i.email FROM admin_invites i WHERE i.tenant_id = $1 AND i.id = ANY($7)",
    )
    .bind::<BigInt, _>(tenant_id)
    .bind::<diesel::sql_types::Array<BigInt>, _>(ids("app"))
    .bind::<diesel::sql_types::Array<BigInt>, _>(ids("end_user"))
    .bind::<diesel::sql_types::Array<BigInt>, _>(ids("client_secret"))
    .bind::<diesel::sql_types::Array<BigInt>, _>(ids("grant"))
    .bind::<diesel::sql_types::Array<BigInt>, _>(ids("admin"))
    .bind::<diesel::sql_types::Array<BigInt>, _>(ids("invite"))
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.kind, r.id), r.label))
        .collect())
}
