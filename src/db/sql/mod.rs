//! The hand-written statements of the fast paths (`oauth::fast`) and of the
//! rules' writes. Each is one data-modifying CTE: one round trip, and, as a
//! single statement, one transaction. Each has a fixed SQL text per Rust
//! type (`HAS_STATIC_QUERY_ID`), so diesel keeps each as one prepared
//! statement; `sql_query` would lose that.
//!
//! - [`issue`]: a token pair in a grant, a rotation's writes, a code
//!   exchange's writes (the rules hold the locks and have decided);
//! - [`exchange`]: a whole code exchange in the common case;
//! - [`rotate`]: a whole refresh rotation in the common case.
//!
//! `exchange` and `rotate` decide nothing: each writes only when every
//! condition of the common case holds, and otherwise nothing at all, for
//! the rules to decide (`oauth/fast.rs` maps each clause to its rule).

mod exchange;
mod issue;
mod rotate;

pub use exchange::exchange_code;
pub use issue::{issue_for_code, issue_in_grant, issue_rotation};
pub use rotate::rotate_refresh;

use chrono::{DateTime, Duration, Utc};
use diesel::pg::Pg;
use diesel::query_builder::AstPass;
use diesel::QueryResult;

use crate::crypto::{self, NewSecret, TokenKind};
use crate::db::models::token::IssuedPair;
use crate::db::models::App;

/// A token pair about to be issued for `app`: the values (handed out once,
/// never stored), their digests and hints, and their times. Every statement
/// that issues a pair takes one; there is no other place that makes one.
pub struct NewPair {
    access: NewSecret,
    refresh: NewSecret,
    now: DateTime<Utc>,
    access_expires_at: DateTime<Utc>,
    refresh_expires_at: DateTime<Utc>,
    expires_in: i64,
}

impl NewPair {
    pub fn generate(app: &App) -> Self {
        let now = Utc::now();
        NewPair {
            access: crypto::generate(TokenKind::AccessToken),
            refresh: crypto::generate(TokenKind::RefreshToken),
            now,
            access_expires_at: now + Duration::seconds(app.access_token_ttl_secs.into()),
            refresh_expires_at: now + Duration::seconds(app.refresh_token_ttl_secs.into()),
            expires_in: app.access_token_ttl_secs.into(),
        }
    }

    /// The pair as the token endpoint answers it, once its statement has
    /// stored the refresh token as `refresh_token_id`.
    pub fn issued(self, refresh_token_id: i64) -> IssuedPair {
        IssuedPair {
            access_token: self.access.value,
            refresh_token: self.refresh.value,
            expires_in: self.expires_in,
            created_at: self.now,
            refresh_token_id,
        }
    }

    /// `$digest, $hint, $now, $expires_at` of the access token.
    fn push_access<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        push_token(out, &self.access, &self.now, &self.access_expires_at)
    }

    /// `$digest, $hint` of the refresh token.
    fn push_refresh_secret<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Bytea, Text};
        out.push_bind_param::<Bytea, _>(&self.refresh.digest)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.refresh.hint)
    }

    /// `$now, $expires_at` of the refresh token.
    fn push_refresh_times<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::Timestamptz;
        out.push_bind_param::<Timestamptz, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.refresh_expires_at)
    }
}

/// Where the two INSERTs of a pair (`a`, then `r`) take their rows from, in
/// a statement whose earlier CTEs consumed the code or the old token.
struct PairFrom {
    /// The access token's `tenant_id, grant_id` columns.
    keys: &'static str,
    /// The access token's scopes and the rows they come from.
    scopes_from: &'static str,
    /// The refresh token's parent.
    parent: &'static str,
    /// The rows the refresh token comes from (`a`, joined with what gives
    /// its parent).
    refresh_from: &'static str,
}

impl NewPair {
    /// `a AS (INSERT INTO access_tokens …), r AS (INSERT INTO refresh_tokens
    /// …)`, each `RETURNING` what the next one (or the final `SELECT`) reads.
    fn push_pair_ctes<'b>(
        &'b self,
        out: &mut AstPass<'_, 'b, Pg>,
        from: &PairFrom,
    ) -> QueryResult<()> {
        out.push_sql(
            "a AS (INSERT INTO access_tokens (tenant_id, grant_id, token_digest, hint, created_at, expires_at, scopes) SELECT ",
        );
        out.push_sql(from.keys);
        out.push_sql(", ");
        self.push_access(out)?;
        out.push_sql(", ");
        out.push_sql(from.scopes_from);
        out.push_sql(
            " RETURNING id, grant_id, tenant_id, scopes), \
             r AS (INSERT INTO refresh_tokens (tenant_id, grant_id, token_digest, hint, parent_id, access_token_id, created_at, expires_at, scopes) \
             SELECT a.tenant_id, a.grant_id, ",
        );
        self.push_refresh_secret(out)?;
        out.push_sql(", ");
        out.push_sql(from.parent);
        out.push_sql(", a.id, ");
        self.push_refresh_times(out)?;
        out.push_sql(", a.scopes FROM ");
        out.push_sql(from.refresh_from);
        out.push_sql(" RETURNING id, grant_id)");
        Ok(())
    }
}

fn push_token<'b>(
    out: &mut AstPass<'_, 'b, Pg>,
    secret: &'b NewSecret,
    now: &'b DateTime<Utc>,
    expires_at: &'b DateTime<Utc>,
) -> QueryResult<()> {
    use diesel::sql_types::{Bytea, Text, Timestamptz};
    out.push_bind_param::<Bytea, _>(&secret.digest)?;
    out.push_sql(", ");
    out.push_bind_param::<Text, _>(&secret.hint)?;
    out.push_sql(", ");
    out.push_bind_param::<Timestamptz, _>(now)?;
    out.push_sql(", ");
    out.push_bind_param::<Timestamptz, _>(expires_at)
}

/// The fast statements' guard: the app is still at the `auth_version` its
/// caller authenticated the client with. Checked in the statement that
/// writes, so a client authenticated from a copy (`ClientCache<App>`) is
/// exactly as current as one read in that statement; when the app or one
/// of its secrets changed since, the statement writes nothing and the
/// caller's rules read the client again.
fn app_unchanged<'b>(
    out: &mut AstPass<'_, 'b, Pg>,
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

/// `QueryId`, `Query` (with `$sql` its `RETURNING` row) and `RunQueryDsl`
/// for a statement type with one lifetime: one fixed SQL text per type.
macro_rules! statement {
    ($name:ident, $sql:ty) => {
        impl diesel::query_builder::QueryId for $name<'_> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }
        impl diesel::query_builder::Query for $name<'_> {
            type SqlType = $sql;
        }
        impl diesel::query_dsl::RunQueryDsl<diesel::pg::PgConnection> for $name<'_> {}
    };
}
pub(crate) use statement;
