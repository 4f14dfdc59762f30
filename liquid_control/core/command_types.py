"""The command message types, in one table: where a command vector sits in each, and how it comes back.

Both codec sides are driven by COMMAND_LAYOUTS: ros/messages.py (rclpy messages, the live node) and
bags/codecs.py (rosbags messages, bags). A new command type is one row here (and its name in
spec.COMMAND_TYPES, which the spec parser accepts); a CDR fast path for it (core/cdr.py) is optional.

  std_msgs/Float64MultiArray   data = the command, in spec.action.names order (ros2_control's
                               forward_command_controller takes exactly this)
  sensor_msgs/JointState       name = spec.action.names, effort = the command, header.stamp = the tick time
  geometry_msgs/Twist          each action name is a field path ('linear.x', 'angular.z'); others stay 0

Every field the table does not name keeps its default (zero, empty). Decoding is duck-typed on the ROS
field names, so rclpy and rosbags messages both work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from liquid_control.core.errors import SpecError
from liquid_control.core.spec import FLOAT64_ARRAY, JOINT_STATE, TWIST, ActionSpec


@dataclass(frozen=True)
class CommandLayout:
    """Where a command vector sits in one message type (field paths are dotted: 'header.stamp')."""

    values: str | None  # the float64[] field holding the vector; None: each action name is a float64 field's path
    names: str | None = None  # a string[] field set to the action names; decoding picks the values by name
    stamp: str | None = None  # a builtin_interfaces/Time field set to the tick time


COMMAND_LAYOUTS: dict[str, CommandLayout] = {
    FLOAT64_ARRAY: CommandLayout(values="data"),
    JOINT_STATE: CommandLayout(values="effort", names="name", stamp="header.stamp"),
    TWIST: CommandLayout(values=None),
}


def command_layout(msg_type: str) -> CommandLayout:
    try:
        return COMMAND_LAYOUTS[msg_type]
    except KeyError:
        raise SpecError(f"unsupported command type {msg_type!r}") from None


def get_field(msg: Any, path: str) -> Any:
    """The value at a dotted field path ('linear.x') of a message."""
    for part in path.split("."):
        msg = getattr(msg, part)
    return msg


def field_owner(msg: Any, path: str) -> tuple[Any, str]:
    """(the object holding the last field of `path`, that field's name): where a setattr writes it."""
    head, _, last = path.rpartition(".")
    return (get_field(msg, head) if head else msg), last


def command_fields(action: ActionSpec, command: Any, stamp_ns: int | None = None) -> dict[str, Any]:
    """Field path -> value for a message carrying `command` (Python floats, lists); every other field keeps
    its default. The stamp is written as its two fields, '<stamp>.sec' and '<stamp>.nanosec'."""
    layout = command_layout(action.msg_type)
    values = [float(v) for v in command]
    if len(values) != action.size:
        raise SpecError(f"a command of {len(values)} values for {action.size} actuators")
    fields: dict[str, Any] = dict(zip(action.names, values)) if layout.values is None else {layout.values: values}
    if layout.names is not None:
        fields[layout.names] = list(action.names)
    if layout.stamp is not None and stamp_ns is not None:
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        fields[f"{layout.stamp}.sec"], fields[f"{layout.stamp}.nanosec"] = sec, nanosec
    return fields


def decode_command(msg: Any, action: ActionSpec) -> np.ndarray:
    """A command message -> the command vector in spec order (a new float64 array). Raises SpecError if it
    does not fit."""
    layout = command_layout(action.msg_type)
    short = action.msg_type.split("/")[-1]
    if layout.values is None:
        return np.array([float(get_field(msg, path)) for path in action.names], dtype=np.float64)
    values = np.array(get_field(msg, layout.values), dtype=np.float64)
    if layout.names is None:
        if values.shape != (action.size,):
            raise SpecError(f"{short} command has {values.size} values, expected {action.size}")
        return values
    names = list(get_field(msg, layout.names))
    if values.shape != (len(names),):
        raise SpecError(f"{short} command has {values.size} {layout.values} values for {len(names)} names")
    try:
        return values[[names.index(a) for a in action.names]]
    except ValueError:
        missing = [a for a in action.names if a not in names]
        raise SpecError(f"{short} command lacks actuator {missing[0]!r}") from None
