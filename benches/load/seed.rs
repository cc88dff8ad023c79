//! The seeded rows: a tenant, its app, N installs, API keys and the apps
//! api-rotate rotates, straight through the models.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use kitauth::crypto::{self, TokenKind};
use kitauth::db::models::code::CODE_TTL_SECS;
use kitauth::db::models::{
    ApiKey, ApiScope, App, NewApiKey, NewAuthorizationCode, NewTenant, Tenant,
};
use kitauth::db::schema::{
    access_tokens, authorization_codes, client_secrets, end_users, grants, refresh_tokens,
};

use crate::TENANT;

pub struct Install {
    pub access: String,
    pub refresh: String,
}

pub struct Seeded {
    pub client_id: String,
    pub client_secret: String,
    pub app_id: i64,
    pub tenant_id: i64,
    pub user_ids: Vec<i64>,
    pub installs: Vec<Install>,
    /// `kak_` keys of scope read and of scope write.
    pub read_key: String,
    pub write_key: String,
    /// The apps api-rotate rotates the secrets of.
    pub rotate_app_ids: Vec<i64>,
}

pub const CHUNK: usize = 1000;

/// Seeds straight through the models and bulk inserts: real rows whose
/// tokens work, without bcrypt or the browser pages; `rotate_apps` more
/// apps for api-rotate.
pub fn seed(url: &str, installs: usize, rotate_apps: usize) -> Result<Seeded, String> {
    let mut conn = kitauth::db::connect(url).map_err(|e| e.to_string())?;
    let c = &mut conn;
    let e = |e: diesel::result::Error| e.to_string();
    let tenant = Tenant::create(
        c,
        &NewTenant {
            slug: TENANT,
            name: "Benchmark tenant",
        },
    )
    .map_err(e)?;
    let (app, client_secret) =
        kitauth::cli::create_app(c, tenant.id, "Bench app", vec![], vec!["public".into()])
            .map_err(|e| e.to_string())?;
    let now = Utc::now();
    let mut user_ids = Vec::with_capacity(installs);
    let mut out = Vec::with_capacity(installs);
    let indices: Vec<usize> = (0..installs).collect();
    for chunk in indices.chunks(CHUNK) {
        let (ids, pairs) = seed_creators_and_grants(c, tenant.id, &app, chunk)?;
        seed_tokens(c, tenant.id, &app, &pairs, now)?;
        user_ids.extend_from_slice(&ids);
        out.extend(pairs.into_iter().map(|(_, a, r)| Install {
            access: a.value,
            refresh: r.value,
        }));
    }
    let (read_key, write_key) = seed_api_keys(c, tenant.id)?;
    let rotate_app_ids = seed_rotate_apps(c, tenant.id, rotate_apps)?;
    diesel::sql_query("ANALYZE").execute(c).map_err(e)?;
    Ok(Seeded {
        client_id: app.client_id,
        client_secret,
        app_id: app.id,
        tenant_id: tenant.id,
        user_ids,
        installs: out,
        read_key,
        write_key,
        rotate_app_ids,
    })
}

/// A grant's id with the access and refresh token to issue in it.
type Pair = (i64, crypto::NewSecret, crypto::NewSecret);

/// One creator and one grant per index of `chunk`; returns the creators'
/// ids and each grant with its tokens to be.
fn seed_creators_and_grants(
    c: &mut PgConnection,
    tenant_id: i64,
    app: &App,
    chunk: &[usize],
) -> Result<(Vec<i64>, Vec<Pair>), String> {
    let e = |e: diesel::result::Error| e.to_string();
    // Creators never sign in during the run; their hash is not a password.
    let hash = "$2b$04$benchmarkcreatorsnevermakeamatchwithanypasswordxxxxxxx";
    let rows: Vec<_> = chunk
        .iter()
        .map(|i| {
            (
                end_users::tenant_id.eq(tenant_id),
                end_users::email.eq(format!("creator{i}@bench.example")),
                end_users::password_hash.eq(hash),
            )
        })
        .collect();
    let ids: Vec<i64> = diesel::insert_into(end_users::table)
        .values(&rows)
        .returning(end_users::id)
        .get_results(c)
        .map_err(e)?;
    let scopes = vec!["public".to_string()];
    let grant_rows: Vec<_> = ids
        .iter()
        .map(|uid| {
            (
                grants::tenant_id.eq(tenant_id),
                grants::app_id.eq(app.id),
                grants::end_user_id.eq(*uid),
                grants::scopes.eq(&scopes),
            )
        })
        .collect();
    let grant_ids: Vec<(i64, i64)> = diesel::insert_into(grants::table)
        .values(&grant_rows)
        .returning((grants::end_user_id, grants::id))
        .get_results(c)
        .map_err(e)?;
    let by_user: std::collections::HashMap<i64, i64> = grant_ids.into_iter().collect();
    let pairs: Vec<Pair> = ids
        .iter()
        .map(|uid| {
            (
                by_user[uid],
                crypto::generate(TokenKind::AccessToken),
                crypto::generate(TokenKind::RefreshToken),
            )
        })
        .collect();
    Ok((ids, pairs))
}

