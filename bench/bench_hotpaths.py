"""Per-call cost of the node's hot paths, this checkout's code beside a git revision's, in the same run.

    python bench/bench_hotpaths.py --base REV [--rounds N] [--per-round N]

core/policy.py, command.py, observation.py and backends/numpy_backend.py are read from REV (`git show`)
and loaded beside the working tree's; everything they import (spec, cellmath, the backend Policy.load
picks, ...) is the working tree's, so a difference in the table is the difference in those files. What is
timed, per call:

  * NumpyBackend.step alone, CfC 17 -> 64 units -> 6 actions (random weights);
  * Policy.step with it (the input and output checks around the backend): a float32 observation (the
    node's case) and a float64 one (converted on the way in);
  * CommandPipeline.apply: 1 actuator without a rate limit (cartpole), 6 with rate limits;
  * ObservationAssembler.update + assemble: a 2-joint JointState (cartpole's 4 observations).

The implementations run in interleaved rounds so that load changes on a shared machine hit them alike;
the table gives each one's median over rounds of the per-round mean and new/base as a ratio. At the
node's 500 Hz a tick has 2 ms: a difference of a few microseconds does not matter there.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from liquid_control.core import command, observation, policy  # noqa: E402
from liquid_control.core.artifact import read_artifact, write_artifact  # noqa: E402
from liquid_control.core.backends import numpy_backend  # noqa: E402
from liquid_control.core.random_params import cfc_cfg, random_params  # noqa: E402
from liquid_control.core.spec import ActionSpec, load_spec  # noqa: E402

MODULES = {"policy": policy, "command": command, "observation": observation, "backends/numpy_backend": numpy_backend}


def load_base(rev: str) -> dict[str, types.ModuleType]:
    """The three modules as they are at git revision `rev`."""
    out = {}
    for name in MODULES:
        path = f"liquid_control/core/{name}.py"
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True,
                             capture_output=True, text=True).stdout
        mod = types.ModuleType(f"base_{name.replace('/', '_')}")
        mod.__file__ = f"{rev}:{path}"
        sys.modules[mod.__name__] = mod  # dataclasses look their module up
        exec(compile(src, mod.__file__, "exec"), mod.__dict__)
        out[name] = mod
    return out


def cases(mods: dict[str, Any], artifact_path: Path) -> dict[str, Callable[[], Any]]:
    """Name -> a no-argument call running one hot-path operation with these modules."""
    rng = np.random.default_rng(0)
    pol = mods["policy"].Policy.load(artifact_path)
    backend = mods["backends/numpy_backend"].NumpyBackend(read_artifact(artifact_path))
    h = np.zeros(64, np.float32)
    obs32 = rng.normal(size=17).astype(np.float32)
    obs64 = obs32.astype(np.float64)
    one = ActionSpec(topic="c", msg_type="std_msgs/msg/Float64MultiArray", names=("a",), scale=(10.0,),
                     lower=(-10.0,), upper=(10.0,), rate_limit=None, safe=(0.0,))
    six = ActionSpec(topic="c", msg_type="std_msgs/msg/Float64MultiArray", names=tuple("abcdef"),
                     scale=(2.0,) * 6, lower=(-1.5,) * 6, upper=(1.5,) * 6, rate_limit=(50.0,) * 6, safe=(0.0,) * 6)
    p1, p6 = mods["command"].CommandPipeline(one), mods["command"].CommandPipeline(six)
    a1, a6 = np.array([0.3]), rng.uniform(-1.2, 1.2, 6)
    asm = mods["observation"].ObservationAssembler(load_spec("cartpole"))
    msg = types.SimpleNamespace(name=["slider", "hinge"], position=[0.1, -0.2], velocity=[0.5, 1.5], effort=[])
    clock = [0.0]

    def observe() -> Any:
        clock[0] += 0.002
        asm.update("joint_states", msg, clock[0])
        return asm.assemble(clock[0])

    return {
        "NumpyBackend.step": lambda: backend.step(obs32, 0.002, h),
        "Policy.step, float32 obs": lambda: pol.step(obs32, 0.002),
        "Policy.step, float64 obs": lambda: pol.step(obs64, 0.002),
        "CommandPipeline.apply, 1 actuator": lambda: p1.apply(a1, 0.002),
        "CommandPipeline.apply, 6 rate-limited": lambda: p6.apply(a6, 0.002),
        "ObservationAssembler.update+assemble": observe,
    }


def run(base_rev: str, rounds: int, per_round: int) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = cfc_cfg(17, 64, 6)
        path = write_artifact(Path(tmp) / "cfc.onnx", cfg, random_params(cfg, 0), provenance={"command": "bench"})
        impls = {"base": cases(load_base(base_rev), path), "new": cases(MODULES, path)}
    perf = time.perf_counter_ns
    names = list(impls["new"])
    means: dict[tuple[str, str], list[float]] = {(n, k): [] for n in names for k in impls}
    for fn in (f for c in impls.values() for f in c.values()):
        for _ in range(200):  # warm-up
            fn()
    for _ in range(rounds):
        for name in names:
            for key, calls in impls.items():
                fn = calls[name]
                t0 = perf()
                for _ in range(per_round):
                    fn()
                means[name, key].append((perf() - t0) / per_round / 1000.0)
    return [(n, float(np.median(means[n, "base"])), float(np.median(means[n, "new"]))) for n in names]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision whose hot-path modules to compare")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=2000)
    args = ap.parse_args(argv)
    rows = run(args.base, args.rounds, args.per_round)
    print(f"{'per call, median of ' + str(args.rounds) + ' rounds':40s} {'base ' + args.base:>14s} "
          f"{'this tree':>10s} {'ratio':>6s}")
    for name, base, new in rows:
        print(f"{name:40s} {base:11.2f} us {new:7.2f} us {new / base:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
