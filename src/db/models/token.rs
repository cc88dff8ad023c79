use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::crypto::{self, TokenKind};
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
    pub email: String,
    pub scopes: Vec<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub active: bool,
}

/// Which statement an [`IssueStatement`] is; each kind has a fixed SQL
/// text, so diesel caches each as a prepared statement.
const ISSUE_PAIR: u8 = 0;
const ISSUE_ROTATE: u8 = 1;
const ISSUE_FOR_CODE: u8 = 2;

/// Issues an access + refresh token pair in one statement (a data-modifying
/// CTE): one round trip instead of one per row. `KIND` adds what the caller's
/// flow writes alongside:
/// - `ISSUE_PAIR`: the pair only, in an existing grant;
/// - `ISSUE_ROTATE`: also marks the parent refresh token used and stamps
///   the grant's `last_refreshed_at` (a refresh rotation);
/// - `ISSUE_FOR_CODE`: also creates the grant and links the code to it
///   (a code exchange).
struct IssueStatement<const KIND: u8> {
    tenant_id: i64,
    /// The grant (`ISSUE_PAIR`, `ISSUE_ROTATE`) or the code (`ISSUE_FOR_CODE`).
    target_id: i64,
    app_id: i64,
    end_user_id: i64,
    scopes: Vec<String>,
    parent_id: Option<i64>,
    access_digest: Vec<u8>,
    access_hint: String,
    refresh_digest: Vec<u8>,
    refresh_hint: String,
    now: DateTime<Utc>,
    access_expires_at: DateTime<Utc>,
    refresh_expires_at: DateTime<Utc>,
}

impl<const KIND: u8> diesel::query_builder::QueryId for IssueStatement<KIND> {
    type QueryId = IssueStatement<KIND>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<const KIND: u8> diesel::query_builder::Query for IssueStatement<KIND> {
    /// `RETURNING` the new refresh token's id and its grant's id.
    type SqlType = (diesel::sql_types::BigInt, diesel::sql_types::BigInt);
}

impl<const KIND: u8> RunQueryDsl<PgConnection> for IssueStatement<KIND> {}

impl<const KIND: u8> diesel::query_builder::QueryFragment<diesel::pg::Pg> for IssueStatement<KIND> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Bytea, Nullable, Text, Timestamptz};
        // The grant id as the access token's INSERT sees it.
        let grant = if KIND == ISSUE_FOR_CODE {
            out.push_sql(
                "WITH g AS (INSERT INTO grants (tenant_id, app_id, end_user_id, scopes) VALUES (",
            );
            out.push_bind_param::<BigInt, _>(&self.tenant_id)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&self.app_id)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&self.end_user_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Array<Text>, _>(&self.scopes)?;
            out.push_sql(
                ") RETURNING id), \
                 c AS (UPDATE authorization_codes SET grant_id = g.id FROM g WHERE authorization_codes.id = ",
            );
            out.push_bind_param::<BigInt, _>(&self.target_id)?;
            out.push_sql("), ");
            None
        } else {
            out.push_sql("WITH ");
            if KIND == ISSUE_ROTATE {
                out.push_sql("u AS (UPDATE refresh_tokens SET used_at = now() WHERE id = ");
                out.push_bind_param::<Nullable<BigInt>, _>(&self.parent_id)?;
                out.push_sql("), g AS (UPDATE grants SET last_refreshed_at = now() WHERE id = ");
                out.push_bind_param::<BigInt, _>(&self.target_id)?;
                out.push_sql("), ");
            }
            Some(&self.target_id)
        };
        out.push_sql(
            "a AS (INSERT INTO access_tokens (tenant_id, grant_id, token_digest, hint, created_at, expires_at, scopes) SELECT ",
        );
        out.push_bind_param::<BigInt, _>(&self.tenant_id)?;
        out.push_sql(", ");
        match grant {
            Some(id) => out.push_bind_param::<BigInt, _>(id)?,
            None => out.push_sql("g.id"),
        }
        out.push_sql(", ");
        out.push_bind_param::<Bytea, _>(&self.access_digest)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.access_hint)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.access_expires_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.scopes)?;
        if grant.is_none() {
            out.push_sql(" FROM g");
        }
        out.push_sql(
            " RETURNING id, grant_id) \
             INSERT INTO refresh_tokens (tenant_id, grant_id, token_digest, hint, parent_id, access_token_id, created_at, expires_at, scopes) SELECT ",
        );
        out.push_bind_param::<BigInt, _>(&self.tenant_id)?;
        out.push_sql(", a.grant_id, ");
        out.push_bind_param::<Bytea, _>(&self.refresh_digest)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.refresh_hint)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<BigInt>, _>(&self.parent_id)?;
        out.push_sql(", a.id, ");
        out.push_bind_param::<Timestamptz, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.refresh_expires_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.scopes)?;
        out.push_sql(" FROM a RETURNING id, grant_id");
        Ok(())
    }
}

