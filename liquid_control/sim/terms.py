"""Reward, termination and reset terms: a task written in the spec's `sim:` section, no Python.

In the manner of Isaac Lab's manager-based envs, a task is three lists of named terms:

    sim:
      reset:                                   # applied in order to (init_qpos, init_qvel), one rng
        - {term: qpos_uniform, scale: 0.005}
        - {term: qvel_uniform, scale: 0.005}
      reward:                                  # reward = sum of weight * term value, in list order
        - {term: forward_velocity, joint: rootx, weight: 1.0, name: forward}
        - {term: alive, weight: 1.0, name: survive}
        - {term: action_l2, weight: -0.001, name: ctrl}
      termination:                             # the episode ends when any term fires
        - {term: joint_range, joints: [rootz], low: 0.7}

Every item names its `term`; `weight` (rewards only, default 1) and `name` (the info key
`reward_<name>`, default the term) are common, all other keys are the term's arguments (TERMS below,
each documented; `liquid-control info --robot R` prints a robot's). An unknown term or argument is a
SpecError naming it, with a "did you mean".

Terms read MuJoCo as Gymnasium's v5 envs do, right after mj_step: qpos/qvel are the new state, body
positions and orientations (xpos, xmat) those computed at the start of the last substep. So a term list
reproduces Gymnasium's rewards bit for bit, and the sum runs in list order for the same reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import mujoco
import numpy as np

from liquid_control.core import checks
from liquid_control.core.errors import SpecError
from liquid_control.sim import commands

REQUIRED = object()
_HINGE_OR_SLIDE = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


# ---- argument checks (value, where) -> parsed value ---------------------------------------------------
def _real(value: Any, where: str) -> float:
    return checks.number(value, where, allow_inf=True)


def _positive(value: Any, where: str) -> float:
    return checks.number(value, where, low=0.0, low_open=True)


def _nonnegative(value: Any, where: str) -> float:
    return checks.number(value, where, low=0.0)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{where}: expected true or false, got {value!r}")
    return value


def _one_of(*choices: str) -> Callable[[Any, str], str]:
    def check(value: Any, where: str) -> str:
        if value not in choices:
            raise SpecError(f"{where}: expected one of {list(choices)}, got {value!r}")
        return value
    return check


def _reals(value: Any, where: str) -> float | tuple[float, ...]:
    """One number, or a list of numbers (one per joint)."""
    if isinstance(value, list):
        return tuple(checks.number(v, f"{where}[{i}]") for i, v in enumerate(value))
    return checks.number(value, where)


@dataclass(frozen=True)
class Arg:
    check: Callable[[Any, str], Any]
    doc: str
    default: Any = REQUIRED


# ---- MuJoCo lookups (names resolved once, errors name the term) ---------------------------------------
def _object_id(model, objtype, name: str, what: str, where: str) -> int:
    i = mujoco.mj_name2id(model, objtype, name)
    if i < 0:
        raise SpecError(f"{where}: the MuJoCo model has no {what} named {name!r}")
    return i


def _body(model, name: str, where: str) -> int:
    return _object_id(model, mujoco.mjtObj.mjOBJ_BODY, name, "body", where)


def _joint_addresses(model, names: tuple[str, ...], where: str) -> tuple[np.ndarray, np.ndarray]:
    """qpos and qvel addresses of hinge or slide joints (one value each)."""
    qadr, dadr = [], []
    for name in names:
        jid = _object_id(model, mujoco.mjtObj.mjOBJ_JOINT, name, "joint", where)
        if int(model.jnt_type[jid]) not in _HINGE_OR_SLIDE:
            raise SpecError(f"{where}: joint {name!r} is not a hinge or slide joint")
        qadr.append(int(model.jnt_qposadr[jid]))
        dadr.append(int(model.jnt_dofadr[jid]))
    return np.asarray(qadr, dtype=np.intp), np.asarray(dadr, dtype=np.intp)


# ---- the terms -----------------------------------------------------------------------------------------
class Term:
    """A term bound to one (model, data). start() is called when an episode begins; rewards define
    value(command, dt, terminated), terminations fired(), resets apply(rng, qpos, qvel)."""

    ARGS: dict[str, Arg] = {}

    def __init__(self, model, data, where: str, **args: Any):
        self.model, self.data, self.where = model, data, where
        # MjData's arrays are views that never move: take them once.
        self.qpos, self.qvel, self.xpos, self.xmat = data.qpos, data.qvel, data.xpos, data.xmat

    def start(self, command: np.ndarray) -> None:
        pass


class Alive(Term):
    """1 while no termination term fires, else 0 (Gymnasium's healthy reward, Isaac Lab's is_alive)."""

    def value(self, command, dt, terminated):
        return 0.0 if terminated else 1.0


class ForwardVelocity(Term):
    """(position after - position before) / dt along one axis: of a slide `joint` (its qpos), or of a
    `body` (its xpos `axis`), as Gymnasium's Hopper/HalfCheetah (joint) and Ant (body) compute it."""

    ARGS = {"joint": Arg(checks.text, "slide joint whose position is the robot's x", None),
            "body": Arg(checks.text, "body whose position is differenced (instead of a joint)", None),
            "axis": Arg(_one_of("x", "y", "z"), "world axis of the body's position", "x")}

    def __init__(self, model, data, where, joint=None, body=None, axis="x"):
        super().__init__(model, data, where)
        if (joint is None) == (body is None):
            raise SpecError(f"{where}: give one of 'joint' or 'body'")
        if joint is not None:
            self._array, self._index = self.qpos, int(_joint_addresses(model, (joint,), where)[0][0])
        else:
            self._array, self._index = self.xpos.reshape(-1), 3 * _body(model, body, where) + "xyz".index(axis)
        self._before = 0.0

    def start(self, command):
        self._before = float(self._array[self._index])

    def value(self, command, dt, terminated):
        # The next step differences from the position read here, not from data after the env refreshes
        # body positions for its observation: Gymnasium's envs never refresh them between steps.
        now = float(self._array[self._index])
        velocity = (now - self._before) / dt
        self._before = now
        return velocity


