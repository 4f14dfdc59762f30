"""A Gymnasium env built from a robot's MJCF or URDF and its interface spec (config/robots/<robot>.yaml).

- Model: `sim: {mjcf: F}` compiles as it is; `sim: {urdf: F}` is compiled and completed from the spec
  (actuators per joint, sensors, goals, floor, physics options: liquid_control.sim.urdf).

- Observation: the spec's vector, read from MuJoCo state by name (liquid_control.sim.observe), with the
  spec's (raw - offset) * scale. The same reader feeds the sim bridge, so the env and the robot-side
  controller see the same numbers.
- Action: a in [-1, 1]^n -> command through core.command.CommandPipeline, the controller node's pipeline
  (scale, rate limit, limits; no soft start), written to data.ctrl of the actuators named in spec.action.names,
  which apply the spec's action.interface when it names one (position: PD to the target at the physics rate;
  velocity: velocity servo; effort: torque; liquid_control.sim.actuators). A wrong-sized or non-finite action
  is ignored (the last valid command is held, with a throttled warning), as a motor driver would: no NaN
  ever reaches MuJoCo.
- Time: one step advances the control period (period / timestep substeps) unless a per-step dt was set
  with `set_next_dt` (the jitter wrapper does); that dt is simulated exactly (whole timesteps plus one
  shorter step for the remainder) and info["dt"] reports the time simulated.
- Reward, termination and reset: the task named in the spec's `sim:` section (liquid_control.sim.tasks).
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from liquid_control.core.command import CommandPipeline
from liquid_control.core.errors import SpecError
from liquid_control.core.spec import TWIST, RobotSpec, load_spec
from liquid_control.sim.actuators import check_interface
from liquid_control.sim.commands import Commands, add_commands, parse_commands, require_mjspec
from liquid_control.sim.observe import ObsReader
from liquid_control.sim.tasks import make_task

log = logging.getLogger("liquid_control.sim")

WARN_INTERVAL_S = 5.0  # at most one warning per this many seconds about ignored actions


def resolve_mjcf(spec: RobotSpec, mjcf: str | Path | None = None) -> Path:
    """The model file for a spec: an explicit path, else spec.sim.mjcf (or sim.urdf) next to the spec file
    or in <share>/sim."""
    name = mjcf if mjcf is not None else spec.sim.get("mjcf", spec.sim.get("urdf"))
    if not name:
        raise SpecError(f"robot {spec.name!r}: the spec has no sim.mjcf or sim.urdf (the model to simulate)")
    path = Path(name)
    if path.is_absolute() or mjcf is not None:
        return path
    candidates = []
    if spec.source is not None:
        candidates.append(Path(spec.source).parent / path)
    from liquid_control.core.resources import share_dir

    candidates.append(share_dir() / "sim" / path)
    for c in candidates:
        if c.exists():
            return c
    looked = ", ".join(str(c.parent) for c in candidates)
    kind = "URDF" if mjcf is None and "urdf" in spec.sim else "MJCF"
    raise SpecError(f"robot {spec.name!r}: {kind} {str(name)!r} not found (looked in {looked})")


def load_model(path: str | Path, commands: dict[str, tuple[float, float]] | None = None) -> mujoco.MjModel:
    """Compile an MJCF file (with room for `commands`, sim/commands.py); a file that does not load is a
    SpecError naming the file and MuJoCo's reason."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"MJCF file {path} does not exist")
    try:
        if not commands:
            return mujoco.MjModel.from_xml_path(str(path))
        require_mjspec("a spec with sim.commands")
        mjspec = mujoco.MjSpec.from_file(str(path))
        add_commands(mjspec, commands)
        return mjspec.compile()
    except ValueError as exc:  # MuJoCo's XML/compile errors
        reason = " ".join(str(exc).split())
        raise SpecError(f"MJCF {path} does not load: {reason}") from None


def actuator_ids(model: mujoco.MjModel, spec: RobotSpec) -> np.ndarray:
    """MuJoCo actuator ids in command order. Twist commands name axes, so they map via sim.actuators."""
    names = spec.action.names
    if spec.action.msg_type == TWIST:
        names = tuple(spec.sim.get("actuators") or ())
        if len(names) != spec.action.size:
            raise SpecError(f"robot {spec.name!r}: a Twist command needs sim.actuators naming "
                            f"{spec.action.size} MuJoCo actuators (one per axis in action.names)")
    ids = []
    for name in names:
        i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, str(name))
        if i < 0:
            raise SpecError(f"action: the MuJoCo model has no actuator named {name!r}")
        ids.append(i)
    return np.asarray(ids, dtype=np.intp)


def substeps_for(dt: float, timestep: float) -> int:
    """How many physics steps simulate `dt`: round(dt / timestep), at least one."""
    return max(1, int(round(dt / timestep)))


