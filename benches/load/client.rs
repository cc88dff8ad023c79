//! The load generator: a minimal HTTP/1.1 keep-alive client, one
//! connection per task, and what a path's connections measured.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rocket::tokio;

use crate::cpu::CpuPer;
use crate::paths::{flood_req, installs_page_ok, refresh_req};
use crate::pgbench::Baseline;

pub type Sender = http1::SendRequest<Full<Bytes>>;

pub async fn connect(addr: SocketAddr) -> Result<Sender, String> {
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
pub struct Req {
    pub method: Method,
    pub path: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

pub async fn send(sender: &mut Sender, host: &str, r: &Req) -> Result<(u16, Bytes), String> {
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

/// What one connection sends during a path.
pub enum Work {
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
pub struct TaskResult {
    pub latencies_us: Vec<u32>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub exhausted: bool,
    pub issued_access: Vec<String>,
    pub flood: FloodCounts,
}

/// What the flood connections of a path sent and got.
#[derive(Clone, Default)]
pub struct FloodCounts {
    pub latencies_us: Vec<u32>,
    pub status_401: u64,
    pub status_429: u64,
}

pub struct Ctx {
    pub addr: SocketAddr,
    pub host: String,
    pub client_id: String,
    pub client_secret: String,
}

pub fn body_field(body: &[u8], field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get(field)?.as_str().map(str::to_string)
}

impl TaskResult {
    fn fail(&mut self, why: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why);
        }
    }
}

pub async fn run_task(
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
    let mut i = 0usize;
    let mut chain = match &work {
        Work::Chain { refresh_token } => Some(refresh_token.clone()),
        _ => None,
    };
    while Instant::now() < deadline {
        let Some(req) = next_request(ctx, &work, i, &chain, &mut res) else {
            break;
        };
        i += 1;
        let t0 = Instant::now();
        let answer = send(&mut sender, &ctx.host, &req).await;
        let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
        match answer {
            Err(e) => {
                res.fail(e);
                // The connection is unusable; reconnect and go on.
                match connect(ctx.addr).await {
                    Ok(s) => sender = s,
                    Err(e) => {
                        res.fail(e);
                        break;
                    }
                }
            }
            Ok((status, body)) if matches!(work, Work::Flood) => {
                count_flood(&mut res, us, status, &body)
            }
            Ok((status, body)) => {
                res.latencies_us.push(us);
                let answer = Answer {
                    status,
                    body: &body,
                };
                if !check_answer(path, answer, &mut res, &mut chain, collect_access) {
                    break;
                }
            }
        }
    }
    res
}

/// The `i`-th request of a connection's work; None when it has no more
/// (`Once` ran out, or the refresh chain broke).
fn next_request(
    ctx: &Ctx,
    work: &Work,
    i: usize,
    chain: &Option<String>,
    res: &mut TaskResult,
) -> Option<Req> {
    let req = match work {
        Work::Cycle(reqs) => reqs[i % reqs.len()].clone(),
        Work::Once(reqs) => match reqs.get(i) {
            Some(r) => r.clone(),
            None => {
                res.exhausted = true;
                return None;
            }
        },
        Work::Chain { .. } => match chain {
            Some(t) => refresh_req(ctx, t),
            None => return None,
        },
        Work::Flood => flood_req(),
    };
    Some(req)
}

/// A flood request's answer: 401 or 429, anything else an error.
fn count_flood(res: &mut TaskResult, us: u32, status: u16, body: &[u8]) {
    res.flood.latencies_us.push(us);
    match status {
        401 => res.flood.status_401 += 1,
        429 => res.flood.status_429 += 1,
        _ => res.fail(format!(
            "flood: {status} (expected 401 or 429) {}",
            String::from_utf8_lossy(body)
        )),
    }
}

/// A status and body the server answered.
struct Answer<'a> {
    status: u16,
    body: &'a Bytes,
}

/// Checks an answer as `path` expects it (and follows the refresh chain,
/// keeps exchange's access tokens); false when the connection must stop.
fn check_answer(
    path: &str,
    answer: Answer,
    res: &mut TaskResult,
    chain: &mut Option<String>,
    collect_access: bool,
) -> bool {
    let Answer { status, body } = answer;
    if !(200..300).contains(&status) {
        res.fail(format!(
            "{path}: {status} {}",
            String::from_utf8_lossy(body)
        ));
        // A refresh chain is broken; other work goes on.
        return chain.is_none();
    }
    match path {
        "introspect" | "introspect-flood" if !body.windows(13).any(|w| w == b"\"active\":true") => {
            res.fail(format!("introspect: inactive token: {body:?}"));
        }
        "refresh" => match body_field(body, "refresh_token") {
            Some(t) => *chain = Some(t),
            None => {
                res.fail("refresh: no refresh_token in the answer".into());
                return false;
            }
        },
        "api-installs" if status != 200 || !installs_page_ok(body) => {
            res.fail(format!(
                "api-installs: {status}, not a page of installs: {}",
                String::from_utf8_lossy(body)
            ));
        }
        "api-rotate"
            if status != 201
                || !body_field(body, "client_secret").is_some_and(|s| s.starts_with("kcs_")) =>
        {
            res.fail(format!(
                "api-rotate: {status}, no new secret: {}",
                String::from_utf8_lossy(body)
            ));
        }
        "exchange" if collect_access => {
            if let Some(t) = body_field(body, "access_token") {
                res.issued_access.push(t);
            }
        }
        _ => {}
    }
    true
}

pub struct PathResult {
    pub name: String,
    pub requests: usize,
    pub seconds: f64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub note: Option<String>,
    /// CPU per request of the server, the load generator and PostgreSQL.
    pub cpu: CpuPer,
    pub baseline: Option<Baseline>,
    /// introspect-flood: (flood connections, what they sent and got).
    pub flood: Option<(usize, FloodCounts)>,
}

pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

pub async fn run_path(
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
