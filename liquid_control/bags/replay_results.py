"""What a replay reports: per-topic timing, the comparison with the recorded commands, the summary."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liquid_control.bags.io import ReadStats


@dataclass
class ActuatorError:
    name: str
    n: int
    rmse: float
    max_abs: float


class TopicTiming:
    """Streaming timing facts of one topic: rate, largest gap, header stamp lag (constant memory)."""

    def __init__(self, name: str):
        self.name, self.n, self.first, self.last = name, 0, 0, 0
        self.max_gap, self.gap_at = 0, 0
        self.lag_n, self.lag_sum, self.lag_max, self.lag_min = 0, 0, -(2**63), 2**63

    def add(self, log_ns: int, msg: Any) -> None:
        if self.n:
            gap = log_ns - self.last
            if gap > self.max_gap:
                self.max_gap, self.gap_at = gap, self.last
        else:
            self.first = log_ns
        self.n += 1
        self.last = log_ns
        try:
            stamp = msg.header.stamp
        except AttributeError:  # no header
            return
        stamp = stamp.sec * 1_000_000_000 + stamp.nanosec
        if stamp:
            lag = log_ns - stamp
            self.lag_n += 1
            self.lag_sum += lag
            self.lag_max, self.lag_min = max(self.lag_max, lag), min(self.lag_min, lag)

    def line(self, origin: int) -> str:
        rate = (self.n - 1) / ((self.last - self.first) * 1e-9) if self.n > 1 and self.last > self.first else 0.0
        out = f"{self.name}: {self.n} messages, {rate:.1f} Hz"
        if self.n > 1:
            out += f", largest gap {self.max_gap * 1e-6:.1f} ms at t={(self.gap_at - origin) * 1e-9:.3f} s"
        if self.lag_n:
            out += (f", receive - header stamp {self.lag_sum / self.lag_n * 1e-6:.2f} ms mean "
                    f"({self.lag_min * 1e-6:.2f}..{self.lag_max * 1e-6:.2f})")
        return out


@dataclass
class ReplayResult:
    ticks: int = 0
    faulted_ticks: int = 0
    steps: int = 0
    span: float = 0.0  # bag seconds replayed (first to last tick)
    wall: float = 0.0
    messages: int = 0
    comparison: list[ActuatorError] | None = None
    stats: ReadStats = field(default_factory=ReadStats)
    notes: list[str] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    first_fault: str | None = None
    timing: list[str] = field(default_factory=list)  # per topic: rate, largest gap, header stamp lag
    partial: list[str] = field(default_factory=list)  # per topic read whole: fewer messages read than the bag holds

    @property
    def speed(self) -> float:
        """Bag seconds per wall second (x real time)."""
        return self.span / self.wall if self.wall > 0 else math.inf

    def lines(self) -> list[str]:
        out = [f"replayed {self.span:.3f} s of bag in {self.wall:.3f} s ({self.speed:.1f}x real time): "
               f"{self.ticks} ticks, {self.steps} policy steps, {self.faulted_ticks} faulted ticks"
               + (f" (first: {self.first_fault})" if self.first_fault else "")]
        if self.comparison:
            for a in self.comparison:
                out.append(f"vs recorded command {a.name}: RMSE {a.rmse:.6g}, max |error| {a.max_abs:.6g} over {a.n} ticks")
        elif self.comparison is None:
            out.append("no recorded commands in the bag: nothing to compare against")
        out += [f"bag: {line}" for line in self.stats.lines()]
        out += [f"partial read: {line}" for line in self.partial]
        out += [f"topic {line}" for line in self.timing]
        out += self.notes
        out += [f"wrote {kind}: {path}" for kind, path in self.outputs.items()]
        return out


class ErrorStats:
    """RMSE and max |error| per actuator, reduced in fixed blocks (deterministic, one ufunc per tick)."""

    BLOCK = 4096

    def __init__(self, n: int):
        self.buf = np.empty((self.BLOCK, n))
        self.i = self.count = 0
        self.sq, self.mx = np.zeros(n), np.zeros(n)

    def add(self, command: np.ndarray, recorded: np.ndarray) -> None:
        np.subtract(command, recorded, out=self.buf[self.i])
        self.i += 1
        if self.i == self.BLOCK:
            self._reduce()

    def _reduce(self) -> None:
        b = self.buf[: self.i]
        self.sq += np.einsum("ij,ij->j", b, b)
        np.maximum(self.mx, np.abs(b).max(axis=0, initial=0.0), out=self.mx)
        self.count += self.i
        self.i = 0

    def result(self, names: tuple[str, ...]) -> list[ActuatorError]:
        self._reduce()
        n = self.count
        return [ActuatorError(name, n, float(np.sqrt(self.sq[j] / n)) if n else math.nan,
                              float(self.mx[j]) if n else math.nan) for j, name in enumerate(names)]
