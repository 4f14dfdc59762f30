"""Sweeps: the same training run over a grid of settings x seeds, one table of results.

A trial is one `liquid-control train` run (ppo.train, the single-process trainer, unchanged) with its own
config and run folder under the sweep's folder. Trials run one after another in this process (iter_rows) or
as Ray tasks (learning/sweep_ray.py); either way each becomes a row, in the order trials finish. A trial that
fails (a setting the config refuses, a diverged run) is a row carrying its error as one line: one bad trial
never ends the sweep. run_table streams the rows to <out>/sweep.csv, then writes the table in trial order
and <out>/sweep.png (learning curves, mean +- std across seeds per grid point).

The grid ({PPOConfig field: [values]}) and the seeds come parsed (cli/grid_args.py); the seed is not a
grid key (the seeds are the other axis).
"""
from __future__ import annotations

import csv
import itertools
import math
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from liquid_control.core.errors import one_line
from liquid_control.core.errors import LiquidControlError
from liquid_control.learning.ppo_config import PPOConfig

SWEEP_CSV, SWEEP_PNG = "sweep.csv", "sweep.png"
RESULT_COLUMNS = ["seed", "status", "final_eval", "final_eval_std", "best_eval", "best_step", "steps", "wall_s",
                  "run_dir", "error"]


# ------------------------------------------------------------------------------------------ trials
@dataclass(frozen=True)
class Trial:
    """One training run of the sweep: its grid values, seed, full config and run folder."""

    index: int
    point: dict[str, Any]
    seed: int
    config: PPOConfig
    run_dir: Path


def _dir_name(point: dict[str, Any], seed: int) -> str:
    text = "_".join([*(f"{k}={v}" for k, v in point.items()), f"seed={seed}"])
    return re.sub(r"[^A-Za-z0-9.=+_-]", "-", text)


def make_trials(base: PPOConfig, grid: dict[str, list[Any]], seeds: Sequence[int], out: Path) -> list[Trial]:
    """The cartesian product grid x seeds (grid points in the order given, seeds innermost), each trial `base`
    with its values; run folders under `out` (absolute: Ray workers need not share this process's folder)."""
    out = Path(out).absolute()
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    return [Trial(i, point, seed, replace(base, **point, seed=seed), out / _dir_name(point, seed))
            for i, (point, seed) in enumerate(itertools.product(points, seeds))]


def check_out(out: Path) -> None:
    """A sweep writes into a folder of its own: one that holds anything already is refused."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LiquidControlError(f"--out {out} already exists and is not an empty folder; choose another")


def failed_row(trial: Trial, error: str) -> dict[str, Any]:
    return {"trial": trial.index, **trial.point, "seed": trial.seed, "status": "failed", "run_dir": str(trial.run_dir),
            "error": error}


def run_trial(trial: Trial) -> dict[str, Any]:
    """Train one trial into its run folder; its row. Any error becomes the row's error, never an exception.
    A run folder that holds a checkpoint already (a Ray retry after a lost worker) is resumed."""
    from liquid_control.learning.ppo import train

    t0 = time.time()
    try:
        res = train(trial.config, trial.run_dir, resume=(trial.run_dir / "checkpoint.pt").exists(),
                    command=f"liquid-control sweep (trial {trial.index})", progress=False)
    except Exception as exc:  # noqa: BLE001 - a failed trial is a row, the sweep goes on
        return {**failed_row(trial, one_line(exc)), "wall_s": time.time() - t0}
    final_mean, final_std = res["last_eval"]
    return {"trial": trial.index, **trial.point, "seed": trial.seed, "status": "ok", "final_eval": final_mean,
            "final_eval_std": final_std, "best_eval": res["best_eval"], "best_step": res["best_step"],
            "steps": res["steps"], "wall_s": time.time() - t0, "run_dir": str(trial.run_dir), "error": ""}


def iter_rows(trials: Iterable[Trial]) -> Iterator[dict[str, Any]]:
    """The trials' rows, one trial after another in this process."""
    for trial in trials:
        yield run_trial(trial)


