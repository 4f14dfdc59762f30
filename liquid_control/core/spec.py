"""The robot interface spec: how one robot is seen and commanded (config/robots/<robot>.yaml).

Everything else is derived from this one file: the MuJoCo env computes the observation vector from
simulator state, the controller node and the bag tools assemble it from messages, and the policy
artifact records the layout (and its hash) it was trained against.

Only numpy and PyYAML: this module is part of the core layer and must import on a robot without
torch, mujoco or rclpy.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liquid_control.core import checks
from liquid_control.core.errors import SpecError
from liquid_control.core.yamlfile import load_yaml

JOINT_STATE = "sensor_msgs/msg/JointState"
IMU = "sensor_msgs/msg/Imu"
POINT_STAMPED = "geometry_msgs/msg/PointStamped"
TWIST = "geometry_msgs/msg/Twist"
TWIST_STAMPED = "geometry_msgs/msg/TwistStamped"
FLOAT64_ARRAY = "std_msgs/msg/Float64MultiArray"
SINCOS = "sincos"
ENCODINGS = (SINCOS,)

# Which fields each supported message type offers, and which names address their elements.
_VECTOR_AXES = ("x", "y", "z")
_QUAT_AXES = ("x", "y", "z", "w")
OBS_FIELDS: dict[str, dict[str, tuple[str, ...] | None]] = {
    JOINT_STATE: {"position": None, "velocity": None, "effort": None},  # names are joint names
    IMU: {"angular_velocity": _VECTOR_AXES, "linear_acceleration": _VECTOR_AXES, "orientation": _QUAT_AXES},
    POINT_STAMPED: {"point": _VECTOR_AXES},
    TWIST: {"linear": _VECTOR_AXES, "angular": _VECTOR_AXES},
    TWIST_STAMPED: {"twist.linear": _VECTOR_AXES, "twist.angular": _VECTOR_AXES},
    FLOAT64_ARRAY: {"data": None},  # names are element indices
}
COMMAND_TYPES = (FLOAT64_ARRAY, JOINT_STATE, TWIST)
# ros2_control's command interfaces a joint command can name; MuJoCo's <motor>, <position> (PD to the target,
# kp / kv) and <velocity> (velocity servo, kv) actuators apply them in simulation.
INTERFACES = ("position", "velocity", "effort")
TWIST_AXES = ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")

_TYPE_ALIASES = {t.replace("/msg/", "/"): t for t in OBS_FIELDS}


def _canonical_type(name: str) -> str:
    """Accept 'sensor_msgs/JointState' as well as 'sensor_msgs/msg/JointState'."""
    return _TYPE_ALIASES.get(name, name)


@dataclass(frozen=True)
class ObsEntry:
    """One block of the observation vector: `names` elements of `field` from a message on `topic`.

    obs = (raw - offset) * scale, element-wise. `sim` says how the MuJoCo env reads the same quantity
    (joints need nothing: they are looked up by name; an IMU field names a sensor, a goal a site).

    `clip: {low: L, high: H}` bounds each raw value to [L, H] before offset and scale (Gymnasium's Hopper
    observes joint velocities clipped to +-10): a sensor that saturates.

    `encode: sincos` (joint positions only) replaces each angle v by (cos v, sin v): the block holds the
    cosines of all its joints, then the sines, as Gymnasium's Reacher does. A continuous joint that winds
    past +-pi then looks the same to the policy at v and v + 2 pi, and the input stays in [-1, 1].

    `timeout` (seconds) is how long the entry's topic may stay silent before it is stale, where it differs
    from safety.sensor_timeout: an operator's command (cmd_vel from a teleop at 10 Hz) beside joint
    states at 500 Hz. Entries on one topic share it. It is a safety setting of the robot, not part of what
    a model depends on (not in `layout`).
    """

    topic: str
    msg_type: str
    field: str
    names: tuple[str, ...]
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    sim: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    encode: str | None = None  # None or "sincos"
    clip: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (low, high) per name, on the raw value
    timeout: float | None = None  # seconds before the topic is stale; None: safety.sensor_timeout

    @property
    def size(self) -> int:
        """Elements of the observation vector (twice the names under sincos)."""
        return len(self.names) * (2 if self.encode == SINCOS else 1)

    @property
    def label(self) -> str:
        short = self.msg_type.split("/")[-1]
        return f"{short}.{self.field}[{','.join(self.names)}]"

    def labels(self) -> list[str]:
        """One label per observation element."""
        short = self.msg_type.split("/")[-1]
        plain = [f"{short}.{self.field}[{n}]" for n in self.names]
        if self.encode == SINCOS:
            return [f"cos({x})" for x in plain] + [f"sin({x})" for x in plain]
        return plain

    def layout(self) -> dict[str, Any]:
        """What a model depends on: not the topic (remapping is fine), but type, field, names, scaling.
        `encode` and `clip` only when set, so layouts (and hashes) of specs without them are what they
        always were."""
        out = {"type": self.msg_type, "field": self.field, "names": list(self.names),
               "scale": list(self.scale), "offset": list(self.offset)}
        if self.encode is not None:
            out["encode"] = self.encode
        if self.clip is not None:
            out["clip"] = {"low": list(self.clip[0]), "high": list(self.clip[1])}
        return out


@dataclass(frozen=True)
class ActionSpec:
    """The command: policy action a (nominally in [-1, 1]) becomes command = a * scale, then limits."""

    topic: str
    msg_type: str
    names: tuple[str, ...]
    scale: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    rate_limit: tuple[float, ...] | None  # max change per second, per actuator; None = unlimited
    safe: tuple[float, ...]
    # The ros2_control command interface the command drives (INTERFACES); None: whatever the model's
    # actuators take (an MJCF's actuators, a URDF's <ros2_control> block).
    interface: str | None = None

    @property
    def size(self) -> int:
        return len(self.names)

    def layout(self) -> dict[str, Any]:
        """`interface` only when set, so the layouts (and hashes) of specs without one are unchanged."""
        out = {"type": self.msg_type, "names": list(self.names), "scale": list(self.scale)}
        if self.interface is not None:
            out["interface"] = self.interface
        return out


@dataclass(frozen=True)
class Safety:
    sensor_timeout: float = 0.1  # seconds without a message before the topic is stale
    soft_start: float = 1.0  # seconds to ramp the command in after activation or recovery
    safe_behaviour: str = "zero"  # "zero": publish ActionSpec.safe; "hold": repeat the last good command


@dataclass(frozen=True)
class RobotSpec:
    name: str
    rate_hz: float
    observation: tuple[ObsEntry, ...]
    action: ActionSpec
    safety: Safety
    sim: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    source: Path | None = field(default=None, compare=False, hash=False)

    @property
    def period(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def obs_size(self) -> int:
        return sum(e.size for e in self.observation)

    @property
    def action_size(self) -> int:
        return self.action.size

    @property
    def topics(self) -> tuple[str, ...]:
        """Sensor topics in first-use order, each once."""
        return tuple(dict.fromkeys(e.topic for e in self.observation))

    def obs_labels(self) -> list[str]:
        return [label for e in self.observation for label in e.labels()]

    def layout(self) -> dict[str, Any]:
        return {"observation": [e.layout() for e in self.observation], "action": self.action.layout()}

    @property
    def hash(self) -> str:
        return layout_hash(self.layout())


def layout_hash(layout: dict[str, Any]) -> str:
    text = json.dumps(layout, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def layout_difference(expected: dict[str, Any], actual: dict[str, Any]) -> str | None:
    """A one-line description of the first difference between two layouts, or None if equal."""
    eo, ao = expected.get("observation", []), actual.get("observation", [])
    if len(eo) != len(ao):
        return f"observation has {len(ao)} entries, expected {len(eo)}"
    for i, (e, a) in enumerate(zip(eo, ao)):
        for key in ("type", "field", "names", "scale", "offset", "encode", "clip"):
            if e.get(key) != a.get(key):
                return f"observation[{i}].{key} is {a.get(key)!r}, expected {e.get(key)!r}"
    ea, aa = expected.get("action", {}), actual.get("action", {})
    for key in ("type", "names", "scale", "interface"):
        if ea.get(key) != aa.get(key):
            return f"action.{key} is {aa.get(key)!r}, expected {ea.get(key)!r}"
    return None


_TOP_KEYS = ("robot", "rate_hz", "observation", "action", "safety", "sim")
_OBS_KEYS = ("topic", "type", "field", "joints", "index", "axes", "scale", "offset", "encode", "clip", "timeout",
             "sim")
_OBS_SIM_KEYS = ("sensor", "site", "body", "command")
_ACTION_KEYS = ("topic", "type", "names", "interface", "scale", "limits", "rate_limit", "safe")
_SAFETY_KEYS = ("sensor_timeout", "soft_start", "safe_behaviour")
# What the simulator reads (sim/, ros/sim_bridge.py); a robot without a sim needs none of it.
_SIM_KEYS = {"mjcf": checks.text, "urdf": checks.text, "task": checks.text, "task_options": None, "camera": checks.text,
             "push_body": checks.text, "imu_frame": checks.text, "world_frame": checks.text,
             "max_episode_steps": lambda v, w: int(checks.number(v, w, low=1, high=1e9)),
             "success_return": checks.number,
             "push_force": lambda v, w: checks.number(v, w, low=0.0),
             "sensor_rate_hz": lambda v, w: checks.number(v, w, low=0.0, high=1e5, low_open=True),
             "actuators": checks.names,
             # Task terms (liquid_control/sim/terms.py checks each term and its arguments) and the commands
             # drawn per episode (liquid_control/sim/commands.py).
             "reset": None, "reward": None, "termination": None, "commands": None,
             # What a URDF lacks (liquid_control/sim/urdf.py checks each).
             "mesh_dirs": checks.names, "xacro_args": None, "drives": None, "imu": None, "sites": None, "goals": None,
             "cameras": None, "floor": None, "floating": None, "physics": None}


def _parse_obs(i: int, raw: Any) -> ObsEntry:
    where = f"observation[{i}]"
    raw = checks.mapping(raw, where, _OBS_KEYS, required=("topic", "type", "field"))
    topic = checks.topic(raw["topic"], f"{where}.topic")
    msg_type = _canonical_type(checks.text(raw["type"], f"{where}.type"))
    fld = checks.text(raw["field"], f"{where}.field")
    if msg_type not in OBS_FIELDS:
        raise SpecError(f"{where}: unsupported message type {msg_type!r}; supported: {sorted(OBS_FIELDS)}")
    fields = OBS_FIELDS[msg_type]
    if fld not in fields:
        raise SpecError(f"{where}: {msg_type} has no field {fld!r}; choose one of {sorted(fields)}")
    allowed = fields[fld]
    naming = {JOINT_STATE: "joints", FLOAT64_ARRAY: "index"}.get(msg_type, "axes")
    for other in {"joints", "index", "axes"} - {naming}:
        if other in raw:
            raise SpecError(f"{where}: {msg_type.split('/')[-1]} entries name their elements with {naming!r}, "
                            f"not {other!r}")
    if naming == "joints":
        if "joints" not in raw:
            raise SpecError(f"{where}: JointState entries need 'joints'")
        names = checks.names(raw["joints"], f"{where}.joints")
    elif naming == "index":
        if "index" not in raw:
            raise SpecError(f"{where}: Float64MultiArray entries need 'index'")
        names = checks.names(raw["index"], f"{where}.index", of=int)
    else:
        names = checks.names(raw.get("axes", list(allowed)), f"{where}.axes")
        bad = [a for a in names if a not in allowed]
        if bad:
            raise SpecError(f"{where}: unknown axes {bad} for {fld}; choose from {list(allowed)}")
    encode = raw.get("encode")
    if encode is not None:
        if encode not in ENCODINGS:
            raise SpecError(f"{where}: unknown encode {encode!r}; choose one of {list(ENCODINGS)}")
        if (msg_type, fld) != (JOINT_STATE, "position"):
            raise SpecError(f"{where}: encode {encode!r} applies to JointState positions (angles) only")
    sim = checks.mapping(raw.get("sim") or {}, f"{where}.sim", _OBS_SIM_KEYS)
    for key, value in sim.items():
        checks.text(value, f"{where}.sim.{key}")
    n = len(names)
    # As safety.sensor_timeout: a NaN or infinite timeout would switch the watchdog off for this topic.
    timeout = None if raw.get("timeout") is None else checks.number(raw["timeout"], f"{where}.timeout", low=0.0,
                                                                     low_open=True, high=3600.0)
    return ObsEntry(topic=topic, msg_type=msg_type, field=fld, names=names,
                    scale=checks.numbers(raw.get("scale"), n, f"{where}.scale", 1.0),
                    offset=checks.numbers(raw.get("offset"), n, f"{where}.offset", 0.0),
                    sim=dict(sim), encode=encode, clip=_parse_clip(raw.get("clip"), n, f"{where}.clip"),
                    timeout=timeout)


def _check_topic_timeouts(entries: tuple[ObsEntry, ...]) -> None:
    """Entries on one topic are judged stale together: they must not name different timeouts."""
    seen: dict[str, tuple[int, float]] = {}
    for i, e in enumerate(entries):
        if e.timeout is None:
            continue
        first = seen.setdefault(e.topic, (i, e.timeout))
        if first[1] != e.timeout:
            raise SpecError(f"observation[{i}].timeout: {e.timeout:g} s, but observation[{first[0]}] on the same "
                            f"topic {e.topic!r} says {first[1]:g} s (a topic has one timeout)")


def _parse_clip(raw: Any, n: int, where: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """`clip: {low: L, high: H}`, each a number or one per name; an absent side is unbounded."""
    if raw is None:
        return None
    raw = checks.mapping(raw, where, ("low", "high"))
    low = checks.numbers(raw.get("low"), n, f"{where}.low", -math.inf, allow_inf=True)
    high = checks.numbers(raw.get("high"), n, f"{where}.high", math.inf, allow_inf=True)
    if any(lo >= hi for lo, hi in zip(low, high)):
        raise SpecError(f"{where}: low {list(low)} must be below high {list(high)}")
    return low, high


def _parse_action(raw: Any) -> ActionSpec:
    raw = checks.mapping(raw, "action", _ACTION_KEYS, required=("names",))
    interface = raw.get("interface")
    if interface is not None and interface not in INTERFACES:
        raise SpecError(f"action.interface: unknown interface {interface!r}; choose one of {list(INTERFACES)}")
    for key in ("topic", "type"):
        if key not in raw and interface is None:
            raise SpecError(f"action: missing key {key!r} (or give 'interface' for ros2_control's "
                            "<interface>_controller/commands, a Float64MultiArray)")
    # The defaults are what ros2_control's forward_command_controller named after the interface takes.
    topic = checks.topic(raw.get("topic", f"{interface}_controller/commands"), "action.topic")
    msg_type = _canonical_type(checks.text(raw.get("type", FLOAT64_ARRAY), "action.type"))
    if msg_type not in COMMAND_TYPES:
        raise SpecError(f"action: unsupported command type {msg_type!r}; supported: {list(COMMAND_TYPES)}")
    names = checks.names(raw["names"], "action.names")
    if interface is not None and msg_type != FLOAT64_ARRAY:
        raise SpecError(f"action.interface: joint commands through an interface are {FLOAT64_ARRAY}, not {msg_type}")
    if msg_type == TWIST and any(n not in TWIST_AXES for n in names):
        raise SpecError(f"action: Twist commands name axes from {list(TWIST_AXES)}, got {list(names)}")
    n = len(names)
    scale = checks.numbers(raw.get("scale"), n, "action.scale", 1.0)
    limits = checks.mapping(raw.get("limits") or {}, "action.limits", ("lower", "upper"))
    lower = checks.numbers(limits.get("lower"), n, "action.limits.lower", -math.inf, allow_inf=True)
    upper = checks.numbers(limits.get("upper"), n, "action.limits.upper", math.inf, allow_inf=True)
    if any(lo > hi for lo, hi in zip(lower, upper)):
        raise SpecError(f"action.limits: lower {lower} exceeds upper {upper}")
    rate = raw.get("rate_limit")
    rate_limit = None if rate is None else checks.numbers(rate, n, "action.rate_limit", 0.0, low=0.0, low_open=True)
    safe = checks.numbers(raw.get("safe"), n, "action.safe", 0.0)
    if any(not (lo <= s <= hi) for s, lo, hi in zip(safe, lower, upper)):
        raise SpecError(f"action.safe {safe} lies outside the limits")
    return ActionSpec(topic=topic, msg_type=msg_type, names=names, scale=scale, lower=lower,
                      upper=upper, rate_limit=rate_limit, safe=safe, interface=interface)


def _parse_safety(raw: Any) -> Safety:
    raw = checks.mapping(raw, "safety", _SAFETY_KEYS)
    behaviour = raw.get("safe_behaviour", "zero")
    if behaviour not in ("zero", "hold"):
        raise SpecError(f"safety.safe_behaviour must be 'zero' or 'hold', got {behaviour!r}")
    # A NaN or infinite timeout would switch the stale-sensor watchdog off: finite, positive, at most an hour.
    return Safety(sensor_timeout=checks.number(raw.get("sensor_timeout", 0.1), "safety.sensor_timeout",
                                               low=0.0, low_open=True, high=3600.0),
                  soft_start=checks.number(raw.get("soft_start", 1.0), "safety.soft_start", low=0.0, high=3600.0),
                  safe_behaviour=behaviour)


def _parse_sim(raw: Any) -> dict[str, Any]:
    raw = checks.mapping(raw, "sim", _SIM_KEYS)
    for key, check in _SIM_KEYS.items():
        if key in raw and check is not None:
            check(raw[key], f"sim.{key}")
    if "mjcf" in raw and "urdf" in raw:
        raise SpecError("sim: give mjcf or urdf, not both")
    urdf_only = [k for k in ("mesh_dirs", "xacro_args", "drives", "imu", "sites", "goals", "cameras", "floor",
                             "floating", "physics") if k in raw]
    if urdf_only and "urdf" not in raw:
        raise SpecError(f"sim.{urdf_only[0]}: completes a URDF (sim.urdf); an MJCF says it in its own XML")
    for key in ("floor", "floating"):
        if key in raw and not isinstance(raw[key], bool):
            raise SpecError(f"sim.{key}: expected true or false, got {raw[key]!r}")
    for key in ("drives", "imu", "sites", "goals", "cameras", "physics"):
        if key in raw and not isinstance(raw[key], dict):
            raise SpecError(f"sim.{key}: expected a mapping, got {raw[key]!r}")
    if "task_options" in raw and not isinstance(raw["task_options"], dict):
        raise SpecError(f"sim.task_options: expected a mapping, got {raw['task_options']!r}")
    for key in ("reset", "reward", "termination"):
        if key in raw and not isinstance(raw[key], list):
            raise SpecError(f"sim.{key}: expected a list of terms, got {raw[key]!r}")
    return dict(raw)


def parse_spec(data: Any, source: Path | None = None) -> RobotSpec:
    """A RobotSpec from a spec's YAML value: every key known, every value typed and bounded; SpecError
    (one line, with the key path) for the first mistake."""
    data = checks.mapping(data, "spec", _TOP_KEYS, required=("robot", "rate_hz", "observation", "action"))
    name = checks.name(data["robot"], "robot")
    rate_hz = checks.number(data["rate_hz"], "rate_hz", low=1.0, high=10000.0)
    obs_raw = data["observation"]
    if not isinstance(obs_raw, list) or not obs_raw:
        raise SpecError(f"observation: expected a non-empty list of entries, got {obs_raw!r}")
    observation = tuple(_parse_obs(i, e) for i, e in enumerate(obs_raw))
    _check_topic_timeouts(observation)
    return RobotSpec(name=name, rate_hz=rate_hz, observation=observation,
                     action=_parse_action(data["action"]), safety=_parse_safety(data.get("safety") or {}),
                     sim=_parse_sim(data.get("sim") or {}), source=source)


def load_spec(robot_or_path: str | Path) -> RobotSpec:
    """Load a spec by robot name (config/robots/<name>.yaml in the installed share) or by path."""
    from liquid_control.core.resources import robot_spec_path

    path = robot_spec_path(robot_or_path)
    data = load_yaml(path, "robot spec")
    try:
        return parse_spec(data, source=path)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
