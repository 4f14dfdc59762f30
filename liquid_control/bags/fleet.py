"""Fleet replay: many bags through one policy, one summary row per bag.

Each bag is replayed by bags.replay.replay exactly as `liquid-control replay BAG` replays one (same policy
artifact, spec, backend and options; no per-bag output files), and what it reports becomes a FleetRow. A bag
whose replay fails becomes a row carrying its error as one line: one bad bag never ends the run. Rows come
out as bags finish, here one after another in this process (iter_rows) or as Ray tasks (bags/fleet_ray.py),
and SummaryWriter streams them to CSV, JSON or JSON Lines while the run goes on.

Bag arguments (expand_bags): a bag directory (with metadata.yaml), a single .mcap / .db3 file, a folder
holding bags at any depth, or a glob of any of these.
"""
from __future__ import annotations

import csv
import glob
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from liquid_control.core.errors import LiquidControlError, one_line

if TYPE_CHECKING:  # the replay (rosbags) is imported by the replay itself: expanding arguments needs none of it
    from liquid_control.bags.replay import ReplayOptions, ReplayResult
    from liquid_control.core.artifact import Artifact
    from liquid_control.core.spec import RobotSpec

STORAGE_SUFFIXES = (".mcap", ".db3")
GLOB_CHARS = frozenset("*?[")
SUMMARY_FORMATS = (".csv", ".json", ".jsonl")


# --------------------------------------------------------------------------------------------------
# Bag arguments
# --------------------------------------------------------------------------------------------------
def is_glob(arg: str | Path) -> bool:
    return bool(GLOB_CHARS & set(str(arg)))


def is_bag_dir(path: Path) -> bool:
    return (path / "metadata.yaml").is_file()


def is_one_bag(arg: str | Path) -> bool:
    """Whether a single bag argument names one bag as `replay` has always read it: not a glob, and not a
    folder of bags (a directory with neither metadata.yaml nor exactly one storage file directly in it)."""
    path = Path(arg)
    if is_glob(arg):
        return False
    if not path.is_dir() or is_bag_dir(path):
        return True
    return sum(1 for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES and p.is_file()) == 1


def bags_in(path: Path) -> list[Path]:
    """The bags at `path`: itself when it is a bag directory or a storage file; the bag directories and
    loose storage files under it when it is a folder (sorted); nothing for any other file."""
    if not path.is_dir():
        return [path] if path.suffix in STORAGE_SUFFIXES else []
    if is_bag_dir(path):
        return [path]
    found = []
    for root, dirs, files in os.walk(path):
        here = Path(root)
        bag_dirs = [d for d in dirs if is_bag_dir(here / d)]
        found += [here / d for d in bag_dirs]
        dirs[:] = [d for d in dirs if d not in bag_dirs]  # a bag's own files are not bags of their own
        found += [here / f for f in files if Path(f).suffix in STORAGE_SUFFIXES]
    return sorted(found)


def expand_bags(args: Sequence[str | Path]) -> list[Path]:
    """Bag arguments -> the bags they name, in argument order, each once. A named file is taken as a bag
    whatever its name (its replay says what is wrong with it); an argument that names no bag at all is a
    LiquidControlError."""
    out: dict[Path, None] = {}
    for arg in args:
        if is_glob(arg):
            found = [b for m in sorted(glob.glob(str(arg), recursive=True)) for b in bags_in(Path(m))]
            if not found:
                raise LiquidControlError(f"no bags match {arg}")
        else:
            path = Path(arg)
            if not path.exists():
                raise LiquidControlError(f"bag {arg} does not exist")
            found = bags_in(path) if path.is_dir() else [path]
            if not found:
                raise LiquidControlError(f"folder {arg} holds no bags (bag directories or .mcap / .db3 files)")
        out.update(dict.fromkeys(found))
    return list(out)


# --------------------------------------------------------------------------------------------------
# One bag's row
# --------------------------------------------------------------------------------------------------
def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class FleetRow:
    """What one bag's replay reported; rmse / max_abs per actuator (None: no recorded command to compare
    with). Rows compare equal when the replays agreed, whatever their wall times."""

    bag: str
    ticks: int = 0
    steps: int = 0
    faulted_ticks: int = 0
    span_s: float = 0.0  # bag seconds replayed
    messages: int = 0
    skipped: int = 0  # messages skipped (not decodable, not fitting the spec)
    compared: int = 0  # ticks compared with a recorded command
    rmse: tuple[float | None, ...] = ()
    max_abs: tuple[float | None, ...] = ()
    error: str | None = None
    wall_s: float = field(default=0.0, compare=False)

    @classmethod
    def of(cls, bag: str, result: ReplayResult, actions: int) -> "FleetRow":
        comparison = result.comparison or []
        return cls(bag, result.ticks, result.steps, result.faulted_ticks, result.span, result.messages,
                   result.stats.skipped_total, max((a.n for a in comparison), default=0),
                   tuple(_finite(a.rmse) for a in comparison) or (None,) * actions,
                   tuple(_finite(a.max_abs) for a in comparison) or (None,) * actions, wall_s=result.wall)

    @classmethod
    def failed(cls, bag: str, error: str, actions: int, wall_s: float = 0.0) -> "FleetRow":
        return cls(bag, rmse=(None,) * actions, max_abs=(None,) * actions, error=error, wall_s=wall_s)


