use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::models::{App, AppKey, Grant, SecretKey};
use crate::db::schema::{access_tokens, apps, client_secrets, end_users, grants, refresh_tokens};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = access_tokens)]
pub struct AccessToken {
    pub id: i64,
    pub tenant_id: i64,
    pub grant_id: i64,
    #[serde(skip)]
    pub token_digest: Vec<u8>,
    pub hint: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// What this token allows: at most its grant's scopes (RFC 6749 §6).
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    pub id: i64,
    pub tenant_id: i64,
    pub grant_id: i64,
    #[serde(skip)]
    pub token_digest: Vec<u8>,
    pub hint: String,
    pub parent_id: Option<i64>,
    pub access_token_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The scopes of the pair it was issued with.
    pub scopes: Vec<String>,
}

/// A freshly issued access + refresh token pair; the values exist only here.
#[derive(Debug)]
pub struct IssuedPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub created_at: DateTime<Utc>,
    pub refresh_token_id: i64,
}

/// What introspection and userinfo learn about a live access or refresh token.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub grant_id: i64,
    pub app_id: i64,
    pub client_id: String,
    pub end_user_id: i64,
    /// The creator's email: a hosted account's, or a subject's when the
    /// tenant gave one.
    pub email: Option<String>,
    /// Delegated sign-in: the tenant's subject and the name it gave.
    pub subject: Option<String>,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub active: bool,
}

impl TokenInfo {
    /// The `sub` of the token: the tenant's subject in delegated sign-in,
    /// kitauth's creator id for a hosted account.
    pub fn sub(&self) -> String {
        super::end_user::sub_of(self.end_user_id, self.subject.as_deref())
    }
}

/// A new access token and refresh token in `grant`, with the grant's
/// scopes, in one statement (`db::sql::issue_in_grant`).
pub fn issue_pair(
    conn: &mut PgConnection,
    grant: &Grant,
    app: &App,
    parent_id: Option<i64>,
) -> QueryResult<IssuedPair> {
    crate::db::sql::issue_in_grant(conn, grant, app, &grant.scopes, parent_id)
}

impl RefreshToken {
    pub fn find_by_digest(
        conn: &mut PgConnection,
        tenant_id: i64,
        digest: &[u8],
    ) -> QueryResult<Option<RefreshToken>> {
        refresh_tokens::table
            .filter(refresh_tokens::token_digest.eq(digest))
            .filter(refresh_tokens::tenant_id.eq(tenant_id))
            .select(RefreshToken::as_select())
            .first(conn)
            .optional()
    }

    /// The grant's live (unused, unrevoked) refresh tokens, newest first.
    pub fn live_of_grant(conn: &mut PgConnection, grant_id: i64) -> QueryResult<Vec<RefreshToken>> {
        refresh_tokens::table
            .filter(refresh_tokens::grant_id.eq(grant_id))
            .filter(refresh_tokens::used_at.is_null())
            .filter(refresh_tokens::revoked_at.is_null())
            .order(refresh_tokens::id.desc())
            .select(RefreshToken::as_select())
            .load(conn)
    }

    /// Revokes one refresh token and the access token issued with it.
    pub fn revoke_with_access(conn: &mut PgConnection, token: &RefreshToken) -> QueryResult<()> {
        diesel::update(refresh_tokens::table.find(token.id))
            .set(refresh_tokens::revoked_at.eq(diesel::dsl::now))
            .execute(conn)?;
        if let Some(access_id) = token.access_token_id {
            diesel::update(access_tokens::table.find(access_id))
                .set(access_tokens::revoked_at.eq(diesel::dsl::now))
                .execute(conn)?;
        }
        Ok(())
    }

    pub fn history(
        conn: &mut PgConnection,
        tenant_id: i64,
        grant_id: i64,
    ) -> QueryResult<Vec<RefreshToken>> {
        refresh_tokens::table
            .filter(refresh_tokens::tenant_id.eq(tenant_id))
            .filter(refresh_tokens::grant_id.eq(grant_id))
            .order(refresh_tokens::id.asc())
            .select(RefreshToken::as_select())
            .load(conn)
    }
}

