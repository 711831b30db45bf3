"""The read API (jobs, schedules, sagas, events, engines, check, backup), read-only
engines, the admin endpoint and metrics through the binding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

import wfengine
from wfengine import Engine, Job
from wfengine.testing import TestEngine, settle

WRITER = str(Path(__file__).with_name("read_writer_child.py"))


def _keys(items: List[Dict[str, Any]]) -> List[str]:
    return [str(i["key"]) for i in items]


def _fill(engine: TestEngine) -> List[Job]:
    """Jobs in every state: 4 ready (effect "mail", tenants "" and "t1"), 1 scheduled,
    1 running (held; returned), 1 dead."""
    held: List[Job] = []
    got = threading.Event()

    def hold(job: Job) -> None:
        held.append(job)
        got.set()

    engine.register_effect("bad", lambda job: job.fail("broken for good"))
    for i in range(4):
        engine.enqueue({"effect": "mail", "key": f"m{i}", "tenant": "t1" if i % 2 else "", "payload": {"i": i}})
    engine.enqueue({"effect": "mail", "key": "later", "delay_ms": 60_000})
    engine.enqueue({"effect": "bad", "key": "b"})
    engine.settle()  # before a job is held: settle() counts a held job as running
    engine.register_effect("hold", hold)
    engine.enqueue({"effect": "hold", "key": "h"})
    assert got.wait(30)
    engine.sync()
    return held


def test_jobs_list_filters_states_and_paging(engine: TestEngine) -> None:
    held = _fill(engine)
    page = engine.jobs_list()
    assert set(page) == {"jobs", "next_cursor", "now"} and page["next_cursor"] is None
    assert sorted(_keys(page["jobs"])) == ["h", "later", "m0", "m1", "m2", "m3"]
    assert page["now"] == engine.clock.now()

    by_state = {s: _keys(engine.jobs_list(state=s)["jobs"]) for s in ("ready", "scheduled", "running", "pending", "dead")}
    assert by_state == {
        "ready": ["m0", "m1", "m2", "m3"],
        "scheduled": ["later"],
        "running": ["h"],
        "pending": ["m0", "m1", "m2", "m3", "later"],
        "dead": ["b"],
    }
    dead = engine.jobs_list({"state": "dead"})["jobs"][0]
    assert "broken for good" in dead["reason"] and dead["dead_at"] > 0
    running = engine.jobs_list(state="running")["jobs"][0]
    assert running["lease_owner"] == engine.stats()["engine"]["boot_id"] and running["attempts"] == 1

    assert _keys(engine.jobs_list(effect="hold")["jobs"]) == ["h"]
    assert _keys(engine.jobs_list(tenant="t1")["jobs"]) == ["m1", "m3"]
    assert _keys(engine.jobs_list({"tenant": "t1"}, key="m3")["jobs"]) == ["m3"]
    assert engine.jobs_list('{"effect": "mail", "state": "ready"}')["jobs"][2]["payload"] == {"i": 2}

    # Two pages of 3 through the cursor, then the iterator does the same.
    first = engine.jobs_list(effect="mail", limit=3)
    assert _keys(first["jobs"]) == ["m0", "m1", "m2"] and isinstance(first["next_cursor"], str)
    second = engine.jobs_list(effect="mail", limit=3, cursor=first["next_cursor"])
    assert _keys(second["jobs"]) == ["m3", "later"] and second["next_cursor"] is None
    assert _keys(list(engine.iter_jobs(effect="mail", limit=3))) == ["m0", "m1", "m2", "m3", "later"]
    assert _keys(list(engine.iter_jobs({"state": "pending"}, limit=1))) == ["m0", "m1", "m2", "m3", "later"]
    held[0].complete()


def test_job_get_by_id_and_key(engine: TestEngine) -> None:
    engine.register_effect("done", lambda job: {"ok": True})
    jid = engine.enqueue({"effect": "done", "key": "d1", "tenant": "t1"})
    other = engine.enqueue({"effect": "waiting", "key": "w1"})
    engine.settle()
    got = engine.job_get(jid)
    assert got["id"] == jid and got["state"] == "completed" and got["tenant"] == "t1"
    assert isinstance(got["history"], list) and got["key_expires_at"] > engine.clock.now()
    assert engine.job_get("d1", tenant="t1")["id"] == jid
    assert engine.job_get("w1")["id"] == other and engine.job_get("w1")["state"] == "ready"
    with pytest.raises(wfengine.NotFoundError):
        engine.job_get("d1")  # the key lives in tenant t1, not ""
    with pytest.raises(wfengine.NotFoundError):
        engine.job_get("no-such-job")


def test_schedules_list(engine: TestEngine) -> None:
    engine.schedule({"key": "a", "cron": "*/5 * * * *", "job": {"effect": "tick"}})
    engine.schedule({"key": "b", "tenant": "t1", "delay_ms": 60_000, "job": {"effect": "tick"}})
    engine.schedule({"key": "c", "cron": "0 * * * *", "event": {"type": "hourly"}})
    page = engine.schedules_list()
    assert [(s["tenant"], s["key"]) for s in page["schedules"]] == [("", "a"), ("", "c"), ("t1", "b")]
    a = page["schedules"][0]
    assert a["cron"] == "*/5 * * * *" and a["status"] == "active" and a["next_due"] > engine.clock.now()
    assert a["job"]["effect"] == "tick"
    assert _keys(engine.schedules_list(tenant="t1")["schedules"]) == ["b"]
    assert _keys(engine.schedules_list(key="c")["schedules"]) == ["c"]
    assert engine.schedules_list(status="parked")["schedules"] == []
    first = engine.schedules_list(limit=2)
    assert len(first["schedules"]) == 2 and first["next_cursor"]
    assert _keys(list(engine.iter_schedules(limit=2))) == ["a", "c", "b"]


def test_sagas_events_and_saga_show(engine: TestEngine) -> None:
    def order(inp: Dict[str, Any]) -> Dict[str, Any]:
        ev = inp["event"]
        if ev["type"] == "order.placed":
            return {"state": {"status": "charging"}, "commands": [{"effect": "charge", "payload": ev["payload"]}]}
        return {"state": {"status": "paid"}, "done": True}

    def broken(inp: Dict[str, Any]) -> Dict[str, Any]:
        raise ValueError("reducer bug")

    engine.register_saga("order", {"start": ["order.placed"]}, order)
    engine.register_saga("refund", {"start": ["refund.asked"]}, broken)
    engine.register_effect("charge", lambda job: {"charged": job.payload["amount"]})
    engine.submit({"event_id": "o1:placed", "type": "order.placed", "correlation_id": "o1", "payload": {"amount": 5}})
    engine.submit({"event_id": "o2:placed", "type": "order.placed", "correlation_id": "o2", "payload": {"amount": 7}})
    engine.submit({"event_id": "r1:asked", "type": "refund.asked", "correlation_id": "r1"})
    engine.submit({"event_id": "x1", "type": "nobody.listens"})
    engine.settle()

    sagas = engine.sagas_list()["sagas"]
    assert [(s["saga"], s["correlation_id"], s["status"]) for s in sagas] == [
        ("order", "o1", "done"),
        ("order", "o2", "done"),
        ("refund", "r1", "new"),  # its first event is parked: no instance yet
    ]
    assert [s["correlation_id"] for s in engine.sagas_list(saga="order", status="done")["sagas"]] == ["o1", "o2"]
    assert engine.sagas_list(status="parked")["sagas"][0]["parked"] == 1
    assert [s["correlation_id"] for s in engine.iter_sagas(limit=1)] == ["o1", "o2", "r1"]

    shown = engine.saga_show("order", "o1")
    assert shown["status"] == "done" and shown["state"] == {"status": "paid"}
    assert [a["type"] for a in shown["applied"]] == ["order.placed", "charge.completed"]
    assert shown["pending"] == []
    parked = engine.saga_show("refund", "r1")
    assert parked["pending"][0]["status"] == "parked" and "reducer" in json.dumps(parked["pending"][0])
    with pytest.raises(wfengine.NotFoundError):
        engine.saga_show("order", "nope")

    events = engine.events_list()["events"]
    host = [e["event_id"] for e in events if not e["event_id"].startswith("job:")]  # not the completions
    assert host == ["o1:placed", "o2:placed", "r1:asked", "x1"]
    assert [e["event_id"] for e in engine.events_list(status="unmatched")["events"]] == ["x1"]
    assert [e["event_id"] for e in engine.events_list(status="parked")["events"]] == ["r1:asked"]
    assert [e["event_id"] for e in engine.events_list(correlation_id="o1", type="order.placed")["events"]] == [
        "o1:placed"
    ]
    assert len(list(engine.iter_events(limit=2))) == len(events)


def test_engines_list_check_and_bad_filters(engine: TestEngine) -> None:
    engine.register_effect("mail", lambda job: {})
    engine.sync()  # the registration reaches the file through the writer
    engines = engine.engines_list()
    assert set(engines) == {"engines", "now"} and len(engines["engines"]) == 1
    me = engines["engines"][0]
    assert me["live"] is True and me["liveness"] == "this engine" and me["pid"] == os.getpid()
    assert me["effects"] == ["mail"] and me["boot_id"] == engine.stats()["engine"]["boot_id"]

    report = engine.check()
    assert report["ok"] is True and report["problems"] == [] and "integrity_check" in report["checks"]
    assert engine.check(quick=True)["ok"] is True

    calls: List[Tuple[Callable[[], Any], str]] = [
        (lambda: engine.jobs_list(bogus=1), "bogus"),
        (lambda: engine.jobs_list({"state": "sleeping"}), "state"),
        (lambda: list(engine.iter_jobs(colour="red")), "colour"),
        (lambda: engine.schedules_list(bogus=1), "bogus"),
        (lambda: engine.sagas_list(bogus=1), "bogus"),
        (lambda: engine.events_list(bogus=1), "bogus"),
        (lambda: engine.check({"bogus": True}), "bogus"),
    ]
    for call, key in calls:
        with pytest.raises(wfengine.InvalidError) as ei:
            call()
        assert ei.value.code == -1 and ei.value.call.startswith("wf_")
        assert key in ei.value.message and key in str(ei.value)
    with pytest.raises(wfengine.InvalidError) as ei:
        engine.jobs_list(limit=0)
    assert "limit" in ei.value.message
    with pytest.raises(wfengine.InvalidError):
        engine.jobs_list("[1, 2]")


def test_backup_creates_a_copy_and_never_overwrites(engine: TestEngine, tmp_path: Path) -> None:
    ids = [engine.enqueue({"effect": "mail", "key": f"k{i}"}) for i in range(3)]
    dest = tmp_path / "backup.db"
    engine.backup(dest)
    assert dest.exists() and (dest.stat().st_mode & 0o777) == 0o600
    size = dest.stat().st_size
    engine.enqueue({"effect": "mail", "key": "after"})
    with pytest.raises(wfengine.ExistsError) as ei:
        engine.backup(str(dest))
    assert str(dest) in ei.value.message and dest.stat().st_size == size
    with Engine(str(dest), {"read_only": True}) as copy:
        assert copy.check()["ok"] is True
        assert [j["id"] for j in copy.iter_jobs()] == ids
    with Engine(str(dest)) as writable:  # a backup is a wfengine database: it opens and runs
        assert writable.stats()["outbox"]["ready"] == 3


def test_read_only_engine_on_a_file_another_process_writes(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")
    child = subprocess.Popen(
        [sys.executable, WRITER, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None

    def say(cmd: str) -> str:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(cmd + "\n")
        child.stdin.flush()
        return child.stdout.readline().strip()

    try:
        assert child.stdout.readline().strip() == "ready"
        assert say("enqueue 3") == "ok"
        with Engine(db, {"read_only": True}) as ro:
            assert _keys(ro.jobs_list(effect="w")["jobs"]) == ["w0", "w1", "w2"]
            assert say("enqueue 2") == "ok"
            assert _keys(list(ro.iter_jobs(effect="w", limit=2))) == ["w0", "w1", "w2", "w3", "w4"]
            assert ro.job_get("w4")["payload"] == {"n": 4}
            assert ro.stats()["outbox"]["ready"] == 5
            assert "wfengine_" in ro.metrics()
            writer = ro.engines_list()["engines"]
            assert len(writer) == 1 and writer[0]["pid"] == child.pid
            assert writer[0]["live"] is True and writer[0]["effects"] == ["idle"]
            assert ro.check()["ok"] is True
            ro.backup(tmp_path / "from-read-only.db")
            writes: List[Callable[[], Any]] = [
                lambda: ro.enqueue({"effect": "w"}),
                lambda: ro.schedule({"key": "s", "delay_ms": 1, "job": {"effect": "w"}}),
                lambda: ro.submit({"event_id": "e", "type": "t"}),
                lambda: ro.transaction(),
                lambda: ro.start(),
                lambda: ro.dead_purge(),
            ]
            for write in writes:
                with pytest.raises(wfengine.StateError):
                    write()
            ro.sync()  # return at once on a read-only engine
            ro.drain(1000)
        assert say("quit") == "closed"
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(60)
    assert child.returncode == 0
    with Engine(str(tmp_path / "from-read-only.db"), {"read_only": True}) as copy:
        assert len(list(copy.iter_jobs())) == 5
    with pytest.raises(wfengine.NotFoundError):
        Engine(str(tmp_path / "missing.db"), {"read_only": True})
    assert not (tmp_path / "missing.db").exists()


def test_admin_listen_serves_the_metrics(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "admin.db"), {"admin_listen": "127.0.0.1:0"}) as e:
        e.register_effect("mail", lambda job: {})
        e.start()
        e.enqueue({"effect": "mail"})
        settle(e)
        port = e.stats()["engine"]["admin_port"]
        assert isinstance(port, int) and port > 0
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
        with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            served = r.read().decode()
        assert r.status == 200
        local = e.metrics()
        assert 'wfengine_jobs_completed_total{effect="mail"} 1' in local
        assert 'wfengine_jobs_completed_total{effect="mail"} 1' in served
    with pytest.raises(wfengine.InvalidError) as ei:
        Engine(str(tmp_path / "bad.db"), {"admin_listen": "not-an-address"})
    assert "admin_listen" in ei.value.message
