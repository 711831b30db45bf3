//! A complete program: open an engine, register a Rust effect provider that
//! completes its jobs on a worker thread, enqueue jobs (one inside a host
//! transaction with the business row), wait for them, print the stats.
//!
//! Run: WFENGINE_LIBRARY=$PWD/build/libwfengine.so \
//!      cargo run --example quickstart   (in bindings/rust)

use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;

use serde_json::{json, Value};
use wfengine::{Engine, Job};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("wfengine-quickstart-{}.db", std::process::id()));
    let engine = Engine::open(path.to_str().unwrap(), &json!({}))?;

    // Each completed job reports its id on this channel.
    let (done_tx, done_rx) = mpsc::channel::<String>();
    let done_tx = Mutex::new(done_tx);
    engine.register_effect(
        "email",
        &json!({"max_attempts": 5, "timeout_ms": 10_000}),
        move |job: Job| {
            // Runs on the engine's loop thread: hand the work to a thread of ours.
            let tx = done_tx.lock().unwrap().clone();
            thread::spawn(move || {
                let to = job.payload()["to"].as_str().unwrap_or("?").to_string();
                println!(
                    "sending mail to {to} (job {}, attempt {})",
                    job.id(),
                    job.attempt()
                );
                let id = job.id();
                match job.complete(&json!({"delivered": to})) {
                    Ok(()) => tx.send(id).unwrap(),
                    Err(e) => eprintln!("late completion: {e}"),
                }
            });
        },
    )?;
    engine.start()?;

    // A plain enqueue, deduplicated by key.
    let first = engine.enqueue(
        &json!({"effect": "email", "key": "welcome-1", "payload": {"to": "ann@example.com"}}),
    )?;
    let again = engine.enqueue(
        &json!({"effect": "email", "key": "welcome-1", "payload": {"to": "ann@example.com"}}),
    )?;
    assert!(again.existing && again.id == first.id);

    // The business row and its job commit together (or not at all).
    let mut tx = engine.begin()?;
    tx.exec(
        "CREATE TABLE IF NOT EXISTS users(name TEXT, email TEXT)",
        &Value::Null,
    )?;
    tx.exec(
        "INSERT INTO users VALUES (?, ?)",
        &json!(["bob", "bob@example.com"]),
    )?;
    tx.enqueue(
        &json!({"effect": "email", "key": "welcome-2", "payload": {"to": "bob@example.com"}}),
    )?;
    tx.commit()?;

    for _ in 0..2 {
        println!("completed {}", done_rx.recv()?);
    }
    engine.sync()?;
    let stats = engine.stats(&Value::Null)?;
    println!(
        "completed: {}, dead: {}",
        stats["engine"]["completed"], stats["dead"]
    );
    engine.close()?;
    for suf in ["", "-wal", "-shm", "-wfboots"] {
        let _ = std::fs::remove_file(format!("{}{suf}", path.display()));
    }
    Ok(())
}
