//! The janitor purges what is expired or revoked past retention, in
//! batches, and keeps everything else.

mod common;

use std::time::Duration;

use common::*;
use diesel::RunQueryDsl;

fn exec(app: &TestApp, sql: &str) {
    diesel::sql_query(sql)
        .execute(&mut app.conn())
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

/// Seeds, per table, rows the janitor must delete (named `old_*`/`expired_*`)
/// and rows it must keep.
fn seed_rows(app: &TestApp, seed: &Seed) {
    let (t, a, u) = (seed.tenant.id, seed.app.id, seed.user.id);
    exec(
        app,
        &format!(
            "INSERT INTO grants (id, tenant_id, app_id, end_user_id, scopes, revoked_at) VALUES
             (9001, {t}, {a}, {u}, '{{public}}', NULL),
             (9002, {t}, {a}, {u}, '{{public}}', now() - interval '40 days')"
        ),
    );
    let tok = |name: &str, grant: i64, expires: &str, revoked: &str| {
        format!(
            "({t}, {grant}, sha256('{name}'::bytea), '{name}', now() - interval '100 days', {expires}, {revoked})"
        )
    };
    let rows = [
        tok("live", 9001, "now() + interval '1 hour'", "NULL"),
        tok("expired_recently", 9001, "now() - interval '1 day'", "NULL"),
        tok(
            "revoked_recently",
            9001,
            "now() + interval '1 hour'",
            "now() - interval '29 days'",
        ),
        tok("old_expired", 9001, "now() - interval '31 days'", "NULL"),
        tok(
            "old_revoked",
            9002,
            "now() + interval '1 hour'",
            "now() - interval '40 days'",
        ),
    ]
    .join(",");
    exec(
        app,
        &format!("INSERT INTO access_tokens (tenant_id, grant_id, token_digest, hint, created_at, expires_at, revoked_at) VALUES {rows}"),
    );
    exec(
        app,
        &format!("INSERT INTO refresh_tokens (tenant_id, grant_id, token_digest, hint, created_at, expires_at, revoked_at) VALUES {rows}"),
    );
    // Live refresh token whose parent and access token get purged.
    exec(
        app,
        "UPDATE refresh_tokens SET parent_id = (SELECT id FROM refresh_tokens WHERE hint = 'old_expired'),
             access_token_id = (SELECT id FROM access_tokens WHERE hint = 'old_expired')
         WHERE hint = 'live'",
    );
    exec(
        app,
        &format!(
            "INSERT INTO authorization_codes (tenant_id, app_id, end_user_id, code_digest, redirect_uri, scopes, expires_at, used_at, grant_id) VALUES
             ({t}, {a}, {u}, sha256('c1'), 'https://app.kit.com/apps', '{{public}}', now() + interval '1 minute', NULL, NULL),
             ({t}, {a}, {u}, sha256('c2'), 'https://app.kit.com/apps', '{{public}}', now() - interval '1 hour', now() - interval '1 hour', 9001),
             ({t}, {a}, {u}, sha256('c3'), 'https://app.kit.com/apps', '{{public}}', now() - interval '2 days', NULL, NULL)"
        ),
    );
    exec(
        app,
        &format!(
            "INSERT INTO end_user_sessions (tenant_id, end_user_id, token_digest, expires_at) VALUES
             ({t}, {u}, sha256('s-live'), now() + interval '1 hour'),
             ({t}, {u}, sha256('s-expired'), now() - interval '1 second')"
        ),
    );
    exec(
        app,
        "INSERT INTO admins (id, email, password_hash) VALUES (7001, 'admin@acme.example', 'x')",
    );
    exec(
        app,
        "INSERT INTO admin_sessions (admin_id, token_digest, expires_at) VALUES
         (7001, sha256('a-live'), now() + interval '1 hour'),
         (7001, sha256('a-expired'), now() - interval '1 minute')",
    );
    exec(
        app,
        &format!(
            "INSERT INTO audit_events (tenant_id, actor, action, created_at) VALUES
             ({t}, 'x', 'kept', now() - interval '364 days'),
             ({t}, 'x', 'old', now() - interval '366 days'),
             (NULL, 'x', 'old', now() - interval '400 days')"
        ),
    );
    // Idempotency keys: the API replays an answer for 24 hours.
    exec(
        app,
        &format!(
            "INSERT INTO api_idempotency (tenant_id, idem_key, request_digest, status, created_at) VALUES
             ({t}, 'idem-kept', sha256('k'), 201, now() - interval '23 hours'),
             ({t}, 'idem-old', sha256('o'), 201, now() - interval '25 hours'),
             ({t}, 'idem-old-pending', sha256('p'), NULL, now() - interval '3 days')"
        ),
    );
    // Delegated sign-in: login requests live 10 minutes, remembered logins
    // as long as they were given.
    exec(
        app,
        &format!(
            "INSERT INTO login_requests (tenant_id, app_id, challenge_digest, browser_digest,
               redirect_uri, redirect_uri_sent, scopes, expires_at) VALUES
             ({t}, {a}, sha256('lr-live'), sha256('b'), 'https://app.kit.com/apps/install', true, '{{public}}', now() + interval '5 minutes'),
             ({t}, {a}, sha256('lr-expired'), sha256('b'), 'https://app.kit.com/apps/install', true, '{{public}}', now() - interval '1 minute')"
        ),
    );
    exec(
        app,
        &format!(
            "INSERT INTO login_sessions (tenant_id, end_user_id, browser_digest, expires_at) VALUES
             ({t}, {u}, sha256('ls-live'), now() + interval '1 day'),
             ({t}, {u}, sha256('ls-expired'), now() - interval '1 minute')"
        ),
    );
}

