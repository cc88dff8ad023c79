//! The paths: their requests, their baselines' mode, and the run of each
//! in turn between its pgbench brackets.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hyper::Method;
use serde_json::json;

use kitauth::crypto::{self, TokenKind};
use kitauth::db::models::code::CODE_TTL_SECS;

use crate::client::{body_field, connect, run_path, send, Ctx, PathResult, Req, Work};
use crate::cpu::{cpu_per, cpu_sample};
use crate::pgbench::{pgbench_rate, Baseline, Rate, Runs};
use crate::seed::{mint_codes, secrets_per_app};
use crate::server::db_url;
use crate::{Bench, PATHS};

pub fn json_req(path: &'static str, body: serde_json::Value) -> Req {
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

pub fn refresh_req(ctx: &Ctx, token: &str) -> Req {
    json_req(
        "/t/bench/oauth/refresh",
        json!({"client_id": ctx.client_id, "grant_type": "refresh_token", "refresh_token": token}),
    )
}

pub fn introspect_req(ctx: &Ctx, token: &str) -> Req {
    introspection(&ctx.client_id, &ctx.client_secret, token)
}

/// An introspection of `token` with the client's credentials in Basic.
fn introspection(client_id: &str, secret: &str, token: &str) -> Req {
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

/// An `invalid_client` introspection: a fresh random client_id of the
/// right shape (`kit_` + 24 base64url characters, as
/// `looks_like_client_id` wants, so it reaches the lookup and the limiter)
/// and a random secret and token of the right shape.
pub fn flood_req() -> Req {
    let client_id = format!("kit_{}", crypto::random_b64(18));
    let secret = crypto::generate(TokenKind::ClientSecret).value;
    let token = crypto::generate(TokenKind::AccessToken).value;
    introspection(&client_id, &secret, &token)
}

pub fn userinfo_req(token: &str) -> Req {
    Req {
        method: Method::GET,
        path: "/t/bench/oauth/userinfo",
        headers: vec![("authorization", format!("Bearer {token}"))],
        body: Bytes::new(),
    }
}

/// A tenant API GET with a `kak_` key.
pub fn api_get(path: &'static str, key: &str) -> Req {
    Req {
        method: Method::GET,
        path,
        headers: vec![("authorization", format!("Bearer {key}"))],
        body: Bytes::new(),
    }
}

/// A secret rotation of one app, with the grace the dashboard offers by default.
pub fn rotate_req(app_id: i64, key: &str) -> Req {
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
pub fn leak(path: String) -> &'static str {
    Box::leak(path.into_boxed_str())
}

/// What api-installs checks of a page: JSON with a non-empty `items` list.
#[derive(serde::Deserialize)]
pub struct InstallPage {
    pub items: Vec<serde::de::IgnoredAny>,
}

pub fn installs_page_ok(body: &[u8]) -> bool {
    serde_json::from_slice::<InstallPage>(body).is_ok_and(|p| !p.items.is_empty())
}

/// The first page's `next_cursor`, from one untimed call (None: one page).
pub async fn next_cursor(ctx: &Ctx, first: &Req) -> Result<Option<String>, String> {
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
pub fn deal<T: Clone>(items: &[T], c: usize) -> Vec<Vec<T>> {
    let mut out = vec![Vec::new(); c];
    for (i, x) in items.iter().enumerate() {
        out[i % c].push(x.clone());
    }
    out
}

/// The pgbench mode a path is compared with: reads with `-S`, writes with `-N`.
pub fn mode_of(path: &str) -> &'static str {
    match path {
        "introspect" | "introspect-flood" | "userinfo" | "api-installs" => "-S",
        _ => "-N",
    }
}

/// Runs the warm-up, then every path asked for in `PATHS` order, each
/// bracketed by its baseline; returns the paths' results and every
/// pgbench run, in order.
pub fn run_paths(b: &Bench) -> Result<(Vec<PathResult>, Runs), String> {
    let (o, ctx, rt) = (b.o, &b.ctx, &b.rt);
    let c = o.concurrency;
    let wants = |p: &str| o.paths.iter().any(|x| x == p);
    let mut results: Vec<PathResult> = Vec::new();
    let mut issued_access: Vec<String> = Vec::new();
    let access: Vec<String> = b.seeded.installs.iter().map(|i| i.access.clone()).collect();

    if !o.warmup.is_zero() {
        let works = deal(&access, c)
            .into_iter()
            .map(|ts| Work::Cycle(ts.iter().map(|t| introspect_req(ctx, t)).collect()))
            .collect();
        rt.block_on(run_path(ctx, "introspect", works, o.warmup, false))?;
    }
    // The machine is shared and its speed drifts, so every path is
    // bracketed by its own baseline: pgbench in the path's mode right
    // before and right after it (an "after" run doubles as the next path's
    // "before" when the mode is the same).
    let mut last_baseline: Option<(&'static str, Rate)> = None;
    let mut baselines_run: Runs = Vec::new();
    for path in PATHS {
        if !wants(path) {
            continue;
        }
        let mode = mode_of(path);
        let reuse = last_baseline.filter(|(m, _)| *m == mode).map(|(_, r)| r);
        let before = match (&b.pgdb, reuse) {
            (None, _) => None,
            (Some(_), Some(r)) => Some(r),
            (Some(pgdb), None) => {
                let r = pgbench_rate(o, pgdb, mode, b.tck)?;
                baselines_run.push((mode, r));
                Some(r)
            }
        };
        let works = works_for(b, path, before, &mut issued_access, &access)?;
        let (mut r, issued) = run_one(b, path, works)?;
        if path == "exchange" {
            issued_access = issued;
        }
        if path == "api-rotate" {
            note_secrets(b, &mut r)?;
        }
        if let Some(e) = &r.first_error {
            eprintln!("  first error: {e}");
        }
        if let (Some(before), Some(pgdb)) = (before, &b.pgdb) {
            let after = pgbench_rate(o, pgdb, mode, b.tck)?;
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
    Ok((results, baselines_run))
}

/// What each connection of `path` sends; `before` is the path's "before"
/// baseline, `issued_access` what exchange issued (revoke takes them).
fn works_for(
    b: &Bench,
    path: &str,
    before: Option<Rate>,
    issued_access: &mut Vec<String>,
    access: &[String],
) -> Result<Vec<Work>, String> {
    let (o, ctx, seeded) = (b.o, &b.ctx, &b.seeded);
    let c = o.concurrency;
    let works: Vec<Work> = match path {
        "introspect" => deal(access, c)
            .into_iter()
            .map(|ts| Work::Cycle(ts.iter().map(|t| introspect_req(ctx, t)).collect()))
            .collect(),
        "introspect-flood" => {
            // The valid connections get the same tokens as introspect's.
            let k = o.flood_connections();
            let mut w: Vec<Work> = deal(access, c - k)
                .into_iter()
                .map(|ts| Work::Cycle(ts.iter().map(|t| introspect_req(ctx, t)).collect()))
                .collect();
            w.extend((0..k).map(|_| Work::Flood));
            w
        }
        "userinfo" => deal(access, c)
            .into_iter()
            .map(|ts| Work::Cycle(ts.iter().map(|t| userinfo_req(t)).collect()))
            .collect(),
        "api-installs" => api_installs_works(b)?,
        "exchange" => exchange_works(b, before)?,
        "refresh" => seeded
            .installs
            .iter()
            .rev()
            .take(c)
            .map(|i| Work::Chain {
                refresh_token: i.refresh.clone(),
            })
            .collect(),
        "revoke" => revoke_works(b, issued_access, access),
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
    Ok(works)
}

/// api-installs: the first and the second page, alternating, each
/// connection starting on the other page than the last.
fn api_installs_works(b: &Bench) -> Result<Vec<Work>, String> {
    let (ctx, seeded, rt) = (&b.ctx, &b.seeded, &b.rt);
    let c = b.o.concurrency;
    let first = api_get("/t/bench/api/v1/installs?limit=50", &seeded.read_key);
    let pages = match rt.block_on(next_cursor(ctx, &first))? {
        Some(cursor) => {
            let second = leak(format!("/t/bench/api/v1/installs?limit=50&cursor={cursor}"));
            vec![first, api_get(second, &seeded.read_key)]
        }
        None => vec![first],
    };
    Ok((0..c)
        .map(|i| {
            let mut p = pages.clone();
            p.rotate_left(i % pages.len());
            Work::Cycle(p)
        })
        .collect())
}

/// exchange: enough codes for twice the write baseline, minted just before.
fn exchange_works(b: &Bench, before: Option<Rate>) -> Result<Vec<Work>, String> {
    let (o, ctx, seeded) = (b.o, &b.ctx, &b.seeded);
    let c = o.concurrency;
    let guess = before.map(|r| r.tps).unwrap_or(5000.0);
    let n = ((guess * 2.0 * o.duration.as_secs_f64()) as usize).max(4000);
    if o.duration > Duration::from_secs(100) {
        eprintln!("warning: codes live {CODE_TTL_SECS} s; a long exchange run outlives them");
    }
    let codes = mint_codes(&db_url(&b.db), seeded, n)?;
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
    Ok(deal(&reqs, c).into_iter().map(Work::Once).collect())
}

/// revoke: installs made by the exchange path first, then the seeded ones.
fn revoke_works(b: &Bench, issued_access: &mut Vec<String>, access: &[String]) -> Vec<Work> {
    let ctx = &b.ctx;
    let mut pool = std::mem::take(issued_access);
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
    deal(&reqs, b.o.concurrency)
        .into_iter()
        .map(Work::Once)
        .collect()
}

/// Runs one path for the run's duration and measures its CPU per request;
/// returns its result and, for exchange, the access tokens it issued.
fn run_one(b: &Bench, path: &str, works: Vec<Work>) -> Result<(PathResult, Vec<String>), String> {
    let (o, pid, c) = (b.o, b.pid, b.o.concurrency);
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
    let (mut r, issued) = b.rt.block_on(run_path(
        &b.ctx,
        path,
        works,
        o.duration,
        path == "exchange",
    ))?;
    // introspect-flood: per request sent, valid and flood alike.
    let sent = r.requests + r.flood.as_ref().map_or(0, |(_, f)| f.latencies_us.len());
    r.cpu = cpu_per(cpu_before, cpu_sample(pid), sent, false, b.tck);
    Ok((r, issued))
}

/// api-rotate's note: how many secrets its apps ended with.
fn note_secrets(b: &Bench, r: &mut PathResult) -> Result<(), String> {
    let apps = &b.seeded.rotate_app_ids;
    let (min, max) = secrets_per_app(&db_url(&b.db), apps)?;
    let note = format!(
        "{} apps, rotated {} times: {min} to {max} secrets per app at the end (a rotation adds one and prunes none)",
        apps.len(),
        r.requests
    );
    r.note = Some(match r.note.take() {
        Some(n) => format!("{n}; {note}"),
        None => note,
    });
    Ok(())
}
