//! The hot paths make the fewest round trips, and the copies of clients
//! are used only while the database agrees. (The rules themselves are
//! tested in tests/oauth_rules.rs, with the copies on and off.)

mod common;

use common::*;
use rocket::http::{ContentType, Header, Status};

/// Queries and transactions each connection runs, by database URL: a
/// diesel instrumentation installed as the default for every connection.
mod round_trips {
    use diesel::connection::{set_default_instrumentation, Instrumentation, InstrumentationEvent};
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    #[derive(Default, Debug, Clone)]
    pub struct Counts {
        pub queries: Vec<String>,
        pub transactions: usize,
    }

    fn all() -> &'static Mutex<HashMap<String, Counts>> {
        static ALL: OnceLock<Mutex<HashMap<String, Counts>>> = OnceLock::new();
        ALL.get_or_init(Default::default)
    }

    struct Counter {
        url: Option<String>,
    }

    impl Instrumentation for Counter {
        fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
            let (query, transaction) = match event {
                InstrumentationEvent::StartEstablishConnection { url, .. } => {
                    self.url = Some(url.to_string());
                    return;
                }
                InstrumentationEvent::StartQuery { query, .. } => (Some(query.to_string()), 0),
                InstrumentationEvent::BeginTransaction { .. } => (None, 1),
                _ => return,
            };
            let Some(url) = &self.url else { return };
            // The stats flusher's periodic upsert is not a request's.
            if query.as_deref().is_some_and(|q| q.contains("token_stats")) {
                return;
            }
            // Nor is a new pooled connection's set-up (`db::statement_timeout`,
            // once per connection, when the pool grows under load).
            if query
                .as_deref()
                .is_some_and(|q| q.starts_with("SET statement_timeout"))
            {
                return;
            }
            let mut all = all().lock().unwrap();
            let c = all.entry(url.clone()).or_default();
            c.queries.extend(query);
            c.transactions += transaction;
        }
    }

    pub fn install() {
        set_default_instrumentation(|| Some(Box::new(Counter { url: None }))).unwrap();
    }

    /// What ran on `url`'s connections since the last call.
    pub fn take(url: &str) -> Counts {
        all().lock().unwrap().remove(url).unwrap_or_default()
    }
}

