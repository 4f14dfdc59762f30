"""The spec's observation vector read straight from MuJoCo state, by name.

One reader serves the Gymnasium env and the sim bridge: the env calls `ObsReader.observe` every step,
the bridge calls `ObsReader.raw_entry` to fill ROS messages with the same numbers. Names are resolved
once, at construction, into flat index arrays; per step there is one copy per MuJoCo array read
(qpos, qvel, sensordata, ...), no Python loop over elements.

Where each quantity comes from:
  JointState.position / velocity / effort  -> qpos[jnt_qposadr] / qvel[jnt_dofadr] / qfrc_actuator[jnt_dofadr]
  any field with `sim: {sensor: NAME}`      -> sensordata[sensor_adr + k]; axes x, y, z -> k = 0, 1, 2;
                                               an orientation's x, y, z, w -> MuJoCo's (w, x, y, z) order;
                                               Float64MultiArray indices -> k = index
  any x/y/z field with `sim: {site: NAME}`  -> site_xpos[site, k]
  any x/y/z field with `sim: {body: NAME}`  -> xpos[body, k]
  one element with `sim: {command: NAME}`  -> userdata[the command's slot] (sim/commands.py)
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from liquid_control.core.errors import SpecError
from liquid_control.core.spec import FLOAT64_ARRAY, JOINT_STATE, SINCOS, ObsEntry, RobotSpec
from liquid_control.sim import commands

# The MjData arrays an observation can read, each addressed flat (2-D arrays are raveled views).
SOURCES = ("qpos", "qvel", "qfrc_actuator", "sensordata", "site_xpos", "xpos", "userdata")
# Which of those need a refresh after mj_step: MuJoCo computes positions and sensors at the *start* of a
# step (in mj_forward), so after stepping they describe the state one substep ago, while qpos/qvel are new.
_NEEDS_FORWARD = {"sensordata"}
_NEEDS_KINEMATICS = {"site_xpos", "xpos"}
_AXIS = {"x": 0, "y": 1, "z": 2}
_QUAT_AXIS = {"w": 0, "x": 1, "y": 2, "z": 3}  # ROS orders (x, y, z, w); MuJoCo's framequat (w, x, y, z)
_FIELD_DIM_1 = ("position", "velocity", "effort")

_HINGE_OR_SLIDE = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


def _id(model: mujoco.MjModel, objtype: mujoco.mjtObj, name: str, what: str, where: str) -> int:
    i = mujoco.mj_name2id(model, objtype, name)
    if i < 0:
        raise SpecError(f"{where}: the MuJoCo model has no {what} named {name!r}")
    return i


def _entry_sources(model: mujoco.MjModel, entry: ObsEntry, where: str,
                   picked: tuple[str, ...] | None = None) -> list[tuple[str, int]]:
    """(source array, flat index) for each element of one observation entry. `picked`: for a command, the
    axes the spec's entry names (a whole message's other axes read 0)."""
    sim = entry.sim or {}
    if "command" in sim:
        picked = entry.names if picked is None else picked
        if entry.msg_type == FLOAT64_ARRAY or len(picked) != 1:
            raise SpecError(f"{where}: a command is one axis of a field (e.g. Twist linear [x]), "
                            f"not {entry.msg_type} {list(picked)}")
        i = commands.slot(model, str(sim["command"]), where)
        return [("userdata", i if n == picked[0] else commands.ZERO_SLOT) for n in entry.names]
    if "sensor" in sim:
        sid = _id(model, mujoco.mjtObj.mjOBJ_SENSOR, str(sim["sensor"]), "sensor", where)
        adr, dim = int(model.sensor_adr[sid]), int(model.sensor_dim[sid])
        if entry.msg_type == FLOAT64_ARRAY:
            offsets, need = [int(n) for n in entry.names], None
        elif entry.field == "orientation":
            offsets, need = [_QUAT_AXIS[n] for n in entry.names], 4  # a framequat
        else:
            offsets, need = [_AXIS[n] for n in entry.names], 3  # gyro, accelerometer, velocimeter, framepos, ...
        if (need is not None and dim != need) or max(offsets) >= dim:
            raise SpecError(f"{where}: sensor {sim['sensor']!r} has {dim} values; {entry.field} needs "
                            f"{need if need is not None else max(offsets) + 1}")
        return [("sensordata", adr + k) for k in offsets]
    if "site" in sim or "body" in sim:
        kind = "site" if "site" in sim else "body"
        objtype = mujoco.mjtObj.mjOBJ_SITE if kind == "site" else mujoco.mjtObj.mjOBJ_BODY
        oid = _id(model, objtype, str(sim[kind]), kind, where)
        if any(n not in _AXIS for n in entry.names):
            raise SpecError(f"{where}: a {kind} gives a position (axes x, y, z), not {list(entry.names)}")
        src = "site_xpos" if kind == "site" else "xpos"
        return [(src, 3 * oid + _AXIS[n]) for n in entry.names]
    if entry.msg_type == JOINT_STATE:
        out = []
        for name in entry.names:
            jid = _id(model, mujoco.mjtObj.mjOBJ_JOINT, name, "joint", where)
            if int(model.jnt_type[jid]) not in _HINGE_OR_SLIDE:
                raise SpecError(f"{where}: joint {name!r} is not a hinge or slide joint; "
                                "JointState holds one value per joint")
            if entry.field == "position":
                out.append(("qpos", int(model.jnt_qposadr[jid])))
            elif entry.field == "velocity":
                out.append(("qvel", int(model.jnt_dofadr[jid])))
            else:  # effort: the actuator force on the joint's dof (what a motor driver reports)
                out.append(("qfrc_actuator", int(model.jnt_dofadr[jid])))
        return out
    raise SpecError(f"{where}: {entry.label} needs a `sim:` source in the spec (sensor, site, body or command) "
                    "to be read from MuJoCo")


@dataclass(frozen=True)
class _Copy:
    """Copy src_flat[src] into raw[dst]; slices when both sides are contiguous runs (the common case)."""

    source: str
    dst: slice | np.ndarray
    src: slice | np.ndarray


def _as_slice(idx: list[int]) -> slice | np.ndarray:
    if idx == list(range(idx[0], idx[0] + len(idx))):
        return slice(idx[0], idx[0] + len(idx))
    return np.asarray(idx, dtype=np.intp)


class ObsReader:
    """Reads a spec's observation from one (model, data) pair. Build once; call `observe` per step."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, spec: RobotSpec):
        self.model, self.data, self.spec = model, data, spec
        per_source: dict[str, tuple[list[int], list[int]]] = {}
        self.entry_slices: list[slice] = []  # each entry's raw values (one per name)
        # Encoded entries (sincos) give two observation elements per raw value: where each goes.
        plain_dst: list[int] = []
        plain_src: list[int] = []
        angle_src: list[int] = []
        cos_dst: list[int] = []
        sin_dst: list[int] = []
        pos = obs_pos = 0
        for i, entry in enumerate(spec.observation):
            where = f"observation[{i}] ({entry.label})"
            for k, (source, index) in enumerate(_entry_sources(model, entry, where)):
                dst, src = per_source.setdefault(source, ([], []))
                dst.append(pos + k)
                src.append(index)
            n = len(entry.names)
            self.entry_slices.append(slice(pos, pos + n))
            if entry.encode == SINCOS:
                angle_src += range(pos, pos + n)
                cos_dst += range(obs_pos, obs_pos + n)
                sin_dst += range(obs_pos + n, obs_pos + 2 * n)
            else:
                plain_src += range(pos, pos + n)
                plain_dst += range(obs_pos, obs_pos + n)
            pos += n
            obs_pos += entry.size
        self.size = obs_pos
        self._encoded = bool(angle_src)
        self._plain = (np.asarray(plain_dst, np.intp), np.asarray(plain_src, np.intp))
        self._angles = (np.asarray(angle_src, np.intp), np.asarray(cos_dst, np.intp), np.asarray(sin_dst, np.intp))
        self._value = np.zeros(pos)
        self.sources = frozenset(per_source)
        self._copies = [_Copy(s, _as_slice(d), _as_slice(i)) for s, (d, i) in per_source.items()]
        # MjData's arrays are views into its own memory and never move: take the flat views once.
        self._flat = {s: getattr(data, s).reshape(-1) for s in per_source}
        self._plan = [(self._flat[c.source], c.dst, c.src) for c in self._copies]
        self._raw = np.zeros(pos)
        self.offset = np.array([o for e in spec.observation for o in e.offset], dtype=np.float64)
        self.scale = np.array([s for e in spec.observation for s in e.scale], dtype=np.float64)
        self._identity = bool(np.all(self.offset == 0.0) and np.all(self.scale == 1.0))
        # `clip` bounds raw values (a saturating sensor); unclipped entries get infinite bounds.
        clip_low = [lo for e in spec.observation for lo in (e.clip[0] if e.clip else (-np.inf,) * len(e.names))]
        clip_high = [hi for e in spec.observation for hi in (e.clip[1] if e.clip else (np.inf,) * len(e.names))]
        self._clip = (None if all(e.clip is None for e in spec.observation) else
                      (np.array(clip_low, dtype=np.float64), np.array(clip_high, dtype=np.float64), np.zeros(pos)))
        self.needs_forward = bool(self.sources & _NEEDS_FORWARD)
        self.needs_kinematics = bool(self.sources & _NEEDS_KINEMATICS) and not self.needs_forward

    def refresh(self) -> None:
        """Bring derived quantities (sensors, site/body positions) up to the current qpos/qvel.

        Call after mj_step and before reading; it is a no-op for specs that read joints only.
        """
        if self.needs_forward:
            mujoco.mj_forward(self.model, self.data)
        elif self.needs_kinematics:
            mujoco.mj_kinematics(self.model, self.data)

    def raw(self) -> np.ndarray:
        """The raw (unscaled) values, as ROS messages would carry them. Returns an internal buffer."""
        raw = self._raw
        for flat, dst, src in self._plan:
            raw[dst] = flat[src]
        return raw

    def raw_entry(self, index: int) -> np.ndarray:
        """The raw values of observation entry `index` (a copy)."""
        return self.raw()[self.entry_slices[index]].copy()

    def observe(self, out: np.ndarray | None = None) -> np.ndarray:
        """(clip(raw) - offset) * scale, then any sincos encoding, as a new float64 array (or into `out`).
        Does not refresh: see refresh()."""
        raw = self.raw()
        if self._clip is not None:
            low, high, clipped = self._clip
            raw = np.clip(raw, low, high, out=clipped)
        if out is None:
            out = np.empty(self.size)
        value = out if not self._encoded else self._value
        if self._identity:
            value[:] = raw
        else:
            np.subtract(raw, self.offset, out=value)
            value *= self.scale
        if self._encoded:
            dst, src = self._plain
            out[dst] = value[src]
            angle, cos_dst, sin_dst = self._angles
            out[cos_dst] = np.cos(value[angle])
            out[sin_dst] = np.sin(value[angle])
        return out


