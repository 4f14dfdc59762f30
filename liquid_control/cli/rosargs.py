"""Building a node's ROS argument list from CLI options, shared by `liquid-control run` and `sim`."""
from __future__ import annotations

from typing import Any


def ros_argv(prog: str, params: dict[str, Any], extra: list[str] | None, head: list[str] = ()) -> list[str]:
    """[prog, --ros-args, *head, -p name:=value (values not None), *extra], where `extra` is what the
    user wrote after `--` (its own leading --ros-args dropped, since one is already open)."""
    out = [prog, "--ros-args", *head]
    for name, value in params.items():
        if value is not None:
            out += ["-p", f"{name}:={value}"]
    rest = [a for a in (extra or []) if a != "--"]
    if rest and rest[0] == "--ros-args":
        rest = rest[1:]
    return out + rest
