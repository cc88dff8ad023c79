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

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use diesel::prelude::*;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rocket::tokio;
use serde_json::json;

use kitauth::crypto::{self, TokenKind};
use kitauth::db::models::code::CODE_TTL_SECS;
use kitauth::db::models::{ApiKey, ApiScope, NewApiKey, NewAuthorizationCode, NewTenant, Tenant};
use kitauth::db::schema::{
    access_tokens, authorization_codes, client_secrets, end_users, grants, refresh_tokens,
};

const TENANT: &str = "bench";
/// In the order they run: the read paths first, on the seeded installs
/// only (exchange adds installs and revoke revokes them).
const PATHS: [&str; 8] = [
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
const ROTATE_APPS: usize = 200;
/// The server's per-key API budget: far above what a run sends (see above).
const API_REQUESTS_PER_MINUTE: &str = "100000000";

// ---------------------------------------------------------------- options

struct Opts {
    installs: usize,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    json: Option<String>,
    paths: Vec<String>,
    pgbench: bool,
    /// Connections of introspect-flood that flood (None: half of them).
    flood: Option<usize>,
    /// Leave the databases in place after the run, for EXPLAIN and pgbench -f.
    keep: bool,
    /// The server binary to start (default: the one cargo just built), for
    /// comparing two builds back to back on the same machine.
    server: PathBuf,
}

impl Opts {
    fn flood_connections(&self) -> usize {
        self.flood.unwrap_or(self.concurrency / 2)
    }
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        installs: 10_000,
        concurrency: 16,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        json: None,
        paths: PATHS.iter().map(|s| s.to_string()).collect(),
        pgbench: true,
        flood: None,
        keep: false,
        server: PathBuf::from(env!("CARGO_BIN_EXE_kitauth")),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            // cargo bench passes --bench to harness = false targets
            "--bench" => {}
            "--installs" | "-n" => {
                o.installs = val(&a)?.parse().map_err(|_| "--installs: a number")?
            }
            "--concurrency" | "-c" => {
                o.concurrency = val(&a)?.parse().map_err(|_| "--concurrency: a number")?
            }
            "--duration" | "-d" => {
                let s: f64 = val(&a)?.parse().map_err(|_| "--duration: seconds")?;
                o.duration = Duration::from_secs_f64(s);
            }
            "--warmup" => {
                let s: f64 = val(&a)?.parse().map_err(|_| "--warmup: seconds")?;
                o.warmup = Duration::from_secs_f64(s);
            }
            "--json" => o.json = Some(val(&a)?),
            "--paths" => {
                o.paths = val(&a)?.split(',').map(|s| s.trim().to_string()).collect();
                if let Some(bad) = o.paths.iter().find(|p| !PATHS.contains(&p.as_str())) {
                    return Err(format!("unknown path {bad:?}; known: {}", PATHS.join(",")));
                }
            }
            "--no-pgbench" => o.pgbench = false,
            "--flood" => o.flood = Some(val(&a)?.parse().map_err(|_| "--flood: a number")?),
            "--keep" => o.keep = true,
            "--server" => o.server = PathBuf::from(val(&a)?),
            "-h" | "--help" => {
                return Err("usage: cargo bench --bench load -- [--installs N] [--concurrency C] [--duration S] [--warmup S] [--json PATH] [--paths a,b] [--flood K] [--no-pgbench] [--keep] [--server PATH]".into())
            }
            other => return Err(format!("unknown flag {other:?} (try --help)")),
        }
    }
    if o.concurrency == 0 || o.installs < o.concurrency {
        return Err("need concurrency >= 1 and installs >= concurrency".into());
    }
    if o.paths.iter().any(|p| p == "introspect-flood") {
        let k = o.flood_connections();
        if k == 0 || k >= o.concurrency {
            return Err(format!(
                "introspect-flood needs 1 <= --flood ({k}) < --concurrency ({})",
                o.concurrency
            ));
        }
    }
    if o.duration.as_secs_f64() < 0.1 {
        return Err("--duration must be at least 0.1 s".into());
    }
    Ok(o)
}

// ---------------------------------------------------------------- cleanup