/// The rule for the hot paths, counted on the real connections:
/// introspection and userinfo are one query, code exchange and refresh two
/// without a copy of the client (the client, then one statement that is its
/// own transaction) and one with it (the statement, which checks the copy's
/// version), and none of them opens a transaction block. (bcrypt never runs
/// there: client secrets are SHA-256 digests.)
#[rocket::async_test]
async fn hot_paths_make_the_fewest_round_trips() {
    round_trips::install();
    let app = TestApp::with(|f| f.merge(("janitor_interval_secs", 0))).await;
    let seed = seed_tenant(&app, "acme");
    // The pool's connections are opened with the URL as kitauth hands it
    // to libpq.
    let url = kitauth::db::libpq_url(&app.db.url);
    let mut measured = Vec::new();
    // The first exchange: no copy of the client yet. (Authorize, just
    // before, has put the tenant in its 5 s cache.)
    // The secret's use is stamped at most once a minute: as if it had been.
    let code = get_code(&app, &seed).await;
    {
        use diesel::RunQueryDsl;
        diesel::sql_query("UPDATE client_secrets SET last_used_at = now()")
            .execute(&mut app.conn())
            .unwrap();
    }
    round_trips::take(&url);
    let resp = kit_exchange(&app, &seed, &code).await;
    assert_eq!(resp.status(), Status::Ok);
    measured.push(("code exchange (no client copy)", round_trips::take(&url), 2));
    let body = json_of(resp).await;
    let access = body["access_token"].as_str().unwrap().to_string();
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    // The first introspection stamps the secret's last_used_at; later ones
    // within a minute do not.
    introspect(&app, &seed, &access).await;

    let userinfo = |token: String| {
        let app = &app;
        let slug = seed.tenant.slug.clone();
        async move {
            let resp = app
                .client
                .get(format!("/t/{slug}/oauth/userinfo"))
                .header(Header::new("Authorization", format!("Bearer {token}")))
                .dispatch()
                .await;
            assert_eq!(resp.status(), Status::Ok);
        }
    };
    // Each measured request comes right after a warm-up one, so the tenant
    // is in its 5 s cache.

    userinfo(access.clone()).await;
    round_trips::take(&url);
    userinfo(access.clone()).await;
    measured.push(("userinfo", round_trips::take(&url), 1));

    userinfo(access.clone()).await;
    round_trips::take(&url);
    assert_eq!(introspect(&app, &seed, &access).await["active"], true);
    measured.push(("introspect", round_trips::take(&url), 1));
    // Now with the in-memory copy of the client (checked, not trusted).
    assert_eq!(introspect(&app, &seed, &access).await["active"], true);
    measured.push(("introspect (client copy)", round_trips::take(&url), 1));

    let code = get_code(&app, &seed).await;
    userinfo(access.clone()).await;
    round_trips::take(&url);
    let resp = kit_exchange(&app, &seed, &code).await;
    assert_eq!(resp.status(), Status::Ok);
    measured.push(("code exchange", round_trips::take(&url), 1));

    userinfo(access.clone()).await;
    round_trips::take(&url);
    let resp = kit_refresh(&app, &seed, &refresh).await;
    assert_eq!(resp.status(), Status::Ok);
    measured.push(("refresh", round_trips::take(&url), 1));

    for (path, counts, expected) in measured {
        assert_eq!(
            counts.queries.len(),
            expected,
            "{path}: {:#?}",
            counts.queries
        );
        assert_eq!(counts.transactions, 0, "{path}: {:#?}", counts.queries);
    }
}

/// Status and body of an introspection with the given secret.
async fn introspect_as(app: &TestApp, seed: &Seed, secret: &str, token: &str) -> (Status, String) {
    let resp = app
        .client
        .post(format!("/t/{}/oauth/introspect", seed.tenant.slug))
        .header(ContentType::Form)
        .body(form(&[
            ("client_id", &seed.app.client_id),
            ("client_secret", secret),
            ("token", token),
        ]))
        .dispatch()
        .await;
    (resp.status(), resp.into_string().await.unwrap_or_default())
}

fn cache_counts(app: &TestApp) -> (u64, u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let cache = app
        .client
        .rocket()
        .state::<kitauth::auth::ClientCache>()
        .expect("the client cache is managed");
    let s = cache.stats();
    (
        s.hits.load(Relaxed),
        s.misses.load(Relaxed),
        s.stale.load(Relaxed),
    )
}

