from __future__ import annotations

import os
import subprocess
import sys


def test_missing_library_names_where_it_looked() -> None:
    env = dict(os.environ, WFENGINE_LIBRARY="/nonexistent/libwfengine.so")
    r = subprocess.run([sys.executable, "-c", "import wfengine"], env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "LibraryNotFound" in r.stderr
    assert "/nonexistent/libwfengine.so (absent)" in r.stderr
    assert "WFENGINE_LIBRARY" in r.stderr
