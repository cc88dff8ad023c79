//! A whole code exchange in one statement, for the common case.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};

use super::{app_unchanged, statement, NewPair, PairFrom};
use crate::db::models::token::IssuedPair;
use crate::db::models::App;

/// Consumes the code when it is unused, unexpired and its PKCE challenge (if
/// any) is met, creates the grant (its id drawn in the same UPDATE that
/// links the code to it), and issues the first pair. When it matches no
/// code nothing at all is written, and the rules tell the cases apart
/// (unknown, replayed, expired, wrong verifier).
struct Exchange<'a> {
    tenant_id: i64,
    app_id: i64,
    /// The `auth_version` of the app as the caller read it (or its copy).
    app_version: i64,
    code_digest: &'a [u8],
    /// BASE64URL(SHA256(code_verifier)) of a well-formed verifier, `None`
    /// when none was sent: it must equal the code's challenge, and no
    /// challenge matches none (RFC 9700 §2.1.1: a verifier for a code
    /// issued without a challenge is a downgrade, left to the rules).
    pkce_s256: Option<String>,
    pair: &'a NewPair,
}

statement!(
    Exchange,
    (
        diesel::sql_types::BigInt,
        diesel::sql_types::BigInt,
        diesel::sql_types::Array<diesel::sql_types::Text>,
    )
);

impl QueryFragment<Pg> for Exchange<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Bytea, Nullable, Text, Timestamptz};
        out.push_sql(
            "WITH c AS (UPDATE authorization_codes \
             SET used_at = now(), grant_id = nextval('grants_id_seq'::regclass) \
             WHERE code_digest = ",
        );
        out.push_bind_param::<Bytea, _>(self.code_digest)?;
        out.push_sql(" AND tenant_id = ");
        out.push_bind_param::<BigInt, _>(&self.tenant_id)?;
        out.push_sql(" AND app_id = ");
        out.push_bind_param::<BigInt, _>(&self.app_id)?;
        out.push_sql(" AND used_at IS NULL AND expires_at > ");
        out.push_bind_param::<Timestamptz, _>(&self.pair.now)?;
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
             SELECT grant_id, tenant_id, app_id, end_user_id, scopes FROM c RETURNING id, scopes), ",
        );
        let from = PairFrom {
            keys: "c.tenant_id, c.grant_id",
            scopes_from: "c.scopes FROM c",
            parent: "NULL",
            refresh_from: "a",
        };
        self.pair.push_pair_ctes(&mut out, &from)?;
        out.push_sql(" SELECT r.id, r.grant_id, g.scopes FROM r JOIN g ON g.id = r.grant_id");
        Ok(())
    }
}

/// The one-statement code exchange of `app`'s code with `code_digest`, at
/// the app's `auth_version` as `app` holds it. `None`: no unused, unexpired
/// code with a met challenge, or the app changed; nothing was written.
/// Returns the pair and the grant's scopes.
pub fn exchange_code(
    conn: &mut PgConnection,
    tenant_id: i64,
    app: &App,
    code_digest: &[u8],
    pkce_s256: Option<String>,
) -> QueryResult<Option<(IssuedPair, Vec<String>)>> {
    let pair = NewPair::generate(app);
    let row: Option<(i64, i64, Vec<String>)> = Exchange {
        tenant_id,
        app_id: app.id,
        app_version: app.auth_version,
        code_digest,
        pkce_s256,
        pair: &pair,
    }
    .get_result(conn)
    .optional()?;
    Ok(row.map(|(refresh_id, _grant_id, scopes)| (pair.issued(refresh_id), scopes)))
}
