"""ROS message codecs for the spec: message classes by type name, command messages out, commands back in.

`CommandEncoder` builds the command message the spec names from a command vector, reusing one message
object (rclpy serialises on publish, so reuse is safe). The generated setters copy an array.array
they are given, so the sequence field is assigned every call (one small copy, no Python-level loop):

  std_msgs/Float64MultiArray   data = command, in spec.action.names order (ros2_control's
                               forward_command_controller takes exactly this)
  sensor_msgs/JointState       name = spec.action.names, effort = command, header.stamp = now
  geometry_msgs/Twist          each action name is an axis ('linear.x', 'angular.z', ...); others stay 0

The inverse, a command message -> vector, is core's `decode_command` (the bag tools need it without rclpy).
"""
from __future__ import annotations

import array
import importlib
from typing import Any

import numpy as np

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
        if self.msg_type == FLOAT64_ARRAY:
            self.msg.data = self._buf
        elif self.msg_type == JOINT_STATE:
            self.msg.name = list(action.names)
            self.msg.effort = self._buf
        elif self.msg_type == TWIST:
            self._axes = [tuple(a.split(".")) for a in action.names]
        else:
            raise SpecError(f"unsupported command type {self.msg_type!r}")

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
