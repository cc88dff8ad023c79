//! A whole refresh rotation in one statement, for the common case.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};

use super::{app_unchanged, statement, NewPair, PairFrom};
use crate::db::models::token::IssuedPair;
use crate::db::models::App;

/// Locks the token's grant (live, of this app) exactly as the rules do,
/// marks the token used when it is unused, unrevoked and unexpired, issues
/// its successor and stamps the grant. When any of that does not hold it
/// writes nothing, and the rules lock again and tell replay, grace-window
/// retry, revocation and expiry apart. (Under READ COMMITTED, a statement
/// that waited for the grant's lock re-checks the token row's latest
/// version before updating it, so two racing rotations of one token cannot
/// both get here.)
struct Rotate<'a> {
    tenant_id: i64,
    app_id: i64,
    /// The `auth_version` of the app as the caller read it (or its copy).
    app_version: i64,
    /// The app's scopes as of `app_version`: a grant with a scope the app
    /// no longer has is left to the rules, which issue the intersection.
    allowed_scopes: &'a [String],
    token_digest: &'a [u8],
    pair: &'a NewPair,
}

statement!(
    Rotate,
    (
        diesel::sql_types::BigInt,
        diesel::sql_types::Array<diesel::sql_types::Text>,
    )
);

impl QueryFragment<Pg> for Rotate<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
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
        out.push_bind_param::<Bytea, _>(self.token_digest)?;
        out.push_sql(" AND tenant_id = ");
        out.push_bind_param::<BigInt, _>(&self.tenant_id)?;
        out.push_sql(") AND grants.scopes <@ ");
        out.push_bind_param::<Array<Text>, _>(self.allowed_scopes)?;
        out.push_sql(" AND ");
        app_unchanged(&mut out, &self.app_id, &self.app_version)?;
        out.push_sql(
            " FOR UPDATE), \
             u AS (UPDATE refresh_tokens SET used_at = now() FROM g \
             WHERE refresh_tokens.grant_id = g.id AND refresh_tokens.token_digest = ",
        );
        out.push_bind_param::<Bytea, _>(self.token_digest)?;
        out.push_sql(
            " AND refresh_tokens.used_at IS NULL AND refresh_tokens.revoked_at IS NULL \
             AND refresh_tokens.expires_at > ",
        );
        out.push_bind_param::<Timestamptz, _>(&self.pair.now)?;
        out.push_sql(
            " RETURNING refresh_tokens.id, refresh_tokens.grant_id, refresh_tokens.tenant_id), \
             s AS (UPDATE grants SET last_refreshed_at = now() FROM u WHERE grants.id = u.grant_id), ",
        );
        let from = PairFrom {
            keys: "u.tenant_id, u.grant_id",
            scopes_from: "g.scopes FROM u JOIN g ON g.id = u.grant_id",
            parent: "u.id",
            refresh_from: "a JOIN u ON u.grant_id = a.grant_id",
        };
        self.pair.push_pair_ctes(&mut out, &from)?;
        out.push_sql(" SELECT r.id, g.scopes FROM r JOIN g ON g.id = r.grant_id");
        Ok(())
    }
}

/// The one-statement refresh rotation of the token with `token_digest`, at
/// the app's `auth_version` as `app` holds it. `None`: not the common case;
/// nothing was written. Returns the pair and the grant's scopes.
pub fn rotate_refresh(
    conn: &mut PgConnection,
    tenant_id: i64,
    app: &App,
    token_digest: &[u8],
) -> QueryResult<Option<(IssuedPair, Vec<String>)>> {
    let pair = NewPair::generate(app);
    let row: Option<(i64, Vec<String>)> = Rotate {
        tenant_id,
        app_id: app.id,
        app_version: app.auth_version,
        allowed_scopes: &app.allowed_scopes,
        token_digest,
        pair: &pair,
    }
    .get_result(conn)
    .optional()?;
    Ok(row.map(|(refresh_id, scopes)| (pair.issued(refresh_id), scopes)))
}
