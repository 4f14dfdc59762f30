"""Offline bag replay throughput and memory, beside its own parts as baselines, in one run.

    liquid-control bench replay [--json PATH] [--rounds N] [--long-minutes M] [--quick]
    python bench/bench_replay.py  [same]

Bags: synthetic cart-pole recordings (bags/synth.py): /joint_states at 500 Hz and the recorded
commands at 25 Hz, 60 s long, in MCAP and in sqlite3; plus a 1-minute and an M-minute (default 10) MCAP
bag for memory. Policy: a 64-unit CfC (backbone 1 x 128, random parameters), stepped at 500 Hz on the
numpy backend.

Rows (timed in interleaved rounds, best round reported; x real time = bag seconds / wall seconds; the
CPU columns use this process's CPU time, which other people's load on a shared machine moves less):
  replay              `liquid_control.bags.replay.replay` end to end: open, read, decode, assemble,
                      policy step, command pipeline, RMSE vs recorded commands (no output files)
    replay, no network  the same with a constant-action policy (everything but the network)
    read+decode, ours  BagReader.messages over the same topics (tolerant decoding, stats)
  rosbags read+deser  baseline: rosbags' Reader + Typestore.deserialize_cdr over the same topics, nothing else
  policy steps alone  baseline: the same number of Policy.step calls on a fixed observation, nothing else
Memory (each in a fresh child process): peak traced Python allocations (tracemalloc) and peak RSS of a
replay of the 1-minute and the M-minute bag; "flat" means the long bag does not need more.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

RATE_HZ = 500.0
UNITS = 64
GOAL_X = 50.0


def _spec():
    from liquid_control.core.spec import load_spec

    return dataclasses.replace(load_spec("cartpole"), rate_hz=RATE_HZ)


def _model(folder: Path) -> Path:
    from liquid_control.core.artifact import write_artifact
    from liquid_control.core.random_params import cfc_cfg, random_params

    spec = _spec()
    cfg = cfc_cfg(spec.obs_size, UNITS, spec.action_size)
    return write_artifact(folder / "cfc64.onnx", cfg, random_params(cfg, 0), spec=spec)


class _Clock:
    """Wall and CPU time of a block: on a shared machine the CPU time (this process only) moves much
    less with other people's load than the wall time does."""

    def __enter__(self) -> "_Clock":
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


def _replay_once(bag: Path, model: Path) -> tuple[_Clock, float]:
    from liquid_control.bags.replay import replay
    from liquid_control.core.policy import Policy

    spec = _spec()
    policy = Policy.load(model, spec=spec)
    with _Clock() as c:
        result = replay(bag, policy, spec)
    return c, result.span


class _NullPolicy:
    """Constant action: replay without the network, to split the policy's share from the rest."""

    def __init__(self) -> None:
        import numpy as np

        self.a = np.zeros(1, np.float32)

    def reset(self) -> None:
        pass

    def step(self, obs, dt):
        return self.a


def _null_once(bag: Path) -> _Clock:
    from liquid_control.bags.replay import replay

    with _Clock() as c:
        replay(bag, _NullPolicy(), _spec())
    return c


def _ours_read_once(bag: Path) -> _Clock:
    from liquid_control.bags.io import open_bag

    with _Clock() as c, open_bag(bag) as b:
        for _ in b.messages(["/joint_states", "/effort_controller/commands"]):
            pass
    return c


def _rosbags_once(bag: Path) -> _Clock:
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    with _Clock() as c:
        ts = get_typestore(Stores.ROS2_KILTED)
        with Reader(bag) as reader:
            conns = [x for x in reader.connections if x.topic in ("/joint_states", "/effort_controller/commands")]
            for conn, _, data in reader.messages(connections=conns):
                ts.deserialize_cdr(data, conn.msgtype)
    return c


def _steps_once(model: Path, steps: int) -> _Clock:
    import numpy as np

    from liquid_control.core.policy import Policy

    policy = Policy.load(model)
    obs = np.array([0.1, -0.05, 0.2, 0.01], np.float32)
    step = policy.step
    with _Clock() as c:
        for _ in range(steps):
            step(obs, 0.002)
    return c


def _child_memory(bag: Path, model: Path) -> dict:
    """Runs in a fresh process: replay once under tracemalloc; report its peak and the peak RSS."""
    import tracemalloc

    from liquid_control.bags.replay import replay
    from liquid_control.core.policy import Policy

    spec = _spec()
    policy = Policy.load(model, spec=spec)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    result = replay(bag, policy, spec)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"bag_seconds": result.span, "ticks": result.ticks, "traced_peak_mib": peak / 2**20,
            "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_replay_mib": rss_before / 1024}