fn server_url() -> String {
    std::env::var("BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn db_url(name: &str) -> String {
    let mut u = url::Url::parse(&server_url()).expect("database URL");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

fn admin_sql(sql: &str) -> Result<(), String> {
    let mut c = kitauth::db::connect(&server_url()).map_err(|e| format!("connect: {e}"))?;
    diesel::sql_query(sql)
        .execute(&mut c)
        .map(|_| ())
        .map_err(|e| format!("{sql}: {e}"))
}

/// Kills the server and drops the databases when the run ends, however it ends.
#[derive(Default)]
struct Cleanup {
    server: Option<Child>,
    databases: Vec<String>,
}

impl Cleanup {
    fn stop_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.stop_server();
        for db in self.databases.drain(..) {
            if let Err(e) = admin_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")) {
                eprintln!("warning: could not drop database {db}: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------- machine

struct Machine {
    nproc: usize,
    mem_total_mb: u64,
    cpu_model: String,
}

fn machine() -> Machine {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total_mb = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    Machine {
        nproc,
        mem_total_mb,
        cpu_model,
    }
}

// ---------------------------------------------------------------- CPU accounting

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// (comm, utime + stime, cutime + cstime) in ticks, from /proc/<pid>/stat.
fn proc_times(pid: &str) -> Option<(String, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm is in parentheses and may hold spaces; the fields follow the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let f: Vec<u64> = stat[close + 2..]
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // After comm: state is field 3, so utime (14) is f[11], stime f[12], cutime f[13], cstime f[14].
    Some((comm, f.get(11)? + f.get(12)?, f.get(13)? + f.get(14)?))
}

/// CPU time used so far, in ticks: by one process, by the benchmark's
/// children (pgbench, once it has exited), and by every PostgreSQL process.
/// Backends that have exited are in the postmaster's children's times.
#[derive(Clone, Copy, Default)]
struct CpuSample {
    server: u64,
    client: u64,
    children: u64,
    postgres: u64,
}

fn cpu_sample(server_pid: u32) -> CpuSample {
    let mut s = CpuSample::default();
    if let Some((_, own, children)) = proc_times("self") {
        s.client = own;
        s.children = children;
    }
    if server_pid != 0 {
        s.server = proc_times(&server_pid.to_string()).map_or(0, |t| t.1);
    }
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Some((comm, own, children)) = proc_times(&name) {
                if comm == "postgres" {
                    s.postgres += own + children;
                }
            }
        }
    }
    s
}

/// CPU microseconds per request (or transaction) between two samples.
#[derive(Clone, Copy, Default)]
struct CpuPer {
    server_us: f64,
    /// The load generator: this process for the paths, pgbench for the baselines.
    client_us: f64,
    postgres_us: f64,
}

fn cpu_per(a: CpuSample, b: CpuSample, n: usize, pgbench: bool, tck: f64) -> CpuPer {
    let per = |ticks: u64| ticks as f64 / tck * 1e6 / n.max(1) as f64;
    CpuPer {
        server_us: per(b.server.saturating_sub(a.server)),
        client_us: if pgbench {
            per(b.children.saturating_sub(a.children))
        } else {
            per(b.client.saturating_sub(a.client))
        },
        postgres_us: per(b.postgres.saturating_sub(a.postgres)),
    }
}

// ---------------------------------------------------------------- pgbench

/// One pgbench run: the database's own rate on this machine, just then.
#[derive(Clone, Copy, Default)]
struct Rate {
    tps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu: CpuPer,
}

/// The baseline a path is compared with: pgbench in its mode, run right
/// before and right after the path, so both see the same machine.
#[derive(Clone, Copy)]
struct Baseline {
    mode: &'static str,
    before: Rate,
    after: Rate,
}

impl Baseline {
    fn tps(&self) -> f64 {
        (self.before.tps + self.after.tps) / 2.0
    }
    fn mean(&self, f: impl Fn(&Rate) -> f64) -> f64 {
        (f(&self.before) + f(&self.after)) / 2.0
    }
}

/// p50 and p99 of pgbench's per-transaction log files (`-l`): the third
/// column is the transaction's latency in microseconds.
fn pgbench_log_percentiles(dir: &std::path::Path, prefix: &str) -> (f64, f64) {
    let mut all: Vec<u32> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with(prefix) {
                continue;
            }
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            all.extend(
                text.lines()
                    .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u32>().ok()),
            );
            let _ = std::fs::remove_file(e.path());
        }
    }
    all.sort_unstable();
    (percentile(&all, 50.0), percentile(&all, 99.0))
}

fn pgbench_bin() -> String {
    std::env::var("PGBENCH").unwrap_or_else(|_| "pgbench".into())
}

fn pgbench_conn_args() -> Vec<String> {
    let u = url::Url::parse(&server_url()).expect("database URL");
    let mut args = vec![
        "-h".to_string(),
        u.host_str().unwrap_or("127.0.0.1").to_string(),
        "-p".to_string(),
        u.port().unwrap_or(5432).to_string(),
    ];
    if !u.username().is_empty() {
        args.push("-U".into());
        args.push(u.username().to_string());
    }
    args
}

