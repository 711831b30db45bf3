//! Integration tests against a real engine (libwfengine.so found through
//! WFENGINE_LIBRARY or the build tree) on temporary databases, with a
//! virtual clock and `settle` instead of sleeps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use serde_json::{json, Value};
use wfengine::testing::TestEngine;
use wfengine::{Code, Engine, Job};

fn te() -> TestEngine {
    TestEngine::new(&json!({})).expect("open")
}

fn stat(t: &TestEngine, path: &[&str]) -> i64 {
    let mut v = t.stats(&Value::Null).unwrap();
    for p in path {
        v = v[*p].take();
    }
    v.as_i64().unwrap_or(-1)
}

#[test]
fn version_matches() {
    assert!(wfengine::version().unwrap().starts_with("0.1."));
}

#[test]
fn enqueue_callback_complete() {
    let t = te();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    t.register_effect("email", &Value::Null, move |job: Job| {
        let p = job.payload();
        let key = job.key();
        assert_eq!(job.effect(), "email");
        assert_eq!(job.attempt(), 1);
        job.complete(&json!({"sent": true})).unwrap();
        tx.lock().unwrap().send((p, key)).unwrap();
    })
    .unwrap();
    t.start().unwrap();
    let r = t
        .enqueue(&json!({"effect": "email", "key": "k1", "payload": {"to": "a@b"}}))
        .unwrap();
    assert!(!r.existing);
    let again = t.enqueue(&json!({"effect": "email", "key": "k1"})).unwrap();
    assert!(again.existing);
    assert_eq!(again.id, r.id);
    t.settle().unwrap();
    let (p, key) = rx.recv().unwrap();
    assert_eq!(p, json!({"to": "a@b"}));
    assert_eq!(key, "k1");
    assert_eq!(stat(&t, &["engine", "completed"]), 1);
}

#[test]
fn completion_from_another_thread_and_batch() {
    let t = te();
    t.register_effect("slow", &Value::Null, |job: Job| {
        thread::spawn(move || job.complete(&Value::Null).unwrap());
    })
    .unwrap();
    t.start().unwrap();
    let jobs: Vec<Value> = (0..20)
        .map(|i| json!({"effect": "slow", "key": format!("b{i}")}))
        .collect();
    let ids = t.enqueue_batch(&jobs).unwrap();
    assert_eq!(ids.len(), 20);
    assert!(ids.iter().all(|e| !e.existing));
    t.settle().unwrap();
    assert_eq!(stat(&t, &["engine", "completed"]), 20);
}

#[test]
fn retry_then_success_with_virtual_clock() {
    let t = te();
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    t.register_effect("flaky", &json!({"max_attempts": 5}), move |job: Job| {
        s2.fetch_add(1, Ordering::SeqCst);
        if job.attempt() < 3 {
            job.retry("not yet", 60_000).unwrap();
        } else {
            job.complete(&Value::Null).unwrap();
        }
    })
    .unwrap();
    t.start().unwrap();
    t.enqueue(&json!({"effect": "flaky"})).unwrap();
    t.settle().unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(stat(&t, &["outbox", "scheduled"]), 1);
    t.advance(60_000).unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    t.advance(60_000).unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    assert_eq!(stat(&t, &["engine", "completed"]), 1);
    assert_eq!(stat(&t, &["engine", "retried"]), 2);
}

