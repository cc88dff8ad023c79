//! The log writer: request threads append each formatted line to a shared
//! buffer (one short lock, no system call), and one background thread
//! writes the buffer to stderr every `FLUSH_EVERY`, or at once when it
//! passes `HIGH_WATER`. A per-line channel (tracing-appender) wakes the
//! writer thread for every request, and that wake-up and the context
//! switches it causes cost more than the write itself on a 2-core machine.
//!
//! The buffer is bounded: when stderr is stuck and `MAX_BUFFER` is reached,
//! new lines are dropped, and the number dropped is logged once writing
//! resumes. The guard flushes everything on drop, so a normal exit (also
//! after SIGTERM) loses nothing.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
const HIGH_WATER: usize = 64 * 1024;
const MAX_BUFFER: usize = 8 * 1024 * 1024;

struct Shared {
    buf: Mutex<Vec<u8>>,
    wake: Condvar,
    stop: AtomicBool,
    dropped: AtomicU64,
}

/// The `MakeWriter` handed to tracing-subscriber.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread and flushes what is buffered when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer to `out` and the guard that flushes it.
pub fn batch_writer<W: Write + Send + 'static>(mut out: W) -> (BatchWriter, FlushGuard) {
    let shared = Arc::new(Shared {
        buf: Mutex::new(Vec::with_capacity(HIGH_WATER)),
        wake: Condvar::new(),
        stop: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
    });
    let worker = shared.clone();
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            let mut spare = Vec::with_capacity(HIGH_WATER);
            loop {
                let stopping = {
                    let Ok(guard) = worker.buf.lock() else { return };
                    let (mut guard, _) = match worker.wake.wait_timeout(guard, FLUSH_EVERY) {
                        Ok(r) => r,
                        Err(_) => return,
                    };
                    std::mem::swap(&mut *guard, &mut spare);
                    worker.stop.load(Ordering::Acquire)
                };
                if !spare.is_empty() {
                    let _ = out.write_all(&spare);
                    spare.clear();
                }
                let dropped = worker.dropped.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    let _ = writeln!(
                        out,
                        "log writer: {dropped} log lines dropped (output blocked)"
                    );
                }
                let _ = out.flush();
                if stopping {
                    return;
                }
            }
        })
        .ok();
    (
        BatchWriter {
            shared: shared.clone(),
        },
        FlushGuard { shared, thread },
    )
}

impl Write for BatchWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let Ok(mut buf) = self.shared.buf.lock() else {
            return Ok(data.len());
        };
        if buf.len() + data.len() > MAX_BUFFER {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(data.len());
        }
        buf.extend_from_slice(data);
        if buf.len() >= HIGH_WATER {
            self.shared.wake.notify_one();
        }
        Ok(data.len())
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
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
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
        let (mut w, guard) = batch_writer(sink.clone());
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
        let (mut w, _guard) = batch_writer(sink.clone());
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
        let (mut w, guard) = batch_writer(sink.clone());
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
}