# ------------------------------------------------------------------------------------------ the table
def columns(grid: dict[str, list[Any]]) -> list[str]:
    return ["trial", *grid, *RESULT_COLUMNS]


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.6g}" if isinstance(v, float) else v


def write_csv(path: Path, rows: Iterable[dict[str, Any]], fields: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: _cell(v) for k, v in r.items()} for r in rows)


def run_table(trials: Sequence[Trial], rows: Iterable[dict[str, Any]], grid: dict[str, list[Any]], out: Path, *,
              progress: bool = True) -> list[dict[str, Any]]:
    """Collect the rows as trials finish (a tqdm bar over trials; each row appended to <out>/sweep.csv at once),
    then write the table in trial order and the learning-curve plot. Returns the rows in trial order."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fields, got = columns(grid), []
    with open(out / SWEEP_CSV, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        with tqdm(total=len(trials), unit="trial", dynamic_ncols=True, disable=not progress) as bar:
            for row in rows:
                got.append(row)
                w.writerow({k: _cell(v) for k, v in row.items()})
                f.flush()
                bar.update(1)
                best = max((r["best_eval"] for r in got if r["status"] == "ok"), default=math.nan)
                bar.set_postfix_str(f"failed {sum(r['status'] != 'ok' for r in got)}, best eval {best:.1f}")
    got.sort(key=lambda r: r["trial"])
    write_csv(out / SWEEP_CSV, got, fields)
    plot_sweep(got, grid, out / SWEEP_PNG)
    return got


def _label(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items()) or "all trials"


def _points(rows: Sequence[dict[str, Any]], grid: dict[str, list[Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """The rows grouped by grid point, in trial order."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in grid), []).append(r)
    return groups


def best_trial(rows: Sequence[dict[str, Any]], grid: dict[str, list[Any]]) -> dict[str, Any] | None:
    """The best grid point (highest final eval return, mean over its finished seeds) and within it the seed
    whose best evaluation is highest (its best.pt is what the trainer exports). None when no trial finished."""
    ok = [r for r in rows if r["status"] == "ok" and math.isfinite(r["best_eval"])]
    if not ok:
        return None

    def score(group: list[dict[str, Any]]) -> float:
        finals = [r["final_eval"] for r in group if math.isfinite(r["final_eval"])]
        return sum(finals) / len(finals) if finals else -math.inf

    best_point = max(_points(ok, grid).values(), key=score)
    return max(best_point, key=lambda r: (r["best_eval"], r["final_eval"]))


def _curve(run_dir: Path, column: str) -> dict[float, float]:
    """step -> value of one metrics.csv column (the rows that have it)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {float(r["step"]): float(r[column]) for r in csv.DictReader(f)
                if r.get(column) not in (None, "", "nan")}


def plot_sweep(rows: Sequence[dict[str, Any]], grid: dict[str, list[Any]], png: Path) -> Path | None:
    """Eval and training-episode return against env steps: per grid point the mean over its seeds' metrics.csv
    (at the steps every seed logged), a band of +- one std across seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = _points([r for r in rows if r["status"] == "ok"], grid)
    if not groups:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, column, title in zip(axes, ("eval_mean", "train_return"),
                                 ("eval return (deterministic)", "training episode return")):
        for i, (key, group) in enumerate(groups.items()):
            curves = [_curve(Path(r["run_dir"]), column) for r in group]
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            if not steps:
                continue
            vals = np.array([[c[s] for s in steps] for c in curves])
            mean, std = vals.mean(0), vals.std(0)
            label, color = f"{_label(dict(zip(grid, key)))} ({len(group)} seeds)", f"C{i % 10}"
            if column == "eval_mean":  # evaluations are sparse: error bars at each
                ax.errorbar(steps, mean, yerr=std, fmt="o-", ms=4, capsize=3, color=color, label=label)
            else:
                ax.plot(steps, mean, "-", color=color, label=label)
                ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2)
        ax.set_title(f"{title}, mean ± std across seeds")
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("episode return")
    axes[0].legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return Path(png)