impl AccessToken {
    pub fn find_by_digest(
        conn: &mut PgConnection,
        tenant_id: i64,
        digest: &[u8],
    ) -> QueryResult<Option<AccessToken>> {
        access_tokens::table
            .filter(access_tokens::token_digest.eq(digest))
            .filter(access_tokens::tenant_id.eq(tenant_id))
            .select(AccessToken::as_select())
            .first(conn)
            .optional()
    }

    pub fn history(
        conn: &mut PgConnection,
        tenant_id: i64,
        grant_id: i64,
    ) -> QueryResult<Vec<AccessToken>> {
        access_tokens::table
            .filter(access_tokens::tenant_id.eq(tenant_id))
            .filter(access_tokens::grant_id.eq(grant_id))
            .order(access_tokens::id.asc())
            .select(AccessToken::as_select())
            .load(conn)
    }
}

/// A token joined with its grant, the grant's app and creator: what a
/// `TokenInfo` is made of (the columns of `info_cols!`, in order).
#[derive(Debug, Clone, Queryable)]
struct InfoRow {
    grant_id: i64,
    app_id: i64,
    client_id: String,
    end_user_id: i64,
    email: Option<String>,
    subject: Option<String>,
    name: Option<String>,
    scopes: Vec<String>,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    token_revoked: Option<DateTime<Utc>>,
    grant_revoked: Option<DateTime<Utc>>,
    app_disabled: bool,
    user_disabled: bool,
}

impl InfoRow {
    /// What the row says; `extra_inactive` (a used refresh token) makes it
    /// inactive too.
    fn info(self, extra_inactive: bool, now: DateTime<Utc>) -> TokenInfo {
        let active = !extra_inactive
            && self.token_revoked.is_none()
            && self.grant_revoked.is_none()
            && !self.app_disabled
            && !self.user_disabled
            && self.expires_at > now;
        TokenInfo {
            grant_id: self.grant_id,
            app_id: self.app_id,
            client_id: self.client_id,
            end_user_id: self.end_user_id,
            email: self.email,
            subject: self.subject,
            name: self.name,
            scopes: self.scopes,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            active,
        }
    }
}

/// The `InfoRow` columns, with `$tokens` the token table (access or
/// refresh tokens) joined with its grant, the grant's app and creator.
macro_rules! info_cols {
    ($tokens:ident) => {
        (
            grants::id,
            apps::id,
            apps::client_id,
            end_users::id,
            end_users::email,
            end_users::subject,
            end_users::name,
            $tokens::scopes,
            $tokens::created_at,
            $tokens::expires_at,
            $tokens::revoked_at,
            grants::revoked_at,
            apps::disabled,
            end_users::disabled,
        )
    };
}

/// How many tokens `access_token_infos` looks up in one statement.
pub const INFO_BATCH: usize = 8;

/// Access tokens joined with their grant, app and creator: the app's
/// `auth_version`, the token's tenant and digest, and an `InfoRow`.
macro_rules! token_info_rows {
    () => {
        access_tokens::table
            .inner_join(
                grants::table
                    .inner_join(apps::table)
                    .inner_join(end_users::table),
            )
            .select((
                apps::auth_version,
                access_tokens::tenant_id,
                access_tokens::token_digest,
                info_cols!(access_tokens),
            ))
    };
}

/// An access token's `InfoRow`, with its app's `auth_version` and the
/// token's tenant and digest (which a batched answer is matched on).
#[derive(Debug, Queryable)]
struct VersionedInfoRow {
    auth_version: i64,
    tenant_id: i64,
    digest: Vec<u8>,
    row: InfoRow,
}

