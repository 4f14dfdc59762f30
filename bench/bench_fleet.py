"""Fleet replay throughput: the in-process loop beside Ray with 1 and with 2 workers, same bags, same run.

    python bench/bench_fleet.py [--bags N] [--seconds S] [--rounds R] [--json PATH]

Bags: N synthetic cart-pole recordings (bags/synth.py, each its own seed), S seconds each, /joint_states at
500 Hz and the recorded commands at 25 Hz, MCAP. Policy: the shipped cartpole policy, ticked at 500 Hz (the
spec at --rate 500), numpy backend. Each bag is bags.fleet.replay_row, the replay `liquid-control replay
BAG... [--ray]` runs.

Rows (rounds interleaved: in each round every mode once, in table order; the best round is reported):
  in-process loop   bags.fleet.iter_rows: every bag in this process, one after another (the baseline)
  Ray, 1 worker     a local Ray instance started with num_cpus=1, bags as Ray tasks (bags.fleet_ray)
  Ray, 2 workers    the same with num_cpus=2
Columns: bags/s and replayed bag seconds per wall second from the first bag submitted to the last row back
(the Ray instance already up), and the Ray instance's start + shutdown, which a run pays once. Every mode's
rows are checked equal to the in-process ones (the same replay, whoever runs it).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

RATE_HZ = 500.0
MODES = ("in-process loop", "Ray, 1 worker", "Ray, 2 workers")


def _job():
    from liquid_control.bags.fleet import FleetJob
    from liquid_control.core.artifact import read_artifact
    from liquid_control.core.resources import default_policy_path
    from liquid_control.core.spec import load_spec

    spec = load_spec("cartpole")
    return FleetJob(read_artifact(default_policy_path(spec.name)), dataclasses.replace(spec, rate_hz=RATE_HZ))


def _bags(folder: Path, n: int, seconds: float) -> list[Path]:
    from liquid_control.bags.synth import write_cartpole_bag

    return [write_cartpole_bag(folder / f"bag{i:03d}", duration=seconds, seed=i).path for i in range(n)]


def _time_mode(mode: str, bags: list[Path], job) -> tuple[dict, list]:
    """(timings, rows sorted by bag) of one mode over all the bags."""
    from liquid_control.bags.fleet import iter_rows

    if mode == MODES[0]:
        t0 = time.perf_counter()
        rows = list(iter_rows([str(b) for b in bags], job))
        return {"wall_s": time.perf_counter() - t0, "ray_start_stop_s": 0.0}, sorted(rows, key=lambda r: r.bag)
    from liquid_control.bags.fleet_ray import iter_ray_rows
    from liquid_control.ray_cluster import ray_session

    workers = 1 if mode == MODES[1] else 2
    t_start = time.perf_counter()
    with ray_session("", workers) as ray:
        started = time.perf_counter() - t_start
        t0 = time.perf_counter()
        rows = list(iter_ray_rows(bags, job))
        wall = time.perf_counter() - t0
        cpus = ray.cluster_resources().get("CPU")
        t_stop = time.perf_counter()
    stopped = time.perf_counter() - t_stop
    assert cpus == workers, (cpus, workers)
    return {"wall_s": wall, "ray_start_stop_s": started + stopped}, sorted(rows, key=lambda r: r.bag)


def run(n_bags: int, seconds: float, rounds: int) -> dict:
    load0 = os.getloadavg()[0]
    job = _job()
    with tempfile.TemporaryDirectory(prefix="bench_fleet_") as tmp:
        bags = [b.absolute() for b in _bags(Path(tmp), n_bags, seconds)]
        best: dict[str, dict] = {}
        reference = None
        for _ in range(rounds):
            for mode in MODES:
                timing, rows = _time_mode(mode, bags, job)
                errors = [r.error for r in rows if r.error]
                assert not errors, errors[:3]
                if reference is None:
                    reference = rows
                assert rows == reference, f"{mode}: rows differ from the in-process replay's"
                if mode not in best or timing["wall_s"] < best[mode]["wall_s"]:
                    best[mode] = timing
        bag_seconds = sum(r.span_s for r in reference)
    out = {"bags": n_bags, "bag_seconds": bag_seconds, "rate_hz": RATE_HZ, "rounds": rounds,
           "cpus": os.cpu_count(), "load_1min": [load0, os.getloadavg()[0]], "python": platform.python_version(),
           "modes": {}}
    base = best[MODES[0]]["wall_s"]
    for mode in MODES:
        wall = best[mode]["wall_s"]
        out["modes"][mode] = {"wall_s": wall, "bags_per_s": n_bags / wall, "bag_s_per_wall_s": bag_seconds / wall,
                              "speedup": base / wall, "ray_start_stop_s": best[mode]["ray_start_stop_s"]}
    return out


def table(result: dict) -> str:
    lines = [f"{result['bags']} bags, {result['bag_seconds']:.1f} s of bag in all, ticked at {result['rate_hz']:g} Hz; "
             f"best of {result['rounds']} rounds; {result['cpus']} CPUs, 1-minute load average "
             f"{result['load_1min'][0]:.1f} at the start, {result['load_1min'][1]:.1f} at the end",
             f"{'mode':<18} {'wall s':>8} {'bags/s':>8} {'bag-s/wall-s':>13} {'vs loop':>8} {'Ray start+stop s':>17}"]
    for mode, m in result["modes"].items():
        start = f"{m['ray_start_stop_s']:.2f}" if m["ray_start_stop_s"] else "-"
        lines.append(f"{mode:<18} {m['wall_s']:>8.2f} {m['bags_per_s']:>8.2f} {m['bag_s_per_wall_s']:>13.1f} "
                     f"{m['speedup']:>7.2f}x {start:>17}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_fleet.py", description=__doc__.splitlines()[0])
    p.add_argument("--bags", type=int, default=24, help="number of bags (default 24)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each bag (default 30 s)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best is reported (default 2)")
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = p.parse_args(argv)
    result = run(args.bags, args.seconds, args.rounds)
    print(table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