#[test]
fn dead_letter_requeue_purge() {
    let t = te();
    let ok = Arc::new(AtomicUsize::new(0));
    let ok2 = ok.clone();
    t.register_effect("pay", &Value::Null, move |job: Job| {
        if ok2.load(Ordering::SeqCst) == 0 {
            job.fail("card declined").unwrap();
        } else {
            job.complete(&Value::Null).unwrap();
        }
    })
    .unwrap();
    t.start().unwrap();
    t.enqueue(&json!({"effect": "pay", "key": "p1"})).unwrap();
    t.enqueue(&json!({"effect": "pay", "key": "p2"})).unwrap();
    t.settle().unwrap();
    let dead = t.dead_list(&Value::Null).unwrap();
    let s = dead.to_string();
    assert!(s.contains("card declined"), "{s}");
    assert_eq!(stat(&t, &["dead"]), 2);
    ok.store(1, Ordering::SeqCst);
    let ids: Vec<Value> = dead
        .as_array()
        .or_else(|| dead["dead"].as_array())
        .map(|a| a.iter().map(|d| d["id"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(ids.len(), 2, "{s}");
    assert_eq!(t.dead_requeue(&json!({"ids": [ids[0]]})).unwrap(), 1);
    t.settle().unwrap();
    assert_eq!(stat(&t, &["dead"]), 1);
    assert_eq!(stat(&t, &["engine", "completed"]), 1);
    assert_eq!(t.dead_purge(&Value::Null).unwrap(), 1);
    assert_eq!(stat(&t, &["dead"]), 0);
}

#[test]
fn host_tx_rollback_and_commit() {
    let t = te();
    {
        let mut tx = t.begin().unwrap();
        tx.exec(
            "CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT)",
            &Value::Null,
        )
        .unwrap();
        tx.commit().unwrap();
    }
    {
        let mut tx = t.begin().unwrap();
        tx.exec("INSERT INTO orders(item) VALUES (?)", &json!(["lost"]))
            .unwrap();
        tx.enqueue(&json!({"effect": "ship", "key": "lost"}))
            .unwrap();
        tx.rollback().unwrap();
    }
    {
        // Dropped without commit: rolled back.
        let mut tx = t.begin().unwrap();
        tx.exec("INSERT INTO orders(item) VALUES (?)", &json!(["dropped"]))
            .unwrap();
        tx.enqueue(&json!({"effect": "ship", "key": "dropped"}))
            .unwrap();
    }
    // A transaction moved to another thread and committed there.
    let mut tx = t.begin().unwrap();
    tx.exec("INSERT INTO orders(item) VALUES (?)", &json!(["kept"]))
        .unwrap();
    let id = tx
        .enqueue(&json!({"effect": "ship", "key": "kept"}))
        .unwrap();
    assert!(!id.is_empty());
    thread::scope(|s| {
        s.spawn(move || tx.commit().unwrap());
    });
    let mut tx = t.begin().unwrap();
    let rows = tx
        .exec("SELECT item FROM orders ORDER BY id", &Value::Null)
        .unwrap();
    assert_eq!(rows, json!([{"item": "kept"}]));
    let err = tx.exec("DELETE FROM wf_jobs", &Value::Null).unwrap_err();
    assert_eq!(err.code, Code::Inval);
    drop(tx);
    assert_eq!(stat(&t, &["outbox", "ready"]), 1);
}

#[test]
fn saga_with_rust_reducer() {
    let t = te();
    t.register_effect("charge", &Value::Null, |job: Job| {
        let amount = job.payload()["amount"].as_i64().unwrap_or(0);
        job.complete(&json!({"charged": amount})).unwrap();
    })
    .unwrap();
    t.register_saga("order", &json!({"start": ["order.placed"], "correlation": "correlation_id"}), |input| {
        let ev = &input["event"];
        match ev["type"].as_str() {
            Some("order.placed") => Ok(json!({
                "state": {"step": "charging"},
                "commands": [{"effect": "charge", "payload": {"amount": ev["payload"]["amount"]}}],
                "done": false
            })),
            Some("charge.completed") => Ok(json!({
                "state": {"step": "paid", "result": ev["payload"]},
                "done": true
            })),
            other => Err(format!("unexpected event {other:?}")),
        }
    })
    .unwrap();
    t.start().unwrap();
    assert!(t
        .submit(
            &json!({"event_id": "e1", "type": "order.placed", "correlation_id": "o1",
                         "payload": {"amount": 42}})
        )
        .unwrap());
    assert!(!t
        .submit(&json!({"event_id": "e1", "type": "order.placed", "correlation_id": "o1"}))
        .unwrap());
    t.settle().unwrap();
    let st = t.saga_get("", "order", "o1").unwrap();
    assert_eq!(st["status"], "done", "{st}");
    assert_eq!(st["state"]["step"], "paid", "{st}");
    assert!(st["state"]["result"].to_string().contains("42"), "{st}");
    let rep = t.saga_replay("", "order", "o1", &Value::Null).unwrap();
    assert_eq!(rep["state"]["step"], "paid", "{rep}");
    assert_eq!(rep["events"], 2, "{rep}");
}

#[test]
fn schedule_fires_on_virtual_clock() {
    let t = te();
    let fired = Arc::new(AtomicUsize::new(0));
    let f2 = fired.clone();
    t.register_effect("tick", &Value::Null, move |job: Job| {
        f2.fetch_add(1, Ordering::SeqCst);
        job.complete(&Value::Null).unwrap();
    })
    .unwrap();
    t.start().unwrap();
    t.schedule(&json!({"key": "every-minute", "cron": "* * * * *", "job": {"effect": "tick"}}))
        .unwrap();
    t.settle().unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 0);
    t.advance(60_000).unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    t.advance(60_000).unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 2);
    t.unschedule("", "every-minute").unwrap();
    t.advance(60_000).unwrap();
    assert_eq!(fired.load(Ordering::SeqCst), 2);
    assert_eq!(
        t.unschedule("", "every-minute").unwrap_err().code,
        Code::NotFound
    );
}

#[test]
fn bad_input_errors() {
    let t = te();
    let e = t.enqueue(&json!({"payload": 1})).unwrap_err();
    assert_eq!(e.code, Code::Inval);
    assert!(e.message.contains("effect"), "{e}");
    let e = Engine::open("/work/nonexistent-dir/x/y.db", &json!({})).unwrap_err();
    assert!(!e.message.is_empty());
    let p = wfengine::testing::temp_path("badopt");
    let e = Engine::open(p.to_str().unwrap(), &json!({"no_such_option": 1})).unwrap_err();
    assert_eq!(e.code, Code::Inval);
    assert!(e.message.contains("no_such_option"), "{e}");
    assert_eq!(t.cancel("", "nope").unwrap_err().code, Code::NotFound);
    assert_eq!(
        t.register_effect("", &Value::Null, |_j| {})
            .unwrap_err()
            .code,
        Code::Inval
    );
    assert_eq!(t.stats(&json!({"bogus": 1})).unwrap_err().code, Code::Inval);
    let e = t
        .enqueue_async(&json!({"no": "effect"}), |_r| panic!("never called"))
        .unwrap_err();
    assert_eq!(e.code, Code::Inval);
    let e = t.enqueue(&json!({"effect": "a\u{0}b"})).unwrap_err();
    assert_eq!(e.code, Code::Inval);
}

#[test]
fn cancel_and_async_enqueue() {
    let t = te();
    let r = t
        .enqueue(&json!({"effect": "later", "key": "c1", "delay_ms": 10_000}))
        .unwrap();
    t.cancel("", "c1").unwrap();
    assert_eq!(t.cancel("", &r.id).unwrap_err().code, Code::NotFound);
    let (tx, rx) = mpsc::channel();
    for i in 0..10 {
        let tx = tx.clone();
        t.enqueue_async(
            &json!({"effect": "later", "key": format!("a{}", i % 5)}),
            move |r| {
                tx.send(r.unwrap()).unwrap();
            },
        )
        .unwrap();
    }
    t.sync().unwrap();
    let got: Vec<_> = rx.try_iter().collect();
    assert_eq!(got.len(), 10);
    assert_eq!(got.iter().filter(|e| e.existing).count(), 5);
}

#[test]
fn threads_enqueue_while_callbacks_arrive() {
    let t = te();
    let done = Arc::new(AtomicUsize::new(0));
    let d2 = done.clone();
    t.register_effect("work", &json!({"concurrency": 8}), move |job: Job| {
        d2.fetch_add(1, Ordering::SeqCst);
        if job.attempt() == 1 && job.payload()["n"].as_i64().unwrap_or(0) % 7 == 0 {
            job.retry("first try", 0).unwrap();
        } else {
            job.complete(&Value::Null).unwrap();
        }
    })
    .unwrap();
    t.start().unwrap();
    let eng: &Engine = &t;
    thread::scope(|s| {
        for th in 0..4 {
            s.spawn(move || {
                for i in 0..50 {
                    let n = th * 1000 + i;
                    if i % 2 == 0 {
                        eng.enqueue(
                            &json!({"effect": "work", "key": format!("w{n}"), "payload": {"n": n}}),
                        )
                        .unwrap();
                    } else {
                        eng.enqueue_async(
                            &json!({"effect": "work", "key": format!("w{n}"), "payload": {"n": n}}),
                            |r| {
                                r.unwrap();
                            },
                        )
                        .unwrap();
                    }
                }
            });
        }
    });
    t.settle().unwrap();
    assert_eq!(stat(&t, &["engine", "completed"]), 200);
    assert!(done.load(Ordering::SeqCst) >= 200);
}

#[test]
fn panicking_callback_and_dropped_job_retry() {
    // Keep the intended panic out of the test output; others still print.
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("exploded on purpose") {
            prev(info);
        }
    }));
    let t = te();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    t.register_effect("boom", &json!({"max_attempts": 3}), move |job: Job| {
        let n = c2.fetch_add(1, Ordering::SeqCst);
        match n {
            0 => panic!("exploded on purpose"),
            1 => drop(job),
            _ => job.complete(&Value::Null).unwrap(),
        }
    })
    .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let l2 = lines.clone();
    t.set_logger(wfengine_sys::WF_LOG_DEBUG, move |_lvl, line| {
        l2.lock().unwrap().push(line.to_string())
    })
    .unwrap();
    t.start().unwrap();
    t.enqueue(&json!({"effect": "boom"})).unwrap();
    // Backoff runs on the virtual clock: advance until done.
    for _ in 0..10 {
        t.advance(3_600_000).unwrap();
        if calls.load(Ordering::SeqCst) >= 3 {
            break;
        }
    }
    t.settle().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(stat(&t, &["engine", "completed"]), 1);
    assert_eq!(stat(&t, &["engine", "retried"]), 2);
    // The panic text went into the retry's error (logged by the engine).
    t.set_logger(wfengine_sys::WF_LOG_ERROR, |_l, _s| {})
        .unwrap();
    let all = lines.lock().unwrap().join("\n");
    assert!(all.contains("exploded on purpose"), "{all}");
    assert!(all.contains("dropped without an outcome"), "{all}");
}