@dataclass(frozen=True)
class FleetJob:
    """What every bag's replay shares: the policy artifact (read once, sent to the workers whole, so they
    need no access to the model file), the spec, the backend and the replay options."""

    artifact: Artifact
    spec: RobotSpec
    backend: str = "numpy"
    options: ReplayOptions | None = None  # None: ReplayOptions()

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(self.spec.action.names)


def replay_row(bag: str, job: FleetJob) -> FleetRow:
    """Replay one bag with a fresh policy; any failure is the row's error, never an exception."""
    from liquid_control.bags.replay import ReplayOptions, replay
    from liquid_control.core.policy import Policy

    wall0 = time.perf_counter()
    try:
        policy = Policy.load(job.artifact, backend=job.backend, spec=job.spec)
        result = replay(bag, policy, job.spec, options=job.options or ReplayOptions())
    except Exception as exc:  # noqa: BLE001 - a bag's failure, whatever it is, is that bag's row
        return FleetRow.failed(bag, one_line(exc), len(job.actions), time.perf_counter() - wall0)
    return FleetRow.of(bag, result, len(job.actions))


def iter_rows(bags: Iterable[str | Path], job: FleetJob) -> Iterator[FleetRow]:
    """The baseline: every bag replayed in this process, one after another."""
    for bag in bags:
        yield replay_row(str(bag), job)


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------
def columns(actions: Sequence[str]) -> list[str]:
    return ["bag", "ticks", "steps", "faulted_ticks", "span_s", "messages", "skipped", "compared",
            *[f"rmse:{a}" for a in actions], *[f"max_abs_error:{a}" for a in actions], "wall_s", "error"]


def record(row: FleetRow) -> list[Any]:
    """The row's values in columns() order."""
    return [row.bag, row.ticks, row.steps, row.faulted_ticks, row.span_s, row.messages, row.skipped, row.compared,
            *row.rmse, *row.max_abs, row.wall_s, row.error]


class SummaryWriter:
    """Streams rows to PATH as they come (flushed per row, so the table can be followed during a run):
    .csv (a header line, floats exact, empty for none), .json (one array, one row object per line) or
    .jsonl (one row object per line)."""

    def __init__(self, path: str | Path, actions: Sequence[str]):
        self.path = Path(path)
        self.kind = self.path.suffix.lower()
        if self.kind not in SUMMARY_FORMATS:
            raise LiquidControlError(f"--summary {path}: give a {', '.join(SUMMARY_FORMATS)} file")
        self.columns = columns(actions)
        try:
            self.f = open(self.path, "w", newline="")
        except OSError as exc:
            raise LiquidControlError(f"cannot write {path}: {exc.strerror}") from None
        self.n = 0
        if self.kind == ".csv":
            self.csv = csv.writer(self.f, lineterminator="\n")
            self.csv.writerow(self.columns)
        elif self.kind == ".json":
            self.f.write("[")

    def write(self, row: FleetRow) -> None:
        values = record(row)
        if self.kind == ".csv":
            self.csv.writerow(values)
        else:
            text = json.dumps(dict(zip(self.columns, values)))
            self.f.write((("," if self.n else "") + "\n" + text) if self.kind == ".json" else text + "\n")
        self.n += 1
        self.f.flush()

    def close(self) -> None:
        if self.kind == ".json":
            self.f.write("\n]\n")
        self.f.close()

    def __enter__(self) -> "SummaryWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def row_line(row: FleetRow, actions: Sequence[str]) -> str:
    """One row for a person: the bag and its figures, or the bag and its error."""
    if row.error is not None:
        return f"{row.bag}: error: {row.error}"
    out = (f"{row.bag}: {row.span_s:.3f} s, {row.ticks} ticks, {row.steps} steps, {row.faulted_ticks} faulted, "
           f"{row.skipped} skipped")
    if row.compared:
        out += "".join(f", {a} RMSE {r:.6g} (max {m:.6g})" for a, r, m in zip(actions, row.rmse, row.max_abs)
                       if r is not None and m is not None)
    else:
        out += ", no recorded commands"
    return out


@dataclass
class FleetTotals:
    bags: int = 0
    errors: int = 0
    bag_seconds: float = 0.0
    wall: float = 0.0

    def add(self, row: FleetRow) -> None:
        self.bags += 1
        self.errors += row.error is not None
        self.bag_seconds += row.span_s

    def line(self) -> str:
        wall = max(self.wall, 1e-9)
        return (f"{self.bags - self.errors} of {self.bags} bags replayed, {self.errors} with errors, "
                f"in {self.wall:.2f} s: {self.bags / wall:.2f} bags/s, {self.bag_seconds:.1f} s of bag "
                f"({self.bag_seconds / wall:.1f} bag-s per wall s)")


def run_table(rows: Iterable[FleetRow], total: int, actions: Sequence[str], *, writer: SummaryWriter | None = None,
              progress: bool = False, echo: Callable[[str], None] | None = None) -> FleetTotals:
    """Drain `rows` (as bags finish) into the summary writer, a progress bar over bags (tqdm) and `echo`
    (one line per bag); returns the totals, wall time included."""
    totals = FleetTotals()
    wall0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="bag", desc="replay", mininterval=0.5, leave=False)
    try:
        for row in rows:
            totals.add(row)
            if writer is not None:
                writer.write(row)
            if echo is not None:
                (bar.write if bar is not None else echo)(row_line(row, actions))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(errors=totals.errors, refresh=False)
    finally:
        if bar is not None:
            bar.close()
    totals.wall = time.perf_counter() - wall0
    return totals
