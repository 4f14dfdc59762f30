"""Message definitions for a bag, and tolerant CDR decoding.

  * a typestore per bag: the ROS 2 distro's message definitions (Humble, Jazzy, Kilted, ...) with the
    definitions stored in the bag taking precedence, so a bag recorded with changed messages decodes
    with what it was recorded with;
  * tolerant CDR decoding: rmw_fastrtps (rclpy, ros2 bag record) sizes a serialized message by its
    worst-case alignment, so messages holding empty sequences carry up to 4 uninitialised bytes per
    empty sequence after the last field. rosbags' strict decoder rejects those; here they are
    accepted, bounded, and counted; more left-over bytes than padding can explain is an error
    (wrong type or corrupt data), never a silently wrong value.
"""
from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any, Callable, Iterable

from rosbags.interfaces import Connection, MessageDefinitionFormat, Nodetype
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, TypesysError, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from liquid_control.bags.common import BagError, explain

# ros_distro as rosbag2 writes it into metadata.yaml -> rosbags' store of that distro's definitions.
DISTROS: dict[str, Stores] = {
    "humble": Stores.ROS2_HUMBLE, "iron": Stores.ROS2_IRON, "jazzy": Stores.ROS2_JAZZY,
    "kilted": Stores.ROS2_KILTED, "lyrical": Stores.ROS2_LYRICAL, "rolling": Stores.LATEST,
}
DEFAULT_DISTRO = "kilted"


# --------------------------------------------------------------------------------------------------
# Typestores
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def distro_typestore(distro: str | None = None) -> Typestore:
    """The standard message definitions of a ROS 2 distro (default: Kilted)."""
    key = (distro or DEFAULT_DISTRO).lower()
    if key not in DISTROS:
        raise BagError(f"unknown ROS distro {distro!r}; known: {', '.join(sorted(DISTROS))}")
    return get_typestore(DISTROS[key])


def _parse_definition(conn: Connection) -> dict[str, Any]:
    data = conn.msgdef.data
    if conn.msgdef.format == MessageDefinitionFormat.MSG:
        return get_types_from_msg(data, conn.msgtype)
    sep = "=" * 80 + "\n"
    types: dict[str, Any] = {}
    if data.startswith(f"{sep}IDL: "):
        for part in data.split(sep)[1:]:
            types.update(get_types_from_idl(part.split("\n", 1)[1]))
    else:
        types.update(get_types_from_idl(data))
    return types


def _closure(fielddefs: dict[str, Any], names: Iterable[str]) -> set[str]:
    """The types `names` are built from, themselves included (those `fielddefs` knows)."""
    out: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in out or name not in fielddefs:
            continue
        out.add(name)
        for _, (kind, sub) in fielddefs[name][1]:
            if kind == Nodetype.NAME:
                stack.append(sub)
            elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE) and sub[0][0] == Nodetype.NAME:
                stack.append(sub[0][1])
    return out


def ensure_types(store: Typestore, names: Iterable[str], distro: str | None = None) -> None:
    """Add the distro's definitions of `names` (and what they use) that `store` lacks."""
    base = distro_typestore(distro)
    missing = {n: base.fielddefs[n] for n in _closure(base.fielddefs, names) if n not in store.fielddefs}
    if missing:
        store.register(missing)


