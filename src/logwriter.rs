//! The log writer: request threads append each formatted line to a shared
//! buffer under one short lock, and one background thread writes the buffer
//! to stderr every `FLUSH_EVERY`, or as soon as it passes `HIGH_WATER` (the
//! line that crosses it signals the thread once). A per-line channel
//! (tracing-appender) woke the writer thread for every request, and on a
//! 2-core machine that wake-up and the context switches it causes cost more
//! than the write itself.
//!
//! The buffer is bounded: when stderr is stuck and `MAX_BUFFER` is reached,
//! new lines are dropped, and the number dropped is logged (in the log's own
//! format) once writing resumes. The guard flushes everything on drop, so a
//! normal exit, also after SIGTERM, loses nothing; if stderr itself is stuck
//! it waits at most `SHUTDOWN_WAIT`, so exit never hangs on a log reader.
//! Should the thread fail to start, lines are written directly instead.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
const HIGH_WATER: usize = 64 * 1024;
const MAX_BUFFER: usize = 8 * 1024 * 1024;
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

struct Shared {
    buf: Mutex<Vec<u8>>,
    wake: Condvar,
    stop: AtomicBool,
    dropped: AtomicU64,
    /// The output. Only the writer thread uses it, unless it failed to start.
    out: Mutex<Box<dyn Write + Send>>,
    /// No writer thread: every line goes straight to `out`.
    direct: AtomicBool,
    /// The notice about dropped lines is a JSON object.
    json: bool,
}

/// The `MakeWriter` handed to tracing-subscriber.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread and flushes what is buffered when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<(JoinHandle<()>, mpsc::Receiver<()>)>,
}

/// A writer to `out` and the guard that flushes it. `json`: the log is JSON
/// lines, so the writer's own notices are too.
pub fn batch_writer<W: Write + Send + 'static>(out: W, json: bool) -> (BatchWriter, FlushGuard) {
    let shared = Arc::new(Shared {
        buf: Mutex::new(Vec::with_capacity(HIGH_WATER)),
        wake: Condvar::new(),
        stop: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
        out: Mutex::new(Box::new(out)),
        direct: AtomicBool::new(false),
        json,
    });
    let worker = shared.clone();
    // Dropped when the thread ends, however it ends: the guard's signal.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            let _done = done_tx;
            write_loop(&worker);
        });
    let thread = match spawned {
        Ok(handle) => Some((handle, done_rx)),
        // `out` is still in `shared`: write to it directly.
        Err(_) => {
            shared.direct.store(true, Ordering::Release);
            None
        }
    };
    (
        BatchWriter {
            shared: shared.clone(),
        },
        FlushGuard { shared, thread },
    )
}

/// The writer thread: swap the buffer out, write it, repeat.
fn write_loop(shared: &Shared) {
    let mut spare = Vec::with_capacity(HIGH_WATER);
    loop {
        let stopping = {
            let Ok(mut guard) = shared.buf.lock() else {
                return;
            };
            // A buffer already past the mark is written without waiting:
            // its crossing's signal may have come while this thread wrote.
            if guard.len() < HIGH_WATER && !shared.stop.load(Ordering::Acquire) {
                guard = match shared.wake.wait_timeout(guard, FLUSH_EVERY) {
                    Ok((g, _)) => g,
                    Err(_) => return,
                };
            }
            std::mem::swap(&mut *guard, &mut spare);
            shared.stop.load(Ordering::Acquire)
        };
        let Ok(mut out) = shared.out.lock() else {
            return;
        };
        if !spare.is_empty() {
            let _ = out.write_all(&spare);
            spare.clear();
        }
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = out.write_all(dropped_notice(dropped, shared.json).as_bytes());
        }
        let _ = out.flush();
        if stopping {
            return;
        }
    }
}

fn dropped_notice(dropped: u64, json: bool) -> String {
    const MESSAGE: &str = "log lines dropped (output blocked)";
    if json {
        let line = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": "WARN",
            "fields": {"message": MESSAGE, "dropped": dropped},
            "target": "kitauth::logwriter",
        });
        format!("{line}\n")
    } else {
        format!("log writer: {dropped} {MESSAGE}\n")
    }
}

