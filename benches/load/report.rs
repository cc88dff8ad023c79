//! The report: the table on stdout and, with --json, the same figures as JSON.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::client::{percentile, PathResult};
use crate::cpu::Machine;
use crate::opts::Opts;
use crate::pgbench::Runs;

pub struct Target {
    pub ratio: f64,
    pub p99_ms: f64,
}

pub fn target_of(path: &str) -> Option<Target> {
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

/// What a run measured, for the report.
pub struct Summary {
    pub machine: Machine,
    pub load_start: f64,
    pub load_end: f64,
    /// Every pgbench run, in order.
    pub baselines_run: Runs,
    pub results: Vec<PathResult>,
    pub rss_kb: Option<u64>,
    pub startup: Duration,
    /// The server exited during the run.
    pub exited: bool,
    /// The server's log.
    pub log: PathBuf,
}

impl Summary {
    fn rss_mb(&self) -> Option<f64> {
        self.rss_kb.map(|k| k as f64 / 1024.0)
    }
    fn startup_ms(&self) -> f64 {
        self.startup.as_secs_f64() * 1000.0
    }
}

/// Prints the report, writes the JSON if asked; returns whether the run
/// passed (every answer 2xx and the server still up).
pub fn report(o: &Opts, s: &Summary) -> Result<bool, String> {
    let failed = s.exited || s.results.iter().any(|r| r.errors > 0);
    let mut table = String::new();
    write_header(&mut table, o, s);
    let json_paths = write_paths(&mut table, o, s);
    write_cpu(&mut table, s);
    write_limits(&mut table, s);
    write_flood(&mut table, o, s);
    write_end(&mut table, s, failed);
    print!("{table}");

    if let Some(dest) = &o.json {
        write_json(dest, o, s, json_paths, failed)?;
    }
    Ok(!failed)
}

fn write_header(table: &mut String, o: &Opts, s: &Summary) {
    let (m, c) = (&s.machine, o.concurrency);
    let (load_start, load_end, baselines_run) = (s.load_start, s.load_end, &s.baselines_run);
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
}

/// The table of paths; returns each path's JSON.
fn write_paths(table: &mut String, o: &Opts, s: &Summary) -> Vec<serde_json::Value> {
    let _ = writeln!(
        table,
        "\n| path             |  req/s |  p50 ms |  p99 ms |  max ms | errors | baseline tps | ratio        | target             |"
    );
    let _ = writeln!(
        table,
        "|------------------|-------:|--------:|--------:|--------:|-------:|-------------:|--------------|--------------------|"
    );
    let mut json_paths = Vec::new();
    for r in &s.results {
        let j = judge(r);
        let _ = writeln!(table, "{}", path_row(r, &j));
        json_paths.push(path_json(r, &j, o.concurrency));
    }
    json_paths
}

/// A path's ratio of its baseline, its target, and whether it met it.
struct Judged {
    ratio: Option<f64>,
    target: Option<Target>,
    met: Option<bool>,
}

fn judge(r: &PathResult) -> Judged {
    let ratio = r.baseline.map(|b| r.rps / b.tps());
    let target = target_of(&r.name);
    let met = match (&target, ratio) {
        (Some(t), Some(ratio)) => Some(ratio >= t.ratio && r.p99_ms <= t.p99_ms),
        (Some(t), None) => Some(r.p99_ms <= t.p99_ms),
        _ => None,
    };
    Judged { ratio, target, met }
}

/// One row of the table of paths.
fn path_row(r: &PathResult, j: &Judged) -> String {
    let (ratio, target, met) = (j.ratio, &j.target, j.met);
    let ratio_s = match (ratio, r.baseline) {
        (Some(x), Some(b)) => format!("{:.0} % of {}", x * 100.0, b.mode),
        _ => "-".into(),
    };
    let base_s = r
        .baseline
        .map_or("-".into(), |b| format!("{} {:.0}", b.mode, b.tps()));
    let target_s = match (target, met) {
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
    format!(
        "| {:<16} | {:>6.0} | {:>7.2} | {:>7.2} | {:>7.1} | {:>6} | {:>12} | {:<12} | {:<18} |",
        r.name, r.rps, r.p50_ms, r.p99_ms, r.max_ms, r.errors, base_s, ratio_s, target_s
    )
}

fn path_json(r: &PathResult, j: &Judged, c: usize) -> serde_json::Value {
    let (ratio, target, met) = (j.ratio, &j.target, j.met);
    json!({
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
    })
}

fn write_cpu(table: &mut String, s: &Summary) {
    // Where the CPU goes: the machine's 2 cores are shared by the server,
    // PostgreSQL and the load generator, as they are by PostgreSQL and
    // pgbench in the baseline.
    let _ = writeln!(
        table,
        "\nCPU per request, µs (per transaction for the baseline; introspect-flood: per request sent, flood included):\n\n| path             | server | load gen | postgres | baseline: postgres | pgbench |\n|------------------|-------:|---------:|---------:|-------------------:|--------:|"
    );
    for r in &s.results {
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
}

/// Peak RSS and start-up, against their targets.
fn write_limits(table: &mut String, s: &Summary) {
    let (rss_mb, startup_ms) = (s.rss_mb(), s.startup_ms());
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
}

/// The flood row next to the plain one of the same run.
fn write_flood(table: &mut String, o: &Opts, s: &Summary) {
    let (c, results) = (o.concurrency, &s.results);
    let plain = results.iter().find(|r| r.name == "introspect");
    for r in results {
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
}

/// Notes, the server's exit, the verdict.
fn write_end(table: &mut String, s: &Summary, failed: bool) {
    let (results, log) = (&s.results, &s.log);
    for r in results {
        if let Some(n) = &r.note {
            let _ = writeln!(table, "note: {}: {n}", r.name);
        }
    }
    if s.exited {
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
}

fn write_json(
    dest: &str,
    o: &Opts,
    s: &Summary,
    json_paths: Vec<serde_json::Value>,
    failed: bool,
) -> Result<(), String> {
    let (m, c) = (&s.machine, o.concurrency);
    let (load_start, load_end, baselines_run) = (s.load_start, s.load_end, &s.baselines_run);
    let (rss_mb, startup_ms) = (s.rss_mb(), s.startup_ms());
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
    Ok(())
}
