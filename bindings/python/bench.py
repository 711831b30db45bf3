"""Python binding throughput: enqueue (sync, async, batch), listing jobs through the read
API, and end-to-end no-op jobs/s through a Python handler. Usage: python3 bench.py [jobs]. Prints one line per figure.
Opens with {"durability": "full"}, as bench/wf_bench does; compare with wf_bench run
on the same machine at the same time."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time

import wfengine
from wfengine.testing import settle


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with tempfile.TemporaryDirectory() as d:
        with wfengine.Engine(os.path.join(d, "a.db"), {"durability": "full"}) as e:
            t = time.perf_counter()
            for _ in range(min(n, 5000)):
                e.enqueue({"effect": "noop"})
            dt = time.perf_counter() - t
            print(f"enqueue (sync, 1 thread): {min(n, 5000) / dt:,.0f} jobs/s")

            done = threading.Event()
            left = [n]
            lock = threading.Lock()

            def cb(err: wfengine.WfError | None, id_: str | None) -> None:
                with lock:
                    left[0] -= 1
                    if left[0] == 0:
                        done.set()

            t = time.perf_counter()
            for _ in range(n):
                e.enqueue_async({"effect": "noop"}, cb)
            done.wait()
            dt = time.perf_counter() - t
            print(f"enqueue_async (1 thread, callback each): {n / dt:,.0f} jobs/s")

            batch = [{"effect": "noop"}] * 1000
            t = time.perf_counter()
            for _ in range(max(1, n // 1000)):
                e.enqueue_batch(batch)
            dt = time.perf_counter() - t
            print(f"enqueue_batch of 1,000: {max(1, n // 1000) * 1000 / dt:,.0f} jobs/s")

            t = time.perf_counter()
            listed = sum(1 for _ in e.iter_jobs(limit=1000))
            dt = time.perf_counter() - t
            print(f"read API: iter_jobs over {listed:,} jobs, pages of 1,000: {listed / dt:,.0f} jobs/s")

        with wfengine.Engine(os.path.join(d, "b.db"), {"durability": "full"}) as e:
            e.enqueue_batch([{"effect": "noop"}] * n)
            e.register_effect("noop", lambda job: job.complete())
            t = time.perf_counter()
            e.start()
            settle(e, 600)
            dt = time.perf_counter() - t
            print(f"end to end, {n:,} no-op jobs through a Python handler: {n / dt:,.0f} jobs/s")


if __name__ == "__main__":
    main()