#[rocket::async_test]
async fn introspection_uses_its_copy_of_the_client_only_while_the_database_agrees() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let (access, _) = installed(&app, &seed).await;
    let secret = seed.client_secret.clone();
    let active = |(status, body): (Status, String)| {
        assert_eq!(status, Status::Ok, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["active"] == true
    };
    let refused = |(status, body): (Status, String)| {
        assert_eq!(status, Status::Unauthorized, "{body}");
        assert!(body.contains("invalid_client"), "{body}");
    };

    // The first request reads the client (the code exchange has just
    // stamped the secret's use), the next ones use the copy.
    for _ in 0..3 {
        assert!(active(introspect_as(&app, &seed, &secret, &access).await));
    }
    assert_eq!(cache_counts(&app), (2, 1, 0));
    let version = || {
        app.count(&format!(
            "SELECT auth_version FROM apps WHERE id = {}",
            seed.app.id
        ))
    };
    let v0 = version();

    // Neither the use stamp nor a no-op update moves the version, so the
    // copy stays in use. (Any real change to the app does, migration 000005:
    // the token endpoint's copy holds the whole row.)
    let mut conn = app.conn();
    let exec = |conn: &mut diesel::PgConnection, sql: &str| {
        use diesel::RunQueryDsl;
        diesel::sql_query(sql).execute(conn).unwrap();
    };
    exec(
        &mut conn,
        "UPDATE client_secrets SET last_used_at = now() - interval '10 seconds', expires_at = expires_at",
    );
    exec(
        &mut conn,
        "UPDATE apps SET name = name, access_token_ttl_secs = access_token_ttl_secs, disabled = disabled",
    );
    assert_eq!(version(), v0);
    assert!(active(introspect_as(&app, &seed, &secret, &access).await));
    assert_eq!(cache_counts(&app), (3, 1, 0));

    // A copy whose use stamp is more than a minute old: the use is stamped
    // again, and the copy, now behind the database, is dropped and read
    // again by the next request. (Changing refresh_without_secret renews
    // the version, so the copy is read again with the old stamp.)
    exec(
        &mut conn,
        "UPDATE client_secrets SET last_used_at = now() - interval '2 minutes'",
    );
    exec(
        &mut conn,
        "UPDATE apps SET refresh_without_secret = NOT refresh_without_secret",
    );
    assert!(active(introspect_as(&app, &seed, &secret, &access).await));
    assert_eq!(cache_counts(&app), (3, 1, 1));
    assert_eq!(
        app.count(
            "SELECT count(*) FROM client_secrets WHERE last_used_at > now() - interval '1 minute'"
        ),
        1
    );
    assert!(active(introspect_as(&app, &seed, &secret, &access).await));
    assert_eq!(cache_counts(&app), (3, 2, 1));
    assert!(active(introspect_as(&app, &seed, &secret, &access).await));
    assert_eq!(cache_counts(&app), (4, 2, 1));

    // Every change that matters is seen by the very next request, whoever
    // made it: here an operator's plain SQL.
    exec(&mut conn, "UPDATE apps SET disabled = true");
    refused(introspect_as(&app, &seed, &secret, &access).await);
    assert_eq!(cache_counts(&app), (4, 2, 2));
    exec(&mut conn, "UPDATE apps SET disabled = false");
    assert!(active(introspect_as(&app, &seed, &secret, &access).await));

    exec(
        &mut conn,
        "UPDATE client_secrets SET expires_at = now() - interval '1 second'",
    );
    refused(introspect_as(&app, &seed, &secret, &access).await);
    exec(&mut conn, "UPDATE client_secrets SET expires_at = NULL");
    assert!(active(introspect_as(&app, &seed, &secret, &access).await));

    // Rotation: the new secret works at once, the old one within its grace.
    let (_, new_secret) = kitauth::db::models::ClientSecret::rotate(
        &mut conn,
        seed.tenant.id,
        seed.app.id,
        chrono::Duration::hours(1),
    )
    .unwrap();
    assert!(active(
        introspect_as(&app, &seed, &new_secret, &access).await
    ));
    assert!(active(introspect_as(&app, &seed, &secret, &access).await));

    // Revocation: refused on the next request, with the copy in place.
    assert!(active(introspect_as(&app, &seed, &secret, &access).await));
    let hits = cache_counts(&app).0;
    exec(
        &mut conn,
        "UPDATE client_secrets SET revoked_at = now() WHERE expires_at IS NOT NULL",
    );
    refused(introspect_as(&app, &seed, &secret, &access).await);
    assert!(active(
        introspect_as(&app, &seed, &new_secret, &access).await
    ));
    assert!(cache_counts(&app).0 > hits, "the copy was in use");

    // Another tenant's request that names this client neither uses nor
    // drops its copy.
    let other = seed_tenant(&app, "other");
    let (status, _) = introspect_as(
        &app,
        &Seed {
            tenant: other.tenant.clone(),
            ..seed.clone()
        },
        &new_secret,
        &access,
    )
    .await;
    assert_eq!(status, Status::Unauthorized);
    let hits = cache_counts(&app).0;
    assert!(active(
        introspect_as(&app, &seed, &new_secret, &access).await
    ));
    assert_eq!(
        cache_counts(&app).0,
        hits + 1,
        "acme's copy is still in use"
    );

    // A changed client_id and a deleted secret count too.
    let before = version();
    exec(
        &mut conn,
        "UPDATE apps SET client_id = client_id || '_renamed'",
    );
    assert_ne!(version(), before);
    refused(introspect_as(&app, &seed, &new_secret, &access).await);
    exec(
        &mut conn,
        "UPDATE apps SET client_id = replace(client_id, '_renamed', '')",
    );
    assert!(active(
        introspect_as(&app, &seed, &new_secret, &access).await
    ));
    exec(
        &mut conn,
        "DELETE FROM client_secrets WHERE revoked_at IS NOT NULL",
    );
    let before = version();
    exec(&mut conn, "DELETE FROM client_secrets");
    assert_ne!(version(), before);
    refused(introspect_as(&app, &seed, &new_secret, &access).await);

    // A deleted app: unknown client, and its copy is dropped.
    exec(&mut conn, "DELETE FROM apps");
    refused(introspect_as(&app, &seed, &new_secret, &access).await);
    let cache = app
        .client
        .rocket()
        .state::<kitauth::auth::ClientCache>()
        .unwrap();
    assert!(cache.get(seed.tenant.id, &seed.app.client_id).is_none());
}