/// Generates the pair and runs the statement of `KIND`.
#[allow(clippy::too_many_arguments)]
fn issue<const KIND: u8>(
    conn: &mut PgConnection,
    tenant_id: i64,
    target_id: i64,
    app: &App,
    end_user_id: i64,
    scopes: &[String],
    parent_id: Option<i64>,
) -> QueryResult<(IssuedPair, i64)> {
    let now = Utc::now();
    let access = crypto::generate(TokenKind::AccessToken);
    let refresh = crypto::generate(TokenKind::RefreshToken);
    let statement = IssueStatement::<KIND> {
        tenant_id,
        target_id,
        app_id: app.id,
        end_user_id,
        scopes: scopes.to_vec(),
        parent_id,
        access_digest: access.digest,
        access_hint: access.hint,
        refresh_digest: refresh.digest,
        refresh_hint: refresh.hint,
        now,
        access_expires_at: now + Duration::seconds(app.access_token_ttl_secs.into()),
        refresh_expires_at: now + Duration::seconds(app.refresh_token_ttl_secs.into()),
    };
    let (refresh_id, grant_id): (i64, i64) = statement.get_result(conn)?;
    Ok((
        IssuedPair {
            access_token: access.value,
            refresh_token: refresh.value,
            expires_in: app.access_token_ttl_secs.into(),
            created_at: now,
            refresh_token_id: refresh_id,
        },
        grant_id,
    ))
}

/// Inserts a new access token and refresh token for `grant`, with the
/// grant's scopes, in one statement.
pub fn issue_pair(
    conn: &mut PgConnection,
    grant: &Grant,
    app: &App,
    parent_id: Option<i64>,
) -> QueryResult<IssuedPair> {
    issue_pair_with(conn, grant, app, &grant.scopes, parent_id)
}

/// `issue_pair` with `scopes` (at most the grant's).
pub fn issue_pair_with(
    conn: &mut PgConnection,
    grant: &Grant,
    app: &App,
    scopes: &[String],
    parent_id: Option<i64>,
) -> QueryResult<IssuedPair> {
    issue::<ISSUE_PAIR>(
        conn,
        grant.tenant_id,
        grant.id,
        app,
        grant.end_user_id,
        scopes,
        parent_id,
    )
    .map(|(pair, _)| pair)
}

/// A refresh rotation's writes in one statement: marks `parent` used, issues
/// the new pair as its child and stamps the grant's `last_refreshed_at`.
/// The new pair has `scopes` (at most the grant's). The caller holds the
/// grant's lock.
pub fn rotate_pair(
    conn: &mut PgConnection,
    grant: &Grant,
    app: &App,
    parent: &RefreshToken,
    scopes: &[String],
) -> QueryResult<IssuedPair> {
    issue::<ISSUE_ROTATE>(
        conn,
        grant.tenant_id,
        grant.id,
        app,
        grant.end_user_id,
        scopes,
        Some(parent.id),
    )
    .map(|(pair, _)| pair)
}

