//! The tenant API's resources below the handlers: installs, creators and
//! audit events listed with keyset paging and filters, and the change flows
//! (revoke one / an app's / a creator's install; create, disable, enable a
//! creator) that the dashboard, the API and the command line share. Every
//! test runs against its own real PostgreSQL database.

mod common;

use std::collections::HashSet;

use common::*;
use diesel::prelude::*;
use kitauth::db::models::dashboard::{self, AuditQuery, InstallQuery, InstallStatus};
use kitauth::db::models::end_user::CreateCreatorError;
use kitauth::db::models::paging::PageRequest;
use kitauth::db::models::{EndUser, Grant, NewAuditEvent};

fn new_grant(conn: &mut PgConnection, seed: &Seed, user_id: i64) -> Grant {
    Grant::create(
        conn,
        seed.tenant.id,
        seed.app.id,
        user_id,
        &["public".to_string()],
    )
    .unwrap()
}

/// Gives a grant an access and a refresh token that expire `secs` from now.
fn give_tokens(conn: &mut PgConnection, seed: &Seed, grant_id: i64, secs: i64) {
    let digest = uuid::Uuid::new_v4().as_bytes().to_vec();
    diesel::sql_query(
        "INSERT INTO access_tokens (tenant_id, grant_id, token_digest, hint, expires_at) \
         VALUES ($1, $2, $3, 'kat_abcd', now() + make_interval(secs => $4))",
    )
    .bind::<diesel::sql_types::BigInt, _>(seed.tenant.id)
    .bind::<diesel::sql_types::BigInt, _>(grant_id)
    .bind::<diesel::sql_types::Bytea, _>(&digest)
    .bind::<diesel::sql_types::Double, _>(secs as f64)
    .execute(conn)
    .unwrap();
    diesel::sql_query(
        "INSERT INTO refresh_tokens (tenant_id, grant_id, token_digest, hint, expires_at) \
         VALUES ($1, $2, $3, 'krt_abcd', now() + make_interval(secs => $4))",
    )
    .bind::<diesel::sql_types::BigInt, _>(seed.tenant.id)
    .bind::<diesel::sql_types::BigInt, _>(grant_id)
    .bind::<diesel::sql_types::Bytea, _>(&digest)
    .bind::<diesel::sql_types::Double, _>(secs as f64)
    .execute(conn)
    .unwrap();
}

fn all_install_ids(
    conn: &mut PgConnection,
    tenant_id: i64,
    q: &InstallQuery,
    limit: i64,
) -> Vec<i64> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let req = PageRequest::parse(cursor.as_deref(), Some(limit)).unwrap();
        let page = dashboard::installs_page(conn, tenant_id, q, &req).unwrap();
        assert!(page.items.len() as i64 <= limit);
        out.extend(page.items.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[rocket::async_test]
async fn install_pages_neither_skip_nor_repeat_while_rows_are_inserted() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let mut conn = app.conn();
    let before: Vec<i64> = (0..90)
        .map(|_| new_grant(&mut conn, &seed, seed.user.id).id)
        .collect();
    // A writer inserts installs, one transaction each, for as long as the walk lasts.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let url = app.db.url.clone();
        let (tenant_id, app_id, user_id) = (seed.tenant.id, seed.app.id, seed.user.id);
        std::thread::spawn(move || {
            let mut conn = kitauth::db::connect(&url).unwrap();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 20 {
                Grant::create(&mut conn, tenant_id, app_id, user_id, &[]).unwrap();
                n += 1;
            }
            n
        })
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let req = PageRequest::parse(cursor.as_deref(), Some(7)).unwrap();
        let page =
            dashboard::installs_page(&mut conn, seed.tenant.id, &InstallQuery::default(), &req)
                .unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|r| r.id));
        // Let the writer get ahead of the walk between pages.
        std::thread::sleep(std::time::Duration::from_millis(5));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let inserted = writer.join().unwrap();
    assert!(inserted >= 20 && pages >= 13);
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a row was repeated");
    for id in &before {
        assert!(unique.contains(id), "install {id} was skipped");
    }
    let total = app.count(&format!(
        "SELECT count(*) FROM grants WHERE tenant_id = {}",
        seed.tenant.id
    ));
    assert_eq!(total, 90 + inserted);
}