fn batch_stats(app: &TestApp) -> (u64, u64) {
    app.client
        .rocket()
        .state::<kitauth::db::batch::Batcher<kitauth::oauth::introspect::AccessTokenLookups>>()
        .expect("the token lookups are managed")
        .stats()
}

/// Concurrent userinfo and introspection requests share statements
/// (`db::batch`), and a shared statement answers each request only from
/// its own tenant and app: another tenant's token, another app's token and
/// an unknown one are refused exactly as they are one at a time.
#[rocket::async_test]
async fn batched_token_lookups_answer_each_request_as_if_alone() {
    let app = TestApp::new().await;
    let acme = seed_tenant(&app, "acme");
    let beta = seed_tenant(&app, "beta");
    let mut acme_tokens = Vec::new();
    let mut beta_tokens = Vec::new();
    for _ in 0..3 {
        acme_tokens.push(installed(&app, &acme).await.0);
        beta_tokens.push(installed(&app, &beta).await.0);
    }
    // A copy of acme's client, so introspection takes the batched lookup.
    assert_eq!(
        introspect(&app, &acme, &acme_tokens[0]).await["active"],
        true
    );
    let unknown = format!("{}x", &acme_tokens[0][..acme_tokens[0].len() - 1]);
    let before = batch_stats(&app);

    let userinfo = |seed: &Seed, token: &str| {
        let app = &app;
        let path = format!("/t/{}/oauth/userinfo", seed.tenant.slug);
        let bearer = format!("Bearer {token}");
        async move {
            let resp = app
                .client
                .get(path)
                .header(Header::new("Authorization", bearer))
                .dispatch()
                .await;
            let status = resp.status();
            let body: serde_json::Value =
                serde_json::from_str(&resp.into_string().await.unwrap_or_default())
                    .unwrap_or_default();
            (status, body)
        }
    };
    let mut calls = Vec::new();
    for round in 0..4 {
        for i in 0..3 {
            let (a, b) = (&acme_tokens[i], &beta_tokens[i]);
            calls.push((round, "acme own", userinfo(&acme, a)));
            calls.push((round, "beta own", userinfo(&beta, b)));
            calls.push((round, "acme token at beta", userinfo(&beta, a)));
            calls.push((round, "beta token at acme", userinfo(&acme, b)));
        }
        calls.push((round, "unknown", userinfo(&acme, &unknown)));
    }
    let (app_ref, acme_ref) = (&app, &acme);
    let introspections = futures::future::join_all(
        (0..3)
            .flat_map(|i| [(&acme_tokens[i], true), (&beta_tokens[i], false)])
            .chain([(&unknown, false)])
            .map(|(token, active)| async move {
                let (status, body) =
                    introspect_as(app_ref, acme_ref, &acme_ref.client_secret, token).await;
                (status, body, active)
            }),
    );
    let (answers, introspected) = futures::join!(
        futures::future::join_all(calls.into_iter().map(|(round, what, call)| async move {
            let (status, body) = call.await;
            (round, what, status, body)
        })),
        introspections
    );
    for (round, what, status, body) in answers {
        match what {
            "acme own" => {
                assert_eq!(status, Status::Ok, "{what} {round}");
                assert_eq!(body["email"], acme.email(), "{what} {round}");
                assert_eq!(body["client_id"], acme.app.client_id.as_str());
            }
            "beta own" => {
                assert_eq!(status, Status::Ok, "{what} {round}");
                assert_eq!(body["email"], beta.email(), "{what} {round}");
                assert_eq!(body["client_id"], beta.app.client_id.as_str());
            }
            _ => assert_eq!(status, Status::Unauthorized, "{what} {round}: {body}"),
        }
    }
    for (status, body, active) in introspected {
        assert_eq!(status, Status::Ok, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["active"], active, "{body}");
    }
    let after = batch_stats(&app);
    let (statements, items) = (after.0 - before.0, after.1 - before.1);
    assert_eq!(items, 4 * 13 + 7, "every lookup went through the batcher");
    assert!(
        statements < items,
        "{items} lookups in {statements} statements: none were shared"
    );
}

