"""Controller loop timing: the liquid controller node vs a bare Python absolute-deadline loop, same run.

    liquid-control bench loop [--rates 100 500 1000] [--duration 5] [--backend numpy] [--json PATH]

For each rate:
  * node: the real controller node (its own process, `controller` console script) at that rate while
    another process streams stamped JointState at 1 kHz over DDS. Its /diagnostics (one report per
    second, read by this process) give achieved rate, tick lateness, overruns, ticks later than half a
    period, step latency and sensor-to-command latency (publish time - sensor header stamp, same
    machine clock); CPU % from /proc/<pid>/stat over the measured window.
  * bare: a plain Python loop in its own process, sleeping to absolute deadlines on the monotonic clock
    and doing the same work per tick (Policy.step with the measured dt + the command pipeline), with
    the same 1 kHz stream still running. No ROS.
The two run one after the other (not at once: on a 2-core machine they would compete for the cores).

Node lateness percentiles are aggregated over 1-second report windows: p50 = median of the window
p50s, p99 = the largest window p99 (an upper bound of the true p99), max = the largest. The bare loop's
are exact over all ticks.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from liquid_control.ros.background import BackgroundNode

HERE = Path(__file__).resolve()
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


# ---------------------------------------------------------------------------------------- streamer

def run_streamer(rate: float, duration: float) -> int:
    """Publish JointState (slider, hinge) at `rate` Hz against absolute deadlines, stamped with time.time_ns()."""
    import rclpy
    from sensor_msgs.msg import JointState

    rclpy.init()
    node = rclpy.create_node("bench_joint_streamer")
    pub = node.create_publisher(JointState, "joint_states", 10)
    msg = JointState(name=["slider", "hinge"], position=[0.0, 0.0], velocity=[0.0, 0.0])
    period, k = 1.0 / rate, 0
    next_t = time.monotonic()
    end = next_t + duration
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while time.monotonic() < end and not stop.is_set():
        k += 1
        x = 0.2 * np.sin(k * 0.01)
        msg.position = [float(x), float(-x)]
        msg.velocity = [float(0.1 * x), 0.0]
        ns = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)
        pub.publish(msg)
        next_t += period
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -period:
            next_t = time.monotonic()
    node.destroy_node()
    rclpy.shutdown()
    return 0


# ---------------------------------------------------------------------------------------- bare loop

def run_bare(model: str, backend: str, rate: float, duration: float, warmup: float, out: str) -> int:
    """The baseline: absolute deadlines, Policy.step(obs, measured dt) + CommandPipeline, nothing else."""
    from liquid_control import Policy, load_spec
    from liquid_control.core.command import CommandPipeline

    spec = load_spec("cartpole")
    policy = Policy.load(model, backend=backend, spec=spec)
    pipeline = CommandPipeline(spec.action, spec.safety.soft_start, spec.safety.safe_behaviour)
    obs = np.zeros(spec.obs_size, np.float32)
    period = 1.0 / rate
    n_max = int((duration + warmup) * rate) + 10
    late, step = np.zeros(n_max), np.zeros(n_max)
    times = np.zeros(n_max)
    mono, sleep, perf = time.monotonic, time.sleep, time.perf_counter
    last = mono()
    deadline = last + period
    end = last + warmup + duration
    n = missed = 0
    cpu0 = wall0 = None
    while True:
        delay = deadline - mono()
        if delay > 0:
            sleep(delay)
        now = mono()
        if now >= end or n >= n_max:
            break
        lt = now - deadline
        if lt >= period:
            k = int(lt // period)
            deadline += k * period
            if cpu0 is not None:
                missed += k
        obs[0] = np.float32(np.sin(n * 0.01))
        s0 = perf()
        action = policy.step(obs, now - last)
        step_s = perf() - s0
        pipeline.apply(action, now - last)
        last = now
        deadline += period
        if cpu0 is None and now >= end - duration:  # warm-up over: start measuring
            cpu0, wall0, n = time.process_time(), now, 0
        if cpu0 is not None:
            late[n], step[n], times[n] = lt, step_s, now
            n += 1
    cpu = (time.process_time() - cpu0) / (mono() - wall0)
    t = times[:n]
    res = {"achieved_hz": (n - 1) / (t[-1] - t[0]), "late_p50_us": np.percentile(late[:n], 50) * 1e6,
           "late_p99_us": np.percentile(late[:n], 99) * 1e6, "late_max_us": late[:n].max() * 1e6,
           "late_over_half": int(np.count_nonzero(late[:n] > period / 2)), "overruns": missed, "ticks": n,
           "step_p50_us": np.percentile(step[:n], 50) * 1e6, "step_p99_us": np.percentile(step[:n], 99) * 1e6,
           "s2c_p50_us": None, "s2c_p99_us": None, "cpu_pct": cpu * 100}
    Path(out).write_text(json.dumps({k: (float(v) if isinstance(v, (float, np.floating)) else v)
                                     for k, v in res.items()}))
    return 0


# ---------------------------------------------------------------------------------------- node

class DiagListener(BackgroundNode):
    """The controller's diagnostics reports, with their receive time."""

    def __init__(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        super().__init__("bench_loop_listener")
        self.reports: list[tuple[float, dict[str, str], str]] = []
        self._lock = threading.Lock()
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg) -> None:
        for s in msg.status:
            if "liquid_controller" in s.name:
                with self._lock:
                    self.reports.append((time.monotonic(), {kv.key: kv.value for kv in s.values}, s.message))

    def since(self, t: float) -> list[tuple[float, dict[str, str], str]]:
        with self._lock:
            return [r for r in self.reports if r[0] >= t]


