from __future__ import annotations

import asyncio
import gc
import json
import threading
from typing import Any, Dict, List, Optional

import pytest

import wfengine
from wfengine import Engine, Fail, Job, Retry
from wfengine.testing import TestEngine


def test_version_and_library() -> None:
    assert wfengine.version().startswith("0.1.")
    assert wfengine.library_path.endswith(".so") or ".so." in wfengine.library_path


def test_enqueue_callback_complete(engine: TestEngine) -> None:
    seen: List[Dict[str, Any]] = []

    def send(job: Job) -> None:
        seen.append({"id": job.id, "key": job.key, "payload": job.payload, "attempt": job.attempt})
        job.complete({"sent": True})

    engine.register_effect("email", send)
    jid = engine.enqueue({"effect": "email", "key": "k1", "payload": {"to": "a@example.com"}})
    s = engine.settle()
    assert seen == [{"id": jid, "key": "k1", "payload": {"to": "a@example.com"}, "attempt": 1}]
    assert s["engine"]["completed"] == 1
    with pytest.raises(wfengine.ExistsError) as ei:
        engine.enqueue({"effect": "email", "key": "k1"})
    assert ei.value.existing_id == jid


def test_return_value_completes_and_complete_from_other_thread(engine: TestEngine) -> None:
    held: List[Job] = []
    got = threading.Event()

    def keep(job: Job) -> None:
        held.append(job)
        got.set()

    engine.register_effect("ret", lambda job: {"ok": 1})
    engine.register_effect("later", keep)
    engine.enqueue({"effect": "ret"})
    engine.enqueue({"effect": "later"})
    assert got.wait(30)
    t = threading.Thread(target=held[0].complete, args=({"late": True},))
    t.start()
    t.join()
    with pytest.raises(wfengine.StateError):
        held[0].complete()
    s = engine.settle()
    assert s["engine"]["completed"] == 2


def test_retry_then_success(engine: TestEngine) -> None:
    attempts: List[int] = []

    def flaky(job: Job) -> None:
        attempts.append(job.attempt)
        if job.attempt < 3:
            raise Retry("not yet", delay_ms=60_000)
        job.complete()

    engine.register_effect("flaky", flaky)
    engine.enqueue({"effect": "flaky"})
    s = engine.settle()
    assert attempts == [1] and s["outbox"]["scheduled"] == 1
    engine.advance(60_000)
    engine.settle()
    assert attempts == [1, 2]
    engine.advance(60_000)
    s = engine.settle()
    assert attempts == [1, 2, 3]
    assert s["engine"]["completed"] == 1 and s["engine"]["retried"] == 2


def test_raising_callback_becomes_retry_with_error_text(engine: TestEngine) -> None:
    def boom(job: Job) -> None:
        raise RuntimeError("kaboom")

    engine.register_effect("boom", boom, {"max_attempts": 2, "backoff": {"base_ms": 10, "cap_ms": 10, "jitter": "none"}})
    engine.enqueue({"effect": "boom"})
    engine.settle()
    engine.advance(1000)
    engine.settle()
    dead = engine.dead_list()
    assert len(dead) == 1
    assert "kaboom" in json.dumps(dead[0])


def test_dropped_handle_becomes_retry(engine: TestEngine) -> None:
    calls: List[int] = []

    def forget(job: Job) -> None:
        calls.append(job.attempt)  # neither completes nor keeps the job

    engine.register_effect("forget", forget, {"max_attempts": 1})
    engine.enqueue({"effect": "forget"})
    gc.collect()
    engine.settle()
    dead = engine.dead_list()
    assert calls == [1] and len(dead) == 1
    assert "dropped without completion" in json.dumps(dead[0])


def test_dead_letter_requeue_purge(engine: TestEngine) -> None:
    ok = {"v": False}

    def h(job: Job) -> None:
        if not ok["v"]:
            raise Fail("permanent")
        job.complete()

    engine.register_effect("pay", h)
    engine.enqueue({"effect": "pay", "tenant": "t1"})
    s = engine.settle()
    assert s["dead"] == 1
    assert engine.dead_list({"tenant": "t1"})[0]["reason"].find("permanent") >= 0
    ok["v"] = True
    assert engine.dead_requeue({"tenant": "t1"}) == 1
    s = engine.settle()
    assert s["dead"] == 0 and s["engine"]["completed"] == 1
    engine.register_effect("never", lambda job: job.fail("no"))
    engine.enqueue({"effect": "never"})
    engine.settle()
    assert engine.dead_purge({"effect": "never"}) == 1
    assert engine.dead_list() == []


