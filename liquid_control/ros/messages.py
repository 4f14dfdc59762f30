"""ROS message codecs for the spec: message classes by type name, command messages out, commands back in.

`CommandEncoder` builds the command message the spec names from a command vector, reusing one message
object (rclpy serialises on publish, so reuse is safe). The generated setters copy an array.array
they are given, so the sequence field is assigned every call (one small copy, no Python-level loop):

  std_msgs/Float64MultiArray   data = command, in spec.action.names order (ros2_control's
                               forward_command_controller takes exactly this)
  sensor_msgs/JointState       name = spec.action.names, effort = command, header.stamp = now
  geometry_msgs/Twist          each action name is an axis ('linear.x', 'angular.z', ...); others stay 0

The inverse, a command message -> vector, is core's `decode_command` (the bag tools need it without rclpy).
For the lockstep hot path, Float64ArrayCdr, ClockCdr and JointStateCdr pack (Float64ArrayCdr also unpacks)
fixed-layout messages as CDR bytes directly, which rclpy publishes and takes without message objects.
"""
from __future__ import annotations

import array
import importlib
import struct
from typing import Any

import numpy as np

from liquid_control.core.cdr import read_joint_state, tuple_floats
from liquid_control.core.command import decode_command  # noqa: F401  (re-exported for the bridge)
from liquid_control.core.errors import SpecError
from liquid_control.core.spec import FLOAT64_ARRAY, JOINT_STATE, TWIST, ActionSpec


def message_class(type_name: str) -> type:
    """'sensor_msgs/msg/JointState' (or 'sensor_msgs/JointState') -> the rclpy message class."""
    parts = type_name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise SpecError(f"not a ROS message type name: {type_name!r} (expected 'package/msg/Type')")
    package, kind, name = parts
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError):
        raise SpecError(f"message type {type_name!r} is not available here (is the {package} package installed?)") from None


def stamp_of(ns: int) -> Any:
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def set_stamp(stamp: Any, ns: int) -> None:
    """Write `ns` into an existing builtin_interfaces/Time field in place: ~0.2 us against ~1.5 us for
    building a new Time with stamp_of (a per-tick cost on the lockstep path: sensors, /clock, command)."""
    stamp.sec, stamp.nanosec = divmod(ns, 1_000_000_000)


# --- hand-serialized messages for the lockstep hot path -------------------------------------------------
# rclpy converts a message to C and serializes it on publish (~3-4 us), and builds a Python message object
# from the bytes on take (~6 us for a Float64MultiArray: three nested objects). For the few fixed-layout
# messages a lockstep tick exchanges, packing and unpacking the CDR bytes directly costs a fraction of that.
# The layouts are plain CDR, little endian (XCDR1, what rmw_fastrtps and rosbag2 use), offsets counted
# after the 4-byte encapsulation header; anything else falls back to rclpy's (de)serialization.
CDR_LE = b"\x00\x01\x00\x00"


class Float64ArrayCdr:
    """std_msgs/Float64MultiArray with an empty layout and `n` values, as CDR bytes:
    layout.dim count 0 (uint32), data_offset 0 (uint32), value count (uint32), 4 bytes of padding (doubles
    align to 8), the values."""

    HEAD = 20  # encapsulation + dim count + data_offset + count + padding

    def __init__(self, n: int):
        self.n = n
        self._buf = bytearray(self.HEAD + 8 * n)
        self._buf[:4] = CDR_LE
        struct.pack_into("<III", self._buf, 4, 0, 0, n)
        self._pack = struct.Struct(f"<{n}d").pack_into

    def encode(self, values: Any) -> bytes:
        """The serialized message carrying `values` (n numbers)."""
        self._pack(self._buf, self.HEAD, *values)
        return bytes(self._buf)

    @classmethod
    def decode(cls, data: bytes) -> np.ndarray | None:
        """The values of a serialized Float64MultiArray with an empty layout (a new float64 array), or None
        when the bytes are anything else (a layout with dims, another encoding, truncated): ask rclpy."""
        if len(data) < cls.HEAD or data[:4] != CDR_LE:
            return None
        dims, _offset, n = struct.unpack_from("<III", data, 4)
        if dims != 0 or len(data) < cls.HEAD + 8 * n:
            return None
        return np.frombuffer(data, dtype="<f8", count=n, offset=cls.HEAD).astype(np.float64)


class ClockCdr:
    """rosgraph_msgs/Clock as CDR bytes: sec (int32), nanosec (uint32)."""

    def __init__(self) -> None:
        self._buf = bytearray(CDR_LE + bytes(8))

    def encode(self, ns: int) -> bytes:
        struct.pack_into("<iI", self._buf, 4, *divmod(ns, 1_000_000_000))
        return bytes(self._buf)


class _Stamp:
    __slots__ = ("sec", "nanosec")

    def __init__(self, sec: int, nanosec: int):
        self.sec, self.nanosec = sec, nanosec


