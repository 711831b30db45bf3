//! Small benchmark of the binding: enqueue paths and end-to-end no-op jobs
//! (enqueued, dispatched to a Rust callback, completed, committed), and
//! the read API listing every pending job page by page.
//! Engines open with {"durability": "full"}, as bench/wf_bench. Prints
//! numbers; nothing asserts on timing.
//!
//! Run: cargo run --release --example bench -- [jobs]   (default 20000)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};
use wfengine::testing::temp_path;
use wfengine::{Engine, Job, Listing};

fn rate(n: usize, t: Instant) -> f64 {
    n as f64 / t.elapsed().as_secs_f64()
}

fn fresh() -> (Engine, String) {
    let p = temp_path("bench").to_str().unwrap().to_string();
    (Engine::open(&p, &json!({"durability": "full"})).unwrap(), p)
}

fn cleanup(e: Engine, p: &str) {
    e.close().unwrap();
    for suf in ["", "-wal", "-shm", "-wfboots"] {
        let _ = std::fs::remove_file(format!("{p}{suf}"));
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    println!(
        "wfengine {} rust binding, {n} jobs per row",
        wfengine::version().unwrap()
    );

    let (e, p) = fresh();
    let t = Instant::now();
    for i in 0..n / 10 {
        e.enqueue(&json!({"effect": "noop", "payload": {"i": i}}))
            .unwrap();
    }
    println!(
        "enqueue (sync, one commit each): {:.0} jobs/s ({} jobs)",
        rate(n / 10, t),
        n / 10
    );
    cleanup(e, &p);

    let (e, p) = fresh();
    let t = Instant::now();
    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"effect": "noop", "payload": {"i": i}}))
        .collect();
    for _ in 0..n / 100 {
        e.enqueue_batch(&batch).unwrap();
    }
    println!(
        "enqueue_batch (100 per call):    {:.0} jobs/s",
        rate(n / 100 * 100, t)
    );
    cleanup(e, &p);

    let (e, p) = fresh();
    let t = Instant::now();
    for i in 0..n {
        e.enqueue_async(&json!({"effect": "noop", "payload": {"i": i}}), |r| {
            r.unwrap();
        })
        .unwrap();
    }
    e.sync().unwrap();
    println!("enqueue_async (pipelined):       {:.0} jobs/s", rate(n, t));
    // Read API: every pending job, 1,000 per page, parsed into Values.
    let t = Instant::now();
    let mut listed = 0;
    for job in e.items(Listing::Jobs, &json!({"limit": 1000})) {
        job.unwrap();
        listed += 1;
    }
    assert_eq!(listed, n);
    println!("jobs_list (1000 per page):       {:.0} jobs/s", rate(n, t));
    cleanup(e, &p);

    // End to end: jobs enqueued (async), served by a no-op Rust callback.
    let (e, p) = fresh();
    let done = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let d2 = done.clone();
    e.register_effect("noop", &json!({"concurrency": 1000}), move |job: Job| {
        job.complete(&Value::Null).unwrap();
        if d2.fetch_add(1, Ordering::SeqCst) + 1 == n {
            tx.lock().unwrap().send(()).unwrap();
        }
    })
    .unwrap();
    e.start().unwrap();
    let t = Instant::now();
    for i in 0..n {
        e.enqueue_async(&json!({"effect": "noop", "payload": {"i": i}}), |r| {
            r.unwrap();
        })
        .unwrap();
    }
    rx.recv().unwrap();
    e.sync().unwrap();
    println!("end to end (no-op callback):     {:.0} jobs/s", rate(n, t));
    cleanup(e, &p);
}
