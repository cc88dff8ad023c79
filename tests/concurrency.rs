//! Races Kit can cause: parallel exchanges of one code, parallel refreshes
//! of one refresh token.

mod common;

use common::*;
use futures::future::join_all;
use rocket::http::Status;

#[rocket::async_test]
async fn fifty_simultaneous_exchanges_of_one_code_give_exactly_one_200() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let code = get_code(&app, &seed).await;
    let responses = join_all((0..50).map(|_| kit_exchange(&app, &seed, &code))).await;
    let mut ok = 0;
    for r in responses {
        match r.status() {
            Status::Ok => ok += 1,
            Status::BadRequest => assert_eq!(json_of(r).await["error"], "invalid_grant"),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 1, "exactly one exchange succeeds");
    assert_eq!(
        app.count("SELECT count(*) FROM grants"),
        1,
        "one grant was created"
    );
    assert_eq!(app.count("SELECT count(*) FROM access_tokens"), 1);
    // The others were replays: the grant they produced is revoked.
    assert_eq!(
        app.count("SELECT count(*) FROM grants WHERE revoked_reason = 'code_replay'"),
        1
    );
}

#[rocket::async_test]
async fn fifty_simultaneous_refreshes_leave_one_live_branch_and_a_usable_install() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let code = get_code(&app, &seed).await;
    let tokens = json_of(kit_exchange(&app, &seed, &code).await).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    let responses = join_all((0..50).map(|_| kit_refresh(&app, &seed, &refresh))).await;
    let mut issued = Vec::new();
    for r in responses {
        assert_eq!(
            r.status(),
            Status::Ok,
            "a retry within the grace window succeeds"
        );
        issued.push(json_of(r).await);
    }
    assert_eq!(
        app.count(
            "SELECT count(*) FROM refresh_tokens WHERE used_at IS NULL AND revoked_at IS NULL"
        ),
        1,
        "exactly one live refresh token"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM grants WHERE revoked_at IS NULL"),
        1
    );
    // Exactly one of the 50 answers carries the live branch; its access token
    // is active and the others' are not.
    let mut live = Vec::new();
    for t in &issued {
        if introspect(&app, &seed, t["access_token"].as_str().unwrap()).await["active"] == true {
            live.push(t.clone());
        }
    }
    assert_eq!(live.len(), 1);
    let next = kit_refresh(&app, &seed, live[0]["refresh_token"].as_str().unwrap()).await;
    assert_eq!(next.status(), Status::Ok, "the install is still usable");
}

/// More callers than connections: they get connections in the order they
/// asked, and one that cannot get one within `db_timeout_ms` is told so
/// after that time (503), not after twice it.
#[rocket::async_test]
async fn callers_get_connections_first_come_first_served_and_time_out_on_time() {
    use kitauth::db::{build_pool, Db};
    use kitauth::error::Error;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let test_db = TestDb::new();
    let wait = Duration::from_millis(500);
    let db = Db::new(build_pool(&test_db.url, 1, wait).unwrap());

    // The one connection is busy for 2 s: a caller waiting 500 ms gives up.
    let holder = {
        let db = db.clone();
        rocket::tokio::spawn(async move {
            db.run(|_| {
                std::thread::sleep(Duration::from_millis(2000));
                Ok::<_, Error>(())
            })
            .await
        })
    };
    rocket::tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    let late = db.run(|_| Ok::<_, Error>(())).await;
    let took = t0.elapsed();
    assert!(matches!(late, Err(Error::Unavailable)), "{late:?}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(950),
        "gave up after {took:?}; the wait is {wait:?}, so not twice that"
    );
    holder.await.unwrap().unwrap();

    // Ten callers ask in order (join_all polls them in order, so each is in
    // the queue before the next asks) while each holds the connection
    // 20 ms: they are served in the order they asked.
    let order = Arc::new(Mutex::new(Vec::new()));
    let results = join_all((0..10).map(|i| {
        let order = order.clone();
        db.run(move |_| {
            order.lock().unwrap().push(i);
            std::thread::sleep(Duration::from_millis(20));
            Ok::<_, Error>(())
        })
    }))
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
}

/// Callers beyond the pool's size wait in the async queue, not each on a
/// blocking thread of its own parked in r2d2: 40 callers behind one busy
/// connection add no threads. The runtime is this test's own, with a name
/// no other test uses, so counting its threads in /proc is exact.
#[test]
fn queued_callers_do_not_each_hold_a_blocking_thread() {
    use kitauth::db::{build_pool, Db};
    use kitauth::error::Error;
    use std::time::Duration;

    const NAME: &str = "kitauth-fairq";
    let threads = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.trim() == NAME)
            .count()
    };
    let rt = rocket::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(NAME)
        .enable_all()
        .build()
        .unwrap();
    let test_db = TestDb::new();
    let db = Db::new(build_pool(&test_db.url, 1, Duration::from_secs(5)).unwrap());
    rt.block_on(async {
        let holder = {
            let db = db.clone();
            rocket::tokio::spawn(async move {
                db.run(|_| {
                    std::thread::sleep(Duration::from_millis(800));
                    Ok::<_, Error>(())
                })
                .await
            })
        };
        rocket::tokio::time::sleep(Duration::from_millis(100)).await;
        let callers: Vec<_> = (0..40)
            .map(|_| {
                let db = db.clone();
                rocket::tokio::spawn(async move { db.run(|_| Ok::<_, Error>(())).await })
            })
            .collect();
        rocket::tokio::time::sleep(Duration::from_millis(300)).await;
        let during = threads();
        assert!(
            during <= 4,
            "{during} runtime threads while 40 callers wait for one connection"
        );
        holder.await.unwrap().unwrap();
        for c in callers {
            c.await.unwrap().unwrap();
        }
    });
}