def observation(model: mujoco.MjModel, data: mujoco.MjData, spec: RobotSpec) -> np.ndarray:
    """One-off: the spec's observation for the current state (refreshes derived quantities first).

    For repeated use build an ObsReader once; this convenience resolves all names on every call.
    """
    reader = ObsReader(model, data, spec)
    reader.refresh()
    return reader.observe()


class TopicReader:
    """Every value one sensor topic's message carries, read from MuJoCo (for the sim bridge).

    A message carries whole fields even where the spec uses a few elements (an Imu orientation is all
    four quaternion components; a JointState has position, velocity and effort of each joint the spec
    names on that topic), so what a controller assembles from it equals ObsReader's vector.
    """

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, spec: RobotSpec, topic: str):
        entries = [e for e in spec.observation if e.topic == topic]
        if not entries:
            raise SpecError(f"the spec has no observation on topic {topic!r}")
        types = {e.msg_type for e in entries}
        if len(types) > 1:
            raise SpecError(f"topic {topic!r} carries one message type, the spec gives {sorted(types)}")
        self.topic, self.msg_type = topic, entries[0].msg_type
        where = f"topic {topic!r}"
        # field -> (source, flat indices) for all of the field's elements
        fields: dict[str, list[tuple[str, int]]] = {}
        if self.msg_type == JOINT_STATE:
            self.joints = tuple(dict.fromkeys(j for e in entries for j in e.names))
            for fld in _FIELD_DIM_1:
                n = len(self.joints)
                full = ObsEntry(topic, JOINT_STATE, fld, self.joints, (1.0,) * n, (0.0,) * n)
                fields[fld] = _entry_sources(model, full, where)
        else:
            self.joints = ()
            from liquid_control.core.spec import OBS_FIELDS

            for e in entries:
                axes = OBS_FIELDS[e.msg_type][e.field]
                if axes is None:  # Float64MultiArray: the whole sensor
                    sensor = str((e.sim or {}).get("sensor", ""))
                    sid = _id(model, mujoco.mjtObj.mjOBJ_SENSOR, sensor, "sensor", where)
                    axes = tuple(str(k) for k in range(int(model.sensor_dim[sid])))
                full = ObsEntry(topic, e.msg_type, e.field, tuple(axes), (1.0,) * len(axes), (0.0,) * len(axes), e.sim)
                sources = _entry_sources(model, full, f"{where} ({e.label})", e.names)
                if e.field in fields and fields[e.field] != sources:
                    raise SpecError(f"{where}: field {e.field!r} is read from two different MuJoCo sources")
                fields[e.field] = sources
        self._fields = {f: (getattr(data, src[0][0]).reshape(-1), np.asarray([i for _s, i in src], dtype=np.intp))
                        for f, src in fields.items()}
        for f, src in fields.items():
            if len({s for s, _i in src}) != 1:  # one field, one MuJoCo array (true for every mapping above)
                raise SpecError(f"{where}: field {f!r} mixes MuJoCo sources")
        sources = {s for src in fields.values() for s, _i in src}
        self.needs_forward = bool(sources & _NEEDS_FORWARD)
        self.needs_kinematics = bool(sources & _NEEDS_KINEMATICS)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self._fields)

    def read(self) -> dict[str, np.ndarray]:
        """field -> raw values (copies), in message order: joints, or the field's axes (quaternion x, y, z, w)."""
        return {f: flat[idx] for f, (flat, idx) in self._fields.items()}