#[rocket::async_test]
async fn install_filters_by_app_creator_status_and_time() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let other = seed_tenant(&app, "other");
    let mut conn = app.conn();
    let hash = kitauth::crypto::hash_password("correct horse battery", 4).unwrap();
    let second = EndUser::create(&mut conn, seed.tenant.id, "second@acme.example", &hash).unwrap();
    let live = new_grant(&mut conn, &seed, seed.user.id);
    give_tokens(&mut conn, &seed, live.id, 3600);
    let expired = new_grant(&mut conn, &seed, seed.user.id);
    give_tokens(&mut conn, &seed, expired.id, -60);
    let revoked = new_grant(&mut conn, &seed, second.id);
    give_tokens(&mut conn, &seed, revoked.id, 3600);
    Grant::revoke(&mut conn, seed.tenant.id, revoked.id, "test").unwrap();
    let foreign = new_grant(&mut conn, &other, other.user.id);
    let t = seed.tenant.id;
    let ids = |conn: &mut PgConnection, q: InstallQuery| all_install_ids(conn, t, &q, 2);

    let mut everything = ids(&mut conn, InstallQuery::default());
    everything.sort();
    assert_eq!(everything, vec![live.id, expired.id, revoked.id]);
    assert!(!everything.contains(&foreign.id));
    for (status, want) in [
        (InstallStatus::Live, live.id),
        (InstallStatus::Expired, expired.id),
        (InstallStatus::Revoked, revoked.id),
    ] {
        let got = ids(
            &mut conn,
            InstallQuery {
                status: Some(status),
                ..Default::default()
            },
        );
        assert_eq!(got, vec![want], "{status:?}");
    }
    // The status the filter matches is the one each row reports.
    let req = PageRequest::default();
    let page = dashboard::installs_page(&mut conn, t, &InstallQuery::default(), &req).unwrap();
    let now = chrono::Utc::now();
    for row in &page.items {
        let want = if row.id == live.id {
            "active"
        } else if row.id == expired.id {
            "expired"
        } else {
            "revoked"
        };
        assert_eq!(row.status(now), want);
    }
    let got = ids(
        &mut conn,
        InstallQuery {
            end_user_id: Some(second.id),
            ..Default::default()
        },
    );
    assert_eq!(got, vec![revoked.id]);
    let got = ids(
        &mut conn,
        InstallQuery {
            app_id: Some(other.app.id),
            ..Default::default()
        },
    );
    assert!(got.is_empty(), "another tenant's app shows nothing");
    let got = ids(
        &mut conn,
        InstallQuery {
            created_after: Some(expired.created_at),
            created_before: Some(revoked.created_at),
            ..Default::default()
        },
    );
    assert_eq!(
        got,
        vec![expired.id],
        "after is inclusive, before exclusive"
    );
}

fn audit_count(app: &TestApp, action: &str) -> i64 {
    app.count(&format!(
        "SELECT count(*) FROM audit_events WHERE action = '{action}'"
    ))
}

