//! Load benchmark of the hot paths: `cargo bench --bench load [-- FLAGS]`.
//!
//! Builds (cargo does that) and starts the release server against a fresh
//! database, seeds a tenant, an app and N installs straight through the
//! models, then drives introspect, userinfo, code exchange, refresh and
//! revoke over HTTP/1.1 keep-alive on loopback with a fixed number of
//! connections for a fixed time each. In the same run it measures the
//! database's own rate with pgbench (`-S` and `-N`, `-M prepared`, scale 10,
//! same concurrency) in a separate database, right before and right after
//! each path (the machine is shared and drifts, so each path is compared
//! with the mean of its own two brackets), and reports every path's rate
//! also as a ratio of that baseline. It also reports where the CPU went:
//! microseconds per request of the server, the load generator and all of
//! PostgreSQL (from /proc), next to PostgreSQL's and pgbench's per
//! transaction in the baseline. Any non-2xx answer or transport error
//! fails the run (exit code 1).
//!
//! `introspect-flood` is introspect under attack (issue 13): C-K
//! connections send valid introspections, as the introspect path does,
//! while K connections send `invalid_client` introspections, each with a
//! fresh random, well-shaped `client_id` (`kit_` + 24 base64url
//! characters) and a random secret. The row's figures are the valid
//! requests' only, so they read next to the plain introspect row of the
//! same run. The flood's answers must be 401 or 429; anything else, and
//! any non-2xx answer to a valid request, fails the run.
//!
//! `api-installs` and `api-rotate` are the tenant API (issue 15), with the
//! `kak_` keys seeding makes through `ApiKey::create` (as `kitauth api-key
//! create` does). `api-installs` is `GET /t/bench/api/v1/installs?limit=50`
//! with a `read` key: the first page, newest first, and the second page
//! (the first page's `next_cursor`, from one untimed call), alternating;
//! each answer must be 200 with a non-empty `items` list. `api-rotate` is
//! `POST /t/bench/api/v1/apps/{id}/secrets/rotate` with a `write` key and
//! `{"grace_secs": 86400}`; each answer must be 201 with the new `kcs_`
//! secret. It rotates the secrets of apps of its own (200, or one per
//! connection if there are more connections), dealt to the connections so
//! no two rotate the same app at once, never the app of the other paths. A
//! rotation adds a secret and prunes none (nothing limits or purges an
//! app's secrets), so the report notes how many each app ends with. The
//! per-key request budget (`api_requests_per_minute`, 600 by default)
//! would answer 429 after the first 600 requests of a key, so the server
//! is started with `ROCKET_API_REQUESTS_PER_MINUTE` far above what a run
//! can send: the limiter still counts every request, as in service, but
//! never refuses one. Read paths (introspect, introspect-flood, userinfo,
//! api-installs) are compared with pgbench `-S`, the others with `-N`.
//!
//! The server is killed and both databases are dropped at the end, also
//! on failure.
//!
//! Flags (after `--`):
//!   --installs N       installs to seed (default 10000)
//!   --concurrency C    connections, and pgbench clients (default 16)
//!   --duration S       seconds per path and per pgbench run (default 10)
//!   --warmup S         untimed introspect traffic before the first path (default 1)
//!   --json PATH        also write the figures as JSON (`-` for stdout)
//!   --paths a,b,...    only these paths (introspect,introspect-flood,userinfo,api-installs,
//!                      exchange,refresh,revoke,api-rotate)
//!   --flood K          connections of introspect-flood that flood (default C/2)
//!   --no-pgbench       skip the baseline (ratios are then omitted)
//!
//! `BENCH_DATABASE_URL` (else `TEST_DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`) names the PostgreSQL
//! server; `PGBENCH` the pgbench binary (default: `pgbench` on the PATH).
//!
//! The steps, one module each: `opts` (the flags), `seed` (the rows),
//! `server` (the databases and the server under test), `pgbench` (the
//! baseline), `cpu` (the machine and where the CPU went), `client` (the
//! load generator), `paths` (each path's requests, run between its
//! brackets), `report` (the table and the JSON).

mod client;
mod cpu;
mod opts;
mod paths;
mod pgbench;
mod report;
mod seed;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rocket::tokio;

use kitauth::crypto;

use client::Ctx;
use cpu::{clock_ticks, load_average, machine};
use opts::{parse_opts, Opts};
use pgbench::pgbench_init;
use report::Summary;
use seed::{seed, Seeded};
use server::{admin_sql, db_url, free_port, peak_rss_kb, spawn_server, wait_ready, Cleanup};

pub const TENANT: &str = "bench";
/// In the order they run: the read paths first, on the seeded installs
/// only (exchange adds installs and revoke revokes them).
pub const PATHS: [&str; 8] = [
    "introspect",
    "introspect-flood",
    "userinfo",
    "api-installs",
    "exchange",
    "refresh",
    "revoke",
    "api-rotate",
];
/// Apps seeded for api-rotate (at least one per connection).
pub const ROTATE_APPS: usize = 200;
/// The server's per-key API budget: far above what a run sends (see above).
pub const API_REQUESTS_PER_MINUTE: &str = "100000000";

