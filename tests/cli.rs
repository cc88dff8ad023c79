//! The `kitauth` binary: the command line session from the README, its
//! errors, and start-up failures that must be one clear line.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{kitauth, TestDb};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn command_line_session_from_nothing_to_kits_urls() {
    let db = TestDb::new();
    let out = kitauth(
        Some(&db),
        &["tenant", "create", "--slug", "acme", "--name", "Acme"],
        "",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("created tenant acme"));

    let out = kitauth(
        Some(&db),
        &[
            "app",
            "create",
            "--tenant",
            "acme",
            "--name",
            "Acme for Kit",
            "--json",
        ],
        "",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    for key in [
        "client_id",
        "client_secret",
        "authorization_url",
        "token_url",
        "refresh_token_url",
        "revoke_url",
        "introspection_url",
    ] {
        assert!(v[key].is_string(), "{key} in {v}");
    }
    assert_eq!(
        v["authorization_url"],
        "https://auth.example.com/t/acme/oauth/authorize"
    );
    assert_eq!(
        v["refresh_token_url"],
        "https://auth.example.com/t/acme/oauth/refresh"
    );
    assert!(v["client_secret"].as_str().unwrap().starts_with("kcs_"));
    assert_eq!(v.as_object().unwrap().len(), 7);

    // Text output names the four URLs and the credentials.
    let out = kitauth(
        Some(&db),
        &[
            "app",
            "create",
            "--tenant",
            "acme",
            "--name",
            "Second",
            "--redirect-uri",
            "https://example.com/cb",
            "--scope",
            "read",
            "--scope",
            "write",
        ],
        "",
        &[],
    );
    let text = stdout(&out);
    for label in [
        "Authorization URL:",
        "Token URL:",
        "Refresh token URL:",
        "Revoke URL:",
        "Client ID:",
        "Client secret:",
    ] {
        assert!(text.contains(label), "{label} in {text}");
    }

    let out = kitauth(
        Some(&db),
        &[
            "user",
            "create",
            "--tenant",
            "acme",
            "--email",
            "c@example.com",
            "--password-stdin",
            "--json",
        ],
        "a long password\n",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["email"], "c@example.com");

    let out = kitauth(
        Some(&db),
        &[
            "admin",
            "create",
            "--email",
            "me@acme.example",
            "--password-stdin",
            "--tenant",
            "acme",
            "--role",
            "owner",
            "--json",
        ],
        "another long password\n",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["role"], "owner");

    // The rows are real: the secret's digest is stored, not the secret.
    let mut conn = db.conn();
    use diesel::prelude::*;
    let n: i64 = kitauth::db::schema::client_secrets::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn command_line_errors_are_one_clear_line_and_non_zero() {
    let db = TestDb::new();
    assert!(kitauth(
        Some(&db),
        &["tenant", "create", "--slug", "acme", "--name", "Acme"],
        "",
        &[]
    )
    .status
    .success());
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["tenant", "create", "--slug", "acme", "--name", "Again"],
            "",
            "exists already",
        ),
        (
            vec!["tenant", "create", "--slug", "Bad_Slug", "--name", "X"],
            "",
            "slug",
        ),
        (
            vec!["app", "create", "--tenant", "nobody", "--name", "X"],
            "",
            "unknown tenant",
        ),
        (
            vec![
                "app",
                "create",
                "--tenant",
                "acme",
                "--name",
                "X",
                "--redirect-uri",
                "not a url",
            ],
            "",
            "bad redirect URI",
        ),
        (
            vec![
                "app",
                "create",
                "--tenant",
                "acme",
                "--name",
                "X",
                "--redirect-uri",
                "http://example.com/cb",
            ],
            "",
            "https",
        ),
        (
            vec![
                "user",
                "create",
                "--tenant",
                "acme",
                "--email",
                "c@example.com",
                "--password-stdin",
            ],
            "short\n",
            "at least 10",
        ),
        (
            vec![
                "user",
                "create",
                "--tenant",
                "nobody",
                "--email",
                "c@example.com",
                "--password-stdin",
            ],
            "long enough pw\n",
            "unknown tenant",
        ),
        (
            vec!["admin", "create", "--email", "nope", "--password-stdin"],
            "long enough pw\n",
            "valid email",
        ),
        (
            vec![
                "tenant",
                "sign-in",
                "--tenant",
                "acme",
                "--mode",
                "delegated",
            ],
            "",
            "login_url: delegated sign-in needs the URL of your login page",
        ),
        (
            vec![
                "tenant",
                "sign-in",
                "--tenant",
                "acme",
                "--mode",
                "delegated",
                "--login-url",
                "http://login.example/",
            ],
            "",
            "https://",
        ),
        (
            vec!["tenant", "sign-in", "--tenant", "acme", "--mode", "sso"],
            "",
            "hosted or delegated",
        ),
        (
            vec![
                "tenant", "sign-in", "--tenant", "nobody", "--mode", "hosted",
            ],
            "",
            "unknown tenant",
        ),
    ];
    for (args, stdin, expected) in cases {
        let out = kitauth(Some(&db), &args, stdin, &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}");
    }
    // --json errors are one JSON object too.
    let out = kitauth(
        Some(&db),
        &[
            "app", "create", "--tenant", "nobody", "--name", "X", "--json",
        ],
        "",
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(v["error"].as_str().unwrap().contains("unknown tenant"));
    // Nothing was changed by the refused sign-in choices; a good one is
    // printed, in JSON too, and back to hosted clears the URL.
    let out = kitauth(
        Some(&db),
        &[
            "--json",
            "tenant",
            "sign-in",
            "--tenant",
            "acme",
            "--mode",
            "delegated",
            "--login-url",
            "https://login.acme.example/kit",
        ],
        "",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["creator_signin"], "delegated");
    assert_eq!(v["login_url"], "https://login.acme.example/kit");
    let out = kitauth(
        Some(&db),
        &[
            "--json", "tenant", "sign-in", "--tenant", "acme", "--mode", "hosted",
        ],
        "",
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"slug": "acme", "creator_signin": "hosted", "login_url": null})
    );
}