/// What introspection and userinfo need about access tokens, for many
/// (tenant, digest) pairs, `INFO_BATCH` to a statement: one answer per
/// pair, in order, with the token's app's `auth_version` as read in the
/// same statement (introspection checks its copy of the client against it). A token is only ever the answer of a
/// pair with its own tenant.
///
/// A statement always has `INFO_BATCH` digest slots, the unused ones
/// empty (no digest is empty), so that one plan fits every call: with
/// `= ANY($1)` and a bound array, PostgreSQL's custom plans looked cheaper
/// than the generic one and it planned the statement again on every call
/// (measured: 98 µs of PostgreSQL CPU per userinfo instead of 31). A lone
/// pair takes a one-slot statement.
pub fn access_token_infos(
    conn: &mut PgConnection,
    pairs: &[(i64, Vec<u8>)],
) -> QueryResult<Vec<Option<(i64, TokenInfo)>>> {
    let mut answers = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(INFO_BATCH) {
        // Digests only: a digest is unique across tenants, so it names at
        // most one row, and each answer is matched on (tenant, digest)
        // below. (Naming each slot's tenant in SQL as well made PostgreSQL
        // plan the statement on every call again: 48 µs of its CPU per
        // userinfo instead of 35, README Performance.)
        let slot = |i: usize| {
            access_tokens::token_digest.eq(chunk.get(i).map(|(_, d)| d.clone()).unwrap_or_default())
        };
        let rows: Vec<VersionedInfoRow> = if chunk.len() == 1 {
            token_info_rows!().filter(slot(0)).load(conn)?
        } else {
            token_info_rows!()
                .filter(
                    slot(0)
                        .or(slot(1))
                        .or(slot(2))
                        .or(slot(3))
                        .or(slot(4))
                        .or(slot(5))
                        .or(slot(6))
                        .or(slot(7)),
                )
                .load(conn)?
        };
        let now = Utc::now();
        answers.extend(chunk.iter().map(|(tenant_id, digest)| {
            rows.iter()
                .find(|r| r.tenant_id == *tenant_id && r.digest == *digest)
                .map(|r| (r.auth_version, r.row.clone().info(false, now)))
        }));
    }
    Ok(answers)
}

/// The same for a refresh token; a used one is no longer active.
pub fn refresh_token_info(
    conn: &mut PgConnection,
    tenant_id: i64,
    digest: &[u8],
) -> QueryResult<Option<TokenInfo>> {
    let row: Option<(InfoRow, Option<DateTime<Utc>>)> = refresh_tokens::table
        .inner_join(
            grants::table
                .inner_join(apps::table)
                .inner_join(end_users::table),
        )
        .filter(refresh_tokens::token_digest.eq(digest))
        .filter(refresh_tokens::tenant_id.eq(tenant_id))
        .select((info_cols!(refresh_tokens), refresh_tokens::used_at))
        .first(conn)
        .optional()?;
    Ok(row.map(|(r, used)| r.info(used.is_some(), Utc::now())))
}

/// An app left-joined with its unrevoked secrets: one row per secret.
pub type ClientRows = Vec<(AppKey, Option<SecretKey>)>;

/// The token columns of the introspection queries (`token_cols!`, in
/// order): left-joined, so all nullable (no row of the app's for that
/// digest leaves them `None`).
#[derive(Debug, Queryable)]
struct TokenCols {
    grant_id: Option<i64>,
    end_user_id: Option<i64>,
    email: Option<String>,
    subject: Option<String>,
    name: Option<String>,
    scopes: Option<Vec<String>>,
    issued_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    token_revoked: Option<DateTime<Utc>>,
    grant_revoked: Option<DateTime<Utc>>,
    user_disabled: Option<bool>,
}

/// The select expression for `TokenCols`.
macro_rules! token_cols {
    () => {
        (
            grants::id.nullable(),
            end_users::id.nullable(),
            end_users::email.nullable(),
            end_users::subject.nullable(),
            end_users::name.nullable(),
            access_tokens::scopes.nullable(),
            access_tokens::created_at.nullable(),
            access_tokens::expires_at.nullable(),
            access_tokens::revoked_at.nullable(),
            grants::revoked_at.nullable(),
            end_users::disabled.nullable(),
        )
    };
}