class TrackVelocity(ForwardVelocity):
    """exp(-(v - target)^2 / std^2) for the velocity forward_velocity measures: 1 at the commanded speed
    (Isaac Lab's track_lin_vel_xy_exp, one axis): a fixed `target`, or a `command` drawn per episode."""

    ARGS = {**ForwardVelocity.ARGS, "target": Arg(checks.number, "the commanded velocity (m/s), fixed", None),
            "command": Arg(checks.text, "the command (sim.commands) giving the velocity, instead of target", None),
            "std": Arg(_positive, "how far off (m/s) scores exp(-1)", 0.25)}

    def __init__(self, model, data, where, target=None, command=None, std=0.25, **source):
        super().__init__(model, data, where, **source)
        if (target is None) == (command is None):
            raise SpecError(f"{where}: give one of 'target' or 'command'")
        # The target is read from one cell: a fixed value's own array, or the command's userdata slot.
        if command is None:
            self._goal, self._goal_index = np.array([float(target)]), 0
        else:
            self._goal, self._goal_index = data.userdata, commands.slot(model, command, where)
        self._scale = 1.0 / (float(std) * float(std))

    def value(self, command, dt, terminated):
        error = super().value(command, dt, terminated) - float(self._goal[self._goal_index])
        return math.exp(-error * error * self._scale)


