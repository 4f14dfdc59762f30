"""Per-robot tasks: reset distribution, reward and termination, computed from MuJoCo state.

A spec writes its task as term lists in its `sim:` section (`reset:`, `reward:`, `termination:`; the
terms are documented in liquid_control.sim.terms), or names one with `sim: {task: NAME, task_options:
{...}}`. A name is either a preset (a function returning term lists, PRESETS) or a Python Task subclass
(TASKS) for what terms cannot say; both sit behind the one Task interface the env drives:

    reset(rng, init_qpos, init_qvel)   a new episode's state (the caller runs mj_forward afterwards)
    start(command)                     the episode begins from the state now in data (either reset path)
    evaluate(command, dt)              (reward, terminated, info) after the step

The observation never enters the reward: the same task scores cartpole, cartpole_novel and cartpole_imu
alike, whatever the policy sees.

The presets `inverted_pendulum` and `reacher` reproduce Gymnasium v5's InvertedPendulum and Reacher
exactly (same random draws in the same order from the env's np_random, same reward from the same MuJoCo
quantities), so returns compare with published numbers. `none` gives a robot with only an MJCF and a
spec a working env: zero reward, no termination, small reset noise.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable

import mujoco
import numpy as np

from liquid_control.core.errors import SpecError
from liquid_control.sim.term_list import TermSpec, bind, parse_task
from liquid_control.sim.terms import Term


class Task:
    """Zero reward, no termination, uniform reset noise (the `none` task; the base of Python tasks).

    Bound to one (model, data) at construction; names are resolved once, errors name what is missing.
    """

    name = "none"

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, reset_noise: float = 0.01):
        self.model, self.data = model, data
        # MjData's arrays are views that never move: take them once (each attribute access builds a new view).
        self.qpos, self.qvel = data.qpos, data.qvel
        self.reset_noise = float(reset_noise)

    def reset(self, rng: np.random.Generator, init_qpos: np.ndarray, init_qvel: np.ndarray) -> None:
        """Set qpos / qvel for a new episode (the caller runs mj_forward afterwards)."""
        n = self.reset_noise
        self.qpos[:] = init_qpos + rng.uniform(size=self.model.nq, low=-n, high=n)
        self.qvel[:] = init_qvel + rng.uniform(size=self.model.nv, low=-n, high=n)

    def start(self, command: np.ndarray) -> None:
        """The episode begins from the state now in data; `command` is the one held at reset."""

    def evaluate(self, command: np.ndarray, dt: float | None = None) -> tuple[float, bool, dict[str, Any]]:
        """(reward, terminated, info) after a step; `command` is what was applied to the actuators, `dt`
        the time simulated (None: the control period)."""
        return 0.0, False, {}


class TermTask(Task):
    """A task composed of terms (liquid_control.sim.terms): resets in order, termination when any
    termination term fires, reward = sum of weight * value in list order (info: reward_<name>)."""

    name = "terms"

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, terms: dict[str, tuple[TermSpec, ...]],
                 dt: float):
        super().__init__(model, data)
        self.terms = terms
        self.dt = float(dt)
        self._resets = [bind(t, model, data) for t in terms["reset"]]
        self._terminations = [(t.name, bind(t, model, data)) for t in terms["termination"]]
        self._rewards = [(f"reward_{t.name}", t.weight, bind(t, model, data)) for t in terms["reward"]]
        every = self._resets + [b for _n, b in self._terminations] + [b for _n, _w, b in self._rewards]
        # Only terms that keep per-episode state take the hook (the base class's is a no-op).
        self._starting = [b for b in every if type(b).start is not Term.start]

    def reset(self, rng, init_qpos, init_qvel):
        qpos, qvel = init_qpos.copy(), init_qvel.copy()
        for term in self._resets:
            term.apply(rng, qpos, qvel)
        self.qpos[:] = qpos
        self.qvel[:] = qvel

    def start(self, command):
        for term in self._starting:
            term.start(command)

    def evaluate(self, command, dt=None):
        dt = self.dt if dt is None else dt
        info: dict[str, Any] = {}
        terminated = False
        for name, term in self._terminations:
            if term.fired():
                terminated = True
                info["terminated_by"] = name
                break
        reward = 0.0
        for key, weight, term in self._rewards:
            r = weight * term.value(command, dt, terminated)
            info[key] = r
            reward += r
        return reward, terminated, info


def inverted_pendulum(joint: str = "hinge", max_angle: float = 0.2, reset_noise: float = 0.01) -> dict[str, Any]:
    """Gymnasium InvertedPendulum-v5: +1 per step while |pole angle| <= 0.2 rad; ends when it leaves that.

    v5 also ends on a non-finite observation (qpos, qvel). MuJoCo never leaves one in the state (it
    resets data on a bad qpos/qvel/qacc, mj_checkPos & co.), and a NaN angle fires joint_range anyway.
    """
    return {"reset": [{"term": "qpos_uniform", "scale": reset_noise}, {"term": "qvel_uniform", "scale": reset_noise}],
            "reward": [{"term": "alive", "name": "survive"}],
            "termination": [{"term": "joint_range", "joints": [joint], "low": -max_angle, "high": max_angle,
                             "inclusive": True}]}


def reacher(fingertip: str = "fingertip", target: str = "target", goal_joints: Any = ("target_x", "target_y"),
            goal_radius: float = 0.2, reset_noise: float = 0.1, velocity_noise: float = 0.005,
            reward_dist_weight: float = 1.0, reward_control_weight: float = 1.0) -> dict[str, Any]:
    """Gymnasium Reacher-v5: reward = -|fingertip - target| - sum(command^2); never terminates.

    Reset: all qpos uniform in +-0.1, the goal uniform in the 0.2 m disc (rejection sampled), written to the
    goal's two slide joints; qvel uniform in +-0.005 with the goal's velocity zeroed.
    """
    goal = list(goal_joints)
    return {"reset": [{"term": "qpos_uniform", "scale": reset_noise},
                      {"term": "goal_in_disc", "joints": goal, "radius": goal_radius},
                      {"term": "qvel_uniform", "scale": velocity_noise},
                      {"term": "zero_velocity", "joints": goal}],
            "reward": [{"term": "body_distance", "body": fingertip, "goal": target, "weight": -reward_dist_weight,
                        "name": "dist"},
                       {"term": "action_l2", "weight": -reward_control_weight, "name": "ctrl"}],
            "termination": []}


# Named tasks: presets give term lists; TASKS hold Python Task subclasses for what terms cannot say.
PRESETS: dict[str, Callable[..., dict[str, Any]]] = {"inverted_pendulum": inverted_pendulum, "reacher": reacher}
TASKS: dict[str, Callable[..., Task]] = {"none": Task}


def task_terms(sim: dict[str, Any], task: str | None = None,
               options: dict[str, Any] | None = None) -> dict[str, tuple[TermSpec, ...]] | None:
    """The term lists a sim section (or an explicit task name) stands for; None for a Python task."""
    name = task if task is not None else sim.get("task")
    if task is None:
        terms = parse_task(sim)
        if terms is not None:
            if name is not None:
                raise SpecError(f"sim: give either task {name!r} or reward/termination/reset terms, not both")
            if sim.get("task_options") or options:
                raise SpecError("sim.task_options: options of a named task; term lists take arguments per term")
            return terms
    name = name or "none"
    options = options if options is not None else (sim.get("task_options") or {})
    if name in PRESETS:
        try:
            raw = PRESETS[name](**options)
        except TypeError as exc:  # an unknown or missing option in sim.task_options
            raise SpecError(f"sim.task_options for task {name!r}: {exc}") from None
        return parse_task(raw)
    if name in TASKS:
        return None
    known = sorted({*PRESETS, *TASKS})
    near = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise SpecError(f"unknown sim task {name!r}{hint}; known tasks: {', '.join(known)}")


def make_task(sim: dict[str, Any], model: mujoco.MjModel, data: mujoco.MjData, *, dt: float,
              task: str | None = None, options: dict[str, Any] | None = None) -> Task:
    """The task of a spec's sim section; `task` / `options` override the spec's. `dt`: the control period."""
    terms = task_terms(sim, task, options)
    if terms is not None:
        return TermTask(model, data, terms, dt)
    name = task if task is not None else sim.get("task", "none")
    try:
        return TASKS[name](model, data, **(options if options is not None else (sim.get("task_options") or {})))
    except TypeError as exc:  # an unknown or missing option in sim.task_options
        raise SpecError(f"sim.task_options for task {name!r}: {exc}") from None
