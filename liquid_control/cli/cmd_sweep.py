"""`liquid-control sweep --robot R --seeds 0-4 [--grid lr=1e-3,3e-4 units=16,32] [--ray [ADDRESS]] --out DIR`:
the training run of `liquid-control train` over grid x seeds, one table of results and the best policy.

Every option of `train` sets what the trials share (less --seed, --out and --resume); --grid overrides settings
per grid point. Each trial trains into DIR/<grid values>_seed=<seed>/ (the run folder `train --out` would
write). Then DIR/sweep.csv (a row per trial: grid values, seed, final and best eval return, steps, wall time,
error), DIR/sweep.png (learning curves, mean +- std across seeds per grid point) and DIR/best.onnx: the best
grid point's (highest mean final eval return) best seed (highest best eval), exported from its best.pt as
`liquid-control export` does. Trials run one after another in this process, or as Ray tasks with --ray
(learning/sweep_ray.py). Exit status 1 when a trial failed (its row says why).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "train over a grid of settings x seeds (in this process or on Ray): a table and the best policy"
SWEEP_SETS = ("--seed", "--out", "--resume")  # options of `train` that the sweep sets per trial


class _Without:
    """A parser or argument group that leaves out some options: `train`'s options, less those in SWEEP_SETS."""

    def __init__(self, target: Any, skip: tuple[str, ...]):
        self.target, self.skip = target, skip

    def add_argument_group(self, *args: Any, **kwargs: Any) -> "_Without":
        return _Without(self.target.add_argument_group(*args, **kwargs), self.skip)

    def add_argument(self, *flags: str, **kwargs: Any) -> argparse.Action:
        if flags[0] in self.skip:
            return argparse.Action(list(flags), dest=argparse.SUPPRESS)  # never added to the parser
        return self.target.add_argument(*flags, **kwargs)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from liquid_control.ray_cluster import ADDRESS_HELP
    from liquid_control.cli import cmd_train

    sweep = p.add_argument_group("the sweep")
    sweep.add_argument("--seeds", default="0-2", help="seeds of each grid point: N, A-B or a comma list "
                                                      "(default: %(default)s)")
    sweep.add_argument("--grid", nargs="+", default=[], metavar="KEY=V1,V2",
                       help="settings to sweep, each a `train` setting (lr, units, n_steps, ...) with its values; "
                            "the trials are every combination x the seeds")
    sweep.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help=f"run the trials as Ray tasks, one CPU each (pip extra [dist]); ADDRESS {ADDRESS_HELP}")
    sweep.add_argument("--out", type=Path, required=True,
                       help="sweep folder (new or empty): a run folder per trial, sweep.csv, sweep.png, best.onnx")
    cmd_train.add_arguments(_Without(p, SWEEP_SETS))


def export_best(row: dict[str, Any], path: Path) -> Path:
    """The trial's best.pt exported to `path` by `liquid-control export`'s code."""
    from liquid_control.cli import cmd_export

    cmd_export.run(argparse.Namespace(checkpoint=Path(row["run_dir"]) / "best.pt", out=path, robot=None, period=None))
    return path


def run(args: argparse.Namespace) -> int:
    import contextlib

    from liquid_control.cli.config_args import config_from_args
    from liquid_control.cli.grid_args import parse_grid, parse_seeds
    from liquid_control.learning import sweep
    from liquid_control.learning.ppo_config import PPOConfig

    seeds, grid = parse_seeds(args.seeds), parse_grid(args.grid)
    sweep.check_out(args.out)
    env_kwargs = {k: v for k, v in (("timestep", args.timestep), ("drop_prob", args.drop_prob)) if v}
    base = config_from_args(PPOConfig, argparse.Namespace(**vars(args), seed=seeds[0]), env_kwargs=env_kwargs)
    trials = sweep.make_trials(base, grid, seeds, args.out)
    shape = f"{len(trials) // len(seeds)} grid points x {len(seeds)} seeds"
    with contextlib.ExitStack() as stack:
        if args.ray is None:
            rows, where = sweep.iter_rows(trials), "in this process"
        else:
            from liquid_control.ray_cluster import ray_session
            from liquid_control.learning.sweep_ray import iter_ray_rows

            ray = stack.enter_context(ray_session(args.ray))
            rows = iter_ray_rows(trials)
            where = f"on Ray ({args.ray or 'local'}, {int(ray.cluster_resources().get('CPU', 0))} CPUs)"
        print(f"sweep of {len(trials)} trials ({shape}) {where}: {args.out}", flush=True)
        rows = sweep.run_table(trials, rows, grid, args.out, progress=not args.no_progress)
    failed = [r for r in rows if r["status"] != "ok"]
    for r in failed:
        print(f"trial {r['trial']} ({Path(r['run_dir']).name}): error: {r['error']}")
    print(f"{len(rows) - len(failed)} of {len(rows)} trials finished, {len(failed)} failed; "
          f"table: {args.out / sweep.SWEEP_CSV}, curves: {args.out / sweep.SWEEP_PNG}")
    best = sweep.best_trial(rows, grid)
    if best is None:
        print("no trial finished: no best policy")
        return 1
    export_best(best, args.out / "best.onnx")
    print(f"best: {Path(best['run_dir']).name}: final eval {best['final_eval']:.1f}, best eval {best['best_eval']:.1f}")
    return 1 if failed else 0
