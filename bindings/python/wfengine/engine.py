"""Engine, Job and Tx: the Python face of wfengine.h."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import ctypes
import inspect
import itertools
import json
import logging
import os
import threading
import weakref
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, TypeVar, Union

from . import _lib
from ._lib import CLOCK_FN, DONE_FN, EFFECT_FN, LOG_FN, SAGA_FN, lib, null, take_string
from .errors import ExistsError, InvalidError, StateError, WfError, error_for

log = logging.getLogger("wfengine")

Json = Union[Mapping[str, Any], List[Any], str]
"""A JSON document: a dict / list (serialised with json.dumps) or JSON text."""

EffectHandler = Callable[["Job"], Any]
Reducer = Callable[[Dict[str, Any]], Mapping[str, Any]]
DoneCallback = Callable[[Optional[WfError], Optional[str]], None]
LogCallback = Callable[[int, Dict[str, Any]], None]

LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR = 0, 1, 2, 3

_E = TypeVar("_E", bound="Engine")


def _doc(value: Optional[Json]) -> Optional[bytes]:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


def _s(value: Optional[str]) -> Optional[bytes]:
    return None if value is None else value.encode()


def _check(rc: int, call: str) -> None:
    """Raises the WfError for `rc`, reading wf_last_error() at once on this OS thread
    (ctypes returns on the thread that made the call)."""
    if rc != 0:
        raw: Optional[bytes] = lib.wf_last_error()
        raise error_for(rc, raw.decode("utf-8", "replace") if raw else "", call)


def _filter_dict(filt: Optional[Json], kw: Mapping[str, Any]) -> Dict[str, Any]:
    """A read filter as a dict: `filt` (dict or JSON text) with keyword arguments on top."""
    if filt is None:
        base: Dict[str, Any] = {}
    elif isinstance(filt, str):
        parsed = json.loads(filt) if filt.strip() else {}
        if not isinstance(parsed, dict):
            raise InvalidError(-1, "filter must be a JSON object", "")
        base = parsed
    elif isinstance(filt, Mapping):
        base = dict(filt)
    else:
        raise InvalidError(-1, "filter must be a JSON object", "")
    base.update(kw)
    return base


def _filter(filt: Optional[Json], kw: Mapping[str, Any]) -> Optional[Json]:
    """`filt` as given (the library validates it) unless keyword arguments extend it."""
    return filt if not kw else _filter_dict(filt, kw)


def _text(p: Optional[bytes]) -> str:
    return p.decode("utf-8", "replace") if p else ""


class Retry(Exception):
    """Raise from an effect handler to retry the job after `delay_ms` (None: the
    policy's backoff)."""

    def __init__(self, error: str = "", delay_ms: Optional[int] = None) -> None:
        super().__init__(error)
        self.error = error
        self.delay_ms = delay_ms


class Fail(Exception):
    """Raise from an effect handler to fail the job permanently (dead letter)."""


class Job:
    """One attempt of a job handed to an effect handler. Complete it exactly once with
    complete(), retry() or fail(), from any thread, now or later. A Job garbage-collected
    without completion is retried (error "job handle dropped without completion")."""

    def __init__(self, ptr: int) -> None:
        self._ptr: Optional[int] = ptr
        self._lock = threading.Lock()
        p = ctypes.c_void_p(ptr)
        self.id: str = _text(lib.wf_job_id(p))
        self.key: str = _text(lib.wf_job_key(p))
        self.tenant: str = _text(lib.wf_job_tenant(p))
        self.effect: str = _text(lib.wf_job_effect(p))
        self.attempt: int = int(lib.wf_job_attempt(p))
        n = ctypes.c_size_t(0)
        addr = lib.wf_job_payload(p, ctypes.byref(n))
        self.payload_text: str = (
            ctypes.string_at(addr, n.value).decode("utf-8", "replace") if addr else "null"
        )
        self.metadata_text: str = _text(lib.wf_job_metadata(p)) or "{}"
        self._payload: Any = None
        self._parsed = False

    @property
    def payload(self) -> Any:
        """The payload as parsed JSON (usually a dict)."""
        if not self._parsed:
            self._payload = json.loads(self.payload_text)
            self._parsed = True
        return self._payload

    @property
    def metadata(self) -> Dict[str, Any]:
        """The job's metadata object, parsed."""
        res: Dict[str, Any] = json.loads(self.metadata_text)
        return res

    @property
    def done(self) -> bool:
        return self._ptr is None

    def _take(self, call: str) -> ctypes.c_void_p:
        with self._lock:
            if self._ptr is None:
                raise StateError(-11, f"job {self.id} was already completed", call)
            p = ctypes.c_void_p(self._ptr)
            self._ptr = None
            return p

    def complete(self, result: Optional[Json] = None) -> None:
        """Completes the attempt. StateError if the engine had given up on it."""
        doc = _doc(result)
        p = self._take("wf_job_complete")
        rc = lib.wf_job_complete(p, doc)
        if rc == -1:  # invalid result: the handle stays valid; keep it
            msg = _text(lib.wf_last_error())
            with self._lock:
                self._ptr = p.value
            raise error_for(rc, msg, "wf_job_complete")
        _check(rc, "wf_job_complete")

    def retry(self, error: str = "", delay_ms: Optional[int] = None) -> None:
        """Transient failure: runs again after delay_ms (None: policy backoff)."""
        p = self._take("wf_job_retry")
        _check(lib.wf_job_retry(p, error.encode("utf-8", "replace"), -1 if delay_ms is None else delay_ms), "wf_job_retry")

    def fail(self, error: str = "") -> None:
        """Permanent failure: the job becomes a dead letter."""
        p = self._take("wf_job_fail")
        _check(lib.wf_job_fail(p, error.encode("utf-8", "replace")), "wf_job_fail")

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is None:
            return
        try:
            self.retry("job handle dropped without completion")
        except Exception:  # noqa: BLE001 - a finalizer never raises
            pass

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, effect={self.effect!r}, attempt={self.attempt})"


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _settle_job(job: Job, exc: Optional[BaseException], result: Any) -> None:
    """Applies a handler's outcome to a job it did not complete itself."""
    try:
        if exc is None:
            if result is not None and not job.done:
                job.complete(result)
            return
        if job.done:
            log.warning("effect %s job %s: handler raised after completing: %s", job.effect, job.id, _error_text(exc))
            return
        if isinstance(exc, Retry):
            job.retry(exc.error, exc.delay_ms)
        elif isinstance(exc, Fail):
            job.fail(str(exc))
        else:
            log.warning("effect %s job %s: handler raised, retrying: %s", job.effect, job.id, _error_text(exc))
            job.retry(_error_text(exc))
    except WfError as err:
        log.warning("effect %s job %s: %s", job.effect, job.id, err)
    except Exception as err:  # noqa: BLE001 - e.g. a result json.dumps cannot encode
        log.warning("effect %s job %s: cannot complete, retrying: %s", job.effect, job.id, _error_text(err))
        try:
            job.retry(_error_text(err))
        except WfError:
            pass