def simulate(model: mujoco.MjModel, data: mujoco.MjData, dt: float, timestep: float) -> float:
    """Advance exactly `dt` seconds: whole timesteps, then one shorter step for what remains.

    So a jittered control period is simulated as drawn (not rounded to the MJCF's timestep, which for
    the cart-pole is half the period) at the cost of at most one extra step. Returns the time simulated.
    """
    n = int(dt / timestep + 1e-9)
    rest = dt - n * timestep
    if rest > 1e-9 * timestep or n == 0:
        if n:
            mujoco.mj_step(model, data, n)
        model.opt.timestep = rest
        try:
            mujoco.mj_step(model, data)
        finally:
            model.opt.timestep = timestep
        return dt
    mujoco.mj_step(model, data, n)
    return n * timestep


class SpecEnv(gym.Env):
    """The MuJoCo env of one robot, driven entirely by its spec (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(self, spec: RobotSpec | str | Path = "cartpole", *, mjcf: str | Path | None = None,
                 timestep: float | None = None, task: str | None = None, task_options: dict[str, Any] | None = None,
                 render_mode: str | None = None, width: int = 480, height: int = 480, camera: str | None = None):
        self.robot_spec = spec if isinstance(spec, RobotSpec) else load_spec(spec)
        rs = self.robot_spec
        self.mjcf_path = resolve_mjcf(rs, mjcf)
        if mjcf is None and "urdf" in rs.sim:  # compiled by MuJoCo, completed from the spec
            from liquid_control.sim.urdf import load_urdf_model

            self.model = load_urdf_model(rs, self.mjcf_path)
        else:
            self.model = load_model(self.mjcf_path, parse_commands(rs.sim))
        if timestep is not None:  # other physics step than the MJCF's, e.g. for a faster control rate
            if not (math.isfinite(timestep) and timestep > 0):
                raise SpecError(f"timestep must be a positive number of seconds, got {timestep}")
            self.model.opt.timestep = float(timestep)
        self.data = mujoco.MjData(self.model)
        self.timestep = float(self.model.opt.timestep)
        self.control_period = rs.period
        self.frame_skip = substeps_for(rs.period, self.timestep)
        if abs(self.frame_skip * self.timestep - rs.period) > 1e-9 * max(1.0, rs.period):
            raise SpecError(f"robot {rs.name!r}: the control period {rs.period:g} s is not a whole number of "
                            f"MuJoCo timesteps ({self.timestep:g} s); change rate_hz or pass timestep=")

        self.commands = Commands(self.model, self.data, rs.sim)
        self.reader = ObsReader(self.model, self.data, rs)
        self._act_ids = actuator_ids(self.model, rs)
        check_interface(self.model, self._act_ids, rs)
        self.task = make_task(rs.sim, self.model, self.data, dt=self.frame_skip * self.timestep,
                              task=task, options=task_options)

        a = rs.action
        # The node's command pipeline (scale, clip, rate limit, clamp), without a soft start: training and
        # evaluation see the commands the controller would publish. "hold": a rejected action keeps the last
        # command, as a motor driver would.
        self._pipeline = CommandPipeline(a, soft_start=0.0, safe_behaviour="hold")
        self._safe = np.asarray(a.safe, dtype=np.float64)
        self._n_act = a.size
        # Writing the whole ctrl vector is cheaper than a scatter when the spec drives every actuator in order.
        self._ctrl_all = bool(np.array_equal(self._act_ids, np.arange(self.model.nu)))
        self._ctrl = self.data.ctrl  # a view into MjData, stable for its lifetime
        self._command = self._safe.copy()  # the command being applied (held when an action is rejected)
        self._next_dt: float | None = None
        self._rejected = 0
        self._last_warn = -math.inf

        self.init_qpos = self.data.qpos.ravel().copy()
        self.init_qvel = self.data.qvel.ravel().copy()
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(self.reader.size,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(self._n_act,), dtype=np.float32)

        self.metadata = {**self.metadata, "render_fps": int(round(rs.rate_hz))}
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise SpecError(f"render_mode {render_mode!r} is not supported; use 'rgb_array'")
        self.render_mode = render_mode
        self._render_args = (width, height, camera if camera is not None else rs.sim.get("camera"))
        self._renderer = None

    # ---- time -------------------------------------------------------------------------------------
    @property
    def dt(self) -> float:
        """The nominal control period as simulated (Gymnasium's name for it)."""
        return self.frame_skip * self.timestep

    def set_next_dt(self, dt: float) -> None:
        """Simulate `dt` seconds in the next step() only (exactly: see simulate())."""
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive number of seconds, got {dt}")
        self._next_dt = float(dt)

    # ---- the Gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """New episode from the task's reset distribution, commands drawn; options {"qpos": .., "qvel": ..} set a
        state instead, {"commands": {name: value}} sets commands."""
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        if options and ("qpos" in options or "qvel" in options):
            self.data.qpos[:] = np.asarray(options.get("qpos", self.init_qpos), dtype=np.float64)
            self.data.qvel[:] = np.asarray(options.get("qvel", self.init_qvel), dtype=np.float64)
        else:
            self.task.reset(self.np_random, self.init_qpos, self.init_qvel)
        self.commands.sample(self.np_random)
        if options and "commands" in options:
            self.commands.set(options["commands"])
        self._pipeline.reset()
        self._command[:] = self._safe
        self._write_ctrl()
        self._next_dt = None
        mujoco.mj_forward(self.model, self.data)
        self.task.start(self._command)
        return self.reader.observe(), {"dt": 0.0}

    def step(self, action):
        if self._next_dt is None:
            dt = self.frame_skip * self.timestep
            ignored = not self._accept(action, dt)
            mujoco.mj_step(self.model, self.data, self.frame_skip)
        else:
            dt, self._next_dt = self._next_dt, None
            ignored = not self._accept(action, dt)
            dt = simulate(self.model, self.data, dt, self.timestep)
        # The task reads MuJoCo as Gymnasium's v5 envs do, before derived quantities are refreshed.
        reward, terminated, info = self.task.evaluate(self._command, dt)
        self.reader.refresh()
        obs = self.reader.observe()
        info["dt"] = dt
        if ignored:
            info["action_ignored"] = True
        return obs, reward, terminated, False, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            from liquid_control.sim.render import FrameRenderer

            width, height, camera = self._render_args
            self._renderer = FrameRenderer(self.model, width=width, height=height, camera=camera)
        return self._renderer.render(self.data)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ---- for the sim bridge and tests --------------------------------------------------------------
    def apply_command(self, command) -> bool:
        """Hold `command` (actuator units, spec order, as the controller sends it) from now on.

        The spec's limits clamp it as a motor driver would. A wrong-sized or non-finite command is ignored
        (throttled warning) and the last valid one kept; returns whether it was taken.
        """
        try:
            c = np.asarray(command, dtype=np.float64)
        except (TypeError, ValueError):
            c = None
        # A few actuators: checking Python floats beats np.isfinite's temporary array (every lockstep tick).
        if c is None or c.size != self._n_act or not all(map(math.isfinite, c.reshape(self._n_act).tolist())):
            self._reject(command, what="a command")
            return False
        np.minimum(c.reshape(self._n_act), self._pipeline.upper, out=self._command)
        np.maximum(self._command, self._pipeline.lower, out=self._command)
        self._write_ctrl()
        return True

    def advance(self, dt: float) -> float:
        """Simulate `dt` seconds (whole timesteps) with the held command; returns the time simulated.

        No reward or termination: the sim bridge's clock, not an episode, decides what happens next.
        """
        return simulate(self.model, self.data, dt, self.timestep)

    def sim_state_observation(self) -> np.ndarray:
        """The spec's observation for MuJoCo's current state (after any external change to data)."""
        self.reader.refresh()
        return self.reader.observe()

    @property
    def command(self) -> np.ndarray:
        """The command (actuator units) applied in the last step (a copy)."""
        return self._command.copy()

    @property
    def actions_ignored(self) -> int:
        """How many actions or commands were rejected (wrong size or non-finite) since construction."""
        return self._rejected

    # ---- internals ---------------------------------------------------------------------------------
    def _accept(self, action, dt: float) -> bool:
        """Turn an action into the command; on a bad action keep the last command and return False."""
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            a = None
        if a is None or a.size != self._n_act:
            self._reject(action)
            return False
        cmd, ok = self._pipeline.apply(a.reshape(self._n_act), dt)
        if not ok:
            self._reject(action)
            return False
        self._command[:] = cmd
        self._write_ctrl()
        return True

    def _write_ctrl(self) -> None:
        if self._ctrl_all:
            self._ctrl[:] = self._command
        else:
            self._ctrl[self._act_ids] = self._command

    def _reject(self, action, what: str = "an action") -> None:
        self._rejected += 1
        now = time.monotonic()
        if now - self._last_warn >= WARN_INTERVAL_S:
            self._last_warn = now
            shape = getattr(np.asarray(action, dtype=object), "shape", "?")
            log.warning("%s: ignored %s of shape %s (expected %d finite values); holding the last "
                        "command %s (%d ignored so far)", self.robot_spec.name, what, shape, self._n_act,
                        np.array2string(self._command, precision=3), self._rejected)


def make_env(robot: RobotSpec | str | Path = "cartpole", *, dt_jitter: float = 0.0, drop_prob: float = 0.0,
             obs_noise: float | list[float] = 0.0, action_delay: int | tuple[int, int] = 0,
             obs_dropout: float = 0.0, append_dt: bool = False, physics: float = 0.0,
             wrapper_seed: int | None = None, **env_kwargs: Any) -> gym.Env:
    """Gymnasium entry point: a SpecEnv, plus the real-robot wrappers whose options are non-zero.

    e.g. gymnasium.make("liquid_control/CartPole-v0", dt_jitter=0.2, drop_prob=0.05, obs_noise=0.01)
    """
    env: gym.Env = SpecEnv(robot, **env_kwargs)
    if dt_jitter or drop_prob or np.any(obs_noise) or np.any(action_delay) or obs_dropout or append_dt or physics:
        from liquid_control.sim.wrappers import wrap_real_robot

        env = wrap_real_robot(env, dt_jitter=dt_jitter, drop_prob=drop_prob, obs_noise=obs_noise,
                              action_delay=action_delay, obs_dropout=obs_dropout, append_dt=append_dt,
                              physics=physics, seed=wrapper_seed)
    return env
