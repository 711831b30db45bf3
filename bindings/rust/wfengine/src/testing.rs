//! Test helpers: an engine on a temporary file with a virtual clock, and
//! [`settle`], which runs the engine until nothing is ready or due.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Code, Engine, Error, Result};

/// A virtual clock (milliseconds since the epoch) the test moves.
#[derive(Clone)]
pub struct Clock(pub Arc<AtomicI64>);

impl Clock {
    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst)
    }
    /// Moves the clock forward by `ms`; call [`settle`] (or `wake`) after.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

/// An engine on a fresh file in the temporary directory, with a virtual
/// clock starting at 2030-01-01T00:00:00Z. The file (and its -wal/-shm) is
/// removed when the `TestEngine` is dropped.
pub struct TestEngine {
    pub engine: Engine,
    pub clock: Clock,
    pub path: PathBuf,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh path in the temporary directory (not created).
pub fn temp_path(tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("wfengine-rs-{tag}-{}-{n}.db", std::process::id()))
}

impl TestEngine {
    /// Opens (not started) with `options` (Null ok).
    pub fn new(options: &Value) -> Result<TestEngine> {
        let path = temp_path("test");
        let engine = Engine::open(path.to_str().unwrap_or_default(), options)?;
        let clock = Clock(Arc::new(AtomicI64::new(1_893_456_000_000)));
        engine.set_clock(clock.0.clone())?;
        Ok(TestEngine {
            engine,
            clock,
            path,
        })
    }

    /// Moves the clock and settles.
    pub fn advance(&self, ms: i64) -> Result<()> {
        self.clock.advance(ms);
        settle(&self.engine)
    }

    pub fn settle(&self) -> Result<()> {
        settle(&self.engine)
    }
}

impl std::ops::Deref for TestEngine {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        let _ = self.engine.close_inner();
        for suf in ["", "-wal", "-shm", "-wfboots"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suf);
            let _ = std::fs::remove_file(p);
        }
    }
}

fn n(v: &Value, path: &[&str]) -> i64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_i64().unwrap_or(0)
}

/// Runs the (started) engine until nothing is ready, running or due (jobs,
/// saga events, schedules, async enqueues): wakes the relay, waits for the
/// commits with `sync`, reads `stats`. Scheduled work in the (virtual)
/// future is left alone. `TimedOut` after 30 s of real time (e.g. a job
/// whose effect nobody registered stays ready).
pub fn settle(e: &Engine) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet = 0;
    loop {
        e.wake()?;
        e.sync()?;
        let s = e.stats(&Value::Null)?;
        let busy = n(&s, &["outbox", "ready"])
            + n(&s, &["outbox", "running"])
            + n(&s, &["engine", "inflight"])
            + n(&s, &["engine", "async_pending"])
            + n(&s, &["events", "pending"])
            + n(&s, &["schedules", "due"]);
        if busy == 0 {
            // Twice in a row: an outcome reported during the first read
            // may have enqueued follow-up work (saga commands).
            quiet += 1;
            if quiet >= 2 {
                return Ok(());
            }
            continue;
        }
        quiet = 0;
        if Instant::now() > deadline {
            return Err(Error {
                code: Code::TimedOut,
                status: wfengine_sys::WF_ETIMEDOUT,
                message: format!("settle: still busy after 30 s: {s}"),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
