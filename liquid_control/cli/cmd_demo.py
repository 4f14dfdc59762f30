"""`liquid-control demo`: the closed loop — MuJoCo sim bridge and liquid controller, two processes over ROS 2.

    liquid-control demo --robot cartpole --duration 20 --out demo_out [--video] [--mode realtime]

1. starts the controller node (`liquid-control run`, the robot's shipped policy unless --model) with
   ~/step_debug on, under use_sim_time in lockstep mode;
2. starts the sim bridge (`liquid-control sim`) for --duration seconds of simulated time, which
   publishes the spec's sensor topics (and /clock), applies the commands, and writes its state trace;
3. listens to ~/step_debug and /diagnostics meanwhile, then stops the controller.

The summary scores the traced states with the robot's own task (the env's reward and termination:
for the cart-pole, the pole within 0.2 rad), reports the control rate and dt the controller achieved,
the sensor-to-command round trip and the last diagnostics level, and re-runs the policy offline on the
exact observations and dts the node logged to recover its hidden-state traces (and to check that the
node's actions are the policy's, bit for bit up to float32). Exit status 1 if the task failed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from liquid_control.core.errors import LiquidControlError
from liquid_control.ros.background import BackgroundNode, ChildProcess

HELP = "closed loop: sim bridge + controller node over ROS 2, with a summary and plot"
NODE = "liquid_controller"
DIAGNOSTICS_WAIT_S = 2.5  # wall seconds, after the sim ended, for the node's next diagnostics report
LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--robot", default="cartpole", help="robot spec name (default cartpole)")
    parser.add_argument("--model", help="policy artifact (default: the robot's shipped policy)")
    parser.add_argument("--duration", type=float, default=20.0, metavar="S", help="simulated seconds (default 20)")
    parser.add_argument("--mode", choices=("lockstep", "realtime"), default="lockstep",
                        help="lockstep: deterministic, /clock from the sim, as fast as the loop goes; "
                             "realtime: wall-clock paced")
    parser.add_argument("--backend", default="numpy", choices=("numpy", "onnxruntime", "torch"))
    parser.add_argument("--seed", type=int, default=0, help="initial-state seed of the sim")
    parser.add_argument("--command", action="append", dest="set_commands", metavar="NAME=VALUE", default=[],
                        help="hold one of the spec's sim.commands at VALUE, e.g. forward_speed=0.6 (repeatable; "
                             "default: drawn by the seed)")
    parser.add_argument("--push-period", type=float, metavar="S", help="push the robot every S sim seconds")
    parser.add_argument("--out", default="demo_out", help="folder for summary.json, demo.png, logs (default demo_out)")
    parser.add_argument("--video", action="store_true", help="also render demo.gif (offscreen GL: EGL or OSMesa, or your MUJOCO_GL)")
    parser.add_argument("--domain", type=int, metavar="ID",
                        help="ROS_DOMAIN_ID to use (default: a random private one, never the inherited one)")
    parser.add_argument("--timeout", type=float, metavar="S", help="wall-clock limit (default: generous for --duration)")


def _isolated_env(domain: int | None) -> dict[str, str]:
    """The demo's own DDS domain, on localhost only: its controller and sim must never reach a real
    robot's drivers, so an inherited ROS_DOMAIN_ID is not used unless asked for with --domain."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain if domain is not None else random.SystemRandom().randint(1, 232))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Listener(BackgroundNode):
    """Collects the controller's step_debug records and diagnostics levels in this process."""

    def __init__(self, domain_id: int):
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import Float64MultiArray

        super().__init__("liquid_control_demo", domain_id=domain_id)
        self.debug: list[np.ndarray] = []
        self.diagnostics: list[tuple[int, str, int]] = []  # (level, message, ticks in the report's window)
        self.node.create_subscription(Float64MultiArray, f"/{NODE}/step_debug",
                                      lambda m: self.debug.append(np.asarray(m.data, dtype=np.float64)), 1000)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg: Any) -> None:
        for s in msg.status:
            if NODE in s.name:
                level = s.level[0] if isinstance(s.level, (bytes, bytearray)) else int(s.level)
                ticks = next((kv.value for kv in s.values if kv.key == "ticks"), "0")
                self.diagnostics.append((int(level), s.message, int(ticks) if ticks.isdigit() else 0))

    def run_diagnostics(self) -> tuple[int, str]:
        """The node's last report on a window in which it ticked: its verdict on the run. (Reports while
        the sim starts or after it ended rightly say STALE, no ticks: that is not the run.)"""
        ticking = [d for d in self.diagnostics if d[2] > 0]
        if not ticking:
            return (3, "no diagnostics on a window with control ticks received")
        return ticking[-1][:2]

    def debug_publishers(self) -> int:
        return self.node.count_publishers(f"/{NODE}/step_debug")