def bag_typestore(connections: Iterable[Connection], distro: str | None = None) -> tuple[Typestore, list[str]]:
    """A typestore for these connections: their stored definitions first, the distro's for the rest.

    Returns the store and notes (definitions that could not be parsed and fell back to the distro's).
    Only the types the bag uses are compiled: registering a full distro store is slow.
    """
    connections = list(connections)
    base = distro_typestore(distro)
    stored: dict[str, Any] = {}
    notes: list[str] = []
    for conn in connections:
        if conn.msgdef.format == MessageDefinitionFormat.NONE or conn.msgtype in stored:
            continue
        try:
            stored.update(_parse_definition(conn))
        except Exception as exc:  # a malformed stored definition: say so, use the distro's
            notes.append(f"stored definition of {conn.msgtype} is unreadable ({explain(exc)}); using "
                         f"{distro or DEFAULT_DISTRO}'s")
    if not stored:
        return base, list(dict.fromkeys(notes))
    store = get_typestore(Stores.EMPTY)
    try:
        store.register(stored)  # the bag's definitions win ...
    except TypesysError as exc:
        raise BagError(f"the bag's message definitions are inconsistent: {exc}") from None
    # ... and the distro's fill in for topics the bag stores no definition for.
    ensure_types(store, {c.msgtype for c in connections if c.msgtype not in store.fielddefs}, distro)
    return store, list(dict.fromkeys(notes))


# --------------------------------------------------------------------------------------------------
# Tolerant CDR
# --------------------------------------------------------------------------------------------------
class CdrError(BagError):
    """A message's bytes do not decode as its type."""


def _empty_sequences(typestore: Typestore, msgtype: str, msg: Any) -> int:
    """How many empty sequences a decoded message holds (each may leave 4 bytes of rmw padding)."""
    n = 0
    for name, (kind, sub) in typestore.get_msgdef(msgtype).fields:
        if kind == Nodetype.NAME:
            n += _empty_sequences(typestore, sub, getattr(msg, name))
        elif kind in (Nodetype.SEQUENCE, Nodetype.ARRAY):
            value = getattr(msg, name)
            if kind == Nodetype.SEQUENCE and len(value) == 0:
                n += 1
            elif sub[0][0] == Nodetype.NAME:
                n += sum(_empty_sequences(typestore, sub[0][1], v) for v in value)
    return n


def decode_cdr(typestore: Typestore, data: bytes | memoryview, msgtype: str,
               fast: Callable[[bytes], tuple[Any, int] | None] | None = None) -> tuple[Any, int]:
    """Decode one CDR message; returns (message, number of trailing padding bytes ignored).

    Accepts the trailing bytes that rmw implementations leave (the encapsulation's 0-3 alignment
    bytes, plus up to 4 per empty sequence from rmw_fastrtps' worst-case sizing); rejects more.
    `fast`: a decoder for this type that gives the same result or None (bags/codecs.py).
    """
    if fast is not None and (done := fast(data)) is not None:
        msg, trailing = done
        if trailing > 3:
            _check_trailing(typestore, msgtype, msg, trailing)
        return msg, trailing
    if len(data) < 4 or data[0] != 0 or data[1] not in (0, 1):
        head = bytes(data[:4]).hex() or "nothing"
        raise CdrError(f"{msgtype}: not plain CDR (encapsulation header {head}, expected 0000 or 0001)")
    try:
        msgdef = typestore.get_msgdef(msgtype)
    except KeyError:
        raise CdrError(f"unknown message type {msgtype} (not in the bag's definitions nor the distro's)") from None
    func = msgdef.deserialize_cdr_le if data[1] else msgdef.deserialize_cdr_be
    try:
        msg, pos = func(memoryview(data)[4:], 0, msgdef.cls, typestore)
    except (struct.error, UnicodeDecodeError, ValueError, IndexError, SerdeError) as exc:
        raise CdrError(f"{msgtype}: {len(data)} bytes do not decode ({exc})") from None
    trailing = len(data) - 4 - pos
    if trailing > 3:
        _check_trailing(typestore, msgtype, msg, trailing)
    return msg, trailing


def _check_trailing(typestore: Typestore, msgtype: str, msg: Any, trailing: int) -> None:
    allowed = 3 + 4 * _empty_sequences(typestore, msgtype, msg)
    if trailing > allowed:
        raise CdrError(f"{msgtype}: {trailing} bytes left over after the last field, at most {allowed} "
                       "can be padding (wrong message type or corrupt data)")