impl Write for BatchWriter {
    fn write(&mut self, raw: &[u8]) -> std::io::Result<usize> {
        // Every line, whoever logged it and at whatever level, is redacted
        // here, so no filter setting can let a credential through.
        let len = raw.len();
        let redacted = crate::redact::redact(raw);
        let data: &[u8] = &redacted;
        if self.shared.direct.load(Ordering::Acquire) {
            if let Ok(mut out) = self.shared.out.lock() {
                let _ = out.write_all(data);
            }
            return Ok(len);
        }
        let Ok(mut buf) = self.shared.buf.lock() else {
            return Ok(len);
        };
        let before = buf.len();
        if before + data.len() > MAX_BUFFER {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(len);
        }
        buf.extend_from_slice(data);
        if before < HIGH_WATER && buf.len() >= HIGH_WATER {
            self.shared.wake.notify_one();
        }
        Ok(len)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        {
            // Under the lock, so the thread is either before its check of
            // `stop` or already waiting: the signal cannot fall between.
            let _buf = self.shared.buf.lock();
            self.shared.wake.notify_one();
        }
        if let Some((handle, done)) = self.thread.take() {
            // The thread ends by dropping its sender. A stuck stderr is left
            // behind rather than holding the process past SHUTDOWN_WAIT.
            if let Err(RecvTimeoutError::Disconnected) = done.recv_timeout(SHUTDOWN_WAIT) {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_and_the_guard_flushes_them() {
        let sink = Sink::default();
        let (mut w, guard) = batch_writer(sink.clone(), false);
        for i in 0..1000 {
            w.write_all(format!("line {i}\n").as_bytes())
                .expect("write");
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[0], "line 0");
        assert_eq!(lines[999], "line 999");
    }

    #[test]
    fn lines_are_written_without_waiting_for_exit() {
        let sink = Sink::default();
        let (mut w, _guard) = batch_writer(sink.clone(), false);
        w.write_all(b"hello\n").expect("write");
        let t0 = std::time::Instant::now();
        while sink.0.lock().expect("sink").is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(5), "never flushed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*sink.0.lock().expect("sink"), b"hello\n");
    }

    #[test]
    fn a_stuck_output_drops_lines_and_says_how_many() {
        // The writer thread cannot write while the test holds the sink's lock.
        let sink = Sink::default();
        let held = sink.0.lock().expect("sink");
        let (mut w, guard) = batch_writer(sink.clone(), false);
        let line = vec![b'x'; 1023];
        let mut wrote = 0usize;
        // Fill past MAX_BUFFER faster than the 50 ms flush can take it:
        // the first swap takes at most one buffer, then the thread blocks.
        for _ in 0..(3 * MAX_BUFFER / 1024) {
            w.write_all(&line).expect("write");
            w.write_all(b"\n").expect("write");
            wrote += 1;
        }
        drop(held);
        drop(guard);
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf8");
        let kept = text.lines().filter(|l| l.starts_with('x')).count();
        assert!(kept < wrote, "kept {kept} of {wrote}");
        assert!(text.contains("log lines dropped"), "no drop notice");
    }

    #[test]
    fn in_json_mode_the_drop_notice_is_a_json_line() {
        let sink = Sink::default();
        let held = sink.0.lock().expect("sink");
        let (mut w, guard) = batch_writer(sink.clone(), true);
        // One write per line, as tracing-subscriber does.
        let mut line = vec![b'x'; 1023];
        line.push(b'\n');
        for _ in 0..(3 * MAX_BUFFER / 1024) {
            w.write_all(&line).expect("write");
        }
        drop(held);
        drop(guard);
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf8");
        let notice = text
            .lines()
            .find(|l| l.starts_with('{'))
            .expect("a JSON notice");
        let v: serde_json::Value = serde_json::from_str(notice).expect("valid JSON");
        assert_eq!(v["level"], "WARN");
        assert!(v["fields"]["dropped"].as_u64().expect("a count") > 0);
    }

    #[test]
    fn a_stuck_output_does_not_hold_up_exit() {
        let sink = Sink::default();
        let (mut w, guard) = batch_writer(sink.clone(), false);
        let held = sink.0.lock().expect("sink");
        w.write_all(b"hello\n").expect("write");
        // Dropped on another thread, so that a guard that waited forever
        // fails this test instead of hanging it.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            drop(guard);
            let _ = tx.send(t0.elapsed());
        });
        let waited = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the guard returned while the output was stuck");
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
            "the guard waited {waited:?}, about SHUTDOWN_WAIT expected"
        );
        drop(held);
    }
}
