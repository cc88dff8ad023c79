//! The PostgreSQL server and the databases of a run, their cleanup, and
//! the kitauth server under test: started, waited for, measured.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use diesel::prelude::*;
use hyper::Method;
use rocket::tokio;

use kitauth::crypto;

use crate::client::{connect, send, Req};
use crate::API_REQUESTS_PER_MINUTE;

pub fn server_url() -> String {
    std::env::var("BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn db_url(name: &str) -> String {
    let mut u = url::Url::parse(&server_url()).expect("database URL");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

pub fn admin_sql(sql: &str) -> Result<(), String> {
    let mut c = kitauth::db::connect(&server_url()).map_err(|e| format!("connect: {e}"))?;
    diesel::sql_query(sql)
        .execute(&mut c)
        .map(|_| ())
        .map_err(|e| format!("{sql}: {e}"))
}

/// Kills the server and drops the databases when the run ends, however it ends.
#[derive(Default)]
pub struct Cleanup {
    pub server: Option<Child>,
    pub databases: Vec<String>,
}

impl Cleanup {
    pub fn stop_server(&mut self) {
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn spawn_server(bin: &Path, db: &str, port: u16, log: &PathBuf) -> Result<Child, String> {
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

pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub async fn wait_ready(
    addr: SocketAddr,
    host: &str,
    child: &mut Child,
) -> Result<Duration, String> {
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