#[test]
fn metrics_and_builtin_provider() {
    let t = te();
    let m = t.metrics().unwrap();
    assert!(m.contains("wf_"), "{m}");
    let e = t
        .register_builtin("x", &json!({"type": "no-such-provider"}))
        .unwrap_err();
    assert_eq!(e.code, Code::Unsupported);
    let e = t
        .register_builtin("hook", &json!({"type": "http", "bogus_key": 1}))
        .unwrap_err();
    assert_eq!(e.code, Code::Inval);
}

#[test]
fn close_and_drop() {
    let p = wfengine::testing::temp_path("close");
    let e = Engine::open(p.to_str().unwrap(), &Value::Null).unwrap();
    e.register_effect("x", &Value::Null, |j: Job| {
        j.complete(&Value::Null).unwrap()
    })
    .unwrap();
    e.start().unwrap();
    e.enqueue(&json!({"effect": "y", "key": "persist"}))
        .unwrap();
    e.drain(5_000).unwrap();
    assert_eq!(
        e.enqueue(&json!({"effect": "y"})).unwrap_err().code,
        Code::Closed
    );
    e.close().unwrap();
    // Reopened: the job is still there; dropped engine closes itself.
    let e = Engine::open(p.to_str().unwrap(), &Value::Null).unwrap();
    assert_eq!(e.stats(&Value::Null).unwrap()["outbox"]["ready"], 1);
    drop(e);
    for suf in ["", "-wal", "-shm", "-wfboots"] {
        let _ = std::fs::remove_file(format!("{}{suf}", p.display()));
    }
}

