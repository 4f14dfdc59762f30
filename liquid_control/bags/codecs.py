"""The bag (rosbags) side's message codecs: JointState sensors in, command messages out and back in.

Command messages follow core/command_types.py's table, as the live side (ros/messages.py) does. The CDR
fast paths are core/cdr.py's; each is used only where the bag's definitions of the types involved are the
standard ones (a bag may carry its own), and falls back to rosbags otherwise:

  JointState sensors   read_joint_state, answered with the typestore's own classes (float64 arrays as numpy
                       views, the same trailing byte count, so decode_cdr's padding check is unchanged);
                       bytes it does not read exactly go to rosbags' deserializer
  Float64MultiArray    Float64ArrayCdr for the replayed commands written to a bag
  other commands       a rosbags message built from the table's fields, serialized by rosbags

test/test_messages.py checks each fast path against rosbags' bytes.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from rosbags.interfaces import Nodetype

from liquid_control.bags.typestore import distro_typestore, ensure_types
from liquid_control.core.cdr import Float64ArrayCdr, numpy_floats, read_joint_state
from liquid_control.core.command_types import command_fields, decode_command
from liquid_control.core.errors import SpecError
from liquid_control.core.spec import FLOAT64_ARRAY, JOINT_STATE, RobotSpec

# The types each fast path's layout depends on.
_FAST_DEPENDS = {
    JOINT_STATE: (JOINT_STATE, "std_msgs/msg/Header", "builtin_interfaces/msg/Time"),
    FLOAT64_ARRAY: (FLOAT64_ARRAY, "std_msgs/msg/MultiArrayLayout", "std_msgs/msg/MultiArrayDimension"),
}


def standard_definition(typestore: Any, msgtype: str, reference: Any = None) -> bool:
    """Whether `typestore` defines `msgtype` (and the types its fast path's layout uses) as `reference` does
    (default: the distro typestore)."""
    reference = distro_typestore(None) if reference is None else reference
    return all(name in typestore.fielddefs and typestore.fielddefs[name] == reference.fielddefs.get(name)
               for name in _FAST_DEPENDS[msgtype])


def joint_state_decoder(typestore: Any, reference: Any = None) -> Callable[[bytes], tuple[Any, int] | None] | None:
    """A decoder for `typestore`'s JointState if its definition is the standard one (standard_definition),
    else None. The decoder maps CDR bytes to (message, trailing bytes) or None (use the general decoder)."""
    if not standard_definition(typestore, JOINT_STATE, reference):
        return None
    T = typestore.types
    JointState, Header, Time = T[JOINT_STATE], T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]

    def decode(data: bytes) -> tuple[Any, int] | None:
        f = read_joint_state(data, numpy_floats)
        if f is None:
            return None
        msg = JointState(header=Header(stamp=Time(sec=f.sec, nanosec=f.nanosec), frame_id=f.frame_id), name=f.name,
                         position=f.position, velocity=f.velocity, effort=f.effort)
        return msg, f.trailing

    return decode


# rosbags' numeric base types -> numpy dtypes for their arrays (the others are named as numpy names them)
_DTYPES = {"byte": np.uint8, "char": np.uint8, "octet": np.uint8}


def _default(typestore: Any, kind: Nodetype, detail: Any) -> Any:
    """The default value of a field: zero, False, '', an empty sequence, a message of defaults."""
    if kind == Nodetype.NAME:
        return build_message(typestore, detail, {})
    if kind == Nodetype.BASE:
        base = detail[0]
        if base in ("string", "wstring"):
            return ""
        return np.dtype(_DTYPES.get(base, base)).type(0).item()
    (sub_kind, sub_detail), length = detail
    if sub_kind == Nodetype.BASE and sub_detail[0] not in ("string", "wstring"):
        return np.zeros(length if kind == Nodetype.ARRAY else 0, dtype=_DTYPES.get(sub_detail[0], sub_detail[0]))
    return [_default(typestore, sub_kind, sub_detail) for _ in range(length if kind == Nodetype.ARRAY else 0)]


def build_message(typestore: Any, msgtype: str, fields: dict[str, Any], prefix: str = "") -> Any:
    """A rosbags message of `msgtype` with the values of `fields` (dotted path -> value, as
    core.command_types.command_fields gives them) and zeros, False, '' and empty sequences everywhere else
    (what rclpy gives a field whose definition declares no default)."""
    kwargs = {}
    for name, (kind, detail) in typestore.fielddefs[msgtype][1]:
        path = prefix + name
        if path in fields:
            value = fields[path]
            if kind == Nodetype.SEQUENCE and detail[0][0] == Nodetype.BASE and detail[0][1][0] not in ("string", "wstring"):
                value = np.asarray(value, dtype=_DTYPES.get(detail[0][1][0], detail[0][1][0]))
            kwargs[name] = value
        elif kind == Nodetype.NAME:
            kwargs[name] = build_message(typestore, detail, fields, path + ".")
        else:
            kwargs[name] = _default(typestore, kind, detail)
    return typestore.types[msgtype](**kwargs)


class CommandSerializer:
    """Command vector -> serialized CDR bytes of the spec's command type, for writing bags: Float64ArrayCdr
    where the typestore's definition is the standard one, else rosbags serializing the table's message."""

    def __init__(self, spec: RobotSpec, typestore: Any):
        self.ts, self.action, self.msgtype = typestore, spec.action, spec.action.msg_type
        ensure_types(typestore, [self.msgtype])
        fast = self.msgtype == FLOAT64_ARRAY and standard_definition(typestore, FLOAT64_ARRAY)
        self._cdr = Float64ArrayCdr(spec.action.size) if fast else None

    def serialize(self, command: np.ndarray, stamp_ns: int) -> bytes:
        if self._cdr is not None:
            return self._cdr.encode(np.asarray(command, dtype=np.float64).tolist())
        return self.serialize_message(command, stamp_ns)

    def serialize_message(self, command: np.ndarray, stamp_ns: int) -> bytes:
        """rosbags' serialization of the table's message (the fallback, and the reference for the fast path)."""
        msg = build_message(self.ts, self.msgtype, command_fields(self.action, command, stamp_ns))
        return bytes(self.ts.serialize_cdr(msg, self.msgtype))


def command_vector(msg: Any, spec: RobotSpec) -> np.ndarray | None:
    """A recorded command message -> vector in spec.action.names order (None if it does not fit)."""
    try:
        return decode_command(msg, spec.action)
    except (SpecError, AttributeError, TypeError, ValueError):
        return None