_open_engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()


_unclosed: "List[Engine]" = []


@atexit.register
def _close_all() -> None:
    # Engine threads must not call into an interpreter that is shutting down.
    for e in list(_open_engines) + _unclosed:
        try:
            e.close()
        except WfError:
            pass


class Engine:
    """An open wfengine database. Use as a context manager (closes on exit); a
    forgotten engine is closed by its finalizer (with a warning) or at interpreter exit.

    `loop`: the asyncio loop that runs `async def` effect handlers."""

    def __init__(
        self,
        path: str,
        options: Optional[Json] = None,
        *,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        start: bool = False,
    ) -> None:
        self._ptr: Optional[int] = None
        self._keep: List[Any] = []  # every ctypes callback object the engine may call
        self._tokens: Dict[int, DoneCallback] = {}
        self._tok_lock = threading.Lock()
        self._counter = itertools.count(1)
        self._effects: set[str] = set()
        self.loop = loop
        self.path = path
        out = ctypes.c_void_p()
        _check(lib.wf_open(path.encode(), _doc(options), ctypes.byref(out)), "wf_open")
        self._ptr = out.value
        self._done_fn = DONE_FN(self._on_done)
        _open_engines.add(self)
        if start:
            self.start()

    # ---------------------------------------------------------------- lifecycle
    @property
    def _h(self) -> ctypes.c_void_p:
        if self._ptr is None:
            from .errors import ClosedError

            raise ClosedError(-5, "engine is closed", "")
        return ctypes.c_void_p(self._ptr)

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def start(self) -> None:
        _check(lib.wf_start(self._h), "wf_start")

    def drain(self, timeout_ms: int = 30000) -> None:
        _check(lib.wf_drain(self._h, timeout_ms), "wf_drain")

    def close(self) -> None:
        """Drains, closes the database, stops the threads. Idempotent."""
        if self._ptr is None:
            return
        _check(lib.wf_close(ctypes.c_void_p(self._ptr)), "wf_close")
        self._ptr = None
        _open_engines.discard(self)
        # No callback runs after wf_close returned: the references may go.
        self._keep.clear()

    def __enter__(self: _E) -> _E:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None:
            log.warning("wfengine: Engine(%r) was not closed; closing it in its finalizer", self.path)
            try:
                self.close()
            except Exception:  # noqa: BLE001
                # E.g. collected on one of the engine's own threads (WF_EBUSY): keep it,
                # and the callbacks its threads still call, alive until interpreter exit.
                _unclosed.append(self)

    def wake(self) -> None:
        _check(lib.wf_wake(self._h), "wf_wake")

    def sync(self) -> None:
        _check(lib.wf_sync(self._h), "wf_sync")

    def set_clock(self, fn: Optional[Callable[[], int]]) -> None:
        """Reads "now" (ms since the epoch) from fn instead of the system clock."""
        if fn is None:
            _check(lib.wf_set_clock(self._h, null(CLOCK_FN), None), "wf_set_clock")
            return
        clock = fn

        def tramp(_user: Optional[int]) -> int:
            try:
                return int(clock())
            except BaseException as exc:  # noqa: BLE001 - never unwind into C
                log.error("wfengine clock raised: %s", _error_text(exc))
                return 0

        cb = CLOCK_FN(tramp)
        self._keep.append(cb)
        _check(lib.wf_set_clock(self._h, cb, None), "wf_set_clock")

    # ------------------------------------------------------------------ effects
    def register_effect(
        self,
        effect: str,
        handler: EffectHandler,
        policy: Optional[Json] = None,
        *,
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        """Serves `effect` with handler(job). The handler runs on the engine's loop thread
        and must not block; it completes the job (or keeps it and completes it later from
        any thread), returns a result (completes with it), or raises: Retry / Fail do what
        they say, any other exception retries with the error text. An `async def` handler
        runs on `loop` (or the engine's loop); its return value completes the job."""
        is_async = inspect.iscoroutinefunction(handler)
        run_loop = loop or self.loop
        if is_async and run_loop is None:
            raise ValueError("an async effect handler needs an asyncio loop (Engine(loop=...) or loop=)")

        def tramp(_user: Optional[int], jp: Optional[int]) -> None:
            if not jp:
                return
            try:
                job = Job(jp)
            except BaseException as exc:  # noqa: BLE001
                lib.wf_job_retry(ctypes.c_void_p(jp), _error_text(exc).encode(), -1)
                return
            if is_async:
                assert run_loop is not None
                try:
                    fut = asyncio.run_coroutine_threadsafe(handler(job), run_loop)
                except BaseException as exc:  # noqa: BLE001
                    _settle_job(job, exc, None)
                    return

                def done(f: "concurrent.futures.Future[Any]") -> None:
                    if f.cancelled():
                        _settle_job(job, RuntimeError("handler cancelled"), None)
                    else:
                        e = f.exception()
                        _settle_job(job, e, None if e else f.result())

                fut.add_done_callback(done)
                return
            try:
                result = handler(job)
            except BaseException as exc:  # noqa: BLE001 - becomes a retry, never a crash
                _settle_job(job, exc, None)
                return
            _settle_job(job, None, result)

        cb = EFFECT_FN(tramp)
        self._keep.append(cb)
        _check(lib.wf_effect_register(self._h, effect.encode(), _doc(policy), cb, None), "wf_effect_register")
        self._effects.add(effect)

    def register_builtin(self, effect: str, config: Json) -> None:
        """A built-in provider, e.g. {"type": "http", "url": ...} (docs/providers.md)."""
        _check(lib.wf_effect_register_builtin(self._h, effect.encode(), _doc(config)), "wf_effect_register_builtin")
        self._effects.add(effect)

    # ------------------------------------------------------------------- outbox
    def enqueue(self, job: Json) -> str:
        """Enqueues one job, durable on return; returns its id. ExistsError (with
        existing_id) when its key is already held."""
        out = ctypes.c_void_p()
        rc = lib.wf_enqueue(self._h, _doc(job), ctypes.byref(out))
        if rc == ExistsError.code:
            msg = _text(lib.wf_last_error())
            err = ExistsError(rc, msg, "wf_enqueue")
            err.existing_id = take_string(out)
            raise err
        _check(rc, "wf_enqueue")
        return take_string(out) or ""

    def enqueue_batch(self, jobs: Union[List[Any], str]) -> List[Dict[str, Any]]:
        """All or nothing; one {"id", "existing"} per input."""
        out = ctypes.c_void_p()
        _check(lib.wf_enqueue_batch(self._h, _doc(jobs), ctypes.byref(out)), "wf_enqueue_batch")
        res: List[Dict[str, Any]] = json.loads(take_string(out) or "[]")
        return res

    def _on_done(self, user: Optional[int], status: int, id_: Optional[bytes]) -> None:
        # Runs on the engine's notifier thread; read the error first thing.
        msg = _text(lib.wf_last_error()) if status != 0 else ""
        with self._tok_lock:
            cb = self._tokens.pop(user or 0, None)
        if cb is None:
            return
        try:
            cb(None if status == 0 else error_for(status, msg, "async"), _text(id_) if id_ else None)
        except BaseException as exc:  # noqa: BLE001
            log.error("wfengine: enqueue callback raised: %s", _error_text(exc))

    def _async(self, fn: Any, call: str, doc: Json, callback: Optional[DoneCallback]) -> None:
        if callback is None:
            _check(fn(self._h, _doc(doc), null(DONE_FN), None), call)
            return
        tok = next(self._counter)
        with self._tok_lock:
            self._tokens[tok] = callback
        rc = fn(self._h, _doc(doc), self._done_fn, ctypes.c_void_p(tok))
        if rc != 0:
            msg = _text(lib.wf_last_error())
            with self._tok_lock:
                self._tokens.pop(tok, None)
            raise error_for(rc, msg, call)

    def enqueue_async(self, job: Json, callback: Optional[DoneCallback] = None) -> None:
        """Pipelined enqueue: bad input raises at once; otherwise callback(error, id) runs
        once on the engine's notifier thread when the job is durable (error None), its key
        already existed (ExistsError, id of the holder) or the write failed."""
        self._async(lib.wf_enqueue_async, "wf_enqueue_async", job, callback)

    def enqueue_future(self, job: Json) -> "concurrent.futures.Future[str]":
        """enqueue_async as a Future of the id (asyncio: asyncio.wrap_future)."""
        fut: "concurrent.futures.Future[str]" = concurrent.futures.Future()

        def cb(err: Optional[WfError], id_: Optional[str]) -> None:
            if err is None:
                fut.set_result(id_ or "")
            else:
                fut.set_exception(err)

        self.enqueue_async(job, cb)
        return fut

    def submit_async(self, event: Json, callback: Optional[DoneCallback] = None) -> None:
        self._async(lib.wf_submit_async, "wf_submit_async", event, callback)

    def cancel(self, id_or_key: str, tenant: Optional[str] = None) -> None:
        _check(lib.wf_cancel(self._h, _s(tenant), id_or_key.encode()), "wf_cancel")

    # ---------------------------------------------------------------- schedules
    def schedule(self, schedule: Json) -> None:
        _check(lib.wf_schedule(self._h, _doc(schedule)), "wf_schedule")

    def unschedule(self, key: str, tenant: Optional[str] = None) -> None:
        _check(lib.wf_unschedule(self._h, _s(tenant), key.encode()), "wf_unschedule")

    # -------------------------------------------------------------------- sagas
    def register_saga(self, saga: str, spec: Json, reducer: Reducer) -> None:
        """reducer(input) -> {"state", "commands", "schedules", "cancel_schedules",
        "done"}; input is {"saga","tenant","correlation_id","state","event"}. Runs on
        the loop thread; must be pure and quick. A raising reducer parks the event as a
        dead letter and leaves the state untouched."""

        def tramp(_user: Optional[int], data: Any, n: int, out: Optional[int]) -> int:
            try:
                inp = json.loads(ctypes.string_at(data, n).decode("utf-8"))
                res = json.dumps(reducer(inp), separators=(",", ":")).encode()
                return int(lib.wf_buf_set(ctypes.c_void_p(out), res, len(res)))
            except BaseException as exc:  # noqa: BLE001 - never unwind into C
                log.warning("saga %s reducer raised: %s", saga, _error_text(exc))
                return 1

        cb = SAGA_FN(tramp)
        self._keep.append(cb)
        _check(lib.wf_saga_register(self._h, saga.encode(), _doc(spec), cb, None), "wf_saga_register")

    def submit(self, event: Json) -> None:
        """Submits an event; ExistsError if its (tenant, event_id) was seen."""
        _check(lib.wf_submit(self._h, _doc(event)), "wf_submit")

    def saga_get(self, saga: str, correlation_id: str, tenant: Optional[str] = None) -> Dict[str, Any]:
        out = ctypes.c_void_p()
        _check(
            lib.wf_saga_get(self._h, _s(tenant), saga.encode(), correlation_id.encode(), ctypes.byref(out)),
            "wf_saga_get",
        )
        res: Dict[str, Any] = json.loads(take_string(out) or "null")
        return res

    def saga_replay(
        self, saga: str, correlation_id: str, tenant: Optional[str] = None, *, commit: bool = False
    ) -> Dict[str, Any]:
        out = ctypes.c_void_p()
        opts = _doc({"commit": commit})
        _check(
            lib.wf_saga_replay(self._h, _s(tenant), saga.encode(), correlation_id.encode(), opts, ctypes.byref(out)),
            "wf_saga_replay",
        )
        res: Dict[str, Any] = json.loads(take_string(out) or "null")
        return res

    # ------------------------------------------------------------- transactions
    def transaction(self) -> "Tx":
        """Begins a host transaction: `with engine.transaction() as tx:` commits on
        normal exit, rolls back on an exception."""
        out = ctypes.c_void_p()
        _check(lib.wf_tx_begin(self._h, ctypes.byref(out)), "wf_tx_begin")
        assert out.value is not None
        return Tx(out.value)

    # --------------------------------------------------------------- operations
    def _json_out(self, fn: Any, call: str, filt: Optional[Json]) -> Any:
        out = ctypes.c_void_p()
        _check(fn(self._h, _doc(filt), ctypes.byref(out)), call)
        return json.loads(take_string(out) or "null")

    def stats(self, filter: Optional[Json] = None) -> Dict[str, Any]:
        res: Dict[str, Any] = self._json_out(lib.wf_stats, "wf_stats", filter)
        return res

    def metrics(self) -> str:
        out = ctypes.c_void_p()
        _check(lib.wf_metrics(self._h, ctypes.byref(out)), "wf_metrics")
        return take_string(out) or ""

    def dead_list(self, filter: Optional[Json] = None) -> List[Dict[str, Any]]:
        res: Any = self._json_out(lib.wf_dead_list, "wf_dead_list", filter)
        if isinstance(res, dict):  # tolerate an envelope object
            for k in ("dead", "items", "jobs"):
                if isinstance(res.get(k), list):
                    return list(res[k])
        return list(res or [])

    def _count(self, fn: Any, call: str, filt: Optional[Json]) -> int:
        n = ctypes.c_int64(0)
        _check(fn(self._h, _doc(filt if filt is not None else {}), ctypes.byref(n)), call)
        return int(n.value)

    def dead_requeue(self, filter: Optional[Json] = None) -> int:
        return self._count(lib.wf_dead_requeue, "wf_dead_requeue", filter)

    def dead_purge(self, filter: Optional[Json] = None) -> int:
        return self._count(lib.wf_dead_purge, "wf_dead_purge", filter)

    # ----------------------------------------------------------------- read API
    # One committed snapshot per call on the engine's read connection: never waits for
    # the writer, works on an engine opened with {"read_only": True} while another
    # process runs the engine on the file. An unknown filter key is InvalidError naming it.
    def _read(self, fn: Any, call: str, filt: Optional[Json]) -> Dict[str, Any]:
        res: Dict[str, Any] = self._json_out(fn, call, filt)
        return res

    def _pages(self, fn: Any, call: str, items: str, filt: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        while True:
            page = self._read(fn, call, filt)
            yield from page.get(items) or []
            cursor = page.get("next_cursor")
            if not cursor:
                return
            filt = dict(filt, cursor=cursor)

    def jobs_list(self, filter: Optional[Json] = None, **filters: Any) -> Dict[str, Any]:
        """One page of unfinished jobs (or dead letters with state="dead"), oldest first:
        {"jobs": [...], "next_cursor": str | None, "now": ms}. Filter keys (as a dict or
        keyword arguments): state ("ready" | "scheduled" | "running" | "pending" |
        "dead"), effect, tenant, key, since, until, limit (default 100), cursor."""
        return self._read(lib.wf_jobs_list, "wf_jobs_list", _filter(filter, filters))

    def iter_jobs(self, filter: Optional[Json] = None, **filters: Any) -> Iterator[Dict[str, Any]]:
        """Every job jobs_list() matches, following next_cursor ("limit" is the page
        size). Each page is its own snapshot."""
        return self._pages(lib.wf_jobs_list, "wf_jobs_list", "jobs", _filter_dict(filter, filters))

    def job_get(self, id_or_key: str, tenant: Optional[str] = None) -> Dict[str, Any]:
        """One job by id (any tenant when tenant is None) or else by key in tenant:
        pending, running, dead or completed (while its key is remembered), with its
        "history". NotFoundError if none."""
        out = ctypes.c_void_p()
        _check(lib.wf_job_get(self._h, _s(tenant), id_or_key.encode(), ctypes.byref(out)), "wf_job_get")
        res: Dict[str, Any] = json.loads(take_string(out) or "null")
        return res

    def schedules_list(self, filter: Optional[Json] = None, **filters: Any) -> Dict[str, Any]:
        """One page of schedules by (tenant, key): {"schedules", "next_cursor", "now"}.
        Filter keys: tenant, key, status ("active" | "parked"), due_before, limit, cursor."""
        return self._read(lib.wf_schedules_list, "wf_schedules_list", _filter(filter, filters))

    def iter_schedules(self, filter: Optional[Json] = None, **filters: Any) -> Iterator[Dict[str, Any]]:
        return self._pages(lib.wf_schedules_list, "wf_schedules_list", "schedules", _filter_dict(filter, filters))

    def sagas_list(self, filter: Optional[Json] = None, **filters: Any) -> Dict[str, Any]:
        """One page of saga instances: {"sagas", "next_cursor"}. Filter keys: tenant,
        saga, correlation_id, status ("new" | "active" | "done" | "parked"), limit, cursor."""
        return self._read(lib.wf_sagas_list, "wf_sagas_list", _filter(filter, filters))

    def iter_sagas(self, filter: Optional[Json] = None, **filters: Any) -> Iterator[Dict[str, Any]]:
        return self._pages(lib.wf_sagas_list, "wf_sagas_list", "sagas", _filter_dict(filter, filters))

    def saga_show(self, saga: str, correlation_id: str, tenant: Optional[str] = None) -> Dict[str, Any]:
        """One saga instance with its state, "applied" events and "pending" (waiting or
        parked) events. NotFoundError if there is no such instance."""
        out = ctypes.c_void_p()
        _check(
            lib.wf_saga_show(self._h, _s(tenant), saga.encode(), correlation_id.encode(), ctypes.byref(out)),
            "wf_saga_show",
        )
        res: Dict[str, Any] = json.loads(take_string(out) or "null")
        return res

    def events_list(self, filter: Optional[Json] = None, **filters: Any) -> Dict[str, Any]:
        """One page of events, oldest first: {"events", "next_cursor"}. Filter keys:
        tenant, type, correlation_id, status ("unmatched" | "pending" | "parked" |
        "applied"), since, until, limit, cursor."""
        return self._read(lib.wf_events_list, "wf_events_list", _filter(filter, filters))

    def iter_events(self, filter: Optional[Json] = None, **filters: Any) -> Iterator[Dict[str, Any]]:
        return self._pages(lib.wf_events_list, "wf_events_list", "events", _filter_dict(filter, filters))

    def engines_list(self) -> Dict[str, Any]:
        """Engines registered in the file: {"engines": [{"boot_id", "pid", "hostname",
        "live", "liveness", "effects", ...}], "now"}."""
        out = ctypes.c_void_p()
        _check(lib.wf_engines_list(self._h, ctypes.byref(out)), "wf_engines_list")
        res: Dict[str, Any] = json.loads(take_string(out) or "null")
        return res

    def check(self, options: Optional[Json] = None, *, quick: bool = False) -> Dict[str, Any]:
        """Integrity and consistency check of one snapshot: {"ok", "checks",
        "problems": [{"check", "detail"}]}. quick=True: SQLite's quick_check instead of
        integrity_check. Returns (does not raise) when problems are found."""
        opts = _filter(options, {"quick": True} if quick else {})
        return self._read(lib.wf_check, "wf_check", opts)

    def backup(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes a consistent copy of the committed state to the new file `path` while
        the engine runs. ExistsError if `path` exists (never overwritten)."""
        _check(lib.wf_backup(self._h, os.fsencode(path)), "wf_backup")

    def set_logger(self, fn: Optional[LogCallback], min_level: int = LOG_INFO) -> None:
        """fn(level, line_as_dict) on the engine's logger thread; None removes it."""
        if fn is None:
            _check(lib.wf_set_logger(self._h, min_level, null(LOG_FN), None), "wf_set_logger")
            return
        cb = LOG_FN(_log_tramp(fn))
        self._keep.append(cb)
        _check(lib.wf_set_logger(self._h, min_level, cb, None), "wf_set_logger")


def _log_tramp(fn: LogCallback) -> Callable[[Optional[int], int, Optional[bytes]], None]:
    def tramp(_user: Optional[int], level: int, line: Optional[bytes]) -> None:
        try:
            fn(level, json.loads(_text(line) or "{}"))
        except BaseException as exc:  # noqa: BLE001
            log.error("wfengine logger raised: %s", _error_text(exc))

    return tramp


_default_logger: List[Any] = []


def set_default_logger(fn: Optional[LogCallback], min_level: int = LOG_INFO) -> None:
    """Logger for engines opened from now on (process-wide)."""
    cb = LOG_FN(_log_tramp(fn)) if fn is not None else null(LOG_FN)
    _check(lib.wf_set_default_logger(min_level, cb, None), "wf_set_default_logger")
    _default_logger.append(cb)  # engines opened with it may still call it


class Tx:
    """A host transaction (Engine.transaction()). Context manager: commit on normal exit,
    rollback on exception; a forgotten one is rolled back by its finalizer."""

    def __init__(self, ptr: int) -> None:
        self._ptr: Optional[int] = ptr
        self._lock = threading.Lock()

    @property
    def _h(self) -> ctypes.c_void_p:
        if self._ptr is None:
            raise StateError(-11, "transaction is finished", "")
        return ctypes.c_void_p(self._ptr)

    def exec(self, sql: str, params: Optional[List[Any]] = None) -> List[Dict[str, Any]]:
        out = ctypes.c_void_p()
        with self._lock:
            _check(lib.wf_tx_exec(self._h, sql.encode(), _doc(params), ctypes.byref(out)), "wf_tx_exec")
        res: List[Dict[str, Any]] = json.loads(take_string(out) or "[]")
        return res

    def enqueue(self, job: Json) -> str:
        out = ctypes.c_void_p()
        with self._lock:
            _check(lib.wf_tx_enqueue(self._h, _doc(job), ctypes.byref(out)), "wf_tx_enqueue")
        return take_string(out) or ""

    def schedule(self, schedule: Json) -> None:
        with self._lock:
            _check(lib.wf_tx_schedule(self._h, _doc(schedule)), "wf_tx_schedule")

    def submit(self, event: Json) -> None:
        with self._lock:
            _check(lib.wf_tx_submit(self._h, _doc(event)), "wf_tx_submit")

    def _finish(self, fn: Any, call: str) -> None:
        with self._lock:
            if self._ptr is None:
                return
            p = ctypes.c_void_p(self._ptr)
            rc = fn(p)
            if rc == -15:  # WF_EFORKED: not freed
                _check(rc, call)
            self._ptr = None
            _check(rc, call)

    def commit(self) -> None:
        self._finish(lib.wf_tx_commit, "wf_tx_commit")

    def rollback(self) -> None:
        self._finish(lib.wf_tx_rollback, "wf_tx_rollback")

    @property
    def finished(self) -> bool:
        return self._ptr is None

    def __enter__(self) -> "Tx":
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None:
            log.warning("wfengine: transaction dropped while open; rolling it back")
            try:
                self.rollback()
            except Exception:  # noqa: BLE001
                pass


__all__ = [
    "Engine",
    "Job",
    "Tx",
    "Retry",
    "Fail",
    "set_default_logger",
    "LOG_DEBUG",
    "LOG_INFO",
    "LOG_WARN",
    "LOG_ERROR",
]
_ = _lib
