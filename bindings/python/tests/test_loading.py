from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

import wfengine
from wfengine import _lib


def test_missing_library_names_where_it_looked() -> None:
    env = dict(os.environ, WFENGINE_LIBRARY="/nonexistent/libwfengine.so")
    r = subprocess.run([sys.executable, "-c", "import wfengine"], env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "LibraryNotFound" in r.stderr
    assert "/nonexistent/libwfengine.so (absent)" in r.stderr
    assert "WFENGINE_LIBRARY" in r.stderr


PACKAGE = Path(__file__).resolve().parent.parent / "wfengine"


def _copy_package(dest: Path, bundle: bool) -> Path:
    """A copy of the package in dest/site/wfengine, with the library bundled in it as the
    wheel does (wfengine/lib/libwfengine.so) when `bundle`."""
    site = dest / "site"
    shutil.copytree(PACKAGE, site / "wfengine", ignore=shutil.ignore_patterns("lib", "__pycache__"))
    if bundle:
        (site / "wfengine" / "lib").mkdir()
        shutil.copy(wfengine.library_path, site / "wfengine" / "lib" / "libwfengine.so")
    return site


def _import(site: Path, library: Optional[str]) -> "subprocess.CompletedProcess[str]":
    env = {k: v for k, v in os.environ.items() if k not in ("WFENGINE_LIBRARY", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    if library is not None:
        env["WFENGINE_LIBRARY"] = library
    code = "import wfengine; print(wfengine.library_path); print(wfengine.version())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=str(site))


def test_candidate_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFENGINE_LIBRARY", "/chosen/libwfengine.so")
    c = _lib._candidates()
    here = Path(_lib.__file__).resolve().parent
    assert c[0] == "/chosen/libwfengine.so"
    assert c[1] == str(here / "lib" / "libwfengine.so")
    assert c.index(str(Path(sys.prefix) / "lib" / "libwfengine.so")) > 1
    assert c[-2:] == ["libwfengine.so.0", "libwfengine.so"]  # the system loader path last
    monkeypatch.delenv("WFENGINE_LIBRARY")
    assert _lib._candidates()[0] == str(here / "lib" / "libwfengine.so")


def test_bundled_copy_loads_without_environment(tmp_path: Path) -> None:
    site = _copy_package(tmp_path, bundle=True)
    r = _import(site, None)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == str(site / "wfengine" / "lib" / "libwfengine.so")
    assert r.stdout.split()[1] == wfengine.version()


def test_environment_wins_over_the_bundled_copy(tmp_path: Path) -> None:
    site = _copy_package(tmp_path, bundle=True)
    other = tmp_path / "other" / "libwfengine.so"
    other.parent.mkdir()
    shutil.copy(wfengine.library_path, other)
    r = _import(site, str(other))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == str(other)
    # An explicit choice that does not load is an error, not a fall back to the bundle.
    r = _import(site, str(tmp_path / "absent.so"))
    assert r.returncode != 0 and "absent.so (absent)" in r.stderr


def test_not_found_lists_every_place_in_order(tmp_path: Path) -> None:
    site = _copy_package(tmp_path, bundle=False)
    r = _import(site, None)
    if r.returncode == 0:  # installed on this machine (prefix or loader path): found after the bundle
        assert "/wfengine/lib/" not in r.stdout.split()[0]
        return
    assert "LibraryNotFound" in r.stderr
    bundled = r.stderr.index(str(site / "wfengine" / "lib" / "libwfengine.so") + " (absent)")
    prefix = r.stderr.index(str(Path(sys.prefix) / "lib" / "libwfengine.so"))
    loader = r.stderr.index("libwfengine.so.0 (")
    assert bundled < prefix < loader
    assert "WFENGINE_LIBRARY" in r.stderr