fn main() -> ExitCode {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the steps of a run share: the options, the databases, the seeded
/// rows and the running server.
pub struct Bench<'a> {
    pub o: &'a Opts,
    pub tck: f64,
    /// pgbench's database (None with --no-pgbench).
    pub pgdb: Option<String>,
    /// The server's database.
    pub db: String,
    pub seeded: Seeded,
    pub ctx: Ctx,
    /// The server's process id.
    pub pid: u32,
    pub rt: tokio::runtime::Runtime,
}

fn run(o: &Opts) -> Result<bool, String> {
    let m = machine();
    let tck = clock_ticks();
    let load_start = load_average();
    let suffix = &crypto::random_b64(6)
        .to_lowercase()
        .replace(['-', '_'], "x");
    let mut cleanup = Cleanup::default();
    let (pgdb, db) = create_databases(o, suffix, &mut cleanup)?;
    let seeded = seed_database(o, &db)?;
    let (ctx, rt, startup, log) = start_server(o, &db, &seeded, &mut cleanup)?;
    let pid = cleanup.server.as_ref().map(|c| c.id()).unwrap_or(0);
    let b = Bench {
        o,
        tck,
        pgdb,
        db,
        seeded,
        ctx,
        pid,
        rt,
    };
    let (results, baselines_run) = paths::run_paths(&b)?;

    let rss_kb = peak_rss_kb(pid);
    let load_end = load_average();
    let exited = cleanup
        .server
        .as_mut()
        .and_then(|c| c.try_wait().ok().flatten());
    drop(cleanup);
    report::report(
        o,
        &Summary {
            machine: m,
            load_start,
            load_end,
            baselines_run,
            results,
            rss_kb,
            startup,
            exited: exited.is_some(),
            log,
        },
    )
}

/// Creates pgbench's database (initialised at scale 10) and the server's
/// (migrated); both are dropped at the end unless --keep.
fn create_databases(
    o: &Opts,
    suffix: &str,
    cleanup: &mut Cleanup,
) -> Result<(Option<String>, String), String> {
    // The database's own rate is measured in its own database.
    let pgdb = if o.pgbench {
        let pgdb = format!("pgbench_{suffix}");
        admin_sql(&format!("CREATE DATABASE {pgdb}"))?;
        if !o.keep {
            cleanup.databases.push(pgdb.clone());
        }
        pgbench_init(&pgdb)?;
        Some(pgdb)
    } else {
        None
    };

    // A fresh, migrated and seeded database for the server.
    let db = format!("kitauth_bench_{suffix}");
    admin_sql(&format!("CREATE DATABASE {db}"))?;
    if o.keep {
        match &pgdb {
            Some(pgdb) => eprintln!("keeping databases {db} and {pgdb} (--keep)"),
            None => eprintln!("keeping database {db} (--keep)"),
        }
    } else {
        cleanup.databases.push(db.clone());
    }
    kitauth::db::run_migrations(&db_url(&db))?;
    Ok((pgdb, db))
}

/// Seeds the server's database, then checkpoints.
fn seed_database(o: &Opts, db: &str) -> Result<Seeded, String> {
    let t = Instant::now();
    let rotate_apps = if o.paths.iter().any(|p| p == "api-rotate") {
        ROTATE_APPS.max(o.concurrency)
    } else {
        0
    };
    let seeded = seed(&db_url(db), o.installs, rotate_apps)?;
    eprintln!(
        "seeded {} installs in {:.1} s",
        o.installs,
        t.elapsed().as_secs_f64()
    );
    // Write out what seeding and pgbench -i dirtied now, not during the
    // first timed run. Needs superuser or pg_checkpoint; skipped otherwise.
    if let Err(e) = admin_sql("CHECKPOINT") {
        eprintln!("warning: no CHECKPOINT before the runs: {e}");
    }
    Ok(seeded)
}

/// Starts the server on a free port and waits until it is ready; returns
/// the client's context, the runtime, the start-up time and the log's path.
fn start_server(
    o: &Opts,
    db: &str,
    seeded: &Seeded,
    cleanup: &mut Cleanup,
) -> Result<(Ctx, tokio::runtime::Runtime, Duration, PathBuf), String> {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let host = format!("127.0.0.1:{port}");
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("load-server.log");
    cleanup.server = Some(spawn_server(&o.server, db, port, &log)?);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let ctx = Ctx {
        addr,
        host: host.clone(),
        client_id: seeded.client_id.clone(),
        client_secret: seeded.client_secret.clone(),
    };
    let startup = {
        let child = cleanup.server.as_mut().ok_or("no server")?;
        rt.block_on(wait_ready(addr, &host, child))?
    };
    eprintln!(
        "server ready in {:.0} ms (log: {})",
        startup.as_secs_f64() * 1000.0,
        log.display()
    );
    Ok((ctx, rt, startup, log))
}