/// A code exchange's writes in one statement: creates the grant, issues its
/// first pair and links the (already consumed) code to the grant. Returns
/// the pair and the new grant's id.
pub fn issue_for_code(
    conn: &mut PgConnection,
    app: &App,
    code: &crate::db::models::AuthorizationCode,
) -> QueryResult<(IssuedPair, i64)> {
    issue::<ISSUE_FOR_CODE>(
        conn,
        code.tenant_id,
        code.id,
        app,
        code.end_user_id,
        &code.scopes,
        None,
    )
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

    /// Re-reads a token after its grant is locked, so its state is current.
    pub fn reload(conn: &mut PgConnection, id: i64) -> QueryResult<RefreshToken> {
        refresh_tokens::table
            .find(id)
            .select(RefreshToken::as_select())
            .first(conn)
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

    pub fn mark_used(conn: &mut PgConnection, id: i64) -> QueryResult<usize> {
        diesel::update(refresh_tokens::table.find(id))
            .set(refresh_tokens::used_at.eq(diesel::dsl::now))
            .execute(conn)
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

type InfoRow = (
    i64,
    i64,
    String,
    i64,
    String,
    Vec<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    bool,
    bool,
);

fn to_info(row: InfoRow, extra_inactive: bool, now: DateTime<Utc>) -> TokenInfo {
    let (
        grant_id,
        app_id,
        client_id,
        end_user_id,
        email,
        scopes,
        issued_at,
        expires_at,
        token_revoked,
        grant_revoked,
        app_disabled,
        user_disabled,
    ) = row;
    let active = !extra_inactive
        && token_revoked.is_none()
        && grant_revoked.is_none()
        && !app_disabled
        && !user_disabled
        && expires_at > now;
    TokenInfo {
        grant_id,
        app_id,
        client_id,
        end_user_id,
        email,
        scopes,
        issued_at,
        expires_at,
        active,
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

type VersionedInfoRow = (i64, i64, Vec<u8>, InfoRow);

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
                .find(|(_, t, d, _)| t == tenant_id && d == digest)
                .map(|(version, _, _, row)| (*version, to_info(row.clone(), false, now)))
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
    Ok(row.map(|(r, used)| to_info(r, used.is_some(), Utc::now())))
}

/// An app left-joined with its unrevoked secrets: one row per secret.
pub type ClientRows = Vec<(AppKey, Option<SecretKey>)>;

/// The token columns of the introspection queries: left-joined, so all
/// nullable (no row of the app's for that digest leaves them `None`).
type TokenCols = (
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<Vec<String>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<bool>,
);

/// The select expression for `TokenCols`.
macro_rules! token_cols {
    () => {
        (
            grants::id.nullable(),
            end_users::id.nullable(),
            end_users::email.nullable(),
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
    let (
        Some(grant_id),
        Some(end_user_id),
        Some(email),
        Some(scopes),
        Some(issued_at),
        Some(expires_at),
        token_revoked,
        grant_revoked,
        Some(user_disabled),
    ) = t
    else {
        return None;
    };
    Some(to_info(
        (
            grant_id,
            app.id,
            app.client_id.clone(),
            end_user_id,
            email,
            scopes,
            issued_at,
            expires_at,
            token_revoked,
            grant_revoked,
            app.disabled,
            user_disabled,
        ),
        false,
        now,
    ))
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

/// The fast statements' guard: the app is still at the `auth_version` its
/// caller authenticated the client with. Checked in the statement that
/// writes, so a client authenticated from a copy (`ClientCache<App>`) is
/// exactly as current as one read in that statement; when the app or one
/// of its secrets changed since, the statement writes nothing and the
/// caller reads the client again.
fn app_unchanged<'b>(
    out: &mut diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    app_id: &'b i64,
    app_version: &'b i64,
) -> QueryResult<()> {
    use diesel::sql_types::BigInt;
    out.push_sql("EXISTS (SELECT 1 FROM apps WHERE apps.id = ");
    out.push_bind_param::<BigInt, _>(app_id)?;
    out.push_sql(" AND apps.auth_version = ");
    out.push_bind_param::<BigInt, _>(app_version)?;
    out.push_sql(")");
    Ok(())
}

/// A whole code exchange in one statement, for the common case: consumes
/// the code when it is unused, unexpired and its PKCE challenge (if any) is
/// met, creates the grant (its id drawn in the same UPDATE that links the
/// code to it), and issues the first pair. A single statement is a single
/// transaction; when it matches no code nothing at all is written and the
/// caller takes the slow path, which tells the cases apart (unknown,
/// replayed, expired, wrong verifier).
struct ExchangeStatement {
    tenant_id: i64,
    app_id: i64,
    /// The `auth_version` of the app as the caller read it (or its copy).
    app_version: i64,
    code_digest: Vec<u8>,
    /// BASE64URL(SHA256(code_verifier)) of a well-formed verifier, `None`
    /// when none was sent: it must equal the code's challenge, and no
    /// challenge matches none (RFC 9700 §2.1.1: a verifier for a code
    /// issued without a challenge is a downgrade, left to the rules).
    pkce_s256: Option<String>,
    access_digest: Vec<u8>,
    access_hint: String,
    refresh_digest: Vec<u8>,
    refresh_hint: String,
    now: DateTime<Utc>,
    access_expires_at: DateTime<Utc>,
    refresh_expires_at: DateTime<Utc>,
}

impl diesel::query_builder::QueryId for ExchangeStatement {
    type QueryId = ExchangeStatement;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for ExchangeStatement {
    /// The new refresh token's id, the grant's id and its scopes.
    type SqlType = (
        diesel::sql_types::BigInt,
        diesel::sql_types::BigInt,
        diesel::sql_types::Array<diesel::sql_types::Text>,
    );
}

impl RunQueryDsl<PgConnection> for ExchangeStatement {}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for ExchangeStatement {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Bytea, Nullable, Text, Timestamptz};
        out.push_sql(
            "WITH c AS (UPDATE authorization_codes \
             SET used_at = now(), grant_id = nextval('grants_id_seq'::regclass) \
             WHERE code_digest = ",
        );
        out.push_bind_param::<Bytea, _>(&self.code_digest)?;
        out.push_sql(" AND tenant_id = ");
        out.push_bind_param::<BigInt, _>(&self.tenant_id)?;
        out.push_sql(" AND app_id = ");
        out.push_bind_param::<BigInt, _>(&self.app_id)?;
        out.push_sql(" AND used_at IS NULL AND expires_at > ");
        out.push_bind_param::<Timestamptz, _>(&self.now)?;
        out.push_sql(" AND code_challenge IS NOT DISTINCT FROM ");
        out.push_bind_param::<Nullable<Text>, _>(&self.pkce_s256)?;
        // The creator is not disabled, and cannot be until this commits:
        // FOR SHARE waits for (and then re-reads after) a disable in
        // progress, and makes a disable wait for this grant, which the
        // disable's revocation then sees.
        out.push_sql(
            " AND end_user_id IN (SELECT end_users.id FROM end_users \
             WHERE end_users.id = authorization_codes.end_user_id AND end_users.tenant_id = ",
        );
        out.push_bind_param::<BigInt, _>(&self.tenant_id)?;
        out.push_sql(" AND NOT end_users.disabled FOR SHARE) AND ");
        app_unchanged(&mut out, &self.app_id, &self.app_version)?;
        out.push_sql(
            " RETURNING grant_id, tenant_id, app_id, end_user_id, scopes), \
             g AS (INSERT INTO grants (id, tenant_id, app_id, end_user_id, scopes) \
             SELECT grant_id, tenant_id, app_id, end_user_id, scopes FROM c RETURNING id, scopes), \
             a AS (INSERT INTO access_tokens (tenant_id, grant_id, token_digest, hint, created_at, expires_at, scopes) \
             SELECT c.tenant_id, c.grant_id, ",
        );
        out.push_bind_param::<Bytea, _>(&self.access_digest)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.access_hint)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.access_expires_at)?;
        out.push_sql(
            ", c.scopes FROM c RETURNING id, grant_id, tenant_id, scopes), \
             r AS (INSERT INTO refresh_tokens (tenant_id, grant_id, token_digest, hint, parent_id, access_token_id, created_at, expires_at, scopes) \
             SELECT a.tenant_id, a.grant_id, ",
        );
        out.push_bind_param::<Bytea, _>(&self.refresh_digest)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.refresh_hint)?;
        out.push_sql(", NULL, a.id, ");
        out.push_bind_param::<Timestamptz, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.refresh_expires_at)?;
        out.push_sql(
            ", a.scopes FROM a RETURNING id, grant_id) \
             SELECT r.id, r.grant_id, g.scopes FROM r JOIN g ON g.id = r.grant_id",
        );
        Ok(())
    }
}

/// The one-statement code exchange (see [`ExchangeStatement`]). `None`:
/// no unused, unexpired code with a met challenge; nothing was written.
pub fn exchange_code_fast(
    conn: &mut PgConnection,
    tenant_id: i64,
    app: &App,
    code_digest: &[u8],
    pkce_s256: Option<String>,
) -> QueryResult<Option<(IssuedPair, Vec<String>)>> {
    let now = Utc::now();
    let access = crypto::generate(TokenKind::AccessToken);
    let refresh = crypto::generate(TokenKind::RefreshToken);
    let statement = ExchangeStatement {
        tenant_id,
        app_id: app.id,
        app_version: app.auth_version,
        code_digest: code_digest.to_vec(),
        pkce_s256,
        access_digest: access.digest,
        access_hint: access.hint,
        refresh_digest: refresh.digest,
        refresh_hint: refresh.hint,
        now,
        access_expires_at: now + Duration::seconds(app.access_token_ttl_secs.into()),
        refresh_expires_at: now + Duration::seconds(app.refresh_token_ttl_secs.into()),
    };
    let row: Option<(i64, i64, Vec<String>)> = statement.get_result(conn).optional()?;
    Ok(row.map(|(refresh_id, _grant_id, scopes)| {
        (
            IssuedPair {
                access_token: access.value,
                refresh_token: refresh.value,
                expires_in: app.access_token_ttl_secs.into(),
                created_at: now,
                refresh_token_id: refresh_id,
            },
            scopes,
        )
    }))
}

/// A whole refresh rotation in one statement, for the common case: locks
/// the token's grant (live, of this app) exactly as the rule path does,
/// marks the token used when it is unused, unrevoked and unexpired, issues
/// its successor and stamps the grant. When any of that does not hold it
/// writes nothing, and the caller takes the rule path, which locks again
/// and tells replay, grace-window retry, revocation and expiry apart.
/// (Under READ COMMITTED, a statement that waited for the grant's lock
/// re-checks the token row's latest version before updating it, so two
/// racing rotations of one token cannot both get here.)
struct RotateStatement {
    tenant_id: i64,
    app_id: i64,
    /// The `auth_version` of the app as the caller read it (or its copy).
    app_version: i64,
    /// The app's scopes as of `app_version`: a grant with a scope the app
    /// no longer has is left to the rules, which issue the intersection.
    allowed_scopes: Vec<String>,
    token_digest: Vec<u8>,
    access_digest: Vec<u8>,
    access_hint: String,
    refresh_digest: Vec<u8>,
    refresh_hint: String,
    now: DateTime<Utc>,
    access_expires_at: DateTime<Utc>,
    refresh_expires_at: DateTime<Utc>,
}

impl diesel::query_builder::QueryId for RotateStatement {
    type QueryId = RotateStatement;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for RotateStatement {
    /// The new refresh token's id and the grant's scopes.
    type SqlType = (
        diesel::sql_types::BigInt,
        diesel::sql_types::Array<diesel::sql_types::Text>,
    );
}

impl RunQueryDsl<PgConnection> for RotateStatement {}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for RotateStatement {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Bytea, Text, Timestamptz};
        out.push_sql(
            "WITH g AS MATERIALIZED (SELECT grants.id, grants.scopes FROM grants \
             WHERE grants.tenant_id = ",
        );
        out.push_bind_param::<BigInt, _>(&self.tenant_id)?;
        out.push_sql(" AND grants.app_id = ");
        out.push_bind_param::<BigInt, _>(&self.app_id)?;
        out.push_sql(
            " AND grants.revoked_at IS NULL AND grants.id = \
             (SELECT grant_id FROM refresh_tokens WHERE token_digest = ",
        );
        out.push_bind_param::<Bytea, _>(&self.token_digest)?;
        out.push_sql(" AND tenant_id = ");
        out.push_bind_param::<BigInt, _>(&self.tenant_id)?;
        out.push_sql(") AND grants.scopes <@ ");
        out.push_bind_param::<Array<Text>, _>(&self.allowed_scopes)?;
        out.push_sql(" AND ");
        app_unchanged(&mut out, &self.app_id, &self.app_version)?;
        out.push_sql(
            " FOR UPDATE), \
             u AS (UPDATE refresh_tokens SET used_at = now() FROM g \
             WHERE refresh_tokens.grant_id = g.id AND refresh_tokens.token_digest = ",
        );
        out.push_bind_param::<Bytea, _>(&self.token_digest)?;
        out.push_sql(
            " AND refresh_tokens.used_at IS NULL AND refresh_tokens.revoked_at IS NULL \
             AND refresh_tokens.expires_at > ",
        );
        out.push_bind_param::<Timestamptz, _>(&self.now)?;
        out.push_sql(
            " RETURNING refresh_tokens.id, refresh_tokens.grant_id, refresh_tokens.tenant_id), \
             s AS (UPDATE grants SET last_refreshed_at = now() FROM u WHERE grants.id = u.grant_id), \
             a AS (INSERT INTO access_tokens (tenant_id, grant_id, token_digest, hint, created_at, expires_at, scopes) \
             SELECT u.tenant_id, u.grant_id, ",
        );
        out.push_bind_param::<Bytea, _>(&self.access_digest)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.access_hint)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.access_expires_at)?;
        out.push_sql(
            ", g.scopes FROM u JOIN g ON g.id = u.grant_id RETURNING id, grant_id, tenant_id, scopes), \
             r AS (INSERT INTO refresh_tokens (tenant_id, grant_id, token_digest, hint, parent_id, access_token_id, created_at, expires_at, scopes) \
             SELECT a.tenant_id, a.grant_id, ",
        );
        out.push_bind_param::<Bytea, _>(&self.refresh_digest)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.refresh_hint)?;
        out.push_sql(", u.id, a.id, ");
        out.push_bind_param::<Timestamptz, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.refresh_expires_at)?;
        out.push_sql(
            ", a.scopes FROM a JOIN u ON u.grant_id = a.grant_id RETURNING id, grant_id) \
             SELECT r.id, g.scopes FROM r JOIN g ON g.id = r.grant_id",
        );
        Ok(())
    }
}

