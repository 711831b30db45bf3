"""Test helpers: an engine on a temporary file with a virtual clock, and settle()."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from typing import Any, Dict, Optional

from .engine import Engine, Json


class VirtualClock:
    """A wall clock the test moves. Engine timers, retries, cron and retention read it."""

    def __init__(self, start_ms: int = 1_800_000_000_000) -> None:
        self._now = start_ms
        self._lock = threading.Lock()
        self.engine: Optional[Engine] = None

    def now(self) -> int:
        with self._lock:
            return self._now

    def advance(self, ms: int) -> None:
        """Moves the clock forward and wakes the engine so due timers fire."""
        with self._lock:
            self._now += ms
        if self.engine is not None and not self.engine.closed:
            self.engine.wake()


class TestEngine(Engine):
    """An Engine on a fresh file in a temporary directory, on a VirtualClock, started.
    settle() runs it until nothing is ready or due."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        options: Optional[Json] = None,
        *,
        start_ms: int = 1_800_000_000_000,
        directory: Optional[str] = None,
        **kw: Any,
    ) -> None:
        self._tmp: Optional[tempfile.TemporaryDirectory[str]] = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="wfengine-")
            directory = self._tmp.name
        super().__init__(os.path.join(directory, "wf.db"), options, **kw)
        self.clock = VirtualClock(start_ms)
        self.clock.engine = self
        self.set_clock(self.clock.now)
        self.start()

    def advance(self, ms: int) -> None:
        self.clock.advance(ms)

    def settle(self, timeout_s: float = 30.0) -> Dict[str, Any]:
        """Runs until no job of a registered effect is ready or running, no schedule is
        due and no saga event or async enqueue is pending; returns the final stats.
        Jobs the host still holds count as running (complete them first)."""
        return settle(self, timeout_s)

    def close(self) -> None:
        super().close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _busy(e: Engine, s: Dict[str, Any]) -> int:
    ob = s.get("outbox", {})
    eng = s.get("engine", {})
    n = int(ob.get("running", 0)) + int(eng.get("inflight", 0)) + int(eng.get("async_pending", 0))
    n += int(s.get("schedules", {}).get("due", 0)) + int(s.get("events", {}).get("pending", 0))
    by_effect = ob.get("by_effect", {})
    for name in e._effects:
        n += int(by_effect.get(name, {}).get("ready", 0))
    return n


def settle(e: Engine, timeout_s: float = 30.0) -> Dict[str, Any]:
    """Wakes, syncs and reads stats until the engine has nothing ready or due (twice in a
    row, so a completion's follow-up — a saga step, a retry — is seen). Polls: the
    engine has no "idle" signal."""
    deadline = time.monotonic() + timeout_s
    idle = 0
    pause = 0.0005
    while True:
        e.wake()
        e.sync()
        s = e.stats()
        if _busy(e, s) == 0:
            idle += 1
            if idle >= 2:
                return s
        else:
            idle = 0
        if time.monotonic() > deadline:
            raise TimeoutError(f"wfengine: engine did not settle in {timeout_s} s: {s}")
        time.sleep(pause)
        pause = min(pause * 2, 0.01)
