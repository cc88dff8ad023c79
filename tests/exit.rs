//! A process exits cleanly while other threads are opening database
//! connections (see `kitauth::db::libpq_url`). The pool opens connections
//! in the background, so a test process, the CLI or the server at shutdown
//! can exit in the middle of one; before the fix, one child in five here
//! died of SIGSEGV (OpenSSL's exit handler) or SIGABRT (Kerberos' library
//! destructors).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

const CHILD: &str = "KITAUTH_EXIT_CHILD_URL";
const TEST: &str = "a_process_that_exits_while_connections_are_opening_exits_cleanly";

/// The child: a pool filling its idle connections, two threads opening
/// connections as fast as they can, and an exit (the harness's, after this
/// test returns) after `ms` milliseconds.
fn child(url: &str, ms: u64) {
    let pool = kitauth::db::build_pool(url, 8, Duration::from_secs(5)).expect("pool");
    for _ in 0..2 {
        let url = url.to_string();
        std::thread::spawn(move || loop {
            let _ = kitauth::db::connect(&url);
        });
    }
    std::thread::sleep(Duration::from_millis(ms));
    std::mem::forget(pool);
}

#[test]
fn a_process_that_exits_while_connections_are_opening_exits_cleanly() {
    if let Ok(url) = std::env::var(CHILD) {
        let ms = std::env::var("KITAUTH_EXIT_CHILD_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(20);
        return child(&url, ms);
    }
    let db = common::TestDb::new();
    let exe = std::env::current_exe().expect("the test binary");
    let mut failures = Vec::new();
    let runs = 40;
    for run in 0..runs {
        // Exits spread over the first connections' handshakes and later.
        let ms = 5 + (run * 7) % 60;
        let out = Command::new(&exe)
            .args([TEST, "--exact", "--test-threads=1"])
            .env(CHILD, &db.url)
            .env("KITAUTH_EXIT_CHILD_MS", ms.to_string())
            .output()
            .expect("run the child");
        if !out.status.success() {
            failures.push(format!(
                "run {run} ({ms} ms): {:?} (signal {:?}): {}",
                out.status,
                out.status.signal(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} children did not exit cleanly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
