"""Per-robot task definitions: reset distribution, reward and termination, computed from MuJoCo state.

A spec names its task in `sim: {task: NAME, task_options: {...}}`. The observation never enters the reward:
the same task scores cartpole, cartpole_novel and cartpole_imu alike, whatever the policy sees.

`inverted_pendulum` and `reacher` reproduce Gymnasium v5's InvertedPendulum and Reacher exactly (same
random draws in the same order from the env's np_random, same reward from the same MuJoCo quantities),
so returns compare with published numbers. `none` gives a robot with only an MJCF and a spec a working
env: zero reward, no termination, small reset noise.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import mujoco
import numpy as np

from liquid_control.core.errors import SpecError


def _joint(model: mujoco.MjModel, name: str, task: str) -> int:
    jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
    if jid < 0:
        raise SpecError(f"task {task!r}: the MuJoCo model has no joint named {name!r}")
    return jid


def _body(model: mujoco.MjModel, name: str, task: str) -> int:
    bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
    if bid < 0:
        raise SpecError(f"task {task!r}: the MuJoCo model has no body named {name!r}")
    return bid


class Task:
    """Base: bound to one (model, data) at construction; names are resolved once, errors name what is missing."""

    name = "none"

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, reset_noise: float = 0.01):
        self.model, self.data = model, data
        # MjData's arrays are views that never move: take them once (each attribute access builds a new view).
        self.qpos, self.qvel, self.xpos = data.qpos, data.qvel, data.xpos
        self.reset_noise = float(reset_noise)

    def reset(self, rng: np.random.Generator, init_qpos: np.ndarray, init_qvel: np.ndarray) -> None:
        """Set qpos / qvel for a new episode (the caller runs mj_forward afterwards)."""
        n = self.reset_noise
        self.qpos[:] = init_qpos + rng.uniform(size=self.model.nq, low=-n, high=n)
        self.qvel[:] = init_qvel + rng.uniform(size=self.model.nv, low=-n, high=n)

    def evaluate(self, command: np.ndarray) -> tuple[float, bool, dict[str, Any]]:
        """(reward, terminated, info) after a step; `command` is what was applied to the actuators."""
        return 0.0, False, {}


class InvertedPendulum(Task):
    """Gymnasium InvertedPendulum-v5: +1 per step while |pole angle| <= 0.2 rad; ends when it leaves that."""

    name = "inverted_pendulum"

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, joint: str = "hinge", max_angle: float = 0.2,
                 reset_noise: float = 0.01):
        super().__init__(model, data, reset_noise)
        self.qadr = int(model.jnt_qposadr[_joint(model, joint, self.name)])
        self.max_angle = float(max_angle)

    # reset: the base class is exactly InvertedPendulum-v5's (uniform noise on qpos, then on qvel).

    def evaluate(self, command):
        # v5 also ends on a non-finite observation (qpos, qvel). MuJoCo never leaves one in the state (it
        # resets data on a bad qpos/qvel/qacc, mj_checkPos & co.), so testing the angle covers it.
        angle = float(self.qpos[self.qadr])
        terminated = not math.isfinite(angle) or abs(angle) > self.max_angle
        reward = 0.0 if terminated else 1.0
        return reward, terminated, {"reward_survive": reward}


class Reacher(Task):
    """Gymnasium Reacher-v5: reward = -|fingertip - target| - sum(command^2); never terminates.

    Reset: all qpos uniform in +-0.1, the goal uniform in the 0.2 m disc (rejection sampled), written to the
    goal's two slide joints; qvel uniform in +-0.005 with the goal's velocity zeroed.
    """

    name = "reacher"

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, fingertip: str = "fingertip", target: str = "target",
                 goal_joints: tuple[str, str] = ("target_x", "target_y"), goal_radius: float = 0.2,
                 reset_noise: float = 0.1, velocity_noise: float = 0.005,
                 reward_dist_weight: float = 1.0, reward_control_weight: float = 1.0):
        super().__init__(model, data, reset_noise)
        self.fingertip, self.target = _body(model, fingertip, self.name), _body(model, target, self.name)
        jids = [_joint(model, j, self.name) for j in goal_joints]
        self.goal_qadr = np.array([model.jnt_qposadr[j] for j in jids], dtype=np.intp)
        self.goal_dadr = np.array([model.jnt_dofadr[j] for j in jids], dtype=np.intp)
        self.goal_radius = float(goal_radius)
        self.velocity_noise = float(velocity_noise)
        self.w_dist, self.w_ctrl = float(reward_dist_weight), float(reward_control_weight)

    def reset(self, rng, init_qpos, init_qvel):
        n, r = self.reset_noise, self.goal_radius
        qpos = rng.uniform(low=-n, high=n, size=self.model.nq) + init_qpos
        while True:
            goal = rng.uniform(low=-r, high=r, size=2)
            if np.linalg.norm(goal) < r:
                break
        qpos[self.goal_qadr] = goal
        qvel = init_qvel + rng.uniform(low=-self.velocity_noise, high=self.velocity_noise, size=self.model.nv)
        qvel[self.goal_dadr] = 0.0
        self.qpos[:] = qpos
        self.qvel[:] = qvel

    def evaluate(self, command):
        # data.xpos as Reacher-v5 reads it right after mj_step (computed at the start of the last substep).
        xpos = self.xpos
        reward_dist = -float(np.linalg.norm(xpos[self.fingertip] - xpos[self.target])) * self.w_dist
        reward_ctrl = -float(np.square(command).sum()) * self.w_ctrl
        return reward_dist + reward_ctrl, False, {"reward_dist": reward_dist, "reward_ctrl": reward_ctrl}


TASKS: dict[str, Callable[..., Task]] = {"none": Task, "inverted_pendulum": InvertedPendulum, "reacher": Reacher}


def make_task(name: str, model: mujoco.MjModel, data: mujoco.MjData, options: dict[str, Any] | None = None) -> Task:
    if name not in TASKS:
        raise SpecError(f"unknown sim task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    try:
        return TASKS[name](model, data, **(options or {}))
    except TypeError as exc:  # an unknown or missing option in sim.task_options
        raise SpecError(f"sim.task_options for task {name!r}: {exc}") from None
