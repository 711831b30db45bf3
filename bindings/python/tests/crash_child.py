"""Child process of test_crash.py: `enqueue` mode enqueues the jobs and serves them,
printing a line per completion until it is killed; `finish` mode serves what is left."""

from __future__ import annotations

import os
import sys

import wfengine
from wfengine.testing import settle


def main() -> None:
    mode, db, log_path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    out = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    engine = wfengine.Engine(db)

    def work(job: wfengine.Job) -> None:
        os.write(out, (job.key + "\n").encode())  # the effect, before the completion
        job.complete()
        print("done", job.key, flush=True)

    engine.register_effect("work", work, {"concurrency": 4})
    if mode == "enqueue":
        engine.enqueue_batch([{"effect": "work", "key": f"k{i}"} for i in range(n)])
        print("enqueued", flush=True)
    engine.start()
    if mode == "enqueue":
        sys.stdin.read()  # killed by the parent meanwhile
    settle(engine, 60)
    engine.close()
    print("finished", flush=True)


if __name__ == "__main__":
    main()
