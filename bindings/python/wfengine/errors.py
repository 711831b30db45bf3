"""Exceptions: one WfError subclass per wfengine status code."""

from __future__ import annotations

from typing import Dict, NoReturn, Type


class WfError(Exception):
    """A wfengine call failed. `code` is the negative WF_E* status, `message`
    wf_last_error()'s text read on the thread that made the call."""

    code: int = 0
    name: str = "WF_ERROR"

    def __init__(self, code: int, message: str, call: str = "") -> None:
        self.code = code
        self.message = message
        self.call = call
        text = f"{call}: " if call else ""
        super().__init__(f"{text}{message or self.name} ({self.name})")


class InvalidError(WfError, ValueError):
    code, name = -1, "WF_EINVAL"


class NotFoundError(WfError, LookupError):
    code, name = -2, "WF_ENOTFOUND"


class ExistsError(WfError):
    """The idempotency key or event id already exists. `existing_id` is the holder's id
    when the call returns one."""

    code, name = -3, "WF_EEXIST"
    existing_id: str | None = None


class BusyError(WfError):
    code, name = -4, "WF_EBUSY"


class ClosedError(WfError):
    code, name = -5, "WF_ECLOSED"


class IOError_(WfError, OSError):
    code, name = -6, "WF_EIO"


class CorruptError(WfError):
    code, name = -7, "WF_ECORRUPT"


class NoMemoryError(WfError, MemoryError):
    code, name = -8, "WF_ENOMEM"


class TimedOutError(WfError, TimeoutError):
    code, name = -9, "WF_ETIMEDOUT"


class TooBigError(WfError):
    code, name = -10, "WF_ETOOBIG"


class StateError(WfError):
    code, name = -11, "WF_ESTATE"


class UnsupportedError(WfError):
    code, name = -12, "WF_EUNSUPPORTED"


class InternalError(WfError):
    code, name = -13, "WF_EINTERNAL"


class ConflictError(WfError):
    code, name = -14, "WF_ECONFLICT"


class ForkedError(WfError):
    code, name = -15, "WF_EFORKED"


_BY_CODE: Dict[int, Type[WfError]] = {
    c.code: c
    for c in (
        InvalidError,
        NotFoundError,
        ExistsError,
        BusyError,
        ClosedError,
        IOError_,
        CorruptError,
        NoMemoryError,
        TimedOutError,
        TooBigError,
        StateError,
        UnsupportedError,
        InternalError,
        ConflictError,
        ForkedError,
    )
}


def error_for(code: int, message: str, call: str = "") -> WfError:
    cls = _BY_CODE.get(code, WfError)
    err = cls(code, message, call)
    if cls is WfError:
        err.name = f"status {code}"
    return err


def raise_for(code: int, message: str, call: str = "") -> NoReturn:
    raise error_for(code, message, call)