def measure_node(model: str, backend: str, rate: float, duration: float, warmup: float,
                 listener: DiagListener, log: Path) -> dict:
    controller = Path(sys.executable).parent / "controller"
    argv = [str(controller), "--ros-args", "-p", f"model:={model}", "-p", f"backend:={backend}",
            "-p", f"rate_hz:={float(rate)}", "-p", "autostart:=true", "-p", "sensor_timeout:=0.5",
            "-p", "diagnostics_period:=1.0"]
    with open(log, "wb") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)
    try:
        t_start = time.monotonic()
        # Wait until the node reports normal control (the stream is flowing), then warm up.
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"controller exited ({proc.returncode}); see {log}")
            if any(r[1].get("state") == "active" and r[1].get("safe_command_ticks") == "0" and int(r[1]["ticks"]) > 0
                   for r in listener.since(t_start)):
                break
            if time.monotonic() - t_start > 60:
                raise RuntimeError(f"controller never reached normal control; see {log}")
            time.sleep(0.05)
        time.sleep(warmup)
        t0, cpu0 = time.monotonic(), _cpu_seconds(proc.pid)
        while len(listener.since(t0)) < int(duration):
            if proc.poll() is not None:
                raise RuntimeError(f"controller exited ({proc.returncode}); see {log}")
            time.sleep(0.05)
        cpu = (_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        reports = [r[1] for r in listener.since(t0)][: int(duration)]
    finally:
        proc.send_signal(2)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    f = lambda key: np.array([float(r[key]) for r in reports if r.get(key) not in (None, "n/a")])  # noqa: E731
    ticks = f("ticks")
    rates = f("achieved_rate_hz")
    return {"achieved_hz": float(np.sum(ticks) / np.sum(ticks / rates)) if rates.all() else float(rates.mean()),
            "late_p50_us": float(np.median(f("tick_lateness_p50_us"))),
            "late_p99_us": float(f("tick_lateness_p99_us").max()), "late_max_us": float(f("tick_lateness_max_us").max()),
            "late_over_half": int(f("ticks_late_over_half_period").sum()), "overruns": int(f("overruns").sum()),
            "ticks": int(ticks.sum()),
            "step_p50_us": float(np.median(f("step_latency_p50_us"))), "step_p99_us": float(f("step_latency_p99_us").max()),
            "s2c_p50_us": float(np.median(f("sensor_to_command_p50_us"))) if f("sensor_to_command_p50_us").size else None,
            "s2c_p99_us": float(f("sensor_to_command_p99_us").max()) if f("sensor_to_command_p99_us").size else None,
            "cpu_pct": cpu * 100, "safe_ticks": int(f("safe_command_ticks").sum())}


def _model(path: str | None, tmp: Path) -> str:
    if path:
        return path
    from liquid_control.core.resources import share_dir

    shipped = share_dir() / "policies" / "cartpole.onnx"
    if shipped.is_file():
        return str(shipped)
    from liquid_control.core.artifact import write_artifact
    from liquid_control.core.random_params import cfc_cfg, random_params
    from liquid_control.core.spec import load_spec

    spec = load_spec("cartpole")
    cfg = cfc_cfg(spec.obs_size, 32, spec.action_size)
    return str(write_artifact(tmp / "random_cfc32.onnx", cfg, random_params(cfg, 0), spec=spec))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="liquid-control bench loop", description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[100.0, 500.0, 1000.0])
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per rate and loop")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--stream-hz", type=float, default=1000.0)
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--model", help="policy artifact (default: the shipped cartpole policy)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--_streamer", nargs=2, type=float, help=argparse.SUPPRESS)
    ap.add_argument("--_bare", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._streamer:
        return run_streamer(*args._streamer)
    if args._bare:
        m, b, r, d, out = args._bare
        return run_bare(m, b, float(r), float(d), args.warmup, out)

    os.environ["ROS_DOMAIN_ID"] = str(40 + os.getpid() % 50)  # private: never a live robot graph
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    tmp = Path(tempfile.mkdtemp(prefix="bench_loop_"))
    model = _model(args.model, tmp)
    total = len(args.rates) * (2 * args.duration + 2 * args.warmup + 20) + 30
    streamer = subprocess.Popen([sys.executable, str(HERE), "--_streamer", str(args.stream_hz), str(total)])
    listener = DiagListener()
    rows = []
    try:
        for rate in args.rates:
            node = measure_node(model, args.backend, rate, args.duration, args.warmup, listener,
                                tmp / f"controller_{int(rate)}.log")
            out = tmp / f"bare_{int(rate)}.json"
            subprocess.run([sys.executable, str(HERE), "--warmup", str(args.warmup), "--_bare", model,
                            args.backend, str(rate), str(args.duration), str(out)], check=True)
            bare = json.loads(out.read_text())
            rows += [{"loop": "node", "rate_hz": rate, **node}, {"loop": "bare", "rate_hz": rate, **bare}]
    finally:
        listener.close()
        streamer.terminate()
        streamer.wait(10)

    def fmt(v, spec=".0f"):
        return "-" if v is None else format(v, spec)

    head = (f"{'loop':5} {'target':>7} {'achieved':>9} {'err%':>6} {'late p50':>9} {'p99':>8} {'max':>8} "
            f"{'>T/2':>5} {'overrun':>7} {'step p50':>9} {'p99':>7} {'s2c p50':>8} {'p99':>7} {'CPU%':>5}")
    print(f"\nloop timing, {args.backend} backend, model {Path(model).name}, JointState stream {args.stream_hz:g} Hz, "
          f"{args.duration:g} s per row (times in us)")
    print(head)
    print("-" * len(head))
    for r in rows:
        err = (r["achieved_hz"] / r["rate_hz"] - 1) * 100
        print(f"{r['loop']:5} {r['rate_hz']:7.0f} {r['achieved_hz']:9.2f} {err:6.2f} {fmt(r['late_p50_us']):>9} "
              f"{fmt(r['late_p99_us']):>8} {fmt(r['late_max_us']):>8} {r['late_over_half']:5d} {r['overruns']:7d} "
              f"{fmt(r['step_p50_us'], '.1f'):>9} {fmt(r['step_p99_us'], '.1f'):>7} {fmt(r['s2c_p50_us']):>8} "
              f"{fmt(r['s2c_p99_us']):>7} {r['cpu_pct']:5.1f}")
    print("node lateness/step p99 = the worst 1-s window's p99; bare = exact. s2c = sensor header stamp -> "
          "command publish.")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"benchmark": "loop", "backend": args.backend, "model": model,
                                               "stream_hz": args.stream_hz, "duration_s": args.duration,
                                               "rows": rows}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
