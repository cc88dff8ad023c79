//! `kitauth`: serve (default), migrate, and the create commands.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use kitauth::cli::{self, Cli, Command};

/// mimalloc instead of glibc's malloc: a request allocates and frees many
/// small buffers on several threads, and under load glibc's allocator took
/// about a tenth of the server's CPU (README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs go to stderr through a batching background writer (`logwriter`), so
/// that a request does not wait for a write(2) nor, as a rule, wake a
/// thread. The guard flushes what is buffered on exit.
const DEFAULT_LOG_FILTER: &str = "info,rocket=warn";

fn init_tracing() -> kitauth::logwriter::FlushGuard {
    use tracing_subscriber::EnvFilter;
    // Rocket's own `log` records reach tracing too, and at info it writes
    // four lines per request ("GET …", "Matched: …", "Outcome: …",
    // "Response succeeded."), beside the one request event of
    // `kitauth::metrics`. Its warnings and errors are kept.
    let filter = EnvFilter::try_from_env("KITAUTH_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let json = std::env::var("KITAUTH_LOG_FORMAT").is_ok_and(|f| f == "json");
    let (writer, guard) = kitauth::logwriter::batch_writer(std::io::stderr(), json);
    // Colours only on a terminal: a log file or a collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

fn fail(json: bool, message: &str) -> ExitCode {
    if json {
        println!("{}", serde_json::json!({"error": message}));
    }
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log_guard = init_tracing();
    let json = cli.json;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(json),
        command => {
            let config = match cli::load_config() {
                Ok((_, c)) => c,
                Err(e) => return fail(json, &e.to_string()),
            };
            match cli::run(command, &config) {
                Ok(out) => {
                    if json {
                        println!("{}", out.json);
                    } else {
                        println!("{}", out.text);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(json, &format!("{e:#}")),
            }
        }
    }
}

fn serve(json: bool) -> ExitCode {
    let figment = kitauth::config::figment();
    let rocket = match kitauth::build(figment) {
        Ok(r) => r,
        Err(e) => return fail(json, &e),
    };
    match rocket::execute(rocket.launch()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(json, &format!("the server stopped: {e}")),
    }
}
