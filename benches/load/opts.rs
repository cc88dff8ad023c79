//! The flags after `--`.

use std::path::PathBuf;
use std::time::Duration;

use crate::PATHS;

pub struct Opts {
    pub installs: usize,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub json: Option<String>,
    pub paths: Vec<String>,
    pub pgbench: bool,
    /// Connections of introspect-flood that flood (None: half of them).
    pub flood: Option<usize>,
    /// Leave the databases in place after the run, for EXPLAIN and pgbench -f.
    pub keep: bool,
    /// The server binary to start (default: the one cargo just built), for
    /// comparing two builds back to back on the same machine.
    pub server: PathBuf,
}

impl Opts {
    pub fn flood_connections(&self) -> usize {
        self.flood.unwrap_or(self.concurrency / 2)
    }
}

pub fn parse_opts() -> Result<Opts, String> {
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
