from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import wfengine

CHILD = str(Path(__file__).with_name("crash_child.py"))


def test_killed_host_restarts_and_loses_nothing(tmp_path: Path) -> None:
    db, log, n = str(tmp_path / "crash.db"), str(tmp_path / "effects.log"), 300
    child = subprocess.Popen(
        [sys.executable, CHILD, "enqueue", db, log, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    done = 0
    for line in child.stdout:
        if line.startswith("done"):
            done += 1
            if done == 25:
                break
    os.kill(child.pid, signal.SIGKILL)  # mid-run: jobs ready, running and completed
    child.wait()
    assert child.returncode == -signal.SIGKILL

    again = subprocess.run(
        [sys.executable, CHILD, "finish", db, log, str(n)], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.rstrip().endswith("finished")
    keys = set(Path(log).read_text().split())
    assert keys == {f"k{i}" for i in range(n)}  # every effect ran at least once
    with wfengine.Engine(db) as e:
        s = e.stats()
        assert s["outbox"]["ready"] == 0 and s["outbox"]["running"] == 0 and s["dead"] == 0