#[rocket::async_test]
async fn revoke_flows_revoke_audit_and_stay_in_their_tenant() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let other = seed_tenant(&app, "other");
    let mut conn = app.conn();
    let g1 = new_grant(&mut conn, &seed, seed.user.id);
    give_tokens(&mut conn, &seed, g1.id, 3600);
    let g2 = new_grant(&mut conn, &seed, seed.user.id);
    let foreign = new_grant(&mut conn, &other, other.user.id);
    let actor = |t: i64| {
        NewAuditEvent::new(t, "api_key:ci", "ignored")
            .ip(Some("203.0.113.9".into()))
            .details(serde_json::json!({"api_key_id": "7"}))
    };

    // Another tenant's install is not found, and nothing changes.
    let snap = app.snapshot();
    assert_eq!(
        Grant::revoke_audited(
            &mut conn,
            seed.tenant.id,
            foreign.id,
            "api",
            actor(seed.tenant.id)
        )
        .unwrap(),
        None
    );
    assert_eq!(app.snapshot(), snap);

    assert_eq!(
        Grant::revoke_audited(
            &mut conn,
            seed.tenant.id,
            g1.id,
            "api",
            actor(seed.tenant.id)
        )
        .unwrap(),
        Some(true)
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM access_tokens WHERE grant_id = {} AND revoked_at IS NULL",
            g1.id
        )),
        0
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM refresh_tokens WHERE grant_id = {} AND revoked_at IS NULL",
            g1.id
        )),
        0
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_events WHERE action = 'grant.revoked' AND actor = 'api_key:ci' \
             AND object_type = 'grant' AND object_id = '{}' AND ip = '203.0.113.9' \
             AND details->>'api_key_id' = '7' AND (details->>'app_id')::bigint = {}",
            g1.id, seed.app.id
        )),
        1
    );
    // Again: already revoked, not audited twice.
    assert_eq!(
        Grant::revoke_audited(
            &mut conn,
            seed.tenant.id,
            g1.id,
            "api",
            actor(seed.tenant.id)
        )
        .unwrap(),
        Some(false)
    );
    assert_eq!(audit_count(&app, "grant.revoked"), 1);

    let n = Grant::revoke_all_for_app_audited(
        &mut conn,
        seed.tenant.id,
        seed.app.id,
        "api",
        actor(seed.tenant.id),
    )
    .unwrap();
    assert_eq!(n, 1, "only g2 was live");
    assert_eq!(audit_count(&app, "grant.revoked_all_for_app"), 1);
    assert!(Grant::find(&mut conn, seed.tenant.id, g2.id)
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    assert!(Grant::find(&mut conn, other.tenant.id, foreign.id)
        .unwrap()
        .unwrap()
        .revoked_at
        .is_none());

    // A creator's installs, through a foreign tenant id: nothing of theirs dies.
    let n = Grant::revoke_all_for_end_user_audited(
        &mut conn,
        seed.tenant.id,
        other.user.id,
        "api",
        actor(seed.tenant.id),
    )
    .unwrap();
    assert_eq!(n, 0);
    assert!(Grant::find(&mut conn, other.tenant.id, foreign.id)
        .unwrap()
        .unwrap()
        .revoked_at
        .is_none());
    let n = Grant::revoke_all_for_end_user_audited(
        &mut conn,
        other.tenant.id,
        other.user.id,
        "api",
        actor(other.tenant.id),
    )
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_events WHERE action = 'grant.revoked_all_for_creator' AND tenant_id = {} \
             AND object_id = '{}' AND (details->>'revoked')::int = 1",
            other.tenant.id, other.user.id
        )),
        1
    );
}

