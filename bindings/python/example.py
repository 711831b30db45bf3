"""wfengine from Python: a host transaction writes an order and enqueues its e-mail
atomically, an effect handler sends it (failing once, then retried), a saga charges the
order through an effect and finishes on its outcome. Run from the repository root:

    WFENGINE_LIBRARY=build/libwfengine.so PYTHONPATH=bindings/python python3 bindings/python/example.py
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any, Dict

import wfengine


def main() -> None:
    with tempfile.TemporaryDirectory() as d, wfengine.Engine(os.path.join(d, "shop.db")) as engine:
        done = threading.Event()
        sent = threading.Event()

        def send_email(job: wfengine.Job) -> None:
            if job.attempt == 1:
                raise wfengine.Retry("smtp busy", delay_ms=10)  # runs again in 10 ms
            print(f"email to {job.payload['to']} (attempt {job.attempt})")
            job.complete({"message_id": f"m-{job.id}"})
            sent.set()

        def charge(job: wfengine.Job) -> Dict[str, Any]:
            return {"charged": job.payload["amount"]}  # the return value completes the job

        def order_saga(inp: Dict[str, Any]) -> Dict[str, Any]:
            ev = inp["event"]
            if ev["type"] == "order.placed":
                return {"state": {"status": "charging"},
                        "commands": [{"effect": "charge", "payload": ev["payload"]}]}
            if ev["type"] == "charge.completed":
                done.set()
                return {"state": {"status": "paid"}, "done": True}
            return {"state": inp["state"]}

        engine.register_effect("email", send_email)
        engine.register_effect("charge", charge)
        engine.register_saga("order", {"start": ["order.placed"]}, order_saga)
        engine.start()

        with engine.transaction() as tx:  # commits on exit, rolls back on an exception
            tx.exec("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, amount INTEGER)")
            tx.exec("INSERT INTO orders VALUES (?, ?)", ["o-1", 42])
            tx.enqueue({"effect": "email", "key": "o-1:confirm", "payload": {"to": "ann@example.com"}})
            tx.submit({"event_id": "o-1:placed", "type": "order.placed", "correlation_id": "o-1",
                       "payload": {"amount": 42}})

        if not (done.wait(30) and sent.wait(30)):
            raise SystemExit("saga or e-mail did not finish")
        engine.drain(30_000)  # stops claiming and waits for jobs in flight
        print("saga:", engine.saga_get("order", "o-1")["state"])
        print("completed:", engine.stats()["engine"]["completed"])
        # The read API: the saga's applied events and the e-mail job (remembered by its key).
        print("applied:", [a["type"] for a in engine.saga_show("order", "o-1")["applied"]])
        print("e-mail job:", engine.job_get("o-1:confirm")["state"])


if __name__ == "__main__":
    main()