#[test]
fn sync_from_a_callback_is_busy_and_default_logger() {
    let (tx, rx) = mpsc::channel::<String>();
    let tx = Mutex::new(tx);
    wfengine::set_default_logger(
        wfengine_sys::WF_LOG_INFO,
        Some(Box::new(move |_l, line| {
            if line.contains("engine opened") {
                let _ = tx.lock().unwrap().send(line.to_string());
            }
        })),
    )
    .unwrap();
    let t = Arc::new(te());
    wfengine::set_default_logger(wfengine_sys::WF_LOG_INFO, None).unwrap();
    assert!(rx.try_iter().count() >= 1);
    let (rtx, rrx) = mpsc::channel();
    let rtx = Mutex::new(rtx);
    let weak = Arc::downgrade(&t);
    t.register_effect("closer", &Value::Null, move |job: Job| {
        let r = weak.upgrade().map(|t| t.sync().unwrap_err().code);
        job.complete(&Value::Null).unwrap();
        rtx.lock().unwrap().send(r).unwrap();
    })
    .unwrap();
    t.start().unwrap();
    t.enqueue(&json!({"effect": "closer"})).unwrap();
    t.settle().unwrap();
    assert_eq!(rrx.recv().unwrap(), Some(Code::Busy));
}

/// A minimal executor: parks the thread until the waker unparks it.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

#[test]
fn async_completion_as_futures() {
    let t = te();
    let a = t
        .enqueue_future(&json!({"effect": "f", "key": "fut"}))
        .unwrap();
    let b = t
        .enqueue_future(&json!({"effect": "f", "key": "fut"}))
        .unwrap();
    let ra = block_on(a).unwrap();
    let rb = block_on(b).unwrap();
    assert!(!ra.existing);
    assert!(rb.existing);
    assert_eq!(ra.id, rb.id);
    let ev = block_on(
        t.submit_future(&json!({"event_id": "ev1", "type": "nobody.cares"}))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ev.id, "ev1");
    assert_eq!(
        t.enqueue_future(&json!({})).err().unwrap().code,
        Code::Inval
    );
}
