"""wfengine: Python binding of the wfengine durable workflow engine (ctypes, no
compiled extension). The library is loaded at import: WFENGINE_LIBRARY, then a copy
bundled with the package, then the source tree's build/ and install prefixes, then the
system loader path."""

from ._lib import WRITTEN_FOR, LibraryNotFound, library_path, version
from .engine import (
    LOG_DEBUG,
    LOG_ERROR,
    LOG_INFO,
    LOG_WARN,
    Engine,
    Fail,
    Job,
    Retry,
    Tx,
    set_default_logger,
)
from .errors import (
    BusyError,
    ClosedError,
    ConflictError,
    CorruptError,
    ExistsError,
    ForkedError,
    InternalError,
    InvalidError,
    IOError_,
    NoMemoryError,
    NotFoundError,
    StateError,
    TimedOutError,
    TooBigError,
    UnsupportedError,
    WfError,
)

__all__ = [
    "WRITTEN_FOR",
    "LibraryNotFound",
    "library_path",
    "version",
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
    "WfError",
    "InvalidError",
    "NotFoundError",
    "ExistsError",
    "BusyError",
    "ClosedError",
    "IOError_",
    "CorruptError",
    "NoMemoryError",
    "TimedOutError",
    "TooBigError",
    "StateError",
    "UnsupportedError",
    "InternalError",
    "ConflictError",
    "ForkedError",
]