fn token_cache_counts(app: &TestApp) -> (u64, u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let cache = app
        .client
        .rocket()
        .state::<kitauth::auth::ClientCache<kitauth::db::models::App>>()
        .expect("the token endpoint's client cache is managed");
    let s = cache.stats();
    (
        s.hits.load(Relaxed),
        s.misses.load(Relaxed),
        s.stale.load(Relaxed),
    )
}

async fn exchange_as(
    app: &TestApp,
    seed: &Seed,
    secret: &str,
    redirect_uri: &str,
    code: &str,
) -> (Status, serde_json::Value) {
    let resp = app
        .client
        .post(format!("/t/{}/oauth/token", seed.tenant.slug))
        .header(ContentType::Form)
        .body(form(&[
            ("client_id", &seed.app.client_id),
            ("client_secret", secret),
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ]))
        .dispatch()
        .await;
    let status = resp.status();
    let body =
        serde_json::from_str(&resp.into_string().await.unwrap_or_default()).unwrap_or_default();
    (status, body)
}

/// The token endpoint's copy of the client (the whole app row and its
/// secrets) makes a code exchange or refresh one statement, which also
/// checks the app's version; every change to the app or its secrets,
/// made in plain SQL here, is seen by the next request, and every refusal
/// is decided on a fresh read (and audited as before).
#[rocket::async_test]
async fn the_token_endpoint_uses_its_copy_of_the_client_only_while_the_database_agrees() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let secret = seed.client_secret.clone();
    let mut conn = app.conn();
    let exec = |conn: &mut diesel::PgConnection, sql: &str| {
        use diesel::RunQueryDsl;
        diesel::sql_query(sql).execute(conn).unwrap();
    };

    // First exchange: no copy (a miss); it stamps the secret's first use,
    // and the copy it keeps says so (else the next request, finding a use
    // to stamp, would not use the copy). Then the copy serves.
    let (status, body) =
        exchange_as(&app, &seed, &secret, KIT_APPS, &get_code(&app, &seed).await).await;
    assert_eq!(status, Status::Ok, "{body}");
    assert_eq!(token_cache_counts(&app), (0, 1, 0));
    assert_eq!(
        app.count(
            "SELECT count(*) FROM client_secrets WHERE last_used_at > now() - interval '1 minute'"
        ),
        1
    );
    let (status, body) =
        exchange_as(&app, &seed, &secret, KIT_APPS, &get_code(&app, &seed).await).await;
    assert_eq!(status, Status::Ok, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(token_cache_counts(&app), (1, 1, 0));
    let resp = kit_refresh(&app, &seed, &refresh).await;
    assert_eq!(resp.status(), Status::Ok);
    assert_eq!(token_cache_counts(&app), (2, 1, 0));

    // A new token lifetime applies to the very next exchange.
    exec(&mut conn, "UPDATE apps SET access_token_ttl_secs = 600");
    for expected in [(2, 1, 1), (3, 1, 1)] {
        let (status, body) =
            exchange_as(&app, &seed, &secret, KIT_APPS, &get_code(&app, &seed).await).await;
        assert_eq!(status, Status::Ok, "{body}");
        assert_eq!(body["expires_in"], 600, "{body}");
        assert_eq!(token_cache_counts(&app), expected);
    }

    // A redirect URI removed is refused at once, and one added is accepted.
    exec(
        &mut conn,
        &format!("UPDATE apps SET redirect_uris = ARRAY['{KIT_INSTALL}']"),
    );
    let code = get_code(&app, &seed).await;
    let (status, body) = exchange_as(&app, &seed, &secret, KIT_APPS, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (Status::BadRequest, Some("invalid_grant"))
    );
    exec(
        &mut conn,
        &format!("UPDATE apps SET redirect_uris = ARRAY['{KIT_INSTALL}', '{KIT_APPS}', 'https://example.com/new']"),
    );
    let (status, body) = exchange_as(
        &app,
        &seed,
        &secret,
        "https://example.com/new",
        &get_code(&app, &seed).await,
    )
    .await;
    assert_eq!(status, Status::Ok, "{body}");

    // A wrong secret, with a current copy in place: refused and audited.
    let (hits, _, _) = token_cache_counts(&app);
    let (status, _) =
        exchange_as(&app, &seed, &secret, KIT_APPS, &get_code(&app, &seed).await).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(token_cache_counts(&app).0, hits + 1, "the copy is in use");
    let audits = "SELECT count(*) FROM audit_events WHERE action = 'client.wrong_secret'";
    let before = app.count(audits);
    let (status, body) = exchange_as(
        &app,
        &seed,
        "kcs_wrong",
        KIT_APPS,
        &get_code(&app, &seed).await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (Status::Unauthorized, Some("invalid_client"))
    );
    assert_eq!(app.count(audits), before + 1);

    // A disabled app and a revoked secret: refused by the next request,
    // without consuming the code (issued before either change).
    let code = get_code(&app, &seed).await;
    exec(&mut conn, "UPDATE apps SET disabled = true");
    let (status, body) = exchange_as(&app, &seed, &secret, KIT_APPS, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (Status::Unauthorized, Some("invalid_client"))
    );
    exec(&mut conn, "UPDATE apps SET disabled = false");
    exec(&mut conn, "UPDATE client_secrets SET revoked_at = now()");
    let (status, body) = exchange_as(&app, &seed, &secret, KIT_APPS, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (Status::Unauthorized, Some("invalid_client"))
    );
    exec(&mut conn, "UPDATE client_secrets SET revoked_at = NULL");
    let (status, body) = exchange_as(&app, &seed, &secret, KIT_APPS, &code).await;
    assert_eq!(status, Status::Ok, "the code is still good: {body}");

    // Another tenant naming this client is refused and does not drop the
    // copy.
    let other = seed_tenant(&app, "other");
    let elsewhere = Seed {
        tenant: other.tenant.clone(),
        ..seed.clone()
    };
    let (status, _) = exchange_as(&app, &elsewhere, &secret, KIT_APPS, "kac_whatever").await;
    assert_eq!(status, Status::Unauthorized);
    let (hits, _, _) = token_cache_counts(&app);
    let (status, _) =
        exchange_as(&app, &seed, &secret, KIT_APPS, &get_code(&app, &seed).await).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(
        token_cache_counts(&app).0,
        hits + 1,
        "the copy is still in use"
    );
}