def _memory(bag: Path, model: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child-memory", str(bag), str(model)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="liquid-control bench replay", description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "replay.json", help="JSON output")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best is reported)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the timed bags")
    p.add_argument("--long-minutes", type=float, default=10.0,
                   help="length of the long bag for the memory check (more than the 1-minute short one)")
    p.add_argument("--quick", action="store_true", help="10 s bags, 1 round, 2-minute long bag (smoke run)")
    p.add_argument("--child-memory", nargs=2, metavar=("BAG", "MODEL"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_memory:
        print(json.dumps(_child_memory(Path(args.child_memory[0]), Path(args.child_memory[1]))))
        return 0
    if args.quick:
        args.seconds, args.rounds, args.long_minutes = 10.0, 1, 2.0
    if not args.long_minutes > 1.0:
        print("bench replay: --long-minutes must be more than 1 (the short bag is 1 min)", file=sys.stderr)
        return 2

    from liquid_control.bags.synth import write_cartpole_bag

    with tempfile.TemporaryDirectory(prefix="bench_replay_") as tmp:
        tmp = Path(tmp)
        model = _model(tmp)
        print(f"writing bags: {args.seconds:g} s x 2 storages, 1 min and {args.long_minutes:g} min (500 Hz JointState)",
              file=sys.stderr)
        bags = {st: write_cartpole_bag(tmp / f"bag_{st}", duration=args.seconds, storage=st).path for st in ("mcap", "sqlite3")}
        steps = int(round(args.seconds * RATE_HZ))
        rows: dict[str, list[_Clock]] = {}
        spans: dict[str, float] = {}
        for _ in range(max(1, args.rounds)):  # interleaved: load changes hit every row alike
            for st, bag in bags.items():
                c, span = _replay_once(bag, model)
                rows.setdefault(f"replay ({st})", []).append(c)
                spans[f"replay ({st})"] = span
                rows.setdefault(f"  replay, no network ({st})", []).append(_null_once(bag))
                spans[f"  replay, no network ({st})"] = span
                rows.setdefault(f"  read+decode, ours ({st})", []).append(_ours_read_once(bag))
                spans[f"  read+decode, ours ({st})"] = args.seconds
                rows.setdefault(f"rosbags read+deser ({st})", []).append(_rosbags_once(bag))
                spans[f"rosbags read+deser ({st})"] = args.seconds
            rows.setdefault("policy steps alone", []).append(_steps_once(model, steps))
            spans["policy steps alone"] = steps / RATE_HZ
        short = write_cartpole_bag(tmp / "mem_1min", duration=60.0).path
        long = write_cartpole_bag(tmp / "mem_long", duration=60.0 * args.long_minutes).path
        mem = {"1 min": _memory(short, model), f"{args.long_minutes:g} min": _memory(long, model)}

    table = []
    for name, clocks in rows.items():
        wall, cpu = min(c.wall for c in clocks), min(c.cpu for c in clocks)
        table.append({"name": name, "wall_s": wall, "cpu_s": cpu, "bag_s": spans[name],
                      "x_real_time": spans[name] / wall, "x_real_time_cpu": spans[name] / cpu,
                      "per_tick_us_cpu": cpu / steps * 1e6, "rounds_wall_s": [c.wall for c in clocks],
                      "rounds_cpu_s": [c.cpu for c in clocks]})
    print(f"\noffline replay: cart-pole JointState at 500 Hz, {UNITS}-unit CfC stepped at {RATE_HZ:g} Hz, "
          f"{args.seconds:g} s bags, best of {args.rounds} rounds")
    print(f"{'':30s} {'wall s':>7s} {'CPU s':>7s} {'x real time':>12s} {'x (CPU)':>8s} {'CPU us/tick':>12s}")
    for r in table:
        print(f"{r['name']:30s} {r['wall_s']:7.3f} {r['cpu_s']:7.3f} {r['x_real_time']:12.1f} "
              f"{r['x_real_time_cpu']:8.1f} {r['per_tick_us_cpu']:12.1f}")
    print(f"goal: replay >= {GOAL_X:g}x real time")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"\nmemory (fresh process per bag, replay without output files)")
    print(f"{'bag':10s} {'ticks':>8s} {'traced peak MiB':>16s} {'RSS peak MiB':>13s} {'RSS before MiB':>15s}")
    for k, m in mem.items():
        print(f"{k:10s} {m['ticks']:8d} {m['traced_peak_mib']:16.2f} {m['rss_peak_mib']:13.1f} {m['rss_before_replay_mib']:15.1f}")
    keys = list(mem)
    growth = mem[keys[1]]["rss_peak_mib"] - mem[keys[0]]["rss_peak_mib"]
    print(f"RSS growth from {keys[0]} to {keys[1]}: {growth:+.1f} MiB; traced peak "
          f"{mem[keys[0]]['traced_peak_mib']:.2f} -> {mem[keys[1]]['traced_peak_mib']:.2f} MiB")
    out = {"benchmark": "replay", "rate_hz": RATE_HZ, "units": UNITS, "bag_seconds": args.seconds,
           "rounds": args.rounds, "goal_x_real_time": GOAL_X, "rows": table, "memory": mem,
           "rss_growth_mib": growth, "load_average": os.getloadavg()[0], "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                                  "platform": platform.platform()}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
