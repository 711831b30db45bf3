"""Smoke program of check_package.sh, run by the Python of a fresh virtualenv into which
`pip install ./bindings/python` put the package, without WFENGINE_LIBRARY: the library
bundled in the package loads, and one job runs through it."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

import wfengine


def main() -> None:
    assert "WFENGINE_LIBRARY" not in os.environ, "the check runs without WFENGINE_LIBRARY"
    pkg = Path(wfengine.__file__).resolve().parent
    assert Path(sys.prefix).resolve() in pkg.parents, f"wfengine imported from {pkg}, not the virtualenv"
    bundled = pkg / "lib" / "libwfengine.so"
    assert Path(wfengine.library_path) == bundled, f"loaded {wfengine.library_path}, not {bundled}"
    print(f"wf_version {wfengine.version()} from {wfengine.library_path}")

    done = threading.Event()
    seen: list[str] = []

    def hello(job: wfengine.Job) -> None:
        seen.append(job.payload["name"])
        job.complete({"ok": True})
        done.set()

    with tempfile.TemporaryDirectory() as d, wfengine.Engine(os.path.join(d, "smoke.db")) as engine:
        engine.register_effect("hello", hello)
        engine.start()
        jid = engine.enqueue({"effect": "hello", "key": "smoke", "payload": {"name": "wheel"}})
        assert done.wait(60), "the job did not run"
        engine.drain(30_000)
        assert seen == ["wheel"]
        assert engine.job_get(jid)["state"] == "completed"
    print(f"job {jid} ran through the bundled library")


if __name__ == "__main__":
    main()