def _score(robot: str, trace: dict[str, list], period: float) -> dict[str, Any]:
    """Replay the traced states through the robot's task, in order: return up to the first failure, its time.

    The first traced state starts the episode; each later one is scored as the step from the one before (its
    command, the sim time between them), so terms that difference states (forward velocity, action rate) see the
    motion the sim made; states traced before the physics started (lockstep's pre-roll) score nothing. Each
    reward is weighted by that time over the control period, so the return is per control step whether states
    were traced at the control rate (lockstep) or the sensor rate (realtime)."""
    import mujoco

    from liquid_control.sim.env import SpecEnv

    env = SpecEnv(robot)
    total, failed_at = 0.0, None
    rows = list(zip(trace["t"], trace["qpos"], trace["qvel"], trace["command"], trace["userdata"]))
    if rows:
        env.reset(seed=0, options={"qpos": rows[0][1], "qvel": rows[0][2]})
        env.data.userdata[:] = rows[0][4]  # the episode's commands, as the sim drew them
    for (t_before, *_), (t, qpos, qvel, cmd, *_) in zip(rows, rows[1:]):
        dt = t - t_before
        if dt <= 0:  # lockstep's pre-roll: the physics had not started, no step to score
            continue
        env.data.qpos[:], env.data.qvel[:] = qpos, qvel
        mujoco.mj_forward(env.model, env.data)
        reward, terminated, _ = env.task.evaluate(np.asarray(cmd, dtype=np.float64), dt)
        if failed_at is None:  # the return of the episode the task would have ended there
            total += reward * dt / period  # per control period: realtime mode traces at the sensor rate
            if terminated:
                failed_at = float(t)
    commands = env.commands.values()
    # The base's mean forward speed when the model's first joint moves it along x (a free or slide joint).
    moves_x = env.model.njnt > 0 and int(env.model.jnt_type[0]) in (int(mujoco.mjtJoint.mjJNT_FREE),
                                                                   int(mujoco.mjtJoint.mjJNT_SLIDE))
    env.close()
    duration = float(trace["t"][-1]) if trace["t"] else 0.0
    span = (float(trace["t"][-1]) - float(trace["t"][0])) if rows else 0.0
    speed = (rows[-1][1][0] - rows[0][1][0]) / span if moves_x and span > 0 else None
    return {"return": total, "failed_at": failed_at, "time_ok_s": duration if failed_at is None else failed_at,
            "sim_duration_s": duration, "commands": commands, "base_x_velocity": speed}


def tick_counts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The node's ticks from its step_debug records: the rate it kept, how many stepped the policy, how many
    sent the safe command. Safe ticks before the first stepped one are start-up: DDS can deliver the first
    /clock before the sensors' first samples (their readers match separately), and the node then rightly
    answers with its safe command; they are counted apart, and the rate is the one kept once running."""
    startup = next((i for i, r in enumerate(records) if r["status"] == 0), len(records))
    running = records[startup:] or records
    span = running[-1]["time"] - running[0]["time"] if running else 0.0
    stepped = sum(r["status"] == 0 for r in records)
    return {"achieved_rate_hz": (len(running) - 1) / span if span > 0 else 0.0, "ticks": len(records),
            "ticks_stepped": stepped, "startup_safe_ticks": startup, "safe_ticks": len(records) - stepped - startup}


def _replay_policy(model_path: Path | None, robot: str, records: list[dict[str, Any]]) -> tuple[np.ndarray, float]:
    """Hidden-state trace of the policy stepped on the node's own (obs, dt); max |action difference|."""
    from liquid_control.core.policy import Policy
    from liquid_control.core.resources import default_policy_path

    policy = Policy.load(model_path or default_policy_path(robot))
    states, worst = [], 0.0
    for r in records:
        if r["fresh"]:
            policy.reset()
        if r["status"] != 0:  # a safe tick: the node reset the state and did not step
            policy.reset()
            states.append(policy.state)
            continue
        action = policy.step(r["obs"], r["dt"] if r["dt"] > 0 else policy.nominal_period or 0.04)
        worst = max(worst, float(np.max(np.abs(action - r["action"]))))
        states.append(policy.state)
    return np.asarray(states), worst


