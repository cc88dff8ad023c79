//! In-process Prometheus metrics: requests by route and status, a latency
//! histogram, token-endpoint outcomes, and the database pool.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::{Data, Request, Response};

use crate::auth::ClientCache;
use crate::db::models::App;
use crate::db::Db;

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Counts and latency of one route. Keyed by the route's path, so that a
/// request only allocates the first time its route is seen.
#[derive(Default)]
struct RouteStats {
    /// (method, status) -> requests.
    by_status: Vec<((&'static str, u16), u64)>,
    latency: Histogram,
}

#[derive(Default)]
struct Inner {
    routes: BTreeMap<String, RouteStats>,
    token_outcomes: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

pub enum TokenOutcome {
    Issued,
    Failed(&'static str),
}

impl Metrics {
    pub fn token_outcome(&self, outcome: TokenOutcome) {
        let key = match outcome {
            TokenOutcome::Issued => "issued",
            TokenOutcome::Failed(kind) => kind,
        };
        if let Ok(mut m) = self.inner.lock() {
            *m.token_outcomes.entry(key).or_default() += 1;
        }
    }

    pub fn observe(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        if !m.routes.contains_key(route) {
            m.routes.insert(route.to_string(), RouteStats::default());
        }
        let Some(r) = m.routes.get_mut(route) else {
            return;
        };
        match r.by_status.iter_mut().find(|(k, _)| *k == (method, status)) {
            Some((_, n)) => *n += 1,
            None => r.by_status.push(((method, status), 1)),
        }
        let h = &mut r.latency;
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, db: &Db, clients: &ClientStates<'_>) -> String {
        let mut out = String::new();
        self.render_requests(&mut out);
        render_db(&mut out, db);
        render_clients(&mut out, clients);
        out
    }

    /// Requests by route and status, their latency, token outcomes.
    fn render_requests(&self, out: &mut String) {
        if let Ok(m) = self.inner.lock() {
            out.push_str("# HELP kitauth_http_requests_total HTTP requests by route and status.\n# TYPE kitauth_http_requests_total counter\n");
            for (route, r) in &m.routes {
                let mut by_status = r.by_status.clone();
                by_status.sort_unstable();
                for ((method, status), n) in by_status {
                    let _ = writeln!(out, "kitauth_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
                }
            }
            out.push_str("# HELP kitauth_http_request_duration_seconds Request latency by route.\n# TYPE kitauth_http_request_duration_seconds histogram\n");
            for (route, h) in m.routes.iter().map(|(route, r)| (route, &r.latency)) {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(out, "kitauth_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}", h.counts[i]);
                }
                let _ = writeln!(out, "kitauth_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(
                    out,
                    "kitauth_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "kitauth_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    h.count
                );
            }
            out.push_str("# HELP kitauth_token_requests_total Token endpoint outcomes by error kind.\n# TYPE kitauth_token_requests_total counter\n");
            for (kind, n) in &m.token_outcomes {
                let _ = writeln!(
                    out,
                    "kitauth_token_requests_total{{outcome=\"{kind}\"}} {n}"
                );
            }
        }
    }
}

/// The pool's connections, and where database work ran.
fn render_db(out: &mut String, db: &Db) {
    let state = db.pool().state();
    let _ = writeln!(out, "# HELP kitauth_db_pool_connections Database pool connections by state.\n# TYPE kitauth_db_pool_connections gauge");
    let _ = writeln!(
        out,
        "kitauth_db_pool_connections{{state=\"idle\"}} {}",
        state.idle_connections
    );
    let _ = writeln!(
        out,
        "kitauth_db_pool_connections{{state=\"in_use\"}} {}",
        state.connections.saturating_sub(state.idle_connections)
    );
    let calls = db.calls();
    let _ = writeln!(out, "# HELP kitauth_db_calls_total Database work by where it ran: on an async worker (hot-path reads) or a blocking thread.\n# TYPE kitauth_db_calls_total counter");
    for (place, n) in [("inline", &calls.inline), ("blocking", &calls.blocking)] {
        let _ = writeln!(
            out,
            "kitauth_db_calls_total{{thread=\"{place}\"}} {}",
            n.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
}

/// The copies of clients, and the batched token lookups.
fn render_clients(out: &mut String, clients: &ClientStates<'_>) {
    let _ = writeln!(out, "# HELP kitauth_client_cache_total In-memory copies of clients, by path (introspect, token): used (hit), none kept (miss), or not used and the client read again (stale).\n# TYPE kitauth_client_cache_total counter");
    let caches = [
        (
            "introspect",
            clients.introspect.stats(),
            clients.introspect.len(),
        ),
        ("token", clients.token.stats(), clients.token.len()),
    ];
    for (path, stats, _) in &caches {
        for (result, n) in [
            ("hit", &stats.hits),
            ("miss", &stats.misses),
            ("stale", &stats.stale),
        ] {
            let _ = writeln!(
                out,
                "kitauth_client_cache_total{{path=\"{path}\",result=\"{result}\"}} {}",
                n.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(out, "# HELP kitauth_client_cache_entries Clients kept in memory, by path.\n# TYPE kitauth_client_cache_entries gauge");
    for (path, _, len) in &caches {
        let _ = writeln!(out, "kitauth_client_cache_entries{{path=\"{path}\"}} {len}");
    }
    let (statements, items) = clients.lookups;
    let _ = writeln!(out, "# HELP kitauth_token_lookup_statements_total Statements that answered userinfo's and introspection's batched token lookups.\n# TYPE kitauth_token_lookup_statements_total counter\nkitauth_token_lookup_statements_total {statements}");
    let _ = writeln!(out, "# HELP kitauth_token_lookups_total Token lookups those statements answered.\n# TYPE kitauth_token_lookups_total counter\nkitauth_token_lookups_total {items}");
}

/// Start time of a request, kept in its local cache.
struct Started(Instant);

/// Logs every request (id, method, route, status, duration; never a query
/// string or body) and records it in the metrics.
pub struct RequestLog;

#[rocket::async_trait]
impl Fairing for RequestLog {
    fn info(&self) -> Info {
        Info {
            name: "request log and metrics",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        req.local_cache(|| Started(Instant::now()));
        req.local_cache(|| RequestId(format!("{:016x}", rand::random::<u64>())));
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let started = req.local_cache(|| Started(Instant::now())).0;
        let elapsed = started.elapsed();
        let route = req.route().map_or("unmatched", |r| r.uri.path());
        let status = res.status().code;
        let id = &req.local_cache(|| RequestId(String::new())).0;
        res.set_raw_header("X-Request-Id", id.clone());
        tracing::info!(
            request_id = %id,
            method = %req.method(),
            route = %route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
        if let Some(m) = req.rocket().state::<Metrics>() {
            m.observe(req.method().as_str(), route, status, elapsed.as_secs_f64());
        }
    }
}

/// A short random id per request, echoed as `X-Request-Id`.
pub struct RequestId(pub String);

/// What `/metrics` reports of the client copies and the batched lookups.
pub struct ClientStates<'a> {
    pub introspect: &'a ClientCache,
    pub token: &'a ClientCache<App>,
    /// (statements, lookups) of the batched token lookups.
    pub lookups: (u64, u64),
}
