//! The machine, how busy it is, and where the CPU went (from /proc).

use std::process::Command;

pub struct Machine {
    pub nproc: usize,
    pub mem_total_mb: u64,
    pub cpu_model: String,
}

pub fn machine() -> Machine {
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

/// The 1-minute load average: how busy the shared machine was.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// (comm, utime + stime, cutime + cstime) in ticks, from /proc/<pid>/stat.
pub fn proc_times(pid: &str) -> Option<(String, u64, u64)> {
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
pub struct CpuSample {
    pub server: u64,
    pub client: u64,
    pub children: u64,
    pub postgres: u64,
}

pub fn cpu_sample(server_pid: u32) -> CpuSample {
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
pub struct CpuPer {
    pub server_us: f64,
    /// The load generator: this process for the paths, pgbench for the baselines.
    pub client_us: f64,
    pub postgres_us: f64,
}

pub fn cpu_per(a: CpuSample, b: CpuSample, n: usize, pgbench: bool, tck: f64) -> CpuPer {
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