#[rocket::async_test]
async fn client_copies_leave_out_old_expired_secrets_and_answer_as_before() {
    use kitauth::db::models::client_secret::ClientSecret;
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let (access, _) = installed(&app, &seed).await;
    // Twelve rotations without grace: twelve expired secrets, one live.
    let mut values = vec![seed.client_secret.clone()];
    let mut conn = app.conn();
    for _ in 0..12 {
        let (_, value) = ClientSecret::rotate(
            &mut conn,
            seed.tenant.id,
            seed.app.id,
            chrono::Duration::zero(),
        )
        .unwrap();
        values.push(value);
    }
    let current = values.last().unwrap().clone();
    let oldest = values[0].clone();
    let latest_expired = values[values.len() - 2].clone();
    let active = |(status, body): (Status, String)| {
        assert_eq!(status, Status::Ok, "{body}");
        assert!(body.contains("\"active\":true"), "{body}");
    };
    // The first use stamps the secret (and drops the copy); then copies.
    for _ in 0..3 {
        active(introspect_as(&app, &seed, &current, &access).await);
    }
    let cache = app
        .client
        .rocket()
        .state::<kitauth::auth::ClientCache>()
        .unwrap();
    let copy = cache.get(seed.tenant.id, &seed.app.client_id).unwrap();
    assert!(copy.partial);
    assert_eq!(
        copy.secrets.len(),
        3,
        "the live secret and two expired ones"
    );

    // A secret used after its grace: the same answer and audit as without
    // copies, whether the copy kept it (the latest) or left it out (the
    // oldest); a wrong secret stays a wrong secret.
    let after_grace = |app: &TestApp| {
        app.count(
            "SELECT count(*) FROM audit_events WHERE action = 'client_secret.used_after_grace'",
        )
    };
    for (n, secret) in [&latest_expired, &oldest].into_iter().enumerate() {
        let (status, body) = introspect_as(&app, &seed, secret, &access).await;
        assert_eq!(status, Status::Unauthorized, "{body}");
        assert!(body.contains("expired"), "{n}: {body}");
        assert_eq!(after_grace(&app), n as i64 + 1);
    }
    let (status, body) = introspect_as(&app, &seed, "kcs_wrong", &access).await;
    assert_eq!(status, Status::Unauthorized, "{body}");
    assert!(!body.contains("expired"), "{body}");
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action = 'client.wrong_secret'"),
        1
    );
    // The copy still serves the live secret, and stays bounded.
    let (hits, _, _) = cache_counts(&app);
    active(introspect_as(&app, &seed, &current, &access).await);
    assert_eq!(cache_counts(&app).0, hits + 1);
    let copy = cache.get(seed.tenant.id, &seed.app.client_id).unwrap();
    assert_eq!(copy.secrets.len(), 3);

    // The token endpoint's copy too; the oldest secret there is refused as
    // expired, with its audit.
    let code = get_code(&app, &seed).await;
    let (status, _) = exchange_as(&app, &seed, &current, KIT_APPS, &code).await;
    assert_eq!(status, Status::Ok);
    let tokens = app
        .client
        .rocket()
        .state::<kitauth::auth::ClientCache<kitauth::db::models::App>>()
        .unwrap();
    let copy = tokens.get(seed.tenant.id, &seed.app.client_id).unwrap();
    assert_eq!(copy.secrets.len(), 3);
    let code = get_code(&app, &seed).await;
    let (status, body) = exchange_as(&app, &seed, &oldest, KIT_APPS, &code).await;
    assert_eq!(status, Status::Unauthorized, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    assert_eq!(after_grace(&app), 3);
}

