"""Per-step policy latency at batch 1: our backends side by side with ncps's own torch modules, same run.

    liquid-control bench step [--json PATH] [--steps N]
    python bench/bench_step.py   [--json PATH] [--steps N]

Models (17 observations, 6 actions, 64 units): CfC fully connected (backbone 1 x 128, proj 64 -> 6),
CfC AutoNCP(64, 6), LTC fully connected (motor 6 of 64) and LTC AutoNCP(64, 6), both with 6 ODE unfolds.
They are built in ncps and exported with `export_ncps` (so every row runs the same weights; the first
action of each of our backends is checked against ncps); without ncps/torch, random cellmath params of
the same shapes are used and the ncps rows are left out.

What is timed: one `Policy.step(obs, dt)` call (input checks, the step, state commit, a fresh action
array) for our backends; `module(x, hx, timespans=ts)` under torch.no_grad() for ncps, x being the
same observation as a (1, 1, 17) tensor. All implementations are timed in interleaved rounds so that
load changes on a shared machine hit them alike; torch runs on 1 thread for every torch row.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from liquid_control.core.policy import Policy  # noqa: E402
from liquid_control.core.random_params import cfc_cfg, ltc_cfg, random_params  # noqa: E402

I, N, A, UNFOLDS = 17, 64, 6, 6
BACKENDS = ("numpy", "onnxruntime", "torch")
MODELS = ("cfc-64", "cfc-autoncp", "ltc-64", "ltc-autoncp")


def _ncps_module(name: str, seed: int):
    import torch
    from ncps.torch import CfC, LTC
    from ncps.wirings import AutoNCP, FullyConnected

    torch.manual_seed(seed)
    if name == "cfc-64":
        return CfC(I, N, proj_size=A)
    if name == "cfc-autoncp":
        return CfC(I, AutoNCP(N, A, seed=seed))
    if name == "ltc-64":
        return LTC(I, FullyConnected(N, A), ode_unfolds=UNFOLDS)
    if name == "ltc-autoncp":
        return LTC(I, AutoNCP(N, A, seed=seed), ode_unfolds=UNFOLDS)
    raise ValueError(name)


def _random_model(name: str, seed: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if name == "cfc-64":
        cfg = cfc_cfg(I, N, A)
        return cfg, random_params(cfg, seed)
    if name == "cfc-autoncp":
        cfg = cfc_cfg(I, N, A, layers=[35, 23, 6])  # AutoNCP(64, 6): inter 35, command 23, motor 6
        return cfg, random_params(cfg, seed, sparsity=0.6)
    cfg = ltc_cfg(I, N, A, motor_size=A, ode_unfolds=UNFOLDS)
    return cfg, random_params(cfg, seed, sparsity=0.0 if name == "ltc-64" else 0.88)


def build_models(folder: Path, use_ncps: bool, names: tuple[str, ...] = MODELS) -> dict[str, tuple[Path, Any]]:
    """name -> (artifact path, ncps module or None)."""
    from liquid_control.core.artifact import write_artifact

    out = {}
    for i, name in enumerate(MODELS):
        if name not in names:
            continue
        path = folder / f"{name}.onnx"
        if use_ncps:
            from liquid_control.learning.ncps_import import export_ncps

            module = _ncps_module(name, seed=i).eval()
            # the ncps rows step with timespans = dt in seconds, so the model's time unit is the second
            export_ncps(module, path, trained_timespan=None, command="bench_step")
            out[name] = (path, module)
        else:
            cfg, params = _random_model(name, seed=i)
            write_artifact(path, cfg, params, provenance={"command": "bench_step", "seed": i})
            out[name] = (path, None)
    return out


def _ncps_stepper(module) -> Callable[[np.ndarray, float], Any]:
    import torch

    state = {"h": None}
    ts = torch.zeros(1, 1)

    def step(obs: np.ndarray, dt: float):
        ts[0, 0] = dt
        with torch.no_grad():
            y, state["h"] = module(torch.from_numpy(obs).view(1, 1, -1), state["h"], timespans=ts)
        return y

    return step


def _time_rounds(steppers: dict[str, Callable], obs: np.ndarray, dts: np.ndarray, rounds: int, per_round: int,
                 warmup: int) -> dict[str, np.ndarray]:
    """Interleaved timing: each round runs `per_round` steps of every implementation in turn."""
    perf = time.perf_counter_ns
    for fn in steppers.values():
        for k in range(warmup):
            fn(obs[k % len(obs)], float(dts[k % len(dts)]))
    samples = {key: np.empty(rounds * per_round) for key in steppers}
    obs_list, dt_list = list(obs), [float(d) for d in dts]
    n = len(obs_list)
    for r in range(rounds):
        for key, fn in steppers.items():
            buf = samples[key]
            base = r * per_round
            for k in range(per_round):
                o, d = obs_list[(base + k) % n], dt_list[(base + k) % n]
                t0 = perf()
                fn(o, d)
                buf[base + k] = perf() - t0
    return {k: v / 1000.0 for k, v in samples.items()}  # microseconds


def _first_action_gap(policy_path: Path, backend: str, module, obs: np.ndarray, dt: float) -> float:
    import torch

    with torch.no_grad():
        ref = module(torch.from_numpy(obs).view(1, 1, -1), None, timespans=torch.full((1, 1), dt))[0].numpy().ravel()
    pol = Policy.load(policy_path, backend=backend)
    return float(np.abs(pol.step(obs, dt) - ref).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="liquid-control bench step", description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None, help="write the rows here as JSON")
    ap.add_argument("--steps", type=int, default=3000, help="timed steps per implementation (default 3000)")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds the steps are split into")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of " + ",".join(BACKENDS))
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    ap.add_argument("--no-ncps", action="store_true", help="random params instead of ncps models, no ncps rows")
    args = ap.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    models = [m for m in args.models.split(",") if m]
    bad = [b for b in backends if b not in BACKENDS] + [m for m in models if m not in MODELS]
    if bad or args.steps < args.rounds or args.rounds < 1:
        ap.error(f"unknown backends/models {bad}" if bad else "--steps must be >= --rounds >= 1")

    use_ncps = not args.no_ncps
    if use_ncps:
        try:
            import ncps  # noqa: F401
            import torch

            torch.set_num_threads(1)
        except ImportError as exc:
            print(f"ncps/torch not available ({exc}): random params, no ncps rows", file=sys.stderr)
            use_ncps = False
    if "torch" in backends:
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:
            backends.remove("torch")

    rng = np.random.default_rng(0)
    obs = rng.normal(0.0, 1.0, (256, I)).astype(np.float32)
    dts = (0.04 * rng.uniform(0.8, 1.2, 256)).astype(np.float32)  # a 25 Hz loop with +-20% jitter
    per_round = args.steps // args.rounds
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        built = build_models(Path(tmp), use_ncps, tuple(models))
        for name in models:
            path, module = built[name]
            steppers: dict[str, Callable] = {}
            gaps: dict[str, float] = {}
            for backend in backends:
                steppers[backend] = Policy.load(path, backend=backend).step
                if module is not None:
                    gaps[backend] = _first_action_gap(path, backend, module, obs[0], float(dts[0]))
            if module is not None:
                steppers["ncps"] = _ncps_stepper(module)
            times = _time_rounds(steppers, obs, dts, args.rounds, per_round, warmup=200)
            ncps_p50 = float(np.percentile(times["ncps"], 50)) if "ncps" in times else None
            for key, t in times.items():
                p50, p99 = float(np.percentile(t, 50)), float(np.percentile(t, 99))
                row = {"name": name, "backend": key if key != "ncps" else "ncps (torch)",
                       "p50_us": round(p50, 2), "p99_us": round(p99, 2),
                       "speedup_vs_ncps_p50": round(ncps_p50 / p50, 2) if ncps_p50 else None}
                if key in gaps:
                    row["max_abs_diff_vs_ncps"] = gaps[key]
                rows.append(row)

    header = f"{'model':<13s} {'backend':<14s} {'p50 us':>9s} {'p99 us':>9s} {'vs ncps p50':>12s} {'|a - ncps|':>11s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        speed = f"{r['speedup_vs_ncps_p50']:.1f}x" if r["speedup_vs_ncps_p50"] else "-"
        gap = f"{r['max_abs_diff_vs_ncps']:.1e}" if "max_abs_diff_vs_ncps" in r else "-"
        print(f"{r['name']:<13s} {r['backend']:<14s} {r['p50_us']:>9.1f} {r['p99_us']:>9.1f} {speed:>12s} {gap:>11s}")
    print(f"\n{args.steps} timed steps per row in {args.rounds} interleaved rounds, batch 1, dt = 40 ms +-20%; "
          f"torch threads 1; {'ncps-exported weights' if use_ncps else 'random cellmath params'}")
    if args.json:
        import onnxruntime

        meta = {"benchmark": "step", "steps": args.steps, "rounds": args.rounds, "python": platform.python_version(),
                "numpy": np.__version__, "onnxruntime": onnxruntime.__version__, "machine": platform.machine(),
                "cpus": os.cpu_count(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "weights": "ncps export" if use_ncps else "random cellmath params"}
        if use_ncps:
            from importlib.metadata import version

            import torch

            meta.update(torch=torch.__version__, ncps=version("ncps"))  # ncps.__version__ says 0.0.2 in 1.0.1
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