class _Header:
    __slots__ = ("stamp", "frame_id")

    def __init__(self, stamp: _Stamp, frame_id: str):
        self.stamp, self.frame_id = stamp, frame_id


class JointStateView:
    """A JointState's fields as JointStateCdr.decode read them (tuples of names and floats): what the
    observation assembler and the controller read of a sensor message, without rclpy's message object."""

    __slots__ = ("header", "name", "position", "velocity", "effort")

    def __init__(self, sec: int, nanosec: int, frame_id: str, name: tuple[str, ...], position: tuple[float, ...],
                 velocity: tuple[float, ...], effort: tuple[float, ...]):
        self.header = _Header(_Stamp(sec, nanosec), frame_id)
        self.name, self.position, self.velocity, self.effort = name, position, velocity, effort


class JointStateCdr:
    """sensor_msgs/JointState with a fixed frame_id and joint names, and one value per joint in position,
    velocity and effort, as CDR bytes. The layout never changes, so the bytes are laid out once and each
    message only writes the stamp and the values in place."""

    def __init__(self, names: tuple[str, ...] | list[str], frame_id: str = ""):
        body = bytearray()

        def align(k: int) -> None:
            body.extend(bytes(-len(body) % k))

        def string(text: str) -> None:  # uint32 length with the NUL, the characters, NUL
            raw = text.encode() + b"\0"
            align(4)
            body.extend(struct.pack("<I", len(raw)) + raw)

        n = len(names)
        body.extend(bytes(8))  # header.stamp: sec (int32), nanosec (uint32)
        string(frame_id)
        align(4)
        body.extend(struct.pack("<I", n))
        for name in names:
            string(name)
        offsets = []
        for _ in range(3):  # position, velocity, effort: count, then the doubles aligned to 8 (if any)
            align(4)
            body.extend(struct.pack("<I", n))
            if n:
                align(8)
            offsets.append(len(CDR_LE) + len(body))
            body.extend(bytes(8 * n))
        self._buf = bytearray(CDR_LE + body)
        self._position, self._velocity, self._effort = (
            np.frombuffer(self._buf, dtype="<f8", count=n, offset=off) for off in offsets)

    @staticmethod
    def decode(data: bytes) -> "JointStateView | None":
        """The fields of a serialized JointState (core.cdr's reader, the one bag replay uses too), or None if
        the bytes are not plain little-endian CDR or do not parse (then ask rclpy)."""
        f = read_joint_state(data, tuple_floats)
        if f is None:
            return None
        return JointStateView(f.sec, f.nanosec, f.frame_id, tuple(f.name), f.position, f.velocity, f.effort)

    def encode(self, stamp_ns: int, position: Any, velocity: Any, effort: Any) -> bytes:
        """The serialized message: `stamp_ns` in the header, n values in each array."""
        struct.pack_into("<iI", self._buf, 4, *divmod(stamp_ns, 1_000_000_000))
        self._position[:] = position
        self._velocity[:] = velocity
        self._effort[:] = effort
        return bytes(self._buf)


class CommandEncoder:
    """Fills one reusable command message of the spec's type from a command vector."""

    def __init__(self, action: ActionSpec):
        self.action = action
        self.msg_type = action.msg_type
        self.msg_class = message_class(action.msg_type)
        self.msg = self.msg_class()
        n = action.size
        self._buf = array.array("d", bytes(8 * n))  # the message's sequence storage
        self._view = np.frombuffer(self._buf, dtype=np.float64)  # numpy view onto it: no copy
        self._cdr = None
        if self.msg_type == FLOAT64_ARRAY:
            self.msg.data = self._buf
            self._cdr = Float64ArrayCdr(n)
        elif self.msg_type == JOINT_STATE:
            self.msg.name = list(action.names)
            self.msg.effort = self._buf
        elif self.msg_type == TWIST:
            self._axes = [tuple(a.split(".")) for a in action.names]
        else:
            raise SpecError(f"unsupported command type {self.msg_type!r}")

    def publishable(self, command: np.ndarray, stamp_ns: int | None = None) -> Any:
        """What to hand to Publisher.publish for `command`: the serialized bytes where the layout is fixed
        (Float64MultiArray: rclpy publishes bytes without converting a message), else `encode`'s message."""
        if self._cdr is not None:
            return self._cdr.encode(command.tolist())
        return self.encode(command, stamp_ns)

    def encode(self, command: np.ndarray, stamp_ns: int | None = None) -> Any:
        """The message carrying `command` (the same object every call: publish it before the next)."""
        if self.msg_type == TWIST:
            for (group, axis), v in zip(self._axes, command):
                setattr(getattr(self.msg, group), axis, float(v))
            return self.msg
        self._view[:] = command
        if self.msg_type == FLOAT64_ARRAY:
            self.msg.data = self._buf
        else:
            self.msg.effort = self._buf
            if stamp_ns is not None:
                set_stamp(self.msg.header.stamp, stamp_ns)
        return self.msg