class _Contacts(Term):
    """Contacts of `bodies` (with anything) whose normal force exceeds `threshold` newtons."""

    ARGS = {"bodies": Arg(checks.names, "bodies whose contacts count"),
            "threshold": Arg(_nonnegative, "normal force (N) above which a contact counts", 1.0)}

    def __init__(self, model, data, where, bodies, threshold=1.0):
        super().__init__(model, data, where)
        ids = {_body(model, b, where) for b in bodies}
        self._geoms = np.isin(model.geom_bodyid, list(ids))
        self._threshold = float(threshold)
        self._force = np.zeros(6)

    def _count(self, first_only: bool = False) -> int:
        data, n = self.data, 0
        if data.ncon == 0:
            return 0
        contact = data.contact
        mine = np.flatnonzero(self._geoms[contact.geom1] | self._geoms[contact.geom2])
        for i in mine.tolist():
            mujoco.mj_contactForce(self.model, data, i, self._force)
            if self._force[0] > self._threshold:  # the normal force, in the contact frame
                n += 1
                if first_only:
                    break
        return n


class ContactCount(_Contacts):
    """How many contacts of `bodies` push harder than `threshold` (Isaac Lab's undesired_contacts)."""

    def value(self, command, dt, terminated):
        return float(self._count())


class BodyContact(_Contacts):
    """Fires when any of `bodies` touches something harder than `threshold` (Isaac Lab's illegal_contact:
    a torso or knee on the ground)."""

    def fired(self) -> bool:
        return self._count(first_only=True) > 0


class ActionL2(Term):
    """sum(command^2): the control cost (Gymnasium's ctrl_cost with a negative weight)."""

    def value(self, command, dt, terminated):
        return float(np.square(command).sum())


class ActionRateL2(Term):
    """sum((command - previous command)^2); the first step compares with the command held at reset."""

    def __init__(self, model, data, where):
        super().__init__(model, data, where)
        self._previous: np.ndarray | None = None

    def start(self, command):
        self._previous = np.array(command, dtype=np.float64)

    def value(self, command, dt, terminated):
        previous = np.zeros_like(command) if self._previous is None else self._previous
        cost = float(np.sum(np.square(command - previous)))
        self._previous = np.array(command, dtype=np.float64)
        return cost


class JointPositionL2(Term):
    """sum((q - target)^2) over `joints`: the joint-target error."""

    ARGS = {"joints": Arg(checks.names, "hinge or slide joints"),
            "target": Arg(_reals, "target position(s): one number, or one per joint", 0.0)}

    def __init__(self, model, data, where, joints, target=0.0):
        super().__init__(model, data, where)
        self._qadr = _joint_addresses(model, joints, where)[0]
        if isinstance(target, tuple) and len(target) != len(joints):
            raise SpecError(f"{where}.target: expected {len(joints)} values, got {len(target)}")
        self._target = np.broadcast_to(np.asarray(target, dtype=np.float64), (len(joints),)).copy()

    def value(self, command, dt, terminated):
        return float(np.sum(np.square(self.qpos[self._qadr] - self._target)))


class BodyDistance(Term):
    """|xpos[body] - xpos[goal]|: end effector to goal (Gymnasium Reacher's reward_dist, weight -1)."""

    ARGS = {"body": Arg(checks.text, "the end effector's body"),
            "goal": Arg(checks.text, "the goal's body")}

    def __init__(self, model, data, where, body, goal):
        super().__init__(model, data, where)
        self._a, self._b = _body(model, body, where), _body(model, goal, where)

    def value(self, command, dt, terminated):
        return float(np.linalg.norm(self.xpos[self._a] - self.xpos[self._b]))


