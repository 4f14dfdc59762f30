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

import yaml

from liquid_control.core.errors import SpecError

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
TWIST_AXES = ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")

_TYPE_ALIASES = {t.replace("/msg/", "/"): t for t in OBS_FIELDS}


def _canonical_type(name: str) -> str:
    """Accept 'sensor_msgs/JointState' as well as 'sensor_msgs/msg/JointState'."""
    return _TYPE_ALIASES.get(name, name)


def _floats(value: Any, n: int, what: str, default: float, allow_inf: bool = False) -> tuple[float, ...]:
    """n floats from a scalar or a list; NaN never (it would silently force the safe command forever),
    infinity only where it means 'no bound' (allow_inf)."""
    if value is None:
        return (float(default),) * n
    try:
        values = (float(value),) * n if isinstance(value, (int, float)) else tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise SpecError(f"{what}: expected a number or a list of {n} numbers, got {value!r}") from None
    if len(values) != n:
        raise SpecError(f"{what}: expected {n} values, got {len(values)}")
    if any(math.isnan(v) or (math.isinf(v) and not allow_inf) for v in values):
        raise SpecError(f"{what}: values must be finite numbers, got {list(values)}")
    return values


@dataclass(frozen=True)
class ObsEntry:
    """One block of the observation vector: `names` elements of `field` from a message on `topic`.

    obs = (raw - offset) * scale, element-wise. `sim` says how the MuJoCo env reads the same quantity
    (joints need nothing: they are looked up by name; an IMU field names a sensor, a goal a site).

    `encode: sincos` (joint positions only) replaces each angle v by (cos v, sin v): the block holds the
    cosines of all its joints, then the sines, as Gymnasium's Reacher does. A continuous joint that winds
    past +-pi then looks the same to the policy at v and v + 2 pi, and the input stays in [-1, 1].
    """

    topic: str
    msg_type: str
    field: str
    names: tuple[str, ...]
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    sim: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    encode: str | None = None  # None or "sincos"

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
        `encode` only when set, so layouts (and hashes) of specs without it are what they always were."""
        out = {"type": self.msg_type, "field": self.field, "names": list(self.names),
               "scale": list(self.scale), "offset": list(self.offset)}
        if self.encode is not None:
            out["encode"] = self.encode
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

    @property
    def size(self) -> int:
        return len(self.names)

    def layout(self) -> dict[str, Any]:
        return {"type": self.msg_type, "names": list(self.names), "scale": list(self.scale)}


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
        for key in ("type", "field", "names", "scale", "offset", "encode"):
            if e.get(key) != a.get(key):
                return f"observation[{i}].{key} is {a.get(key)!r}, expected {e.get(key)!r}"
    ea, aa = expected.get("action", {}), actual.get("action", {})
    for key in ("type", "names", "scale"):
        if ea.get(key) != aa.get(key):
            return f"action.{key} is {aa.get(key)!r}, expected {ea.get(key)!r}"
    return None


def _parse_obs(i: int, raw: dict[str, Any]) -> ObsEntry:
    where = f"observation[{i}]"
    try:
        topic, msg_type, fld = raw["topic"], _canonical_type(raw["type"]), raw["field"]
    except KeyError as exc:
        raise SpecError(f"{where}: missing key {exc.args[0]!r}") from None
    if msg_type not in OBS_FIELDS:
        raise SpecError(f"{where}: unsupported message type {msg_type!r}; supported: {sorted(OBS_FIELDS)}")
    fields = OBS_FIELDS[msg_type]
    if fld not in fields:
        raise SpecError(f"{where}: {msg_type} has no field {fld!r}; choose one of {sorted(fields)}")
    allowed = fields[fld]
    if msg_type == JOINT_STATE:
        names = tuple(str(n) for n in raw.get("joints", ()))
        if not names:
            raise SpecError(f"{where}: JointState entries need 'joints'")
    elif msg_type == FLOAT64_ARRAY:
        names = tuple(str(int(n)) for n in raw.get("index", ()))
        if not names:
            raise SpecError(f"{where}: Float64MultiArray entries need 'index'")
        if any(int(n) < 0 for n in names):
            raise SpecError(f"{where}: Float64MultiArray indices must be >= 0, got {list(names)}")
    else:
        names = tuple(str(a) for a in raw.get("axes", allowed))
        bad = [a for a in names if a not in allowed]
        if bad:
            raise SpecError(f"{where}: unknown axes {bad} for {fld}; choose from {list(allowed)}")
    encode = raw.get("encode")
    if encode is not None:
        if encode not in ENCODINGS:
            raise SpecError(f"{where}: unknown encode {encode!r}; choose one of {list(ENCODINGS)}")
        if (msg_type, fld) != (JOINT_STATE, "position"):
            raise SpecError(f"{where}: encode {encode!r} applies to JointState positions (angles) only")
    n = len(names)
    return ObsEntry(topic=str(topic), msg_type=msg_type, field=fld, names=names,
                    scale=_floats(raw.get("scale"), n, f"{where}.scale", 1.0),
                    offset=_floats(raw.get("offset"), n, f"{where}.offset", 0.0),
                    sim=dict(raw.get("sim") or {}), encode=encode)


def _parse_action(raw: dict[str, Any]) -> ActionSpec:
    try:
        topic, msg_type = raw["topic"], _canonical_type(raw["type"])
        names = tuple(str(n) for n in raw["names"])
    except KeyError as exc:
        raise SpecError(f"action: missing key {exc.args[0]!r}") from None
    if msg_type not in COMMAND_TYPES:
        raise SpecError(f"action: unsupported command type {msg_type!r}; supported: {list(COMMAND_TYPES)}")
    if msg_type == TWIST and any(n not in TWIST_AXES for n in names):
        raise SpecError(f"action: Twist commands name axes from {list(TWIST_AXES)}, got {list(names)}")
    n = len(names)
    if n == 0:
        raise SpecError("action: 'names' is empty")
    scale = _floats(raw.get("scale"), n, "action.scale", 1.0)
    limits = raw.get("limits") or {}
    lower = _floats(limits.get("lower"), n, "action.limits.lower", -float("inf"), allow_inf=True)
    upper = _floats(limits.get("upper"), n, "action.limits.upper", float("inf"), allow_inf=True)
    if any(lo > hi for lo, hi in zip(lower, upper)):
        raise SpecError(f"action.limits: lower {lower} exceeds upper {upper}")
    rate = raw.get("rate_limit")
    rate_limit = None if rate is None else _floats(rate, n, "action.rate_limit", 0.0)
    if rate_limit is not None and any(r <= 0 for r in rate_limit):
        raise SpecError("action.rate_limit must be positive")
    safe = _floats(raw.get("safe"), n, "action.safe", 0.0)
    if any(not (lo <= s <= hi) for s, lo, hi in zip(safe, lower, upper)):
        raise SpecError(f"action.safe {safe} lies outside the limits")
    return ActionSpec(topic=str(topic), msg_type=msg_type, names=names, scale=scale, lower=lower,
                      upper=upper, rate_limit=rate_limit, safe=safe)


def parse_spec(data: dict[str, Any], source: Path | None = None) -> RobotSpec:
    if not isinstance(data, dict):
        raise SpecError("a robot spec is a YAML mapping")
    try:
        name, rate_hz = str(data["robot"]), float(data["rate_hz"])
        obs_raw, act_raw = data["observation"], data["action"]
    except KeyError as exc:
        raise SpecError(f"missing key {exc.args[0]!r}") from None
    if not 1.0 <= rate_hz <= 10000.0:
        raise SpecError(f"rate_hz {rate_hz} is outside 1..10000")
    if not obs_raw:
        raise SpecError("observation is empty")
    safety_raw = data.get("safety") or {}
    safety = Safety(sensor_timeout=float(safety_raw.get("sensor_timeout", 0.1)),
                    soft_start=float(safety_raw.get("soft_start", 1.0)),
                    safe_behaviour=str(safety_raw.get("safe_behaviour", "zero")))
    if safety.safe_behaviour not in ("zero", "hold"):
        raise SpecError(f"safety.safe_behaviour must be 'zero' or 'hold', got {safety.safe_behaviour!r}")
    if safety.sensor_timeout <= 0 or safety.soft_start < 0:
        raise SpecError("safety.sensor_timeout must be > 0 and soft_start >= 0")
    return RobotSpec(name=name, rate_hz=rate_hz,
                     observation=tuple(_parse_obs(i, e) for i, e in enumerate(obs_raw)),
                     action=_parse_action(act_raw), safety=safety,
                     sim=dict(data.get("sim") or {}), source=source)


def load_spec(robot_or_path: str | Path) -> RobotSpec:
    """Load a spec by robot name (config/robots/<name>.yaml in the installed share) or by path."""
    from liquid_control.core.resources import robot_spec_path

    path = robot_spec_path(robot_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"cannot read robot spec {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"robot spec {path} is not valid YAML: {exc}") from None
    try:
        return parse_spec(data, source=path)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