#[test]
fn unreachable_database_is_one_line_naming_host_and_port_without_password() {
    let out = kitauth(
        None,
        &["serve"],
        "",
        &[
            (
                "DATABASE_URL",
                "postgres://postgres:hunter2secret@127.0.0.1:1/kitauth",
            ),
            ("ROCKET_CREATE_DATABASE", "false"),
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(err.contains("pg_ctlcluster"), "{err}");
    assert!(!err.contains("hunter2secret"));
    assert!(!err.contains("panicked"));
}

#[test]
fn release_profile_refuses_to_start_without_explicit_settings() {
    let out = kitauth(None, &["serve"], "", &[("ROCKET_PROFILE", "release")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("secret_key") && err.contains("database_url"),
        "{err}"
    );
}

#[test]
fn release_profile_refuses_to_start_without_a_metrics_token() {
    let settings = [
        ("ROCKET_PROFILE", "release"),
        (
            "ROCKET_SECRET_KEY",
            "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=",
        ),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/kitauth"),
        ("ROCKET_PUBLIC_URL", "https://auth.example"),
    ];
    let out = kitauth(None, &["serve"], "", &settings);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("metrics_token"), "{err}");
    assert!(
        !err.contains("secret_key") && !err.contains("public_url"),
        "{err}"
    );
    // With a token, the release checks pass (and start-up goes on to the
    // database, which is unreachable here).
    let mut with_token = settings.to_vec();
    with_token.push(("ROCKET_METRICS_TOKEN", "a-long-random-metrics-token"));
    let err = stderr(&kitauth(None, &["serve"], "", &with_token));
    assert!(!err.contains("metrics_token"), "{err}");
}

#[test]
fn debug_profile_creates_the_database_and_migrate_applies_migrations() {
    let db = TestDb::new();
    // A database name that does not exist yet: the debug profile creates it.
    let fresh = format!("{}_fresh", db.name);
    let url = common::db_url(&fresh);
    let out = kitauth(None, &["migrate", "--json"], "", &[("DATABASE_URL", &url)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(v["applied"].as_u64().unwrap() >= 1);
    let again = kitauth(None, &["migrate", "--json"], "", &[("DATABASE_URL", &url)]);
    let v: serde_json::Value = serde_json::from_str(stdout(&again).trim()).unwrap();
    assert_eq!(v["applied"], 0);
    let mut admin = kitauth::db::connect(&common::server_url()).unwrap();
    let _ = diesel::RunQueryDsl::execute(
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {fresh} WITH (FORCE)")),
        &mut admin,
    );
}

#[test]
fn serve_starts_and_answers_healthz() {
    let db = TestDb::new();
    let log_path = std::env::temp_dir().join(format!("kitauth-serve-{}.log", db.name));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kitauth"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", &db.url)
        .env("ROCKET_PORT", port.to_string())
        .env_remove("ROCKET_PROFILE")
        .env_remove("KITAUTH_LOG")
        .env_remove("KITAUTH_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Read;
            s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                ok = true;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SIGTERM, so that the log writer flushes on the way out.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    // Up to grace + mercy (Rocket.toml) and some slack.
    let mut exited = false;
    for _ in 0..150 {
        if let Ok(Some(_)) = child.try_wait() {
            exited = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    assert!(ok, "the server answers /readyz");
    assert!(killed, "kill -TERM ran");
    assert!(exited, "the server exits on SIGTERM");
    // With the default filter a request is one line: kitauth's request
    // event, not Rocket's own four.
    let readyz: Vec<&str> = log.lines().filter(|l| l.contains("/readyz")).collect();
    assert!(!readyz.is_empty(), "the request is logged:\n{log}");
    assert!(
        readyz.iter().all(|l| l.contains("kitauth::metrics")),
        "only kitauth's request event names the request:\n{log}"
    );
    assert!(!log.contains("Matched:"), "no Rocket route chatter:\n{log}");
    assert!(
        log.contains("kitauth listening on"),
        "the start is logged:\n{log}"
    );
}
