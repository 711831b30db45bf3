"""Run-time loading of libwfengine.so and the ctypes prototypes of wfengine.h."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

#: The C API version this binding was written for (major, minor).
WRITTEN_FOR = (0, 1)

c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
c_int = ctypes.c_int
c_int64 = ctypes.c_int64
c_size_t = ctypes.c_size_t

EFFECT_FN = ctypes.CFUNCTYPE(None, c_void_p, c_void_p)
DONE_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_char_p)
SAGA_FN = ctypes.CFUNCTYPE(c_int, c_void_p, ctypes.POINTER(ctypes.c_char), c_size_t, c_void_p)
LOG_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_char_p)
CLOCK_FN = ctypes.CFUNCTYPE(c_int64, c_void_p)

_PP = ctypes.POINTER(c_void_p)  # char ** / wf_engine ** out-parameters (freed with wf_free)

_PROTOS: dict[str, tuple[Any, list[Any]]] = {
    "wf_version": (c_char_p, []),
    "wf_strerror": (c_char_p, [c_int]),
    "wf_last_error": (c_char_p, []),
    "wf_free": (None, [c_void_p]),
    "wf_open": (c_int, [c_char_p, c_char_p, _PP]),
    "wf_start": (c_int, [c_void_p]),
    "wf_drain": (c_int, [c_void_p, c_int64]),
    "wf_close": (c_int, [c_void_p]),
    "wf_set_clock": (c_int, [c_void_p, CLOCK_FN, c_void_p]),
    "wf_wake": (c_int, [c_void_p]),
    "wf_sync": (c_int, [c_void_p]),
    "wf_effect_register": (c_int, [c_void_p, c_char_p, c_char_p, EFFECT_FN, c_void_p]),
    "wf_effect_register_builtin": (c_int, [c_void_p, c_char_p, c_char_p]),
    "wf_job_id": (c_char_p, [c_void_p]),
    "wf_job_key": (c_char_p, [c_void_p]),
    "wf_job_tenant": (c_char_p, [c_void_p]),
    "wf_job_effect": (c_char_p, [c_void_p]),
    "wf_job_payload": (c_void_p, [c_void_p, ctypes.POINTER(c_size_t)]),
    "wf_job_metadata": (c_char_p, [c_void_p]),
    "wf_job_attempt": (c_int, [c_void_p]),
    "wf_job_complete": (c_int, [c_void_p, c_char_p]),
    "wf_job_retry": (c_int, [c_void_p, c_char_p, c_int64]),
    "wf_job_fail": (c_int, [c_void_p, c_char_p]),
    "wf_enqueue": (c_int, [c_void_p, c_char_p, _PP]),
    "wf_enqueue_batch": (c_int, [c_void_p, c_char_p, _PP]),
    "wf_enqueue_async": (c_int, [c_void_p, c_char_p, DONE_FN, c_void_p]),
    "wf_submit_async": (c_int, [c_void_p, c_char_p, DONE_FN, c_void_p]),
    "wf_cancel": (c_int, [c_void_p, c_char_p, c_char_p]),
    "wf_schedule": (c_int, [c_void_p, c_char_p]),
    "wf_unschedule": (c_int, [c_void_p, c_char_p, c_char_p]),
    "wf_buf_set": (c_int, [c_void_p, c_char_p, c_size_t]),
    "wf_saga_register": (c_int, [c_void_p, c_char_p, c_char_p, SAGA_FN, c_void_p]),
    "wf_submit": (c_int, [c_void_p, c_char_p]),
    "wf_saga_get": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p, _PP]),
    "wf_saga_replay": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p, c_char_p, _PP]),
    "wf_tx_begin": (c_int, [c_void_p, _PP]),
    "wf_tx_exec": (c_int, [c_void_p, c_char_p, c_char_p, _PP]),
    "wf_tx_enqueue": (c_int, [c_void_p, c_char_p, _PP]),
    "wf_tx_schedule": (c_int, [c_void_p, c_char_p]),
    "wf_tx_submit": (c_int, [c_void_p, c_char_p]),
    "wf_tx_commit": (c_int, [c_void_p]),
    "wf_tx_rollback": (c_int, [c_void_p]),
    "wf_stats": (c_int, [c_void_p, c_char_p, _PP]),
    "wf_metrics": (c_int, [c_void_p, _PP]),
    "wf_dead_list": (c_int, [c_void_p, c_char_p, _PP]),
    "wf_dead_requeue": (c_int, [c_void_p, c_char_p, ctypes.POINTER(c_int64)]),
    "wf_dead_purge": (c_int, [c_void_p, c_char_p, ctypes.POINTER(c_int64)]),
    "wf_set_logger": (c_int, [c_void_p, c_int, LOG_FN, c_void_p]),
    "wf_set_default_logger": (c_int, [c_int, LOG_FN, c_void_p]),
    # read API
    "wf_jobs_list": (c_int, [c_void_p, c_char_p, _PP]),
    "wf_job_get": (c_int, [c_void_p, c_char_p, c_char_p, _PP]),
    "wf_schedules_list": (c_int, [c_void_p, c_char_p, _PP]),
    "wf_sagas_list": (c_int, [c_void_p, c_char_p, _PP]),
    "wf_saga_show": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p, _PP]),
    "wf_events_list": (c_int, [c_void_p, c_char_p, _PP]),
    "wf_engines_list": (c_int, [c_void_p, _PP]),
    "wf_check": (c_int, [c_void_p, c_char_p, _PP]),
    "wf_backup": (c_int, [c_void_p, c_char_p]),
}


class LibraryNotFound(ImportError):
    """libwfengine.so could not be loaded; the message lists every place tried."""


def _candidates() -> List[str]:
    out: List[str] = []
    env = os.environ.get("WFENGINE_LIBRARY")
    if env:
        out.append(env)
    here = Path(__file__).resolve().parent
    out.append(str(here / "lib" / "libwfengine.so"))  # bundled by the wheel
    out.append(str(here / "libwfengine.so"))
    # Build tree of a source checkout: bindings/python/wfengine -> repository root.
    root = here.parent.parent.parent
    out.append(str(root / "build" / "libwfengine.so"))
    for prefix in (sys.prefix, "/usr/local", "/usr"):
        out.append(str(Path(prefix) / "lib" / "libwfengine.so"))
    out.append("libwfengine.so.0")  # system loader path
    out.append("libwfengine.so")
    return out


def _load() -> ctypes.CDLL:
    tried: List[str] = []
    env = os.environ.get("WFENGINE_LIBRARY")
    for cand in _candidates():
        is_path = "/" in cand
        if is_path and not os.path.exists(cand):
            tried.append(f"{cand} (absent)")
            if cand == env:
                # An explicit choice that does not exist is an error, not a fallback.
                break
            continue
        try:
            lib = ctypes.CDLL(cand)
        except OSError as exc:
            tried.append(f"{cand} ({exc})")
            if cand == env:
                break
            continue
        return lib
    raise LibraryNotFound(
        "wfengine: could not load libwfengine.so; looked in:\n  "
        + "\n  ".join(tried)
        + "\nset WFENGINE_LIBRARY to the library's path"
    )


def _bind(lib: ctypes.CDLL) -> None:
    for name, (res, args) in _PROTOS.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    raw = lib.wf_version()
    version = raw.decode() if raw else "?"
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError) as exc:
        raise ImportError(f"wfengine: unexpected wf_version() {version!r}") from exc
    if (major, minor) != WRITTEN_FOR:
        raise ImportError(
            f"wfengine: library {lib._name} is version {version}; this binding was written "
            f"for {WRITTEN_FOR[0]}.{WRITTEN_FOR[1]}.x"
        )


lib: Any = _load()
_bind(lib)
library_path: str = lib._name


def version() -> str:
    """Version of the loaded library ("MAJOR.MINOR.PATCH")."""
    raw: Optional[bytes] = lib.wf_version()
    return raw.decode() if raw else ""


def take_string(p: c_void_p) -> Optional[str]:
    """Copies and frees a string the library returned through `char **out`."""
    if not p.value:
        return None
    try:
        s = ctypes.string_at(p.value)
        return s.decode("utf-8", errors="replace")
    finally:
        lib.wf_free(p)


def null(fn_type: Any) -> Any:
    """A NULL function pointer of a CFUNCTYPE type (no callback)."""
    return fn_type()