class JointLimit(Term):
    """sum over `joints` of how far each is beyond its MJCF range (0 inside it; Isaac Lab's
    joint_pos_limits). Without `joints`: every limited hinge or slide joint."""

    ARGS = {"joints": Arg(checks.names, "joints (default: all limited hinge/slide joints)", None)}

    def __init__(self, model, data, where, joints=None):
        super().__init__(model, data, where)
        if joints is None:
            jids = [j for j in range(model.njnt) if model.jnt_limited[j] and int(model.jnt_type[j]) in _HINGE_OR_SLIDE]
            if not jids:
                raise SpecError(f"{where}: the MuJoCo model has no limited hinge or slide joint")
        else:
            _joint_addresses(model, joints, where)
            jids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joints]
            unlimited = [j for j, i in zip(joints, jids) if not model.jnt_limited[i]]
            if unlimited:
                raise SpecError(f"{where}: joints {unlimited} have no range in the MJCF")
        self._qadr = np.asarray([model.jnt_qposadr[j] for j in jids], dtype=np.intp)
        self._low = np.asarray([model.jnt_range[j][0] for j in jids], dtype=np.float64)
        self._high = np.asarray([model.jnt_range[j][1] for j in jids], dtype=np.float64)

    def value(self, command, dt, terminated):
        q = self.qpos[self._qadr]
        return float(np.sum(np.maximum(self._low - q, 0.0) + np.maximum(q - self._high, 0.0)))


class _BodyFrame(Term):
    ARGS = {"body": Arg(checks.text, "the body (e.g. the torso or base)")}

    def __init__(self, model, data, where, body):
        super().__init__(model, data, where)
        self._body = _body(model, body, where)

    def _zz(self) -> float:
        """World z . body z: 1 upright, 0 on its side, -1 upside down."""
        return float(self.xmat[self._body, 8])


class Upright(_BodyFrame):
    """cos(tilt) of `body`: world z . body z, 1 when upright."""

    def value(self, command, dt, terminated):
        return self._zz()


class OrientationL2(_BodyFrame):
    """Squared x, y of gravity seen in `body`'s frame: 0 when level (Isaac Lab's flat_orientation_l2)."""

    def value(self, command, dt, terminated):
        m = self.xmat[self._body]
        return float(m[6] * m[6] + m[7] * m[7])


class HeightL2(_BodyFrame):
    """(z of `body` - target)^2 (Isaac Lab's base_height_l2)."""

    ARGS = {**_BodyFrame.ARGS, "target": Arg(checks.number, "the height (m)")}

    def __init__(self, model, data, where, body, target):
        super().__init__(model, data, where, body)
        self._target = float(target)

    def value(self, command, dt, terminated):
        return (float(self.xpos[self._body, 2]) - self._target) ** 2


class JointRange(Term):
    """Fires when a `field` (position | velocity) of any of `joints` leaves (low, high), or is not finite.
    `inclusive: true` keeps the ends inside. Gymnasium's healthy ranges are open; InvertedPendulum's closed."""

    ARGS = {"joints": Arg(checks.names, "hinge or slide joints"),
            "field": Arg(_one_of("position", "velocity"), "what is bounded", "position"),
            "low": Arg(_real, "lower bound", -math.inf),
            "high": Arg(_real, "upper bound", math.inf),
            "inclusive": Arg(_flag, "whether low and high themselves are inside", False)}

    def __init__(self, model, data, where, joints, field="position", low=-math.inf, high=math.inf, inclusive=False):
        super().__init__(model, data, where)
        if not low < high:
            raise SpecError(f"{where}: low {low} must be below high {high}")
        qadr, dadr = _joint_addresses(model, joints, where)
        self._array, self._index = (self.qpos, qadr) if field == "position" else (self.qvel, dadr)
        self._low, self._high, self._inclusive = low, high, inclusive

    def fired(self) -> bool:
        # A few values: Python comparisons beat numpy's temporaries (this runs every step). NaN compares false.
        low, high = self._low, self._high
        values = self._array[self._index].tolist()
        if self._inclusive:
            return not all(low <= v <= high for v in values)
        return not all(low < v < high for v in values)


class BodyHeight(_BodyFrame):
    """Fires when the z of `body` leaves (low, high) (a fall, or a jump out of the world)."""

    ARGS = {**_BodyFrame.ARGS, "low": Arg(_real, "lowest healthy height (m)", -math.inf),
            "high": Arg(_real, "highest healthy height (m)", math.inf)}

    def __init__(self, model, data, where, body, low=-math.inf, high=math.inf):
        super().__init__(model, data, where, body)
        if not low < high:
            raise SpecError(f"{where}: low {low} must be below high {high}")
        self._low, self._high = low, high

    def fired(self) -> bool:
        return not (self._low < float(self.xpos[self._body, 2]) < self._high)


