//! The read API through the binding (jobs, schedules, sagas, events,
//! engines, check, backup), paging over cursors, bad filters, the
//! `read_only` open beside a writer in another process, and the
//! `admin_listen` endpoint. A real engine on temporary files, virtual clock.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use wfengine::testing::{temp_path, TestEngine};
use wfengine::{Code, Engine, Job, Listing};

fn te() -> TestEngine {
    TestEngine::new(&json!({})).expect("open")
}

fn remove_db(p: &str) {
    for suf in ["", "-wal", "-shm", "-wfboots"] {
        let _ = std::fs::remove_file(format!("{p}{suf}"));
    }
}

/// The items of one page, by the listing's field.
fn items<'a>(page: &'a Value, field: &str) -> &'a Vec<Value> {
    page[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} array in {page}"))
}

fn keys(page: &Value, field: &str) -> Vec<String> {
    items(page, field)
        .iter()
        .map(|j| j["key"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn jobs_list_filters_and_paging() {
    let t = te();
    // Not started: the jobs stay ready (or scheduled).
    for i in 0..5 {
        t.enqueue(&json!({"effect": "a", "key": format!("a{i}"), "payload": {"i": i}}))
            .unwrap();
    }
    for i in 0..3 {
        t.enqueue(&json!({"effect": "b", "tenant": "t1", "key": format!("b{i}")}))
            .unwrap();
    }
    let later = t
        .enqueue(&json!({"effect": "a", "key": "later", "delay_ms": 60_000}))
        .unwrap();

    let all = t.jobs_list(&Value::Null).unwrap();
    assert_eq!(items(&all, "jobs").len(), 9, "{all}");
    assert!(all["next_cursor"].is_null(), "{all}");
    assert!(all["now"].is_i64(), "{all}");
    assert_eq!(t.jobs_list(&json!({})).unwrap()["jobs"], all["jobs"]);
    let a0 = &items(&all, "jobs")[0];
    assert_eq!(a0["key"], "a0", "{a0}");
    assert_eq!(a0["payload"], json!({"i": 0}), "{a0}");
    assert_eq!(a0["state"], "ready", "{a0}");

    let ready = t.jobs_list(&json!({"state": "ready"})).unwrap();
    assert_eq!(items(&ready, "jobs").len(), 8, "{ready}");
    let sched = t.jobs_list(&json!({"state": "scheduled"})).unwrap();
    assert_eq!(keys(&sched, "jobs"), vec!["later"], "{sched}");
    assert_eq!(items(&sched, "jobs")[0]["id"], later.id.as_str());
    let pending = t.jobs_list(&json!({"state": "pending"})).unwrap();
    assert_eq!(items(&pending, "jobs").len(), 9);
    let running = t.jobs_list(&json!({"state": "running"})).unwrap();
    assert!(items(&running, "jobs").is_empty(), "{running}");

    let b = t.jobs_list(&json!({"effect": "b"})).unwrap();
    assert_eq!(keys(&b, "jobs"), vec!["b0", "b1", "b2"], "{b}");
    assert!(items(&b, "jobs").iter().all(|j| j["tenant"] == "t1"), "{b}");
    let t1 = t.jobs_list(&json!({"tenant": "t1"})).unwrap();
    assert_eq!(t1["jobs"], b["jobs"]);
    let k = t.jobs_list(&json!({"key": "a3"})).unwrap();
    assert_eq!(keys(&k, "jobs"), vec!["a3"], "{k}");
    let none = t.jobs_list(&json!({"effect": "zzz"})).unwrap();
    assert!(items(&none, "jobs").is_empty(), "{none}");

    // Two pages by hand: 5 ready "a" jobs, 3 per page.
    let f = json!({"effect": "a", "state": "ready", "limit": 3});
    let p1 = t.jobs_list(&f).unwrap();
    assert_eq!(keys(&p1, "jobs"), vec!["a0", "a1", "a2"], "{p1}");
    let cursor = p1["next_cursor"].as_str().expect("a cursor").to_string();
    let p2 = t
        .jobs_list(&json!({"effect": "a", "state": "ready", "limit": 3, "cursor": cursor}))
        .unwrap();
    assert_eq!(keys(&p2, "jobs"), vec!["a3", "a4"], "{p2}");
    assert!(p2["next_cursor"].is_null(), "{p2}");

    // The same through the iterators.
    let pages: Vec<Value> = t
        .pages(Listing::Jobs, &f)
        .collect::<wfengine::Result<_>>()
        .unwrap();
    assert_eq!(pages, vec![p1, p2]);
    let ids: Vec<String> = t
        .items(Listing::Jobs, &json!({"limit": 2}))
        .map(|j| j.unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 9);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 9, "no repeats");
    assert_eq!(t.pages(Listing::Jobs, &json!({"limit": 2})).count(), 5);
    // A Null filter pages too (the default page size holds them all).
    assert_eq!(t.items(Listing::Jobs, &Value::Null).count(), 9);
}

#[test]
fn job_get_by_id_key_dead_and_completed() {
    let t = te();
    t.register_effect("pay", &json!({"max_attempts": 1}), |job: Job| {
        if job.key() == "p1" {
            job.fail("card declined").unwrap();
        } else {
            job.complete(&json!({"ok": true})).unwrap();
        }
    })
    .unwrap();
    let held = t
        // Due in the (virtual) future: settle leaves it alone.
        .enqueue(&json!({"effect": "other", "tenant": "t1", "key": "h1", "delay_ms": 3_600_000}))
        .unwrap();
    let p1 = t.enqueue(&json!({"effect": "pay", "key": "p1"})).unwrap();
    t.enqueue(&json!({"effect": "pay", "key": "p2"})).unwrap();
    t.start().unwrap();
    t.settle().unwrap();

    // By id in any tenant, by key in a tenant.
    let j = t.job_get(None, &held.id).unwrap();
    assert_eq!(j["key"], "h1", "{j}");
    assert_eq!(j["tenant"], "t1", "{j}");
    assert_eq!(j["state"], "scheduled", "{j}");
    assert_eq!(t.job_get(Some("t1"), "h1").unwrap()["id"], held.id.as_str());
    assert_eq!(t.job_get(Some(""), "h1").unwrap_err().code, Code::NotFound);
    let e = t.job_get(None, "no-such-job").unwrap_err();
    assert_eq!(e.code, Code::NotFound);
    assert!(!e.message.is_empty());

    let dead = t.job_get(None, &p1.id).unwrap();
    assert_eq!(dead["state"], "dead", "{dead}");
    assert!(dead.to_string().contains("card declined"), "{dead}");
    assert!(
        dead["history"].as_array().is_some_and(|h| !h.is_empty()),
        "{dead}"
    );
    let done = t.job_get(None, "p2").unwrap();
    assert_eq!(done["state"], "completed", "{done}");

    let dl = t.jobs_list(&json!({"state": "dead"})).unwrap();
    assert_eq!(keys(&dl, "jobs"), vec!["p1"], "{dl}");
    assert!(dl["jobs"][0]["reason"].is_string(), "{dl}");
    assert!(!dl["jobs"][0]["dead_at"].is_null(), "{dl}");
}

#[test]
fn schedules_list_and_paging() {
    let t = te();
    t.schedule(&json!({"key": "s1", "cron": "* * * * *", "job": {"effect": "tick"}}))
        .unwrap();
    t.schedule(&json!({"key": "s2", "cron": "0 * * * *", "job": {"effect": "tick"}}))
        .unwrap();
    t.schedule(
        &json!({"tenant": "t1", "key": "s3", "cron": "0 0 * * *", "job": {"effect": "tock"}}),
    )
    .unwrap();
    let all = t.schedules_list(&Value::Null).unwrap();
    assert_eq!(keys(&all, "schedules"), vec!["s1", "s2", "s3"], "{all}");
    let s1 = &all["schedules"][0];
    assert_eq!(s1["cron"], "* * * * *", "{s1}");
    assert_eq!(s1["status"], "active", "{s1}");
    assert_eq!(s1["job"]["effect"], "tick", "{s1}");
    assert!(
        s1["next_due"].is_i64() || s1["next_due"].is_string(),
        "{s1}"
    );

    let t1 = t.schedules_list(&json!({"tenant": "t1"})).unwrap();
    assert_eq!(keys(&t1, "schedules"), vec!["s3"], "{t1}");
    let k = t.schedules_list(&json!({"key": "s2"})).unwrap();
    assert_eq!(keys(&k, "schedules"), vec!["s2"], "{k}");
    let parked = t.schedules_list(&json!({"status": "parked"})).unwrap();
    assert!(items(&parked, "schedules").is_empty(), "{parked}");
    let got: Vec<String> = t
        .items(Listing::Schedules, &json!({"limit": 2}))
        .map(|s| s.unwrap()["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, vec!["s1", "s2", "s3"]);
    assert_eq!(t.pages(Listing::Schedules, &json!({"limit": 2})).count(), 2);
    t.unschedule("", "s1").unwrap();
    assert_eq!(t.items(Listing::Schedules, &Value::Null).count(), 2);
}

fn order_saga(t: &TestEngine) {
    t.register_effect("charge", &Value::Null, |job: Job| {
        let amount = job.payload()["amount"].as_i64().unwrap_or(0);
        job.complete(&json!({"charged": amount})).unwrap();
    })
    .unwrap();
    t.register_saga(
        "order",
        &json!({"start": ["order.placed"], "correlation": "correlation_id"}),
        |input| {
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
        },
    )
    .unwrap();
}

#[test]
fn sagas_saga_show_and_events() {
    let t = te();
    order_saga(&t);
    t.start().unwrap();
    for (id, corr, amount) in [("e1", "o1", 42), ("e2", "o2", 7)] {
        t.submit(
            &json!({"event_id": id, "type": "order.placed", "correlation_id": corr,
                         "payload": {"amount": amount}}),
        )
        .unwrap();
    }
    t.submit(&json!({"event_id": "stray", "type": "nobody.listens", "correlation_id": "x"}))
        .unwrap();
    t.settle().unwrap();

    let all = t.sagas_list(&Value::Null).unwrap();
    let sagas = items(&all, "sagas");
    assert_eq!(sagas.len(), 2, "{all}");
    assert!(
        sagas
            .iter()
            .all(|s| s["saga"] == "order" && s["status"] == "done"),
        "{all}"
    );
    let o1 = t.sagas_list(&json!({"correlation_id": "o1"})).unwrap();
    assert_eq!(items(&o1, "sagas").len(), 1, "{o1}");
    assert_eq!(o1["sagas"][0]["correlation_id"], "o1");
    let active = t.sagas_list(&json!({"status": "active"})).unwrap();
    assert!(items(&active, "sagas").is_empty(), "{active}");
    assert_eq!(t.pages(Listing::Sagas, &json!({"limit": 1})).count(), 2);

    let show = t.saga_show("", "order", "o1").unwrap();
    assert_eq!(show["status"], "done", "{show}");
    assert_eq!(show["state"]["step"], "paid", "{show}");
    let applied = show["applied"].as_array().expect("applied");
    let types: Vec<&str> = applied
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["order.placed", "charge.completed"], "{show}");
    assert_eq!(applied[0]["event_id"], "e1", "{show}");
    assert!(
        show["pending"].as_array().is_some_and(|p| p.is_empty()),
        "{show}"
    );
    assert_eq!(
        t.saga_show("", "order", "o-missing").unwrap_err().code,
        Code::NotFound
    );

    let stray = t.events_list(&json!({"status": "unmatched"})).unwrap();
    let ev = items(&stray, "events");
    assert_eq!(ev.len(), 1, "{stray}");
    assert_eq!(ev[0]["event_id"], "stray", "{stray}");
    let placed = t.events_list(&json!({"type": "order.placed"})).unwrap();
    let ids: Vec<&str> = items(&placed, "events")
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["e1", "e2"], "{placed}");
    let applied = t.events_list(&json!({"status": "applied"})).unwrap();
    assert_eq!(items(&applied, "events").len(), 4, "{applied}");
    let o2 = t.events_list(&json!({"correlation_id": "o2"})).unwrap();
    assert_eq!(items(&o2, "events").len(), 2, "{o2}");
    // All five events (two placed, two charge results, one stray), one per page.
    let seqs: Vec<i64> = t
        .items(Listing::Events, &json!({"limit": 1}))
        .map(|e| e.unwrap()["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 5, "{seqs:?}");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
}

#[test]
fn engines_list_and_check() {
    let t = te();
    t.register_effect("noop", &Value::Null, |job: Job| {
        job.complete(&Value::Null).unwrap()
    })
    .unwrap();
    t.start().unwrap();
    // The effect rows are written without waiting: sync is the barrier.
    t.sync().unwrap();
    let en = t.engines_list().unwrap();
    let engines = items(&en, "engines");
    assert_eq!(engines.len(), 1, "{en}");
    assert_eq!(engines[0]["live"], true, "{en}");
    assert_eq!(engines[0]["liveness"], "this engine", "{en}");
    assert_eq!(engines[0]["pid"], std::process::id(), "{en}");
    assert!(engines[0]["effects"].to_string().contains("noop"), "{en}");

    t.enqueue(&json!({"effect": "noop"})).unwrap();
    t.settle().unwrap();
    for opts in [Value::Null, json!({}), json!({"quick": true})] {
        let c = t.check(&opts).unwrap();
        assert_eq!(c["ok"], true, "{c}");
        assert!(c["checks"].as_array().is_some_and(|a| !a.is_empty()), "{c}");
        assert!(
            c["problems"].as_array().is_some_and(|a| a.is_empty()),
            "{c}"
        );
    }
    let e = t.check(&json!({"deep": true})).unwrap_err();
    assert_eq!(e.code, Code::Inval);
    assert!(e.message.contains("deep"), "{e}");
}

#[test]
fn backup_copy_opens_and_never_overwrites() {
    let t = te();
    for i in 0..20 {
        t.enqueue(&json!({"effect": "x", "key": format!("k{i}"), "payload": {"i": i}}))
            .unwrap();
    }
    let copy = temp_path("backup");
    t.backup(&copy).unwrap();
    let meta = std::fs::metadata(&copy).expect("the copy exists");
    assert!(meta.len() > 0);
    let e = t.backup(&copy).unwrap_err();
    assert_eq!(e.code, Code::Exist, "{e}");
    assert!(!e.message.is_empty());
    assert_eq!(t.backup("").unwrap_err().code, Code::Inval);

    // The copy is a wfengine database holding the jobs.
    let c = copy.to_str().unwrap();
    {
        let r = Engine::open(c, &json!({"read_only": true})).unwrap();
        let keys: HashSet<String> = r
            .items(Listing::Jobs, &json!({"limit": 7}))
            .map(|j| j.unwrap()["key"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(keys.len(), 20);
        assert!(keys.contains("k0") && keys.contains("k19"));
        assert_eq!(r.check(&Value::Null).unwrap()["ok"], true);
        r.close().unwrap();
    }
    // And a writable engine can run on it (restore = open the copy).
    {
        let w = Engine::open(c, &Value::Null).unwrap();
        assert_eq!(w.stats(&Value::Null).unwrap()["outbox"]["ready"], 20);
        w.close().unwrap();
    }
    remove_db(c);
}

#[test]
fn bad_filters_are_errors_naming_the_key() {
    let t = te();
    type List = fn(&TestEngine, &Value) -> wfengine::Result<Value>;
    let lists: [(&str, List); 4] = [
        ("jobs", |t, f| t.jobs_list(f)),
        ("schedules", |t, f| t.schedules_list(f)),
        ("sagas", |t, f| t.sagas_list(f)),
        ("events", |t, f| t.events_list(f)),
    ];
    for (name, list) in lists {
        let e = list(&t, &json!({"bogus_key": 1})).unwrap_err();
        assert_eq!(e.code, Code::Inval, "{name}: {e}");
        assert!(e.message.contains("bogus_key"), "{name}: {e}");
        let e = list(&t, &json!({"limit": 0})).unwrap_err();
        assert_eq!(e.code, Code::Inval, "{name}: {e}");
        assert!(e.message.contains("limit"), "{name}: {e}");
        let e = list(&t, &json!({"cursor": "not a cursor"})).unwrap_err();
        assert_eq!(e.code, Code::Inval, "{name}: {e}");
    }
    let e = t.jobs_list(&json!({"state": "sleeping"})).unwrap_err();
    assert!(e.message.contains("state"), "{e}");
    let e = t.jobs_list(&json!({"since": "yesterday-ish"})).unwrap_err();
    assert!(e.message.contains("since"), "{e}");
    let e = t.jobs_list(&json!(["not", "an", "object"])).unwrap_err();
    assert_eq!(e.code, Code::Inval, "{e}");
    // The iterators yield the error once, then end.
    let mut it = t.items(Listing::Jobs, &json!({"bogus_key": 1}));
    let e = it.next().unwrap().unwrap_err();
    assert!(e.message.contains("bogus_key"), "{e}");
    assert!(it.next().is_none());
    assert_eq!(t.pages(Listing::Events, &json!({"x": 1})).count(), 1);
    // A NUL byte never reaches the library.
    assert_eq!(t.job_get(None, "a\u{0}b").unwrap_err().code, Code::Inval);
}

/// The writer for `read_only_beside_a_writer_process`: opens the file,
/// enqueues 10 jobs, says "ready"; on a line from stdin enqueues 5 more and
/// says "more"; closes on end of input.
#[test]
#[ignore = "run by read_only_beside_a_writer_process as a child process"]
fn read_only_writer_child() {
    let Ok(path) = std::env::var("WF_RO_DB") else {
        return;
    };
    let e = Engine::open(&path, &Value::Null).unwrap();
    e.register_effect("held", &Value::Null, |_job: Job| {
        unreachable!("never enqueued")
    })
    .unwrap();
    e.start().unwrap();
    let jobs: Vec<Value> = (0..10)
        .map(|i| json!({"effect": "x", "key": format!("w{i}")}))
        .collect();
    e.enqueue_batch(&jobs).unwrap();
    println!("ready");
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    if lines.next().is_some() {
        for i in 10..15 {
            e.enqueue(&json!({"effect": "x", "key": format!("w{i}")}))
                .unwrap();
        }
        println!("more");
    }
    for _ in lines {}
    e.close().unwrap();
}

#[test]
fn read_only_beside_a_writer_process() {
    let path = temp_path("readonly");
    let p = path.to_str().unwrap().to_string();
    // A missing file is never created.
    let e = Engine::open(&p, &json!({"read_only": true})).unwrap_err();
    assert_eq!(e.code, Code::NotFound, "{e}");
    assert!(!path.exists());

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "read_only_writer_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WF_RO_DB", &p)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Watchdog: a writer that stops talking is killed (its stdout then
    // closes and the wait below fails) instead of hanging the test run.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let pid = child.id().to_string();
    let watchdog = std::thread::spawn(move || {
        let wait = done_rx.recv_timeout(std::time::Duration::from_secs(300));
        if wait == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut wait_for = |word: &str| {
        for line in lines.by_ref() {
            // libtest may print "test <name> ... " before the first line.
            if line.unwrap().trim_end().ends_with(word) {
                return;
            }
        }
        panic!("the writer ended before saying {word}");
    };
    wait_for("ready");

    let r = Engine::open(&p, &json!({"read_only": true})).unwrap();
    assert_eq!(r.items(Listing::Jobs, &Value::Null).count(), 10);
    let en = r.engines_list().unwrap();
    let engines = items(&en, "engines");
    assert_eq!(engines.len(), 1, "{en}");
    assert_eq!(engines[0]["pid"], child.id(), "{en}");
    assert_eq!(engines[0]["live"], true, "{en}");
    assert!(engines[0]["effects"].to_string().contains("held"), "{en}");
    assert_eq!(r.stats(&Value::Null).unwrap()["outbox"]["ready"], 10);
    assert!(r.metrics().unwrap().contains("wfengine_"));
    assert_eq!(r.check(&Value::Null).unwrap()["ok"], true);

    // Writes are refused; the writer goes on and the reader sees it.
    let e = r.enqueue(&json!({"effect": "x"})).unwrap_err();
    assert_eq!(e.code, Code::State, "{e}");
    assert!(e.message.contains("read_only"), "{e}");
    assert_eq!(r.start().unwrap_err().code, Code::State);
    assert_eq!(r.begin().err().map(|e| e.code), Some(Code::State));
    assert_eq!(r.cancel("", "w0").unwrap_err().code, Code::State);
    writeln!(stdin, "go").unwrap();
    wait_for("more");
    let keys: HashSet<String> = r
        .items(Listing::Jobs, &json!({"limit": 4}))
        .map(|j| j.unwrap()["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 15);
    assert_eq!(r.job_get(Some(""), "w14").unwrap()["state"], "ready");
    let copy = temp_path("robackup");
    r.backup(&copy).unwrap();
    r.close().unwrap();

    drop(stdin);
    assert!(child.wait().unwrap().success());
    done_tx.send(()).unwrap();
    watchdog.join().unwrap();
    let b = Engine::open(copy.to_str().unwrap(), &json!({"read_only": true})).unwrap();
    assert_eq!(b.items(Listing::Jobs, &Value::Null).count(), 15);
    b.close().unwrap();
    remove_db(copy.to_str().unwrap());
    remove_db(&p);
}

/// One HTTP/1.0 GET to 127.0.0.1:port; returns the whole response.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn admin_listen_serves_metrics() {
    let t = TestEngine::new(&json!({"admin_listen": "127.0.0.1:0"})).unwrap();
    t.register_effect("noop", &Value::Null, |job: Job| {
        job.complete(&Value::Null).unwrap()
    })
    .unwrap();
    t.start().unwrap();
    t.enqueue(&json!({"effect": "noop"})).unwrap();
    t.settle().unwrap();
    let port = t.stats(&Value::Null).unwrap()["engine"]["admin_port"]
        .as_u64()
        .expect("admin_port");
    assert!(port > 0);
    let m = t.metrics().unwrap();
    assert!(m.contains("wfengine_jobs_completed_total"), "{m}");
    let resp = http_get(port as u16, "/metrics");
    assert!(
        resp.starts_with("HTTP/1.") && resp.contains(" 200"),
        "{resp}"
    );
    assert!(resp.contains("wfengine_jobs_completed_total"), "{resp}");
    let health = http_get(port as u16, "/health");
    assert!(health.contains(" 200"), "{health}");
    // A bad address is an error naming the option.
    let p = temp_path("badadmin");
    let e = Engine::open(
        p.to_str().unwrap(),
        &json!({"admin_listen": "not an address"}),
    )
    .unwrap_err();
    assert_eq!(e.code, Code::Inval, "{e}");
    assert!(e.message.contains("admin_listen"), "{e}");
    remove_db(p.to_str().unwrap());
}
