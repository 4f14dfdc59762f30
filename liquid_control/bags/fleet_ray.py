"""Fleet replay on Ray: each bag a Ray task running bags.fleet.replay_row, rows yielded as tasks finish.

The job (policy artifact, spec, options) goes into Ray's object store once; the bags are paths, so on a
cluster every node must see them (and have liquid_control installed) at the same paths. At most `in_flight`
tasks are submitted at a time, so thousands of bags do not all sit in the scheduler at once. A task that Ray
itself loses (a worker process or node that died, after Ray's retries) is that bag's row with the error, like
a bag whose replay failed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from liquid_control.bags.fleet import FleetJob, FleetRow, replay_row
from liquid_control.ray_cluster import as_tasks


def iter_ray_rows(bags: Sequence[str | Path], job: FleetJob, in_flight: int | None = None) -> Iterator[FleetRow]:
    """Rows of `bags` replayed as Ray tasks, in the order they finish, each naming its bag by absolute path
    (the workers' folder is not necessarily this process's). `in_flight`: as for as_tasks."""
    paths = [str(Path(b).absolute()) for b in bags]
    for bag, row, lost in as_tasks(replay_row, paths, job, in_flight=in_flight):
        yield row if lost is None else FleetRow.failed(bag, f"ray: {lost}", len(job.actions))
