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


def init_and_create(factory: Any, name: str, args: list[str] | None) -> Any | None:
    """rclpy.init without rclpy's own SIGINT/SIGTERM handlers (our mains stop their loops and publish
    a last message before the context goes down), then the node; a bad parameter or spec is one line on
    stderr and None (the caller exits 2), never a traceback."""
    import sys

    import rclpy
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
    from rclpy.signals import SignalHandlerOptions

    from liquid_control.core.errors import LiquidControlError

    from liquid_control.ros import params_file

    files = params_file.params_files(sys.argv if args is None else args)
    problem = params_file.check_files(files)
    if problem:
        print(f"{name}: {problem}", file=sys.stderr)
        return None
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as exc:  # rclpy's RCLError: a params file or argument rcl refuses
        print(f"{name}: {params_file.explain_rcl_error(exc)}", file=sys.stderr)
        return None
    try:
        node = factory()
    except (InvalidParameterValueException, InvalidParameterTypeException, LiquidControlError) as exc:
        text = str(exc)  # rclpy repeats the whole value: a huge list must not become a huge line
        print(f"{name}: {text if len(text) <= 400 else text[:200] + ' ... ' + text[-150:]}", file=sys.stderr)
        rclpy.try_shutdown()
        return None
    declared = node.list_parameters([], 0).names
    for line in params_file.unknown_parameters(files, node.get_fully_qualified_name(), declared):
        node.get_logger().warning(line)
    for f, keys in params_file.unmatched_sections(files, node.get_fully_qualified_name()):
        node.get_logger().warning(
            f"params file {f} has no section for this node ({node.get_fully_qualified_name()} or /**), only "
            f"{', '.join(keys) or 'none'}: none of its parameters apply; going on with the defaults")
    return node