/// A fast attempt runs at most once per request (`oauth::fast::Attempt`):
/// a refused exchange or refresh with a current copy of the client tries
/// its one statement with the copy, reads the client (the same version),
/// and leaves the rest to the rules without trying the statement again.
#[rocket::async_test]
async fn a_refused_request_tries_its_one_statement_once() {
    round_trips::install();
    let app = TestApp::with(|f| f.merge(("janitor_interval_secs", 0))).await;
    let seed = seed_tenant(&app, "acme");
    let url = kitauth::db::libpq_url(&app.db.url);
    let attempts = |counts: &round_trips::Counts, head: &str| {
        counts
            .queries
            .iter()
            .filter(|q| q.starts_with(head))
            .count()
    };
    const EXCHANGE: &str = "WITH c AS (UPDATE authorization_codes";
    const ROTATE: &str = "WITH g AS MATERIALIZED";

    // Two installs: the first reads the client and keeps its copy, the
    // second is served from the copy.
    let code = get_code(&app, &seed).await;
    assert_eq!(kit_exchange(&app, &seed, &code).await.status(), Status::Ok);
    let second = get_code(&app, &seed).await;
    let resp = kit_exchange(&app, &seed, &second).await;
    assert_eq!(resp.status(), Status::Ok);
    let refresh = json_of(resp).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = kit_refresh(&app, &seed, &refresh).await;
    assert_eq!(resp.status(), Status::Ok);
    assert_eq!(token_cache_counts(&app), (2, 1, 0), "the copy serves");

    // A replayed code: the statement once, then the rules' transaction.
    round_trips::take(&url);
    let resp = kit_exchange(&app, &seed, &code).await;
    assert_eq!(resp.status(), Status::BadRequest);
    let counts = round_trips::take(&url);
    assert_eq!(attempts(&counts, EXCHANGE), 1, "{:#?}", counts.queries);
    assert_eq!(counts.transactions, 1, "{:#?}", counts.queries);

    // An unknown (well-formed) refresh token: once, too.
    round_trips::take(&url);
    let unknown = format!("krt_{}", "A".repeat(43));
    let resp = kit_refresh(&app, &seed, &unknown).await;
    assert_eq!(resp.status(), Status::BadRequest);
    let counts = round_trips::take(&url);
    assert_eq!(attempts(&counts, ROTATE), 1, "{:#?}", counts.queries);
    assert_eq!(counts.transactions, 1, "{:#?}", counts.queries);
}

/// `client_copies = false` keeps no copy: every token request and
/// introspection reads its client (all misses), so the `without_client_copies`
/// half of tests/oauth_rules.rs really runs without them.
#[rocket::async_test]
async fn with_client_copies_off_every_request_reads_its_client() {
    let app = TestApp::with(|f| f.merge(("client_copies", false))).await;
    let seed = seed_tenant(&app, "acme");
    let (access, refresh) = installed(&app, &seed).await;
    let (access2, _) = installed(&app, &seed).await;
    assert_eq!(
        kit_refresh(&app, &seed, &refresh).await.status(),
        Status::Ok
    );
    assert_eq!(token_cache_counts(&app), (0, 3, 0));
    for token in [&access, &access2] {
        assert_eq!(introspect(&app, &seed, token).await["active"], true);
    }
    assert_eq!(cache_counts(&app), (0, 2, 0));
    let rocket = app.client.rocket();
    let token_cache = rocket
        .state::<kitauth::auth::ClientCache<kitauth::db::models::App>>()
        .unwrap();
    let introspect_cache = rocket.state::<kitauth::auth::ClientCache>().unwrap();
    assert!(token_cache.is_empty() && introspect_cache.is_empty());
}