#[rocket::async_test]
async fn creator_flows_create_disable_enable_with_audit_and_paging() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let other = seed_tenant(&app, "other");
    let mut conn = app.conn();
    let t = seed.tenant.id;
    let actor = || NewAuditEvent::new(t, "api_key:ci", "x");
    let hash = kitauth::crypto::hash_password("correct horse battery", 4).unwrap();
    let mut made = vec![seed.user.id];
    for i in 0..11 {
        let u =
            EndUser::create_audited(&mut conn, t, &format!("c{i}@acme.example"), &hash, actor())
                .unwrap();
        made.push(u.id);
    }
    assert_eq!(audit_count(&app, "creator.created"), 11);
    let taken = EndUser::create_audited(&mut conn, t, "C0@acme.example", &hash, actor());
    assert!(matches!(taken, Err(CreateCreatorError::EmailTaken)));
    assert_eq!(
        audit_count(&app, "creator.created"),
        11,
        "a refused create writes nothing"
    );

    // Paged newest first, every creator once, none of the other tenant's.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let req = PageRequest::parse(cursor.as_deref(), Some(5)).unwrap();
        let page = dashboard::creators_page(&mut conn, t, None, &req).unwrap();
        seen.extend(page.items.iter().map(|c| c.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut newest_first = made.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    assert!(!seen.contains(&other.user.id));

    let g = new_grant(&mut conn, &seed, seed.user.id);
    assert_eq!(
        EndUser::disable_audited(&mut conn, t, other.user.id, actor()).unwrap(),
        None
    );
    assert!(
        !EndUser::find(&mut conn, other.tenant.id, other.user.id)
            .unwrap()
            .unwrap()
            .disabled
    );
    assert_eq!(
        EndUser::disable_audited(&mut conn, t, seed.user.id, actor()).unwrap(),
        Some(1)
    );
    assert!(Grant::find(&mut conn, t, g.id)
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    let row = dashboard::creator(&mut conn, t, seed.user.id)
        .unwrap()
        .unwrap();
    assert!(row.disabled);
    assert_eq!(row.live_installs, 0);
    assert!(dashboard::creator(&mut conn, t, other.user.id)
        .unwrap()
        .is_none());
    assert!(!EndUser::enable_audited(&mut conn, t, other.user.id, actor()).unwrap());
    assert!(EndUser::enable_audited(&mut conn, t, seed.user.id, actor()).unwrap());
    assert!(
        !EndUser::find(&mut conn, t, seed.user.id)
            .unwrap()
            .unwrap()
            .disabled
    );
    assert_eq!(audit_count(&app, "creator.disabled"), 1);
    assert_eq!(audit_count(&app, "creator.enabled"), 1);
}

#[rocket::async_test]
async fn audit_pages_filter_by_kind_prefix_object_and_time() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let other = seed_tenant(&app, "other");
    let mut conn = app.conn();
    let t = seed.tenant.id;
    for (action, obj) in [
        ("client.wrong_secret", "1"),
        ("client_secret.rotated", "1"),
        ("client.wrong_secret", "2"),
        ("grant.revoked", "9"),
        ("client", "3"),
    ] {
        NewAuditEvent::new(t, "admin:a@b", action)
            .object("app", obj)
            .insert(&mut conn)
            .unwrap();
    }
    NewAuditEvent::new(other.tenant.id, "x", "client.wrong_secret")
        .insert(&mut conn)
        .unwrap();
    let walk = |conn: &mut PgConnection, q: AuditQuery| {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let req = PageRequest::parse(cursor.as_deref(), Some(2)).unwrap();
            let page = dashboard::audit_page(conn, t, &q, &req).unwrap();
            out.extend(
                page.items
                    .into_iter()
                    .map(|e| (e.action, e.object_id.unwrap_or_default())),
            );
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    };
    let all = walk(&mut conn, AuditQuery::default());
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(
        all[0],
        ("client".to_string(), "3".to_string()),
        "newest first"
    );
    let exact = walk(
        &mut conn,
        AuditQuery {
            kind: Some("client.wrong_secret".into()),
            ..Default::default()
        },
    );
    assert_eq!(exact.len(), 2);
    let prefix = walk(
        &mut conn,
        AuditQuery {
            kind_prefix: Some("client".into()),
            ..Default::default()
        },
    );
    let mut actions: Vec<_> = prefix.iter().map(|(a, o)| format!("{a}/{o}")).collect();
    actions.sort();
    assert_eq!(
        actions,
        ["client.wrong_secret/1", "client.wrong_secret/2", "client/3"],
        "client_secret.* is not under client"
    );
    let obj = walk(
        &mut conn,
        AuditQuery {
            object_type: Some("app".into()),
            object_id: Some("1".into()),
            ..Default::default()
        },
    );
    assert_eq!(obj.len(), 2);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(walk(
        &mut conn,
        AuditQuery {
            after: Some(future),
            ..Default::default()
        }
    )
    .is_empty());
    assert_eq!(
        walk(
            &mut conn,
            AuditQuery {
                before: Some(future),
                ..Default::default()
            }
        )
        .len(),
        5
    );
}

// ---- The HTTP API over these flows ----

use kitauth::db::models::{ApiKey, ApiScope, NewApiKey};
use rocket::http::{ContentType, Header, Status};
use serde_json::Value;

fn make_key(app: &TestApp, tenant_id: i64, name: &str, scopes: &[ApiScope]) -> String {
    let new = NewApiKey {
        name: name.into(),
        scopes: scopes.to_vec(),
        expires_in_days: None,
        created_by: "test".into(),
    };
    ApiKey::create(&mut app.conn(), tenant_id, &new).unwrap().1
}

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&str>,
) -> (Status, Value) {
    let c = &app.client;
    let mut req = match method {
        "GET" => c.get(path.to_string()),
        _ => c.post(path.to_string()),
    }
    .remote("203.0.113.9:4000".parse().unwrap())
    .header(Header::new("Authorization", format!("Bearer {key}")));
    if let Some(b) = body {
        req = req.header(ContentType::JSON).body(b);
    }
    let resp = req.dispatch().await;
    let status = resp.status();
    let text = resp.into_string().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

struct World {
    app: TestApp,
    seed: Seed,
    other: Seed,
    read: String,
    write: String,
    login: String,
    grant: i64,
    foreign_grant: i64,
}

async fn world() -> World {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let other = seed_tenant(&app, "other");
    let mut conn = app.conn();
    let g = new_grant(&mut conn, &seed, seed.user.id);
    give_tokens(&mut conn, &seed, g.id, 3600);
    let fg = new_grant(&mut conn, &other, other.user.id);
    let read = make_key(&app, seed.tenant.id, "reader", &[ApiScope::Read]);
    let write = make_key(&app, seed.tenant.id, "ci", &[ApiScope::Write]);
    let login = make_key(&app, seed.tenant.id, "login", &[ApiScope::Login]);
    World {
        app,
        seed,
        other,
        read,
        write,
        login,
        grant: g.id,
        foreign_grant: fg.id,
    }
}

/// Every operation of these resources: (method, path, body, needs write).
fn operations(
    w: &World,
    grant: i64,
    app_id: i64,
    creator: i64,
) -> Vec<(&'static str, String, Option<String>, bool)> {
    let t = &w.seed.tenant.slug;
    vec![
        ("GET", format!("/t/{t}/api/v1/installs"), None, false),
        (
            "GET",
            format!("/t/{t}/api/v1/installs/{grant}"),
            None,
            false,
        ),
        (
            "POST",
            format!("/t/{t}/api/v1/installs/{grant}/revoke"),
            None,
            true,
        ),
        (
            "POST",
            format!("/t/{t}/api/v1/apps/{app_id}/installs/revoke"),
            None,
            true,
        ),
        (
            "POST",
            format!("/t/{t}/api/v1/creators/{creator}/installs/revoke"),
            None,
            true,
        ),
        ("GET", format!("/t/{t}/api/v1/creators"), None, false),
        (
            "GET",
            format!("/t/{t}/api/v1/creators/{creator}"),
            None,
            false,
        ),
        (
            "POST",
            format!("/t/{t}/api/v1/creators"),
            Some(r#"{"email":"new@acme.example","password":"correct horse battery"}"#.to_string()),
            true,
        ),
        (
            "POST",
            format!("/t/{t}/api/v1/creators/{creator}/disable"),
            None,
            true,
        ),
        (
            "POST",
            format!("/t/{t}/api/v1/creators/{creator}/enable"),
            None,
            true,
        ),
        ("GET", format!("/t/{t}/api/v1/audit-events"), None, false),
    ]
}

#[rocket::async_test]
async fn every_operation_refuses_a_key_without_its_scope_and_changes_nothing() {
    let w = world().await;
    let ops = operations(&w, w.grant, w.seed.app.id, w.seed.user.id);
    let snap = w.app.snapshot();
    let audits = w.app.count("SELECT count(*) FROM audit_events");
    for (method, path, body, needs_write) in &ops {
        let wrong: Vec<&str> = if *needs_write {
            vec![&w.read, &w.login]
        } else {
            vec![&w.write, &w.login]
        };
        for key in wrong {
            let (status, v) = call(&w.app, method, path, key, body.as_deref()).await;
            assert_eq!(status, Status::Forbidden, "{method} {path}: {v}");
            assert_eq!(v["status"], 403);
        }
    }
    assert_eq!(w.app.snapshot(), snap);
    assert_eq!(w.app.count("SELECT count(*) FROM audit_events"), audits);
    // And with the right key each one answers 2xx.
    for (method, path, body, needs_write) in &ops {
        let key = if *needs_write { &w.write } else { &w.read };
        let (status, v) = call(&w.app, method, path, key, body.as_deref()).await;
        assert!(status.code < 300, "{method} {path}: {status} {v}");
    }
}

#[rocket::async_test]
async fn another_tenants_objects_answer_404_and_stay_untouched() {
    let w = world().await;
    let ops = operations(&w, w.foreign_grant, w.other.app.id, w.other.user.id);
    let snap = w.app.snapshot();
    for (method, path, body, needs_write) in &ops {
        if body.is_some()
            || !path.contains(&format!("/{}", w.foreign_grant))
                && !path.contains(&format!("/{}/", w.other.app.id))
                && !path.contains(&format!("/{}", w.other.user.id))
        {
            continue;
        }
        let key = if *needs_write { &w.write } else { &w.read };
        let (status, v) = call(&w.app, method, path, key, None).await;
        assert_eq!(status, Status::NotFound, "{method} {path}: {v}");
        assert_eq!(v["status"], 404);
    }
    assert_eq!(w.app.snapshot(), snap);
    // The other tenant's key cannot read this tenant at all.
    let other_key = make_key(&w.app, w.other.tenant.id, "theirs", &[ApiScope::Read]);
    let (status, _) = call(&w.app, "GET", "/t/acme/api/v1/installs", &other_key, None).await;
    assert_eq!(status, Status::Unauthorized);
    // Lists never show another tenant's rows.
    let (_, v) = call(&w.app, "GET", "/t/acme/api/v1/installs", &w.read, None).await;
    let ids: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![w.grant.to_string().as_str()]);
}

#[rocket::async_test]
async fn api_changes_are_audited_with_the_key_and_ip() {
    let w = world().await;
    let (s, v) = call(
        &w.app,
        "POST",
        &format!("/t/acme/api/v1/installs/{}/revoke", w.grant),
        &w.write,
        None,
    )
    .await;
    assert_eq!((s, v["revoked"].as_i64()), (Status::Ok, Some(1)));
    let (s, v) = call(
        &w.app,
        "GET",
        &format!("/t/acme/api/v1/installs/{}", w.grant),
        &w.read,
        None,
    )
    .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(v["install"]["status"], "revoked");
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(tokens
        .iter()
        .all(|t| t["hint"].as_str().unwrap().len() <= 8 && t.get("token_digest").is_none()));
    let (s, v) = call(
        &w.app,
        "POST",
        "/t/acme/api/v1/creators",
        &w.write,
        Some(r#"{"email":"n@acme.example","password":"correct horse battery"}"#),
    )
    .await;
    assert_eq!(s, Status::Created, "{v}");
    let cid = v["id"].as_str().unwrap().to_string();
    let (s, _) = call(
        &w.app,
        "POST",
        &format!("/t/acme/api/v1/creators/{cid}/disable"),
        &w.write,
        None,
    )
    .await;
    assert_eq!(s, Status::Ok);
    let (s, v) = call(
        &w.app,
        "POST",
        &format!("/t/acme/api/v1/creators/{cid}/enable"),
        &w.write,
        None,
    )
    .await;
    assert_eq!((s, v["disabled"].as_bool()), (Status::Ok, Some(false)));
    for (action, object) in [
        ("grant.revoked", w.grant.to_string()),
        ("creator.created", cid.clone()),
        ("creator.disabled", cid.clone()),
        ("creator.enabled", cid.clone()),
    ] {
        assert_eq!(
            w.app.count(&format!(
                "SELECT count(*) FROM audit_events WHERE action = '{action}' AND object_id = '{object}' \
                 AND actor = 'api_key:ci' AND ip = '203.0.113.9' AND details ? 'api_key_id'"
            )),
            1,
            "{action}"
        );
    }
    // The audit list shows them, filtered by prefix and paged.
    let (s, v) = call(
        &w.app,
        "GET",
        "/t/acme/api/v1/audit-events?kind_prefix=creator&limit=2",
        &w.read,
        None,
    )
    .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let next = v["next_cursor"].as_str().unwrap().to_string();
    let (_, v) = call(
        &w.app,
        "GET",
        &format!("/t/acme/api/v1/audit-events?kind_prefix=creator&limit=2&cursor={next}"),
        &w.read,
        None,
    )
    .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert!(v["next_cursor"].is_null());
    assert_eq!(v["items"][0]["kind"], "creator.created");
}

#[rocket::async_test]
async fn bad_list_parameters_answer_422_naming_the_field_never_500() {
    let w = world().await;
    let snap = w.app.snapshot();
    for (path, field) in [
        ("/t/acme/api/v1/installs?limit=0", "limit"),
        ("/t/acme/api/v1/installs?limit=201", "limit"),
        ("/t/acme/api/v1/installs?limit=abc", "limit"),
        ("/t/acme/api/v1/installs?cursor=not-a-cursor", "cursor"),
        ("/t/acme/api/v1/installs?status=dead", "status"),
        ("/t/acme/api/v1/installs?app=x1", "app"),
        (
            "/t/acme/api/v1/installs?created_after=yesterday",
            "created_after",
        ),
        ("/t/acme/api/v1/creators?limit=-5", "limit"),
        ("/t/acme/api/v1/audit-events?before=2026-13-01", "before"),
    ] {
        let (status, v) = call(&w.app, "GET", path, &w.read, None).await;
        assert_eq!(status, Status::UnprocessableEntity, "{path}: {v}");
        assert_eq!(v["errors"][0]["field"], field, "{path}: {v}");
    }
    // Text PostgreSQL cannot store is refused by the input layer before
    // routing, as problem details too: 422 naming a query field, 404 for a
    // path (it names no object), both documented on the operations.
    let (status, v) = call(
        &w.app,
        "GET",
        "/t/acme/api/v1/audit-events?kind=a%00b",
        &w.read,
        None,
    )
    .await;
    assert_eq!(status, Status::UnprocessableEntity, "{v}");
    assert_eq!(v["errors"][0]["field"], "kind", "{v}");
    let (status, v) = call(&w.app, "GET", "/t/acme/api/v1/installs/%1F", &w.read, None).await;
    assert_eq!(status, Status::NotFound, "{v}");
    assert_eq!(v["status"], 404, "{v}");
    for (body, status) in [
        (
            r#"{"email":"bad","password":"correct horse battery"}"#,
            Status::UnprocessableEntity,
        ),
        (
            r#"{"email":"a@b.example","password":"short"}"#,
            Status::UnprocessableEntity,
        ),
        (
            r#"{"email":"a@b.example","password":"correct horse battery","admin":true}"#,
            Status::UnprocessableEntity,
        ),
        (
            r#"{"email":"creator@acme.example","password":"correct horse battery"}"#,
            Status::UnprocessableEntity,
        ),
        (
            r#"{"email":"a\u0000@b.example","password":"correct horse battery"}"#,
            Status::UnprocessableEntity,
        ),
        (r#"{"email":"#, Status::BadRequest),
    ] {
        let (s, v) = call(
            &w.app,
            "POST",
            "/t/acme/api/v1/creators",
            &w.write,
            Some(body),
        )
        .await;
        assert!(
            s == status || (s.code == 400 || s.code == 422),
            "{body}: {s} {v}"
        );
        assert!(s.code < 500);
    }
    for path in [
        "/t/acme/api/v1/installs/abc",
        "/t/acme/api/v1/installs/99999999999999999999",
        "/t/acme/api/v1/creators/-1",
    ] {
        let (status, _) = call(&w.app, "GET", path, &w.read, None).await;
        assert_eq!(status, Status::NotFound, "{path}");
    }
    assert_eq!(w.app.snapshot(), snap);
}
