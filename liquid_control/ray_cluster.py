"""Ray, for the parts of liquid_control that scale out: joining or starting a cluster for a block, and running
a function over many items as Ray tasks. Ray is imported here only, and only when called (the `dist` extra).

Users: bags/fleet_ray.py (fleet replay), learning/ppo_ray.py (rollout workers), learning/sweep_ray.py (trials),
and the CLI commands that take --ray.
"""
from __future__ import annotations

import logging
import os
import socket
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from liquid_control.core.errors import LiquidControlError, one_line

ADDRESS_HELP = ("empty: start a local Ray instance; auto: the running local cluster; ray://HOST:PORT or HOST:PORT: "
                "join that cluster")
# Ray clusters authenticate by token by default: a driver joining by address needs the cluster's setting
AUTH_HINT = " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token here)"
PROBE_TIMEOUT_S = 5.0  # a cluster address that does not answer a TCP connect in this long is unreachable


def import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("ray", "grpc"):
            raise
        raise LiquidControlError(f"--ray needs the Python module '{exc.name}', which is not installed here "
                                 "(pip install 'liquid_control[dist]')") from None
    return ray


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a cluster address to check before joining; None for '' (local) and 'auto'."""
    if address in ("", "auto"):
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LiquidControlError(f"--ray {address!r} is not a Ray address ({ADDRESS_HELP}; to start a local "
                                 "instance, put --ray after the bags)")
    return host.strip("[]"), int(port)


def _probe(address: str, host: str, port: int) -> None:
    """A one-line error now for an address nobody listens on (Ray itself retries for minutes)."""
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise LiquidControlError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from None


@contextmanager
def ray_session(address: str, workers: int | None = None) -> Iterator[Any]:
    """Ray, started or joined for the block and shut down after it: address '' starts a local instance
    with `workers` CPUs (default: this machine's), 'auto' / 'ray://host:port' / 'host:port' join a cluster."""
    target = parse_address(address)
    if target is not None:
        _probe(address, *target)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report sent from a replay
    ray = import_ray()
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address == "":
        kwargs.update(address="local", num_cpus=workers or os.cpu_count() or 1, include_dashboard=False)
    else:
        kwargs["address"] = address
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Ray's connection warnings: the error below says it in one line
            ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        hint = "" if target is None else AUTH_HINT
        where = address or "a new local instance"
        raise LiquidControlError(f"cannot join Ray at {where}: {one_line(exc)}{hint}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def why_lost(exc: BaseException) -> str:
    """A task that Ray lost, as one line (a RayTaskError's text is a whole traceback)."""
    cause = getattr(exc, "cause", None)
    return one_line(cause if isinstance(cause, BaseException) else exc).split(" Traceback ")[0]


def as_tasks(fn: Callable[..., Any], items: Iterable[Any], *args: Any,
             in_flight: int | None = None) -> Iterator[tuple[Any, Any, str | None]]:
    """fn(item, *args) for each item as a Ray task of one CPU, on the Ray this process is connected to:
    (item, result, None) in the order the tasks finish, or (item, None, why) for a task that Ray lost. At
    most `in_flight` tasks are submitted at a time (default: twice the cluster's CPUs); `args` go into Ray's
    object store once."""
    ray = import_ray()
    if in_flight is None:
        in_flight = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    task = ray.remote(num_cpus=1)(fn)
    refs = [ray.put(a) for a in args]
    todo = iter(items)
    pending: dict[Any, Any] = {}

    def submit() -> None:
        for item in todo:
            pending[task.remote(item, *refs)] = item
            if len(pending) >= in_flight:
                return

    submit()
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            item = pending.pop(ref)
            try:
                result, lost = ray.get(ref), None
            except Exception as exc:  # noqa: BLE001 - Ray lost the task: the caller makes it that item's row
                result, lost = None, why_lost(exc)
            yield item, result, lost
        submit()
