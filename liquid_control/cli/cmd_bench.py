"""`liquid-control bench NAME [ARGS...]`: run one of the benchmarks in bench/ (each prints a table and
writes JSON, comparing against a baseline measured in the same run).

Each benchmark is a script bench/bench_<name>.py with `main(argv) -> int`; ARGS go to it unchanged
(`liquid-control bench step --json out.json`). The scripts live in the source tree / share folder rather
than the package because they pull in baselines (ncps, a bare loop, ...) that a robot does not need.
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from liquid_control.core.errors import LiquidControlError

HELP = "benchmarks: step, loop, sim, replay, train"

# name -> what it measures (one line, for --help)
BENCHMARKS = {
    "step": "per-step policy latency, every backend vs ncps's torch module",
    "loop": "controller loop timing vs a bare Python loop",
    "sim": "simulation throughput",
    "replay": "offline bag replay throughput",
    "train": "training speed vs a reference at equal budget",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=sorted(BENCHMARKS), help="; ".join(f"{k}: {v}" for k, v in BENCHMARKS.items()))
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark (see `bench NAME --help`)")


def bench_script(name: str) -> Path:
    from liquid_control.core.resources import share_dir

    candidates = [Path(__file__).resolve().parents[2] / "bench" / f"bench_{name}.py"]
    try:
        candidates.append(share_dir() / "bench" / f"bench_{name}.py")
    except LiquidControlError:
        pass
    for c in candidates:
        if c.is_file():
            return c
    raise LiquidControlError(f"benchmark {name!r} not found (looked for {', '.join(map(str, candidates))}); "
                             "benchmarks run from a source checkout")


def run(args: argparse.Namespace) -> int:
    path = bench_script(args.name)
    spec = importlib.util.spec_from_file_location(f"liquid_control_bench_{args.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(list(args.args)) or 0)
