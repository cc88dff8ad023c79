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