class Tilt(_BodyFrame):
    """Fires when `body`'s z axis leans more than max_angle (rad) from the world's."""

    ARGS = {**_BodyFrame.ARGS, "max_angle": Arg(_positive, "largest healthy tilt (rad)")}

    def __init__(self, model, data, where, body, max_angle):
        super().__init__(model, data, where, body)
        self._min_cos = math.cos(max_angle)

    def fired(self) -> bool:
        return not self._zz() >= self._min_cos


class _Noise(Term):
    ARGS = {"scale": Arg(_nonnegative, "noise half-width (uniform) or standard deviation (normal)")}

    def __init__(self, model, data, where, scale):
        super().__init__(model, data, where)
        self.scale = float(scale)


class QposUniform(_Noise):
    """qpos += uniform(-scale, scale) on every coordinate."""

    def apply(self, rng, qpos, qvel):
        qpos += rng.uniform(low=-self.scale, high=self.scale, size=self.model.nq)


class QvelUniform(_Noise):
    """qvel += uniform(-scale, scale) on every dof."""

    def apply(self, rng, qpos, qvel):
        qvel += rng.uniform(low=-self.scale, high=self.scale, size=self.model.nv)


class QvelNormal(_Noise):
    """qvel += scale * standard normal on every dof (Gymnasium's HalfCheetah and Ant)."""

    def apply(self, rng, qpos, qvel):
        qvel += self.scale * rng.standard_normal(self.model.nv)


class GoalInDisc(Term):
    """Puts a goal's two slide `joints` at a point uniform in the disc of `radius` (rejection sampled,
    as Gymnasium's Reacher)."""

    ARGS = {"joints": Arg(checks.names, "the goal's x and y slide joints"),
            "radius": Arg(_positive, "disc radius (m)")}

    def __init__(self, model, data, where, joints, radius):
        super().__init__(model, data, where)
        if len(joints) != 2:
            raise SpecError(f"{where}.joints: expected 2 joints (x, y), got {list(joints)}")
        self._qadr = _joint_addresses(model, joints, where)[0]
        self._radius = float(radius)

    def apply(self, rng, qpos, qvel):
        r = self._radius
        while True:
            goal = rng.uniform(low=-r, high=r, size=2)
            if np.linalg.norm(goal) < r:
                break
        qpos[self._qadr] = goal


class ZeroVelocity(Term):
    """qvel = 0 for `joints` (after noise: a goal that must not drift)."""

    ARGS = {"joints": Arg(checks.names, "hinge or slide joints")}

    def __init__(self, model, data, where, joints):
        super().__init__(model, data, where)
        self._dadr = _joint_addresses(model, joints, where)[1]

    def apply(self, rng, qpos, qvel):
        qvel[self._dadr] = 0.0


TERMS: dict[str, dict[str, type[Term]]] = {
    "reward": {"alive": Alive, "forward_velocity": ForwardVelocity, "action_l2": ActionL2,
               "action_rate_l2": ActionRateL2, "joint_position_l2": JointPositionL2,
               "body_distance": BodyDistance, "joint_limit": JointLimit, "upright": Upright,
               "orientation_l2": OrientationL2, "height_l2": HeightL2, "track_velocity": TrackVelocity,
               "contact_count": ContactCount},
    "termination": {"joint_range": JointRange, "body_height": BodyHeight, "tilt": Tilt,
                    "body_contact": BodyContact},
    "reset": {"qpos_uniform": QposUniform, "qvel_uniform": QvelUniform, "qvel_normal": QvelNormal,
              "goal_in_disc": GoalInDisc, "zero_velocity": ZeroVelocity},
}
