"""The controller's parameters: the table (defaults, descriptors), the checks a range cannot say, and the
effective settings resolved from the parameters and the robot spec at configure."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, ParameterType

from liquid_control.core.errors import LiquidControlError
from liquid_control.core.spec import RobotSpec
from liquid_control.ros.controller.step_debug import DEBUG_FIELDS

NODE_NAME = "liquid_controller"
RATE_RANGE = (10.0, 1000.0)
MAX_ACTUATORS = 256  # command_lower/upper lengths: bounds what a params file can make us parse

# Parameters that shape the configured node: changing them needs cleanup + configure. (use_sim_time is
# rclpy's; the loop clock is chosen at configure, so switching it under a running loop is refused too.)
STRUCTURAL = ("robot", "model", "backend", "rate_hz", "sensor_timeout", "soft_start", "safe_behaviour",
              "command_lower", "command_upper", "step_debug", "use_sim_time")


def _descriptor(kind: int, text: str, lo: float | None = None, hi: float | None = None) -> ParameterDescriptor:
    if kind == ParameterType.PARAMETER_DOUBLE_ARRAY:
        # An empty default has no element type in rclpy (it becomes a byte array), so the arrays are
        # dynamically typed; check_param() insists on a list of numbers.
        return ParameterDescriptor(dynamic_typing=True, description=text + " (a list of numbers)")
    d = ParameterDescriptor(type=kind, description=text)
    if lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    return d


PARAMS: dict[str, tuple[Any, ParameterDescriptor]] = {
    "robot": ("cartpole", _descriptor(ParameterType.PARAMETER_STRING,
                                      "robot spec: a name from config/robots/ or a path to a spec YAML")),
    "model": ("", _descriptor(ParameterType.PARAMETER_STRING,
                              "policy artifact path; empty = the robot's shipped policy (policies/<robot>.onnx)")),
    "backend": ("numpy", _descriptor(ParameterType.PARAMETER_STRING, "policy backend: numpy | onnxruntime | torch")),
    "rate_hz": (0.0, _descriptor(ParameterType.PARAMETER_DOUBLE,
                                 "control rate in Hz, 10..1000; 0 = the spec's rate")),
    "sensor_timeout": (0.0, _descriptor(ParameterType.PARAMETER_DOUBLE,
                                        "seconds before a sensor counts as stale; 0 = the spec's value", 0.0, 60.0)),
    "soft_start": (-1.0, _descriptor(ParameterType.PARAMETER_DOUBLE,
                                     "seconds to ramp the command in after activation or recovery; "
                                     "-1 = the spec's value", -1.0, 60.0)),
    "safe_behaviour": ("", _descriptor(ParameterType.PARAMETER_STRING,
                                       "safe command: zero (the spec's safe value) | hold (last good command); "
                                       "empty = the spec's choice")),
    "command_lower": ([], _descriptor(ParameterType.PARAMETER_DOUBLE_ARRAY,
                                      "per-actuator lower command limits (may only tighten the spec's); "
                                      "empty = the spec's")),
    "command_upper": ([], _descriptor(ParameterType.PARAMETER_DOUBLE_ARRAY,
                                      "per-actuator upper command limits (may only tighten the spec's); "
                                      "empty = the spec's")),
    "autostart": (False, _descriptor(ParameterType.PARAMETER_BOOL,
                                     "configure and activate at start-up (no lifecycle manager needed)")),
    "estop_topic": ("estop", ParameterDescriptor(
        type=ParameterType.PARAMETER_STRING, read_only=True,
        description="std_msgs/Bool topic (reliable): true forces the spec's safe value until false; "
                    "subscribed at start-up, for the node's whole life")),
    # Default false: the node's out-of-the-box users (the sim demo, bag replay, the launch files with the
    # sim bridge) have no e-stop publisher and would never command. A robot deployment with an e-stop
    # source sets it true in its YAML: then nothing moves until that source is heard saying false.
    "estop_required": (False, ParameterDescriptor(
        type=ParameterType.PARAMETER_BOOL, read_only=True,
        description="start with the e-stop engaged until the first e-stop message says false")),
    # A heartbeat: an e-stop source that dies (cable, crashed process) after saying false is otherwise never
    # noticed, since a silent topic looks like "still released". Measured on the monotonic wall clock in both
    # time modes: the e-stop is a physical device, whatever clock the simulation runs.
    "estop_timeout": (0.0, ParameterDescriptor(
        type=ParameterType.PARAMETER_DOUBLE, read_only=True,
        floating_point_range=[FloatingPointRange(from_value=0.0, to_value=60.0, step=0.0)],
        description="seconds the e-stop source may stay silent before that counts as engaged (it must then "
                    "publish its state periodically, and nothing moves until it is first heard); 0 = no "
                    "heartbeat expected")),
    "step_debug": (False, _descriptor(ParameterType.PARAMETER_BOOL,
                                      "publish ~/step_debug per tick: " + ", ".join(DEBUG_FIELDS)
                                      + ", obs, action, command")),
    "executor": ("events", ParameterDescriptor(
        type=ParameterType.PARAMETER_STRING, read_only=True,
        description="callback executor, chosen at start-up: events (rclpy's C++ EventsExecutor) | single "
                    "(rclpy's SingleThreadedExecutor)")),
    "diagnostics_period": (1.0, _descriptor(ParameterType.PARAMETER_DOUBLE,
                                            "seconds between /diagnostics reports", 0.1, 60.0)),
}


def check_param(name: str, value: Any) -> str | None:
    """Why `value` is not acceptable for parameter `name`, or None. (Ranges come from the descriptors
    too; this adds the rules a range cannot say.)"""
    if name == "rate_hz" and value != 0.0 and not RATE_RANGE[0] <= value <= RATE_RANGE[1]:
        return f"rate_hz must be 0 (the spec's rate) or within {RATE_RANGE[0]:g}..{RATE_RANGE[1]:g} Hz, got {value:g}"
    if name == "safe_behaviour" and value not in ("", "zero", "hold"):
        return f"safe_behaviour must be 'zero' or 'hold' (or empty for the spec's), got {value!r}"
    if name == "backend" and value not in ("numpy", "onnxruntime", "torch"):
        return f"backend must be numpy, onnxruntime or torch, got {value!r}"
    if name == "executor" and value not in ("events", "single"):
        return f"executor must be 'events' or 'single', got {value!r}"
    if name == "robot" and not value:
        return "robot must name a robot spec (e.g. cartpole) or a spec YAML path"
    if name == "sensor_timeout" and value < 0:
        return "sensor_timeout must be > 0 s (or 0 for the spec's)"
    if name == "soft_start" and value < 0 and value != -1.0:
        return "soft_start must be >= 0 s (or -1 for the spec's)"
    if name in ("command_lower", "command_upper"):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or not all(  # rclpy: array('d')
                isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v) for v in value):
            return f"{name} must be a list of numbers (one per actuator), got {repr(value)[:80]}"
        if len(value) > MAX_ACTUATORS:
            return f"{name} has {len(value)} values; at most {MAX_ACTUATORS} (one per actuator)"
    if name == "estop_topic":
        from rclpy.validate_topic_name import validate_topic_name

        try:
            validate_topic_name(value)
        except Exception as exc:  # InvalidTopicNameException, or a non-string
            return f"estop_topic {value!r} is not a valid topic name: {str(exc).splitlines()[0]}"
    if name == "use_sim_time" and not isinstance(value, bool):
        return f"use_sim_time must be true or false, got {value!r}"
    return None


@dataclass(frozen=True)
class Settings:
    """The effective configuration, resolved from parameters and the spec at configure."""

    spec: RobotSpec
    rate_hz: float
    sensor_timeout: float
    soft_start: float
    safe_behaviour: str
    model: Path
    use_sim_time: bool
    lower: tuple[float, ...] | None  # command limits tighter than the spec's, or None
    upper: tuple[float, ...] | None

    @property
    def period(self) -> float:
        return 1.0 / self.rate_hz


def resolve(param: Callable[[str], Any]) -> Settings:
    """The settings from the parameters (`param(name)` -> value) and the spec they name; LiquidControlError
    when they do not fit together."""
    from liquid_control.core.resources import default_policy_path
    from liquid_control.core.spec import load_spec

    spec = load_spec(param("robot"))
    model = param("model")
    s = spec.safety
    rate = param("rate_hz") or spec.rate_hz
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise LiquidControlError(f"spec {spec.name!r} rate {rate:g} Hz is outside {RATE_RANGE[0]:g}..{RATE_RANGE[1]:g} Hz; "
                                 "set rate_hz")
    lower = tuple(param("command_lower")) or None
    upper = tuple(param("command_upper")) or None
    for name, given, spec_side, tighter in (("command_lower", lower, spec.action.lower, lambda g, v: g >= v),
                                            ("command_upper", upper, spec.action.upper, lambda g, v: g <= v)):
        if given is not None and (len(given) != spec.action_size
                                  or not all(tighter(g, v) for g, v in zip(given, spec_side))):
            shown = list(given) if len(given) <= 8 else f"[{len(given)} values]"
            raise LiquidControlError(f"{name} {shown} must give {spec.action_size} values within the "
                                     f"spec's limits {list(spec.action.lower)}..{list(spec.action.upper)}")
    return Settings(spec=spec, rate_hz=float(rate), sensor_timeout=param("sensor_timeout") or s.sensor_timeout,
                    soft_start=s.soft_start if param("soft_start") < 0 else param("soft_start"),
                    safe_behaviour=param("safe_behaviour") or s.safe_behaviour,
                    model=Path(model) if model else default_policy_path(spec.name),
                    use_sim_time=bool(param("use_sim_time")), lower=lower, upper=upper)