def _parse(debug: list[np.ndarray], obs_size: int, action_size: int) -> list[dict[str, Any]]:
    from liquid_control.ros.controller.step_debug import DEBUG_FIELDS

    k = len(DEBUG_FIELDS)
    out = []
    for d in debug:
        r = dict(zip(DEBUG_FIELDS, d[:k].tolist()))
        r["obs"], r["action"] = d[k:k + obs_size], d[k + obs_size:k + obs_size + action_size]
        r["command"] = d[k + obs_size + action_size:]
        out.append(r)
    return out


def _qpos_labels(spec: Any) -> list[tuple[int, str]]:
    """(qpos index, label) of each hinge and slide joint of the robot's model, and of a free joint's x, y, z
    (its orientation quaternion is left out of the plot)."""
    import mujoco

    from liquid_control.sim.env import SpecEnv

    env = SpecEnv(spec.source)
    m = env.model
    out = []
    for j in range(m.njnt):
        name, adr, kind = m.joint(j).name or f"joint{j}", int(m.jnt_qposadr[j]), int(m.jnt_type[j])
        if kind == int(mujoco.mjtJoint.mjJNT_FREE):
            out += [(adr + k, f"{name}.{axis}") for k, axis in enumerate("xyz")]
        elif kind in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
            out.append((adr, name))
    env.close()
    return out


