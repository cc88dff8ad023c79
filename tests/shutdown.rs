//! Graceful shutdown of the real binary: on SIGTERM a request in flight
//! completes, new connections are refused, and the process exits cleanly.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, TestDb};
use kitauth::db::models::{NewTenant, Tenant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_and_refuses_new_connections() {
    let db = TestDb::new();
    {
        let mut conn = db.conn();
        Tenant::create(
            &mut conn,
            &NewTenant {
                slug: "acme",
                name: "Acme",
            },
        )
        .unwrap();
    }
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_kitauth"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DATABASE_URL", &db.url)
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_JANITOR_INTERVAL_SECS", "0")
            .env("KITAUTH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !get(addr, "/healthz").is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "the server came up");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A request in flight: headers and half of the body sent.
    let body = br#"{"grant_type":"password","client_id":"kit_x"}"#;
    let (first, rest) = body.split_at(body.len() / 2);
    let mut inflight = TcpStream::connect(addr).unwrap();
    inflight
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write!(
        inflight,
        "POST /t/acme/oauth/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    inflight.write_all(first).unwrap();
    inflight.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(700));

    // New connections are refused (or, at worst, never answered).
    match get(addr, "/healthz") {
        Err(e) => eprintln!("new connection after SIGTERM: {e}"),
        Ok(answer) => assert!(
            !answer.starts_with("HTTP/1.1"),
            "a new connection was served after SIGTERM: {answer:?}"
        ),
    }

    // The request in flight completes with its normal answer.
    inflight.write_all(rest).unwrap();
    let mut answer = String::new();
    inflight.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("unsupported_grant_type"), "{answer}");

    // And the process exits cleanly within grace + mercy.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the server exited");
        std::thread::sleep(Duration::from_millis(100));
    }
}
