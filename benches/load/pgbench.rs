//! The baseline: pgbench's rate of the same PostgreSQL, just then.

use std::path::PathBuf;
use std::process::Command;

use crate::client::percentile;
use crate::cpu::{cpu_per, cpu_sample, machine, CpuPer};
use crate::opts::Opts;
use crate::server::server_url;

/// One pgbench run: the database's own rate on this machine, just then.
#[derive(Clone, Copy, Default)]
pub struct Rate {
    pub tps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub cpu: CpuPer,
}

/// The pgbench runs of a benchmark, in order: (mode, rate).
pub type Runs = Vec<(&'static str, Rate)>;

/// The baseline a path is compared with: pgbench in its mode, run right
/// before and right after the path, so both see the same machine.
#[derive(Clone, Copy)]
pub struct Baseline {
    pub mode: &'static str,
    pub before: Rate,
    pub after: Rate,
}

impl Baseline {
    pub fn tps(&self) -> f64 {
        (self.before.tps + self.after.tps) / 2.0
    }
    pub fn mean(&self, f: impl Fn(&Rate) -> f64) -> f64 {
        (f(&self.before) + f(&self.after)) / 2.0
    }
}

/// p50 and p99 of pgbench's per-transaction log files (`-l`): the third
/// column is the transaction's latency in microseconds.
pub fn pgbench_log_percentiles(dir: &std::path::Path, prefix: &str) -> (f64, f64) {
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

pub fn pgbench_bin() -> String {
    std::env::var("PGBENCH").unwrap_or_else(|_| "pgbench".into())
}

pub fn pgbench_conn_args() -> Vec<String> {
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

pub fn run_pgbench(args: &[String]) -> Result<String, String> {
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

pub fn url_password() -> String {
    url::Url::parse(&server_url())
        .ok()
        .and_then(|u| u.password().map(str::to_string))
        .unwrap_or_default()
}

pub fn parse_tps(out: &str) -> Result<f64, String> {
    out.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l["tps = ".len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no tps line in pgbench output:\n{out}"))
}

pub fn parse_transactions(out: &str) -> usize {
    out.lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or(0)
}

pub fn pgbench_init(db: &str) -> Result<(), String> {
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
pub fn pgbench_rate(o: &Opts, db: &str, mode: &str, tck: f64) -> Result<Rate, String> {
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
