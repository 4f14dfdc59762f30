"""Sweep trials as Ray tasks: each trial is sweep.run_trial (the single-process trainer) in a Ray worker
with one CPU, rows yielded as trials finish.

The tasks are ray_cluster.as_tasks' (the one module that imports ray, the `dist` extra). Trials write
their run folders under the sweep's folder by absolute path, so on a cluster every node must see that folder
(and have liquid_control installed) at the same path. A trial that raises is already a row (run_trial catches
it); a task that Ray itself loses after its retries (a worker process or node that died) is that trial's row
with the error. A retried task resumes the trial from its last checkpoint.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

from liquid_control.ray_cluster import as_tasks
from liquid_control.learning.sweep import Trial, failed_row, run_trial


def iter_ray_rows(trials: Sequence[Trial], in_flight: int | None = None) -> Iterator[dict[str, Any]]:
    """The trials' rows, run as Ray tasks on the Ray this process is connected to, in the order they finish.
    `in_flight`: tasks submitted at a time (default: twice the cluster's CPUs; Ray runs one per CPU)."""
    for trial, row, lost in as_tasks(run_trial, trials, in_flight=in_flight):
        yield row if lost is None else failed_row(trial, f"ray: {lost}")
