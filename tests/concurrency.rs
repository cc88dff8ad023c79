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
    assert_grants_revoked(&app, "code_replay", 1);
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

/// A multi-worker runtime of this test's own, as the server runs.
fn runtime(workers: usize) -> rocket::tokio::runtime::Runtime {
    rocket::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// `read` runs on the async worker itself when the runtime has another
/// worker to spare, and falls back to a blocking thread on a one-worker
/// runtime; either way the closure's answer comes back.
#[test]
fn reads_run_on_the_worker_only_when_another_worker_stays_free() {
    use kitauth::db::{build_pool, Db};
    use kitauth::error::Error;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    let test_db = TestDb::new();
    for (workers, inline) in [(1, false), (3, true)] {
        let db = Db::new(build_pool(&test_db.url, 2, Duration::from_secs(5)).unwrap());
        let task_db = db.clone();
        let task = async move {
            let worker = std::thread::current().id();
            let ran_on = task_db
                .read(|conn| {
                    use diesel::prelude::*;
                    let one: i32 = diesel::select(1.into_sql::<diesel::sql_types::Integer>())
                        .get_result(conn)
                        .map_err(Error::from)?;
                    assert_eq!(one, 1);
                    Ok::<_, Error>(std::thread::current().id())
                })
                .await
                .unwrap();
            ran_on == worker
        };
        // Spawned, to run on a worker as a request handler does.
        let on_worker =
            runtime(workers).block_on(async { rocket::tokio::spawn(task).await.unwrap() });
        let calls = db.calls();
        assert_eq!(
            (calls.inline.load(Relaxed), calls.blocking.load(Relaxed)),
            if inline { (1, 0) } else { (0, 1) },
            "{workers} workers"
        );
        assert_eq!(on_worker, inline, "{workers} workers");
    }
}

/// While PostgreSQL makes the hot-path reads wait (here a table lock held
/// by another session), they block at most all workers but one: the spare
/// worker still runs other tasks on time, a read beyond the slots waits
/// without a thread and gives up after `db_timeout_ms` (503), and the
/// blocked reads finish once the lock goes.
#[test]
fn a_stalled_database_blocks_at_most_all_workers_but_one() {
    use diesel::prelude::*;
    use kitauth::db::{build_pool, Db};
    use kitauth::error::Error;
    use std::time::{Duration, Instant};

    let test_db = TestDb::new();
    let wait = Duration::from_millis(700);
    let db = Db::new(build_pool(&test_db.url, 4, wait).unwrap());
    let mut locker = kitauth::db::connect(&test_db.url).unwrap();
    diesel::sql_query("BEGIN").execute(&mut locker).unwrap();
    // A watchdog: should the test go wrong, PostgreSQL ends the lock's
    // session after 10 s, and the test fails instead of hanging.
    diesel::sql_query("SET LOCAL idle_in_transaction_session_timeout = '10s'")
        .execute(&mut locker)
        .unwrap();
    diesel::sql_query("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .unwrap();
    let read = |db: &Db| {
        let db = db.clone();
        rocket::tokio::spawn(async move {
            db.read(|conn| {
                diesel::sql_query("SELECT id FROM tenants")
                    .execute(conn)
                    .map_err(Error::from)
            })
            .await
        })
    };
    runtime(3).block_on(async {
        // Two slots on three workers: both readers block theirs.
        let blocked = [read(&db), read(&db)];
        let deadline = Instant::now() + Duration::from_secs(5);
        while db.calls().inline.load(std::sync::atomic::Ordering::Relaxed) < 2 {
            assert!(
                Instant::now() < deadline,
                "the two readers never took their slots"
            );
            rocket::tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rocket::tokio::time::sleep(Duration::from_millis(50)).await;
        // The spare worker answers a timer and a third reader on time.
        let t0 = Instant::now();
        let ticker = rocket::tokio::spawn(async {
            rocket::tokio::time::sleep(Duration::from_millis(10)).await;
            Instant::now()
        });
        let third = read(&db).await.unwrap();
        let ticked = ticker.await.unwrap().duration_since(t0);
        assert!(
            ticked < Duration::from_millis(300),
            "a 10 ms timer took {ticked:?}"
        );
        assert!(matches!(third, Err(Error::Unavailable)), "{third:?}");
        let gave_up = t0.elapsed();
        assert!(
            gave_up >= Duration::from_millis(400) && gave_up < Duration::from_millis(1500),
            "the third reader gave up after {gave_up:?}; db_timeout is {wait:?}"
        );
        // The lock goes (from a blocking thread: this worker is needed).
        rocket::tokio::task::spawn_blocking(move || {
            diesel::sql_query("ROLLBACK").execute(&mut locker).unwrap();
        })
        .await
        .unwrap();
        for b in blocked {
            b.await.unwrap().unwrap();
        }
    });
    assert_eq!(
        db.calls().inline.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

/// A read on the worker that finds its connection's server gone answers
/// 503 and leaves the dead connection out of the pool (the flag that says
/// so is per thread, and the worker is the thread that saw the error): the
/// next read gets a new connection.
#[test]
fn a_read_on_the_worker_discards_a_connection_whose_server_is_gone() {
    use diesel::prelude::*;
    use diesel::sql_types::Integer;
    use kitauth::db::{build_pool, Db};
    use kitauth::error::Error;
    use std::time::Duration;

    #[derive(QueryableByName)]
    struct Pid {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    let test_db = TestDb::new();
    let db = Db::new(build_pool(&test_db.url, 1, Duration::from_secs(5)).unwrap());
    let backend = |db: &Db| {
        let db = db.clone();
        rocket::tokio::spawn(async move {
            db.read(|conn| {
                diesel::sql_query("SELECT pg_backend_pid() AS pid")
                    .get_result::<Pid>(conn)
                    .map(|p| p.pid)
                    .map_err(Error::from)
            })
            .await
        })
    };
    runtime(3).block_on(async {
        let first = backend(&db).await.unwrap().unwrap();
        let mut admin = kitauth::db::connect(&test_db.url).unwrap();
        diesel::sql_query(format!("SELECT pg_terminate_backend({first})"))
            .execute(&mut admin)
            .unwrap();
        let lost = backend(&db).await.unwrap();
        assert!(matches!(lost, Err(Error::Unavailable)), "{lost:?}");
        let second = backend(&db).await.unwrap().unwrap();
        assert_ne!(first, second, "a new connection, not the dead one");
    });
    assert!(db.calls().inline.load(std::sync::atomic::Ordering::Relaxed) >= 2);
}

/// Batched token lookups (`db::batch`) give up as `Db::read` does: with
/// the database stalled, every caller gets `Unavailable` within the pool's
/// time-out of the moment it queued, however many are queued; a caller
/// beyond the queue's cap gets it at once; and the runners serve again as
/// soon as the database does.
#[test]
fn batched_lookups_time_out_like_single_reads_when_the_database_stalls() {
    use diesel::prelude::*;
    use kitauth::db::batch::{Batcher, QUEUE_CAP};
    use kitauth::db::{build_pool, Db};
    use kitauth::error::Error;
    use kitauth::oauth::introspect::AccessTokenLookups;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let test_db = TestDb::new();
    let wait = Duration::from_millis(500);
    let db = Db::new(build_pool(&test_db.url, 4, wait).unwrap());
    let batcher = Arc::new(Batcher::<AccessTokenLookups>::new(2));
    let lookup = |db: &Db, batcher: &Arc<Batcher<AccessTokenLookups>>, n: u8| {
        let (db, batcher) = (db.clone(), batcher.clone());
        rocket::tokio::spawn(async move {
            let t0 = Instant::now();
            let answer = batcher.get(&db, (1, vec![n; 32])).await;
            (answer, t0.elapsed())
        })
    };
    runtime(3).block_on(async {
        // Warm: the runners start and answer (no such token).
        let (answer, _) = lookup(&db, &batcher, 0).await.unwrap();
        assert!(matches!(answer, Ok(None)), "{answer:?}");

        let mut locker = kitauth::db::connect(&test_db.url).unwrap();
        diesel::sql_query("BEGIN").execute(&mut locker).unwrap();
        diesel::sql_query("SET LOCAL idle_in_transaction_session_timeout = '10s'")
            .execute(&mut locker)
            .unwrap();
        diesel::sql_query("LOCK TABLE access_tokens IN ACCESS EXCLUSIVE MODE")
            .execute(&mut locker)
            .unwrap();

        let queued: Vec<_> = (0..40).map(|n| lookup(&db, &batcher, n)).collect();
        // Beyond the cap: refused at once.
        let flood: Vec<_> = (0..QUEUE_CAP + 100)
            .map(|n| lookup(&db, &batcher, n as u8))
            .collect();
        let mut at_once = 0;
        for f in flood {
            let (answer, took) = f.await.unwrap();
            assert!(matches!(answer, Err(Error::Unavailable)), "{answer:?}");
            if took < Duration::from_millis(100) {
                at_once += 1;
            }
        }
        assert!(at_once >= 50, "{at_once} of the flood were refused at once");
        for q in queued {
            let (answer, took) = q.await.unwrap();
            assert!(matches!(answer, Err(Error::Unavailable)), "{answer:?}");
            assert!(
                took < Duration::from_millis(1500),
                "a queued lookup gave up after {took:?}; db_timeout is {wait:?}"
            );
        }

        rocket::tokio::task::spawn_blocking(move || {
            diesel::sql_query("ROLLBACK").execute(&mut locker).unwrap();
        })
        .await
        .unwrap();
        // The runners were stuck behind the lock until now; they serve again.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (answer, _) = lookup(&db, &batcher, 1).await.unwrap();
            if matches!(answer, Ok(None)) {
                break;
            }
            assert!(Instant::now() < deadline, "still {answer:?}");
        }
    });
}