/// The one-statement refresh rotation (see [`RotateStatement`]). `None`:
/// not the common case; nothing was written.
pub fn refresh_fast(
    conn: &mut PgConnection,
    tenant_id: i64,
    app: &App,
    token_digest: &[u8],
) -> QueryResult<Option<(IssuedPair, Vec<String>)>> {
    let now = Utc::now();
    let access = crypto::generate(TokenKind::AccessToken);
    let refresh = crypto::generate(TokenKind::RefreshToken);
    let statement = RotateStatement {
        tenant_id,
        app_id: app.id,
        app_version: app.auth_version,
        allowed_scopes: app.allowed_scopes.clone(),
        token_digest: token_digest.to_vec(),
        access_digest: access.digest,
        access_hint: access.hint,
        refresh_digest: refresh.digest,
        refresh_hint: refresh.hint,
        now,
        access_expires_at: now + Duration::seconds(app.access_token_ttl_secs.into()),
        refresh_expires_at: now + Duration::seconds(app.refresh_token_ttl_secs.into()),
    };
    let row: Option<(i64, Vec<String>)> = statement.get_result(conn).optional()?;
    Ok(row.map(|(refresh_id, scopes)| {
        (
            IssuedPair {
                access_token: access.value,
                refresh_token: refresh.value,
                expires_in: app.access_token_ttl_secs.into(),
                created_at: now,
                refresh_token_id: refresh_id,
            },
            scopes,
        )
    }))
}