fn run_pgbench(args: &[String]) -> Result<String, String> {
    let mut cmd = Command::new(pgbench_bin());
    cmd.args(pgbench_conn_args())
        .args(args)
        .env("PGPASSWORD", url_password());
    // The baseline connects as the server does: same TLS choice (libpq's
    // default, `prefer`, unless the URL sets sslmode).
    if let Some(mode) = url::Url::parse(&server_url()).ok().and_then(|u| {
        u.query_pairs()
            .find(|(k, _)| k == "sslmode")
            .map(|(_, v)| v.into_owned())
    }) {
        cmd.env("PGSSLMODE", mode);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run pgbench ({}): {e}", pgbench_bin()))?;
    if !out.status.success() {
        return Err(format!(
            "pgbench {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn url_password() -> String {
    url::Url::parse(&server_url())
        .ok()
        .and_then(|u| u.password().map(str::to_string))
        .unwrap_or_default()
}

fn parse_tps(out: &str) -> Result<f64, String> {
    out.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l["tps = ".len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no tps line in pgbench output:\n{out}"))
}

fn parse_transactions(out: &str) -> usize {
    out.lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or(0)
}

fn pgbench_init(db: &str) -> Result<(), String> {
    eprintln!("pgbench: initialising scale 10 in {db}");
    run_pgbench(&[
        "-i".into(),
        "-s".into(),
        "10".into(),
        "-q".into(),
        db.into(),
    ])
    .map(|_| ())
}

/// `pgbench <mode> -M prepared` at the run's concurrency and duration.
fn pgbench_rate(o: &Opts, db: &str, mode: &str, tck: f64) -> Result<Rate, String> {
    let secs = o.duration.as_secs_f64().ceil().max(1.0) as u64;
    let threads = o.concurrency.min(machine().nproc).max(1);
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    eprintln!(
        "pgbench {mode} -M prepared -c {} -j {threads} -T {secs}",
        o.concurrency
    );
    let prefix = format!("pgbench_log{}", mode.trim_start_matches('-'));
    let before = cpu_sample(0);
    let out = run_pgbench(&[
        "-l".into(),
        format!("--log-prefix={}", logs.join(&prefix).display()),
        mode.into(),
        "-M".into(),
        "prepared".into(),
        "-c".into(),
        o.concurrency.to_string(),
        "-j".into(),
        threads.to_string(),
        "-T".into(),
        secs.to_string(),
        db.into(),
    ])?;
    let after = cpu_sample(0);
    let (p50_ms, p99_ms) = pgbench_log_percentiles(&logs, &prefix);
    Ok(Rate {
        tps: parse_tps(&out)?,
        p50_ms,
        p99_ms,
        cpu: cpu_per(before, after, parse_transactions(&out), true, tck),
    })
}

// ---------------------------------------------------------------- seeding

struct Install {
    access: String,
    refresh: String,
}

struct Seeded {
    client_id: String,
    client_secret: String,
    app_id: i64,
    tenant_id: i64,
    user_ids: Vec<i64>,
    installs: Vec<Install>,
    /// `kak_` keys of scope read and of scope write.
    read_key: String,
    write_key: String,
    /// The apps api-rotate rotates the secrets of.
    rotate_app_ids: Vec<i64>,
}

const CHUNK: usize = 1000;

/// Seeds straight through the models and bulk inserts: real rows whose
/// tokens work, without bcrypt or the browser pages; `rotate_apps` more
/// apps for api-rotate.
fn seed(url: &str, installs: usize, rotate_apps: usize) -> Result<Seeded, String> {
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
    // Creators never sign in during the run; their hash is not a password.
    let hash = "$2b$04$benchmarkcreatorsnevermakeamatchwithanypasswordxxxxxxx";
    let now = Utc::now();
    let mut user_ids = Vec::with_capacity(installs);
    let mut out = Vec::with_capacity(installs);
    let indices: Vec<usize> = (0..installs).collect();
    for chunk in indices.chunks(CHUNK) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|i| {
                (
                    end_users::tenant_id.eq(tenant.id),
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
                    grants::tenant_id.eq(tenant.id),
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
        let pairs: Vec<(i64, crypto::NewSecret, crypto::NewSecret)> = ids
            .iter()
            .map(|uid| {
                (
                    by_user[uid],
                    crypto::generate(TokenKind::AccessToken),
                    crypto::generate(TokenKind::RefreshToken),
                )
            })
            .collect();
        let access_rows: Vec<_> = pairs
            .iter()
            .map(|(g, a, _)| {
                (
                    access_tokens::tenant_id.eq(tenant.id),
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
                    refresh_tokens::tenant_id.eq(tenant.id),
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
        user_ids.extend_from_slice(&ids);
        out.extend(pairs.into_iter().map(|(_, a, r)| Install {
            access: a.value,
            refresh: r.value,
        }));
    }
    // The tenant API's keys, through the model function `kitauth api-key
    // create` uses.
    let mut api_key = |name: &str, scope: ApiScope| {
        let new = NewApiKey {
            name: name.into(),
            scopes: vec![scope],
            expires_in_days: None,
            created_by: "cli".into(),
        };
        new.validate()?;
        ApiKey::create(c, tenant.id, &new)
            .map(|(_, value)| value)
            .map_err(|e| e.to_string())
    };
    let read_key = api_key("bench read", ApiScope::Read)?;
    let write_key = api_key("bench write", ApiScope::Write)?;
    let mut rotate_app_ids = Vec::with_capacity(rotate_apps);
    for i in 0..rotate_apps {
        let (a, _) = kitauth::cli::create_app(
            c,
            tenant.id,
            &format!("Rotated app {i}"),
            vec![],
            vec!["public".into()],
        )
        .map_err(|e| e.to_string())?;
        rotate_app_ids.push(a.id);
    }
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

/// Mints `n` authorization codes, as the consent step would; returns their values.
fn mint_codes(url: &str, s: &Seeded, n: usize) -> Result<Vec<String>, String> {
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
fn secrets_per_app(url: &str, app_ids: &[i64]) -> Result<(i64, i64), String> {
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

// ---------------------------------------------------------------- server

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn spawn_server(bin: &Path, db: &str, port: u16, log: &PathBuf) -> Result<Child, String> {
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    Command::new(bin)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ROCKET_PROFILE", "release")
        .env("DATABASE_URL", db_url(db))
        .env("ROCKET_ADDRESS", "127.0.0.1")
        .env("ROCKET_PORT", port.to_string())
        .env("ROCKET_SECRET_KEY", key)
        // The release profile refuses to start without a metrics token.
        .env("ROCKET_METRICS_TOKEN", crypto::random_b64(32))
        .env("ROCKET_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        // The tenant API paths must not meet the per-key budget (see the top).
        .env("ROCKET_API_REQUESTS_PER_MINUTE", API_REQUESTS_PER_MINUTE)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))
}

fn peak_rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

// ---------------------------------------------------------------- HTTP client

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One prepared request: everything but the connection.
#[derive(Clone)]
struct Req {
    method: Method,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

async fn send(sender: &mut Sender, host: &str, r: &Req) -> Result<(u16, Bytes), String> {
    let mut b = Request::builder()
        .method(r.method.clone())
        .uri(r.path)
        .header("host", host);
    for (k, v) in &r.headers {
        b = b.header(*k, v.as_str());
    }
    let req = b
        .body(Full::new(r.body.clone()))
        .map_err(|e| e.to_string())?;
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

// ---------------------------------------------------------------- workloads

/// What one connection sends during a path.
enum Work {
    /// Cycles through its requests until the time is up (read paths).
    Cycle(Vec<Req>),
    /// Sends each request once (codes, revocations); stops when exhausted.
    Once(Vec<Req>),
    /// A refresh rotation chain: each answer's refresh token is the next request's.
    Chain { refresh_token: String },
    /// `invalid_client` introspections, each with a fresh random client_id
    /// and secret, until the time is up; expected to answer 401 or 429.
    Flood,
}

#[derive(Default)]
struct TaskResult {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    exhausted: bool,
    issued_access: Vec<String>,
    flood: FloodCounts,
}

/// What the flood connections of a path sent and got.
#[derive(Clone, Default)]
struct FloodCounts {
    latencies_us: Vec<u32>,
    status_401: u64,
    status_429: u64,
}

struct Ctx {
    addr: SocketAddr,
    host: String,
    client_id: String,
    client_secret: String,
}

fn json_req(path: &'static str, body: serde_json::Value) -> Req {
    Req {
        method: Method::POST,
        path,
        // Kit's quirk: a JSON body under a form content type.
        headers: vec![(
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        )],
        body: Bytes::from(body.to_string()),
    }
}

fn refresh_req(ctx: &Ctx, token: &str) -> Req {
    json_req(
        "/t/bench/oauth/refresh",
        json!({"client_id": ctx.client_id, "grant_type": "refresh_token", "refresh_token": token}),
    )
}

fn body_field(body: &[u8], field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get(field)?.as_str().map(str::to_string)
}

async fn run_task(
    ctx: &Ctx,
    path: &str,
    mut sender: Sender,
    work: Work,
    start: Instant,
    deadline: Instant,
    collect_access: bool,
) -> TaskResult {
    let mut res = TaskResult {
        latencies_us: Vec::with_capacity(1 << 14),
        ..Default::default()
    };
    while Instant::now() < start {
        tokio::time::sleep(start - Instant::now()).await;
    }
    let fail = |res: &mut TaskResult, why: String| {
        res.errors += 1;
        if res.first_error.is_none() {
            res.first_error = Some(why);
        }
    };
    let mut i = 0usize;
    let mut chain = match &work {
        Work::Chain { refresh_token } => Some(refresh_token.clone()),
        _ => None,
    };
    while Instant::now() < deadline {
        let req = match &work {
            Work::Cycle(reqs) => reqs[i % reqs.len()].clone(),
            Work::Once(reqs) => match reqs.get(i) {
                Some(r) => r.clone(),
                None => {
                    res.exhausted = true;
                    break;
                }
            },
            Work::Chain { .. } => match &chain {
                Some(t) => refresh_req(ctx, t),
                None => break,
            },
            Work::Flood => flood_req(),
        };
        i += 1;
        let t0 = Instant::now();
        let answer = send(&mut sender, &ctx.host, &req).await;
        let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
        match answer {
            Err(e) => {
                fail(&mut res, e);
                // The connection is unusable; reconnect and go on.
                match connect(ctx.addr).await {
                    Ok(s) => sender = s,
                    Err(e) => {
                        fail(&mut res, e);
                        break;
                    }
                }
            }
            Ok((status, body)) if matches!(work, Work::Flood) => {
                res.flood.latencies_us.push(us);
                match status {
                    401 => res.flood.status_401 += 1,
                    429 => res.flood.status_429 += 1,
                    _ => fail(
                        &mut res,
                        format!(
                            "flood: {status} (expected 401 or 429) {}",
                            String::from_utf8_lossy(&body)
                        ),
                    ),
                }
            }
            Ok((status, body)) => {
                res.latencies_us.push(us);
                if !(200..300).contains(&status) {
                    fail(
                        &mut res,
                        format!("{path}: {status} {}", String::from_utf8_lossy(&body)),
                    );
                    if chain.is_some() {
                        break; // the chain is broken
                    }
                    continue;
                }
                match path {
                    "introspect" | "introspect-flood"
                        if !body.windows(13).any(|w| w == b"\"active\":true") =>
                    {
                        fail(&mut res, format!("introspect: inactive token: {body:?}"));
                    }
                    "refresh" => match body_field(&body, "refresh_token") {
                        Some(t) => chain = Some(t),
                        None => {
                            fail(&mut res, "refresh: no refresh_token in the answer".into());
                            break;
                        }
                    },
                    "api-installs" if status != 200 || !installs_page_ok(&body) => {
                        fail(
                            &mut res,
                            format!(
                                "api-installs: {status}, not a page of installs: {}",
                                String::from_utf8_lossy(&body)
                            ),
                        );
                    }
                    "api-rotate"
                        if status != 201
                            || !body_field(&body, "client_secret")
                                .is_some_and(|s| s.starts_with("kcs_")) =>
                    {
                        fail(
                            &mut res,
                            format!(
                                "api-rotate: {status}, no new secret: {}",
                                String::from_utf8_lossy(&body)
                            ),
                        );
                    }
                    "exchange" if collect_access => {
                        if let Some(t) = body_field(&body, "access_token") {
                            res.issued_access.push(t);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    res
}

struct PathResult {
    name: String,
    requests: usize,
    seconds: f64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    first_error: Option<String>,
    note: Option<String>,
    /// CPU per request of the server, the load generator and PostgreSQL.
    cpu: CpuPer,
    baseline: Option<Baseline>,
    /// introspect-flood: (flood connections, what they sent and got).
    flood: Option<(usize, FloodCounts)>,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

async fn run_path(
    ctx: &Ctx,
    name: &str,
    works: Vec<Work>,
    duration: Duration,
    collect_access: bool,
) -> Result<(PathResult, Vec<String>), String> {
    let mut senders = Vec::with_capacity(works.len());
    for _ in 0..works.len() {
        senders.push(connect(ctx.addr).await?);
    }
    // Every connection is open before the clock starts.
    let start = Instant::now() + Duration::from_millis(20);
    let deadline = start + duration;
    let is_flood: Vec<bool> = works.iter().map(|w| matches!(w, Work::Flood)).collect();
    let tasks = works
        .into_iter()
        .zip(senders)
        .map(|(w, s)| run_task(ctx, name, s, w, start, deadline, collect_access));
    let results = futures::future::join_all(tasks).await;
    // Until the last connection finished: past the deadline by the last
    // request in flight, or before it when every connection ran out of work
    // (codes, revocations); the rate is then that of the work there was.
    let seconds = start.elapsed().as_secs_f64();
    let mut all: Vec<u32> = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    let mut exhausted = 0;
    let mut issued = Vec::new();
    let mut flood = FloodCounts::default();
    let mut flooders = 0;
    for (r, is_flood) in results.into_iter().zip(is_flood) {
        if is_flood {
            flooders += 1;
            flood.latencies_us.extend_from_slice(&r.flood.latencies_us);
            flood.status_401 += r.flood.status_401;
            flood.status_429 += r.flood.status_429;
        }
        all.extend_from_slice(&r.latencies_us);
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
        exhausted += usize::from(r.exhausted);
        issued.extend(r.issued_access);
    }
    all.sort_unstable();
    flood.latencies_us.sort_unstable();
    let requests = all.len();
    let note = (exhausted > 0).then(|| format!("{exhausted} connections ran out of work early"));
    Ok((
        PathResult {
            name: name.to_string(),
            requests,
            seconds,
            rps: requests as f64 / seconds,
            p50_ms: percentile(&all, 50.0),
            p99_ms: percentile(&all, 99.0),
            max_ms: all.last().copied().unwrap_or(0) as f64 / 1000.0,
            errors,
            first_error,
            note,
            cpu: CpuPer::default(),
            baseline: None,
            flood: (flooders > 0).then_some((flooders, flood)),
        },
        issued,
    ))
}

fn introspect_req(ctx: &Ctx, token: &str) -> Req {
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", ctx.client_id, ctx.client_secret));
    Req {
        method: Method::POST,
        path: "/t/bench/oauth/introspect",
        headers: vec![
            ("authorization", format!("Basic {basic}")),
            (
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            ),
        ],
        body: Bytes::from(format!("token={token}")),
    }
}

/// An `invalid_client` introspection: a fresh random client_id of the
/// right shape (`kit_` + 24 base64url characters, as
/// `looks_like_client_id` wants, so it reaches the lookup and the limiter)
/// and a random secret and token of the right shape.
fn flood_req() -> Req {
    let client_id = format!("kit_{}", crypto::random_b64(18));
    let secret = crypto::generate(TokenKind::ClientSecret).value;
    let token = crypto::generate(TokenKind::AccessToken).value;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
    Req {
        method: Method::POST,
        path: "/t/bench/oauth/introspect",
        headers: vec![
            ("authorization", format!("Basic {basic}")),
            (
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            ),
        ],
        body: Bytes::from(format!("token={token}")),
    }
}

fn userinfo_req(token: &str) -> Req {
    Req {
        method: Method::GET,
        path: "/t/bench/oauth/userinfo",
        headers: vec![("authorization", format!("Bearer {token}"))],
        body: Bytes::new(),
    }
}

/// A tenant API GET with a `kak_` key.
fn api_get(path: &'static str, key: &str) -> Req {
    Req {
        method: Method::GET,
        path,
        headers: vec![("authorization", format!("Bearer {key}"))],
        body: Bytes::new(),
    }
}

/// A secret rotation of one app, with the grace the dashboard offers by default.
fn rotate_req(app_id: i64, key: &str) -> Req {
    Req {
        method: Method::POST,
        path: leak(format!("/t/bench/api/v1/apps/{app_id}/secrets/rotate")),
        headers: vec![
            ("authorization", format!("Bearer {key}")),
            ("content-type", "application/json".to_string()),
        ],
        body: Bytes::from(json!({"grace_secs": 86400}).to_string()),
    }
}

/// A path made at run time for `Req`: a few per run (the second page, one
/// per rotated app), made before the clock starts and kept to the end.
fn leak(path: String) -> &'static str {
    Box::leak(path.into_boxed_str())
}

/// What api-installs checks of a page: JSON with a non-empty `items` list.
#[derive(serde::Deserialize)]
struct InstallPage {
    items: Vec<serde::de::IgnoredAny>,
}

fn installs_page_ok(body: &[u8]) -> bool {
    serde_json::from_slice::<InstallPage>(body).is_ok_and(|p| !p.items.is_empty())
}

/// The first page's `next_cursor`, from one untimed call (None: one page).
async fn next_cursor(ctx: &Ctx, first: &Req) -> Result<Option<String>, String> {
    let mut s = connect(ctx.addr).await?;
    match send(&mut s, &ctx.host, first).await? {
        (200, body) if installs_page_ok(&body) => Ok(body_field(&body, "next_cursor")),
        (status, body) => Err(format!(
            "api-installs: the first page answered {status} {}",
            String::from_utf8_lossy(&body)
        )),
    }
}

/// Deals `items` round-robin to `c` connections.
fn deal<T: Clone>(items: &[T], c: usize) -> Vec<Vec<T>> {
    let mut out = vec![Vec::new(); c];
    for (i, x) in items.iter().enumerate() {
        out[i % c].push(x.clone());
    }
    out
}

async fn wait_ready(addr: SocketAddr, host: &str, child: &mut Child) -> Result<Duration, String> {
    let t0 = Instant::now();
    let ready = Req {
        method: Method::GET,
        path: "/readyz",
        headers: vec![],
        body: Bytes::new(),
    };
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited during start-up ({status})"));
        }
        if let Ok(mut s) = connect(addr).await {
            if let Ok((200, _)) = send(&mut s, host, &ready).await {
                return Ok(t0.elapsed());
            }
        }
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("the server did not become ready within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------- report

struct Target {
    ratio: f64,
    p99_ms: f64,
}

fn target_of(path: &str) -> Option<Target> {
    match path {
        "introspect" | "userinfo" => Some(Target {
            ratio: 0.30,
            p99_ms: 5.0,
        }),
        "exchange" | "refresh" => Some(Target {
            ratio: 0.50,
            p99_ms: 25.0,
        }),
        _ => None,
    }
}

/// The pgbench mode a path is compared with: reads with `-S`, writes with `-N`.
fn mode_of(path: &str) -> &'static str {
    match path {
        "introspect" | "introspect-flood" | "userinfo" | "api-installs" => "-S",
        _ => "-N",
    }
}

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

/// The 1-minute load average: how busy the shared machine was.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn run(o: &Opts) -> Result<bool, String> {
    let m = machine();
    let tck = clock_ticks();
    let load_start = load_average();
    let suffix = &crypto::random_b64(6)
        .to_lowercase()
        .replace(['-', '_'], "x");
    let mut cleanup = Cleanup::default();

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
    let t = Instant::now();
    let rotate_apps = if o.paths.iter().any(|p| p == "api-rotate") {
        ROTATE_APPS.max(o.concurrency)
    } else {
        0
    };
    let seeded = seed(&db_url(&db), o.installs, rotate_apps)?;
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

    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let host = format!("127.0.0.1:{port}");
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("load-server.log");
    cleanup.server = Some(spawn_server(&o.server, &db, port, &log)?);
    let pid = cleanup.server.as_ref().map(|c| c.id()).unwrap_or(0);

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

    let c = o.concurrency;
    let wants = |p: &str| o.paths.iter().any(|x| x == p);
    let mut results: Vec<PathResult> = Vec::new();
    let mut issued_access: Vec<String> = Vec::new();
    let access: Vec<String> = seeded.installs.iter().map(|i| i.access.clone()).collect();

    if !o.warmup.is_zero() {
        let works = deal(&access, c)
            .into_iter()
            .map(|ts| Work::Cycle(ts.iter().map(|t| introspect_req(&ctx, t)).collect()))
            .collect();
        rt.block_on(run_path(&ctx, "introspect", works, o.warmup, false))?;
    }
    // The machine is shared and its speed drifts, so every path is
    // bracketed by its own baseline: pgbench in the path's mode right
    // before and right after it (an "after" run doubles as the next path's
    // "before" when the mode is the same).
    let mut last_baseline: Option<(&'static str, Rate)> = None;
    let mut baselines_run: Vec<(&'static str, Rate)> = Vec::new();
    for path in PATHS {
        if !wants(path) {
            continue;
        }
        let mode = mode_of(path);
        let reuse = last_baseline.filter(|(m, _)| *m == mode).map(|(_, r)| r);
        let before = match (&pgdb, reuse) {
            (None, _) => None,
            (Some(_), Some(r)) => Some(r),
            (Some(pgdb), None) => {
                let r = pgbench_rate(o, pgdb, mode, tck)?;
                baselines_run.push((mode, r));
                Some(r)
            }
        };
        let works: Vec<Work> = match path {
            "introspect" => deal(&access, c)
                .into_iter()
                .map(|ts| Work::Cycle(ts.iter().map(|t| introspect_req(&ctx, t)).collect()))
                .collect(),
            "introspect-flood" => {
                // The valid connections get the same tokens as introspect's.
                let k = o.flood_connections();
                let mut w: Vec<Work> = deal(&access, c - k)
                    .into_iter()
                    .map(|ts| Work::Cycle(ts.iter().map(|t| introspect_req(&ctx, t)).collect()))
                    .collect();
                w.extend((0..k).map(|_| Work::Flood));
                w
            }
            "userinfo" => deal(&access, c)
                .into_iter()
                .map(|ts| Work::Cycle(ts.iter().map(|t| userinfo_req(t)).collect()))
                .collect(),
            "api-installs" => {
                // The first and the second page, alternating, each
                // connection starting on the other page than the last.
                let first = api_get("/t/bench/api/v1/installs?limit=50", &seeded.read_key);
                let pages = match rt.block_on(next_cursor(&ctx, &first))? {
                    Some(cursor) => {
                        let second =
                            leak(format!("/t/bench/api/v1/installs?limit=50&cursor={cursor}"));
                        vec![first, api_get(second, &seeded.read_key)]
                    }
                    None => vec![first],
                };
                (0..c)
                    .map(|i| {
                        let mut p = pages.clone();
                        p.rotate_left(i % pages.len());
                        Work::Cycle(p)
                    })
                    .collect()
            }
            "exchange" => {
                // Enough codes for twice the write baseline, minted just before.
                let guess = before.map(|r| r.tps).unwrap_or(5000.0);
                let n = ((guess * 2.0 * o.duration.as_secs_f64()) as usize).max(4000);
                if o.duration > Duration::from_secs(100) {
                    eprintln!(
                        "warning: codes live {CODE_TTL_SECS} s; a long exchange run outlives them"
                    );
                }
                let codes = mint_codes(&db_url(&db), &seeded, n)?;
                let reqs: Vec<Req> = codes
                    .iter()
                    .map(|code| {
                        json_req(
                            "/t/bench/oauth/token",
                            json!({
                                "client_id": ctx.client_id,
                                "client_secret": ctx.client_secret,
                                "grant_type": "authorization_code",
                                "code": code,
                                "redirect_uri": "https://app.kit.com/apps",
                            }),
                        )
                    })
                    .collect();
                deal(&reqs, c).into_iter().map(Work::Once).collect()
            }
            "refresh" => seeded
                .installs
                .iter()
                .rev()
                .take(c)
                .map(|i| Work::Chain {
                    refresh_token: i.refresh.clone(),
                })
                .collect(),
            "revoke" => {
                // Installs made by the exchange path first, then the seeded ones.
                let mut pool = std::mem::take(&mut issued_access);
                pool.extend(access.iter().cloned());
                let reqs: Vec<Req> = pool
                    .iter()
                    .map(|t| {
                        json_req(
                            "/t/bench/oauth/revoke",
                            json!({"client_id": ctx.client_id, "client_secret": ctx.client_secret, "token": t}),
                        )
                    })
                    .collect();
                deal(&reqs, c).into_iter().map(Work::Once).collect()
            }
            "api-rotate" => {
                // Each app on one connection only: no rotation waits on
                // another's lock of its app.
                let reqs: Vec<Req> = seeded
                    .rotate_app_ids
                    .iter()
                    .map(|id| rotate_req(*id, &seeded.write_key))
                    .collect();
                deal(&reqs, c).into_iter().map(Work::Cycle).collect()
            }
            _ => unreachable!(),
        };
        if path == "introspect-flood" {
            let k = o.flood_connections();
            eprintln!(
                "{path}: {} valid connections and {k} flooding for {:.1} s",
                c - k,
                o.duration.as_secs_f64()
            );
        } else {
            eprintln!(
                "{path}: {c} connections for {:.1} s",
                o.duration.as_secs_f64()
            );
        }
        let cpu_before = cpu_sample(pid);
        let (mut r, issued) =
            rt.block_on(run_path(&ctx, path, works, o.duration, path == "exchange"))?;
        // introspect-flood: per request sent, valid and flood alike.
        let sent = r.requests + r.flood.as_ref().map_or(0, |(_, f)| f.latencies_us.len());
        r.cpu = cpu_per(cpu_before, cpu_sample(pid), sent, false, tck);
        if path == "exchange" {
            issued_access = issued;
        }
        if path == "api-rotate" {
            let apps = &seeded.rotate_app_ids;
            let (min, max) = secrets_per_app(&db_url(&db), apps)?;
            let note = format!(
                "{} apps, rotated {} times: {min} to {max} secrets per app at the end (a rotation adds one and prunes none)",
                apps.len(),
                r.requests
            );
            r.note = Some(match r.note.take() {
                Some(n) => format!("{n}; {note}"),
                None => note,
            });
        }
        if let Some(e) = &r.first_error {
            eprintln!("  first error: {e}");
        }
        if let (Some(before), Some(pgdb)) = (before, &pgdb) {
            let after = pgbench_rate(o, pgdb, mode, tck)?;
            baselines_run.push((mode, after));
            last_baseline = Some((mode, after));
            r.baseline = Some(Baseline {
                mode,
                before,
                after,
            });
        }
        results.push(r);
    }

    let rss_kb = peak_rss_kb(pid);
    let load_end = load_average();
    let exited = cleanup
        .server
        .as_mut()
        .and_then(|c| c.try_wait().ok().flatten());
    drop(cleanup);

    // ---- report
    let mut failed = exited.is_some();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\nkitauth load benchmark: {} installs, {} connections, {:.0} s per path",
        o.installs,
        c,
        o.duration.as_secs_f64()
    );
    let _ = writeln!(
        table,
        "machine: {} cores, {} MB, {}; 1-min load average {load_start:.1} at the start, {load_end:.1} at the end",
        m.nproc, m.mem_total_mb, m.cpu_model
    );
    if !baselines_run.is_empty() {
        let runs: Vec<String> = baselines_run
            .iter()
            .map(|(mode, r)| format!("{mode} {:.0}", r.tps))
            .collect();
        let _ = writeln!(
            table,
            "pgbench (scale 10, -M prepared, -c {c}), run before and after each path, in order, tps: {}",
            runs.join(", ")
        );
    }
    let _ = writeln!(
        table,
        "\n| path             |  req/s |  p50 ms |  p99 ms |  max ms | errors | baseline tps | ratio        | target             |"
    );
    let _ = writeln!(
        table,
        "|------------------|-------:|--------:|--------:|--------:|-------:|-------------:|--------------|--------------------|"
    );
    let mut json_paths = Vec::new();
    for r in &results {
        failed |= r.errors > 0;
        let ratio = r.baseline.map(|b| r.rps / b.tps());
        let target = target_of(&r.name);
        let met = match (&target, ratio) {
            (Some(t), Some(ratio)) => Some(ratio >= t.ratio && r.p99_ms <= t.p99_ms),
            (Some(t), None) => Some(r.p99_ms <= t.p99_ms),
            _ => None,
        };
        let ratio_s = match (ratio, r.baseline) {
            (Some(x), Some(b)) => format!("{:.0} % of {}", x * 100.0, b.mode),
            _ => "-".into(),
        };
        let base_s = r
            .baseline
            .map_or("-".into(), |b| format!("{} {:.0}", b.mode, b.tps()));
        let target_s = match (&target, met) {
            // --no-pgbench: only the latency half can be judged.
            (Some(t), Some(m)) if ratio.is_none() => format!(
                "{} <={:.0} ms only",
                if m { "met " } else { "MISS" },
                t.p99_ms
            ),
            (Some(t), Some(m)) => format!(
                "{} >={:.0} %, <={:.0} ms",
                if m { "met " } else { "MISS" },
                t.ratio * 100.0,
                t.p99_ms
            ),
            _ => "-".into(),
        };
        let _ = writeln!(
            table,
            "| {:<16} | {:>6.0} | {:>7.2} | {:>7.2} | {:>7.1} | {:>6} | {:>12} | {:<12} | {:<18} |",
            r.name, r.rps, r.p50_ms, r.p99_ms, r.max_ms, r.errors, base_s, ratio_s, target_s
        );
        json_paths.push(json!({
            "path": r.name,
            "requests": r.requests,
            "seconds": r.seconds,
            "rps": r.rps,
            "p50_ms": r.p50_ms,
            "p99_ms": r.p99_ms,
            "max_ms": r.max_ms,
            "errors": r.errors,
            "first_error": r.first_error,
            "cpu_us_per_request": {
                "server": r.cpu.server_us,
                "load_generator": r.cpu.client_us,
                "postgres": r.cpu.postgres_us,
            },
            "baseline": r.baseline.map(|b| json!({
                "mode": b.mode,
                "tps": b.tps(),
                "before_tps": b.before.tps,
                "after_tps": b.after.tps,
                "p50_ms": b.mean(|r| r.p50_ms),
                "p99_ms": b.mean(|r| r.p99_ms),
                "cpu_us_per_transaction": {
                    "pgbench": b.mean(|r| r.cpu.client_us),
                    "postgres": b.mean(|r| r.cpu.postgres_us),
                },
            })),
            "ratio": ratio,
            "target_ratio": target.as_ref().map(|t| t.ratio),
            "target_p99_ms": target.as_ref().map(|t| t.p99_ms),
            "target_met": met,
            "note": r.note,
            "flood": r.flood.as_ref().map(|(k, f)| json!({
                "connections": k,
                "valid_connections": c - k,
                "requests": f.latencies_us.len(),
                "rps": f.latencies_us.len() as f64 / r.seconds,
                "status_401": f.status_401,
                "status_429": f.status_429,
                "p50_ms": percentile(&f.latencies_us, 50.0),
                "p99_ms": percentile(&f.latencies_us, 99.0),
            })),
        }));
    }
    // Where the CPU goes: the machine's 2 cores are shared by the server,
    // PostgreSQL and the load generator, as they are by PostgreSQL and
    // pgbench in the baseline.
    let _ = writeln!(
        table,
        "\nCPU per request, µs (per transaction for the baseline; introspect-flood: per request sent, flood included):\n\n| path             | server | load gen | postgres | baseline: postgres | pgbench |\n|------------------|-------:|---------:|---------:|-------------------:|--------:|"
    );
    for r in &results {
        let (bp, bc) = r.baseline.map_or(("-".into(), "-".into()), |b| {
            (
                format!("{} {:.0}", b.mode, b.mean(|r| r.cpu.postgres_us)),
                format!("{:.0}", b.mean(|r| r.cpu.client_us)),
            )
        });
        let _ = writeln!(
            table,
            "| {:<16} | {:>6.0} | {:>8.0} | {:>8.0} | {:>18} | {:>7} |",
            r.name, r.cpu.server_us, r.cpu.client_us, r.cpu.postgres_us, bp, bc
        );
    }
    let rss_mb = rss_kb.map(|k| k as f64 / 1024.0);
    let startup_ms = startup.as_secs_f64() * 1000.0;
    let _ = writeln!(
        table,
        "\nserver peak RSS (VmHWM): {} (target <= 64 MB: {})",
        rss_mb.map_or("unknown".into(), |m| format!("{m:.1} MB")),
        if rss_mb.is_some_and(|m| m <= 64.0) {
            "met"
        } else {
            "MISS"
        }
    );
    let _ = writeln!(
        table,
        "start-up until /readyz answers 200 (migrations applied): {startup_ms:.0} ms (target <= 1000 ms: {})",
        if startup_ms <= 1000.0 { "met" } else { "MISS" }
    );
    // The flood row next to the plain one of the same run.
    let plain = results.iter().find(|r| r.name == "introspect");
    for r in &results {
        let Some((k, f)) = &r.flood else { continue };
        let _ = writeln!(
            table,
            "\n{}: valid introspection on {} connections while {k} connections sent {} invalid_client requests with fresh random client_ids ({:.0} req/s; {} answered 401, {} answered 429; p50 {:.2} ms, p99 {:.2} ms)",
            r.name,
            c - k,
            f.latencies_us.len(),
            f.latencies_us.len() as f64 / r.seconds,
            f.status_401,
            f.status_429,
            percentile(&f.latencies_us, 50.0),
            percentile(&f.latencies_us, 99.0),
        );
        if let Some(p) = plain {
            let _ = writeln!(
                table,
                "valid requests under the flood: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; without it (introspect, {c} connections, this run): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
                r.rps, r.p50_ms, r.p99_ms, p.rps, p.p50_ms, p.p99_ms
            );
        }
    }
    for r in &results {
        if let Some(n) = &r.note {
            let _ = writeln!(table, "note: {}: {n}", r.name);
        }
    }
    if exited.is_some() {
        let _ = writeln!(
            table,
            "the server exited during the run: see {}",
            log.display()
        );
    }
    let _ = writeln!(
        table,
        "result: {}",
        if failed {
            "FAILED (non-2xx answers or transport errors)"
        } else {
            "ok (every answer 2xx)"
        }
    );
    print!("{table}");

    if let Some(dest) = &o.json {
        let doc = json!({
            "machine": {"nproc": m.nproc, "mem_total_mb": m.mem_total_mb, "cpu_model": m.cpu_model},
            "config": {"installs": o.installs, "concurrency": c, "duration_s": o.duration.as_secs_f64()},
            "pgbench_runs": baselines_run.iter().map(|(mode, r)| json!({
                "mode": mode, "tps": r.tps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
                "cpu_us_per_transaction": {"pgbench": r.cpu.client_us, "postgres": r.cpu.postgres_us},
            })).collect::<Vec<_>>(),
            "load_average": {"start": load_start, "end": load_end},
            "startup_ms": startup_ms,
            "peak_rss_mb": rss_mb,
            "paths": json_paths,
            "failed": failed,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        if dest == "-" {
            println!("{text}");
        } else {
            std::fs::write(dest, text + "\n").map_err(|e| format!("{dest}: {e}"))?;
        }
    }
    Ok(!failed)
}
