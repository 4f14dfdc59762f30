"""The live (rclpy) side's message codecs: message classes by type name, stamps, command messages out.

Command messages follow core/command_types.py's table (where the vector sits in each type);
`CommandEncoder` fills one reusable message of the spec's command type from a command vector (rclpy
serialises on publish, so reuse is safe), or, where core/cdr.py packs the type directly
(Float64MultiArray), hands out the serialized bytes, which rclpy publishes without converting a message.
The inverse, a command message -> vector, is core.command_types.decode_command (the bag side uses it too).

The CDR fast paths (core/cdr.py) and their rclpy fallbacks, chosen by the callers:
  JointState sensors   read_joint_state on a raw subscription's bytes, its fields handed on as they are;
                       rclpy's deserialize_message for bytes it does not read (the controller node)
  Float64MultiArray    Float64ArrayCdr: the node's commands out, the sim bridge's commands in
  JointState, Clock    JointStateCdr, ClockCdr: the sim bridge's sensors and /clock out
test/test_messages.py checks each fast path against rclpy's bytes.
"""
from __future__ import annotations

import array
import importlib
from typing import Any, Callable

import numpy as np

from liquid_control.core.cdr import Float64ArrayCdr, JointStateFields, read_joint_state, tuple_floats
from liquid_control.core.command_types import command_layout, field_owner, get_field
from liquid_control.core.errors import SpecError
from liquid_control.core.spec import FLOAT64_ARRAY, ActionSpec


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


def decode_joint_state(data: bytes) -> JointStateFields | None:
    """A serialized JointState's fields (core.cdr's reader, the one bag replay uses too; the observation
    assembler reads them by the message's field names), or None if the bytes are not plain little-endian
    CDR or do not parse (then ask rclpy)."""
    return read_joint_state(data, tuple_floats)


def header_stamp_ns(msg: Any) -> int:
    """header.stamp in nanoseconds, of an rclpy message or of the fields decode_joint_state gives."""
    if type(msg) is JointStateFields:
        return msg.sec * 1_000_000_000 + msg.nanosec
    stamp = msg.header.stamp
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class CommandEncoder:
    """Fills one reusable command message of the spec's type from a command vector, as
    core.command_types' table lays the vector out."""

    def __init__(self, action: ActionSpec):
        self.action = action
        self.msg_type = action.msg_type
        layout = command_layout(action.msg_type)
        self.msg_class = message_class(action.msg_type)
        self.msg = self.msg_class()
        n = action.size
        self._buf = array.array("d", bytes(8 * n))  # the message's sequence storage
        self._view = np.frombuffer(self._buf, dtype=np.float64)  # numpy view onto it: no copy
        if layout.names is not None:
            setattr(*field_owner(self.msg, layout.names), list(action.names))
        # The generated setters copy an array.array they are given, so the sequence field is assigned every
        # call (one small copy, no Python-level loop); scalar fields are set one by one.
        self._values = None if layout.values is None else field_owner(self.msg, layout.values)
        self._scalars = [field_owner(self.msg, path) for path in action.names] if layout.values is None else []
        self._stamp = None if layout.stamp is None else get_field(self.msg, layout.stamp)
        self._cdr = Float64ArrayCdr(n) if self.msg_type == FLOAT64_ARRAY else None

    def publishable(self, command: np.ndarray, stamp_ns: int | None = None) -> Any:
        """What to hand to Publisher.publish for `command`: the serialized bytes where core/cdr.py packs the
        type (Float64MultiArray: rclpy publishes bytes without converting a message), else `encode`'s message."""
        if self._cdr is not None:
            return self._cdr.encode(command.tolist())
        return self.encode(command, stamp_ns)

    def encode(self, command: np.ndarray, stamp_ns: int | None = None) -> Any:
        """The message carrying `command` (the same object every call: publish it before the next)."""
        if self._values is not None:
            self._view[:] = command
            setattr(*self._values, self._buf)
        else:
            for (owner, name), v in zip(self._scalars, command):
                setattr(owner, name, float(v))
        if self._stamp is not None and stamp_ns is not None:
            set_stamp(self._stamp, stamp_ns)
        return self.msg


def from_bytes(decode: Callable[[bytes], Any], cls: type, callback: Callable[[Any], None],
                reject: Callable[[str], None]) -> Callable[[bytes], None]:
    """A raw subscription's callback: `decode` the bytes (None: rclpy deserializes them), then `callback`.

    Bytes that rclpy cannot deserialize either go to `reject` and are dropped, as rmw drops them on a typed
    subscription: one corrupt sample (or a buggy publisher) must not take the controller down. If the sensor
    itself only sends such bytes, its topic goes stale and the stale-sensor safety takes over.
    """

    from rclpy.serialization import deserialize_message

    def on_bytes(data: bytes) -> None:
        msg = decode(data)
        if msg is None:
            try:
                msg = deserialize_message(data, cls)
            except RuntimeError as exc:  # rclpy's RMWError: not a message of this type
                reject(f"{len(data)} bytes that are not a {cls.__name__} ({str(exc).split(':')[0]}); dropped")
                return
        callback(msg)

    return on_bytes