def _plot(path: Path, spec: Any, trace: dict[str, list], records: list[dict[str, Any]], states: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    t = np.asarray(trace["t"])
    qpos = np.asarray(trace["qpos"])
    for i, label in _qpos_labels(spec):
        if i < qpos.shape[1]:
            axes[0].plot(t, qpos[:, i], label=label)
    if spec.name.startswith("cartpole"):
        for s in (-0.2, 0.2):  # the task's failure bound on the hinge angle
            axes[0].axhline(s, color="tab:orange", lw=0.8, ls="--", label="hinge limit" if s > 0 else None)
    axes[0].set_ylabel("joint position")
    axes[0].legend(loc="upper right", fontsize=8)
    rt = np.asarray([r["time"] for r in records])
    cmd = np.asarray([r["command"] for r in records])
    for i, name in enumerate(spec.action.names):
        axes[1].step(rt, cmd[:, i], where="post", label=f"command {name}")
    axes[1].set_ylabel("command")
    axes[1].legend(loc="upper right", fontsize=8)
    if len(states):
        axes[2].plot(rt[: len(states)], states[:, : min(12, states.shape[1])], lw=0.8)
    axes[2].set_ylabel("hidden state (first 12)")
    axes[2].set_xlabel("sim time [s]")
    fig.suptitle(f"liquid_control closed loop: {spec.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    # What the plot and the sim bridge (a child process) need, imported first: a missing pip extra is one
    # line (liquid_control.cli.main) before anything starts, not after the run.
    import matplotlib  # noqa: F401
    import mujoco  # noqa: F401
    import rclpy  # noqa: F401

    from liquid_control.core.spec import load_spec

    spec = load_spec(args.robot)
    if not (args.duration > 0):
        raise LiquidControlError(f"--duration must be positive, got {args.duration}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.domain is not None and not 0 <= args.domain <= 232:
        raise LiquidControlError(f"--domain must be 0..232, got {args.domain}")
    if args.video:  # choose the GL backend here: a missing one is one line now, and the bridge inherits it
        from liquid_control.sim.gl import backend

        backend()
    env = _isolated_env(args.domain)
    lockstep = args.mode == "lockstep"
    timeout = args.timeout or (120.0 + (args.duration * (2.0 if lockstep else 1.5)))
    cli = [sys.executable, "-m", "liquid_control.cli"]

    ctl_argv = cli + ["run", "--robot", args.robot, "--backend", args.backend]
    if args.model:
        ctl_argv += ["--model", str(args.model)]
    if lockstep:
        ctl_argv.append("--use-sim-time")
    ctl_argv += ["--", "-p", "step_debug:=true"]
    sim_argv = cli + ["sim", "--robot", args.robot, "--mode", args.mode, "--duration", str(args.duration),
                      "--seed", str(args.seed), "--summary", str(out / "sim_summary.json")]
    if args.push_period:
        sim_argv += ["--push-period", str(args.push_period)]
    for setting in args.set_commands:
        sim_argv += ["--command", setting]
    if args.video:
        sim_argv += ["--video", str(out / "demo.gif")]

    print(f"demo: {spec.name}, {args.duration:g} s of sim time ({args.mode}), ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, "
          f"logs in {out}/", flush=True)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    listener = _Listener(int(env["ROS_DOMAIN_ID"]))
    controller = bridge = None
    wall0 = time.monotonic()
    try:
        controller = ChildProcess(ctl_argv, "controller", out, env=env).start()
        controller.wait_for_output("active: commanding", 60.0)
        deadline = time.monotonic() + 20.0
        while listener.debug_publishers() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        bridge = ChildProcess(sim_argv, "sim_bridge", out, env=env).start()
        try:
            bridge.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise LiquidControlError(f"the sim did not finish within {timeout:.0f} s; see {bridge.log_path}") from None
        if bridge.proc.returncode != 0:
            raise LiquidControlError(f"the sim bridge failed ({bridge.proc.returncode}); see {bridge.log_path}")
        # The last step_debug messages are in flight, and the node's report on the run's last window
        # comes at its next diagnostics period (1 s).
        ended, reports = time.monotonic(), len(listener.diagnostics)
        while time.monotonic() - ended < 0.3 or (len(listener.diagnostics) == reports
                                                  and time.monotonic() - ended < DIAGNOSTICS_WAIT_S):
            time.sleep(0.02)
    except (ChildProcessError, TimeoutError) as exc:
        raise LiquidControlError(str(exc).splitlines()[0]) from None
    finally:
        for p in (bridge, controller):
            if p is not None:
                p.stop()
        listener.close()
    wall = time.monotonic() - wall0

    sim = json.loads((out / "sim_summary.json").read_text())
    trace = sim.pop("trace")
    score = _score(args.robot, trace, spec.period)
    records = _parse(listener.debug, spec.obs_size, spec.action_size)
    if not records:
        raise LiquidControlError(f"no step_debug records came from the controller; see {out}/controller.log")
    ticks = tick_counts(records)
    stepped = [r for r in records if r["status"] == 0]
    dts = np.asarray([r["dt"] for r in stepped[1:]]) if len(stepped) > 1 else np.zeros(1)
    states, action_diff = _replay_policy(Path(args.model) if args.model else None, args.robot, records)
    level, reason = listener.run_diagnostics()
    commands = max(int(sim.get("commands", 0)), 1)
    summary = {
        "robot": spec.name, "mode": args.mode, "duration_s": args.duration,
        "success": score["failed_at"] is None and score["sim_duration_s"] >= args.duration - 2 * spec.period,
        "time_balanced_s": score["time_ok_s"], "return": score["return"], "failed_at_s": score["failed_at"],
        **{f"command_{name}": value for name, value in score["commands"].items()},
        **({"base_x_velocity_m_s": score["base_x_velocity"]} if score["base_x_velocity"] is not None else {}),
        "target_rate_hz": spec.rate_hz,
        **ticks,
        "dt_mean_s": float(dts.mean()), "dt_max_abs_error_s": float(np.max(np.abs(dts - spec.period))),
        "sensor_to_command_mean_ms": 1e3 * float(sim.get("answer_wait", 0.0)) / commands if lockstep else None,
        "command_timeouts": sim.get("command_timeouts"), "commands_ignored": sim.get("commands_ignored"),
        "real_time_factor": sim.get("real_time_factor"),
        "diagnostics_level": LEVELS.get(level, str(level)), "diagnostics_message": reason,
        "node_vs_offline_policy_max_abs_action_diff": action_diff,
        "wall_s": wall,
    }
    _plot(out / "demo.png", spec, trace, records, states)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    width = max(len(k) for k in summary)
    for k, v in summary.items():
        print(f"  {k:<{width}}  {v:.4g}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
    print(f"demo: {'SUCCESS' if summary['success'] else 'FAILED'} — plot {out / 'demo.png'}"
          + (f", video {out / 'demo.gif'}" if args.video else ""))
    return 0 if summary["success"] else 1
