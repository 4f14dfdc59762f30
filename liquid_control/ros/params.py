"""Parameter helpers shared by the nodes."""
from __future__ import annotations

from typing import Any, Iterable

from rclpy.parameter import Parameter


def accept_ints_for_doubles(node: Any, names: Iterable[str]) -> None:
    """Let an integer given for a double parameter (`-p rate_hz:=50`, `rate_hz: 50` in a params YAML)
    count as that double: rclpy types a parameter by its default and would otherwise refuse the int
    with an InvalidParameterTypeException at declare time. Call before declaring the parameters.

    rclpy keeps the command-line / YAML values in `Node._parameter_overrides` until each parameter is
    declared; there is no public hook between parsing and declaring."""
    overrides = getattr(node, "_parameter_overrides", None)
    if not overrides:
        return
    for name in names:
        p = overrides.get(name)
        if p is not None and p.type_ == Parameter.Type.INTEGER:
            overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(p.value))
