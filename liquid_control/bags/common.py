"""What the bag modules share: the error type, the storages, the errors damaged storage raises, topic names.

rosbags is an optional dependency (the `bags` extra): importing this without it is one line naming the extra.
"""
from __future__ import annotations

import struct
from pathlib import Path

from liquid_control.core.errors import LiquidControlError
from liquid_control.core.outputs import regular_file

try:
    import apsw
    from rosbags.rosbag2 import ReaderError
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(f"the bag tools need rosbags (pip install 'liquid_control[bags]'): {_exc}") from _exc


class BagError(LiquidControlError):
    """A bag is missing, unreadable, corrupt, truncated, or lacks what is asked of it."""


def check_max_gap(value: float) -> float:
    """A --max-gap (seconds between consecutive messages that end replay or play): > 0, inf for no bound."""
    if not value > 0:  # also NaN
        raise BagError(f"--max-gap must be > 0 seconds (inf: no bound), got {value:g}")
    return float(value)


STORAGES = ("mcap", "sqlite3")
SUFFIX = {".mcap": "mcap", ".db3": "sqlite3"}

# Errors that the storage back ends raise on damaged data while reading (sqlite via apsw, MCAP via
# struct/zstd/lz4; rosbags' record parsing meets a cut record as ord(b'') -> TypeError, an unknown schema
# encoding or id as KeyError); caught only around storage reads.
DAMAGE_ERRORS = (ReaderError, struct.error, EOFError, ValueError, OSError, TypeError, KeyError, IndexError,
                 OverflowError)
STORAGE_ERRORS: tuple[type[BaseException], ...] = (*DAMAGE_ERRORS, apsw.Error)


def normalize_topic(name: str) -> str:
    """'joint_states' and '/joint_states' are one topic (rosbag2 records fully qualified names)."""
    name = name.strip()
    return name if name.startswith("/") else "/" + name


def regular(path: Path, what: str) -> None:
    """BagError unless `path` is a regular file (a FIFO, /dev/zero or a directory is refused before reading)."""
    try:
        regular_file(path, what)
    except LiquidControlError as exc:
        raise BagError(str(exc)) from None


def explain(exc: BaseException) -> str:
    """An exception's message as one line."""
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    return text.splitlines()[0]