/// `apps` left-joined with the access token of `$digest` in the app's
/// tenant, its grant when that grant is the app's, and the grant's creator.
macro_rules! app_with_token {
    ($digest:expr) => {
        apps::table
            .left_join(
                // Owned: a bind inside a join's ON clause must be 'static.
                access_tokens::table.on(access_tokens::token_digest
                    .eq($digest.to_vec())
                    .and(access_tokens::tenant_id.eq(apps::tenant_id))),
            )
            .left_join(
                grants::table.on(grants::id
                    .eq(access_tokens::grant_id)
                    .and(grants::app_id.eq(apps::id))),
            )
            .left_join(end_users::table.on(end_users::id.eq(grants::end_user_id)))
    };
}

/// What the token columns say, for a token of `app`.
fn app_token_info(app: &AppKey, t: TokenCols, now: DateTime<Utc>) -> Option<TokenInfo> {
    let row = InfoRow {
        grant_id: t.grant_id?,
        app_id: app.id,
        client_id: app.client_id.clone(),
        end_user_id: t.end_user_id?,
        email: t.email,
        subject: t.subject,
        name: t.name,
        scopes: t.scopes?,
        issued_at: t.issued_at?,
        expires_at: t.expires_at?,
        token_revoked: t.token_revoked,
        grant_revoked: t.grant_revoked,
        app_disabled: app.disabled,
        user_disabled: t.user_disabled?,
    };
    Some(row.info(false, now))
}

/// Client authentication and access-token introspection in one round trip:
/// the app named `client_id` (with its `auth_version`) and its unrevoked
/// secrets (one row per secret), and what `access_token_infos` would say
/// about the token, when the token belongs to a grant of that same app. A
/// token of another app, like an unknown one, comes back as `None`.
pub fn client_and_access_token_info(
    conn: &mut PgConnection,
    tenant_id: i64,
    client_id: &str,
    digest: &[u8],
) -> QueryResult<(ClientRows, Option<TokenInfo>)> {
    let rows: Vec<(AppKey, Option<SecretKey>, TokenCols)> = app_with_token!(digest)
        .left_join(
            client_secrets::table.on(client_secrets::app_id
                .eq(apps::id)
                .and(client_secrets::revoked_at.is_null())),
        )
        .filter(apps::tenant_id.eq(tenant_id))
        .filter(apps::client_id.eq(client_id))
        .select((
            AppKey::as_select(),
            Option::<SecretKey>::as_select(),
            token_cols!(),
        ))
        .load(conn)?;
    let mut rows = rows.into_iter();
    let Some((app, secret, t)) = rows.next() else {
        return Ok((Vec::new(), None));
    };
    let info = app_token_info(&app, t, Utc::now());
    let mut client = vec![(app, secret)];
    client.extend(rows.map(|(app, s, _)| (app, s)));
    Ok((client, info))
}

/// Introspection with an in-memory copy of the client (`app`, read at its
/// `auth_version`): the app's current `auth_version` and the token, in one
/// query. `None` when the app is gone or its version moved on (a secret or
/// the app changed), so the copy may not be used; otherwise what
/// `client_and_access_token_info` would have said about the token.
pub fn access_token_info_if_current(
    conn: &mut PgConnection,
    tenant_id: i64,
    app: &AppKey,
    digest: &[u8],
) -> QueryResult<Option<Option<TokenInfo>>> {
    let row: Option<(i64, TokenCols)> = app_with_token!(digest)
        .filter(apps::id.eq(app.id))
        .filter(apps::tenant_id.eq(tenant_id))
        .filter(apps::client_id.eq(app.client_id.as_str()))
        .select((apps::auth_version, token_cols!()))
        .first(conn)
        .optional()?;
    Ok(match row {
        Some((version, t)) if version == app.auth_version => {
            Some(app_token_info(app, t, Utc::now()))
        }
        _ => None,
    })
}
