"""Sweep trials as Ray tasks: each trial is sweep.run_trial (the single-process trainer) in a Ray worker
with one CPU, rows yielded as trials finish.

With bags/fleet_ray.py, the only modules that import ray (the `dist` extra). Trials write their run folders
under the sweep's folder by absolute path, so on a cluster every node must see that folder (and have
liquid_control installed) at the same path. A trial that raises is already a row (run_trial catches it); a task
that Ray itself loses after its retries (a worker process or node that died) is that trial's row with the
error. A retried task resumes the trial from its last checkpoint.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

from liquid_control.bags.fleet_ray import _lost, import_ray
from liquid_control.learning.sweep import Trial, failed_row, run_trial


def iter_ray_rows(trials: Sequence[Trial]) -> Iterator[dict[str, Any]]:
    """The trials' rows, run as Ray tasks on the Ray this process is connected to, in the order they finish.
    All trials are submitted at once: Ray runs as many at a time as the cluster has CPUs."""
    ray = import_ray()
    task = ray.remote(num_cpus=1)(run_trial)
    pending = {task.remote(trial): trial for trial in trials}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            trial = pending.pop(ref)
            try:
                row = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - Ray lost the task: that trial's row
                row = failed_row(trial, f"ray: {_lost(exc)}")
            yield row
