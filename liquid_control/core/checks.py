"""Typed, bounded reading of values from a YAML mapping: one SpecError line per mistake, with its key path.

Used by the robot spec (core/spec.py). Each function takes `where`, the key path shown to the user
('action.limits.lower'). Booleans are never numbers (YAML reads `rate_hz: yes` as True); NaN is never
a value; infinity only where a caller says it means 'no bound'.
"""
from __future__ import annotations

import difflib
import math
import re
from typing import Any, Iterable

from liquid_control.core.errors import SpecError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# A ROS 2 topic name as rcl accepts it before expansion: relative or absolute, '~' for the node's namespace.
_TOPIC = re.compile(r"^(~|/)?(~/)?[A-Za-z_{][A-Za-z0-9_{}]*(/[A-Za-z_{][A-Za-z0-9_{}]*)*$")


def mapping(value: Any, where: str, allowed: Iterable[str], required: Iterable[str] = ()) -> dict[str, Any]:
    """`value` as a dict whose keys are all in `allowed` (a misspelt key is an error with a 'did you mean')
    and that has every key in `required`."""
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(value).__name__}")
    allowed = tuple(allowed)
    for key in value:
        if not isinstance(key, str) or key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known keys: {', '.join(allowed)}"
            raise SpecError(f"{where}: unknown key {key!r}{hint}")
    for key in required:
        if key not in value:
            raise SpecError(f"{where}: missing key {key!r}")
    return value


def number(value: Any, where: str, *, low: float = -math.inf, high: float = math.inf,
           low_open: bool = False, allow_inf: bool = False) -> float:
    """A real number (int or float, not bool), never NaN, infinite only with allow_inf, within
    [low, high] (or (low, high] with low_open)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where}: expected a number, got {value!r}")
    x = float(value)
    if math.isnan(x) or (math.isinf(x) and not allow_inf):
        raise SpecError(f"{where}: must be a finite number, got {value!r}")
    if x < low or x > high or (low_open and x == low):
        lo, hi = ("(" if low_open else "[") + f"{low:g}", f"{high:g}]"
        raise SpecError(f"{where}: {value!r} is outside {lo}, {hi}")
    return x


def numbers(value: Any, n: int, where: str, default: float, **bounds: Any) -> tuple[float, ...]:
    """n numbers from one number (repeated) or a list of n; `default` for each when absent (None)."""
    if value is None:
        return (float(default),) * n
    if isinstance(value, list):
        if len(value) != n:
            raise SpecError(f"{where}: expected {n} values, got {len(value)}")
        return tuple(number(v, f"{where}[{i}]", **bounds) for i, v in enumerate(value))
    return (number(value, where, **bounds),) * n


def text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def name(value: Any, where: str) -> str:
    """An identifier (letters, digits, '_'): used as a file or robot name, so never a path."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise SpecError(f"{where}: expected a name of letters, digits and '_', got {value!r}")
    return value


def topic(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _TOPIC.match(value) or "//" in value or value.endswith("/"):
        raise SpecError(f"{where}: {value!r} is not a valid ROS 2 topic name")
    return value


def names(value: Any, where: str, *, of: type = str) -> tuple[str, ...]:
    """A non-empty list of distinct names (strings; with of=int, indices >= 0 written as strings)."""
    if not isinstance(value, list) or not value:
        raise SpecError(f"{where}: expected a non-empty list, got {value!r}")
    out = []
    for i, v in enumerate(value):
        if of is int:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise SpecError(f"{where}[{i}]: expected an index >= 0, got {v!r}")
            out.append(str(v))
        else:
            out.append(text(v, f"{where}[{i}]"))
    if len(set(out)) != len(out):
        raise SpecError(f"{where}: names repeat: {out}")
    return tuple(out)
