//! PostgreSQL goes away under load and comes back.
//!
//! The server under test talks to a PRIVATE PostgreSQL instance (initdb into
//! a temporary directory, its own port), never to the shared one. Kit-like
//! workers refresh and exchange codes continuously while the instance is
//! crashed (`pg_ctl stop -m immediate`) and restarted. Checked:
//! - during the outage OAuth requests fail fast (< 2 s) with 503 and an
//!   RFC 6749 `temporarily_unavailable` body, hosted pages show an error
//!   page, `/readyz` reports not ready;
//! - after the restart the server recovers within seconds, without a
//!   restart of its own (the pool discards dead connections);
//! - every write acknowledged with a 2xx is in the database afterwards, and
//!   nothing is half-done (no grant without tokens, no consumed refresh
//!   token without a successor, no used code without its grant).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use diesel::prelude::*;
use kitauth::db::models::{EndUser, NewTenant, Tenant};
use rocket::http::{ContentType, Status};
use rocket::local::asynchronous::Client;

/// A throwaway PostgreSQL cluster owned by this test.
struct PrivatePg {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

fn as_postgres(cmd: &str) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if is_root {
        let mut c = Command::new("su");
        c.args(["postgres", "-s", "/bin/sh", "-c", cmd]);
        c
    } else {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", cmd]);
        c
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivatePg {
    fn start_new() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb");
        let dir =
            std::env::temp_dir().join(format!("kitauth-faults-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if is_root {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:postgres", dir.to_str().unwrap()]);
                    c
                },
                "chown",
            );
        }
        let pg = PrivatePg {
            bin,
            dir,
            port: free_port(),
        };
        run(
            as_postgres(&format!(
                "{}/initdb -D {}/data -A trust -U postgres --no-sync -E UTF8 >/dev/null",
                pg.bin.display(),
                pg.dir.display()
            )),
            "initdb",
        );
        pg.start();
        pg
    }

    fn start(&self) {
        run(
            as_postgres(&format!(
                "{bin}/pg_ctl -D {dir}/data -l {dir}/log -w -t 30 -o \"-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c max_connections=50\" start >/dev/null",
                bin = self.bin.display(),
                dir = self.dir.display(),
                port = self.port
            )),
            "pg_ctl start",
        );
    }

    /// A crash: no checkpoint, connections cut; acknowledged commits must survive.
    fn crash(&self) {
        run(
            as_postgres(&format!(
                "{}/pg_ctl -D {}/data -m immediate -w stop >/dev/null",
                self.bin.display(),
                self.dir.display()
            )),
            "pg_ctl stop",
        );
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = as_postgres(&format!(
            "{}/pg_ctl -D {}/data -m immediate -w stop >/dev/null 2>&1",
            self.bin.display(),
            self.dir.display()
        ))
        .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn dir_exists(p: &Path) -> bool {
    p.is_dir()
}

#[derive(Default)]
struct Ledger {
    /// Tokens from acknowledged (2xx) token responses.
    acked_access: Vec<String>,
    acked_refresh: Vec<String>,
    ok: usize,
    unavailable: usize,
    /// Slowest 503 seen.
    slowest_failure: Duration,
    /// Anything that is neither a 2xx nor a well-formed 503.
    unexpected: Vec<String>,
}

impl Ledger {
    fn note_tokens(&mut self, body: &serde_json::Value) {
        self.ok += 1;
        self.acked_access.push(
            body["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        self.acked_refresh.push(
            body["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
}

async fn refresh_once(app: &TestApp, seed: &Seed, token: &str) -> (Status, String, Duration) {
    let started = Instant::now();
    let resp = kit_refresh(app, seed, token).await;
    let status = resp.status();
    let text = resp.into_string().await.unwrap_or_default();
    (status, text, started.elapsed())
}

/// Records a non-2xx answer: it must be a fast, well-formed 503.
fn note_failure(ledger: &Mutex<Ledger>, status: Status, text: &str, took: Duration, what: &str) {
    let mut l = ledger.lock().unwrap();
    let body: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    if status == Status::ServiceUnavailable && body["error"] == "temporarily_unavailable" {
        l.unavailable += 1;
        l.slowest_failure = l.slowest_failure.max(took);
    } else {
        l.unexpected.push(format!("{what}: {status} {text}"));
    }
}

#[rocket::async_test]
async fn database_crash_under_load_fails_fast_recovers_and_loses_no_acknowledged_write() {
    let pg = PrivatePg::start_new();
    assert!(dir_exists(&pg.dir));
    let url = pg.url("kitauth_faults");
    let figment = rocket::Config::figment()
        .merge(("database_url", url.clone()))
        .merge(("create_database", true))
        .merge(("bcrypt_cost", 4))
        .merge(("db_pool_size", 6))
        .merge(("db_timeout_ms", 1500))
        .merge(("log_level", "off"))
        .merge(("janitor_interval_secs", 0))
        .merge(("secret_key", "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk="));
    let client =
        Client::tracked(kitauth::build(figment).expect("build against the private PostgreSQL"))
            .await
            .unwrap();
    // TestApp's helpers drive the flows; its TestDb names a database that
    // does not exist on the shared server, so its drop is a no-op there.
    let app = Arc::new(TestApp {
        client,
        db: TestDb {
            name: format!("kitauth_faults_{}", uuid::Uuid::new_v4().simple()),
            url: url.clone(),
        },
    });
    let seed = {
        let mut conn = kitauth::db::connect(&url).unwrap();
        let tenant = Tenant::create(
            &mut conn,
            &NewTenant {
                slug: "acme",
                name: "Acme",
            },
        )
        .unwrap();
        let (kit_app, client_secret) = kitauth::cli::create_app(
            &mut conn,
            tenant.id,
            "Acme for Kit",
            vec![],
            vec!["public".into()],
        )
        .unwrap();
        let password = "correct horse battery".to_string();
        let hash = kitauth::crypto::hash_password(&password, 4).unwrap();
        let user = EndUser::create(&mut conn, tenant.id, "creator@acme.example", &hash).unwrap();
        Arc::new(Seed {
            tenant,
            app: kit_app,
            client_secret,
            user,
            password,
        })
    };

    // Installs for the refresh workers, and codes for the exchange worker.
    const REFRESHERS: usize = 4;
    let mut chains = Vec::new();
    for _ in 0..REFRESHERS {
        let code = get_code(&app, &seed).await;
        let body = json_of(kit_exchange(&app, &seed, &code).await).await;
        chains.push(body["refresh_token"].as_str().unwrap().to_string());
    }
    let mut codes = Vec::new();
    for _ in 0..40 {
        codes.push(get_code(&app, &seed).await);
    }

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for mut token in chains {
        let (app, seed, ledger, stop) = (app.clone(), seed.clone(), ledger.clone(), stop.clone());
        workers.push(rocket::tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, text, took) = refresh_once(&app, &seed, &token).await;
                if status == Status::Ok {
                    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
                    token = body["refresh_token"].as_str().unwrap().to_string();
                    ledger.lock().unwrap().note_tokens(&body);
                } else {
                    // Retry the same token, as Kit would: within the grace
                    // window a lost answer does not kill the install.
                    note_failure(&ledger, status, &text, took, "refresh");
                    rocket::tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    {
        let (app, seed, ledger, stop) = (app.clone(), seed.clone(), ledger.clone(), stop.clone());
        workers.push(rocket::tokio::spawn(async move {
            for code in codes {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let started = Instant::now();
                let resp = kit_exchange(&app, &seed, &code).await;
                let status = resp.status();
                let text = resp.into_string().await.unwrap_or_default();
                if status == Status::Ok {
                    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
                    ledger.lock().unwrap().note_tokens(&body);
                } else if status == Status::BadRequest && text.contains("expired") {
                    // Codes live two minutes; not this test's concern.
                } else {
                    note_failure(&ledger, status, &text, started.elapsed(), "exchange");
                }
                rocket::tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    rocket::tokio::time::sleep(Duration::from_millis(1500)).await;
    let ok_before = ledger.lock().unwrap().ok;
    assert!(ok_before > 0, "the load runs before the crash");

    // Crash PostgreSQL.
    let pg = Arc::new(pg);
    {
        let pg = pg.clone();
        rocket::tokio::task::spawn_blocking(move || pg.crash())
            .await
            .unwrap();
    }
    let crashed_at = Instant::now();

    // Readiness, a hosted page and an OAuth call during the outage.
    rocket::tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = app.client.get("/readyz").dispatch().await;
    assert_eq!(resp.status(), Status::ServiceUnavailable);
    assert!(resp.into_string().await.unwrap().contains("not ready"));
    rocket::tokio::time::sleep(Duration::from_secs(6)).await; // the tenant cache (5 s) expires
    let started = Instant::now();
    let resp = app.client.get("/t/acme/login").dispatch().await;
    assert_eq!(resp.status(), Status::ServiceUnavailable);
    assert_eq!(resp.content_type(), Some(ContentType::HTML));
    assert!(resp
        .into_string()
        .await
        .unwrap()
        .contains("Temporarily unavailable"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "hosted page failed in {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let resp = app
        .client
        .post("/t/acme/oauth/introspect")
        .header(ContentType::Form)
        .body(form(&[
            ("client_id", &seed.app.client_id),
            ("client_secret", &seed.client_secret),
            ("token", "kat_x"),
        ]))
        .dispatch()
        .await;
    let took = started.elapsed();
    assert_eq!(resp.status(), Status::ServiceUnavailable);
    assert_eq!(json_of(resp).await["error"], "temporarily_unavailable");
    assert!(
        took < Duration::from_secs(2),
        "introspect failed in {took:?}"
    );
    let outage_ok = ledger.lock().unwrap().ok;

    // Start it again and time the recovery.
    {
        let pg = pg.clone();
        rocket::tokio::task::spawn_blocking(move || pg.start())
            .await
            .unwrap();
    }
    let restarted_at = Instant::now();
    let outage = restarted_at - crashed_at;
    loop {
        let ready = app.client.get("/readyz").dispatch().await.status() == Status::Ok;
        if ready && ledger.lock().unwrap().ok > outage_ok + REFRESHERS {
            break;
        }
        assert!(
            restarted_at.elapsed() < Duration::from_secs(10),
            "the server did not recover within 10 s"
        );
        rocket::tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovery = restarted_at.elapsed();
    rocket::tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    let l = ledger.lock().unwrap();
    eprintln!(
        "faults: {} acknowledged writes, {} fast 503s (slowest {:?}) during a {:?} outage; recovered {:?} after the restart",
        l.ok, l.unavailable, l.slowest_failure, outage, recovery
    );
    assert!(
        l.unexpected.is_empty(),
        "unexpected answers: {:#?}",
        l.unexpected
    );
    assert!(l.unavailable > 0, "the outage was seen");
    assert!(
        l.slowest_failure < Duration::from_secs(2),
        "slowest 503 took {:?}",
        l.slowest_failure
    );

    // Every acknowledged write is there.
    let mut conn = kitauth::db::connect(&url).unwrap();
    let count = |conn: &mut PgConnection, sql: String| -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(sql).get_result::<N>(conn).unwrap().n
    };
    let hex = |t: &str| -> String {
        kitauth::crypto::digest(t)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let list = |tokens: &[String]| -> String {
        tokens
            .iter()
            .map(|t| format!("'\\x{}'::bytea", hex(t)))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(
        count(
            &mut conn,
            format!(
                "SELECT count(*) AS n FROM access_tokens WHERE token_digest IN ({})",
                list(&l.acked_access)
            )
        ),
        l.acked_access.len() as i64,
        "every acknowledged access token is stored"
    );
    assert_eq!(
        count(
            &mut conn,
            format!(
                "SELECT count(*) AS n FROM refresh_tokens WHERE token_digest IN ({})",
                list(&l.acked_refresh)
            )
        ),
        l.acked_refresh.len() as i64,
        "every acknowledged refresh token is stored"
    );
    // Nothing half-done.
    for (what, sql) in [
        ("grants without an access token", "SELECT count(*) AS n FROM grants g WHERE NOT EXISTS (SELECT 1 FROM access_tokens a WHERE a.grant_id = g.id)"),
        ("grants without a refresh token", "SELECT count(*) AS n FROM grants g WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = g.id)"),
        ("used refresh tokens without a successor", "SELECT count(*) AS n FROM refresh_tokens r WHERE r.used_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM refresh_tokens c WHERE c.parent_id = r.id)"),
        ("refresh tokens without their access token", "SELECT count(*) AS n FROM refresh_tokens WHERE access_token_id IS NULL"),
        ("used codes without a grant", "SELECT count(*) AS n FROM authorization_codes WHERE used_at IS NOT NULL AND grant_id IS NULL"),
        ("grants without a code", "SELECT count(*) AS n FROM grants g WHERE NOT EXISTS (SELECT 1 FROM authorization_codes c WHERE c.grant_id = g.id)"),
    ] {
        assert_eq!(count(&mut conn, sql.to_string()), 0, "{what}");
    }
}
