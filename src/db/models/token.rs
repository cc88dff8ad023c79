use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::crypto::{self, TokenKind};
use crate::db::models::{App, Grant};
use crate::db::schema::{access_tokens, apps, end_users, grants, refresh_tokens};

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

/// Inserts a new access token and refresh token for `grant`.
pub fn issue_pair(
    conn: &mut PgConnection,
    grant: &Grant,
    app: &App,
    parent_id: Option<i64>,
) -> QueryResult<IssuedPair> {
    let now = Utc::now();
    let access = crypto::generate(TokenKind::AccessToken);
    let refresh = crypto::generate(TokenKind::RefreshToken);
    let access_id: i64 = diesel::insert_into(access_tokens::table)
        .values((
            access_tokens::tenant_id.eq(grant.tenant_id),
            access_tokens::grant_id.eq(grant.id),
            access_tokens::token_digest.eq(&access.digest),
            access_tokens::hint.eq(&access.hint),
            access_tokens::created_at.eq(now),
            access_tokens::expires_at.eq(now + Duration::seconds(app.access_token_ttl_secs.into())),
        ))
        .returning(access_tokens::id)
        .get_result(conn)?;
    let refresh_id: i64 = diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::tenant_id.eq(grant.tenant_id),
            refresh_tokens::grant_id.eq(grant.id),
            refresh_tokens::token_digest.eq(&refresh.digest),
            refresh_tokens::hint.eq(&refresh.hint),
            refresh_tokens::parent_id.eq(parent_id),
            refresh_tokens::access_token_id.eq(access_id),
            refresh_tokens::created_at.eq(now),
            refresh_tokens::expires_at
                .eq(now + Duration::seconds(app.refresh_token_ttl_secs.into())),
        ))
        .returning(refresh_tokens::id)
        .get_result(conn)?;
    Ok(IssuedPair {
        access_token: access.value,
        refresh_token: refresh.value,
        expires_in: app.access_token_ttl_secs.into(),
        created_at: now,
        refresh_token_id: refresh_id,
    })
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

/// Everything introspection needs about an access token, in one query.
pub fn access_token_info(
    conn: &mut PgConnection,
    tenant_id: i64,
    digest: &[u8],
) -> QueryResult<Option<TokenInfo>> {
    let row: Option<InfoRow> = access_tokens::table
        .inner_join(
            grants::table
                .inner_join(apps::table)
                .inner_join(end_users::table),
        )
        .filter(access_tokens::token_digest.eq(digest))
        .filter(access_tokens::tenant_id.eq(tenant_id))
        .select((
            grants::id,
            apps::id,
            apps::client_id,
            end_users::id,
            end_users::email,
            grants::scopes,
            access_tokens::created_at,
            access_tokens::expires_at,
            access_tokens::revoked_at,
            grants::revoked_at,
            apps::disabled,
            end_users::disabled,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(|r| to_info(r, false, Utc::now())))
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
        .select((
            (
                grants::id,
                apps::id,
                apps::client_id,
                end_users::id,
                end_users::email,
                grants::scopes,
                refresh_tokens::created_at,
                refresh_tokens::expires_at,
                refresh_tokens::revoked_at,
                grants::revoked_at,
                apps::disabled,
                end_users::disabled,
            ),
            refresh_tokens::used_at,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(|(r, used)| to_info(r, used.is_some(), Utc::now())))
}
