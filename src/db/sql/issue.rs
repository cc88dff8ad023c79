//! Issuing a token pair once the rules have decided (they hold the grant's
//! lock, or have consumed the code): one statement for the pair and what
//! the flow writes alongside it.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};

use super::NewPair;
use crate::db::models::token::IssuedPair;
use crate::db::models::{App, AuthorizationCode, Grant, RefreshToken};

/// What an [`Issue`] statement writes besides the pair.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing: the pair joins an existing grant.
    InGrant,
    /// Marks the parent refresh token used and stamps the grant's
    /// `last_refreshed_at`: a refresh rotation.
    Rotation,
    /// Creates the grant and links the code to it: a code exchange.
    ForCode,
}

/// The kinds of [`Issue`] statement, one type each so that each has its own
/// fixed SQL text and prepared statement.
trait IssueKind: 'static {
    const STEP: Step;
}

/// A marker type per `Step`, named after it.
macro_rules! issue_kinds {
    ($($kind:ident),*) => {$(
        struct $kind;
        impl IssueKind for $kind {
            const STEP: Step = Step::$kind;
        }
    )*};
}
issue_kinds!(InGrant, Rotation, ForCode);

/// An access + refresh token pair in one statement (a data-modifying CTE).
struct Issue<'a, K> {
    tenant_id: i64,
    /// The grant (`InGrant`, `Rotation`) or the code (`ForCode`).
    target_id: i64,
    app_id: i64,
    end_user_id: i64,
    scopes: &'a [String],
    parent_id: Option<i64>,
    pair: &'a NewPair,
    kind: PhantomData<K>,
}

impl<K: IssueKind> QueryId for Issue<'_, K> {
    type QueryId = Issue<'static, K>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<K> diesel::query_builder::Query for Issue<'_, K> {
    /// `RETURNING` the new refresh token's id and its grant's id.
    type SqlType = (diesel::sql_types::BigInt, diesel::sql_types::BigInt);
}

impl<K> RunQueryDsl<PgConnection> for Issue<'_, K> {}

impl<K: IssueKind> QueryFragment<Pg> for Issue<'_, K> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Nullable, Text};
        // The grant id as the access token's INSERT sees it: a bind, or
        // the id of the grant the statement creates (`g`).
        let grant_from_cte = K::STEP == Step::ForCode;
        match K::STEP {
            Step::ForCode => {
                out.push_sql(
                    "WITH g AS (INSERT INTO grants (tenant_id, app_id, end_user_id, scopes) VALUES (",
                );
                out.push_bind_param::<BigInt, _>(&self.tenant_id)?;
                out.push_sql(", ");
                out.push_bind_param::<BigInt, _>(&self.app_id)?;
                out.push_sql(", ");
                out.push_bind_param::<BigInt, _>(&self.end_user_id)?;
                out.push_sql(", ");
                out.push_bind_param::<Array<Text>, _>(self.scopes)?;
                out.push_sql(
                    ") RETURNING id), \
                     c AS (UPDATE authorization_codes SET grant_id = g.id FROM g WHERE authorization_codes.id = ",
                );
                out.push_bind_param::<BigInt, _>(&self.target_id)?;
                out.push_sql("), ");
            }
            Step::Rotation => {
                out.push_sql("WITH u AS (UPDATE refresh_tokens SET used_at = now() WHERE id = ");
                out.push_bind_param::<Nullable<BigInt>, _>(&self.parent_id)?;
                out.push_sql("), g AS (UPDATE grants SET last_refreshed_at = now() WHERE id = ");
                out.push_bind_param::<BigInt, _>(&self.target_id)?;
                out.push_sql("), ");
            }
            Step::InGrant => out.push_sql("WITH "),
        }
        out.push_sql(
            "a AS (INSERT INTO access_tokens (tenant_id, grant_id, token_digest, hint, created_at, expires_at, scopes) SELECT ",
        );
        out.push_bind_param::<BigInt, _>(&self.tenant_id)?;
        out.push_sql(", ");
        if grant_from_cte {
            out.push_sql("g.id");
        } else {
            out.push_bind_param::<BigInt, _>(&self.target_id)?;
        }
        out.push_sql(", ");
        self.pair.push_access(&mut out)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(self.scopes)?;
        if grant_from_cte {
            out.push_sql(" FROM g");
        }
        out.push_sql(
            " RETURNING id, grant_id) \
             INSERT INTO refresh_tokens (tenant_id, grant_id, token_digest, hint, parent_id, access_token_id, created_at, expires_at, scopes) SELECT ",
        );
        out.push_bind_param::<BigInt, _>(&self.tenant_id)?;
        out.push_sql(", a.grant_id, ");
        self.pair.push_refresh_secret(&mut out)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<BigInt>, _>(&self.parent_id)?;
        out.push_sql(", a.id, ");
        self.pair.push_refresh_times(&mut out)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(self.scopes)?;
        out.push_sql(" FROM a RETURNING id, grant_id");
        Ok(())
    }
}

fn issue<K: IssueKind>(
    conn: &mut PgConnection,
    app: &App,
    target: (i64, i64),
    end_user_id: i64,
    scopes: &[String],
    parent_id: Option<i64>,
) -> QueryResult<(IssuedPair, i64)> {
    let (tenant_id, target_id) = target;
    let pair = NewPair::generate(app);
    let (refresh_id, grant_id): (i64, i64) = Issue::<K> {
        tenant_id,
        target_id,
        app_id: app.id,
        end_user_id,
        scopes,
        parent_id,
        pair: &pair,
        kind: PhantomData,
    }
    .get_result(conn)?;
    Ok((pair.issued(refresh_id), grant_id))
}

/// A new access token and refresh token in `grant`, with `scopes` (at most
/// the grant's), as `parent_id`'s successor when given.
pub fn issue_in_grant(
    conn: &mut PgConnection,
    grant: &Grant,
    app: &App,
    scopes: &[String],
    parent_id: Option<i64>,
) -> QueryResult<IssuedPair> {
    let target = (grant.tenant_id, grant.id);
    issue::<InGrant>(conn, app, target, grant.end_user_id, scopes, parent_id).map(|(p, _)| p)
}

/// A refresh rotation's writes: marks `parent` used, issues the new pair as
/// its child and stamps the grant's `last_refreshed_at`. The new pair has
/// `scopes` (at most the grant's). The caller holds the grant's lock.
pub fn issue_rotation(
    conn: &mut PgConnection,
    grant: &Grant,
    app: &App,
    parent: &RefreshToken,
    scopes: &[String],
) -> QueryResult<IssuedPair> {
    let target = (grant.tenant_id, grant.id);
    issue::<Rotation>(
        conn,
        app,
        target,
        grant.end_user_id,
        scopes,
        Some(parent.id),
    )
    .map(|(p, _)| p)
}

/// A code exchange's writes: creates the grant, issues its first pair and
/// links the (already consumed) code to the grant. The pair and the new
/// grant's id.
pub fn issue_for_code(
    conn: &mut PgConnection,
    app: &App,
    code: &AuthorizationCode,
) -> QueryResult<(IssuedPair, i64)> {
    let target = (code.tenant_id, code.id);
    issue::<ForCode>(conn, app, target, code.end_user_id, &code.scopes, None)
}