def test_host_tx_rollback_and_commit(engine: TestEngine) -> None:
    with engine.transaction() as tx:
        tx.exec("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
    with pytest.raises(RuntimeError):
        with engine.transaction() as tx:
            tx.exec("INSERT INTO orders (item) VALUES (?)", ["lost"])
            tx.enqueue({"effect": "ship", "payload": {"item": "lost"}})
            raise RuntimeError("abort")
    with engine.transaction() as tx:
        tx.exec("INSERT INTO orders (item) VALUES (?)", ["kept"])
        jid = tx.enqueue({"effect": "ship", "payload": {"item": "kept"}})
    shipped: List[str] = []
    
    def ship(job: Job) -> Dict[str, Any]:
        shipped.append(job.id)
        return {}

    engine.register_effect("ship", ship)
    engine.settle()
    assert shipped == [jid]
    with engine.transaction() as tx:
        rows = tx.exec("SELECT item FROM orders ORDER BY id")
    assert rows == [{"item": "kept"}]
    tx2 = engine.transaction()
    tx2.rollback()
    assert tx2.finished


def test_saga_with_python_reducer(engine: TestEngine) -> None:
    def reducer(inp: Dict[str, Any]) -> Dict[str, Any]:
        ev = inp["event"]
        state = inp["state"] or {"steps": []}
        state["steps"].append(ev["type"])
        if ev["type"] == "order.placed":
            return {"state": state, "commands": [{"effect": "charge", "payload": ev["payload"]}]}
        if ev["type"] == "charge.completed":
            return {"state": state, "done": True}
        return {"state": state}

    engine.register_saga("order", {"start": ["order.placed"]}, reducer)
    engine.register_effect("charge", lambda job: {"charged": job.payload["amount"]})
    engine.submit({"event_id": "o1:placed", "type": "order.placed", "correlation_id": "o1", "payload": {"amount": 5}})
    with pytest.raises(wfengine.ExistsError):
        engine.submit({"event_id": "o1:placed", "type": "order.placed", "correlation_id": "o1"})
    engine.settle()
    got = engine.saga_get("order", "o1")
    assert got["status"] == "done"
    assert got["state"]["steps"] == ["order.placed", "charge.completed"]
    replay = engine.saga_replay("order", "o1")
    assert replay["state"]["steps"] == ["order.placed", "charge.completed"] and replay["done"]


def test_raising_reducer_parks_event(engine: TestEngine) -> None:
    def reducer(inp: Dict[str, Any]) -> Dict[str, Any]:
        raise ValueError("bad reducer")

    engine.register_saga("s", {"start": ["go"]}, reducer)
    engine.submit({"event_id": "e1", "type": "go", "correlation_id": "c"})
    s = engine.settle()
    assert s["dead"] == 1


def test_schedule_fires_on_virtual_clock(engine: TestEngine) -> None:
    fired: List[str] = []
    
    def tick(job: Job) -> Dict[str, Any]:
        fired.append(job.key)
        return {}

    engine.register_effect("tick", tick)
    engine.schedule({"key": "every-minute", "cron": "* * * * *", "job": {"effect": "tick"}})
    engine.settle()
    assert fired == []
    engine.advance(60_000)
    engine.settle()
    assert len(fired) == 1
    engine.unschedule("every-minute")
    engine.advance(120_000)
    engine.settle()
    assert len(fired) == 1
    with pytest.raises(wfengine.NotFoundError):
        engine.unschedule("every-minute")


def test_bad_input_errors(engine: TestEngine) -> None:
    with pytest.raises(wfengine.InvalidError) as ei:
        engine.enqueue({"payload": {}})
    assert "effect" in ei.value.message and ei.value.code == -1
    with pytest.raises(wfengine.InvalidError):
        engine.enqueue("{not json")
    with pytest.raises(wfengine.InvalidError):
        engine.stats({"bogus": 1})
    with pytest.raises(wfengine.NotFoundError):
        engine.cancel("no-such-job")
    with pytest.raises(wfengine.InvalidError):
        engine.enqueue_async({"nope": 1}, lambda err, id_: None)
    with pytest.raises(wfengine.ExistsError):
        engine.register_effect("x", lambda j: None)
        engine.register_effect("x", lambda j: None)
    with pytest.raises(wfengine.InvalidError):
        Engine(":memory:")


def test_enqueue_batch_async_cancel(engine: TestEngine) -> None:
    res = engine.enqueue_batch([{"effect": "b", "key": "a"}, {"effect": "b", "key": "a"}])
    assert len(res) == 2 and res[1]["existing"] is True
    fut = engine.enqueue_future({"effect": "b", "key": "z"})
    jid = fut.result(timeout=30)
    engine.cancel(jid)
    errs: List[Optional[wfengine.WfError]] = []
    done = threading.Event()

    def cb(err: Optional[wfengine.WfError], id_: Optional[str]) -> None:
        errs.append(err)
        done.set()

    engine.enqueue_async({"effect": "b", "key": "a"}, cb)
    assert done.wait(30)
    assert isinstance(errs[0], wfengine.ExistsError)
    s = engine.stats({"effect": "b"})
    assert s["outbox"]["ready"] == 1


def test_many_threads_enqueue_while_callbacks_run(engine: TestEngine) -> None:
    n_threads, per = 8, 100
    lock = threading.Lock()
    seen: set[str] = set()

    def h(job: Job) -> None:
        with lock:
            seen.add(job.payload["k"])
        job.complete()

    engine.register_effect("w", h)

    def producer(t: int) -> None:
        for i in range(per):
            if i % 2:
                engine.enqueue({"effect": "w", "payload": {"k": f"{t}-{i}"}})
            else:
                engine.enqueue_async({"effect": "w", "payload": {"k": f"{t}-{i}"}})

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = engine.settle()
    assert len(seen) == n_threads * per
    assert s["engine"]["completed"] == n_threads * per


def test_async_handler_on_host_loop() -> None:
    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    try:
        with TestEngine(loop=loop) as e:

            async def h(job: Job) -> Dict[str, Any]:
                await asyncio.sleep(0)
                if job.attempt == 1:
                    raise ValueError("async boom")
                return {"n": job.payload["n"]}

            e.register_effect("a", h, {"backoff": {"base_ms": 10, "cap_ms": 10, "jitter": "none"}})
            e.enqueue({"effect": "a", "payload": {"n": 1}})
            e.settle()
            e.advance(1000)
            s = e.settle()
            assert s["engine"]["completed"] == 1 and s["engine"]["retried"] == 1
    finally:
        loop.call_soon_threadsafe(loop.stop)
        th.join()
        loop.close()


def test_logger_metrics_and_builtin(engine: TestEngine) -> None:
    lines: List[Dict[str, Any]] = []
    got = threading.Event()

    def logger(level: int, line: Dict[str, Any]) -> None:
        lines.append(line)
        got.set()

    engine.set_logger(logger, wfengine.LOG_DEBUG)
    engine.register_effect("boom", lambda job: job.fail("logged failure"))
    engine.enqueue({"effect": "boom"})
    engine.settle()
    assert got.wait(30)
    assert "wf_" in engine.metrics()
    with pytest.raises(wfengine.UnsupportedError):
        engine.register_builtin("nope", {"type": "no-such-provider"})
    with pytest.raises(wfengine.InvalidError):
        engine.register_builtin("hook", {"type": "http"})


def test_close_is_deterministic_and_idempotent(tmp_path: Any) -> None:
    e = Engine(str(tmp_path / "x.db"))
    e.close()
    e.close()
    with pytest.raises(wfengine.ClosedError):
        e.enqueue({"effect": "x"})
    # A forgotten engine is closed by its finalizer.
    f = Engine(str(tmp_path / "y.db"))
    del f
    gc.collect()
    with Engine(str(tmp_path / "y.db")) as g:
        assert g.stats()["outbox"]["ready"] == 0


def test_forgotten_tx_is_rolled_back_by_its_finalizer(engine: TestEngine) -> None:
    with engine.transaction() as tx:
        tx.exec("CREATE TABLE t (v INTEGER)")
    tx = engine.transaction()
    tx.exec("INSERT INTO t VALUES (1)")
    del tx
    gc.collect()
    engine.enqueue({"effect": "after"})  # the writer is free again
    with engine.transaction() as tx2:
        assert tx2.exec("SELECT count(*) AS n FROM t") == [{"n": 0}]


def test_submit_async_and_enqueue_future_from_asyncio(engine: TestEngine) -> None:
    ids: List[Optional[str]] = []
    done = threading.Event()

    def cb(err: Optional[wfengine.WfError], id_: Optional[str]) -> None:
        assert err is None
        ids.append(id_)
        done.set()

    engine.submit_async({"event_id": "ev-1", "type": "nobody.listens"}, cb)
    assert done.wait(30) and ids == ["ev-1"]

    async def enqueue_many() -> List[str]:
        futs = [asyncio.wrap_future(engine.enqueue_future({"effect": "q", "payload": {"i": i}})) for i in range(10)]
        return list(await asyncio.gather(*futs))

    got = asyncio.run(enqueue_many())
    assert len(set(got)) == 10
    assert engine.settle()["events"]["unmatched"] == 1


def test_drain_then_enqueue_is_closed(engine: TestEngine) -> None:
    engine.register_effect("d", lambda job: {})
    engine.enqueue({"effect": "d"})
    engine.settle()
    engine.drain(30_000)
    with pytest.raises(wfengine.ClosedError):
        engine.enqueue({"effect": "d"})


def test_unencodable_result_becomes_retry(engine: TestEngine) -> None:
    engine.register_effect("bad", lambda job: {"x": object()}, {"max_attempts": 1})
    engine.enqueue({"effect": "bad"})
    engine.settle()
    dead = engine.dead_list()
    assert len(dead) == 1 and "TypeError" in json.dumps(dead[0])