fn assert_purged(app: &TestApp) {
    for table in ["access_tokens", "refresh_tokens"] {
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) FROM {table} WHERE hint LIKE 'old_%'"
            )),
            0,
            "{table}: old rows purged"
        );
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) FROM {table} WHERE hint IN ('live', 'expired_recently', 'revoked_recently')"
            )),
            3,
            "{table}: rows within retention kept"
        );
    }
    assert_eq!(
        app.count(
            "SELECT count(*) FROM refresh_tokens WHERE hint = 'live' AND parent_id IS NULL AND access_token_id IS NULL"
        ),
        1,
        "references to purged rows are cleared, the live token stays"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM authorization_codes WHERE code_digest = sha256('c3')"),
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM authorization_codes WHERE code_digest IN (sha256('c1'), sha256('c2'))"),
        2,
        "live codes and recently used ones (replay detection) are kept"
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM end_user_sessions WHERE token_digest = sha256('s-expired')"
        ),
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM end_user_sessions WHERE token_digest = sha256('s-live')"),
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM admin_sessions WHERE token_digest = sha256('a-expired')"),
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM admin_sessions WHERE token_digest = sha256('a-live')"),
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action = 'old'"),
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action = 'kept'"),
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM api_idempotency WHERE idem_key LIKE 'idem-old%'"),
        0,
        "idempotency keys past the 24-hour window purged"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM api_idempotency WHERE idem_key = 'idem-kept'"),
        1,
        "idempotency keys within the window kept"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM grants WHERE id IN (9001, 9002)"),
        2,
        "grants are install history and stay"
    );
}

#[rocket::async_test]
async fn janitor_command_purges_expired_and_old_rows_and_keeps_the_rest() {
    let app = TestApp::with(|f| f.merge(("janitor_interval_secs", 0))).await;
    let seed = seed_tenant(&app, "acme");
    seed_rows(&app, &seed);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kitauth"))
        .args(["--json", "janitor"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", &app.db.url)
        .env("KITAUTH_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!({
            "authorization_codes": 1, "access_tokens": 2, "refresh_tokens": 2,
            "end_user_sessions": 1, "admin_sessions": 1, "audit_events": 2,
            "api_idempotency": 2, "login_requests": 1, "login_sessions": 1,
        })
    );
    assert_purged(&app);
    // A second pass finds nothing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kitauth"))
        .arg("janitor")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", &app.db.url)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("deleted 0 authorization code(s), 0 access token(s)"));
}

#[rocket::async_test]
async fn janitor_deletes_in_batches_until_done() {
    let app = TestApp::with(|f| f.merge(("janitor_interval_secs", 0))).await;
    let seed = seed_tenant(&app, "acme");
    let (t, a, u) = (seed.tenant.id, seed.app.id, seed.user.id);
    exec(
        &app,
        &format!("INSERT INTO grants (id, tenant_id, app_id, end_user_id, scopes) VALUES (9100, {t}, {a}, {u}, '{{public}}')"),
    );
    exec(
        &app,
        &format!(
            "INSERT INTO access_tokens (tenant_id, grant_id, token_digest, hint, expires_at)
             SELECT {t}, 9100, sha256(i::text::bytea), 'x', now() - interval '60 days'
             FROM generate_series(1, 2500) i"
        ),
    );
    let retention = kitauth::janitor::Retention {
        tokens: chrono::Duration::days(30),
        audit: chrono::Duration::days(365),
    };
    let report =
        kitauth::janitor::purge(&mut app.conn(), retention, chrono::Utc::now(), 1000).unwrap();
    assert_eq!(report.access_tokens, 2500);
    assert_eq!(app.count("SELECT count(*) FROM access_tokens"), 0);
}

#[rocket::async_test]
async fn janitor_runs_in_the_background_at_its_interval() {
    let app = TestApp::with(|f| f.merge(("janitor_interval_secs", 1))).await;
    let seed = seed_tenant(&app, "acme");
    seed_rows(&app, &seed);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.count("SELECT count(*) FROM admin_sessions WHERE expires_at < now()") > 0 {
        assert!(std::time::Instant::now() < deadline, "the janitor ran");
        rocket::tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the pass finish its last table.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.count("SELECT count(*) FROM audit_events WHERE action = 'old'") > 0 {
        assert!(std::time::Instant::now() < deadline, "the janitor finished");
        rocket::tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_purged(&app);
}