/// Each pair's access token, and its refresh token tied to it.
fn seed_tokens(
    c: &mut PgConnection,
    tenant_id: i64,
    app: &App,
    pairs: &[Pair],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let e = |e: diesel::result::Error| e.to_string();
    let access_rows: Vec<_> = pairs
        .iter()
        .map(|(g, a, _)| {
            (
                access_tokens::tenant_id.eq(tenant_id),
                access_tokens::grant_id.eq(*g),
                access_tokens::token_digest.eq(&a.digest),
                access_tokens::hint.eq(&a.hint),
                access_tokens::created_at.eq(now),
                access_tokens::expires_at
                    .eq(now + chrono::Duration::seconds(app.access_token_ttl_secs.into())),
            )
        })
        .collect();
    let access_ids: Vec<(i64, i64)> = diesel::insert_into(access_tokens::table)
        .values(&access_rows)
        .returning((access_tokens::grant_id, access_tokens::id))
        .get_results(c)
        .map_err(e)?;
    let access_by_grant: std::collections::HashMap<i64, i64> = access_ids.into_iter().collect();
    let refresh_rows: Vec<_> = pairs
        .iter()
        .map(|(g, _, r)| {
            (
                refresh_tokens::tenant_id.eq(tenant_id),
                refresh_tokens::grant_id.eq(*g),
                refresh_tokens::token_digest.eq(&r.digest),
                refresh_tokens::hint.eq(&r.hint),
                refresh_tokens::access_token_id.eq(access_by_grant[g]),
                refresh_tokens::created_at.eq(now),
                refresh_tokens::expires_at
                    .eq(now + chrono::Duration::seconds(app.refresh_token_ttl_secs.into())),
            )
        })
        .collect();
    diesel::insert_into(refresh_tokens::table)
        .values(&refresh_rows)
        .execute(c)
        .map_err(e)?;
    Ok(())
}

/// The tenant API's keys, through the model function `kitauth api-key
/// create` uses: (read, write).
fn seed_api_keys(c: &mut PgConnection, tenant_id: i64) -> Result<(String, String), String> {
    let mut api_key = |name: &str, scope: ApiScope| {
        let new = NewApiKey {
            name: name.into(),
            scopes: vec![scope],
            expires_in_days: None,
            created_by: "cli".into(),
        };
        new.validate()?;
        ApiKey::create(c, tenant_id, &new)
            .map(|(_, value)| value)
            .map_err(|e| e.to_string())
    };
    let read_key = api_key("bench read", ApiScope::Read)?;
    let write_key = api_key("bench write", ApiScope::Write)?;
    Ok((read_key, write_key))
}

/// `n` more apps, whose secrets api-rotate rotates.
fn seed_rotate_apps(c: &mut PgConnection, tenant_id: i64, n: usize) -> Result<Vec<i64>, String> {
    let mut rotate_app_ids = Vec::with_capacity(n);
    for i in 0..n {
        let (a, _) = kitauth::cli::create_app(
            c,
            tenant_id,
            &format!("Rotated app {i}"),
            vec![],
            vec!["public".into()],
        )
        .map_err(|e| e.to_string())?;
        rotate_app_ids.push(a.id);
    }
    Ok(rotate_app_ids)
}

/// Mints `n` authorization codes, as the consent step would; returns their values.
pub fn mint_codes(url: &str, s: &Seeded, n: usize) -> Result<Vec<String>, String> {
    let mut conn = kitauth::db::connect(url).map_err(|e| e.to_string())?;
    let expires = Utc::now() + chrono::Duration::seconds(CODE_TTL_SECS);
    let mut values = Vec::with_capacity(n);
    let mut rows = Vec::with_capacity(CHUNK);
    for i in 0..n {
        let code = crypto::generate(TokenKind::AuthorizationCode);
        rows.push(NewAuthorizationCode {
            tenant_id: s.tenant_id,
            app_id: s.app_id,
            end_user_id: s.user_ids[i % s.user_ids.len()],
            code_digest: code.digest,
            redirect_uri: "https://app.kit.com/apps/install".into(),
            scopes: vec!["public".into()],
            code_challenge: None,
            created_at: Utc::now(),
            expires_at: expires,
        });
        values.push(code.value);
        if rows.len() == CHUNK || i + 1 == n {
            diesel::insert_into(authorization_codes::table)
                .values(&rows)
                .execute(&mut conn)
                .map_err(|e| e.to_string())?;
            rows.clear();
        }
    }
    // A bulk insert of this size right before the clock starts would set
    // autovacuum on the table during the timed run; in service, codes
    // arrive one consent at a time. (pgbench -i vacuums its tables too.)
    diesel::sql_query("VACUUM (ANALYZE) authorization_codes")
        .execute(&mut conn)
        .map_err(|e| e.to_string())?;
    Ok(values)
}

/// The fewest and the most secrets any of `app_ids` has.
pub fn secrets_per_app(url: &str, app_ids: &[i64]) -> Result<(i64, i64), String> {
    let mut conn = kitauth::db::connect(url).map_err(|e| e.to_string())?;
    let counts: Vec<i64> = client_secrets::table
        .filter(client_secrets::app_id.eq_any(app_ids))
        .group_by(client_secrets::app_id)
        .select(diesel::dsl::count_star())
        .load(&mut conn)
        .map_err(|e| e.to_string())?;
    let min = counts.iter().copied().min().unwrap_or(0);
    Ok((min, counts.iter().copied().max().unwrap_or(0)))
}
